//! The `regiongate` command: parses flags and calls the library.
//!
//! Exit codes: 0 success (or allow), 1 deny / need-precise-location / problems found,
//! 2 bad input on the command line, 3 the data could not be loaded, 64 bad configuration.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use regiongate::config::{Config, LogFormat, Overrides, Steering};
use regiongate::decide::{Policy, Question, Source, Verdict, decide, decide_with_evidence};
use regiongate::license::{Tier, UseType};
use regiongate::locate::{self, hints};
use regiongate::privacy::ClientIp;
use regiongate::privacy::GpsPoint;
use regiongate::problem::Problem;
use regiongate::progress::{Progress, Unit};
use regiongate::server::App;
use regiongate::server::metrics::Metrics;
use regiongate::{DataSource, Snapshot, SnapshotError};
use serde_json::json;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "regiongate",
    version,
    about = "Decides whether a track may be played where the listener is"
)]
struct Cli {
    /// Data directory (territories, groups, licences); default: the embedded regions/.
    #[arg(long, global = true, value_name = "DIR")]
    regions: Option<PathBuf>,
    /// No progress display on stderr (it is shown only when stderr is a terminal).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (public listener + admin listener).
    Serve(Box<ServeArgs>),
    /// Print the territories containing a point, the country first, one per line.
    Where(WhereArgs),
    /// Decide whether a track may be played at a point or in a country; prints JSON.
    Check(Box<CheckArgs>),
    /// Check region and licence files and report every problem.
    Validate(ValidateArgs),
    /// Show what a change of data directory does: rights gained and lost, polygons changed.
    Diff(DiffArgs),
    /// Draw the world as SVG coloured by where a track may be played.
    Map(MapArgs),
    /// Build data files from other formats.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Build the WiFi access-point database (wifi/aps.csv) from WiGLE CSV exports
    /// (WigleWifi-1.4 and later). SSIDs and observation times are not kept.
    Wigle(WigleArgs),
    /// Build licence files (TOML, bulk CSV) from DDEX ERN 3.8/4.x messages
    /// (NewReleaseMessage deals, PurgeReleaseMessage takedowns). Writes nothing unless every
    /// message imports.
    Ddex(DdexArgs),
}

#[derive(Args)]
struct DdexArgs {
    /// ERN message files, or directories of them (every *.xml file inside).
    #[arg(required = true, value_name = "FILE|DIR")]
    inputs: Vec<PathBuf>,
    /// Directory to write (must not exist, or be empty): ddex.toml, and ddex-tracks.csv when
    /// there are many track deal sets. Written whole beside it, then renamed into place.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Track deal sets above which they go to the bulk CSV file.
    #[arg(long, default_value_t = regiongate::ddex::write::DEFAULT_BULK_OVER, value_name = "N")]
    bulk_over: usize,
    /// Print a JSON report on stdout (also on failure).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct WigleArgs {
    /// WiGLE CSV export files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Where to write aps.csv (written whole, then renamed into place).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML); see deploy/regiongate.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener, ADDR:PORT (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Admin listener, ADDR:PORT (default 127.0.0.1:9090).
    #[arg(long, value_name = "ADDR:PORT")]
    admin_listen: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Load and check the configuration and data, print what would be served, and exit.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
struct WhereArgs {
    /// Latitude in degrees.
    #[arg(long, allow_hyphen_values = true, required_unless_present = "batch")]
    lat: Option<f64>,
    /// Longitude in degrees.
    #[arg(long, allow_hyphen_values = true, required_unless_present = "batch")]
    lon: Option<f64>,
    /// Read CSV `lat,lon` lines from stdin, write `lat,lon,country,territories` lines.
    #[arg(long, conflicts_with_all = ["lat", "lon"])]
    batch: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Track id (ISRC or platform id).
    #[arg(long)]
    track: String,
    /// Use type: on_demand_stream, non_interactive_stream or download.
    #[arg(long = "use", default_value = "on_demand_stream")]
    use_type: UseType,
    /// Listener tier: free or premium.
    #[arg(long, default_value = "premium")]
    tier: Tier,
    /// Latitude of the listener (a known point; see also --gps).
    #[arg(long, allow_hyphen_values = true, requires = "lon", conflicts_with_all = ["country", "ip", "gps", "mcc", "wifi"])]
    lat: Option<f64>,
    /// Longitude of the listener.
    #[arg(long, allow_hyphen_values = true, requires = "lat")]
    lon: Option<f64>,
    /// Country (territory id) of the listener instead of a point.
    #[arg(long, conflicts_with_all = ["ip", "gps", "mcc", "wifi"])]
    country: Option<String>,
    /// Client IP address (looked up in the IP database).
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
    /// GPS hint: LAT,LON[,ACCURACY_METRES] (a fresh fix).
    #[arg(long, allow_hyphen_values = true)]
    gps: Option<String>,
    /// What made the --gps fix: gps, or wifi (the device's WiFi positioning).
    #[arg(long, default_value = "gps", requires = "gps")]
    gps_source: String,
    /// WiFi hint: access points seen, BSSID[@RSSI],... (looked up in wifi/aps.csv).
    #[arg(long, allow_hyphen_values = true)]
    wifi: Option<String>,
    /// Cell hint: mobile country code of the serving network.
    #[arg(long, requires = "mnc")]
    mcc: Option<String>,
    /// Cell hint: mobile network code (2 or 3 digits as broadcast).
    #[arg(long, requires = "mcc")]
    mnc: Option<String>,
    /// Cell hint: cell id (decimal or 0x hex).
    #[arg(long, requires = "mcc")]
    cell: Option<String>,
    /// Cell hint: radio (gsm, umts, cdma, lte, nr).
    #[arg(long, requires = "cell")]
    radio: Option<String>,
    /// Cell hint: location/tracking area code.
    #[arg(long, requires = "cell")]
    area: Option<String>,
    /// Evidence policy: strict, precise_first or ip_only.
    #[arg(long, default_value = "precise_first")]
    policy: String,
    /// A GPS or WiFi fix whose accuracy disc is uncertain: deny, need_precise_location or
    /// decide_at_point (the `[policy] on_uncertain_fix` key).
    #[arg(long, default_value = "deny")]
    on_uncertain_fix: String,
    /// Decide as of this RFC 3339 time instead of now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
}

#[derive(Args)]
struct DiffArgs {
    /// The data directory in service now.
    old: PathBuf,
    /// The data directory about to ship.
    new: PathBuf,
    /// Compare rights as of this RFC 3339 time instead of now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Detail lines per part in the text report.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Also write a world map (SVG) coloured by territories gained and lost.
    #[arg(long, value_name = "FILE.svg")]
    map: Option<PathBuf>,
}

#[derive(Args)]
struct MapArgs {
    /// Track id (ISRC or platform id).
    #[arg(long)]
    track: String,
    /// Decide as of this RFC 3339 time instead of now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
    /// Use type: on_demand_stream, non_interactive_stream or download.
    #[arg(long = "use", default_value = "on_demand_stream")]
    use_type: UseType,
    /// Listener tier: free or premium.
    #[arg(long, default_value = "premium")]
    tier: Tier,
    /// The SVG file to write.
    #[arg(long, value_name = "FILE.svg")]
    out: PathBuf,
    /// Print the countries by decision as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// Directory to check (default: --regions, else the embedded data).
    dir: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

/// A failure with its exit code.
struct Exit(u8, anyhow::Error);

fn source(dir: &Option<PathBuf>) -> DataSource {
    dir.clone().map_or(DataSource::Embedded, DataSource::Dir)
}

fn load(dir: &Option<PathBuf>) -> Result<Snapshot, Exit> {
    Snapshot::load(&source(dir))
        .map_err(|e| Exit(3, anyhow::Error::new(e).context("cannot load the data")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(a) => run_serve(&cli, a),
        Command::Where(a) => run_where(&cli, a),
        Command::Check(a) => run_check(&cli, a),
        Command::Validate(a) => run_validate(&cli, a),
        Command::Diff(a) => run_diff(&cli, a),
        Command::Map(a) => run_map(&cli, a),
        Command::Import(ImportCommand::Wigle(a)) => run_import_wigle(a),
        Command::Import(ImportCommand::Ddex(a)) => run_import_ddex(&cli, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Exit(code, e)) => {
            eprintln!("regiongate: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Exit status for a bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn run_serve(cli: &Cli, a: &ServeArgs) -> Result<u8, Exit> {
    install_panic_hook();
    let text = match &a.config {
        Some(p) => {
            // At most one byte more than the limit: the parser then refuses the size, and a
            // path such as /dev/zero cannot hang the start.
            let mut text = String::new();
            std::fs::File::open(p)
                .and_then(|f| {
                    f.take(regiongate::config::MAX_CONFIG_BYTES as u64 + 1)
                        .read_to_string(&mut text)
                })
                .map_err(|e| {
                    Exit(
                        EXIT_CONFIG,
                        anyhow::anyhow!("config file {}: {e}", p.display()),
                    )
                })?;
            Some(text)
        }
        None => None,
    };
    let flags = Overrides {
        listen: a.listen.clone(),
        admin_listen: a.admin_listen.clone(),
        regions: cli.regions.clone(),
        log_format: a.log_format.clone(),
    };
    let config = Config::load(text.as_deref(), |k| std::env::var(k).ok(), flags)
        .map_err(|e| Exit(EXIT_CONFIG, e.into()))?;
    init_logging(config.log_format);
    let snapshot = Snapshot::load(&source(&config.regions))
        .map_err(|e| Exit(3, anyhow::Error::new(e).context("cannot load the data")))?;
    if a.dry_run {
        println!(
            "{}",
            json!({"listen": config.listen.to_string(), "admin_listen": config.admin_listen.to_string(), "mode": format!("{:?}", config.mode).to_lowercase(),
                   "data_version": snapshot.version, "territories": snapshot.territories.len(), "tracks": snapshot.licenses.track_count(), "deals": snapshot.licenses.deal_count()})
        );
        return Ok(0);
    }
    // The public listener runs as one shard per core: a current-thread runtime on a thread
    // of its own (nginx's worker-per-core shape). Measured on the 2-core machine against one
    // multi-thread runtime with 2 workers: 1.6x the requests per second on the
    // auth-subrequest load (benches/README.md, "HTTP load"); the work-stealing scheduler's
    // cross-thread wake-ups and shared queues cost more than they balance for requests this
    // short. Everything else (admin listener, signals, reloads, the data watch, the report)
    // runs on a current-thread runtime on the main thread. `connection_steering` decides how
    // the shards share connections and whether each is pinned to a CPU (docs/operations.md,
    // "Threads and connection steering"; benches/README.md, "Why: where the connections land").
    use regiongate::server::cpus;
    let usable_cpus = cpus::usable();
    let mut plan = regiongate::server::plan_shards(
        public_threads().map_err(|e| Exit(EXIT_CONFIG, e))?,
        config.connection_steering,
        config.listen,
        &usable_cpus,
    );
    // A seccomp filter may refuse sched_setaffinity (for every thread alike). Steering
    // connections by CPU to threads the scheduler moves would only add cross-CPU traffic.
    if let Some(&cpu) = plan.cpus.first()
        && !cpus::can_pin(cpu)
    {
        plan = plan.unpinned("the kernel refuses to pin threads (sched_setaffinity)".to_owned());
    }
    if let Some(why) = &plan.fallback
        && config.connection_steering == Steering::Cpu
    {
        tracing::warn!(
            reason = %why,
            "connection_steering \"cpu\" cannot be honoured; using \"hash\""
        );
    }
    let mut public_runtimes = Vec::with_capacity(plan.shards);
    for i in 0..plan.shards {
        // Threads a public runtime starts itself (its blocking pool: DNS lookups of the
        // proxy's client) would inherit the public thread's one CPU: they get them all back.
        let all_cpus = usable_cpus.clone();
        let pinned = !plan.cpus.is_empty();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(move || {
                if pinned {
                    cpus::restrict_current_thread(&all_cpus);
                }
            })
            .build()
            .map_err(|e| Exit(1, e.into()))?;
        let handle = rt.handle().clone();
        // The thread drives the runtime until told to stop (or main's end drops the sender).
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cpu = plan.cpus.get(i).copied();
        // Told once the thread has its name and its CPU, so both hold by the start-up line.
        let (started_tx, started) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("public-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu
                    && !cpus::restrict_current_thread(&[cpu])
                {
                    // Pinning worked on the probe thread a moment ago.
                    tracing::warn!(shard = i, cpu, "cannot pin the public thread to its CPU");
                }
                let _ = started_tx.send(());
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| Exit(1, e.into()))?;
        // An error here means the thread is already gone; the listener's registration on
        // its runtime then fails and says so.
        let _ = started.recv();
        public_runtimes.push((handle, stop, thread));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit(1, e.into()))?;
    let handles = public_runtimes.iter().map(|(h, _, _)| h.clone()).collect();
    let served = runtime.block_on(serve(config, snapshot, handles, plan));
    for (_, stop, thread) in public_runtimes {
        let _ = stop.send(());
        let _ = thread.join();
    }
    served.map_err(|e| Exit(1, e))?;
    Ok(0)
}

/// How many public shards (threads) to run: `TOKIO_WORKER_THREADS` if set (the variable
/// tokio's own multi-thread runtime reads; `PIN=1` in benches/load/authz_vs_nginx.sh sets it
/// to 1), else one per available core.
fn public_threads() -> Result<usize> {
    match std::env::var("TOKIO_WORKER_THREADS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => anyhow::bail!("TOKIO_WORKER_THREADS: must be a number from 1 to 1024"),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

async fn serve(
    config: Config,
    snapshot: Snapshot,
    public_runtimes: Vec<tokio::runtime::Handle>,
    plan: regiongate::server::ShardPlan,
) -> Result<()> {
    let listeners = regiongate::server::bind_shards(config.listen, &plan)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let public_addr = listeners
        .first()
        .map(std::net::TcpListener::local_addr)
        .transpose()?
        .unwrap_or(config.listen);
    let public: Vec<regiongate::server::PublicShard> = listeners
        .into_iter()
        .zip(public_runtimes)
        .map(|(listener, runtime)| regiongate::server::PublicShard { listener, runtime })
        .collect();
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    let metrics = Metrics::new(prometheus::Registry::new()).context("metrics registry")?;
    metrics
        .public_threads
        .with_label_values(&[plan.steering.as_str()])
        .set(i64::try_from(plan.shards).unwrap_or(i64::MAX));
    let version = snapshot.version.clone();
    let ip_db = snapshot
        .ip
        .as_ref()
        .map(|d| d.info().database_type.clone())
        .unwrap_or_default();
    let app = App::new(config, snapshot, metrics);
    tracing::info!(
        listen = %public_addr,
        admin = %admin.local_addr()?,
        public_threads = plan.shards,
        connection_steering = plan.steering.as_str(),
        cpus = %plan.cpu_list(),
        steering_fallback = plan.fallback.as_deref().unwrap_or("-"),
        mode = ?app.config.mode,
        data_version = %version,
        ip_database = %ip_db,
        "regiongate serving"
    );
    // Watch the data directory (the embedded data never changes).
    let _watcher = match &app.config.regions {
        Some(dir) if app.config.watch => Some(
            regiongate::server::reload::watch(app.clone(), dir.clone())
                .with_context(|| format!("cannot watch {}", dir.display()))?,
        ),
        _ => None,
    };
    let hup_app = app.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            regiongate::server::reload::reload(&hup_app, "sighup").await;
        }
    });
    // With cpu steering the kernel's spread follows the clients' CPUs: the shards even it out
    // and let connections follow their clients' CPUs (plan.cpus is empty otherwise).
    regiongate::server::run_sharded(app, public, &plan.cpus, admin, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector gets plain text (and writing the
    // escape codes was a fifth of the work of a request with its decision line).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// A panic prints where it happened, never its message: a message could hold request data.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map_or_else(
            || "unknown location".to_owned(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        eprintln!(
            "regiongate: internal error (panic) at {at}; the message is withheld because it may hold request data"
        );
    }));
}

fn bad_input(e: anyhow::Error) -> Exit {
    Exit(2, e)
}

fn run_where(cli: &Cli, a: &WhereArgs) -> Result<u8, Exit> {
    let loading = Progress::spinner("loading the data", !a.batch || cli.quiet);
    let snap = load(&cli.regions)?;
    loading.finish();
    if !a.batch {
        let (Some(lat), Some(lon)) = (a.lat, a.lon) else {
            return Err(bad_input(anyhow::anyhow!("--lat and --lon are required")));
        };
        let p = GpsPoint::new(lat, lon).map_err(|e| bad_input(e.into()))?;
        let mut out = std::io::stdout().lock();
        for t in snap.index.locate(p.lon_lat()) {
            writeln!(out, "{}", snap.territories.code(t)).map_err(|e| Exit(1, e.into()))?;
        }
        return Ok(0);
    }
    // Redirected from a file, stdin has a size: a bar with an ETA; a pipe gets a counter.
    let total = std::fs::metadata("/dev/stdin")
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len());
    let progress = Progress::new("where --batch", total, Unit::Bytes, cli.quiet);
    let r = batch(&snap, &progress).map_err(|e| Exit(1, e));
    progress.finish();
    r
}

/// Streams `lat,lon` lines to `lat,lon,country,territories` lines in constant memory.
fn batch(snap: &Snapshot, progress: &Progress) -> Result<u8> {
    let stdin = progress.reader(std::io::stdin().lock());
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut bad = 0u64;
    let mut line = String::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 16, stdin);
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).context("reading stdin")? == 0 {
            break;
        }
        n += 1;
        let l = line.trim_end_matches(['\n', '\r']);
        if n == 1 && l.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let mut cols = l.split(',');
        let (lat_s, lon_s) = (
            cols.next().unwrap_or("").trim(),
            cols.next().unwrap_or("").trim(),
        );
        let point = match (lat_s.parse::<f64>(), lon_s.parse::<f64>()) {
            (Ok(lat), Ok(lon)) => GpsPoint::new(lat, lon).ok(),
            _ => None,
        };
        let Some(p) = point else {
            bad += 1;
            eprintln!("regiongate: line {n}: expected lat,lon in degrees");
            writeln!(out, "{lat_s},{lon_s},,")?;
            continue;
        };
        let hits = snap.index.locate(p.lon_lat());
        let country = snap
            .territories
            .country_of(&hits)
            .map_or("", |c| snap.territories.code(c));
        write!(out, "{lat_s},{lon_s},{country},")?;
        for (i, t) in hits.iter().enumerate() {
            if i > 0 {
                out.write_all(b";")?;
            }
            out.write_all(snap.territories.code(*t).as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(if bad > 0 { 2 } else { 0 })
}

fn run_check(cli: &Cli, a: &CheckArgs) -> Result<u8, Exit> {
    let snap = load(&cli.regions)?;
    let now = a.at.unwrap_or_else(Utc::now);
    let q = Question {
        track: &a.track,
        use_type: a.use_type,
        tier: a.tier,
    };
    let code = |t| snap.territories.code(t);
    let (d, evidence) = match (a.lat, a.lon, &a.country) {
        (Some(lat), Some(lon), None) => {
            let p = GpsPoint::new(lat, lon).map_err(|e| bad_input(e.into()))?;
            let hits = snap.index.locate(p.lon_lat());
            let d = decide(&snap.licenses, &q, &hits, now).from_source(Source::Gps);
            (
                d,
                json!({"point": {"territories": hits.iter().map(|&t| code(t)).collect::<Vec<_>>()}}),
            )
        }
        (None, None, Some(cc)) => {
            let Some(t) = snap.territories.id(cc) else {
                return Err(bad_input(anyhow::anyhow!("unknown territory {cc:?}")));
            };
            (
                decide(&snap.licenses, &q, &[t], now),
                json!({"country": cc}),
            )
        }
        _ => {
            let policy = Policy {
                kind: serde_json::from_value(json!(a.policy)).map_err(|_| {
                    bad_input(anyhow::anyhow!(
                        "--policy must be strict, precise_first or ip_only"
                    ))
                })?,
                on_uncertain_fix: serde_json::from_value(json!(a.on_uncertain_fix)).map_err(
                    |_| {
                        bad_input(anyhow::anyhow!(
                            "--on-uncertain-fix must be deny, need_precise_location or decide_at_point"
                        ))
                    },
                )?,
                ..Policy::default()
            };
            let kind = hints::FixKind::parse(&a.gps_source)
                .map_err(|_| bad_input(anyhow::anyhow!("--gps-source must be gps or wifi")))?;
            let gps = a
                .gps
                .as_deref()
                .map(|g| {
                    let parts: Vec<f64> = g
                        .split(',')
                        .map(|x| x.trim().parse::<f64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| anyhow::anyhow!("--gps: expected LAT,LON[,ACC]"))?;
                    let (lat, lon, acc) = match parts[..] {
                        [lat, lon] => (lat, lon, 10.0),
                        [lat, lon, acc] => (lat, lon, acc),
                        _ => anyhow::bail!("--gps: expected LAT,LON[,ACC]"),
                    };
                    hints::check_fix(
                        lat,
                        lon,
                        acc,
                        now.timestamp(),
                        now.timestamp(),
                        &hints::GpsLimits::default(),
                        kind,
                    )
                    .map_err(|e| anyhow::anyhow!("--gps: {e}"))
                })
                .transpose()
                .map_err(bad_input)?;
            let cell = match (&a.mcc, &a.mnc) {
                (Some(mcc), Some(mnc)) => Some(
                    hints::check_cell(
                        mcc,
                        mnc,
                        a.radio.as_deref(),
                        a.area.as_deref(),
                        a.cell.as_deref(),
                    )
                    .map_err(|e| bad_input(anyhow::anyhow!("cell hint: {e}")))?,
                ),
                _ => None,
            };
            let wifi = a
                .wifi
                .as_deref()
                .map(locate::wifi::parse_wifi_hint)
                .transpose()
                .map_err(|e| bad_input(anyhow::anyhow!("--wifi: {e}")))?;
            let client = a.ip.map(ClientIp::new);
            let ev = locate::gather(&snap, client.as_ref(), &hints::Hints { gps, cell, wifi });
            let d = decide_with_evidence(&snap, &policy, &q, &ev, now);
            (d, evidence_summary(&snap, &ev))
        }
    };
    let out = json!({
        "track": a.track,
        "use": a.use_type.as_str(),
        "tier": a.tier.as_str(),
        "playable": d.verdict == Verdict::Allow,
        "decision": d.verdict.as_str(),
        "reason": d.reason.as_str(),
        "territory": d.territory.map(code),
        "touched": d.touched.as_slice().iter().map(|&t| code(t)).collect::<Vec<_>>(),
        "source": d.source.as_str(),
        "evidence": evidence,
        "deal": d.deal.map(|id| snap.licenses.deal(id).id.to_string()),
        "valid_until": d.valid_until.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data_version": snap.version,
    });
    println!("{out}");
    Ok(if d.verdict == Verdict::Allow { 0 } else { 1 })
}

/// What the evidence says, as territory codes and kinds only: never an address, a coordinate
/// or a cell id.
fn evidence_summary(snap: &Snapshot, ev: &locate::Evidence) -> serde_json::Value {
    let code = |t| snap.territories.code(t).to_owned();
    let at = |p: &GpsPoint| {
        snap.index
            .locate(p.lon_lat())
            .iter()
            .map(|&t| code(t))
            .collect::<Vec<_>>()
    };
    json!({
        "ip": ev.ip.map(|i| json!({
            "country": i.country.map(code),
            "point_territories": i.point.map(|(p, _)| at(&p)),
            "anonymizer": i.flags.any(),
        })),
        "gps": ev.gps.map(|g| json!({"territories": at(&g.point)})),
        "wifi": ev.wifi.map(|w| json!({
            "territories": at(&w.point),
            "from": match w.origin {
                locate::WifiOrigin::Device => "device",
                locate::WifiOrigin::Scan => "access_points",
            },
        })),
        "cell": ev.cell.as_ref().map(|c| json!({
            "countries": c.countries.iter().map(|&t| code(t)).collect::<Vec<_>>(),
            "fix_territories": c.fix.map(|f| at(&f.point)),
        })),
    })
}

fn run_import_wigle(a: &WigleArgs) -> Result<u8, Exit> {
    let mut files = Vec::with_capacity(a.files.len());
    for f in &a.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", f.display())))?;
        files.push((f.display().to_string(), text));
    }
    let (csv, stats) = locate::wifi::import_wigle(&files).map_err(|e| bad_input(e.into()))?;
    // Written beside the target and renamed, so a watcher never sees half a file.
    let tmp = a.out.with_extension("csv.tmp~");
    std::fs::write(&tmp, csv)
        .and_then(|()| std::fs::rename(&tmp, &a.out))
        .map_err(|e| Exit(1, anyhow::anyhow!("{}: {e}", a.out.display())))?;
    eprintln!(
        "{}: {} access points from {} rows ({} skipped)",
        a.out.display(),
        stats.access_points,
        stats.rows,
        stats.skipped
    );
    Ok(0)
}

/// The message files named: files as given, directories' `*.xml` files in name order.
fn ddex_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| p.display().to_string())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "xml") && f.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

fn run_import_ddex(cli: &Cli, a: &DdexArgs) -> Result<u8, Exit> {
    use regiongate::ddex::{self, DdexError, write};
    let fail = |e: DdexError| {
        if a.json {
            println!("{}", json!({"ok": false, "error": e.to_json()}));
        }
        bad_input(e.into())
    };
    let files = ddex_inputs(&a.inputs).map_err(bad_input)?;
    if files.is_empty() {
        return Err(bad_input(anyhow::anyhow!("no *.xml message files found")));
    }
    let loading = Progress::spinner("loading the data", cli.quiet);
    let snap = load(&cli.regions)?;
    loading.finish();
    let total = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let progress = Progress::new("import ddex", Some(total), Unit::Bytes, cli.quiet);
    // The bar is cleared before an error is printed.
    let fail = |e: DdexError| {
        progress.finish();
        fail(e)
    };
    let mut messages = Vec::with_capacity(files.len());
    for f in &files {
        let name = f.display().to_string();
        let file = std::fs::File::open(f).map_err(|source| {
            fail(DdexError::Io {
                file: name.clone(),
                source,
            })
        })?;
        let read = std::io::BufReader::with_capacity(1 << 16, progress.reader(file));
        let m = ddex::parse_checked(&name, read, &snap.territories, &snap.groups).map_err(fail)?;
        messages.push(m);
    }
    progress.finish();
    let imp = ddex::Import::merge(messages).map_err(fail)?;
    let rendered = write::render(&imp, a.bulk_over);
    if let Err(problems) = write::check(&rendered, &snap.territories, &snap.groups) {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(Exit(
            1,
            anyhow::anyhow!(
                "internal error: the written files would not load: {}",
                list.join("; ")
            ),
        ));
    }
    write::write_dir(&a.out, &rendered.files)
        .map_err(|e| Exit(1, anyhow::anyhow!("{}: {e}", a.out.display())))?;
    let written: Vec<String> = rendered
        .files
        .iter()
        .map(|(n, _)| a.out.join(n).display().to_string())
        .collect();
    if a.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "out": a.out.display().to_string(),
                "files": written,
                "messages": imp.messages,
                "tracks": rendered.tracks,
                "deals": rendered.deals,
                "dealsets": rendered.dealsets,
                "takedowns": rendered.takedowns,
                "ignored": imp.ignored,
            })
        );
    } else {
        for i in &imp.ignored {
            eprintln!(
                "regiongate: {}: {} (x{}): {}",
                i.file, i.element, i.count, i.reason
            );
        }
        eprintln!(
            "{}: {} message(s), {} deal set(s) ({} takedown(s)), {} deal(s), {} track(s)",
            a.out.display(),
            imp.messages.len(),
            rendered.dealsets,
            rendered.takedowns,
            rendered.deals,
            rendered.tracks
        );
    }
    Ok(0)
}

/// Writes a file beside its target, then renames it into place.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<(), Exit> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp~");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Exit(1, anyhow::anyhow!("{}: {e}", path.display())))
}

fn load_world(dir: &Option<PathBuf>) -> Result<regiongate::map::World, Exit> {
    regiongate::map::World::load(&source(dir)).map_err(|e| {
        Exit(
            3,
            anyhow::Error::new(e).context("cannot read the map geometry"),
        )
    })
}

fn run_map(cli: &Cli, a: &MapArgs) -> Result<u8, Exit> {
    use regiongate::map;
    let loading = Progress::spinner("loading the data", cli.quiet);
    let snap = load(&cli.regions)?;
    let world = load_world(&cli.regions)?;
    loading.finish();
    let at = a.at.unwrap_or_else(Utc::now);
    let q = Question {
        track: &a.track,
        use_type: a.use_type,
        tier: a.tier,
    };
    let c = map::track_colouring(&world, &snap, &q, at);
    write_whole(&a.out, map::svg(&world, &c).as_bytes())?;
    let by = |s: map::Shade| {
        c.by_code
            .iter()
            .filter(|(_, (t, _))| *t == s)
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
    };
    if a.json {
        println!(
            "{}",
            json!({
                "track": a.track, "use": a.use_type.as_str(), "tier": a.tier.as_str(),
                "at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "data_version": snap.version, "out": a.out.display().to_string(),
                "playable": by(map::Shade::Allow), "not_playable": by(map::Shade::Deny),
                "not_in_data": by(map::Shade::NoData),
            })
        );
    } else {
        eprintln!(
            "{}: {} countries playable, {} not",
            a.out.display(),
            by(map::Shade::Allow).len(),
            by(map::Shade::Deny).len()
        );
    }
    Ok(0)
}

fn run_diff(cli: &Cli, a: &DiffArgs) -> Result<u8, Exit> {
    let loading = Progress::spinner(&format!("loading {}", a.old.display()), cli.quiet);
    let old = load(&Some(a.old.clone()))?;
    loading.label(&format!("loading {}", a.new.display()));
    let new = load(&Some(a.new.clone()))?;
    loading.finish();
    let progress = Progress::new(
        "diff: selectors",
        Some(regiongate::diff::selector_count(&old, &new)),
        Unit::Items,
        cli.quiet,
    );
    let d =
        regiongate::diff::diff_with_progress(&old, &new, a.at.unwrap_or_else(Utc::now), &|| {
            progress.inc(1)
        });
    progress.finish();
    if let Some(path) = &a.map {
        let world = load_world(&Some(a.new.clone()))?;
        let c = regiongate::map::diff_colouring(&world, &d);
        write_whole(path, regiongate::map::svg(&world, &c).as_bytes())?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&d).map_err(|e| Exit(1, e.into()))?
        );
    } else {
        print!("{}", d.to_text(a.limit));
    }
    Ok(0)
}

fn run_validate(cli: &Cli, a: &ValidateArgs) -> Result<u8, Exit> {
    let dir = a.dir.clone().or_else(|| cli.regions.clone());
    let what = dir.as_ref().map_or_else(
        || "validate: loading the embedded data".to_owned(),
        |d| format!("validate: loading and checking {}", d.display()),
    );
    let loading = Progress::spinner(&what, cli.quiet);
    let result = Snapshot::load(&source(&dir));
    loading.finish();
    let (ok, problems, summary) = match &result {
        Ok(s) => {
            let st = s.index.stats();
            (
                true,
                Vec::new(),
                json!({
                    "version": s.version,
                    "territories": s.territories.len(),
                    "vertices": st.vertices,
                    "index_leaves": st.leaves,
                    "index_edge_refs": st.edge_refs,
                    "index_mb": st.heap_bytes / 1_000_000,
                    "groups": s.groups.len(),
                    "deals": s.licenses.deal_count(),
                    "tracks": s.licenses.track_count(),
                    "build_ms": s.build_time.as_millis() as u64,
                }),
            )
        }
        Err(SnapshotError::Invalid(p)) => (false, p.clone(), json!(null)),
        Err(e @ SnapshotError::Io { .. }) => (
            false,
            vec![Problem::new(e.to_string(), None, "cannot read")],
            json!(null),
        ),
    };
    if a.json {
        println!(
            "{}",
            json!({"ok": ok, "problems": problems, "summary": summary})
        );
    } else if ok {
        println!("ok: {summary}");
    } else {
        for p in &problems {
            println!("{p}");
        }
        eprintln!("regiongate: {} problem(s) found", problems.len());
    }
    Ok(if ok { 0 } else { 1 })
}

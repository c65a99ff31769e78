//! The `regiongate` command: parses flags and calls the library.
//!
//! Exit codes: 0 success (or allow), 1 deny / need-precise-location / problems found,
//! 2 bad input on the command line, 3 the data could not be loaded, 64 bad configuration.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use regiongate::config::{Config, LogFormat, Overrides, Steering};
use regiongate::license::{Tier, UseType};
use regiongate::problem::Problem;
use regiongate::progress::{Progress, Unit};
use regiongate::server::App;
use regiongate::server::metrics::Metrics;
use regiongate::{DataSource, Snapshot, SnapshotError};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;
use cli::ask::{run_check, run_where};
use cli::ops::{run_diff, run_import_ddex, run_import_wigle, run_map};

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
    /// Envoy gRPC ext_authz listener, ADDR:PORT (HTTP/2; off unless given here or as
    /// `grpc_listen` in the file).
    #[arg(long, value_name = "ADDR:PORT")]
    grpc_listen: Option<String>,
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
    Snapshot::load(&source(dir)).map_err(load_failed)
}

fn load_failed(e: SnapshotError) -> Exit {
    Exit(3, anyhow::Error::new(e).context("cannot load the data"))
}

/// Loads the data with a bar labelled `what` over the bytes of its files (see
/// [`regiongate::progress`]: drawn only on a terminal and without `quiet`).
fn load_shown(source: &DataSource, what: &str, quiet: bool) -> Result<Snapshot, SnapshotError> {
    let progress = Progress::new(what, None, Unit::Bytes, quiet);
    let loaded = Snapshot::load_with_progress(source, &progress);
    progress.finish();
    loaded
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
        // The reader closed the pipe (`regiongate where --batch … | head`): its choice.
        Err(Exit(_, e)) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(Exit(code, e)) => {
            eprintln!("regiongate: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Whether an error comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` to stdout (no newline added). A reader that closed the pipe early
/// (`regiongate diff A B | head`) is not an error: the rest of the output is dropped and the
/// command ends with its own status; any other write error is exit status 1. (`println!`
/// would panic on the closed pipe.)
fn print_out(text: &str) -> Result<(), Exit> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Exit(1, e.into())),
        _ => Ok(()),
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
        grpc_listen: a.grpc_listen.clone(),
        regions: cli.regions.clone(),
        log_format: a.log_format.clone(),
    };
    let config = Config::load(text.as_deref(), |k| std::env::var(k).ok(), flags)
        .map_err(|e| Exit(EXIT_CONFIG, e.into()))?;
    init_logging(config.log_format);
    let snapshot = Snapshot::load(&source(&config.regions))
        .map_err(|e| Exit(3, anyhow::Error::new(e).context("cannot load the data")))?;
    if a.dry_run {
        print_out(&format!(
            "{}\n",
            json!({"listen": config.listen.to_string(), "admin_listen": config.admin_listen.to_string(), "grpc_listen": config.grpc_listen.map(|a| a.to_string()), "mode": format!("{:?}", config.mode).to_lowercase(),
                   "data_version": snapshot.version, "territories": snapshot.territories.len(), "tracks": snapshot.licenses.track_count(), "deals": snapshot.licenses.deal_count()})
        ))?;
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
    // The gRPC listener's connections run on the public shards too.
    let grpc_runtimes = public_runtimes.clone();
    let public: Vec<regiongate::server::PublicShard> = listeners
        .into_iter()
        .zip(public_runtimes)
        .map(|(listener, runtime)| regiongate::server::PublicShard { listener, runtime })
        .collect();
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    let grpc = match config.grpc_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (grpc_listen)"))?,
        ),
        None => None,
    };
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
        grpc = %grpc.as_ref().and_then(|l| l.local_addr().ok()).map_or("-".to_owned(), |a| a.to_string()),
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
    // [grants] Watch the grant key directory on its own (keys also reload with the data).
    let _key_watcher = match app.grants.settings() {
        Some(g) if app.config.watch => {
            let keys_app = app.clone();
            Some(
                regiongate::grant::keys::watch(&g.keys_dir, move || {
                    keys_app.grants.reload_keys("key watch");
                })
                .with_context(|| format!("cannot watch {}", g.keys_dir.display()))?,
            )
        }
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
    // One shutdown signal for both: the gRPC listener drains alongside the others.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let grpc = grpc.map(|listener| {
        let mut stopped = stopped.clone();
        tokio::spawn(regiongate::server::grpc::run(
            app.clone(),
            listener,
            grpc_runtimes,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    });
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    regiongate::server::run_sharded(app, public, &plan.cpus, admin, shutdown).await?;
    if let Some(grpc) = grpc {
        grpc.await.context("grpc listener")??;
    }
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

fn run_validate(cli: &Cli, a: &ValidateArgs) -> Result<u8, Exit> {
    let dir = a.dir.clone().or_else(|| cli.regions.clone());
    let what = dir.as_ref().map_or_else(
        || "validate: embedded data".to_owned(),
        |d| format!("validate: {}", d.display()),
    );
    let result = load_shown(&source(&dir), &what, cli.quiet);
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
        print_out(&format!(
            "{}\n",
            json!({"ok": ok, "problems": problems, "summary": summary})
        ))?;
    } else if ok {
        print_out(&format!("ok: {summary}\n"))?;
    } else {
        for p in &problems {
            print_out(&format!("{p}\n"))?;
        }
        eprintln!("regiongate: {} problem(s) found", problems.len());
    }
    Ok(if ok { 0 } else { 1 })
}

//! The `regiongate` command: parses flags and calls the library.
//!
//! Exit codes: 0 success (or allow), 1 deny / need-precise-location / problems found,
//! 2 bad input on the command line, 3 the data could not be loaded.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use regiongate::decide::{Question, Verdict, decide};
use regiongate::license::{Tier, UseType};
use regiongate::privacy::GpsPoint;
use regiongate::problem::Problem;
use regiongate::{DataSource, Snapshot, SnapshotError};
use serde_json::json;
use std::io::{BufRead, BufWriter, Write};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the territories containing a point, the country first, one per line.
    Where(WhereArgs),
    /// Decide whether a track may be played at a point or in a country; prints JSON.
    Check(CheckArgs),
    /// Check region and licence files and report every problem.
    Validate(ValidateArgs),
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
    /// Latitude of the listener.
    #[arg(
        long,
        allow_hyphen_values = true,
        requires = "lon",
        conflicts_with = "country"
    )]
    lat: Option<f64>,
    /// Longitude of the listener.
    #[arg(long, allow_hyphen_values = true, requires = "lat")]
    lon: Option<f64>,
    /// Country (territory id) of the listener instead of a point.
    #[arg(long)]
    country: Option<String>,
    /// Decide as of this RFC 3339 time instead of now.
    #[arg(long)]
    at: Option<DateTime<Utc>>,
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
        Command::Where(a) => run_where(&cli, a),
        Command::Check(a) => run_check(&cli, a),
        Command::Validate(a) => run_validate(&cli, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Exit(code, e)) => {
            eprintln!("regiongate: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn bad_input(e: anyhow::Error) -> Exit {
    Exit(2, e)
}

fn run_where(cli: &Cli, a: &WhereArgs) -> Result<u8, Exit> {
    let snap = load(&cli.regions)?;
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
    batch(&snap).map_err(|e| Exit(1, e))
}

/// Streams `lat,lon` lines to `lat,lon,country,territories` lines in constant memory.
fn batch(snap: &Snapshot) -> Result<u8> {
    let stdin = std::io::stdin().lock();
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
    let (hits, source) = match (a.lat, a.lon, &a.country) {
        (Some(lat), Some(lon), None) => {
            let p = GpsPoint::new(lat, lon).map_err(|e| bad_input(e.into()))?;
            (snap.index.locate(p.lon_lat()), "gps")
        }
        (None, None, Some(cc)) => {
            let Some(t) = snap.territories.id(cc) else {
                return Err(bad_input(anyhow::anyhow!("unknown territory {cc:?}")));
            };
            (std::iter::once(t).collect(), "country")
        }
        _ => {
            return Err(bad_input(anyhow::anyhow!(
                "give --lat and --lon, or --country"
            )));
        }
    };
    let q = Question {
        track: &a.track,
        use_type: a.use_type,
        tier: a.tier,
    };
    let d = decide(&snap.licenses, &q, &hits, now);
    let code = |t| snap.territories.code(t);
    let out = json!({
        "track": a.track,
        "use": a.use_type.as_str(),
        "tier": a.tier.as_str(),
        "playable": d.verdict == Verdict::Allow,
        "decision": d.verdict.as_str(),
        "reason": d.reason.as_str(),
        "territory": d.territory.map(code),
        "territories": hits.iter().map(|&t| code(t)).collect::<Vec<_>>(),
        "source": source,
        "deal": d.deal.map(|id| snap.licenses.deal(id).id.to_string()),
        "valid_until": d.valid_until.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data_version": snap.version,
    });
    println!("{out}");
    Ok(if d.verdict == Verdict::Allow { 0 } else { 1 })
}

fn run_validate(cli: &Cli, a: &ValidateArgs) -> Result<u8, Exit> {
    let dir = a.dir.clone().or_else(|| cli.regions.clone());
    let result = Snapshot::load(&source(&dir));
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

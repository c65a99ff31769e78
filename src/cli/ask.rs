//! `where` and `check`: ask the data about a place or a request, from the command line.

use crate::{
    CheckArgs, Cli, Exit, WhereArgs, bad_input, load, load_failed, load_shown, print_out, source,
};
use anyhow::{Context, Result};
use chrono::Utc;
use regiongate::Snapshot;
use regiongate::decide::{Policy, Question, Source, Verdict, decide, decide_with_evidence};
use regiongate::locate::{self, hints};
use regiongate::privacy::ClientIp;
use regiongate::privacy::GpsPoint;
use regiongate::progress::{Progress, Unit};
use serde_json::json;
use std::io::{BufRead, BufWriter, Write};

pub(crate) fn run_where(cli: &Cli, a: &WhereArgs) -> Result<u8, Exit> {
    let snap = load_shown(
        &source(&cli.regions),
        "loading the data",
        !a.batch || cli.quiet,
    )
    .map_err(load_failed)?;
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

pub(crate) fn run_check(cli: &Cli, a: &CheckArgs) -> Result<u8, Exit> {
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
            let ev =
                regiongate::gate::gather(&snap, client.as_ref(), &hints::Hints { gps, cell, wifi });
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
    print_out(&format!("{out}\n"))?;
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

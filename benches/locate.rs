#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! Location resolution on the embedded default data:
//!
//! * `ip/maxminddb-floor`: a plain `maxminddb` lookup of `country_code` on the same file: the
//!   floor any IP evidence costs;
//! * `ip/regiongate`: the IP evidence lookup (special ranges, layout-aware decode);
//! * `cell/mcc` and `cell/db`: MCC/MNC → countries, and a cell database of 1 M synthetic cells;
//! * `cell/load-5m`: loading a 5 M-row OpenCellID-format CSV;
//! * `wifi/parse-10` and `wifi/estimate-10`: a `Wifi-Hint` of 10 access points, and the
//!   position estimate from a database of 1 M synthetic access points;
//! * `decide/full`: gather IP + GPS + cell evidence and decide under `precise_first`;
//!   `decide/full-wifi`: the same with the 10 access points instead of the GPS fix.
//!
//! Run: `cargo bench --bench locate`. Figures go to `benches/README.md`.

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regiongate::decide::{Policy, Question, decide_with_evidence};
use regiongate::license::{Tier, UseType};
use regiongate::locate::cell::CellDb;
use regiongate::locate::hints::{GpsLimits, Hints, check_cell, check_gps};
use regiongate::locate::{ip::is_special, wifi};
use regiongate::privacy::ClientIp;
use regiongate::{DataSource, Snapshot};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

const N: usize = 1000;

fn public_ips() -> Vec<IpAddr> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut out = Vec::with_capacity(N);
    while out.len() < N {
        let ip = IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>()));
        if !is_special(ip) {
            out.push(ip);
        }
    }
    out
}

fn synthetic_cells(rows: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut csv = String::with_capacity(rows * 80);
    csv.push_str("radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n");
    for i in 0..rows {
        let (lat, lon): (f32, f32) = (rng.gen_range(-60.0..70.0), rng.gen_range(-180.0..180.0));
        csv.push_str(&format!(
            "LTE,262,{},{},{},,{lon:.5},{lat:.5},{},3,1,1459692342,1459692342,0\n",
            i % 7,
            i % 60000,
            i,
            rng.gen_range(100..5000)
        ));
    }
    csv.into_bytes()
}

/// Access points per site, and sites, of the synthetic access-point database.
const APS_PER_SITE: usize = 10;
const SITES: usize = 100_000;

/// Sites in DE/AT/CH and around them (as the GPS fixes of `decide/full`), 10 access points
/// within ~50 m of each, heard up to 100 m: `(csv, sites)`.
fn synthetic_aps() -> (Vec<u8>, Vec<(f64, f64)>) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut csv = String::with_capacity(SITES * APS_PER_SITE * 40);
    csv.push_str("bssid,lat,lon,range_m\n");
    let mut sites = Vec::with_capacity(SITES);
    for s in 0..SITES {
        let (lat, lon): (f64, f64) = (rng.gen_range(47.3..54.9), rng.gen_range(6.0..14.9));
        sites.push((lat, lon));
        for a in 0..APS_PER_SITE {
            let (dy, dx): (f64, f64) = (
                rng.gen_range(-0.0004..0.0004),
                rng.gen_range(-0.0006..0.0006),
            );
            csv.push_str(&format!(
                "{:012x},{:.6},{:.6},100\n",
                0x0000_5e00_0000_u64 + (s * APS_PER_SITE + a) as u64,
                lat + dy,
                lon + dx
            ));
        }
    }
    (csv.into_bytes(), sites)
}

/// The `Wifi-Hint` of site `s`: its 10 access points, signal strengths -45 to -90 dBm.
fn wifi_hint(s: usize) -> String {
    (0..APS_PER_SITE)
        .map(|a| {
            let mac = 0x0000_5e00_0000_u64 + (s * APS_PER_SITE + a) as u64;
            let m = format!("{mac:012x}");
            format!(
                "{}:{}:{}:{}:{}:{}@-{}",
                &m[0..2],
                &m[2..4],
                &m[4..6],
                &m[6..8],
                &m[8..10],
                &m[10..12],
                45 + 5 * a
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn bench(c: &mut Criterion) {
    let mut world = Snapshot::load(&DataSource::Embedded).expect("embedded data");
    let ips = public_ips();
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/regions/ip/geoip.mmdb"
    ))
    .expect("mmdb");
    let floor = maxminddb::Reader::from_source(bytes).expect("reader");
    let db = world.ip.as_ref().expect("ip db");

    let mut g = c.benchmark_group("ip");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("maxminddb-floor", |b| {
        b.iter(|| {
            for ip in &ips {
                let r = floor.lookup(*ip).expect("lookup");
                black_box(
                    r.decode_path::<&str>(&maxminddb::path!["country_code"])
                        .expect("decode"),
                );
            }
        })
    });
    g.bench_function("regiongate", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(db.lookup(&ClientIp::new(*ip)).expect("lookup"));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cell");
    g.throughput(Throughput::Elements(N as u64));
    let hints: Vec<_> = (0..N)
        .map(|i| {
            check_cell(
                ["262", "234", "310", "505"][i % 4],
                ["01", "10", "260", "10"][i % 4],
                Some("lte"),
                Some("7"),
                Some(&i.to_string()),
            )
            .expect("hint")
        })
        .collect();
    g.bench_function("mcc", |b| {
        b.iter(|| {
            for h in &hints {
                black_box(world.mcc.countries(h));
            }
        })
    });
    let (cells, _) = CellDb::load(&synthetic_cells(1_000_000)[..]).expect("cells");
    g.bench_function("db", |b| {
        b.iter(|| {
            for h in &hints {
                black_box(cells.fix(h));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cell-load");
    g.sample_size(10);
    let five_m = synthetic_cells(5_000_000);
    g.throughput(Throughput::Elements(5_000_000));
    g.bench_function("load-5m", |b| {
        b.iter(|| black_box(CellDb::load(&five_m[..]).expect("load").0.len()))
    });
    g.finish();

    let mut g = c.benchmark_group("wifi");
    g.throughput(Throughput::Elements(N as u64));
    let (aps_csv, _) = synthetic_aps();
    let aps = wifi::ApDb::load("wifi/aps.csv", &aps_csv).expect("synthetic aps");
    drop(aps_csv);
    let wifi_hints: Vec<String> = (0..N).map(|i| wifi_hint(i * (SITES / N))).collect();
    let scans: Vec<wifi::WifiScan> = wifi_hints
        .iter()
        .map(|h| wifi::parse_wifi_hint(h).expect("hint"))
        .collect();
    g.bench_function("parse-10", |b| {
        b.iter(|| {
            for h in &wifi_hints {
                black_box(wifi::parse_wifi_hint(h).expect("hint"));
            }
        })
    });
    g.bench_function("estimate-10", |b| {
        b.iter(|| {
            for s in &scans {
                black_box(wifi::estimate(&aps, s).expect("estimate"));
            }
        })
    });
    g.finish();
    world.aps = Some(std::sync::Arc::new(aps));

    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(N as u64));
    let now = Utc::now();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let gps: Vec<_> = (0..N)
        .map(|_| {
            check_gps(
                rng.gen_range(47.3..54.9),
                rng.gen_range(6.0..14.9),
                20.0,
                now.timestamp(),
                now.timestamp(),
                &GpsLimits::default(),
            )
            .expect("gps")
        })
        .collect();
    let policy = Policy::default();
    let q = Question {
        track: "QZNW52400010",
        use_type: UseType::OnDemandStream,
        tier: Tier::Premium,
    };
    g.bench_function("full", |b| {
        b.iter(|| {
            for i in 0..N {
                let client = ClientIp::new(ips[i]);
                let hints = Hints {
                    gps: Some(gps[i]),
                    cell: Some(hints[i]),
                    wifi: None,
                };
                let ev = regiongate::gate::gather(&world, Some(&client), &hints);
                black_box(decide_with_evidence(&world, &policy, &q, &ev, now));
            }
        })
    });
    g.bench_function("full-wifi", |b| {
        b.iter(|| {
            for i in 0..N {
                let client = ClientIp::new(ips[i]);
                let hints = Hints {
                    gps: None,
                    cell: Some(hints[i]),
                    wifi: Some(scans[i].clone()),
                };
                let ev = regiongate::gate::gather(&world, Some(&client), &hints);
                black_box(decide_with_evidence(&world, &policy, &q, &ev, now));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

//! The accuracy-disc query (`TerritoryIndex::territories_within`) against a brute-force
//! reference on the default world: every edge of every ring, the geodesic distance from the
//! centre to the edge minimised by sampling and golden-section search (a different algorithm
//! from the index's bounds and branch and bound), on random discs worldwide, near small
//! territories and enclaves, across ±180° and at the poles, for radii of 10 m to 50 km.

use crate::util::world;
use geo::{Distance, Geodesic, Point};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regiongate::territory::geojson;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

/// A ring of the default data: territory code, bounding box `[x0, y0, x1, y1]`, vertices.
struct Ring {
    code: String,
    bbox: [f64; 4],
    verts: Vec<[f64; 2]>,
}

fn parse_into(text: &str, out: &mut Vec<Ring>) {
    let (ts, problems) = geojson::parse(text);
    assert!(problems.is_empty(), "{problems:?}");
    for t in ts {
        for r in t.rings {
            let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
            for v in &r {
                b = [
                    b[0].min(v[0]),
                    b[1].min(v[1]),
                    b[2].max(v[0]),
                    b[3].max(v[1]),
                ];
            }
            out.push(Ring {
                code: t.id.to_string(),
                bbox: b,
                verts: r,
            });
        }
    }
}

/// Every ring of the countries and custom territories of the default data.
fn rings() -> &'static Vec<Ring> {
    static R: OnceLock<Vec<Ring>> = OnceLock::new();
    R.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/regions");
        let gz = std::fs::read(format!("{dir}/countries.geojson.gz")).expect("countries file");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gzip");
        let mut out = Vec::new();
        parse_into(&text, &mut out);
        for e in std::fs::read_dir(format!("{dir}/custom")).expect("custom dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "geojson") {
                parse_into(&std::fs::read_to_string(&p).expect("custom file"), &mut out);
            }
        }
        out
    })
}

fn geodesic(a: [f64; 2], b: [f64; 2]) -> f64 {
    Geodesic.distance(Point::new(a[0], a[1]), Point::new(b[0], b[1]))
}

/// Minimum geodesic distance from `c` to the lon/lat segment `a`–`b` (`b` already on the same
/// side of ±180° as `a`): samples every ~20 m, then golden-section search around the best.
fn segment_distance(c: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let at = |t: f64| [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
    let f = |t: f64| geodesic(c, at(t));
    let len = geodesic(a, b).max(1.0) * 1.1 + 1.0;
    let n = ((len / 20.0).ceil() as usize).clamp(2, 200_000);
    let (mut best_t, mut best) = (0.0, f(0.0));
    for i in 1..=n {
        let t = i as f64 / n as f64;
        let d = f(t);
        if d < best {
            (best_t, best) = (t, d);
        }
    }
    let (mut lo, mut hi) = (
        (best_t - 1.0 / n as f64).max(0.0),
        (best_t + 1.0 / n as f64).min(1.0),
    );
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (m1, m2) = (hi - g * (hi - lo), lo + g * (hi - lo));
        if f(m1) < f(m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    best.min(f(0.5 * (lo + hi)))
}

/// Per territory, the smallest distance from `c` (`[lon, lat]`) to its border, for every
/// territory whose border might come within `r`: a plain scan of every ring with a generous
/// box, then every edge in the box.
fn reference(c: [f64; 2], r: f64) -> BTreeMap<String, f64> {
    let dlat = r / 110_000.0 * 1.02 + 1e-6;
    let top = c[1].abs() + dlat;
    let dlon = if top >= 89.5 {
        400.0
    } else {
        r / (111_000.0 * top.to_radians().cos()) * 1.02 + 1e-6
    };
    // The circular gap (degrees) from the centre's longitude to an interval [x0, x1].
    let lon_near = |x0: f64, x1: f64| {
        let gap = if (x0..=x1).contains(&c[0]) {
            0.0
        } else {
            (x0 - c[0])
                .rem_euclid(360.0)
                .min((c[0] - x1).rem_euclid(360.0))
        };
        dlon >= 180.0 || gap <= dlon
    };
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for ring in rings() {
        let b = ring.bbox;
        if b[3] < c[1] - dlat || b[1] > c[1] + dlat || !lon_near(b[0], b[2]) {
            continue;
        }
        for w in ring.verts.windows(2) {
            let (a, mut e) = (w[0], w[1]);
            let (y0, y1) = (a[1].min(e[1]), a[1].max(e[1]));
            if y1 < c[1] - dlat || y0 > c[1] + dlat || !lon_near(a[0].min(e[0]), a[0].max(e[0])) {
                continue;
            }
            if e[0] - a[0] > 180.0 {
                e[0] -= 360.0;
            } else if a[0] - e[0] > 180.0 {
                e[0] += 360.0;
            }
            let d = segment_distance(c, a, e);
            let slot = out.entry(ring.code.clone()).or_insert(f64::MAX);
            *slot = slot.min(d);
        }
    }
    out
}

/// Codes the index says the disc touches.
fn touched(c: [f64; 2], r: f64) -> Vec<String> {
    let w = world();
    w.index
        .territories_within(c, r)
        .iter()
        .map(|&t| w.territories.code(t).to_owned())
        .collect()
}

fn inside(c: [f64; 2]) -> Vec<String> {
    let w = world();
    w.index
        .locate(c)
        .iter()
        .map(|&t| w.territories.code(t).to_owned())
        .collect()
}

/// Checks one disc against the reference; returns how many territories it touches.
fn check(c: [f64; 2], r: f64) -> usize {
    let got = touched(c, r);
    let at_centre = inside(c);
    let reference = reference(c, r);
    for code in &at_centre {
        assert!(got.contains(code), "{code} contains the centre: {got:?}");
    }
    for (code, &d) in &reference {
        // The reference's own error is millimetres; the index errs towards touching by at
        // most 0.5 m.
        if d <= r - 0.01 {
            assert!(
                got.contains(code),
                "r={r}: {code} at {d:.3} m missing: {got:?}"
            );
        }
    }
    for code in &got {
        if at_centre.contains(code) {
            continue;
        }
        let d = reference.get(code).copied().unwrap_or(f64::MAX);
        assert!(
            d <= r + 0.51,
            "r={r}: {code} reported but its border is {d:.3} m away"
        );
    }
    got.len()
}

/// Log-uniform radius between 10 m and 50 km.
fn radius(rng: &mut ChaCha8Rng) -> f64 {
    10f64.powf(rng.gen_range(1.0..50_000f64.log10()))
}

/// A point `d` metres from `c` on azimuth `az` (degrees).
fn offset(c: [f64; 2], az: f64, d: f64) -> [f64; 2] {
    use geo::Destination;
    let p = Geodesic.destination(Point::new(c[0], c[1]), az, d);
    [p.x(), p.y()]
}

#[test]
fn discs_near_borders_worldwide_agree_with_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261207);
    let rs = rings();
    let (mut discs, mut several) = (0, 0);
    while discs < 150 {
        // A centre near a random border vertex (the hard case), at up to 1.5 radii from it.
        let ring = &rs[rng.gen_range(0..rs.len())];
        let v = ring.verts[rng.gen_range(0..ring.verts.len())];
        if v[1].abs() > 85.0 {
            continue;
        }
        let r = radius(&mut rng);
        let c = offset(v, rng.gen_range(0.0..360.0), rng.gen_range(0.0..1.5) * r);
        if check(c, r) > 1 {
            several += 1;
        }
        discs += 1;
    }
    assert!(
        several >= 40,
        "only {several} of {discs} discs touched several territories"
    );
}

#[test]
fn uniform_random_discs_agree_with_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..60 {
        let c = [
            rng.gen_range(-180.0..180.0),
            rng.gen_range(-1.0f64..1.0).asin().to_degrees(),
        ];
        check(c, radius(&mut rng));
    }
}

#[test]
fn discs_near_small_territories_and_enclaves_agree_with_brute_force() {
    // Microstates and small territories: centres near a vertex of their own border. Enclaves
    // (whose code is the surrounding country's neighbour's): centres near a point inside.
    let small = ["VA", "SM", "MC", "AD", "LI", "GI", "HK", "MO"];
    let enclaves: &[(&str, f64, f64)] = &[
        ("Büsingen", 47.6964, 8.6906),
        ("Llívia", 42.4636, 1.9714),
        ("Campione", 45.9686, 8.9711),
        ("Baarle", 51.4387, 4.9233),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for code in small {
        let own: Vec<&Ring> = rings().iter().filter(|r| r.code == code).collect();
        assert!(!own.is_empty(), "{code} in the data");
        let mut several = 0;
        for _ in 0..8 {
            let ring = own[rng.gen_range(0..own.len())];
            let v = ring.verts[rng.gen_range(0..ring.verts.len())];
            let r = radius(&mut rng);
            let c = offset(v, rng.gen_range(0.0..360.0), rng.gen_range(0.0..1.5) * r);
            if check(c, r) > 1 {
                several += 1;
            }
        }
        assert!(
            several >= 4,
            "{code}: only {several} of 8 discs crossed a border"
        );
    }
    for &(name, lat, lon) in enclaves {
        let mut several = 0;
        for _ in 0..8 {
            let r = 10f64.powf(rng.gen_range(2.0..50_000f64.log10()));
            let c = offset(
                [lon, lat],
                rng.gen_range(0.0..360.0),
                rng.gen_range(0.0..500.0),
            );
            if check(c, r) > 1 {
                several += 1;
            }
        }
        assert!(
            several >= 4,
            "{name}: only {several} of 8 discs crossed a border"
        );
    }
}

#[test]
fn a_disc_holding_a_whole_microstate_touches_it() {
    // Centres in the surrounding country, a few km from the microstate, radius larger than the
    // distance to its far side: no border of the microstate crosses the circle, all of it is
    // inside.
    for (lat, lon, r, micro, around) in [
        (41.8902, 12.4922, 6_000.0, "VA", "IT"), // the Colosseum, 3.3 km from the Vatican
        (43.90, 12.60, 25_000.0, "SM", "IT"),
        (43.70, 7.35, 12_000.0, "MC", "FR"),
        (47.20, 9.62, 40_000.0, "LI", "AT"),
    ] {
        let got = touched([lon, lat], r);
        assert!(got.contains(&micro.to_owned()), "{micro}: {got:?}");
        assert!(got.contains(&around.to_owned()), "{around}: {got:?}");
        assert!(!inside([lon, lat]).contains(&micro.to_owned()));
        check([lon, lat], r);
    }
    // And a disc just too small to reach the Vatican from the Colosseum does not.
    let got = touched([12.4922, 41.8902], 2_500.0);
    assert!(!got.contains(&"VA".to_owned()), "{got:?}");
}

#[test]
fn discs_across_the_antimeridian_agree_with_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(180);
    let mut across = 0;
    for i in 0..60 {
        let lat = if i % 2 == 0 {
            rng.gen_range(-20.0..-15.0) // Fiji
        } else {
            rng.gen_range(64.0..68.0) // Chukotka
        };
        let lon = if rng.gen_bool(0.5) {
            rng.gen_range(179.9..180.0)
        } else {
            rng.gen_range(-180.0..-179.9)
        };
        let r = rng.gen_range(1_000.0..50_000.0);
        check([lon, lat], r);
        // A territory reached only across the meridian: its nearest border is on the other
        // side.
        let own: Vec<String> = inside([lon, lat]);
        let got = touched([lon, lat], r);
        if got.iter().any(|c| !own.contains(c)) || (own.is_empty() && !got.is_empty()) {
            across += 1;
        }
    }
    assert!(across >= 5, "only {across} discs reached another territory");
}

#[test]
fn discs_at_the_poles_agree_with_brute_force() {
    for (lon, lat, r) in [
        (0.0, -90.0, 10_000.0),
        (45.0, -89.9, 50_000.0),
        (0.0, 90.0, 50_000.0),
        (-120.0, 89.95, 20_000.0),
        (60.0, -85.0, 50_000.0),
    ] {
        check([lon, lat], r);
    }
    let south = touched([0.0, -90.0], 10_000.0);
    assert_eq!(
        south,
        inside([0.0, -90.0]),
        "the South Pole is deep in one territory"
    );
}

#[test]
fn bad_radii_are_the_point_alone() {
    let c = [12.4534, 41.9029];
    for r in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        assert_eq!(touched(c, r), inside(c), "r={r}");
    }
    assert!(touched([200.0, 0.0], 1_000.0).is_empty());
}

// ---- Decisions near small territories, for every kind of evidence with a radius -------------

mod decisions {
    use super::{inside, offset};
    use crate::util::at;
    use mmdb_writer::{Value, Writer};
    use regiongate::Snapshot;
    use regiongate::decide::{
        Decision, Policy, Question, Reason, Source, UncertainFixOutcome, Verdict,
        decide_with_evidence,
    };
    use regiongate::license::{Tier, UseType};
    use regiongate::locate::hints;
    use regiongate::privacy::ClientIp;
    use std::sync::OnceLock;

    const NOW: &str = "2026-06-15T12:00:00Z";

    /// Small territory, its surroundings, a point inside it, the bearing to walk out of it,
    /// and the mobile country code of the surroundings.
    const PAIRS: [(&str, &str, [f64; 2], f64, &str); 5] = [
        ("VA", "IT", [12.4534, 41.9029], 90.0, "222"),
        ("SM", "IT", [12.4473, 43.9356], 90.0, "222"),
        ("MC", "FR", [7.4246, 43.7384], 0.0, "208"),
        ("GI", "ES", [-5.3536, 36.1408], 0.0, "214"),
        ("HK", "CN", [114.1694, 22.3193], 0.0, "460"),
    ];

    /// A point in the surroundings about 1 km beyond the small territory's border: walk out
    /// of it in 50 m steps, then 1 km on.
    fn beside(micro: &str, start: [f64; 2], bearing: f64) -> [f64; 2] {
        let mut p = start;
        for _ in 0..2_000 {
            if !inside(p).contains(&micro.to_owned()) {
                return offset(p, bearing, 1_000.0);
            }
            p = offset(p, bearing, 50.0);
        }
        panic!("never left {micro}");
    }

    fn city(country: &str, p: [f64; 2], acc_km: u16) -> Value {
        Value::map([
            ("country", Value::map([("iso_code", Value::from(country))])),
            (
                "location",
                Value::map([
                    ("latitude", Value::Double(p[1])),
                    ("longitude", Value::Double(p[0])),
                    ("accuracy_radius", Value::U16(acc_km)),
                ]),
            ),
        ])
    }

    /// The default world with a track per pair licensed in the surroundings only
    /// (`T_IT`, ...), a City database with, per pair `i`, `81.0.i.0/24` at the point beside
    /// the small territory with a 5 km radius and `81.1.i.0/24` 1 km radius there, and a cell
    /// per pair (cell id `i + 1`, range 3 km; `i + 101`, range 50 m) at that point.
    fn world() -> &'static (Snapshot, Vec<[f64; 2]>) {
        static W: OnceLock<(Snapshot, Vec<[f64; 2]>)> = OnceLock::new();
        W.get_or_init(|| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/regions");
            let read = |f: &str| std::fs::read(format!("{dir}/{f}")).expect("data file");
            let points: Vec<[f64; 2]> = PAIRS
                .iter()
                .map(|&(m, _, p, b, _)| beside(m, p, b))
                .collect();
            let mut licences = String::new();
            let mut ip = Writer::new("GeoIP2-City");
            let mut cells = String::new();
            let mut seen = std::collections::BTreeSet::new();
            for (i, (&(_, big, _, _, mcc), p)) in PAIRS.iter().zip(&points).enumerate() {
                if seen.insert(big) {
                    licences.push_str(&format!(
                    "[[dealset]]\nselector = {{ track = \"T_{big}\" }}\nupdated = \"2025-01-01\"\n\
                     deals = [{{ id = \"{big}\", territories = [\"{big}\"], start = \"2020-01-01\", \
                     uses = [\"on_demand_stream\"] }}]\n"
                    ));
                }
                for (net, km) in [(format!("81.0.{i}.0/24"), 5), (format!("81.1.{i}.0/24"), 1)] {
                    ip.insert_value(net.parse::<ipnet::IpNet>().expect("net"), city(big, *p, km))
                        .expect("insert");
                }
                for (cell, range) in [(i + 1, 3_000), (i + 101, 50)] {
                    cells.push_str(&format!(
                        "LTE,{mcc},1,100,{cell},,{},{},{range},1,1,0,0,0\n",
                        p[0], p[1]
                    ));
                }
            }
            let files = vec![
                ("countries.geojson.gz", read("countries.geojson.gz")),
                ("groups.toml", read("groups.toml")),
                ("mcc-mnc.csv", read("mcc-mnc.csv")),
                ("licenses/discs.toml", licences.into_bytes()),
                ("ip/geoip.mmdb", ip.to_bytes().expect("mmdb")),
                ("cells.csv", cells.into_bytes()),
            ];
            (Snapshot::from_memory(files).expect("world"), points)
        })
    }

    struct Ask {
        ip: Option<String>,
        gps: Option<([f64; 2], f64)>,
        cell: Option<(&'static str, usize)>,
    }

    fn ask(track: &str, policy: &Policy, a: Ask) -> Decision {
        let (s, _) = world();
        let now = at(NOW);
        let client = a.ip.map(|i| ClientIp::new(i.parse().expect("ip")));
        let gps = a.gps.map(|(p, acc)| {
            hints::check_gps(
                p[1],
                p[0],
                acc,
                now.timestamp(),
                now.timestamp(),
                &hints::GpsLimits::default(),
            )
            .expect("gps")
        });
        let cell = a.cell.map(|(mcc, id)| {
            hints::check_cell(mcc, "01", Some("lte"), Some("100"), Some(&id.to_string()))
                .expect("cell")
        });
        let hints = hints::Hints {
            gps,
            cell,
            wifi: None,
        };
        let ev = regiongate::gate::gather(s, client.as_ref(), &hints);
        let q = Question {
            track,
            use_type: UseType::OnDemandStream,
            tier: Tier::Premium,
        };
        decide_with_evidence(s, policy, &q, &ev, now)
    }

    fn codes(d: &Decision) -> Vec<String> {
        let (s, _) = world();
        d.touched
            .as_slice()
            .iter()
            .map(|&t| s.territories.code(t).to_owned())
            .collect()
    }

    fn gps(p: [f64; 2], acc: f64) -> Ask {
        Ask {
            ip: None,
            gps: Some((p, acc)),
            cell: None,
        }
    }

    #[test]
    fn a_gps_disc_across_a_small_territory_is_never_a_certain_answer() {
        let (_, points) = world();
        let pf = Policy::default();
        assert_eq!(
            pf.on_uncertain_fix,
            UncertainFixOutcome::Deny,
            "fails closed"
        );
        let at_point = Policy {
            on_uncertain_fix: UncertainFixOutcome::DecideAtPoint,
            ..pf
        };
        let ask_again = Policy {
            on_uncertain_fix: UncertainFixOutcome::NeedPreciseLocation,
            ..pf
        };
        for (&(micro, big, _, bearing, _), &p) in PAIRS.iter().zip(points) {
            let track = format!("T_{big}");
            assert_eq!(inside(p)[0], big, "the point beside {micro} is in {big}");
            // 1 km from the border with a 1.5 km radius: the disc reaches the small territory.
            let d = ask(&track, &pf, gps(p, 1_500.0));
            assert_eq!(
                (d.verdict, d.reason, d.source),
                (Verdict::Deny, Reason::AmbiguousLocation, Source::Gps),
                "{micro}"
            );
            let touched = codes(&d);
            assert!(
                touched.contains(&micro.to_owned()) && touched.contains(&big.to_owned()),
                "{micro}: {touched:?}"
            );
            let d = ask(&track, &ask_again, gps(p, 1_500.0));
            assert_eq!(
                (d.verdict, d.reason),
                (Verdict::NeedPreciseLocation, Reason::AmbiguousLocation)
            );
            let d = ask(&track, &at_point, gps(p, 1_500.0));
            assert_eq!((d.verdict, d.reason), (Verdict::Allow, Reason::Licensed));
            // A precise fix there is a certain allow, with nothing touched listed.
            let d = ask(&track, &pf, gps(p, 20.0));
            assert_eq!(
                (d.verdict, d.reason),
                (Verdict::Allow, Reason::Licensed),
                "{micro}"
            );
            assert!(d.touched.is_empty());
            // Inside the small territory, ~500 m from its border: a precise fix is a certain
            // deny; a disc reaching out into the licensed surroundings is not.
            let within = offset(p, bearing + 180.0, 1_500.0);
            assert_eq!(inside(within)[0], micro, "{micro}");
            let d = ask(&track, &pf, gps(within, 10.0));
            assert_eq!(
                (d.verdict, d.reason),
                (Verdict::Deny, Reason::NotLicensedInTerritory),
                "{micro}"
            );
            let d = ask(&track, &pf, gps(within, 900.0));
            assert_eq!(
                (d.verdict, d.reason),
                (Verdict::Deny, Reason::AmbiguousLocation),
                "{micro}"
            );
            let d = ask(&track, &at_point, gps(within, 900.0));
            assert_eq!(d.reason, Reason::NotLicensedInTerritory, "{micro}");
        }
    }

    #[test]
    fn city_database_and_cell_radii_count_too() {
        let (_, points) = world();
        let pf = Policy::default();
        for (i, &(micro, big, _, _, mcc)) in PAIRS.iter().enumerate() {
            let track = format!("T_{big}");
            // The IP's City point with a 5 km radius reaches the small territory: uncertain
            // IP evidence asks for a precise location.
            let d = ask(
                &track,
                &pf,
                Ask {
                    ip: Some(format!("81.0.{i}.7")),
                    gps: None,
                    cell: None,
                },
            );
            assert_eq!(
                (d.verdict, d.reason, d.source),
                (
                    Verdict::NeedPreciseLocation,
                    Reason::AmbiguousLocation,
                    Source::Ip
                ),
                "{micro}"
            );
            assert!(codes(&d).contains(&micro.to_owned()), "{micro}");
            // A known cell with a 3 km range there: the same, from the cell.
            let d = ask(
                &track,
                &pf,
                Ask {
                    ip: None,
                    gps: None,
                    cell: Some((mcc, i + 1)),
                },
            );
            assert_eq!(
                (d.verdict, d.reason, d.source),
                (
                    Verdict::NeedPreciseLocation,
                    Reason::AmbiguousLocation,
                    Source::Cell
                ),
                "{micro}"
            );
            // A 50 m cell there is certain.
            let d = ask(
                &track,
                &pf,
                Ask {
                    ip: None,
                    gps: None,
                    cell: Some((mcc, i + 101)),
                },
            );
            assert_eq!(
                (d.verdict, d.source),
                (Verdict::Allow, Source::Cell),
                "{micro}"
            );
            // The uncertain cell hands over to IP evidence; an uncertain IP point then asks.
            let d = ask(
                &track,
                &pf,
                Ask {
                    ip: Some(format!("81.0.{i}.7")),
                    gps: None,
                    cell: Some((mcc, i + 1)),
                },
            );
            assert_eq!(
                (d.verdict, d.reason),
                (Verdict::NeedPreciseLocation, Reason::AmbiguousLocation),
                "{micro}"
            );
            // A precise GPS fix beside it settles what the IP circle could not.
            let d = ask(
                &track,
                &pf,
                Ask {
                    ip: Some(format!("81.0.{i}.7")),
                    gps: Some((points[i], 20.0)),
                    cell: None,
                },
            );
            assert_eq!(
                (d.verdict, d.source),
                (Verdict::Allow, Source::Gps),
                "{micro}"
            );
        }
    }
}

//! Territory files (src/territory/geojson.rs), and loading them into a snapshot.
//!
//! Properties: never panics, never hangs; every problem message is short (it names the
//! feature and the limit, never echoes the file); territories read, printed back as GeoJSON,
//! read again to the same ids and rings (each coordinate within one unit in the last place:
//! see `same_rings`) with no problem; a small file that reads cleanly also
//! loads into a snapshot (index included), with every territory in it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::Snapshot;
use regiongate::territory::geojson::{Limits, RawTerritory, parse_with};

/// Small limits, so that the fuzzer reaches the limit checks with small inputs.
const LIMITS: Limits = Limits {
    file_bytes: 1 << 20,
    vertices_per_feature: 4_000,
    vertices_per_file: 10_000,
};

/// Most vertices of a file loaded into a whole snapshot (building the index) per run.
const SNAPSHOT_VERTICES: usize = 2_000;

/// Distance in units in the last place between two finite floats.
fn ulps(a: f64, b: f64) -> u64 {
    // Map the bit patterns onto a line on which adjacent floats are adjacent integers.
    let key = |x: f64| {
        let bits = x.to_bits() as i64;
        if bits < 0 { i64::MIN - bits } else { bits }
    };
    key(a).abs_diff(key(b))
}

/// The rings, with every coordinate equal to within one unit in the last place. serde_json's
/// default float parser is not always correctly rounded (the fuzzer found "12.431111111111111"
/// read as 12.431111111111113, one unit off); its `float_roundtrip` feature is exact but made
/// the default world's build 0.25 s slower (0.79-0.94 s → 1.03-1.22 s, measured), against a
/// 1 s target. One unit is 2e-15 degrees, about 0.2 nm on the ground.
fn same_rings(a: &[Vec<[f64; 2]>], b: &[Vec<[f64; 2]>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(ra, rb)| {
            ra.len() == rb.len()
                && ra
                    .iter()
                    .zip(rb)
                    .all(|(p, q)| ulps(p[0], q[0]) <= 1 && ulps(p[1], q[1]) <= 1)
        })
}

/// Territories as a FeatureCollection, each one Polygon holding all its rings (the even-odd
/// reading makes that the same territory). serde_json prints the shortest text that reads back
/// as the same float with a correctly rounded parser.
fn print(ts: &[RawTerritory]) -> String {
    let features: Vec<serde_json::Value> = ts
        .iter()
        .map(|t| {
            serde_json::json!({
                "type": "Feature",
                "properties": {"id": &*t.id},
                "geometry": {"type": "Polygon", "coordinates": t.rings},
            })
        })
        .collect();
    serde_json::json!({"type": "FeatureCollection", "features": features}).to_string()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (ts, problems) = parse_with(text, &LIMITS);
    for p in &problems {
        let msg = p.to_string();
        assert!(msg.len() <= 1000, "problem message of {} bytes", msg.len());
    }

    let again = print(&ts);
    let (ts2, problems2) = parse_with(&again, &Limits::default());
    assert!(
        problems2.is_empty(),
        "printed territories have problems: {problems2:?}"
    );
    assert_eq!(ts.len(), ts2.len());
    for (a, b) in ts.iter().zip(&ts2) {
        assert_eq!(a.id, b.id);
        assert!(
            same_rings(&a.rings, &b.rings),
            "rings of {:?} round trip: {:?} then {:?}",
            a.id,
            a.rings,
            b.rings
        );
    }

    let vertices: usize = ts.iter().flat_map(|t| &t.rings).map(Vec::len).sum();
    if problems.is_empty() && !ts.is_empty() && vertices <= SNAPSHOT_VERTICES {
        let snap = Snapshot::from_memory([("custom/fuzz.geojson", data.to_vec())])
            .unwrap_or_else(|e| panic!("a clean territory file does not load: {e}"));
        for t in &ts {
            let id = snap
                .territories
                .id(&t.id)
                .expect("every territory is in the snapshot");
            assert_eq!(snap.territories.code(id), &*t.id);
        }
        // The index answers exactly what the slow every-edge scan answers, on the hardest
        // points: vertices (on borders) and edge midpoints, and points just beside them.
        let points = ts
            .iter()
            .flat_map(|t| &t.rings)
            .flat_map(|r| r.windows(2))
            .take(200)
            .flat_map(|w| {
                let mid = [(w[0][0] + w[1][0]) / 2.0, (w[0][1] + w[1][1]) / 2.0];
                [w[0], mid, [mid[0] + 1e-9, mid[1]], [mid[0], mid[1] - 1e-9]]
            });
        for p in points {
            assert_eq!(
                snap.index.locate(p),
                snap.index.locate_slow(p),
                "index and slow scan disagree at {p:?}"
            );
        }
    }
});

//! Territory files (src/territory/geojson.rs), and loading them into a snapshot.
//!
//! Properties: never panics, never hangs; every problem message is short (it names the
//! feature and the limit, never echoes the file); territories read, printed back as GeoJSON,
//! read again to the same ids and rings with no problem; a small file that reads cleanly also
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

/// Territories as a FeatureCollection, each one Polygon holding all its rings (the even-odd
/// reading makes that the same territory). serde_json prints floats so they read back exactly.
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
        assert_eq!(a.rings, b.rings, "rings of {:?} round trip", a.id);
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

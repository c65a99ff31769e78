//! Shared helpers: the default world loaded once, small handmade worlds, time parsing.

use chrono::{DateTime, Utc};
use regiongate::decide::{Decision, Question, decide};
use regiongate::license::{Tier, UseType};
use regiongate::{DataSource, Snapshot};
use std::sync::OnceLock;

/// The embedded default data, loaded once for the whole test binary.
pub fn world() -> &'static Snapshot {
    static W: OnceLock<Snapshot> = OnceLock::new();
    W.get_or_init(|| Snapshot::load(&DataSource::Embedded).expect("the embedded data loads"))
}

/// Territory codes containing a point (lat, lon), country first.
pub fn codes_at(s: &Snapshot, lat: f64, lon: f64) -> Vec<String> {
    s.index
        .locate([lon, lat])
        .iter()
        .map(|&t| s.territories.code(t).to_owned())
        .collect()
}

/// An RFC 3339 time.
pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("RFC 3339 time")
}

/// A square territory feature `[x0, y0, size]` in GeoJSON.
pub fn square_feature(id: &str, x0: f64, y0: f64, size: f64) -> String {
    let (x1, y1) = (x0 + size, y0 + size);
    format!(
        r#"{{"type":"Feature","properties":{{"id":"{id}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#
    )
}

/// A FeatureCollection of features.
pub fn collection(features: &[String]) -> Vec<u8> {
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        features.join(",")
    )
    .into_bytes()
}

/// A small world: countries DE (0..10, 0..10), FR (10..20, 0..10), GB (0..10, 10..20),
/// US (20..30, 0..10), and a custom territory ZONE (5..15, 5..8) across DE and FR.
pub fn small_world(
    licenses_toml: &str,
    extra: Vec<(&str, Vec<u8>)>,
) -> Result<Snapshot, regiongate::SnapshotError> {
    let countries = collection(&[
        square_feature("DE", 0.0, 0.0, 10.0),
        square_feature("FR", 10.0, 0.0, 10.0),
        square_feature("GB", 0.0, 10.0, 10.0),
        square_feature("US", 20.0, 0.0, 10.0),
    ]);
    let custom = collection(&[r#"{"type":"Feature","properties":{"id":"ZONE"},"geometry":{"type":"Polygon","coordinates":[[[5,5],[15,5],[15,8],[5,8],[5,5]]]}}"#.to_owned()]);
    let groups = br#"
        [groups.EU]
        tis = "2123"
        members = ["DE", "FR", { id = "GB", until = "2020-01-31" }]
    "#
    .to_vec();
    let mut files = vec![
        ("countries.geojson", countries),
        ("custom/zone.geojson", custom),
        ("groups.toml", groups),
        ("licenses/test.toml", licenses_toml.as_bytes().to_vec()),
    ];
    files.extend(extra);
    Snapshot::from_memory(files)
}

/// Places of the small world, as (lat, lon).
pub const IN_DE: (f64, f64) = (2.0, 2.0);
/// In France, outside ZONE.
pub const IN_FR: (f64, f64) = (2.0, 12.0);
/// In GB.
pub const IN_GB: (f64, f64) = (12.0, 2.0);
/// In DE and ZONE.
pub const IN_DE_ZONE: (f64, f64) = (6.0, 6.0);
/// In no territory.
pub const NOWHERE: (f64, f64) = (-40.0, -40.0);

/// Decides for a point of a snapshot.
pub fn decide_at(
    s: &Snapshot,
    track: &str,
    use_type: UseType,
    tier: Tier,
    place: (f64, f64),
    now: &str,
) -> Decision {
    let hits = s.index.locate([place.1, place.0]);
    decide(
        &s.licenses,
        &Question {
            track,
            use_type,
            tier,
        },
        &hits,
        at(now),
    )
}

//! `regiongate diff` on handmade before/after directories, with the exact expected report.

use crate::util::{collection, square_feature};
use std::path::Path;
use std::process::Command;

fn write_world(dir: &Path, zone_size: f64, licenses: &str) {
    std::fs::create_dir_all(dir.join("licenses")).expect("mkdir");
    std::fs::create_dir_all(dir.join("custom")).expect("mkdir");
    let countries = collection(&[
        square_feature("DE", 0.0, 0.0, 10.0),
        square_feature("FR", 10.0, 0.0, 10.0),
        square_feature("GB", 0.0, 10.0, 10.0),
    ]);
    std::fs::write(dir.join("countries.geojson"), countries).expect("write");
    std::fs::write(
        dir.join("custom/zone.geojson"),
        collection(&[square_feature("ZONE", 1.0, 1.0, zone_size)]),
    )
    .expect("write");
    std::fs::write(dir.join("licenses/l.toml"), licenses).expect("write");
}

const BEFORE: &str = r#"
[[dealset]]
selector = { track = "T1" }
updated = "2025-01-01"
deals = [{ id = "t1", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"], tiers = ["premium"] }]
[[dealset]]
selector = { track = "T2" }
updated = "2025-01-01"
deals = [{ id = "t2", excluded_territories = ["FR"], start = "2020-01-01", uses = ["download"], tiers = ["free"] }]
[[dealset]]
selector = { label = "L1" }
updated = "2025-01-01"
deals = [{ id = "l1", territories = ["GB"], start = "2020-01-01", uses = ["on_demand_stream"], tiers = ["free"] }]
"#;

const AFTER: &str = r#"
[[dealset]]
selector = { track = "T1" }
updated = "2025-02-01"
deals = [{ id = "t1", territories = ["DE", "FR", "ZONE"], start = "2020-01-01", uses = ["on_demand_stream"], tiers = ["premium"] }]
[[dealset]]
selector = { track = "T2" }
updated = "2025-02-01"
deals = []
[[dealset]]
selector = { label = "L1" }
updated = "2025-01-01"
deals = [{ id = "l1", territories = ["GB"], start = "2020-01-01", uses = ["on_demand_stream"], tiers = ["free"] }]
[[dealset]]
selector = { release = "R9" }
updated = "2025-02-01"
deals = [{ id = "r9", territories = ["GB"], start = "2020-01-01", end = "2025-03-31", uses = ["non_interactive_stream"], tiers = ["free"] }]
"#;

#[test]
fn diff_reports_gains_losses_takedowns_and_polygons() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    write_world(&old, 2.0, BEFORE);
    write_world(&new, 3.0, AFTER);
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_regiongate"))
            .args([
                "diff",
                old.to_str().expect("path"),
                new.to_str().expect("path"),
                "--at",
                "2025-03-01T00:00:00Z",
            ])
            .args(extra)
            .output()
            .expect("runs")
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).expect("utf-8");
    // Areas checked by hand: R² · Δλ · (sin φ2 − sin φ1) with R = 6371.0088 km gives
    // 49424.9 km² for 1°..3° × 1°..3° and 111160.6 km² for 1°..4° × 1°..4°.
    // The first line names the data versions, which are content hashes: check its shape only.
    let (first, rest) = text.split_once('\n').expect("lines");
    assert!(
        first.starts_with("data ") && first.ends_with(", rights at 2025-03-01T00:00:00Z"),
        "{first}"
    );
    assert_eq!(
        rest,
        "selectors: 3 changed (1 taken down, 1 added, 0 removed); territories: 1 changed\n\
         \x20 release R9: added: gains non_interactive_stream/free +GB\n\
         \x20 track T1: changed: gains on_demand_stream/premium +FR +ZONE\n\
         \x20 track T2: taken down: loses download/free -DE -GB\n\
         \x20 territory ZONE: changed, area 49424.7 km² -> 111160.5 km²\n"
    );
    let o = run(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["selectors"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["selectors"][2]["change"], "taken_down");
    assert_eq!(
        v["selectors"][2]["lost"]["download/free"],
        serde_json::json!(["DE", "GB"])
    );
    // After R9's window closes, the release brings nothing: no gain to report.
    let o = Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .args([
            "diff",
            old.to_str().expect("path"),
            new.to_str().expect("path"),
            "--at",
            "2025-06-01T00:00:00Z",
            "--limit",
            "1",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8(o.stdout).expect("utf-8");
    assert!(text.contains("  release R9: added\n"), "{text}");
    assert!(text.contains("  ... and 2 more selectors\n"), "{text}");
}

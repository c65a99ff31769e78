//! Deal semantics, each on a small handmade world, and the problems `validate` reports.

use crate::util::*;
use regiongate::SnapshotError;
use regiongate::decide::{Reason, Verdict};
use regiongate::license::Tier::{Free, Premium};
use regiongate::license::UseType::{Download, NonInteractiveStream, OnDemandStream};

const CATALOG: &str = r#"
[[track]]
id = "T1"
release = "R1"
label = "L1"
[[track]]
id = "T2"
release = "R1"
label = "L1"
[[track]]
id = "T3"
release = "R2"
label = "L1"
[[track]]
id = "T4"
label = "L2"
[[track]]
id = "T5"
"#;

fn world(deals: &str) -> regiongate::Snapshot {
    small_world(&format!("{CATALOG}\n{deals}"), Vec::new()).expect("valid data")
}

fn problems(deals: &str, extra: Vec<(&str, Vec<u8>)>) -> Vec<String> {
    match small_world(&format!("{CATALOG}\n{deals}"), extra) {
        Err(SnapshotError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("data should be refused"),
    }
}

const NOW: &str = "2025-06-15T12:00:00Z";

#[test]
fn include_list_licenses_only_listed_territories() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "d", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    let d = decide_at(&w, "T1", OnDemandStream, Premium, IN_DE, NOW);
    assert_eq!((d.verdict, d.reason), (Verdict::Allow, Reason::Licensed));
    assert_eq!(w.territories.code(d.territory.expect("territory")), "DE");
    assert_eq!(w.licenses.deal(d.deal.expect("deal")).id.as_ref(), "d");
    let d = decide_at(&w, "T1", OnDemandStream, Premium, IN_FR, NOW);
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Deny, Reason::NotLicensedInTerritory)
    );
    assert_eq!(w.territories.code(d.territory.expect("territory")), "FR");
}

#[test]
fn exclude_list_is_worldwide_minus_those() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "d", excluded_territories = ["FR", "ZONE"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Premium, IN_DE, NOW).verdict,
        Verdict::Allow
    );
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Premium, IN_GB, NOW).verdict,
        Verdict::Allow
    );
    let d = decide_at(&w, "T1", OnDemandStream, Premium, IN_FR, NOW);
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Deny, Reason::NotLicensedInTerritory)
    );
    // DE is not excluded, but the custom territory the point is also in is.
    let d = decide_at(&w, "T1", OnDemandStream, Premium, IN_DE_ZONE, NOW);
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Deny, Reason::NotLicensedInTerritory)
    );
    let d = decide_at(&w, "T1", OnDemandStream, Premium, NOWHERE, NOW);
    assert_eq!(
        (d.verdict, d.reason, d.territory),
        (Verdict::Deny, Reason::NoTerritory, None)
    );
}

#[test]
fn worldwide_and_tis_aliases() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "d", territories = ["2136"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        [[dealset]]
        selector = { track = "T2" }
        updated = "2025-01-01"
        deals = [{ id = "e", territories = ["2123"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    for p in [IN_DE, IN_FR, IN_GB] {
        assert_eq!(
            decide_at(&w, "T1", OnDemandStream, Free, p, NOW).verdict,
            Verdict::Allow
        );
    }
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Free, NOWHERE, NOW).reason,
        Reason::NoTerritory
    );
    assert_eq!(
        decide_at(&w, "T2", OnDemandStream, Free, IN_FR, NOW).verdict,
        Verdict::Allow
    );
    assert_eq!(
        decide_at(&w, "T2", OnDemandStream, Free, IN_GB, NOW).verdict,
        Verdict::Deny,
        "GB left the EU"
    );
}

#[test]
fn dated_group_membership_follows_the_decision_time() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "d", territories = ["EU"], start = "2010-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    assert_eq!(
        decide_at(
            &w,
            "T1",
            OnDemandStream,
            Free,
            IN_GB,
            "2020-01-31T23:59:59Z"
        )
        .verdict,
        Verdict::Allow
    );
    assert_eq!(
        decide_at(
            &w,
            "T1",
            OnDemandStream,
            Free,
            IN_GB,
            "2020-02-01T00:00:00Z"
        )
        .verdict,
        Verdict::Deny
    );
}

#[test]
fn validity_windows_are_inclusive_and_may_be_open() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "d", territories = ["DE"], start = "2025-01-01", end = "2025-12-31", uses = ["on_demand_stream"] }]
        [[dealset]]
        selector = { track = "T2" }
        updated = "2025-01-01"
        deals = [{ id = "e", territories = ["DE"], start = "2025-03-01T10:00:00Z", uses = ["on_demand_stream"] }]
        "#,
    );
    let dec = |t, now| decide_at(&w, t, OnDemandStream, Premium, IN_DE, now);
    assert_eq!(
        dec("T1", "2024-12-31T23:59:59Z").reason,
        Reason::OutsideValidityWindow
    );
    assert_eq!(dec("T1", "2025-01-01T00:00:00Z").verdict, Verdict::Allow);
    let last = dec("T1", "2025-12-31T23:59:59Z");
    assert_eq!(last.verdict, Verdict::Allow);
    assert_eq!(
        last.valid_until.map(|t| t.to_rfc3339()),
        Some("2025-12-31T23:59:59.999999999+00:00".to_owned())
    );
    assert_eq!(
        dec("T1", "2026-01-01T00:00:00Z").reason,
        Reason::OutsideValidityWindow
    );
    assert_eq!(
        dec("T2", "2025-03-01T09:59:59Z").reason,
        Reason::OutsideValidityWindow
    );
    let open = dec("T2", "2099-01-01T00:00:00Z");
    assert_eq!((open.verdict, open.valid_until), (Verdict::Allow, None));
}

#[test]
fn uses_and_tiers_and_commercial_models() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [
          { id = "stream-premium", territories = ["DE"], start = "2020-01-01", uses = ["OnDemandStream"], commercial_models = ["SubscriptionModel"] },
          { id = "radio-all", territories = ["DE"], start = "2020-01-01", uses = ["non_interactive_stream"], commercial_models = ["SubscriptionModel", "FreeOfChargeModel"] },
        ]
        "#,
    );
    let dec = |u, t| decide_at(&w, "T1", u, t, IN_DE, NOW);
    assert_eq!(dec(OnDemandStream, Premium).verdict, Verdict::Allow);
    assert_eq!(dec(OnDemandStream, Free).reason, Reason::TierNotLicensed);
    assert_eq!(dec(NonInteractiveStream, Free).verdict, Verdict::Allow);
    assert_eq!(dec(Download, Premium).reason, Reason::UseNotLicensed);
    // Territory failures come before use failures.
    assert_eq!(
        decide_at(&w, "T1", Download, Free, IN_FR, NOW).reason,
        Reason::NotLicensedInTerritory
    );
}

#[test]
fn takedown_in_toml_and_in_bulk() {
    let csv = b"track_id,deal_id,updated\nT4,,2025-02-01\nT9,d,\nT9,e,\n".to_vec();
    let w = small_world(
        &format!(
            "{CATALOG}\n{}",
            r#"
            [[deal_template]]
            id = "d"
            territories = ["DE"]
            start = "2020-01-01"
            uses = ["on_demand_stream"]
            [[deal_template]]
            id = "e"
            territories = ["FR"]
            start = "2020-01-01"
            uses = ["on_demand_stream"]
            [[dealset]]
            selector = { label = "L1" }
            updated = "2025-01-01"
            deals = [{ template = "d" }]
            [[dealset]]
            selector = { track = "T2" }
            updated = "2025-01-02"
            deals = []
            [[dealset]]
            selector = { label = "L2" }
            updated = "2025-01-01"
            deals = [{ template = "d" }]
            "#
        ),
        vec![("licenses/bulk.csv", csv)],
    )
    .expect("valid");
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Free, IN_DE, NOW).verdict,
        Verdict::Allow
    );
    let d = decide_at(&w, "T2", OnDemandStream, Free, IN_DE, NOW);
    assert_eq!((d.verdict, d.reason), (Verdict::Deny, Reason::TakenDown));
    assert_eq!(
        decide_at(&w, "T4", OnDemandStream, Free, IN_DE, NOW).reason,
        Reason::TakenDown,
        "bulk takedown"
    );
    // A bulk track known only from the CSV, with two deals.
    assert_eq!(
        decide_at(&w, "T9", OnDemandStream, Free, IN_FR, NOW).verdict,
        Verdict::Allow
    );
    assert_eq!(
        decide_at(&w, "T9", OnDemandStream, Free, IN_GB, NOW).reason,
        Reason::NotLicensedInTerritory
    );
}

#[test]
fn most_specific_selector_wins() {
    let w = world(
        r#"
        [[dealset]]
        selector = { catalog = true }
        updated = "2025-01-01"
        deals = [{ id = "cat", territories = ["US"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        [[dealset]]
        selector = { label = "L1" }
        updated = "2025-01-01"
        deals = [{ id = "lab", territories = ["GB"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        [[dealset]]
        selector = { release = "R1" }
        updated = "2025-01-01"
        deals = [{ id = "rel", territories = ["FR"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "trk", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    let only = |t: &str| {
        [IN_DE, IN_FR, IN_GB, (2.0, 22.0)]
            .into_iter()
            .filter(|&p| decide_at(&w, t, OnDemandStream, Free, p, NOW).verdict == Verdict::Allow)
            .map(|p| crate::util::codes_at(&w, p.0, p.1)[0].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(only("T1"), ["DE"], "track beats release");
    assert_eq!(only("T2"), ["FR"], "release beats label");
    assert_eq!(only("T3"), ["GB"], "label beats catalog");
    assert_eq!(only("T4"), ["US"], "catalog default");
    assert_eq!(
        decide_at(&w, "NOPE", OnDemandStream, Free, IN_DE, NOW).reason,
        Reason::UnknownTrack
    );
}

#[test]
fn no_deal_means_no_deal() {
    let w = world(
        r#"
        [[dealset]]
        selector = { label = "L1" }
        updated = "2025-01-01"
        deals = [{ id = "lab", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    let d = decide_at(&w, "T5", OnDemandStream, Free, IN_DE, NOW);
    assert_eq!((d.verdict, d.reason), (Verdict::Deny, Reason::NoDeal));
    assert_eq!(
        decide_at(&w, "UNLISTED", OnDemandStream, Free, IN_DE, NOW).reason,
        Reason::UnknownTrack
    );
}

#[test]
fn newer_deal_set_replaces_the_older_entirely() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-02-01T00:00:00Z"
        deals = [{ id = "new", territories = ["FR"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01T00:00:00Z"
        deals = [{ id = "old", territories = ["DE", "FR"], start = "2020-01-01", uses = ["on_demand_stream", "download"] }]
        "#,
    );
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Free, IN_FR, NOW).verdict,
        Verdict::Allow
    );
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Free, IN_DE, NOW).reason,
        Reason::NotLicensedInTerritory,
        "old DE deal is gone"
    );
    assert_eq!(
        decide_at(&w, "T1", Download, Free, IN_FR, NOW).reason,
        Reason::UseNotLicensed,
        "old download right is gone"
    );
}

#[test]
fn custom_territory_licenses_inside_a_country() {
    let w = world(
        r#"
        [[dealset]]
        selector = { track = "T1" }
        updated = "2025-01-01"
        deals = [{ id = "zone", territories = ["ZONE"], start = "2020-01-01", uses = ["on_demand_stream"] }]
        "#,
    );
    assert_eq!(codes_at(&w, IN_DE_ZONE.0, IN_DE_ZONE.1), ["DE", "ZONE"]);
    let d = decide_at(&w, "T1", OnDemandStream, Free, IN_DE_ZONE, NOW);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(w.territories.code(d.territory.expect("territory")), "ZONE");
    assert_eq!(
        decide_at(&w, "T1", OnDemandStream, Free, IN_DE, NOW).verdict,
        Verdict::Deny
    );
}

#[test]
fn validate_reports_deal_problems_by_file_and_deal() {
    let p = problems(
        r#"
        [[deal_template]]
        id = "both"
        territories = ["DE"]
        excluded_territories = ["FR"]
        start = "2020-01-01"
        uses = ["on_demand_stream"]
        [[deal_template]]
        id = "unknown-territory"
        territories = ["DE", "QQ", "MARS"]
        start = "2020-01-01"
        uses = ["on_demand_stream"]
        [[deal_template]]
        id = "backwards"
        territories = ["DE"]
        start = "2020-01-01"
        end = "2019-01-01"
        uses = ["on_demand_stream"]
        [[deal_template]]
        id = "bad-use"
        territories = ["DE"]
        start = "2020-01-01"
        uses = ["karaoke"]
        [[deal_template]]
        id = "dup"
        territories = ["DE"]
        start = "2020-01-01"
        uses = ["download"]
        [[deal_template]]
        id = "dup"
        territories = ["FR"]
        start = "2020-01-01"
        uses = ["download"]
        [[dealset]]
        selector = { track = "T1", label = "L1" }
        updated = "2025-01-01"
        deals = []
        [[dealset]]
        selector = { track = "T2" }
        updated = "2025-01-01"
        deals = [{ template = "missing" }]
        [[dealset]]
        selector = { track = "T3" }
        updated = "2025-01-01"
        [[dealset]]
        selector = { track = "T4" }
        updated = "2025-01-01"
        deals = [{ template = "dup" }]
        [[dealset]]
        selector = { track = "T4" }
        updated = "2025-01-01"
        deals = []
        "#,
        vec![(
            "licenses/bulk.csv",
            b"track_id,deal_id\nT7,nosuch\n,dup\n".to_vec(),
        )],
    );
    let has = |needle: &[&str]| p.iter().any(|s| needle.iter().all(|n| s.contains(n)));
    assert!(
        has(&[
            "licenses/test.toml",
            "deal \"both\"",
            "both territories and excluded_territories"
        ]),
        "{p:#?}"
    );
    assert!(
        has(&[
            "deal \"unknown-territory\"",
            "unknown territory or group QQ, MARS"
        ]),
        "{p:#?}"
    );
    assert!(
        has(&["deal \"backwards\"", "end is before start"]),
        "{p:#?}"
    );
    assert!(
        has(&["deal \"bad-use\"", "unknown use \"karaoke\""]),
        "{p:#?}"
    );
    assert!(has(&["deal \"dup\"", "duplicate deal id"]), "{p:#?}");
    assert!(
        has(&["dealset #0", "exactly one of track, release, label"]),
        "{p:#?}"
    );
    assert!(
        has(&["dealset for track T2", "unknown deal template \"missing\""]),
        "{p:#?}"
    );
    assert!(
        has(&["dealset for track T3", "deals = [] for a takedown"]),
        "{p:#?}"
    );
    assert!(
        has(&["dealset for track T4", "same updated time"]),
        "{p:#?}"
    );
    assert!(
        has(&[
            "licenses/bulk.csv",
            "line 2",
            "unknown deal template \"nosuch\""
        ]),
        "{p:#?}"
    );
    assert!(
        has(&["licenses/bulk.csv", "line 3", "empty track_id"]),
        "{p:#?}"
    );
    assert_eq!(p.len(), 11, "{p:#?}");
}

#[test]
fn validate_reports_territory_file_problems() {
    let bad_geo = br#"{"type":"FeatureCollection","features":[
        {"type":"Feature","properties":{"id":"AA"},"geometry":{"type":"Polygon","coordinates":[]}},
        {"type":"Feature","properties":{"id":"ZONE"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}
    ]}"#
    .to_vec();
    let p = problems(
        "",
        vec![
            ("custom/more.geojson", bad_geo),
            ("custom/broken.geojson", b"{\"type\":".to_vec()),
        ],
    );
    let has = |needle: &[&str]| p.iter().any(|s| needle.iter().all(|n| s.contains(n)));
    assert!(
        has(&["custom/more.geojson", "\"AA\"", "empty polygon"]),
        "{p:#?}"
    );
    assert!(
        has(&["custom/", "\"ZONE\"", "also defined in custom/"]),
        "{p:#?}"
    );
    assert!(
        has(&["custom/broken.geojson", "not a GeoJSON FeatureCollection"]),
        "{p:#?}"
    );
}

#[test]
fn country_ids_must_be_alpha2() {
    let r = regiongate::Snapshot::from_memory([(
        "countries.geojson",
        collection(&[square_feature("DEU", 0.0, 0.0, 1.0)]),
    )]);
    let Err(SnapshotError::Invalid(p)) = r else {
        panic!("refused")
    };
    assert!(
        p[0].to_string().contains("feature \"DEU\"") && p[0].to_string().contains("alpha-2"),
        "{p:?}"
    );
}

#[test]
fn licence_limits_name_the_file_the_deal_and_the_limit() {
    let deal = |id: &str, n: usize| {
        let list = vec!["\"DE\""; n].join(", ");
        format!(
            "[[deal_template]]\nid = \"{id}\"\nterritories = [{list}]\nstart = \"2020-01-01\"\nuses = [\"download\"]\n"
        )
    };
    let limit = regiongate::license::MAX_TERRITORIES_PER_DEAL;
    // At the limit: loads.
    let w = world(&deal("wide", limit));
    assert!(w.licenses.deal_by_name("wide").is_some());
    // One over: that deal is refused, by file and deal, with the limit.
    let p = problems(&deal("wider", limit + 1), Vec::new());
    assert_eq!(
        p,
        [format!(
            "licenses/test.toml: deal \"wider\": {} territories, more than the limit of {limit}",
            limit + 1
        )]
    );
    // An excluded list counts the same.
    let p = problems(
        &deal("wider", limit + 1).replace("territories =", "excluded_territories ="),
        Vec::new(),
    );
    assert!(p[0].contains("more than the limit of 5000"), "{p:?}");

    // A TOML licence file over its size limit is refused before it is parsed.
    let big = format!(
        "# {}\n",
        "x".repeat(regiongate::license::MAX_TOML_FILE_BYTES)
    );
    let p = problems("", vec![("licenses/big.toml", big.clone().into_bytes())]);
    assert_eq!(
        p,
        [format!(
            "licenses/big.toml: {} bytes, more than the limit of {} for a TOML licence file",
            big.len(),
            regiongate::license::MAX_TOML_FILE_BYTES
        )]
    );
}

#[test]
fn territory_file_limits_name_the_file_and_the_feature() {
    let n = 100_000;
    let deep = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{"id":"DEEP","x":{}{}}}}}]}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let long_id = "L".repeat(regiongate::territory::geojson::MAX_ID_LEN + 1);
    let p = problems(
        "",
        vec![
            ("custom/deep.geojson", deep.into_bytes()),
            (
                "custom/long.geojson",
                collection(&[square_feature(&long_id, 0.0, 0.0, 1.0)]),
            ),
            (
                "custom/nested.geojson",
                br#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"N"},"geometry":{"type":"MultiPolygon","coordinates":[[[[[0,0]]]]]}}]}"#.to_vec(),
            ),
        ],
    );
    assert_eq!(
        p,
        [
            "custom/deep.geojson: JSON nested deeper than the limit of 128 levels (line 1, column 212)",
            "custom/long.geojson: feature #0: territory id of 65 bytes, more than the limit of 64",
            "custom/nested.geojson: feature \"N\": bad coordinates: arrays nested deeper than a MultiPolygon",
        ]
    );
}

#[test]
fn bulk_csv_breakage_is_reported_by_line() {
    let templates = r#"
        [[deal_template]]
        id = "d1"
        territories = ["DE"]
        start = "2020-01-01"
        uses = ["download"]
        [[deal_template]]
        id = "d2"
        territories = ["FR"]
        start = "2020-01-01"
        uses = ["download"]
    "#;
    let mut csv = b"track_id,deal_id,updated\n".to_vec();
    csv.extend_from_slice(
        b"A,d1,2025-01-01\nA,d2,2025-02-01\nB,d1,\nB,,\nC,d1,\nD,d1,\nC,d2,\nE,\xff,\nF,d1,someday\n,d1,\n",
    );
    let p = problems(templates, vec![("licenses/bulk.csv", csv)]);
    assert_eq!(
        p,
        [
            "licenses/bulk.csv: line 3: updated differs from line 2",
            "licenses/bulk.csv: line 5: a takedown row and deal rows for the same track (from line 4)",
            "licenses/bulk.csv: line 8: track \"C\" appears again, apart from its earlier rows: keep the rows of a track together",
            "licenses/bulk.csv: line 9: not UTF-8",
            "licenses/bulk.csv: line 10: updated: \"someday\" is neither a date (YYYY-MM-DD) nor an RFC 3339 time",
            "licenses/bulk.csv: line 11: empty track_id",
        ]
    );
    // A file of bad lines lists the first 100 problems and counts the rest.
    let mut csv = b"track_id,deal_id\n".to_vec();
    for i in 0..150 {
        csv.extend_from_slice(format!("T{i},nosuch\n").as_bytes());
    }
    let p = problems(templates, vec![("licenses/bulk.csv", csv)]);
    assert_eq!(p.len(), 101);
    assert_eq!(p[100], "licenses/bulk.csv: 50 more problems not listed");
}

//! `regiongate import ddex`: ERN messages to licence files that a data directory serves, and
//! broken messages that write nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn regiongate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ddex")
        .join(name)
        .display()
        .to_string()
}

/// A small data directory (10° squares for the countries the messages name; EU with TIS 2123,
/// EEA with 2121) and no licences: every command loads it in milliseconds.
fn data_dir(tmp: &Path) -> PathBuf {
    use crate::util::{collection, square_feature};
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let countries: Vec<String> = ["DE", "AT", "GB", "US", "CU", "IR", "NO"]
        .iter()
        .enumerate()
        .map(|(i, c)| square_feature(c, 10.0 * i as f64, 0.0, 10.0))
        .collect();
    std::fs::write(data.join("countries.geojson"), collection(&countries)).expect("write");
    std::fs::write(
        data.join("groups.toml"),
        "[groups.EU]\ntis = \"2123\"\nmembers = [\"DE\", \"AT\"]\n\
         [groups.EEA]\ntis = \"2121\"\nmembers = [\"EU\", \"NO\"]\n",
    )
    .expect("write");
    data
}

fn check(data: &Path, track: &str, country: &str, at: &str) -> serde_json::Value {
    let o = regiongate(&[
        "--regions",
        data.to_str().expect("path"),
        "check",
        "--track",
        track,
        "--country",
        country,
        "--at",
        at,
    ]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&o.stderr));
    })
}

#[test]
fn import_then_check_decides_as_the_newest_message_says() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let licenses = data.join("licenses");
    let o = regiongate(&[
        "--regions",
        data.to_str().expect("path"),
        "import",
        "ddex",
        &fixture("ern43-release.xml"),
        &fixture("ern43-update.xml"),
        "--out",
        licenses.to_str().expect("path"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "silent with --json when stderr is not a terminal"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(
        (v["dealsets"].as_u64(), v["takedowns"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        v["messages"][0]["current"], 0,
        "the first message is superseded"
    );
    assert!(
        v["ignored"]
            .as_array()
            .expect("list")
            .iter()
            .any(|i| i["element"]
                .as_str()
                .is_some_and(|e| e.ends_with("/PriceInformation"))),
        "{v}"
    );
    // Before the update: worldwide; after: EU premium only; the single is taken down.
    let d = check(&data, "QZDD52500002", "AT", "2025-07-01T00:00:00Z");
    assert_eq!(
        (d["decision"].as_str(), d["deal"].as_str()),
        (Some("allow"), Some("ddex-NW-2025-0002-1")),
        "{d}"
    );
    let d = check(&data, "QZDD52500002", "US", "2025-07-01T00:00:00Z");
    assert_eq!(d["reason"], "not_licensed_in_territory", "{d}");
    let d = check(&data, "QZDD52500001", "DE", "2025-07-01T00:00:00Z");
    assert_eq!(d["reason"], "taken_down", "{d}");
    let o = regiongate(&["validate", data.to_str().expect("path")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // The output directory is not overwritten.
    let o = regiongate(&[
        "--regions",
        data.to_str().expect("path"),
        "import",
        "ddex",
        &fixture("ern43-purge.xml"),
        "--out",
        licenses.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
}

#[test]
fn a_broken_message_writes_nothing_and_names_file_element_and_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let good = std::fs::read_to_string(fixture("ern43-release.xml")).expect("fixture");
    let cases = [
        (
            "truncated.xml",
            good[..good.len() - 200].to_owned(),
            "not well-formed XML",
        ),
        (
            "namespace.xml",
            good.replace("http://ddex.net/xml/ern/43", "http://ddex.net/xml/mead/11"),
            "/NewReleaseMessage: wrong namespace",
        ),
        (
            "version.xml",
            good.replace("http://ddex.net/xml/ern/43", "http://ddex.net/xml/ern/34"),
            "/NewReleaseMessage: ERN version 3.4 (http://ddex.net/xml/ern/34) is not supported",
        ),
        (
            "territory.xml",
            good.replace(">AT<", ">ZZ<"),
            "/DealTerms/TerritoryCode[2]: unknown territory \"ZZ\"",
        ),
    ];
    for (name, text, expected) in cases {
        let f = tmp.path().join(name);
        std::fs::write(&f, text).expect("write");
        let out = tmp.path().join("out");
        // A good message first: one bad message refuses the whole import.
        let o = regiongate(&[
            "--regions",
            data.to_str().expect("path"),
            "import",
            "ddex",
            &fixture("ern43-update.xml"),
            f.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}: ")) && err.contains(expected),
            "{name}: {err}"
        );
        assert!(!out.exists(), "{name}: nothing written");
        let o = regiongate(&[
            "--regions",
            data.to_str().expect("path"),
            "import",
            "ddex",
            f.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json on failure");
        assert_eq!(v["ok"], false);
        assert!(
            v["error"]["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(name)),
            "{v}"
        );
    }
    let leftovers = std::fs::read_dir(tmp.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(leftovers, 0, "no temporary directory left");
}

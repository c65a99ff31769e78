//! The command-line contract: `where`, `where --batch`, `check` exit codes, `validate`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn where_prints_country_first_then_custom() {
    let o = run(&["where", "--lat", "47.62", "--lon", "9.45"], None);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "DE\nLAKE_CONSTANCE\n");
    let o = run(&["where", "--lat", "0", "--lon", "-140"], None);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "", "nothing for the open sea");
    let o = run(&["where", "--lat", "95", "--lon", "0"], None);
    assert_eq!(
        o.status.code(),
        Some(2),
        "latitude out of range is bad input"
    );
}

#[test]
fn where_batch_streams_in_order_and_skips_a_header() {
    let input =
        "lat,lon,name\n47.6964,8.6906,busingen\n0,-140\n47.62,9.45\nnot,a number\n-18.2,-178.8\n";
    let o = run(&["where", "--batch"], Some(input));
    assert_eq!(
        stdout(&o),
        "47.6964,8.6906,DE,DE\n0,-140,,\n47.62,9.45,DE,DE;LAKE_CONSTANCE\nnot,a number,,\n-18.2,-178.8,FJ,FJ\n"
    );
    assert_eq!(o.status.code(), Some(2), "a bad line is reported");
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 5"));
}

#[test]
fn check_exit_codes_and_json() {
    // Alpenglow is licensed in DACH only.
    let base = [
        "check",
        "--track",
        "QZNW52400010",
        "--at",
        "2025-06-01T00:00:00Z",
    ];
    let o = run(
        &[&base[..], &["--lat", "48.2082", "--lon", "16.3738"]].concat(),
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["playable"], true);
    assert_eq!(v["territory"], "AT");
    assert_eq!(v["deal"], "nw-alpenglow-dach");
    let o = run(&[&base[..], &["--country", "FR"]].concat(), None);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("deny"), Some("not_licensed_in_territory"))
    );
    let o = run(
        &["check", "--track", "QZNW52400003", "--country", "DE"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("\"taken_down\""));
    assert_eq!(
        run(&["check", "--track", "X", "--country", "ZZ"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["check", "--track", "X", "--lat", "1"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(
            &[
                "check",
                "--track",
                "X",
                "--country",
                "DE",
                "--use",
                "karaoke"
            ],
            None
        )
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn validate_embedded_and_a_broken_directory() {
    let o = run(&["validate"], None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).starts_with("ok: "));

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("licenses")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("custom")).expect("mkdir");
    std::fs::write(
        dir.path().join("countries.geojson"),
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"DE"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
           {"type":"Feature","properties":{"id":"FR"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,91],[0,0]]]}}]}"#,
    )
    .expect("write");
    std::fs::write(dir.path().join("licenses/a.toml"), "[[deal_template]]\nid = \"x\"\nterritories = [\"DE\", \"ATLANTIS\"]\nstart = \"2020-01-01\"\nuses = [\"download\"]\n").expect("write");
    let d = dir.path().to_str().expect("utf-8 path");
    let o = run(&["validate", d], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("countries.geojson") && out.contains("FR"),
        "{out}"
    );
    let o = run(&["validate", d, "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["ok"], false);
    assert!(!v["problems"].as_array().expect("array").is_empty());
}

#[test]
fn check_with_evidence_prints_a_summary_without_raw_values() {
    let base = [
        "check",
        "--track",
        "QZNW52400010",
        "--at",
        "2025-06-01T00:00:00Z",
    ];
    // A German address (heise.de) and a GPS fix in Salzburg, near the border: plausible.
    let o = run(
        &[
            &base[..],
            &["--ip", "193.99.144.80", "--gps", "47.8095,13.0550,30"],
        ]
        .concat(),
        None,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["source"].as_str(), v["territory"].as_str()),
        (Some("gps"), Some("AT"))
    );
    assert_eq!(v["evidence"]["ip"]["country"], "DE");
    assert_eq!(v["evidence"]["gps"]["territories"][0], "AT");
    for raw in ["193.99", "47.80", "13.05"] {
        assert!(!out.contains(raw), "{raw} leaked: {out}");
    }
    // A US address with a cell hint from a German network: the hint is implausible and the
    // default policy uses the IP evidence.
    let o = run(
        &[
            &base[..],
            &["--ip", "8.8.8.8", "--mcc", "262", "--mnc", "01"],
        ]
        .concat(),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(
        (v["source"].as_str(), v["reason"].as_str()),
        (Some("ip"), Some("not_licensed_in_territory"))
    );
    assert_eq!(v["evidence"]["cell"]["countries"][0], "DE");
    // The same under strict: the IP evidence denies.
    let o = run(
        &[
            &base[..],
            &[
                "--ip", "8.8.8.8", "--mcc", "262", "--mnc", "01", "--policy", "strict",
            ],
        ]
        .concat(),
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    // No evidence at all: fail closed.
    let o = run(&[&base[..], &["--ip", "10.1.2.3"]].concat(), None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("\"location_unknown\""));
    assert_eq!(
        run(&[&base[..], &["--gps", "95,0"]].concat(), None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&[&base[..], &["--mcc", "26", "--mnc", "01"]].concat(), None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_data_directory_brings_its_ip_database_and_mcc_table() {
    // A directory copy of the embedded data: the IP database and the MCC table must be read
    // from it too (check --ip and --mcc would give no evidence otherwise).
    let dir = tempfile::tempdir().expect("tmp");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    std::fs::create_dir_all(dir.path().join("ip")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("licenses")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("custom")).expect("mkdir");
    for f in [
        "countries.geojson.gz",
        "groups.toml",
        "mcc-mnc.csv",
        "ip/geoip.mmdb",
        "licenses/sample.toml",
        "custom/lake-constance.geojson",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
    }
    let d = dir.path().to_str().expect("path");
    let o = run(
        &[
            "--regions",
            d,
            "check",
            "--track",
            "QZNW52400010",
            "--ip",
            "193.99.144.80",
            "--at",
            "2025-06-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("\"source\":\"ip\""));
    let o = run(
        &[
            "--regions",
            d,
            "check",
            "--track",
            "QZNW52400010",
            "--mcc",
            "262",
            "--mnc",
            "01",
            "--at",
            "2025-06-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("\"source\":\"cell\""));
}

//! Progress bars: drawn on stderr when it is a terminal (a pseudo-terminal from util-linux
//! `script`, part of every Debian install), never with `--quiet` or into a pipe; stdout is
//! the same either way.

use std::path::Path;
use std::process::Command;

/// Runs `sh -c command` on a pseudo-terminal and returns what the terminal showed.
fn on_terminal(command: &str) -> String {
    let o = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn where_batch_validate_and_import_show_progress_on_a_terminal_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bin = env!("CARGO_BIN_EXE_regiongate");
    let points = tmp.path().join("points.csv");
    let mut text = String::from("lat,lon\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "{},{}\n",
            (i % 120) as f64 - 55.0,
            (i % 340) as f64 - 170.0
        ));
    }
    std::fs::write(&points, &text).expect("write");
    let out = |n: &str| tmp.path().join(n).display().to_string();
    let shown = on_terminal(&format!(
        "{bin} where --batch < {} > {}",
        points.display(),
        out("a.txt")
    ));
    assert!(
        shown.contains("where --batch ["),
        "a bar with the input's size: {shown:?}"
    );
    assert!(shown.contains("ETA"), "{shown:?}");
    let quiet = on_terminal(&format!(
        "{bin} --quiet where --batch < {} > {}",
        points.display(),
        out("b.txt")
    ));
    assert_eq!(quiet, "", "--quiet draws nothing");
    let piped = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{bin} where --batch < {} > {}",
                points.display(),
                out("c.txt")
            ),
        ])
        .output()
        .expect("runs");
    assert!(piped.stderr.is_empty(), "nothing into a pipe");
    let a = std::fs::read(out("a.txt")).expect("a");
    assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 20_000);
    assert_eq!(
        a,
        std::fs::read(out("b.txt")).expect("b"),
        "stdout unchanged"
    );
    assert_eq!(
        a,
        std::fs::read(out("c.txt")).expect("c"),
        "stdout unchanged"
    );

    let shown = on_terminal(&format!("{bin} validate --json > {}", out("validate.txt")));
    assert!(
        shown.contains("validate: loading the embedded data"),
        "{shown:?}"
    );
    let shown = on_terminal(&format!(
        "{bin} -q validate --json > {}",
        out("validate-q.txt")
    ));
    assert_eq!(shown, "", "-q draws nothing");
    // The same report on stdout, but for the build time it gives.
    let report = |f: &str| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out(f)).expect("report")).expect("json");
        v["summary"]["build_ms"] = serde_json::Value::Null;
        v
    };
    assert_eq!(report("validate.txt"), report("validate-q.txt"));

    let msg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ddex/ern43-release.xml");
    let shown = on_terminal(&format!(
        "{bin} import ddex {} --out {} --json > {}",
        msg.display(),
        out("lic"),
        out("import.json")
    ));
    assert!(shown.contains("loading the data"), "{shown:?}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out("import.json")).expect("json")).expect("json");
    assert_eq!(v["ok"], true, "the report on stdout is whole");
}

//! Progress bars: drawn on stderr when it is a terminal (a pseudo-terminal from util-linux
//! `script`, part of every Debian install), never with `--quiet` or into a pipe; stdout is
//! the same either way.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_regiongate");

/// Runs `sh -c command` on a pseudo-terminal and returns what the terminal showed.
fn on_terminal(command: &str) -> String {
    let o = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `sh -c command` with stderr into a pipe and returns what was written to it.
fn piped_stderr(command: &str) -> String {
    let o = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One drawing of a bar: `LABEL [====>   ] POS/TOTAL RATE, ETA T`.
#[derive(Debug)]
struct Bar {
    pos: String,
    total: String,
    rate: String,
    eta: String,
}

/// Every drawing of the bar labelled `label` in a terminal recording, in order. The
/// recording's lines are split at carriage returns and escape sequences (cursor moves, line
/// clears).
fn bars(shown: &str, label: &str) -> Vec<Bar> {
    let mut plain = String::new();
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                plain.push('\n');
                // CSI: `ESC [` parameters, then one final letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\r' => plain.push('\n'),
            c => plain.push(c),
        }
    }
    plain
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(label)?.strip_prefix(" [")?;
            let (_, numbers) = rest.split_once("] ")?;
            let (pos, rest) = numbers.split_once('/')?;
            let (rest, eta) = rest.split_once(", ETA ")?;
            // The total and the rate: "18.44 MiB 13.63 MiB/s" or "5/16 22.5/s".
            let words: Vec<&str> = rest.split(' ').collect();
            let cut = words.len() / 2;
            Some(Bar {
                pos: pos.to_owned(),
                total: words[..cut].join(" "),
                rate: words[cut..].join(" "),
                eta: eta.trim().to_owned(),
            })
        })
        .collect()
}

/// The bar labelled `label` was drawn with a rate and an ETA over one total, and reached it.
fn assert_bar_reaches_its_total(shown: &str, label: &str) {
    let drawn = bars(shown, label);
    assert!(!drawn.is_empty(), "no {label:?} bar: {shown:?}");
    let total = &drawn[0].total;
    for b in &drawn {
        assert_eq!(&b.total, total, "one total throughout: {drawn:?}");
        assert!(b.rate.ends_with("/s"), "a rate: {b:?}");
        let digits = b.eta.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        assert!(
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
            "an ETA: {b:?}"
        );
    }
    assert!(
        !total.starts_with("0 ") && total != "0",
        "a total: {drawn:?}"
    );
    let last = drawn.last().expect("a bar");
    assert_eq!(
        &last.pos, total,
        "the position reaches the total: {drawn:?}"
    );
}

#[test]
fn the_bar_reader_reads_what_indicatif_draws() {
    let shown = "\u{1b}[2Kvalidate: x [===>  ] 5.46 MiB/18.44 MiB 13.63 MiB/s, ETA 1s   \r\
                 \u{1b}[1A\u{1b}[2Kvalidate: x [======] 18.44 MiB/18.44 MiB 10 MiB/s, ETA 0s\r\
                 \u{1b}[2Kdiff: selectors [==] 16/16 5,197.2855/s, ETA 0s";
    let b = bars(shown, "validate: x");
    assert_eq!(b.len(), 2);
    assert_eq!(
        (&*b[0].pos, &*b[0].total, &*b[0].rate, &*b[0].eta),
        ("5.46 MiB", "18.44 MiB", "13.63 MiB/s", "1s")
    );
    assert_bar_reaches_its_total(shown, "validate: x");
    assert_bar_reaches_its_total(shown, "diff: selectors");
    let stuck = "validate: x [===>  ] 5.46 MiB/18.44 MiB 13.63 MiB/s, ETA 1s";
    assert!(
        std::panic::catch_unwind(|| assert_bar_reaches_its_total(stuck, "validate: x")).is_err()
    );
}

#[test]
fn where_batch_shows_progress_on_a_terminal_only() {
    let tmp = tempfile::tempdir().expect("tmp");
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
        "{BIN} where --batch < {} > {}",
        points.display(),
        out("a.txt")
    ));
    assert_bar_reaches_its_total(&shown, "where --batch");
    let quiet = on_terminal(&format!(
        "{BIN} --quiet where --batch < {} > {}",
        points.display(),
        out("b.txt")
    ));
    assert_eq!(quiet, "", "--quiet draws nothing");
    let piped = piped_stderr(&format!(
        "{BIN} where --batch < {} > {}",
        points.display(),
        out("c.txt")
    ));
    assert_eq!(piped, "", "nothing into a pipe");
    let a = std::fs::read(out("a.txt")).expect("a");
    assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 20_000);
    assert_same_bytes(&[out("a.txt"), out("b.txt"), out("c.txt")]);
}

/// The files hold the same bytes (a command's stdout on a terminal, with `-q`, into a pipe).
fn assert_same_bytes(files: &[String]) {
    let first = std::fs::read(&files[0]).expect("stdout");
    for f in &files[1..] {
        let other = std::fs::read(f).expect("stdout");
        assert!(first == other, "stdout differs: {} and {f}", files[0]);
    }
}

/// A report with the digits of its build time (which differ run to run) blanked.
fn without_build_time(report: &[u8]) -> String {
    let text = String::from_utf8(report.to_vec()).expect("UTF-8");
    let Some(at) = text.find("\"build_ms\":") else {
        return text;
    };
    let from = at + "\"build_ms\":".len();
    let digits = text[from..].bytes().take_while(u8::is_ascii_digit).count();
    assert!(digits > 0, "{text}");
    format!("{}#{}", &text[..from], &text[from + digits..])
}

#[test]
fn validate_draws_a_bar_over_the_data_on_a_terminal_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = |n: &str| tmp.path().join(n).display().to_string();
    for json in ["--json", ""] {
        let shown = on_terminal(&format!("{BIN} validate {json} > {}", out("t.txt")));
        assert_bar_reaches_its_total(&shown, "validate: embedded data");
        let quiet = on_terminal(&format!("{BIN} -q validate {json} > {}", out("q.txt")));
        assert_eq!(quiet, "", "-q draws nothing");
        let piped = piped_stderr(&format!("{BIN} validate {json} > {}", out("p.txt")));
        assert_eq!(piped, "", "nothing into a pipe");
        // The same bytes on stdout, but for the build time the report gives.
        let report = |f: &str| without_build_time(&std::fs::read(out(f)).expect("report"));
        assert!(report("t.txt").starts_with(if json.is_empty() {
            "ok: "
        } else {
            "{\"ok\":true"
        }));
        assert_eq!(report("t.txt"), report("q.txt"));
        assert_eq!(report("t.txt"), report("p.txt"));
    }
}

/// A copy of the embedded data with `bulk` licence rows for new tracks.
fn data_dir(under: &Path, name: &str, bulk: usize) -> PathBuf {
    let dir = under.join(name);
    let regions = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let ok = Command::new("cp")
        .arg("-r")
        .arg(&regions)
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(ok.success());
    let mut csv = String::from("track_id,deal_id\n");
    (0..bulk).for_each(|n| csv.push_str(&format!("QZBK5{n:07},nw-world-stream\n")));
    std::fs::write(dir.join("licenses/bulk.csv"), csv).expect("write");
    dir
}

#[test]
fn diff_and_import_draw_bars_on_a_terminal_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = |n: &str| tmp.path().join(n).display().to_string();
    let old = data_dir(tmp.path(), "old", 0);
    let new = data_dir(tmp.path(), "new", 40);
    let diff = format!(
        "{BIN} diff {} {} --at 2025-06-01T00:00:00Z",
        old.display(),
        new.display()
    );
    let shown = on_terminal(&format!("{diff} > {}", out("t.txt")));
    assert_bar_reaches_its_total(&shown, &format!("loading {}", old.display()));
    assert_bar_reaches_its_total(&shown, &format!("loading {}", new.display()));
    assert_bar_reaches_its_total(&shown, "diff: selectors");
    assert_eq!(on_terminal(&format!("{diff} -q > {}", out("q.txt"))), "");
    assert_eq!(piped_stderr(&format!("{diff} > {}", out("p.txt"))), "");
    let t = std::fs::read(out("t.txt")).expect("t");
    assert!(
        String::from_utf8_lossy(&t).contains("40 added"),
        "{}",
        String::from_utf8_lossy(&t)
    );
    assert_same_bytes(&[out("t.txt"), out("q.txt"), out("p.txt")]);

    let msg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ddex/ern43-release.xml");
    let import = |lic: &str| {
        format!(
            "{BIN} import ddex {} --out {} --json",
            msg.display(),
            out(lic)
        )
    };
    let shown = on_terminal(&format!("{} > {}", import("lic-t"), out("import-t.json")));
    assert_bar_reaches_its_total(&shown, "loading the data");
    assert_bar_reaches_its_total(&shown, "import ddex");
    assert_eq!(
        on_terminal(&format!(
            "{} -q > {}",
            import("lic-q"),
            out("import-q.json")
        )),
        ""
    );
    assert_eq!(
        piped_stderr(&format!("{} > {}", import("lic-p"), out("import-p.json"))),
        ""
    );
    let report = |f: &str| std::fs::read_to_string(out(f)).expect("report");
    let v: serde_json::Value = serde_json::from_str(&report("import-t.json")).expect("json");
    assert_eq!(v["ok"], true, "the report on stdout is whole");
    // The same report but for where the files went.
    let same = |f: &str, lic: &str| report(f).replace(&out(lic), "OUT");
    assert_eq!(
        same("import-t.json", "lic-t"),
        same("import-q.json", "lic-q")
    );
    assert_eq!(
        same("import-t.json", "lic-t"),
        same("import-p.json", "lic-p")
    );
}

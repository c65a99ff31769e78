//! The default record: at the default log level, start-up, reload, error and summary lines,
//! not a line per decision; per-decision lines only when `decision_log` asks (every one, or one
//! in N). The real binary on 127.0.0.1:0, its stderr read after SIGTERM.

use crate::util::{now_unix, serving_ports};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Requests per run: half at a point in Vienna (track licensed in DACH: allow), half in Paris
/// (deny).
const REQUESTS: usize = 200;

struct Run {
    stderr: String,
}

impl Run {
    fn lines_of(&self, target: &str) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.contains(target)).collect()
    }

    /// The sum of `key=N` over the summary lines.
    fn summed(&self, key: &str) -> u64 {
        self.lines_of("regiongate::summary")
            .iter()
            .map(|l| field(l, key).unwrap_or_else(|| panic!("no {key} in {l}")))
            .sum()
    }
}

fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn ask(port: u16, i: usize) -> u16 {
    let (lat, lon) = if i.is_multiple_of(2) {
        (48.2082, 16.3738)
    } else {
        (48.8566, 2.3522)
    };
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET /v1/tracks/QZNW52400010/playability HTTP/1.1\r\nHost: x\r\n\
         Geo-Hint: gps={lat},{lon}; acc=25; ts={}\r\nConnection: close\r\n\r\n",
        now_unix()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {out}"))
}

/// Runs `regiongate serve` with `config`, sends [`REQUESTS`] preflight requests (pausing
/// `pause` halfway), stops it with SIGTERM and returns its stderr.
fn run(dir: &Path, config: &str, pause: Duration) -> Run {
    let cfg = dir.join("regiongate.toml");
    std::fs::write(&cfg, config).expect("config");
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regiongate"));
    cmd.args(["serve", "--config", cfg.to_str().expect("path")])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    for v in regiongate::config::ENV_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd.spawn().expect("regiongate starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some((public, _)) = serving_ports(&text) {
            break public;
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no start-up line:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut statuses = Vec::new();
    for i in 0..REQUESTS {
        if i == REQUESTS / 2 {
            std::thread::sleep(pause);
        }
        statuses.push(ask(port, i));
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    Run {
        stderr: std::fs::read_to_string(&log_path).expect("log"),
    }
}

#[test]
fn default_record_is_summaries_not_a_line_per_decision() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The default decision_log; a 1 s summary so that one falls in the run.
    let r = run(
        tmp.path(),
        "summary_interval_s = 1\n",
        Duration::from_millis(2500),
    );
    assert!(
        r.lines_of("regiongate::decision").is_empty(),
        "decision lines at the default:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("regiongate serving"), "{}", r.stderr);
    let summaries = r.lines_of("regiongate::summary");
    // One during the pause (the first half), at least one more for the rest (the last is
    // written after draining).
    assert!(summaries.len() >= 2, "{}", r.stderr);
    assert_eq!(r.summed("decisions"), REQUESTS as u64, "{}", r.stderr);
    assert_eq!(r.summed("allow"), REQUESTS as u64 / 2, "{}", r.stderr);
    assert_eq!(r.summed("deny"), REQUESTS as u64 / 2, "{}", r.stderr);
    assert_eq!(r.summed("preflight"), REQUESTS as u64, "{}", r.stderr);
    assert_eq!(r.summed("authz"), 0, "{}", r.stderr);
    // Nothing but counts and the data version: no track, territory or point.
    for l in summaries {
        for word in ["QZNW", "AT", "FR", "48.2", "16.37", "track="] {
            assert!(!l.contains(word), "{word} in {l}");
        }
    }
}

#[test]
fn decision_log_full_and_sampled() {
    let tmp = tempfile::tempdir().expect("tmp");
    let full = run(
        tmp.path(),
        "decision_log = \"full\"\nsummary_interval_s = 0\n",
        Duration::ZERO,
    );
    let lines = full.lines_of("regiongate::decision");
    assert_eq!(lines.len(), REQUESTS, "{}", full.stderr);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("decision=\"allow\"") || l.contains("decision=allow"))
            .count(),
        REQUESTS / 2,
        "{}",
        full.stderr
    );
    assert!(
        full.lines_of("regiongate::summary").is_empty(),
        "summary_interval_s = 0 turns summaries off:\n{}",
        full.stderr
    );

    let sampled = run(
        tmp.path(),
        "decision_log = \"1/10\"\nsummary_interval_s = 0\n",
        Duration::ZERO,
    );
    // One in ten per public thread: each thread's count rounded down.
    let n = sampled.lines_of("regiongate::decision").len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        n <= REQUESTS / 10 && n + threads >= REQUESTS / 10,
        "{n} sampled lines of {REQUESTS} decisions:\n{}",
        sampled.stderr
    );
}

#[test]
fn a_bad_decision_log_value_is_refused_with_its_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("regiongate.toml");
    for bad in ["\"sometimes\"", "\"1/0\"", "\"1/x\"", "\"2/10\""] {
        std::fs::write(&cfg, format!("decision_log = {bad}\n")).expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_regiongate"))
            .args(["serve", "--config", cfg.to_str().expect("path")])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("decision_log"), "{bad}: {err}");
    }
}

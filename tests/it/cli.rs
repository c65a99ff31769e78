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

#[test]
fn serve_refuses_a_bad_config_with_status_64_naming_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: [(&str, String, &str); 7] = [
        (
            "unknown key",
            "lisen = \"127.0.0.1:1\"\n".into(),
            "config key `lisen`",
        ),
        (
            "bad value",
            "listen = \"nowhere\"\n".into(),
            "config key `listen`",
        ),
        (
            "body limit out of range",
            "[limits]\nmax_body_bytes = 0\n".into(),
            "config key `limits.max_body_bytes`: must be between 1 and 16777216",
        ),
        (
            "batch limit out of range",
            "[preflight]\nmax_batch = 100000\n".into(),
            "config key `preflight.max_batch`: must be between 1 and 10000",
        ),
        (
            "broken TOML",
            "[limits\nmax_headers = 5\n".into(),
            "config key `file`",
        ),
        (
            "over the size limit",
            format!("# {}\n", "x".repeat(1024 * 1024)),
            "more than the limit of 1048576",
        ),
        (
            "endless token file",
            "[admin]\ntoken_file = \"/dev/zero\"\n".into(),
            "config key `admin.token_file`: /dev/zero: longer than the limit of 4096 bytes",
        ),
    ];
    for (what, text, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).expect("write");
        let o = run(
            &[
                "serve",
                "--dry-run",
                "--config",
                path.to_str().expect("path"),
            ],
            None,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
    }
}

#[test]
fn validate_names_the_file_and_the_limit_for_oversized_and_broken_data() {
    // A region file over the size limit is refused from its size, unread (a sparse file).
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("custom")).expect("mkdir");
    let huge = std::fs::File::create(dir.path().join("custom/huge.geojson")).expect("create");
    huge.set_len(regiongate::snapshot::MAX_FILE_BYTES + 1)
        .expect("sparse file");
    let o = run(&["validate", dir.path().to_str().expect("path")], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "custom/huge.geojson: 536870913 bytes, more than the limit of 536870912\n"
    );

    // Broken territory and licence files: every problem, by file and feature or deal.
    let dir = tempfile::tempdir().expect("tmp");
    for sub in ["custom", "licenses"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let n = 100_000;
    let write = |path: &str, text: String| {
        std::fs::write(dir.path().join(path), text).expect("write");
    };
    write(
        "custom/deep.geojson",
        format!(
            r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{"id":"A","x":{}{}}}}}]}}"#,
            "[".repeat(n),
            "]".repeat(n)
        ),
    );
    write(
        "custom/truncated.geojson",
        r#"{"type":"FeatureCollection","features":[{"type":"#.into(),
    );
    write("custom/binary.geojson", "\u{0}\u{1}garbage".into());
    write(
        "licenses/wide.toml",
        format!(
            "[[deal_template]]\nid = \"wide\"\nterritories = [{}]\nstart = \"2020-01-01\"\nuses = [\"download\"]\n",
            vec!["\"DE\""; 5001].join(",")
        ),
    );
    write("licenses/broken.toml", "[[deal_template]\nid = 1\n".into());
    write("licenses/bulk.csv", "track,deal\nT1,x\n".into());
    let o = run(&["validate", dir.path().to_str().expect("path")], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for want in [
        "custom/deep.geojson: JSON nested deeper than the limit of 128 levels",
        "custom/truncated.geojson: not a GeoJSON FeatureCollection: EOF while parsing",
        "custom/binary.geojson: not a GeoJSON FeatureCollection",
        "licenses/wide.toml: deal \"wide\": 5001 territories, more than the limit of 5000",
        "licenses/broken.toml: TOML parse error at line 1",
        "licenses/bulk.csv: line 1: header must be track_id,deal_id[,updated]",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
}

/// `regiongate serve` on loopback, ephemeral ports, a one-territory data directory; killed on
/// drop.
struct Served {
    child: std::process::Child,
    public: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    /// The start-up line ("regiongate serving ...").
    line: String,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Served {
        Served::start_with("", &[])
    }

    /// With `config` (TOML, may be empty) and extra environment variables.
    fn start_with(config: &str, env: &[(&str, String)]) -> Served {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("custom")).expect("mkdir");
        std::fs::write(
            dir.path().join("custom/zone.geojson"),
            crate::util::collection(&[crate::util::square_feature("ZONE", 0.0, 0.0, 1.0)]),
        )
        .expect("write");
        let config_file = dir.path().join("regiongate.toml");
        std::fs::write(&config_file, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_regiongate"))
            .args(["--regions", dir.path().to_str().expect("path"), "serve"])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--config", config_file.to_str().expect("path")])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("regiongate starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if line.contains("regiongate serving") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("regiongate serving within 60 s");
        // The log goes to a pipe here, not a terminal: plain text, no colour codes.
        assert!(
            !line.contains('\u{1b}'),
            "escape codes in a piped log: {line:?}"
        );
        let (public, admin) = crate::util::serving_ports(&line).expect("ports in the log");
        let localhost = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let (public, admin) = (localhost(public), localhost(admin));
        Served {
            child,
            public,
            admin,
            line,
            _dir: dir,
        }
    }

    /// The value of a Prometheus series on the admin listener's /metrics.
    fn metric(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let mut s = std::net::TcpStream::connect(self.admin).expect("connect admin");
        let out = send_and_read(
            &mut s,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        crate::util::metric(&out, family, labels)
    }

    /// Sends raw bytes; returns the status line and the body of the answer.
    fn exchange(&self, request: &[u8]) -> (String, String) {
        let mut s = std::net::TcpStream::connect(self.public).expect("connect");
        let text = send_and_read(&mut s, request);
        let status = text.lines().next().unwrap_or("").to_owned();
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        (status, body)
    }
}

/// Writes `request` on a kept-alive connection and reads one answer (head and a
/// Content-Length body, 10 s at most): the answer as text.
fn keep_alive_exchange(s: &mut std::net::TcpStream, request: &[u8]) -> String {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return String::from_utf8_lossy(&got).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("body");
    head + &String::from_utf8_lossy(&body)
}

/// Writes `request` and reads until the server closes (10 s at most): the answer as text. The
/// server may answer and close before it has read everything, so write errors are ignored.
fn send_and_read(s: &mut std::net::TcpStream, request: &[u8]) -> String {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `connection_steering`: every value starts and says in its start-up line and in
/// `regiongate_public_threads` what is in effect; "auto" on loopback is "cpu", which pins each
/// public thread to its own CPU, gives each the connections made from its CPU, and evens the
/// counts out when the connections come from one CPU; "cpu" falls back to "hash" when the
/// threads and the usable CPUs differ in number; every shard's connections are counted in
/// `regiongate_shard_open_connections` (summing to `regiongate_open_connections`) and
/// answered, handed-over ones too.
#[cfg(target_os = "linux")]
#[test]
fn connection_steering_modes_pin_steer_count_and_fall_back() {
    use regiongate::server::cpus;
    let cpus = cpus::usable();
    assert!(!cpus.is_empty(), "the CPUs this process may use");
    let cpu_list = cpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let cases = [
        ("auto", cpus.len(), "cpu"),
        ("cpu", cpus.len() + 1, "hash"),
        ("hash", 2, "hash"),
        ("shared", 2, "shared"),
    ];
    for (wanted, threads, in_effect) in cases {
        let srv = Served::start_with(
            &format!("connection_steering = \"{wanted}\"\n"),
            &[("TOKIO_WORKER_THREADS", threads.to_string())],
        );
        let what = format!("{wanted} with {threads} threads");
        assert!(
            srv.line
                .contains(&format!("connection_steering=\"{in_effect}\"")),
            "{what}: {}",
            srv.line
        );
        assert!(
            srv.line.contains(&format!("public_threads={threads} ")),
            "{what}: {}",
            srv.line
        );
        let fallback = if wanted == "cpu" && in_effect == "hash" {
            format!(
                "steering_fallback=\"{threads} public threads for {} usable CPUs\"",
                cpus.len()
            )
        } else {
            "steering_fallback=\"-\"".to_owned()
        };
        assert!(srv.line.contains(&fallback), "{what}: {}", srv.line);
        assert_eq!(
            srv.metric("regiongate_public_threads", &[("steering", in_effect)]),
            threads as f64,
            "{what}"
        );
        let pinned = if in_effect == "cpu" {
            cpu_list.as_str()
        } else {
            "-"
        };
        assert!(
            srv.line.contains(&format!("cpus={pinned} ")),
            "{what}: {}",
            srv.line
        );
        // Where the kernel lets each public thread run, and the whole process.
        let cpus_allowed = |status: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list")
                .trim()
                .to_owned()
        };
        let process_cpus = cpus_allowed(
            &std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).expect("status"),
        );
        let tasks = std::fs::read_dir(format!("/proc/{}/task", srv.child.id())).expect("tasks");
        let mut public = 0;
        let mut names = Vec::new();
        for task in tasks {
            let task = task.expect("task").path();
            let name = std::fs::read_to_string(task.join("comm")).expect("comm");
            names.push(name.trim().to_owned());
            let Some(shard) = name.trim().strip_prefix("public-") else {
                continue;
            };
            let shard: usize = shard.parse().expect("shard number");
            let allowed =
                cpus_allowed(&std::fs::read_to_string(task.join("status")).expect("status"));
            if in_effect == "cpu" {
                assert_eq!(allowed, cpus[shard].to_string(), "{what}: shard {shard}");
            } else {
                assert_eq!(allowed, process_cpus, "{what}: shard {shard} is pinned");
            }
            public += 1;
        }
        assert_eq!(public, threads, "{what}: public threads among {names:?}");
        // Open connections are counted per shard, and every connection is answered.
        let per_shard = |total: f64| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let per_shard: Vec<f64> = (0..threads)
                    .map(|i| {
                        srv.metric(
                            "regiongate_shard_open_connections",
                            &[("shard", i.to_string().as_str())],
                        )
                    })
                    .collect();
                if per_shard.iter().sum::<f64>() == total || std::time::Instant::now() > deadline {
                    return per_shard;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let connect_from = |cpu: usize| {
            assert!(cpus::restrict_current_thread(&[cpu]), "pin the test thread");
            let c = std::net::TcpStream::connect(srv.public).expect("connect");
            assert!(
                cpus::restrict_current_thread(&cpus),
                "unpin the test thread"
            );
            c
        };
        // 0. A connection made from the last CPU, then used from the first: its packets now
        // arrive on the first CPU, so between requests it moves to the shard pinned there
        // (fast.rs looks every 64 answers and moves on two looks in a row), and every request
        // is answered before and after the move.
        if in_effect == "cpu" && threads > 1 {
            let mut c = connect_from(cpus[cpus.len() - 1]);
            let mut want = vec![0.0; threads];
            want[cpus.len() - 1] = 1.0;
            assert_eq!(per_shard(1.0), want, "{what}: where it arrived");
            assert!(
                cpus::restrict_current_thread(&[cpus[0]]),
                "pin the test thread"
            );
            for k in 0..200 {
                let answer = keep_alive_exchange(
                    &mut c,
                    b"GET /v1/authz HTTP/1.1\r\nHost: x\r\nX-Original-URI: /audio/T1/a.mp4\r\n\r\n",
                );
                assert!(
                    answer.starts_with("HTTP/1.1 "),
                    "{what}: request {k}: {answer}"
                );
            }
            assert!(
                cpus::restrict_current_thread(&cpus),
                "unpin the test thread"
            );
            let mut want = vec![0.0; threads];
            want[0] = 1.0;
            assert_eq!(per_shard(1.0), want, "{what}: followed its client's CPU");
            drop(c);
            assert_eq!(per_shard(0.0), vec![0.0; threads], "{what}: closed");
        }
        // 1. Connections made from the last usable CPU and the first, in turn: with cpu
        // steering (loopback: a connection arrives on the CPU that makes it) each goes to the
        // shard pinned there, checked one by one (a spread by hash passes by chance once in
        // 2^10), and the counts stay even, so no connection is handed over.
        let mut conns = Vec::new();
        for k in 0..10 {
            let (cpu, at) = if k % 2 == 0 {
                (cpus[cpus.len() - 1], cpus.len() - 1)
            } else {
                (cpus[0], 0)
            };
            conns.push(connect_from(cpu));
            let now = per_shard(conns.len() as f64);
            if in_effect == "cpu" && threads > 1 {
                let mut want = vec![0.0; threads];
                want[cpus.len() - 1] = (k / 2 + 1) as f64;
                want[0] = ((k + 1) / 2) as f64;
                assert_eq!(
                    now, want,
                    "{what}: connection {k} from CPU {cpu} on shard {at}"
                );
            }
        }
        // 2. Thirty more from the last CPU alone: cpu steering puts them all on its shard,
        // until that shard holds more than 8 plus half of the least busy one's count; then
        // new connections are handed over (balance.rs): 5 + 30 and 5 end as 27 and 13.
        for _ in 0..30 {
            conns.push(connect_from(cpus[cpus.len() - 1]));
        }
        let now = per_shard(40.0);
        assert_eq!(now.iter().sum::<f64>(), 40.0, "{what}: {now:?}");
        if in_effect == "cpu" && threads > 1 {
            let least = now.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(least >= 13.0, "{what}: none handed over: {now:?}");
            assert!(
                now[cpus.len() - 1] <= least + 9.0 + (least / 2.0).floor(),
                "{what}: {now:?}"
            );
        }
        assert_eq!(
            srv.metric("regiongate_open_connections", &[]),
            40.0,
            "{what}"
        );
        for c in &mut conns {
            let answer = send_and_read(
                c,
                b"GET /v1/territory HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert!(answer.starts_with("HTTP/1.1 200 "), "{what}: {answer}");
        }
    }
}

#[test]
fn serve_refuses_oversized_and_malformed_requests() {
    let srv = Served::start();
    let get = |extra: &str| {
        format!(
            "GET /v1/tracks/T1/playability HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
        )
    };
    let post = |body: &str| {
        format!(
            "POST /v1/playability HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let many_params: String = (0..13).map(|i| format!("x{i}=1;")).collect();
    let too_many_tracks = format!("{{\"tracks\":[{}]}}", vec!["\"T1\""; 101].join(","));
    let deep_body = format!("{{\"tracks\":[{}{}]}}", "[".repeat(1000), "]".repeat(1000));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "one 1 MB header",
            get(&format!("X-Big: {}\r\n", "a".repeat(1_000_000))),
            "HTTP/1.1 431",
            "",
        ),
        (
            "101 headers (limit 100)",
            get(&(0..100)
                .map(|i| format!("X-H{i}: 1\r\n"))
                .collect::<String>()),
            "HTTP/1.1 431",
            "",
        ),
        (
            // Over the head limit (32 KiB) before the target's own limit (64 KiB, 414).
            "a 100 KB request target",
            format!(
                "GET /v1/tracks/{}/playability HTTP/1.1\r\nHost: x\r\n\r\n",
                "A".repeat(100_000)
            ),
            "HTTP/1.1 431",
            "",
        ),
        (
            "a 64 KiB header value (head limit 32 KiB)",
            get(&format!("X-Big: {}\r\n", "a".repeat(64 * 1024))),
            "HTTP/1.1 431",
            "",
        ),
        (
            "a Geo-Hint over 256 bytes",
            get(&format!(
                "Geo-Hint: gps=1,2; acc=5; ts={now}; pad={}\r\n",
                "0".repeat(256)
            )),
            "HTTP/1.1 400",
            r#"{"error":"hint too long","field":"geo-hint"}"#,
        ),
        (
            "a Cell-Hint with 13 parameters",
            get(&format!("Cell-Hint: mcc=262; mnc=01; {many_params}\r\n")),
            "HTTP/1.1 400",
            r#"{"error":"hint too long","field":"cell-hint"}"#,
        ),
        (
            "101 tracks (limit 100)",
            post(&too_many_tracks),
            "HTTP/1.1 400",
            r#"{"error":"at most 100 tracks per request","field":"tracks"}"#,
        ),
        (
            "a body over 64 KiB",
            post(&format!(
                "{{\"tracks\":[\"T1\"],\"pad\":\"{}\"}}",
                "x".repeat(70_000)
            )),
            "HTTP/1.1 413",
            r#"{"error":"body too large","limit_bytes":65536}"#,
        ),
        (
            "JSON nested 1000 deep",
            post(&deep_body),
            "HTTP/1.1 400",
            r#"{"error":"not valid JSON","field":"body"}"#,
        ),
    ];
    let plain = |target: &str, method: &str, extra: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
    };
    let more: Vec<(&str, String, &str, &str)> = vec![
        (
            "a malformed percent-escape in the track id",
            plain("/v1/tracks/T%ZZ/playability", "GET", ""),
            "HTTP/1.1 400",
            r#"{"error":"a track id is 1 to 128 printable characters","field":"track"}"#,
        ),
        (
            "an auth subrequest without X-Original-URI",
            plain("/v1/authz", "GET", ""),
            "HTTP/1.1 400",
            r#"{"error":"missing original URI header","field":"x-original-uri"}"#,
        ),
        (
            "an auth subrequest for a path no route matches",
            plain("/v1/authz", "GET", "X-Original-URI: /audio//seg.mp4\r\n"),
            "HTTP/1.1 403",
            r#"{"decision":"deny","reason":"not_a_track_route","territory":null}"#,
        ),
        (
            "an unknown endpoint",
            plain("/v2/anything", "GET", ""),
            "HTTP/1.1 404",
            r#"{"error":"no such endpoint"}"#,
        ),
        (
            "not HTTP at all",
            "THIS IS NOT HTTP\r\n\r\n".to_owned(),
            "HTTP/1.1 400",
            "",
        ),
    ];
    for (what, request, status, body) in cases.into_iter().chain(more) {
        let (got_status, got_body) = srv.exchange(request.as_bytes());
        assert!(got_status.starts_with(status), "{what}: {got_status}");
        if !body.is_empty() {
            assert_eq!(got_body, body, "{what}");
        }
    }
    // Still serving well-formed requests.
    let (status, _) = srv.exchange(get("").as_bytes());
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}

/// `import wigle` writes an access-point file that a data directory serves: the imported
/// access points answer `check --wifi`, a broken export writes nothing, and `check` refuses
/// a malformed `--wifi` with the field and not the value.
#[test]
fn import_wigle_then_check_wifi() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("wifi")).expect("mkdir");
    let regions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    std::fs::create_dir_all(data.join("licenses")).expect("mkdir");
    std::fs::create_dir_all(data.join("custom")).expect("mkdir");
    for f in [
        "countries.geojson.gz",
        "groups.toml",
        "custom/lake-constance.geojson",
        "licenses/sample.toml",
    ] {
        std::fs::copy(regions.join(f), data.join(f)).expect("copy");
    }
    // Two access points in Vienna, surveyed twice each; a Bluetooth row is skipped.
    let export = "WigleWifi-1.4,appRelease=2.53,model=Pixel,release=11,device=x,display=x,board=x,brand=x\n\
        MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,Type\n\
        00:00:5e:00:53:71,home,[WPA2],2024-01-01 10:00:00,6,-50,48.20820,16.37380,180,5,WIFI\n\
        00:00:5e:00:53:71,home,[WPA2],2024-01-01 10:01:00,6,-70,48.20840,16.37400,180,8,WIFI\n\
        00:00:5e:00:53:72,cafe,[ESS],2024-01-01 10:02:00,11,-60,48.20850,16.37420,180,4,WIFI\n\
        00:00:5e:00:53:72,cafe,[ESS],2024-01-01 10:03:00,11,-62,48.20830,16.37410,180,4,WIFI\n\
        00:00:5e:00:53:73,buds,,2024-01-01 10:02:00,0,-80,48.2,16.3,180,4,BT\n";
    let survey = tmp.path().join("survey.csv");
    std::fs::write(&survey, export).expect("write");
    let out = data.join("wifi/aps.csv");
    let o = run(
        &[
            "import",
            "wigle",
            survey.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("2 access points from 5 rows (1 skipped)"),
        "{err}"
    );
    let csv = std::fs::read_to_string(&out).expect("written");
    assert!(!csv.contains("home") && !csv.contains("cafe"), "{csv}");

    let check = |wifi: &str| {
        run(
            &[
                "--regions",
                data.to_str().expect("path"),
                "check",
                "--track",
                "QZNW52400010",
                "--wifi",
                wifi,
            ],
            None,
        )
    };
    let o = check("00:00:5e:00:53:71@-55,00:00:5e:00:53:72@-60");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(
        (
            v["decision"].as_str(),
            v["source"].as_str(),
            v["territory"].as_str()
        ),
        (Some("allow"), Some("wifi"), Some("AT")),
        "{v}"
    );
    assert_eq!(o.status.code(), Some(0));
    let o = check("00:00:5e:00:53:71@-55");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["reason"], "location_unknown", "one access point: {v}");
    let o = check("00:00:5e:00:53:71@-55,00:00:5e:00:53:7z");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--wifi: wifi:") && !err.contains("53:7z"),
        "{err}"
    );

    // A broken export: an error naming file and line, and the old file stays.
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, export.replace("48.20840", "north")).expect("write");
    let o = run(
        &[
            "import",
            "wigle",
            bad.to_str().expect("path"),
            "--out",
            out.to_str().expect("path"),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.csv: line 4: CurrentLatitude"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).expect("kept"), csv);
}

/// A reader that closes the pipe before the output comes (`regiongate … | head`) ends the
/// command quietly with its own status: no panic message, no error line.
#[test]
fn a_closed_stdout_pipe_is_not_a_crash() {
    use std::io::Write;
    let bin = env!("CARGO_BIN_EXE_regiongate");
    for (args, status) in [
        (&["validate"][..], 0),
        (
            &["check", "--track", "QZNW52400010", "--country", "DE"][..],
            0,
        ),
        (
            &["check", "--track", "QZNW52400010", "--country", "US"][..],
            1,
        ),
        (&["where", "--lat", "52.52", "--lon", "13.40"][..], 0),
        (&["where", "--batch"][..], 0),
    ] {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("regiongate starts");
        // Closed before the snapshot is loaded, so every write meets a closed pipe.
        drop(child.stdout.take());
        let mut stdin = child.stdin.take().expect("stdin");
        if args.contains(&"--batch") {
            let lines = "52.52,13.40\n48.85,2.35\n".repeat(20_000);
            let _ = stdin.write_all(lines.as_bytes());
        }
        drop(stdin);
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    }
}

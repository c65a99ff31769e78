//! The deployment files: `deploy/regiongate.example.toml` loads, and the real nginx with
//! exactly `deploy/nginx/nginx.conf` (placeholders replaced) asks regiongate before playback.
//!
//! nginx must be installed (`.ci/run` installs it); without it the test fails, it does not skip.

use crate::util::serving_ports;
use regiongate::config::{Config, Mode, Overrides};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EXAMPLE_TOML: &str = include_str!("../../deploy/regiongate.example.toml");
const NGINX_CONF: &str = include_str!("../../deploy/nginx/nginx.conf");

/// Addresses of the embedded IP database (regions/ip/geoip.mmdb).
const IP_DE: &str = "193.99.144.80";
const IP_US: &str = "8.8.8.8";
/// "Alpenglow": licensed in DACH (DE, AT, CH, LI) only.
const ALPENGLOW: &str = "QZNW52400010";
/// Taken down (an explicitly empty deal set).
const TAKEN_DOWN: &str = "QZNW52400003";
/// Licensed worldwide for streaming, for download on the premium tier only.
const TIDEWATER_1: &str = "QZNW52400001";

#[test]
fn example_config_loads_and_documents_the_defaults() {
    let no_env = |_: &str| None;
    let c = Config::load(Some(EXAMPLE_TOML), no_env, Overrides::default())
        .unwrap_or_else(|e| panic!("deploy/regiongate.example.toml does not load: {e}"));
    let defaults = Config::load(None, no_env, Overrides::default()).expect("defaults");
    // The file writes out every default it documents: loading it changes nothing.
    assert_eq!(
        format!("{c:?}"),
        format!("{defaults:?}"),
        "deploy/regiongate.example.toml no longer matches the defaults in src/config/"
    );
    // Precedence as documented: flags > environment > file > defaults.
    let env = |k: &str| match k {
        "REGIONGATE_LISTEN" => Some("127.0.0.1:7001".to_owned()),
        "REGIONGATE_MODE" => Some("proxy".to_owned()),
        "REGIONGATE_UPSTREAM" => Some("http://127.0.0.1:7002".to_owned()),
        _ => None,
    };
    let c = Config::load(Some(EXAMPLE_TOML), env, Overrides::default()).expect("env");
    assert_eq!(c.listen.port(), 7001);
    assert_eq!(c.mode, Mode::Proxy);
    assert_eq!(
        c.proxy.expect("proxy mode").upstream.to_string(),
        "http://127.0.0.1:7002/"
    );
    let flags = Overrides {
        listen: Some("127.0.0.1:7003".into()),
        ..Overrides::default()
    };
    let c = Config::load(Some(EXAMPLE_TOML), env, flags).expect("flags");
    assert_eq!(c.listen.port(), 7003);
}

// ---- Processes and plain HTTP/1.1 on loopback ------------------------------------------------

/// Child processes killed when the test ends, passes or fails; their logs are printed on
/// failure.
pub(crate) struct Procs {
    pub(crate) children: Vec<(&'static str, Child)>,
    pub(crate) logs: Vec<PathBuf>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for l in &self.logs {
                let text = std::fs::read_to_string(l).unwrap_or_default();
                eprintln!("---- {} ----\n{text}", l.display());
            }
        }
    }
}

impl Procs {
    fn child(&mut self, name: &str) -> &mut Child {
        &mut self
            .children
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("known child")
            .1
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The nginx binary, or a failure that says how to get one.
pub(crate) fn nginx_binary() -> PathBuf {
    for cand in ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"] {
        if Command::new(cand)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return PathBuf::from(cand);
        }
    }
    panic!(
        "nginx is not installed (looked on PATH, in /usr/sbin and /usr/local/sbin). This test \
         runs the real nginx with deploy/nginx/nginx.conf and does not skip: install it with \
         `apt-get install -y nginx` (.ci/run does)."
    );
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// `GET path` on 127.0.0.1:port, one request per connection.
pub(crate) fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: play.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The origin: answers every request with its path and the X-Regiongate-* headers it got.
/// Keep-alive (nginx pools upstream connections).
pub(crate) fn start_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("origin listens");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = conn.try_clone().expect("clone");
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut seen = Vec::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.to_ascii_lowercase().starts_with("x-regiongate-")
                        {
                            seen.push(format!("{}={}", k.to_ascii_lowercase(), v.trim()));
                        }
                    }
                    seen.sort();
                    let body = format!("origin {path}\n{}\n", seen.join("\n"));
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if out.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

pub(crate) fn wait_until(
    what: &str,
    procs: &mut Procs,
    name: &str,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        if let Ok(Some(st)) = procs.child(name).try_wait() {
            panic!("{name} exited with {st} before {what}");
        }
        assert!(Instant::now() < deadline, "{what}: not within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn geo_hint(lat: f64, lon: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    format!("gps={lat},{lon}; acc=20; ts={now}")
}

/// The placeholders of deploy/nginx/nginx.conf, replaced; nothing else changes.
fn nginx_conf(listen: u16, regiongate: u16, origin: u16) -> String {
    for p in ["__LISTEN__", "__REGIONGATE__", "__ORIGIN__"] {
        assert!(NGINX_CONF.contains(p), "deploy/nginx/nginx.conf lacks {p}");
    }
    let conf = NGINX_CONF
        .replace("__LISTEN__", &format!("127.0.0.1:{listen}"))
        .replace("__REGIONGATE__", &format!("127.0.0.1:{regiongate}"))
        .replace("__ORIGIN__", &format!("127.0.0.1:{origin}"));
    assert!(!conf.contains("__"), "a placeholder is left");
    conf
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn nginx_auth_request_in_front_of_regiongate() {
    let nginx = nginx_binary();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for d in ["logs", "tmp", "client-address.d"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    let front = free_port();
    let origin = start_origin();
    let mut procs = Procs {
        children: Vec::new(),
        logs: vec![
            dir.join("regiongate.log"),
            dir.join("nginx.stderr"),
            dir.join("logs/error.log"),
        ],
    };

    // regiongate on the embedded data, believing nginx's X-Forwarded-For; a hint far from the
    // IP country asks for a precise location (so that the test can reach that answer).
    let toml = dir.join("regiongate.toml");
    write(
        &toml,
        "[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [policy]\non_conflict = \"need_precise_location\"\n\
         [limits]\ngrace_period_ms = 100\n",
    );
    let log = std::fs::File::create(dir.join("regiongate.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .arg("serve")
        .arg("--config")
        .arg(&toml)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("regiongate starts");
    procs.children.push(("regiongate", child));
    // Its ports, from its start-up line: picked by the kernel, so no other process can take
    // them between a test's choice and regiongate's bind.
    let mut ports = None;
    wait_until("regiongate is serving", &mut procs, "regiongate", || {
        let log = std::fs::read_to_string(dir.join("regiongate.log")).unwrap_or_default();
        ports = serving_ports(&log);
        ports.is_some()
    });
    let (public, admin) = ports.expect("ports in the start-up line");

    // nginx with deploy/nginx/nginx.conf; the listener's address comes from a test header
    // through the file's client-address.d/ include (all test traffic is from 127.0.0.1).
    let conf = dir.join("nginx.conf");
    write(&conf, &nginx_conf(front, public, origin));
    write(
        &dir.join("client-address.d/test.conf"),
        "set_real_ip_from 127.0.0.1;\nreal_ip_header X-Test-Client-IP;\n",
    );
    let prefix = format!("{}/", dir.display());
    let t = Command::new(&nginx)
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .args(["-p", &prefix])
        .output()
        .expect("nginx -t runs");
    assert!(
        t.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let stderr = std::fs::File::create(dir.join("nginx.stderr")).expect("stderr file");
    let global = format!(
        "daemon off; master_process off; pid {};",
        dir.join("nginx.pid").display()
    );
    let child = Command::new(&nginx)
        .arg("-c")
        .arg(&conf)
        .args(["-p", &prefix, "-g", &global])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("nginx starts");
    procs.children.push(("nginx", child));

    wait_until("regiongate is ready", &mut procs, "regiongate", || {
        TcpStream::connect(("127.0.0.1", admin)).is_ok() && get(admin, "/readyz", &[]).status == 200
    });
    wait_until("nginx listens", &mut procs, "nginx", || {
        TcpStream::connect(("127.0.0.1", front)).is_ok()
    });

    let play = |track: &str, ip: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("X-Test-Client-IP", ip)];
        h.extend_from_slice(extra);
        get(front, &format!("/audio/{track}/seg-1.mp4"), &h)
    };

    // Licensed where the listener is: the origin answers, with the decision headers.
    let r = play(ALPENGLOW, IP_DE, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body
            .starts_with(&format!("origin /audio/{ALPENGLOW}/seg-1.mp4\n")),
        "{r:?}"
    );
    assert!(r.body.contains("x-regiongate-decision=allow\n"), "{r:?}");
    assert!(r.body.contains("x-regiongate-territory=DE\n"), "{r:?}");
    let version = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("x-regiongate-version="))
        .unwrap_or("");
    assert!(
        !version.is_empty(),
        "data version reaches the origin: {r:?}"
    );

    // Not licensed there: 451 with a JSON reason, and the origin is never asked.
    let r = play(ALPENGLOW, IP_US, &[]);
    assert_eq!(r.status, 451, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert!(
        r.body.contains("\"reason\":\"not_licensed_in_territory\""),
        "{r:?}"
    );
    assert!(r.body.contains("\"territory\":\"US\""), "{r:?}");
    assert!(
        r.header("link")
            .is_some_and(|l| l.contains("rel=\"blocked-by\"")),
        "{r:?}"
    );
    assert!(!r.body.contains("origin"), "{r:?}");

    // Taken down: 451 everywhere.
    let r = play(TAKEN_DOWN, IP_DE, &[]);
    assert_eq!(r.status, 451, "{r:?}");

    // The listener's Geo-Hint reaches regiongate: a plausible fix in Salzburg (AT) decides.
    let hint = geo_hint(47.8095, 13.0550);
    let r = play(ALPENGLOW, IP_DE, &[("Geo-Hint", &hint)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("x-regiongate-territory=AT\n"), "{r:?}");

    // A fix in New York from a German address: need a precise location (428), not an error.
    let hint = geo_hint(40.7128, -74.0060);
    let r = play(ALPENGLOW, IP_DE, &[("Geo-Hint", &hint)]);
    assert_eq!(r.status, 428, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert!(r.body.contains("need_precise_location"), "{r:?}");

    // The listener cannot pick its address, tier or use type through forwarded headers.
    let r = play(ALPENGLOW, IP_US, &[("X-Forwarded-For", IP_DE)]);
    assert_eq!(
        r.status, 451,
        "X-Forwarded-For from the listener is replaced: {r:?}"
    );
    let r = get(
        front,
        &format!("/audio/{TIDEWATER_1}/track.flac"),
        &[
            ("X-Test-Client-IP", IP_DE),
            ("X-Regiongate-Tier", "premium"),
            ("X-Regiongate-Use", "download"),
        ],
    );
    assert_eq!(r.status, 200, "stream, free tier: {r:?}");
    // The listener writes the query string: `?use=download&tier=premium` changes nothing, the
    // subrequest is judged with the defaults (stream, free) and nginx's own headers only.
    let r = get(
        front,
        &format!("/audio/{TIDEWATER_1}/track.flac?use=download&tier=premium"),
        &[
            ("X-Test-Client-IP", IP_DE),
            ("X-Regiongate-Tier", "premium"),
        ],
    );
    assert_eq!(r.status, 200, "judged as a free stream: {r:?}");

    // The subrequest location is internal; other paths are not served.
    assert_eq!(get(front, "/_regiongate", &[]).status, 404);
    assert_eq!(get(front, "/v1/authz", &[]).status, 404);

    // regiongate gone: fail closed.
    let rg = procs.child("regiongate");
    rg.kill().expect("stop regiongate");
    rg.wait().expect("regiongate stopped");
    let r = play(ALPENGLOW, IP_DE, &[]);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.body.contains("playback_authorization_unavailable"),
        "{r:?}"
    );
    assert!(!r.body.contains("origin"), "{r:?}");
}

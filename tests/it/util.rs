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

// ---- The edge service in-process: start it on loopback, speak HTTP to it --------------------

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use regiongate::config::{Config, Overrides};
use regiongate::server::App;
use regiongate::server::metrics::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs a future with a deadline; a test that overruns fails with `what` instead of hanging.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s: {what}"))
}

/// The current Unix time in seconds (for hint `ts` fields).
pub fn now_unix() -> i64 {
    Utc::now().timestamp()
}

/// The edge service running in-process on two loopback listeners (`regiongate::server::run`).
pub struct TestServer {
    /// The shared state: swap snapshots, read the config.
    pub app: Arc<App>,
    /// The public listener.
    pub public: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The gRPC ext_authz listener, when the config sets `grpc_listen`.
    pub grpc: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    grpc_task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server from config text (listen addresses are ignored: loopback port 0 is
    /// bound here) and a first snapshot.
    pub async fn start(config_toml: &str, snapshot: Snapshot) -> TestServer {
        TestServer::start_with_env(config_toml, |_| None, snapshot).await
    }

    /// Like [`TestServer::start`], with an environment lookup for the config.
    pub async fn start_with_env(
        config_toml: &str,
        env: impl Fn(&str) -> Option<String>,
        snapshot: Snapshot,
    ) -> TestServer {
        let config = Config::load(Some(config_toml), env, Overrides::default())
            .unwrap_or_else(|e| panic!("test config: {e}\n{config_toml}"));
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics registry");
        let app = App::new(config, snapshot, metrics);
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind public");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let (public_addr, admin_addr) = (
            public.local_addr().expect("public addr"),
            admin.local_addr().expect("admin addr"),
        );
        let (tx, rx) = oneshot::channel::<()>();
        // One signal for both servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (mut grpc_addr, mut grpc_task) = (None, None);
        if app.config.grpc_listen.is_some() {
            let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
            grpc_addr = Some(grpc.local_addr().expect("grpc addr"));
            let mut stopped = stopped.clone();
            grpc_task = Some(tokio::spawn(regiongate::server::grpc::run(
                app.clone(),
                grpc,
                Vec::new(),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )));
        }
        drop(stopped);
        let task = tokio::spawn(regiongate::server::run(
            app.clone(),
            public,
            admin,
            async move {
                let _ = rx.await;
                let _ = stop.send(true);
            },
        ));
        TestServer {
            app,
            public: public_addr,
            admin: admin_addr,
            grpc: grpc_addr,
            shutdown: Some(tx),
            task: Some(task),
            grpc_task,
        }
    }

    /// The data version being served.
    pub fn version(&self) -> String {
        self.app.snapshot.load().version.clone()
    }

    /// Resolves the shutdown future `run` was given (does not wait).
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return (after [`TestServer::trigger_shutdown`]).
    pub async fn join(&mut self) -> std::io::Result<()> {
        let task = self.task.take().expect("run was not joined yet");
        let done = task.await.expect("the server task did not panic");
        if let Some(grpc) = self.grpc_task.take() {
            grpc.await.expect("the grpc task did not panic")?;
        }
        done
    }

    /// Shuts down and waits for `run` to return.
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        within(15, "server shutdown", self.join())
            .await
            .expect("run returns Ok");
    }
}

/// A buffered HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A request builder with a Host header; the body is added by the caller.
pub fn request(method: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "regiongate.test")
}

/// Sends one request on a new connection and returns the response with its body unread.
///
/// # Errors
/// Connect, handshake or protocol errors.
pub async fn send_streaming(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// Sends one request on a new connection and reads the whole response (bounded in time).
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let what = format!("{} {}", req.method(), req.uri());
    within(20, &what.clone(), async move {
        let resp = send_streaming(addr, req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{what}: body: {e}"))
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
}

/// `GET path` with extra headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(addr, "GET", path, headers, "").await
}

/// Any method, extra headers and a body.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut b = request(method, path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    send(addr, req).await
}

/// Writes raw bytes on a new connection and reads until the server closes it (bounded).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    within(10, "raw exchange", async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        // A reset after the answer counts as the end too.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// The sum of the series of `family` (Prometheus text) whose labels include all of `labels`;
/// 0 if there is none.
pub fn metric(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter(|l| {
            let rest = &l[family.len()..];
            rest.starts_with('{') || rest.starts_with(' ')
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---- The real binary: its ports, from its start-up line ----------------------------------------
//
// A test that starts `regiongate serve` passes `--listen 127.0.0.1:0 --admin-listen
// 127.0.0.1:0` and reads the ports the kernel gave it from its start-up line. A port probed
// with a listener that is then dropped is not reserved: another socket (a client connection of
// a test running alongside, say) can take it before regiongate binds, which then fails with
// "Address already in use".

/// A `RUST_LOG` for `regiongate serve` that keeps warnings and errors only, but for the
/// binary's own lines (target `regiongate`): its start-up line, logged at INFO, which
/// [`serving_ports`] reads. Request decision lines (`regiongate::decision`) and the library's
/// other INFO lines (reloads, draining) stay off.
pub const RUST_LOG_WARN_AND_START_UP: &str = "warn,regiongate=info,regiongate::=warn";

/// The public and admin ports of the start-up line `regiongate serving listen=ADDR admin=ADDR
/// ...` in `log` (regiongate's stderr so far); `None` while that line is not there yet.
pub fn serving_ports(log: &str) -> Option<(u16, u16)> {
    let line = log.lines().find(|l| l.contains("regiongate serving"))?;
    let port = |key: &str| -> Option<u16> {
        let rest = &line[line.find(key)? + key.len()..];
        let addr = rest.split_whitespace().next()?;
        addr.parse::<SocketAddr>().ok().map(|a| a.port())
    };
    Some((port(" listen=")?, port(" admin=")?))
}

/// Spawns `cmd`, a `regiongate serve` on `127.0.0.1:0` ports whose log level lets its start-up
/// line through, with its stderr piped, and waits at most `limit` for that line: the child and
/// its public and admin ports. Its stderr is read to the end (the pipe never fills) and dropped
/// after that line. Fails with the stderr so far if the child exits first; kills it on a
/// timeout.
pub fn spawn_serving(
    cmd: &mut std::process::Command,
    limit: Duration,
) -> (std::process::Child, u16, u16) {
    let (child, log) = spawn_until_serving(cmd, limit);
    let (public, admin) = serving_ports(&log).expect("ports in the start-up line");
    (child, public, admin)
}

/// Like [`spawn_serving`]: the child and its log up to the start-up line.
pub fn spawn_until_serving(
    cmd: &mut std::process::Command,
    limit: Duration,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    use std::sync::mpsc::RecvTimeoutError;
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("regiongate starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { return };
            // Nobody listens once the start-up line is in: the send fails, the reading goes on.
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
        }
    });
    let deadline = std::time::Instant::now() + limit;
    let mut log = String::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if serving_ports(&log).is_some() {
                    return (child, log);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                let status = child.wait().expect("wait");
                panic!("regiongate exited at start ({status}):\n{log}");
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no start-up line within {limit:?}:\n{log}");
            }
        }
    }
}

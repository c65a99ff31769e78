//! A closed-loop load client for regiongate's auth front doors, measuring in one run:
//!
//! * `grpc`  Envoy's gRPC ext_authz (`Authorization/Check`, tonic) on `grpc_listen`: few
//!   HTTP/2 connections with many streams each, as Envoy's `grpc_service` cluster runs;
//! * `h2c`   the HTTP authz mode (`GET /v1/authz/<original path>`, Envoy's HTTP service
//!   style) over HTTP/2 with the same connections and streams;
//! * `http1` the same requests over HTTP/1.1 keep-alive, one connection per request in flight
//!   (as nginx `auth_request` and Envoy's HTTP/1 clusters send them).
//!
//! Every mode keeps the same number of requests in flight (`--inflight`), for the same time,
//! cycling over the same listener addresses (benches/load/ips.txt, sent as the attribute
//! context's `source.address` for gRPC and as `X-Forwarded-For` for HTTP). It prints
//! requests/s, p50/p99 latency, and, with `--server-pid`, the server's CPU time per request
//! (from /proc). Driven by benches/load/grpc_vs_http.sh, which starts the release server.
//!
//! ```text
//! cargo bench --bench grpc_load -- --public 127.0.0.1:18180 --grpc 127.0.0.1:18181 \
//!     --ips benches/load/ips.txt [--seconds 10] [--inflight 64] [--conns 4] [--server-pid N]
//! ```

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRACK_PATH: &str = "/audio/QZNW52400010/seg-1.mp4";

struct Args {
    public: SocketAddr,
    grpc: SocketAddr,
    ips: Vec<String>,
    seconds: u64,
    inflight: usize,
    conns: usize,
    server_pid: Option<u32>,
    modes: Vec<String>,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut public, mut grpc, mut ips, mut pid) = (None, None, None, None);
    let (mut seconds, mut inflight, mut conns) = (10, 64, 4);
    let mut modes = vec!["grpc".to_owned(), "h2c".to_owned(), "http1".to_owned()];
    while let Some(a) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--public" => public = Some(v().parse().expect("--public ADDR:PORT")),
            "--grpc" => grpc = Some(v().parse().expect("--grpc ADDR:PORT")),
            "--ips" => ips = Some(v()),
            "--seconds" => seconds = v().parse().expect("--seconds N"),
            "--inflight" => inflight = v().parse().expect("--inflight N"),
            "--conns" => conns = v().parse().expect("--conns N"),
            "--server-pid" => pid = Some(v().parse().expect("--server-pid N")),
            "--modes" => modes = v().split(',').map(str::to_owned).collect(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    let ips_file = ips.expect("--ips FILE");
    let ips = std::fs::read_to_string(&ips_file)
        .unwrap_or_else(|e| panic!("{ips_file}: {e}"))
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect::<Vec<_>>();
    assert!(!ips.is_empty(), "no addresses in {ips_file}");
    Args {
        public: public.expect("--public ADDR:PORT"),
        grpc: grpc.expect("--grpc ADDR:PORT"),
        ips,
        seconds,
        inflight,
        conns: conns.max(1),
        server_pid: pid,
        modes,
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on every Linux architecture Debian ships.
    Some(ticks / 100.0)
}

fn check_request(ip: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: ip.to_owned(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: TRACK_PATH.into(),
                    host: "cdn.example".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    headers: [
                        (":authority".to_owned(), "cdn.example".to_owned()),
                        (":method".to_owned(), "GET".to_owned()),
                        (":path".to_owned(), TRACK_PATH.to_owned()),
                        ("user-agent".to_owned(), "player/1.0".to_owned()),
                        ("x-forwarded-proto".to_owned(), "https".to_owned()),
                    ]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn http_request(ip: &str, authority: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(format!("http://{authority}/v1/authz{TRACK_PATH}"))
        .header("host", authority)
        .header("x-forwarded-for", ip)
        .header("user-agent", "player/1.0")
        .body(Empty::new())
        .expect("request")
}

/// What one worker saw: latencies (µs) and answers by kind.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    allow: u64,
    refused: u64,
    errors: u64,
}

impl Tally {
    /// Counts one HTTP answer (`None`: the request failed) that took since `began`.
    fn http(&mut self, began: Instant, status: Option<u16>) {
        self.micros.push(began.elapsed().as_micros() as u32);
        match status {
            Some(200) => self.allow += 1,
            Some(403 | 428 | 451) => self.refused += 1,
            _ => self.errors += 1,
        }
    }
}

/// The status of an HTTP answer, its body read to the end; `None` when the request failed.
async fn status_of(r: Result<http::Response<hyper::body::Incoming>, hyper::Error>) -> Option<u16> {
    let resp = r.ok()?;
    let s = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(s)
}

type Client = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_connection(addr: SocketAddr) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

async fn run_mode(a: &Args, mode: &str, seconds: u64) -> (Tally, f64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let ips = Arc::new(a.ips.clone());
    let authority = a.public.to_string();
    let mut workers = tokio::task::JoinSet::new();
    match mode {
        "grpc" => {
            let mut channels = Vec::new();
            for _ in 0..a.conns {
                let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", a.grpc))
                    .expect("endpoint")
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .expect("grpc connects");
                channels.push(ch);
            }
            let reqs: Arc<Vec<CheckRequest>> =
                Arc::new(ips.iter().map(|ip| check_request(ip)).collect());
            for w in 0..a.inflight {
                let mut client = AuthorizationClient::new(channels[w % channels.len()].clone());
                let reqs = reqs.clone();
                workers.spawn(async move {
                    let mut t = Tally::default();
                    let mut i = w * 7919;
                    while Instant::now() < deadline {
                        let req = reqs[i % reqs.len()].clone();
                        i += 1;
                        let began = Instant::now();
                        let r = client.check(req).await;
                        t.micros.push(began.elapsed().as_micros() as u32);
                        match r.map(|r| r.into_inner().http_response) {
                            Ok(Some(HttpResponse::OkResponse(_))) => t.allow += 1,
                            Ok(Some(HttpResponse::DeniedResponse(_))) => t.refused += 1,
                            _ => t.errors += 1,
                        }
                    }
                    t
                });
            }
        }
        "h2c" => {
            let mut conns = Vec::new();
            for _ in 0..a.conns {
                conns.push(h2_connection(a.public).await);
            }
            for w in 0..a.inflight {
                let mut send = conns[w % conns.len()].clone();
                let (ips, authority) = (ips.clone(), authority.clone());
                workers.spawn(async move {
                    let mut t = Tally::default();
                    let mut i = w * 7919;
                    while Instant::now() < deadline {
                        let req = http_request(&ips[i % ips.len()], &authority);
                        i += 1;
                        let began = Instant::now();
                        t.http(began, status_of(send.send_request(req).await).await);
                    }
                    t
                });
            }
        }
        _ => {
            for w in 0..a.inflight {
                let (ips, authority, addr) = (ips.clone(), authority.clone(), a.public);
                workers.spawn(async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let _ = tcp.set_nodelay(true);
                    let (mut send, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    let mut t = Tally::default();
                    let mut i = w * 7919;
                    while Instant::now() < deadline {
                        let req = http_request(&ips[i % ips.len()], &authority);
                        i += 1;
                        let began = Instant::now();
                        t.http(began, status_of(send.send_request(req).await).await);
                    }
                    t
                });
            }
        }
    }
    let started = Instant::now();
    let mut all = Tally::default();
    while let Some(t) = workers.join_next().await {
        let t = t.expect("worker");
        all.micros.extend(t.micros);
        all.allow += t.allow;
        all.refused += t.refused;
        all.errors += t.errors;
    }
    (all, started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| mode | requests/s | p50 ms | p99 ms | server CPU µs/request | allow | refused | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for mode in &a.modes {
        // A short warm-up on connections of its own, then the measured run.
        let _ = rt.block_on(run_mode(&a, mode, 2));
        let cpu0 = a.server_pid.and_then(cpu_seconds);
        let (mut t, secs) = rt.block_on(run_mode(&a, mode, a.seconds));
        let cpu1 = a.server_pid.and_then(cpu_seconds);
        t.micros.sort_unstable();
        let n = t.micros.len() as f64;
        let cpu = match (cpu0, cpu1) {
            (Some(x), Some(y)) if n > 0.0 => format!("{:.1}", (y - x) * 1e6 / n),
            _ => "-".to_owned(),
        };
        println!(
            "| {mode} | {:.0} | {:.3} | {:.3} | {cpu} | {} | {} | {} |",
            n / secs,
            percentile(&t.micros, 0.50),
            percentile(&t.micros, 0.99),
            t.allow,
            t.refused,
            t.errors
        );
    }
}

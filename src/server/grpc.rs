//! Front door 2, gRPC: Envoy's external authorization service,
//! `envoy.service.auth.v3.Authorization/Check`, on a listener of its own (`grpc_listen`,
//! HTTP/2 with prior knowledge, as Envoy's `grpc_service` connects).
//!
//! The original request comes in the attribute context: `attributes.request.http` gives the
//! method, the path (with its query) and the headers (a map of lower-case names, or the
//! `header_map` list when Envoy sends raw headers). From there it is judged exactly as an
//! HTTP auth subrequest ([`authz::judge_original`]): the route patterns, grants, the gate.
//!
//! Who the client is follows the trusted-proxy rules: when the gRPC peer (Envoy) is a trusted
//! proxy, the client's address chain starts at `attributes.source.address` (Envoy's
//! downstream peer; with `x-forwarded-for` walked when that one is trusted too), and the CDN's
//! use and tier headers are believed. From an untrusted peer, the attribute context's
//! addresses and forwarding headers are ignored: the peer itself is the client.
//!
//! Answers: an allow is `OkHttpResponse` with the decision headers for the upstream (they
//! overwrite any the listener sent); a refusal is `DeniedHttpResponse` with the HTTP status
//! (`authz.deny_status`, `authz.need_precise_status`), the headers and the JSON body of the
//! HTTP mode. The `google.rpc.Status` is `OK` or `PERMISSION_DENIED`.
//!
//! Bad input: a request without `attributes.request.http`, or with an empty path or method,
//! is `INVALID_ARGUMENT`; a message that does not decode is `INVALID_ARGUMENT`; one larger than
//! `limits.grpc_max_message_bytes` is `RESOURCE_EXHAUSTED`; a request whose deadline
//! (`grpc-timeout`) passed before it was decided is `DEADLINE_EXCEEDED`. Status messages are
//! fixed texts: they never carry a value from the request.

use super::authz::{self, Answer, Original};
use super::{App, version_value, wall_clock};
use crate::gate::Door;
use crate::headers::HeaderLines;
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use http::{HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The gRPC method this listener serves.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// What the connection knows of a request before tonic reads it: the peer and when the
/// request's headers arrived (the start of its deadline).
#[derive(Clone, Copy)]
struct Arrival {
    peer: SocketAddr,
    at: Instant,
}

/// The `Authorization` service.
struct Check {
    app: Arc<App>,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let Some(arrival) = request.extensions().get::<Arrival>().copied() else {
            return Err(tonic::Status::internal("no connection information"));
        };
        if let Some(timeout) = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| parse_timeout(v.as_bytes()))
            && arrival.at.elapsed() >= timeout
        {
            return Err(tonic::Status::deadline_exceeded(
                "the deadline passed before the request was decided",
            ));
        }
        let began = Instant::now();
        let check = request.into_inner();
        let response = answer_check(&self.app, arrival.peer, &check, began)?;
        self.app
            .metrics
            .latency(Door::AuthzGrpc, began.elapsed().as_secs_f64());
        Ok(tonic::Response::new(response))
    }
}

/// Judges a `CheckRequest` from `peer`.
fn answer_check(
    app: &App,
    peer: SocketAddr,
    check: &CheckRequest,
    began: Instant,
) -> Result<CheckResponse, tonic::Status> {
    let attributes = check.attributes.as_ref();
    let Some(http) = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Err(tonic::Status::invalid_argument(
            "attributes.request.http is missing",
        ));
    };
    if http.path.is_empty() {
        return Err(tonic::Status::invalid_argument(
            "attributes.request.http.path is empty",
        ));
    }
    if http.method.is_empty() {
        return Err(tonic::Status::invalid_argument(
            "attributes.request.http.method is empty",
        ));
    }
    // From a trusted Envoy, its downstream peer; otherwise nothing the request says.
    let trusted = app.config.client.trusted_proxies.contains(peer.ip());
    let client_from = attributes
        .filter(|_| trusted)
        .and_then(|a| a.source.as_ref())
        .and_then(|s| s.address.as_ref())
        .and_then(|a| a.address.as_ref())
        .and_then(|a| match a {
            Address::SocketAddress(s) => s.address.parse().ok(),
            _ => None,
        })
        .map_or(peer, |ip| SocketAddr::new(ip, 0));
    let headers = AttributeHeaders(http);
    let snap = app.snapshot.load();
    let now = wall_clock(began);
    let original = Original {
        door: Door::AuthzGrpc,
        peer,
        client_from,
        target: &http.path,
        headers: &headers,
    };
    let a = authz::judge_original(app, &snap, &original, |m| http.method == m, now);
    Ok(check_response(&a, version_value(&snap)))
}

/// The `CheckResponse` of an answer.
fn check_response(a: &Answer<'_>, version: Option<HeaderValue>) -> CheckResponse {
    let option = |(name, value): (HeaderName, HeaderValue)| HeaderValueOption {
        header: Some(PbHeaderValue {
            key: name.as_str().to_owned(),
            raw_value: value.as_bytes().to_vec(),
            ..Default::default()
        }),
        // Ours, not the listener's: any it sent with these names are replaced.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    };
    let version = version.map(|v| (super::VERSION, v));
    let headers = a.headers().chain(version).map(option).collect();
    let (code, http_response) = match a.refusal_body() {
        None => (
            tonic::Code::Ok,
            HttpResponse::OkResponse(OkHttpResponse {
                headers,
                ..Default::default()
            }),
        ),
        Some(body) => (
            tonic::Code::PermissionDenied,
            HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(a.status().as_u16()),
                }),
                headers,
                body,
            }),
        ),
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: code as i32,
            ..Default::default()
        }),
        http_response: Some(http_response),
        ..Default::default()
    }
}

/// The header lines of the original request, as the attribute context carries them: the
/// `header_map` list when Envoy sends raw headers (`encode_raw_headers`), else the map, whose
/// names Envoy writes in lower case (repeated lines joined by `,`).
struct AttributeHeaders<'a>(&'a HttpRequest);

impl HeaderLines for AttributeHeaders<'_> {
    fn values_named<'a>(&'a self, name: &HeaderName) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        let raw = self.0.header_map.as_ref();
        let listed = raw.map(move |m| {
            m.headers
                .iter()
                .filter(move |h| h.key.eq_ignore_ascii_case(name.as_str()))
                .map(|h| {
                    if h.raw_value.is_empty() {
                        h.value.as_bytes()
                    } else {
                        h.raw_value.as_slice()
                    }
                })
        });
        let mapped = raw
            .is_none()
            .then(|| self.0.headers.get(name.as_str()).map(String::as_bytes))
            .flatten();
        listed.into_iter().flatten().chain(mapped)
    }
}

/// A `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The HTTP/2 settings of a listener: the header list bounded by `limits.max_header_bytes`,
/// streams per connection by `limits.max_concurrent_streams`, keep-alive pings so that dead
/// peers are noticed.
pub(super) fn h2_builder(app: &App) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let limits = &app.config.limits;
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Rewrites tonic's own refusals of a message it could not read into the statuses of the
/// gRPC spec, with fixed messages: too large (tonic: `OUT_OF_RANGE`) is `RESOURCE_EXHAUSTED`,
/// not decodable (tonic: `INTERNAL`, with prost's text) is `INVALID_ARGUMENT`. The service
/// itself never answers either code, so only tonic's refusals are rewritten.
fn rewrite_refusal<B>(mut resp: http::Response<B>, limit: usize) -> http::Response<B> {
    const STATUS: HeaderName = HeaderName::from_static("grpc-status");
    const MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
    let code = resp.headers().get(&STATUS).map(HeaderValue::as_bytes);
    let rewrite = match code {
        Some(b"11") => Some((
            tonic::Code::ResourceExhausted,
            format!("the CheckRequest is larger than limits.grpc_max_message_bytes ({limit})"),
        )),
        Some(b"13") => Some((
            tonic::Code::InvalidArgument,
            "the CheckRequest does not decode".to_owned(),
        )),
        _ => None,
    };
    if let Some((code, message)) = rewrite {
        let h = resp.headers_mut();
        h.insert(STATUS, HeaderValue::from(code as i32));
        if let Ok(m) = HeaderValue::from_str(&message) {
            h.insert(MESSAGE, m);
        }
    }
    resp
}

/// One connection's service: the tonic service with the connection's peer and each request's
/// arrival, its refusals rewritten.
#[derive(Clone)]
struct ConnService {
    inner: AuthorizationServer<Check>,
    peer: SocketAddr,
    limit: usize,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnService {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(Arrival {
            peer: self.peer,
            at: Instant::now(),
        });
        let mut inner = self.inner.clone();
        let limit = self.limit;
        Box::pin(async move {
            let resp = tower_service_call(&mut inner, req).await?;
            Ok(rewrite_refusal(resp, limit))
        })
    }
}

/// Calls a tower service that is always ready (tonic's generated servers are).
async fn tower_service_call<S, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: tonic::codegen::Service<R>,
{
    std::future::poll_fn(|cx: &mut Context<'_>| svc.poll_ready(cx)).await?;
    svc.call(req).await
}

/// Serves the gRPC listener until `stopped` turns true, then stops accepting and gives open
/// streams the grace period (connections are told with GOAWAY). Whether all finished in time.
/// At most `limits.max_connections` connections are open at once; more wait in the kernel
/// backlog until one closes. Connections run on `runtimes` in turn (the public shards, so that
/// Envoy's few long-lived connections use every core), or on the current runtime when empty.
pub(super) async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    runtimes: Vec<tokio::runtime::Handle>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let limit = app.config.limits.grpc_max_message_bytes;
    let inner = AuthorizationServer::new(Check { app: app.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit.max(64 * 1024));
    let builder = h2_builder(&app);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let most = app.config.limits.max_connections;
    let mut turn = runtimes.iter().cycle();
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept(), if connections.len() < most => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "grpc listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = ConnService {
            inner: inner.clone(),
            peer,
            limit,
        };
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        let serving = async move {
            let _ = watched.await;
        };
        match turn.next() {
            Some(runtime) => connections.spawn_on(serving, runtime),
            None => connections.spawn(serving),
        };
    }
    drop(listener);
    let drained = tokio::time::timeout(app.config.limits.grace_period, async {
        tokio::join!(graceful.shutdown(), async {
            while connections.join_next().await.is_some() {}
        })
    })
    .await
    .is_ok();
    connections.shutdown().await;
    drained
}

/// Serves Envoy's gRPC ext_authz on `listener` until `shutdown` resolves, then drains within
/// the grace period. Runs beside [`super::run`] (or [`super::run_sharded`]), sharing the
/// [`App`]: it accepts on the current runtime and serves each connection on the next of
/// `runtimes` (the public shards' runtimes; empty: the current runtime).
///
/// # Errors
/// None at present: accept errors are logged and retried.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    runtimes: Vec<tokio::runtime::Handle>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(accept_loop(app, listener, runtimes, stopped));
    shutdown.await;
    let _ = stop.send(true);
    if !serving.await.unwrap_or(true) {
        tracing::warn!("grpc listener: grace period over, closing the remaining connections");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_timeout(b"1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        for bad in [&b""[..], b"m", b"123456789m", b"12x", b"-1S", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tonic_refusals_are_rewritten() {
        let with = |code: &str| {
            http::Response::builder()
                .header("grpc-status", code)
                .header("grpc-message", "decoded message length too large: 70000")
                .body(())
                .expect("response")
        };
        let r = rewrite_refusal(with("11"), 65536);
        assert_eq!(r.headers()["grpc-status"], "8");
        assert!(
            !r.headers()["grpc-message"]
                .to_str()
                .expect("ascii")
                .contains("70000")
        );
        assert_eq!(rewrite_refusal(with("13"), 1).headers()["grpc-status"], "3");
        assert_eq!(rewrite_refusal(with("7"), 1).headers()["grpc-status"], "7");
    }
}

//! Front door 3: reverse proxy in front of the origin (`mode = "proxy"`).
//!
//! Requests whose path matches a track route are decided; allowed ones are forwarded to the
//! fixed upstream with hyper-util's pooled client, bodies streaming both ways (media is never
//! buffered), hop-by-hop headers removed, `X-Forwarded-For` and `Forwarded` appended, Range
//! and HEAD passed through. Denied ones get `451 Unavailable For Legal Reasons` (RFC 7725)
//! with `Link: <...>; rel="blocked-by"` and a JSON reason. Upstream down: 502; no response
//! headers in time: 504; an origin that stops sending the body for as long as the response
//! timeout: the response is aborted (the client's connection closes, the upstream one is
//! dropped). All counted by kind.
//!
//! The proxy is never open: the upstream comes from the configuration only; absolute-form
//! request targets and CONNECT are refused, and `Host` is never used to pick a destination.
//! A request must carry exactly one `Host` (RFC 9112 §3.2); `X-Forwarded-Host`, `-Proto` and
//! `-Port` are passed on only from trusted proxies, like the address chain.

use super::metrics::{Door, UpstreamError};
use super::{App, Body, BoxError, json_response};
use crate::config::{ProxyConfig, Unmatched};
use crate::decide::Verdict;
use crate::route::match_routes;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The pooled client and the fixed origin.
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    cfg: ProxyConfig,
}

impl Upstream {
    /// A client for the configured origin.
    pub fn new(cfg: &ProxyConfig) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Upstream {
            client,
            cfg: cfg.clone(),
        }
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

fn blocked(
    cfg: &ProxyConfig,
    head: bool,
    decision: &str,
    reason: &str,
    territory: Option<&str>,
) -> Response<Body> {
    let mut r = if head {
        let mut r = Response::new(super::full(""));
        *r.status_mut() = StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS;
        r
    } else {
        json_response(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            &json!({"decision": decision, "reason": reason, "territory": territory}),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&format!("<{}>; rel=\"blocked-by\"", cfg.blocked_by)) {
        r.headers_mut().insert(header::LINK, v);
    }
    r.headers_mut().insert(
        super::authz::DECISION_HEADER,
        HeaderValue::from_static(if decision == "deny" {
            "deny"
        } else {
            "need_precise_location"
        }),
    );
    r
}

/// Handles a proxied request.
pub async fn handle(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (Door, Response<Body>) {
    let Some(up) = app.upstream.as_ref() else {
        return (
            Door::Other,
            json_response(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
        );
    };
    if req.method() == Method::CONNECT {
        return (
            Door::Proxy,
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "CONNECT is not supported"}),
            ),
        );
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return (
            Door::Proxy,
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "absolute-form request targets are refused"}),
            ),
        );
    }
    // One Host, always: with two, the origin and a cache in between could each pick another.
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
        return (
            Door::Proxy,
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "exactly one Host header is required"}),
            ),
        );
    }
    let head = req.method() == Method::HEAD;
    let path = req.uri().path().to_owned();
    match match_routes(&app.config.routes, &path) {
        None if up.cfg.unmatched == Unmatched::Deny => {
            return (
                Door::Proxy,
                json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "not a track route"}),
                ),
            );
        }
        None => {}
        Some(m) => {
            let d = match super::decide_cdn(
                app,
                snap,
                Door::Proxy,
                peer,
                peer,
                req.headers(),
                &m,
                chrono::Utc::now(),
            ) {
                Ok(d) => d,
                Err(reason) => return (Door::Proxy, blocked(&up.cfg, head, "deny", reason, None)),
            };
            if d.verdict != Verdict::Allow {
                let territory = d.territory.map(|t| snap.territories.code(t));
                return (
                    Door::Proxy,
                    blocked(
                        &up.cfg,
                        head,
                        d.verdict.as_str(),
                        d.reason.as_str(),
                        territory,
                    ),
                );
            }
        }
    }
    (Door::Proxy, forward(app, up, peer, req).await)
}

async fn forward(
    app: &App,
    up: &Upstream,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(up.cfg.upstream.authority().map_or("", |a| a.as_str()))
        .path_and_query(pq)
        .build()
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad request target"}),
        );
    };
    parts.uri = uri;
    let ip = peer.ip();
    // A chain is passed on only from a trusted proxy; from anyone else it is the client's own
    // claim, so the origin gets the socket peer alone.
    let trusted = app.config.client.trusted_proxies.contains(ip);
    let original_host = parts.headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if !trusted {
        // The client's own word on the public host, scheme and port: an origin building
        // links or redirects from them would point its users elsewhere.
        for name in ["x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"] {
            parts.headers.remove(name);
        }
    }
    // Location hints serve the decision only: they never leave the request (PRIVACY.md).
    parts.headers.remove("geo-hint");
    parts.headers.remove("cell-hint");
    parts.headers.remove("wifi-hint");
    // The origin sees its own name; the listener's Host goes along as X-Forwarded-Host.
    if let Some(a) = up
        .cfg
        .upstream
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, a);
    }
    // A trusted proxy in front already named the public host; keep its word.
    if let Some(h) = original_host
        && !parts.headers.contains_key("x-forwarded-host")
    {
        parts.headers.insert("x-forwarded-host", h);
    }
    let prev = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|_| trusted)
            .map(str::to_owned)
    };
    let xff = match prev("x-forwarded-for") {
        Some(p) => format!("{p}, {ip}"),
        None => ip.to_string(),
    };
    let node = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    let fwd = match prev("forwarded") {
        Some(p) => format!("{p}, for={node};proto=http"),
        None => format!("for={node};proto=http"),
    };
    for (name, value) in [("x-forwarded-for", xff), ("forwarded", fwd)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            parts.headers.insert(name, v);
        }
    }
    let req = Request::from_parts(parts, body);
    let sent = tokio::time::timeout(up.cfg.response_timeout, up.client.request(req)).await;
    let resp = match sent {
        Err(_) => {
            app.metrics.upstream_error(UpstreamError::Timeout);
            return json_response(
                StatusCode::GATEWAY_TIMEOUT,
                &json!({"error": "the origin did not answer in time"}),
            );
        }
        Ok(Err(e)) => {
            let kind = if e.is_connect() {
                UpstreamError::Connect
            } else {
                UpstreamError::Protocol
            };
            app.metrics.upstream_error(kind);
            return json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"error": "the origin is unavailable"}),
            );
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = IdleCut {
        inner: body,
        idle: up.cfg.response_timeout,
        waiting: None,
        metrics: app.metrics.clone(),
    }
    .boxed();
    Response::from_parts(parts, body)
}

/// An upstream response body that fails once the origin has sent nothing for `idle` while
/// the proxy was waiting for it. Without it an origin that stalls mid-body would hold the
/// client's connection, its connection slot and the upstream connection forever.
///
/// The clock runs only while the proxy waits on the origin: a client that reads slowly does
/// not count against the origin.
struct IdleCut {
    inner: Incoming,
    idle: Duration,
    /// Armed when a poll found no data; disarmed by the next frame.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: super::metrics::Metrics,
}

impl hyper::body::Body for IdleCut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|f| {
                f.map_err(|e| {
                    this.metrics.upstream_error(UpstreamError::Body);
                    Box::new(e) as BoxError
                })
            }));
        }
        let idle = this.idle;
        let timer = this
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.waiting = None;
                this.metrics.upstream_error(UpstreamError::Body);
                Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the origin stopped sending the response body",
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

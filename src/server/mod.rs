//! The edge service: hyper 1 on tokio.
//!
//! * Public listener: [`preflight`] (client questions), [`authz`] (CDN auth subrequests),
//!   [`proxy`] (reverse proxy in front of the origin, `mode = "proxy"`).
//! * Admin listener: [`admin`] (health, readiness, metrics, snapshot, reload).
//!
//! Every request loads the current [`Snapshot`] once and uses it to the end. No locks on the
//! request path; a fixed number of connection slots caps open connections, and at the limit
//! the oldest connection that has sent no request makes room ([`shed`]); shutdown stops
//! accepting and drains in-flight requests within a grace period.

pub mod admin;
pub mod authz;
mod balance;
pub mod cpus;
mod fast;
pub mod grpc;
mod listen;
pub mod metrics;
pub mod preflight;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod shed;

pub use listen::{PublicShard, ShardPlan, bind_shards, plan_shards, run, run_sharded};

use crate::config::{Config, Steering};
use crate::decide::{Decision, Verdict};
use crate::gate::{self, Door, Extracted, Gate, Record};
use crate::headers::HeaderLines;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::Metrics;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// The error type of response bodies (upstream bodies can fail mid-stream).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body: small buffers for our own answers, streams for proxied ones.
pub type Body = BoxBody<Bytes, BoxError>;

/// Header carrying the data version on every response.
pub const VERSION_HEADER: &str = "x-regiongate-version";

const VERSION: HeaderName = HeaderName::from_static(VERSION_HEADER);

thread_local! {
    /// The version header value of the snapshot this worker thread served last, with the
    /// version it was made from: built once per snapshot and thread rather than per response
    /// (a clone shares the bytes; one copy per thread keeps their reference count on a cache
    /// line that thread owns).
    static VERSION_VALUE: RefCell<Option<(String, HeaderValue)>> = const { RefCell::new(None) };
}

thread_local! {
    /// A wall-clock reading and the monotonic instant it belongs to, renewed every second.
    static WALL_BASE: Cell<Option<(Instant, DateTime<Utc>)>> = const { Cell::new(None) };
}

/// The wall-clock time at `at`, an instant the caller has just read: derived from this
/// thread's last real reading of the wall clock, which is at most a second old (so a step of
/// the system clock shows within a second). Every request reads the monotonic clock for its
/// latency anyway; a clock read costs 100 to 200 ns on this kind of virtual machine.
pub fn wall_clock(at: Instant) -> DateTime<Utc> {
    WALL_BASE.with(|base| {
        if let Some((then, wall)) = base.get()
            && let Some(since) = at.checked_duration_since(then)
            && since < std::time::Duration::from_secs(1)
            && let Ok(since) = chrono::Duration::from_std(since)
            && let Some(now) = wall.checked_add_signed(since)
        {
            return now;
        }
        let now = Utc::now();
        base.set(Some((at, now)));
        now
    })
}

/// The data version header value of `snap` (made once per thread and version).
fn version_value(snap: &Snapshot) -> Option<HeaderValue> {
    VERSION_VALUE.with_borrow_mut(|cached| match cached {
        Some((v, value)) if *v == snap.version => Some(value.clone()),
        _ => {
            let value = HeaderValue::from_str(&snap.version).ok()?;
            *cached = Some((snap.version.clone(), value.clone()));
            Some(value)
        }
    })
}

/// Sets the data version header of `snap` on a response.
fn stamp_version(resp: &mut Response<Body>, snap: &Snapshot) {
    if let Some(v) = version_value(snap) {
        resp.headers_mut().insert(VERSION, v);
    }
}

/// Everything the handlers share.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The snapshot being served; swapped whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Metric families.
    pub metrics: Metrics,
    /// Reload state (last result, coalescing).
    pub reload: reload::ReloadState,
    /// Aggregate decision report, if configured.
    pub report: Option<report::Report>,
    /// [grants] Playback grants: settings, keys in use (src/grant/).
    pub grants: crate::grant::Grants,
    upstream: Option<proxy::Upstream>,
}

impl App {
    /// Builds the shared state around a first snapshot.
    pub fn new(config: Config, snapshot: Snapshot, metrics: Metrics) -> Arc<App> {
        metrics.set_data_version(&snapshot.version);
        let upstream = config.proxy.as_ref().map(proxy::Upstream::new);
        let report = config
            .report
            .as_ref()
            .map(|(dir, days)| report::Report::new(dir.clone(), *days, &snapshot));
        let grants = crate::grant::Grants::new(config.grants.clone(), metrics.grants.clone());
        Arc::new(App {
            grants,
            config,
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            reload: reload::ReloadState::default(),
            report,
            upstream,
        })
    }

    /// Replaces the snapshot (tests and reload).
    pub fn swap(&self, snapshot: Snapshot) {
        self.metrics.set_data_version(&snapshot.version);
        // Close the report table of the old territories before their ids change meaning.
        self.flush_report(&snapshot, true);
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The shared request pipeline, recording into this service's metrics and report.
    pub fn gate(&self) -> Gate<'_> {
        Gate {
            config: &self.config,
            record: self,
        }
    }

    /// Writes the aggregate report table if its hour is over (or `force`).
    pub fn flush_report(&self, snap: &Snapshot, force: bool) {
        if let Some(r) = &self.report
            && let Err(e) = r.flush(snap, Utc::now(), force)
        {
            tracing::error!(error = %e, "cannot write the decision report");
        }
    }
}

impl Record for App {
    fn decision(&self, door: Door, snap: &Snapshot, d: &Decision) {
        self.metrics.decision(door, d);
        if let Some(r) = &self.report {
            r.count(snap, d);
        }
    }
}

/// A small body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// An empty body. Unlike `full("")` it allocates nothing (the boxed body is zero-sized).
pub fn empty() -> Body {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error naming the field: `{"error": ..., "field": ...}`. Never echoes the value.
pub fn bad_request(field: &str, reason: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": reason, "field": field}),
    )
}

/// Decides a CDN request (auth subrequest or proxied media request) for a matched route, at
/// `now`: use and tier per [`gate::cdn_use_tier`], hints from headers (a malformed hint is
/// ignored: the CDN cannot act on a 400), the client through trusted proxies. `peer` is the
/// proxy that asks (its use and tier headers are believed when it is trusted); the client's
/// address chain starts at `client_from` (the peer itself, except for gRPC ext_authz, where a
/// trusted Envoy names its downstream peer in the attribute context).
///
/// # Errors
/// The reason to deny with, for a use or tier that does not parse.
#[allow(clippy::too_many_arguments)]
pub fn decide_cdn<H: HeaderLines + ?Sized>(
    app: &App,
    snap: &Snapshot,
    door: Door,
    peer: SocketAddr,
    client_from: SocketAddr,
    headers: &H,
    m: &crate::route::RouteMatch<'_>,
    now: DateTime<Utc>,
) -> Result<Decision, &'static str> {
    let config = &app.config;
    let (use_type, tier) = gate::cdn_use_tier(
        config,
        peer,
        headers,
        m.use_type.as_deref(),
        m.tier.as_deref(),
    )?;
    let x = Extracted {
        door,
        client: gate::client(config, client_from, headers),
        hints: gate::header_hints(headers, now, config).unwrap_or_default(),
        now,
    };
    let q = crate::decide::Question {
        track: m.track.as_ref(),
        use_type,
        tier,
    };
    Ok(app.gate().pass(snap, x, &q))
}

/// The JSON form of a decision: territory codes and source kind only (`touched`, the
/// territories an ambiguous location touches, only when there are any).
pub fn decision_json(
    snap: &Snapshot,
    track: &str,
    d: &Decision,
    valid_until: DateTime<Utc>,
) -> serde_json::Value {
    let mut v = json!({
        "track": track,
        "playable": d.verdict == Verdict::Allow,
        "decision": d.verdict.as_str(),
        "reason": d.reason.as_str(),
        "territory": d.territory.map(|t| snap.territories.code(t)),
        "source": d.source.as_str(),
        "valid_until": valid_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    // An ambiguous location names what the evidence touches, so that the client can tell the
    // listener why ("near a border"): territory codes only.
    if !d.touched.is_empty()
        && let Some(m) = v.as_object_mut()
    {
        m.insert(
            "touched".into(),
            d.touched
                .as_slice()
                .iter()
                .map(|&t| snap.territories.code(t))
                .collect(),
        );
    }
    v
}

/// The future of a public request: answered at once (everything but the proxy and `POST
/// /v1/playability`), or a boxed future for the two that wait on I/O.
///
/// hyper keeps the service's future in its connection state, so the immediate answers cost
/// neither an allocation nor a reference count on the shared [`App`] (a counter both cores
/// would bump on every request).
enum PublicFuture {
    Ready(std::future::Ready<Result<Response<Body>, Infallible>>),
    Waiting(std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>),
}

impl Future for PublicFuture {
    type Output = Result<Response<Body>, Infallible>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            PublicFuture::Ready(r) => std::pin::Pin::new(r).poll(cx),
            PublicFuture::Waiting(f) => f.as_mut().poll(cx),
        }
    }
}

/// The public listener's service.
fn public(app: &Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> PublicFuture {
    let started = Instant::now();
    let path = req.uri().path();
    if app.upstream.is_some() && !is_api_path(app, path) {
        return PublicFuture::Waiting(Box::pin(proxied(app.clone(), peer, req, started)));
    }
    if path == "/v1/playability" && !under_prefix(path, &app.config.authz.path_prefix) {
        return PublicFuture::Waiting(Box::pin(preflight_post(app.clone(), peer, req, started)));
    }
    // Everything else answers without waiting on anything, so a request timeout could never
    // fire (a tokio timeout only fires while its future is pending): no timer is set up. The
    // snapshot guard is not a counted reference (no shared counter to bump per request).
    let snap = app.snapshot.load();
    let (door, resp) = route(app, &snap, peer, req, started);
    PublicFuture::Ready(std::future::ready(Ok(finish(
        app, &snap, door, started, resp,
    ))))
}

async fn proxied(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Response<Body>, Infallible> {
    // The proxy applies its own upstream timeouts; body streaming is not cut short. The
    // snapshot is held until the response head is there: a counted reference.
    let snap = app.snapshot.load_full();
    let (door, resp) = proxy::handle(&app, &snap, peer, req).await;
    Ok(finish(&app, &snap, door, started, resp))
}

async fn preflight_post(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Response<Body>, Infallible> {
    // The one endpoint that waits for the client (the request body): bounded by the request
    // timeout.
    let snap = app.snapshot.load_full();
    let limit = app.config.limits.request_timeout;
    let (door, resp) =
        match tokio::time::timeout(limit, preflight::post(&app, &snap, peer, req)).await {
            Ok(resp) => (Door::Preflight, resp),
            Err(_) => (
                Door::Other,
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "request timed out"}),
                ),
            ),
        };
    Ok(finish(&app, &snap, door, started, resp))
}

/// Stamps the data version on a response and records its handling time.
fn finish(
    app: &App,
    snap: &Snapshot,
    door: Door,
    started: Instant,
    mut resp: Response<Body>,
) -> Response<Body> {
    stamp_version(&mut resp, snap);
    app.metrics.latency(door, started.elapsed().as_secs_f64());
    resp
}

fn is_api_path(app: &App, path: &str) -> bool {
    path.starts_with("/v1/")
        || under_prefix(path, &app.config.authz.path_prefix)
        // [grants] The JWKS is regiongate's in proxy mode too.
        || path == crate::grant::JWKS_PATH
}

/// `path` is `prefix` or below it (`prefix/...`).
fn under_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The endpoints that answer at once (all but `POST /v1/playability` and the proxy).
fn route(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: Request<Incoming>,
    started: Instant,
) -> (Door, Response<Body>) {
    let path = req.uri().path();
    if under_prefix(path, &app.config.authz.path_prefix) {
        let now = wall_clock(started);
        return (Door::Authz, authz::handle(app, snap, peer, req, now));
    }
    if path == "/v1/territory" {
        return (Door::Territory, preflight::territory(app, snap, peer, &req));
    }
    if path == crate::grant::JWKS_PATH {
        // [grants] The public keys of the JWT grants (src/grant/).
        return (Door::Other, preflight::jwks(app, &req));
    }
    if let Some(track) = path
        .strip_prefix("/v1/tracks/")
        .and_then(|r| r.strip_suffix("/playability"))
    {
        return (
            Door::Preflight,
            preflight::get(app, snap, peer, &req, track),
        );
    }
    (
        Door::Other,
        json_response(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
    )
}

#[cfg(test)]
mod tests;

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
pub mod metrics;
pub mod preflight;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod route;
pub mod shed;

use crate::config::{Config, Steering};
use crate::decide::{Decision, Verdict, decide_with_evidence};
use crate::headers::HeaderLines;
use crate::locate::hints::{self, HintError, Hints};
use crate::locate::wifi;
use crate::locate::{self, Evidence};
use crate::privacy::{ClientIp, truncate_ip};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Door, Metrics};
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
const GEO_HINT: HeaderName = HeaderName::from_static("geo-hint");
const WIFI_HINT: HeaderName = HeaderName::from_static("wifi-hint");
const CELL_HINT: HeaderName = HeaderName::from_static("cell-hint");

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

    /// Writes the aggregate report table if its hour is over (or `force`).
    pub fn flush_report(&self, snap: &Snapshot, force: bool) {
        if let Some(r) = &self.report
            && let Err(e) = r.flush(snap, Utc::now(), force)
        {
            tracing::error!(error = %e, "cannot write the decision report");
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

/// Reads the hint headers (`Geo-Hint`, `Cell-Hint`, `Wifi-Hint`). A bad hint is an error
/// naming the header and field.
pub fn header_hints<H: HeaderLines + ?Sized>(
    headers: &H,
    now: DateTime<Utc>,
    app: &App,
) -> Result<Hints, (String, HintError)> {
    let one = |name: &HeaderName| -> Result<Option<&str>, (String, HintError)> {
        let mut values = headers.values_named(name);
        let Some(v) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err((name.as_str().to_owned(), HintError::Repeated("header")));
        }
        crate::headers::visible_ascii(v)
            .map(Some)
            .ok_or_else(|| (name.as_str().to_owned(), HintError::Syntax))
    };
    let gps = one(&GEO_HINT)?
        .map(|s| hints::parse_gps(s, now.timestamp(), &app.config.gps))
        .transpose()
        .map_err(|e| (GEO_HINT.as_str().to_owned(), e))?;
    let cell = one(&CELL_HINT)?
        .map(hints::parse_cell)
        .transpose()
        .map_err(|e| (CELL_HINT.as_str().to_owned(), e))?;
    let wifi = one(&WIFI_HINT)?
        .map(wifi::parse_wifi_hint)
        .transpose()
        .map_err(|e| (WIFI_HINT.as_str().to_owned(), e))?;
    Ok(Hints { gps, cell, wifi })
}

/// The evidence of a request: the client address (trusted proxies applied) and the hints.
pub fn evidence<H: HeaderLines + ?Sized>(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    headers: &H,
    hints: &Hints,
) -> (Evidence, Option<ClientIp>) {
    let client = app.config.client.client(peer.ip(), headers);
    (locate::gather(snap, client.as_ref(), hints), client)
}

/// Use type and tier of a CDN request: the route's `{use}` / `{tier}` captures (the operator
/// put them in the media URL, which the CDN signs), else the CDN's headers, believed only from
/// a trusted proxy (a listener could send them too), else the defaults. Never the query string.
///
/// # Errors
/// The reason to deny with, for a value that does not parse.
pub fn cdn_use_tier<H: HeaderLines + ?Sized>(
    app: &App,
    peer: SocketAddr,
    headers: &H,
    m: &route::RouteMatch<'_>,
) -> Result<(crate::license::UseType, crate::license::Tier), &'static str> {
    let cfg = &app.config.authz;
    // Only asked when the route lacks a capture (most routes lack both).
    let trusted = (m.use_type.is_none() || m.tier.is_none())
        && app.config.client.trusted_proxies.contains(peer.ip());
    let header = |h: &HeaderName| {
        if trusted { headers.first_str(h) } else { None }
    };
    let use_type = match m
        .use_type
        .as_deref()
        .or_else(|| header(&cfg.use_header))
        .map(str::parse)
    {
        None => cfg.default_use,
        Some(Ok(u)) => u,
        Some(Err(_)) => return Err("bad_use"),
    };
    let tier = match m
        .tier
        .as_deref()
        .or_else(|| header(&cfg.tier_header))
        .map(str::parse)
    {
        None => cfg.default_tier,
        Some(Ok(t)) => t,
        Some(Err(_)) => return Err("bad_tier"),
    };
    Ok((use_type, tier))
}

/// Decides a CDN request (auth subrequest or proxied media request) for a matched route:
/// use and tier per [`cdn_use_tier`], hints from headers (a malformed hint is ignored: the
/// CDN cannot act on a 400), the client through trusted proxies.
///
/// # Errors
/// The reason to deny with, for a use or tier that does not parse.
pub fn decide_cdn(
    app: &App,
    snap: &Snapshot,
    door: Door,
    peer: SocketAddr,
    headers: &HeaderMap,
    m: &route::RouteMatch<'_>,
) -> Result<Decision, &'static str> {
    decide_cdn_at(app, snap, door, peer, headers, m, Utc::now())
}

/// [`decide_cdn`] at the time `now`.
///
/// # Errors
/// The reason to deny with, for a use or tier that does not parse.
pub fn decide_cdn_at<H: HeaderLines + ?Sized>(
    app: &App,
    snap: &Snapshot,
    door: Door,
    peer: SocketAddr,
    headers: &H,
    m: &route::RouteMatch<'_>,
    now: DateTime<Utc>,
) -> Result<Decision, &'static str> {
    let (use_type, tier) = cdn_use_tier(app, peer, headers, m)?;
    let hints = header_hints(headers, now, app).unwrap_or_default();
    let (ev, client) = evidence(app, snap, peer, headers, &hints);
    let q = crate::decide::Question {
        track: m.track.as_ref(),
        use_type,
        tier,
    };
    Ok(decide_and_record(
        app,
        snap,
        door,
        &q,
        &ev,
        client.as_ref(),
        now,
    ))
}

/// Decides and records (metric and decision log line; the client network only when the
/// operator turned IP logging on, truncated).
pub fn decide_and_record(
    app: &App,
    snap: &Snapshot,
    door: Door,
    q: &crate::decide::Question<'_>,
    ev: &Evidence,
    client: Option<&ClientIp>,
    now: DateTime<Utc>,
) -> Decision {
    // The line's fields (and the clock reads for decide_us) only when it is written.
    let log = tracing::enabled!(target: "regiongate::decision", tracing::Level::INFO);
    let started = log.then(Instant::now);
    let d = decide_with_evidence(snap, &app.config.policy, q, ev, now);
    app.metrics.decision(door, &d);
    if let Some(r) = &app.report {
        r.count(snap, &d);
    }
    let Some(started) = started else {
        return d;
    };
    let territory = d.territory.map(|t| snap.territories.code(t));
    let client_net = if app.config.log_client_ip {
        client.map(truncate_ip)
    } else {
        None
    };
    tracing::info!(
        target: "regiongate::decision",
        door = door.as_str(),
        track = q.track,
        use_type = q.use_type.as_str(),
        tier = q.tier.as_str(),
        decision = d.verdict.as_str(),
        reason = d.reason.as_str(),
        territory = territory.unwrap_or(""),
        source = d.source.as_str(),
        data_version = %snap.version,
        decide_us = started.elapsed().as_micros() as u64,
        client_net = client_net.as_deref().unwrap_or(""),
    );
    d
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

/// A public listening socket and the runtime that serves it (see [`run_sharded`]).
pub struct PublicShard {
    /// The bound, listening, non-blocking socket.
    pub listener: std::net::TcpListener,
    /// The runtime its accept loop and its connections run on.
    pub runtime: tokio::runtime::Handle,
}

/// Serves the public and admin listeners until `shutdown` resolves, then stops accepting and
/// gives in-flight requests the grace period to finish. Everything runs on the current
/// runtime.
///
/// # Errors
/// None at present: accept errors are per connection (logged, then retried).
pub async fn run(
    app: Arc<App>,
    public_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(app, Public::Here(public_listener), admin_listener, shutdown).await
}

/// Like [`run`], with the public side split into shards: one listener per runtime (from
/// [`bind_shards`]: `SO_REUSEPORT` sockets on one address, or one shared socket), each
/// serving its connections on its own runtime, typically a current-thread runtime on a
/// thread of its own (one per core, the way nginx runs one worker process per core). The admin
/// listener, the report task and the coordination run on the current runtime. The connection
/// limit is shared by all shards. With `steer_cpus` (cpu steering: shard *i* pinned to
/// `steer_cpus[i]`), a shard that holds clearly more open connections than the least busy one
/// hands it each new connection, and a connection whose packets keep arriving on another
/// shard's CPU moves there between requests (see `balance.rs`).
///
/// # Errors
/// A listener that cannot be registered with its runtime.
pub async fn run_sharded(
    app: Arc<App>,
    shards: Vec<PublicShard>,
    steer_cpus: &[usize],
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let public = Public::Shards(shards, steer_cpus.to_vec());
    serve(app, public, admin_listener, shutdown).await
}

/// Where the public shards run and how they share connections: [`plan_shards`] decides,
/// [`bind_shards`] binds the sockets, and the caller pins shard *i*'s thread to `cpus[i]`
/// when there are CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// How many shards (at least one).
    pub shards: usize,
    /// The steering in effect: never [`Steering::Auto`].
    pub steering: Steering,
    /// With [`Steering::Cpu`]: shard *i*'s CPU. Empty otherwise.
    pub cpus: Vec<usize>,
    /// Why [`Steering::Cpu`] was wanted (asked for, or `auto` on a loopback listener) but is
    /// not in effect.
    pub fallback: Option<String>,
}

impl ShardPlan {
    /// The CPUs as the startup log shows them: `"0,1"`, or `"-"` when the threads are not
    /// pinned.
    pub fn cpu_list(&self) -> String {
        if self.cpus.is_empty() {
            return "-".to_owned();
        }
        let ids: Vec<String> = self.cpus.iter().map(usize::to_string).collect();
        ids.join(",")
    }

    /// The same shards with [`Steering::Hash`] and nothing pinned, because of `why`.
    pub fn unpinned(self, why: String) -> ShardPlan {
        ShardPlan {
            shards: self.shards,
            steering: Steering::Hash,
            cpus: Vec::new(),
            fallback: Some(why),
        }
    }
}

/// Plans `shards` public shards on `listen` with the `wanted` steering, given the CPUs this
/// process may run on (its affinity mask, in order; [`cpus::usable`]). [`Steering::Auto`] is
/// [`Steering::Cpu`] on a loopback address, else [`Steering::Hash`]. [`Steering::Cpu`] needs
/// exactly one usable CPU per shard, each shard pinned to its own; otherwise (more or fewer
/// shards than CPUs, or the CPUs unknown) it falls back to [`Steering::Hash`] and the
/// scheduler places the threads.
pub fn plan_shards(
    shards: usize,
    wanted: Steering,
    listen: SocketAddr,
    usable_cpus: &[usize],
) -> ShardPlan {
    let shards = shards.max(1);
    let wanted = match wanted {
        Steering::Auto if listen.ip().is_loopback() => Steering::Cpu,
        Steering::Auto => Steering::Hash,
        other => other,
    };
    let plan = ShardPlan {
        shards,
        steering: wanted,
        cpus: Vec::new(),
        fallback: None,
    };
    if wanted != Steering::Cpu {
        plan
    } else if usable_cpus.len() != shards {
        plan.unpinned(format!(
            "{shards} public threads for {} usable CPUs",
            usable_cpus.len()
        ))
    } else {
        ShardPlan {
            cpus: usable_cpus.to_vec(),
            ..plan
        }
    }
}

/// Binds the listening sockets of `plan` to `addr`, one per shard, for [`run_sharded`]:
/// `SO_REUSEPORT` sockets on one address (with [`Steering::Cpu`] each also asks for the
/// connections arriving on its shard's CPU, `SO_INCOMING_CPU`), or with
/// [`Steering::Shared`] one socket that every shard accepts from. With port 0 the first
/// socket picks the port and the others share it. Call inside a runtime; the sockets are
/// returned detached from it.
///
/// # Errors
/// If a socket cannot be created, configured, bound or put into listening state.
pub fn bind_shards(
    addr: SocketAddr,
    plan: &ShardPlan,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(plan.shards);
    for i in 0..plan.shards.max(1) {
        // Shared: the same socket (one accept queue), registered by each shard's runtime.
        if let (Steering::Shared, Some(first)) = (plan.steering, out.first()) {
            let again = first.try_clone()?;
            out.push(again);
            continue;
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As TcpListener::bind does; plus the port shared by the shards.
        socket.set_reuseaddr(true)?;
        if plan.steering != Steering::Shared {
            socket.set_reuseport(true)?;
        }
        #[cfg(target_os = "linux")]
        if let Some(cpu) = plan.cpus.get(i) {
            socket2::SockRef::from(&socket).set_cpu_affinity(*cpu)?;
        }
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        out.push(listener.into_std()?);
    }
    Ok(out)
}

enum Public {
    Here(TcpListener),
    Shards(Vec<PublicShard>, Vec<usize>),
}

/// The public side of an accept loop: connection slots, its shard number, and with
/// balancing the shards' counts and mailboxes and its own inbox.
struct PublicSide {
    permits: Arc<shed::Slots>,
    shard: usize,
    balance: Option<(
        Arc<balance::Balance>,
        tokio::sync::mpsc::UnboundedReceiver<balance::Handoff>,
    )>,
}

async fn serve(
    app: Arc<App>,
    public: Public,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // [shed] A connection has a tenth of the header-read timeout to send its request before
    // it can be shed to make room at the limit (shed.rs).
    let permits = Arc::new(shed::Slots::new(
        app.config.limits.max_connections,
        app.config.limits.header_read_timeout / 10,
        app.metrics.connections_shed.clone(),
    ));
    // `true` once shutdown begins: every accept loop stops accepting and drains its own
    // connections within the grace period.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    match public {
        Public::Here(listener) => loops.push(tokio::spawn(accept_loop(
            app.clone(),
            listener,
            Some(PublicSide {
                permits: permits.clone(),
                shard: 0,
                balance: None,
            }),
            stopped.clone(),
        ))),
        Public::Shards(shards, steer_cpus) => {
            let mut inboxes: Vec<Option<_>> = Vec::new();
            let mut balance = None;
            if steer_cpus.len() == shards.len() && shards.len() > 1 {
                let gauges = (0..shards.len())
                    .map(|i| {
                        app.metrics
                            .shard_connections
                            .with_label_values(&[i.to_string().as_str()])
                    })
                    .collect();
                let (b, rx) = balance::Balance::new(gauges, steer_cpus);
                balance = Some(Arc::new(b));
                inboxes = rx.into_iter().map(Some).collect();
            }
            for (i, shard) in shards.into_iter().enumerate() {
                // A tokio listener belongs to the runtime it is registered with: register it
                // inside a task of that runtime.
                let (app, stopped) = (app.clone(), stopped.clone());
                let side = PublicSide {
                    permits: permits.clone(),
                    shard: i,
                    balance: balance
                        .clone()
                        .zip(inboxes.get_mut(i).and_then(Option::take)),
                };
                let std_listener = shard.listener;
                let (registered_tx, registered) = tokio::sync::oneshot::channel();
                loops.push(shard.runtime.spawn(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => {
                            let _ = registered_tx.send(Ok(()));
                            accept_loop(app, listener, Some(side), stopped).await
                        }
                        Err(e) => {
                            let _ = registered_tx.send(Err(e));
                            true
                        }
                    }
                }));
                let registered = match registered.await {
                    Ok(r) => r,
                    Err(e) => Err(std::io::Error::other(e)),
                };
                if let Err(e) = registered {
                    let _ = stop.send(true);
                    return Err(e);
                }
            }
        }
    }
    loops.push(tokio::spawn(accept_loop(
        app.clone(),
        admin_listener,
        None,
        stopped.clone(),
    )));
    if app.report.is_some() {
        let app2 = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let snap = app2.snapshot.load_full();
                let a = app2.clone();
                // File I/O off the runtime's worker threads.
                let _ = tokio::task::spawn_blocking(move || a.flush_report(&snap, false)).await;
            }
        });
    }
    shutdown.await;
    let _ = stop.send(true);
    tracing::info!(
        grace_ms = app.config.limits.grace_period.as_millis() as u64,
        "shutting down: draining connections"
    );
    let mut drained = true;
    for l in loops {
        drained &= l.await.unwrap_or(true);
    }
    if !drained {
        tracing::warn!("grace period over: closing the remaining connections");
    }
    Ok(())
}

/// Accepts on one listener (public: with its [`PublicSide`]; admin: without) until
/// `stopped`, then closes it and gives its connections the grace period. Whether they all
/// finished in time; those still open when it returns are closed.
async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    public: Option<PublicSide>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> bool {
    // The gauges an open connection of shard `i` is counted in.
    let (permits, shard, balance, mut inbox) = match public {
        Some(p) => {
            let (balance, inbox) = p.balance.unzip();
            (Some(p.permits), p.shard, balance, inbox)
        }
        None => (None, 0, None, None),
    };
    // This shard's gauge, looked up once; another shard's comes from the balance.
    let own_gauge = app
        .metrics
        .shard_connections
        .with_label_values(&[shard.to_string().as_str()]);
    let gauges = |i: usize| {
        let g = match &balance {
            Some(b) if i != shard => b.gauge(i).unwrap_or_else(|| own_gauge.clone()),
            _ => own_gauge.clone(),
        };
        [app.metrics.open_connections.clone(), g]
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // The connection tasks: aborted (their connections closed) when this returns, so that none
    // outlives the server once the grace period is over. Finished ones are reaped as they end.
    let mut connections = tokio::task::JoinSet::new();
    let builder = http1_builder(&app);
    let conn_stopped = stopped.clone();
    let follow: Option<Arc<dyn fast::Follow>> = balance
        .clone()
        .map(|b| Arc::new(balance::FollowFrom(b, shard)) as Arc<dyn fast::Follow>);
    let public_conn = |stream, peer, mut open: OpenConnection| {
        // [shed] A connection that has started a request is never shed (shed.rs).
        let started = open.admission.started();
        let hyper = fast::Hyper {
            builder: builder.clone(),
            watcher: graceful.watcher(),
        };
        let conn = fast::serve(
            app.clone(),
            stream,
            peer,
            started,
            hyper,
            conn_stopped.clone(),
            follow.clone(),
        );
        let balance = balance.clone();
        async move {
            // [shed] Or closed unanswered to make room at the limit: it sent no request.
            let moved = tokio::select! {
                moved = conn => moved,
                _ = open.admission.shed() => None,
            };
            // Between requests, for the shard on its client's CPU: counted there from now,
            // deregistered here, registered there (closed if that shard has stopped).
            if let (Some((stream, to)), Some(b)) = (moved, balance)
                && let (Some(gauge), Ok(stream)) = (b.gauge(to), stream.into_std())
            {
                open.move_shard(gauge);
                let _ = b.hand(to, balance::Handoff { stream, peer, open });
                return;
            }
            // Uncounted here, and on drop if aborted.
            drop(open);
        }
    };
    // [shed] One accept in progress, kept across the loop's turns (reaping a finished
    // connection must not cancel it): at the limit it holds an accepted connection while it
    // waits for a slot, and dropping it would reset that connection.
    let mut accepting = Box::pin(accept(&listener, permits.as_ref()));
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // A connection another shard accepted for this one (balance.rs).
            Some(h) = async { inbox.as_mut()?.recv().await }, if inbox.is_some() => {
                // Registered with this runtime; on failure it closes and counts down.
                if let Ok(stream) = tokio::net::TcpStream::from_std(h.stream) {
                    connections.spawn(public_conn(stream, h.peer, h.open));
                }
                continue;
            }
            accepted = &mut accepting => accepted,
        };
        accepting.set(accept(&listener, permits.as_ref()));
        let Some((stream, peer, permit)) = accepted else {
            continue;
        };
        if permits.is_some() {
            // `accept` gives every public connection a slot.
            let Some(admission) = permit else {
                continue;
            };
            let to = balance.as_ref().map_or(shard, |b| b.choose(shard));
            // Counted here (in the shard that will serve it) and uncounted on drop, so an
            // aborted connection counts down too.
            let open = OpenConnection::new(gauges(to), admission);
            if let Some(b) = balance.as_ref().filter(|_| to != shard) {
                // Leaves this runtime's reactor; if the other shard has stopped taking
                // connections (shutdown), the connection is closed.
                if let Ok(stream) = stream.into_std() {
                    let _ = b.hand(to, balance::Handoff { stream, peer, open });
                }
                continue;
            }
            connections.spawn(public_conn(stream, peer, open));
        } else {
            let app2 = app.clone();
            let conn = builder.serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |req| admin::handle(app2.clone(), req)),
            );
            let watched = graceful.watch(conn);
            connections.spawn(async move {
                let _ = watched.await;
            });
        }
    }
    drop(accepting);
    drop(listener);
    // Connections other shards handed over just before shutdown: served like this shard's
    // own (closed when idle, in-flight requests finished); later handoffs are refused and
    // their connections closed by the sender.
    if let Some(inbox) = inbox.as_mut() {
        inbox.close();
        while let Ok(h) = inbox.try_recv() {
            if let Ok(stream) = tokio::net::TcpStream::from_std(h.stream) {
                connections.spawn(public_conn(stream, h.peer, h.open));
            }
        }
    }
    // hyper's connections finish what is in flight and close when idle once signalled; the
    // fast path's close when idle on `stopped`. All are waited for within the grace period.
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

/// An open public connection: in the gauges (all, its shard's) and holding a connection slot
/// while it lives.
struct OpenConnection {
    gauges: [prometheus::IntGauge; 2],
    admission: shed::Admission,
}

impl OpenConnection {
    fn new(gauges: [prometheus::IntGauge; 2], admission: shed::Admission) -> OpenConnection {
        for g in &gauges {
            g.inc();
        }
        OpenConnection { gauges, admission }
    }

    /// Counts it in another shard's gauge instead of its own.
    fn move_shard(&mut self, to: prometheus::IntGauge) {
        to.inc();
        self.gauges[1].dec();
        self.gauges[1] = to;
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        for g in &self.gauges {
            g.dec();
        }
    }
}

/// Accepts one connection, then (public listener) gets it a slot: a free one, or one made by
/// shedding the oldest connection that has sent no request (shed.rs). While it waits for a
/// slot, further connections wait in the kernel backlog.
async fn accept(
    listener: &TcpListener,
    permits: Option<&Arc<shed::Slots>>,
) -> Option<(tokio::net::TcpStream, SocketAddr, Option<shed::Admission>)> {
    match listener.accept().await {
        Ok((s, peer)) => {
            let permit = match permits {
                Some(slots) => Some(slots.admit().await?),
                None => None,
            };
            if permit.is_some() {
                let _ = s.set_nodelay(true);
            }
            Some((s, peer, permit))
        }
        Err(e) if permits.is_none() => {
            // The admin listener: as before, no back-off.
            tracing::debug!(error = %e, "admin accept failed");
            None
        }
        Err(e) => {
            // Out of file descriptors and the like: back off briefly instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            None
        }
    }
}

/// hyper's default header limit (`http1::Builder::max_headers`).
const HYPER_MAX_HEADERS: usize = 100;

fn http1_builder(app: &App) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(app.config.limits.header_read_timeout)
        .keep_alive(true);
    // hyper's own limit is 100 headers, kept in an array on the stack; setting any limit, even
    // that one, makes it allocate (and initialise) the array on the heap for every request.
    if app.config.limits.max_headers != HYPER_MAX_HEADERS {
        b.max_headers(app.config.limits.max_headers);
    }
    // The head size limit, exact (a head of `max_header_bytes` is read, one byte more is
    // answered 431), and the read buffer bounded by it: hyper's own limit is the buffer's,
    // about 400 KiB. hyper panics below 8 KiB; the config refuses that, the `max` keeps a
    // `Config` built by hand from panicking.
    let head = app
        .config
        .limits
        .max_header_bytes
        .max(crate::config::MIN_HEADER_BYTES_LIMIT);
    b.max_buf_size(head).max_header_size(head);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_steering_needs_one_usable_cpu_per_shard() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:8080".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        for (wanted, listen) in [
            (Steering::Cpu, any),
            (Steering::Auto, lo),
            (Steering::Auto, lo6),
        ] {
            let plan = plan_shards(2, wanted, listen, &[4, 6]);
            assert_eq!(plan.steering, Steering::Cpu, "{wanted:?} {listen}");
            assert_eq!(plan.cpus, vec![4, 6]);
            assert_eq!(plan.cpu_list(), "4,6");
            assert_eq!(plan.fallback, None);
        }
        // Auto off loopback: hash, and that is no fallback.
        let plan = plan_shards(2, Steering::Auto, any, &[4, 6]);
        assert_eq!(
            (plan.steering, plan.cpu_list(), plan.fallback),
            (Steering::Hash, "-".to_owned(), None)
        );
        // More or fewer shards than CPUs, or the CPUs unknown: hash, nothing pinned, and why.
        for (shards, cpus) in [(3, &[0, 1][..]), (1, &[0, 1][..]), (2, &[][..])] {
            let plan = plan_shards(shards, Steering::Cpu, lo, cpus);
            assert_eq!(plan.steering, Steering::Hash, "{shards} {cpus:?}");
            assert!(plan.cpus.is_empty());
            assert_eq!(plan.cpu_list(), "-");
            assert_eq!(plan.shards, shards);
            assert_eq!(
                plan.fallback,
                Some(format!(
                    "{shards} public threads for {} usable CPUs",
                    cpus.len()
                ))
            );
        }
        // The other steerings never pin; zero shards is one.
        for s in [Steering::Hash, Steering::Shared] {
            let plan = plan_shards(0, s, lo, &[0]);
            assert_eq!((plan.shards, plan.steering), (1, s));
            assert!(plan.cpus.is_empty());
            assert_eq!(plan.fallback, None);
        }
    }

    /// Cpu steering asks the kernel, per socket, for the connections arriving on the shard's
    /// CPU.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn cpu_steering_sets_each_sockets_incoming_cpu() {
        let plan = ShardPlan {
            shards: 2,
            steering: Steering::Cpu,
            cpus: vec![1, 0],
            fallback: None,
        };
        let listeners = bind_shards("127.0.0.1:0".parse().expect("addr"), &plan).expect("bind");
        let got: Vec<Option<usize>> = listeners
            .iter()
            .map(|l| socket2::SockRef::from(l).cpu_affinity().ok())
            .collect();
        assert_eq!(got, vec![Some(1), Some(0)]);
    }

    /// Shared steering binds one socket, registered by every shard; the others bind one
    /// socket each on the same port.
    #[tokio::test]
    async fn bind_shards_shares_one_socket_only_when_asked() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        for steering in [Steering::Hash, Steering::Shared] {
            let plan = plan_shards(3, steering, addr, &[]);
            let listeners = bind_shards(addr, &plan).expect("bind");
            assert_eq!(listeners.len(), 3);
            let port = listeners[0].local_addr().expect("addr").port();
            assert!(
                listeners
                    .iter()
                    .all(|l| l.local_addr().map(|a| a.port()).ok() == Some(port))
            );
            // A connection is accepted by exactly one listener; with one shared socket every
            // listener can take it, with SO_REUSEPORT only the one the kernel picked.
            let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut took = 0;
            for l in &listeners {
                l.set_nonblocking(true).expect("nonblocking");
                if l.accept().is_ok() {
                    took += 1;
                }
            }
            assert_eq!(took, 1, "{steering:?}");
            #[cfg(target_os = "linux")]
            for l in &listeners {
                // No incoming-CPU preference without cpu steering (the kernel's -1).
                assert_eq!(
                    socket2::SockRef::from(l).cpu_affinity().ok(),
                    Some(usize::MAX)
                );
            }
            if steering == Steering::Shared {
                let _again = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                std::thread::sleep(std::time::Duration::from_millis(50));
                // The last listener of a shared socket sees the same queue as the first.
                assert!(listeners[2].accept().is_ok(), "one queue");
            }
        }
    }

    #[test]
    fn wall_clock_follows_the_system_clock() {
        let slack = chrono::Duration::milliseconds(5);
        // The first reading sets the base, the next ones are derived from it (0.4 s later)
        // or renew it (0.8 s and more later).
        for _ in 0..4 {
            let before = Utc::now();
            let w = wall_clock(Instant::now());
            let after = Utc::now();
            assert!(
                w >= before - slack && w <= after + slack,
                "{before} {w} {after}"
            );
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
    }

    #[test]
    fn prefixes() {
        assert!(under_prefix("/v1/authz", "/v1/authz"));
        assert!(under_prefix("/v1/authz/audio/x", "/v1/authz"));
        assert!(!under_prefix("/v1/authzx", "/v1/authz"));
        assert!(!under_prefix("/v1/auth", "/v1/authz"));
    }
}

//! The edge service: hyper 1 on tokio.
//!
//! * Public listener: [`preflight`] (client questions), [`authz`] (CDN auth subrequests),
//!   [`proxy`] (reverse proxy in front of the origin, `mode = "proxy"`).
//! * Admin listener: [`admin`] (health, readiness, metrics, snapshot, reload).
//!
//! Every request loads the current [`Snapshot`] once and uses it to the end. No locks on the
//! request path; a semaphore caps open connections; shutdown stops accepting and drains
//! in-flight requests within a grace period.

pub mod admin;
pub mod authz;
pub mod metrics;
pub mod preflight;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod route;

use crate::config::Config;
use crate::decide::{Decision, Verdict, decide_with_evidence};
use crate::locate::hints::{self, GpsHint, HintError};
use crate::locate::{self, Evidence};
use crate::privacy::{CellHint, ClientIp, truncate_ip};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Door, Metrics};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The error type of response bodies (upstream bodies can fail mid-stream).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body: small buffers for our own answers, streams for proxied ones.
pub type Body = BoxBody<Bytes, BoxError>;

/// Header carrying the data version on every response.
pub const VERSION_HEADER: &str = "x-regiongate-version";

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
        Arc::new(App {
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

/// Reads the hint headers. A bad hint is an error naming the header and field.
pub fn header_hints(
    headers: &HeaderMap,
    now: DateTime<Utc>,
    app: &App,
) -> Result<(Option<GpsHint>, Option<CellHint>), (String, HintError)> {
    let one = |name: &str| -> Result<Option<&str>, (String, HintError)> {
        let mut values = headers.get_all(name).iter();
        let Some(v) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err((name.to_owned(), HintError::Repeated("header")));
        }
        v.to_str()
            .map(Some)
            .map_err(|_| (name.to_owned(), HintError::Syntax))
    };
    let gps = one("geo-hint")?
        .map(|s| hints::parse_gps(s, now.timestamp(), &app.config.gps))
        .transpose()
        .map_err(|e| ("geo-hint".to_owned(), e))?;
    let cell = one("cell-hint")?
        .map(hints::parse_cell)
        .transpose()
        .map_err(|e| ("cell-hint".to_owned(), e))?;
    Ok((gps, cell))
}

/// The evidence of a request: the client address (trusted proxies applied) and the hints.
pub fn evidence(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    headers: &HeaderMap,
    gps: Option<GpsHint>,
    cell: Option<&CellHint>,
) -> (Evidence, Option<ClientIp>) {
    let client = app.config.client.client(peer.ip(), headers);
    (locate::gather(snap, client.as_ref(), gps, cell), client)
}

/// Use type and tier of a CDN request: the route's `{use}` / `{tier}` captures (the operator
/// put them in the media URL, which the CDN signs), else the CDN's headers, believed only from
/// a trusted proxy (a listener could send them too), else the defaults. Never the query string.
///
/// # Errors
/// The reason to deny with, for a value that does not parse.
pub fn cdn_use_tier(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    m: &route::RouteMatch,
) -> Result<(crate::license::UseType, crate::license::Tier), &'static str> {
    let cfg = &app.config.authz;
    let trusted = app.config.client.trusted_proxies.contains(peer.ip());
    let header = |h: &http::HeaderName| {
        trusted
            .then(|| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .flatten()
    };
    let use_type = match m
        .use_type
        .clone()
        .or_else(|| header(&cfg.use_header))
        .map(|u| u.parse())
    {
        None => cfg.default_use,
        Some(Ok(u)) => u,
        Some(Err(_)) => return Err("bad_use"),
    };
    let tier = match m
        .tier
        .clone()
        .or_else(|| header(&cfg.tier_header))
        .map(|t| t.parse())
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
    m: &route::RouteMatch,
) -> Result<Decision, &'static str> {
    let (use_type, tier) = cdn_use_tier(app, peer, headers, m)?;
    let now = Utc::now();
    let (gps, cell) = header_hints(headers, now, app).unwrap_or_default();
    let (ev, client) = evidence(app, snap, peer, headers, gps, cell.as_ref());
    let q = crate::decide::Question {
        track: &m.track,
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
    let started = Instant::now();
    let d = decide_with_evidence(snap, &app.config.policy, q, ev, now);
    app.metrics.decision(door, &d);
    if let Some(r) = &app.report {
        r.count(snap, &d);
    }
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

/// The JSON form of a decision: territory code and source kind only.
pub fn decision_json(
    snap: &Snapshot,
    track: &str,
    d: &Decision,
    valid_until: DateTime<Utc>,
) -> serde_json::Value {
    json!({
        "track": track,
        "playable": d.verdict == Verdict::Allow,
        "decision": d.verdict.as_str(),
        "reason": d.reason.as_str(),
        "territory": d.territory.map(|t| snap.territories.code(t)),
        "source": d.source.as_str(),
        "valid_until": valid_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

async fn public(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let snap = app.snapshot.load_full();
    let limit = app.config.limits.request_timeout;
    let is_proxy = app.upstream.is_some() && !is_api_path(&app, req.uri().path());
    let (door, mut resp) = if is_proxy {
        // The proxy applies its own upstream timeouts; body streaming is not cut short.
        proxy::handle(&app, &snap, peer, req).await
    } else {
        match tokio::time::timeout(limit, route(&app, &snap, peer, req)).await {
            Ok(r) => r,
            Err(_) => (
                Door::Other,
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "request timed out"}),
                ),
            ),
        }
    };
    if let Ok(v) = HeaderValue::from_str(&snap.version) {
        resp.headers_mut().insert(VERSION_HEADER, v);
    }
    app.metrics.latency(door, started.elapsed().as_secs_f64());
    Ok(resp)
}

fn is_api_path(app: &App, path: &str) -> bool {
    path.starts_with("/v1/")
        || path == app.config.authz.path_prefix
        || path.starts_with(&format!("{}/", app.config.authz.path_prefix))
}

async fn route(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (Door, Response<Body>) {
    let path = req.uri().path().to_owned();
    let prefix = &app.config.authz.path_prefix;
    if path == *prefix || path.starts_with(&format!("{prefix}/")) {
        return (Door::Authz, authz::handle(app, snap, peer, &req));
    }
    if path == "/v1/territory" {
        return (Door::Territory, preflight::territory(app, snap, peer, &req));
    }
    if path == "/v1/playability" {
        return (Door::Preflight, preflight::post(app, snap, peer, req).await);
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

/// Serves the public and admin listeners until `shutdown` resolves, then stops accepting and
/// gives in-flight requests the grace period to finish.
///
/// # Errors
/// Accept errors that are not per-connection.
pub async fn run(
    app: Arc<App>,
    public_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(app.config.limits.max_connections));
    // Never sent on; dropped when `run` returns, which closes the connections still open then
    // (the grace period is over) instead of letting them outlive the server.
    let (cut, _) = tokio::sync::watch::channel(());
    if app.report.is_some() {
        let app2 = app.clone();
        let mut stop = cut.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let snap = app2.snapshot.load_full();
                let a = app2.clone();
                // File I/O off the runtime's worker threads.
                let _ = tokio::task::spawn_blocking(move || a.flush_report(&snap, false)).await;
            }
        });
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&public_listener, &permits) => {
                let Some((stream, peer, permit)) = accepted else { continue };
                let app2 = app.clone();
                let conn = http1_builder(&app).serve_connection(TokioIo::new(stream), hyper::service::service_fn(move |req| public(app2.clone(), peer, req)));
                let watched = graceful.watch(conn);
                let gauge = app.metrics.open_connections.clone();
                gauge.inc();
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = watched => {}
                        _ = cut.changed() => {}
                    }
                    gauge.dec();
                    drop(permit);
                });
            }
            accepted = admin_listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app2 = app.clone();
                let conn = http1_builder(&app).serve_connection(TokioIo::new(stream), hyper::service::service_fn(move |req| admin::handle(app2.clone(), req)));
                let watched = graceful.watch(conn);
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = watched => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        }
    }
    drop(public_listener);
    drop(admin_listener);
    tracing::info!(
        grace_ms = app.config.limits.grace_period.as_millis() as u64,
        "shutting down: draining connections"
    );
    if tokio::time::timeout(app.config.limits.grace_period, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: closing the remaining connections");
    }
    Ok(())
}

async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    // Wait for a free slot before accepting: excess connections wait in the kernel backlog.
    let permit = permits.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((s, peer)) => {
            let _ = s.set_nodelay(true);
            Some((s, peer, permit))
        }
        Err(e) => {
            // Out of file descriptors and the like: back off briefly instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            None
        }
    }
}

fn http1_builder(app: &App) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(app.config.limits.header_read_timeout)
        .max_headers(app.config.limits.max_headers)
        .keep_alive(true);
    b
}

//! Front door 2: auth subrequests from the CDN in front of playback.
//!
//! * nginx `auth_request`: `GET /v1/authz` with the original request in `X-Original-URI` and
//!   `X-Original-Method`.
//! * Envoy `ext_authz` (HTTP service, `path_prefix = "/v1/authz"`): the original path follows
//!   the prefix: `GET /v1/authz/audio/QZ.../seg-1.mp4`.
//!
//! The track (and use, tier) come from the original path through the route patterns, then
//! the original query (`use`, `tier`), then headers the CDN sets, then defaults.
//!
//! Allow: `200`, empty body, `X-Regiongate-Decision`, `X-Regiongate-Territory` and
//! `X-Regiongate-Version` headers (for `auth_request_set` / `allowed_upstream_headers`).
//! Deny: the configured status (403 by default: nginx treats only 401/403 as a denial) with a
//! small JSON reason. Need-precise-location: its own status (428 by default). Malformed hint
//! headers are ignored here (the CDN cannot act on a 400); the client address is taken from
//! trusted proxies only.

use super::metrics::Door;
use super::route::match_routes;
use super::{App, Body, decide_and_record, evidence, full, header_hints, json_response};
use crate::config::Unmatched;
use crate::decide::{Question, Verdict};
use crate::snapshot::Snapshot;
use chrono::Utc;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::net::SocketAddr;

/// The decision header.
pub const DECISION_HEADER: &str = "x-regiongate-decision";
/// The territory header.
pub const TERRITORY_HEADER: &str = "x-regiongate-territory";
/// The reason header.
pub const REASON_HEADER: &str = "x-regiongate-reason";

fn answer(
    status: StatusCode,
    head: bool,
    decision: &str,
    reason: &str,
    territory: Option<&str>,
) -> Response<Body> {
    let mut r = if status == StatusCode::OK || head {
        let mut r = Response::new(full(""));
        *r.status_mut() = status;
        r
    } else {
        json_response(
            status,
            &json!({"decision": decision, "reason": reason, "territory": territory}),
        )
    };
    let h = r.headers_mut();
    h.insert(
        DECISION_HEADER,
        HeaderValue::from_static(match decision {
            "allow" => "allow",
            "deny" => "deny",
            "need_precise_location" => "need_precise_location",
            _ => "unmatched",
        }),
    );
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(REASON_HEADER, v);
    }
    if let Some(t) = territory.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert(TERRITORY_HEADER, t);
    }
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}

/// Handles an auth subrequest.
pub fn handle(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "auth subrequests use GET or HEAD"}),
        );
    }
    let cfg = &app.config.authz;
    let prefix = &cfg.path_prefix;
    let path = req.uri().path();
    // nginx: the original URI in a header; Envoy: the original path after the prefix.
    let original: String = if path == prefix {
        match req
            .headers()
            .get(&cfg.original_uri_header)
            .and_then(|v| v.to_str().ok())
        {
            Some(u) => u.to_owned(),
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "missing original URI header", "field": cfg.original_uri_header.as_str()}),
                );
            }
        }
    } else {
        let rest = &path[prefix.len()..];
        match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        }
    };
    let (opath, oquery) = original
        .split_once('?')
        .map_or((original.as_str(), None), |(p, q)| (p, Some(q)));
    let Some(m) = match_routes(&app.config.routes, opath) else {
        app.metrics.decision(
            Door::Authz,
            &crate::decide::Decision {
                verdict: if cfg.unmatched == Unmatched::Allow {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                reason: crate::decide::Reason::NoDeal,
                territory: None,
                deal: None,
                valid_until: None,
                source: crate::decide::Source::None,
            },
        );
        return match cfg.unmatched {
            Unmatched::Allow => {
                answer(StatusCode::OK, head, "unmatched", "not_a_track_route", None)
            }
            Unmatched::Deny => answer(cfg.deny_status, head, "deny", "not_a_track_route", None),
        };
    };
    let from_query = |k: &str| {
        oquery.and_then(|q| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(key, _)| *key == k)
                .and_then(|(_, v)| super::route::percent_decode(v))
        })
    };
    let header = |h: &http::HeaderName| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let use_s = m
        .use_type
        .clone()
        .or_else(|| from_query("use"))
        .or_else(|| header(&cfg.use_header));
    let tier_s = m
        .tier
        .clone()
        .or_else(|| from_query("tier"))
        .or_else(|| header(&cfg.tier_header));
    // An unparsable use or tier is not something the listener can fix: it denies.
    let use_type = match use_s.map(|u| u.parse()) {
        None => cfg.default_use,
        Some(Ok(u)) => u,
        Some(Err(_)) => return answer(cfg.deny_status, head, "deny", "bad_use", None),
    };
    let tier = match tier_s.map(|t| t.parse()) {
        None => cfg.default_tier,
        Some(Ok(t)) => t,
        Some(Err(_)) => return answer(cfg.deny_status, head, "deny", "bad_tier", None),
    };
    let now = Utc::now();
    let (gps, cell) = header_hints(req.headers(), now, app).unwrap_or_default();
    let (ev, client) = evidence(app, snap, peer, req.headers(), gps, cell.as_ref());
    let q = Question {
        track: &m.track,
        use_type,
        tier,
    };
    let d = decide_and_record(app, snap, Door::Authz, &q, &ev, client.as_ref(), now);
    let territory = d.territory.map(|t| snap.territories.code(t));
    match d.verdict {
        Verdict::Allow => answer(StatusCode::OK, head, "allow", d.reason.as_str(), territory),
        Verdict::Deny => answer(cfg.deny_status, head, "deny", d.reason.as_str(), territory),
        Verdict::NeedPreciseLocation => answer(
            cfg.need_precise_status,
            head,
            "need_precise_location",
            d.reason.as_str(),
            territory,
        ),
    }
}

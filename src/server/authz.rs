//! Front door 2: auth subrequests from the CDN in front of playback.
//!
//! * nginx `auth_request`: `GET /v1/authz` with the original request in `X-Original-URI` and
//!   `X-Original-Method`.
//! * Envoy `ext_authz` (HTTP service, `path_prefix = "/v1/authz"`): the original path follows
//!   the prefix: `GET /v1/authz/audio/QZ.../seg-1.mp4`.
//!
//! The track (and use, tier) come from the original path through the route patterns; use and
//! tier otherwise from headers set by the CDN (believed from trusted proxies only), then
//! defaults. Never from the original query: the listener writes it.
//!
//! Allow: `200`, empty body, `X-Regiongate-Decision`, `X-Regiongate-Territory` and
//! `X-Regiongate-Version` headers (for `auth_request_set` / `allowed_upstream_headers`).
//! Deny: the configured status (403 by default: nginx treats only 401/403 as a denial) with a
//! small JSON reason. Need-precise-location: its own status (428 by default). Malformed hint
//! headers are ignored here (the CDN cannot act on a 400); the client address is taken from
//! trusted proxies only.

use super::metrics::Door;
use super::route::match_routes;
use super::{App, Body, full, json_response};
use crate::config::Unmatched;
use crate::decide::Verdict;
use crate::snapshot::Snapshot;
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
    // nginx always sends GET; Envoy sends the listener's own method, judged below.
    let prefix_style = req.uri().path() != app.config.authz.path_prefix;
    if req.method() != Method::GET && !head && !prefix_style {
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
    // The query is the listener's: it never sets use or tier (see cdn_use_tier).
    let opath = original
        .split_once('?')
        .map_or(original.as_str(), |(p, _)| p);
    // The original method (nginx passes it in a header; Envoy sends it as the subrequest's):
    // a CORS preflight carries no media and passes; only GET and HEAD are playback.
    let method = req
        .headers()
        .get(&cfg.original_method_header)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| req.method().as_str().to_owned(), str::to_ascii_uppercase);
    if method == "OPTIONS" {
        return answer(StatusCode::OK, head, "unmatched", "not_playback", None);
    }
    if method != "GET" && method != "HEAD" {
        return answer(cfg.deny_status, head, "deny", "not_playback", None);
    }
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
    let d = match super::decide_cdn(app, snap, Door::Authz, peer, req.headers(), &m) {
        Ok(d) => d,
        Err(reason) => return answer(cfg.deny_status, head, "deny", reason, None),
    };
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

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
use super::{App, Body, empty, full, json_response};
use crate::config::Unmatched;
use crate::decide::{Reason, Verdict};
use crate::headers::HeaderLines;
use crate::route::match_routes;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use std::borrow::Cow;
use std::net::SocketAddr;

/// The decision header.
pub const DECISION_HEADER: &str = "x-regiongate-decision";
/// The territory header.
pub const TERRITORY_HEADER: &str = "x-regiongate-territory";
/// The reason header.
pub const REASON_HEADER: &str = "x-regiongate-reason";
/// [grants] The header of a fresh HMAC grant on an allow (src/grant/).
pub const GRANT_HEADER: &str = "x-regiongate-grant";
/// [grants] The header naming why a presented grant was refused (when decided in full).
pub const GRANT_STATUS_HEADER: &str = "x-regiongate-grant-status";

// The same names as values that need no parsing when inserted (a `&str` name is parsed and
// checked on every insert).
const DECISION: HeaderName = HeaderName::from_static(DECISION_HEADER);
const TERRITORY: HeaderName = HeaderName::from_static(TERRITORY_HEADER);
const REASON: HeaderName = HeaderName::from_static(REASON_HEADER);
const GRANT: HeaderName = HeaderName::from_static(GRANT_HEADER);
const GRANT_STATUS: HeaderName = HeaderName::from_static(GRANT_STATUS_HEADER);

// Header values known at compile time: a value made at run time from a `&str`, even a static
// one, is checked byte by byte on every answer.
const PRIVATE_NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The reason header values of decisions, indexed by `Reason as usize` (checked in the tests
/// against `Reason::as_str`).
static REASON_VALUES: [HeaderValue; Reason::ALL.len()] = [
    HeaderValue::from_static("licensed"),
    HeaderValue::from_static("not_licensed_in_territory"),
    HeaderValue::from_static("outside_validity_window"),
    HeaderValue::from_static("use_not_licensed"),
    HeaderValue::from_static("tier_not_licensed"),
    HeaderValue::from_static("taken_down"),
    HeaderValue::from_static("unknown_track"),
    HeaderValue::from_static("no_deal"),
    HeaderValue::from_static("no_territory"),
    HeaderValue::from_static("location_unknown"),
    HeaderValue::from_static("anonymizer"),
    HeaderValue::from_static("location_conflict"),
    HeaderValue::from_static("ambiguous_location"),
];

/// The decision header's value.
fn decision_value(decision: &'static str) -> HeaderValue {
    const ALLOW: HeaderValue = HeaderValue::from_static("allow");
    const DENY: HeaderValue = HeaderValue::from_static("deny");
    const NEED: HeaderValue = HeaderValue::from_static("need_precise_location");
    const UNMATCHED: HeaderValue = HeaderValue::from_static("unmatched");
    match decision {
        "allow" => ALLOW,
        "deny" => DENY,
        "need_precise_location" => NEED,
        _ => UNMATCHED,
    }
}

/// The reason header's value for a reason that is not a decision's (or is).
fn reason_value(reason: &'static str) -> Option<HeaderValue> {
    const NOT_PLAYBACK: HeaderValue = HeaderValue::from_static("not_playback");
    const NOT_A_TRACK_ROUTE: HeaderValue = HeaderValue::from_static("not_a_track_route");
    const BAD_USE: HeaderValue = HeaderValue::from_static("bad_use");
    const BAD_TIER: HeaderValue = HeaderValue::from_static("bad_tier");
    const GRANT: HeaderValue = HeaderValue::from_static("grant");
    match reason {
        "grant" => Some(GRANT),
        "not_playback" => Some(NOT_PLAYBACK),
        "not_a_track_route" => Some(NOT_A_TRACK_ROUTE),
        "bad_use" => Some(BAD_USE),
        "bad_tier" => Some(BAD_TIER),
        other => HeaderValue::from_str(other).ok(),
    }
}

/// `AAABAC...ZZ`: every two-letter code, so that a country's territory header is a static
/// value (no allocation per answer).
static TWO_LETTER: [u8; 26 * 26 * 2] = {
    let mut b = [0u8; 26 * 26 * 2];
    let mut i = 0;
    while i < 26 * 26 {
        b[2 * i] = b'A' + (i / 26) as u8;
        b[2 * i + 1] = b'A' + (i % 26) as u8;
        i += 1;
    }
    b
};

/// The territory header value: static for the two-letter country codes, a copy for the ids
/// of custom territories.
fn territory_value(code: &str) -> Option<HeaderValue> {
    match code.as_bytes() {
        &[a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            let i = 2 * (usize::from(a - b'A') * 26 + usize::from(b - b'A'));
            HeaderValue::from_maybe_shared(Bytes::from_static(&TWO_LETTER[i..i + 2])).ok()
        }
        _ => HeaderValue::from_str(code).ok(),
    }
}

/// The JSON body of a refusal, `{"decision":..,"reason":..,"territory":..}`, written directly:
/// the same bytes as `serde_json` gives for that object (keys in this order, territory
/// escaped the same way), without building a `Value`.
fn refusal_body(decision: &'static str, reason: &'static str, territory: Option<&str>) -> String {
    let mut b =
        String::with_capacity(64 + decision.len() + reason.len() + territory.map_or(4, str::len));
    b.push_str(r#"{"decision":""#);
    b.push_str(decision);
    b.push_str(r#"","reason":""#);
    b.push_str(reason);
    b.push_str(r#"","territory":"#);
    match territory {
        None => b.push_str("null"),
        // serde_json escapes `"`, `\` and control characters only.
        Some(t) if t.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') => {
            b.push('"');
            b.push_str(t);
            b.push('"');
        }
        Some(t) => b.push_str(&serde_json::Value::from(t).to_string()),
    }
    b.push('}');
    b
}

/// What an auth subrequest is answered: status, decision and reason headers, territory.
pub(super) struct Answer<'s> {
    status: StatusCode,
    decision: &'static str,
    reason: &'static str,
    reason_value: Option<HeaderValue>,
    territory: Option<&'s str>,
    /// [grants] A fresh grant (allow), and why a presented one was refused.
    grant: Option<HeaderValue>,
    grant_status: Option<&'static str>,
}

impl Answer<'_> {
    /// The HTTP status.
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body of a refusal (`None` for a 200).
    pub(super) fn refusal_body(&self) -> Option<String> {
        (self.status != StatusCode::OK)
            .then(|| refusal_body(self.decision, self.reason, self.territory))
    }

    /// The answer's header lines, in the order [`respond`] sets them (`content-type` of a
    /// refusal first, `cache-control` last), for a front door with its own encoding.
    pub(super) fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let content_type =
            (self.status != StatusCode::OK).then_some((header::CONTENT_TYPE, APPLICATION_JSON));
        content_type
            .into_iter()
            .chain([(DECISION, decision_value(self.decision))])
            .chain(self.reason_value.clone().map(|v| (REASON, v)))
            .chain(
                self.territory
                    .and_then(territory_value)
                    .map(|t| (TERRITORY, t)),
            )
            .chain(self.grant.clone().map(|g| (GRANT, g)))
            .chain(
                self.grant_status
                    .map(|s| (GRANT_STATUS, HeaderValue::from_static(s))),
            )
            .chain([(header::CACHE_CONTROL, PRIVATE_NO_STORE)])
    }
}

/// An answer that is not a decision's (not playback, not a track route, bad use or tier).
fn answer<'s>(
    status: StatusCode,
    decision: &'static str,
    reason: &'static str,
    territory: Option<&'s str>,
) -> Answer<'s> {
    Answer {
        status,
        decision,
        reason,
        reason_value: reason_value(reason),
        territory,
        grant: None,
        grant_status: None,
    }
}

/// The answer to a decision.
fn decided<'s>(
    status: StatusCode,
    decision: &'static str,
    reason: Reason,
    territory: Option<&'s str>,
) -> Answer<'s> {
    Answer {
        status,
        decision,
        reason: reason.as_str(),
        reason_value: REASON_VALUES.get(reason as usize).cloned(),
        territory,
        grant: None,
        grant_status: None,
    }
}

/// The response to an answer, in `headers`: the request's own header map, emptied. hyper
/// hands the map of each response back for parsing the next request on the connection, so
/// reusing the request's map for the response allocates no map per request.
fn respond(a: Answer<'_>, head: bool, mut headers: HeaderMap) -> Response<Body> {
    headers.clear();
    let mut r = if a.status == StatusCode::OK || head {
        Response::new(empty())
    } else {
        headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
        Response::new(full(refusal_body(a.decision, a.reason, a.territory)))
    };
    *r.status_mut() = a.status;
    *r.headers_mut() = headers;
    let h = r.headers_mut();
    h.insert(DECISION, decision_value(a.decision));
    if let Some(v) = a.reason_value {
        h.insert(REASON, v);
    }
    if let Some(t) = a.territory.and_then(territory_value) {
        h.insert(TERRITORY, t);
    }
    if let Some(g) = a.grant {
        h.insert(GRANT, g);
    }
    if let Some(s) = a.grant_status {
        h.insert(GRANT_STATUS, HeaderValue::from_static(s));
    }
    h.insert(header::CACHE_CONTROL, PRIVATE_NO_STORE);
    r
}

/// Writes the response to an answer as hyper writes what [`respond`] gives it (plus the
/// version header of `super::finish`): the same status line, header lines in the same order
/// and case, `content-length` (not on HEAD answers) and `date` last. The fast path's
/// encoder; tests/it/fast_path.rs compares the two byte for byte.
pub(super) fn write_answer(
    a: &Answer<'_>,
    head: bool,
    version: Option<&HeaderValue>,
    date: &[u8],
    out: &mut Vec<u8>,
) {
    let line = |out: &mut Vec<u8>, name: &HeaderName, value: &[u8]| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(a.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(a.status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let body = (a.status != StatusCode::OK && !head)
        .then(|| refusal_body(a.decision, a.reason, a.territory));
    if body.is_some() {
        line(out, &header::CONTENT_TYPE, APPLICATION_JSON.as_bytes());
    }
    line(out, &DECISION, decision_value(a.decision).as_bytes());
    if let Some(v) = &a.reason_value {
        line(out, &REASON, v.as_bytes());
    }
    if let Some(t) = a.territory.and_then(territory_value) {
        line(out, &TERRITORY, t.as_bytes());
    }
    if let Some(g) = &a.grant {
        line(out, &GRANT, g.as_bytes());
    }
    if let Some(s) = a.grant_status {
        line(out, &GRANT_STATUS, s.as_bytes());
    }
    line(out, &header::CACHE_CONTROL, PRIVATE_NO_STORE.as_bytes());
    if let Some(v) = version {
        line(out, &super::VERSION, v.as_bytes());
    }
    if !head {
        let mut n = itoa_buf();
        let len = body.as_ref().map_or(0, String::len);
        line(out, &header::CONTENT_LENGTH, fmt_len(&mut n, len));
    }
    line(out, &header::DATE, date);
    out.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        out.extend_from_slice(b.as_bytes());
    }
}

/// A buffer for [`fmt_len`].
fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, in `buf`.
fn fmt_len(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Handles an auth subrequest, deciding at time `now`.
pub fn handle(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: Request<Incoming>,
    now: DateTime<Utc>,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let sub = Subrequest {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    match judge(app, snap, peer, &sub, now) {
        Ok(a) => respond(a, head, req.into_parts().0.headers),
        Err(r) => r,
    }
}

/// What the answer to an auth subrequest depends on: its method, path, query and header
/// lines (hyper's header map, or the fast path's parsed lines).
pub(super) struct Subrequest<'r, H: HeaderLines + ?Sized> {
    /// The request method, as sent.
    pub method: &'r str,
    /// The path of the request target.
    pub path: &'r str,
    /// The query of the request target, without `?`.
    pub query: Option<&'r str>,
    /// The header lines.
    pub headers: &'r H,
}

/// The answer to an auth subrequest, or the error response for a malformed one.
pub(super) fn judge<'s, H: HeaderLines + ?Sized>(
    app: &App,
    snap: &'s Snapshot,
    peer: SocketAddr,
    req: &Subrequest<'_, H>,
    now: DateTime<Utc>,
) -> Result<Answer<'s>, Response<Body>> {
    let head = req.method == "HEAD";
    // nginx always sends GET; Envoy sends the listener's own method, judged below.
    let prefix_style = req.path != app.config.authz.path_prefix;
    if req.method != "GET" && !head && !prefix_style {
        return Err(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "auth subrequests use GET or HEAD"}),
        ));
    }
    let cfg = &app.config.authz;
    let prefix = &cfg.path_prefix;
    let path = req.path;
    // nginx: the original URI in a header; Envoy: the original path after the prefix.
    let original: Cow<'_, str> = if path == prefix {
        match req.headers.first_str(&cfg.original_uri_header) {
            Some(u) => Cow::Borrowed(u),
            None => {
                return Err(json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "missing original URI header", "field": cfg.original_uri_header.as_str()}),
                ));
            }
        }
    } else {
        let rest = &path[prefix.len()..];
        match req.query {
            Some(q) => Cow::Owned(format!("{rest}?{q}")),
            None => Cow::Borrowed(rest),
        }
    };
    // The original method (nginx passes it in a header; Envoy sends it as the subrequest's):
    // the header's value is compared without regard to case, the request's method exactly.
    let method_header = req.headers.first_str(&cfg.original_method_header);
    let method_is = |m: &str| match method_header {
        Some(h) => h.eq_ignore_ascii_case(m),
        None => req.method == m,
    };
    let original = Original {
        door: Door::Authz,
        peer,
        client_from: peer,
        target: &original,
        headers: req.headers,
    };
    Ok(judge_original(app, snap, &original, method_is, now))
}

/// The original request of an auth subrequest, however the CDN passed it.
pub(super) struct Original<'r, H: HeaderLines + ?Sized> {
    /// The door that asks.
    pub door: Door,
    /// The proxy that asks: its use and tier headers are believed when it is trusted.
    pub peer: SocketAddr,
    /// Where the client's address chain starts (see [`super::decide_cdn`]).
    pub client_from: SocketAddr,
    /// The original request target: path, and query after `?`.
    pub target: &'r str,
    /// The original request's header lines.
    pub headers: &'r H,
}

/// The answer to an original request whose method `method_is`: a CORS preflight carries no
/// media and passes; only GET and HEAD are playback; the track (and use, tier) from the
/// route patterns; a presented grant checked; otherwise decided by the gate.
pub(super) fn judge_original<'s, H: HeaderLines + ?Sized>(
    app: &App,
    snap: &'s Snapshot,
    o: &Original<'_, H>,
    method_is: impl Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> Answer<'s> {
    let cfg = &app.config.authz;
    let (peer, headers) = (o.peer, o.headers);
    // The query is the listener's: it never sets use or tier (see cdn_use_tier).
    let opath = o.target.split_once('?').map_or(o.target, |(p, _)| p);
    if method_is("OPTIONS") {
        return answer(StatusCode::OK, "unmatched", "not_playback", None);
    }
    if !method_is("GET") && !method_is("HEAD") {
        return answer(cfg.deny_status, "deny", "not_playback", None);
    }
    let Some(m) = match_routes(&app.config.routes, opath) else {
        app.metrics.decision(
            o.door,
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
                touched: Default::default(),
            },
        );
        return match cfg.unmatched {
            Unmatched::Allow => answer(StatusCode::OK, "unmatched", "not_a_track_route", None),
            Unmatched::Deny => answer(cfg.deny_status, "deny", "not_a_track_route", None),
        };
    };
    // [grants] A valid playback grant answers without deciding; a refused one is decided in
    // full (or refused, `on_invalid = "deny"`). src/grant/verify.rs.
    let mut grant_status = None;
    let token = app.grants.token_in(o.target);
    // The grant's scope and client, found once for checking a presented grant and issuing one.
    let grant_scope = if app.grants.settings().is_some() {
        let (use_type, tier) = match crate::gate::cdn_use_tier(
            &app.config,
            peer,
            headers,
            m.use_type.as_deref(),
            m.tier.as_deref(),
        ) {
            Ok(x) => x,
            Err(reason) => return answer(cfg.deny_status, "deny", reason, None),
        };
        let scope = crate::grant::Scope {
            track: m.track.as_ref(),
            use_type,
            tier,
        };
        Some((
            scope,
            crate::gate::client(&app.config, o.client_from, headers),
        ))
    } else {
        None
    };
    if let (Some(token), Some((scope, client))) = (token, &grant_scope) {
        match app.grants.verify(token, scope, client.as_ref(), snap, now) {
            Ok(()) => return answer(StatusCode::OK, "allow", "grant", None),
            Err(r) if app.grants.deny_invalid() => {
                return answer(cfg.deny_status, "deny", r.as_str(), None);
            }
            Err(r) => grant_status = Some(r.as_str()),
        }
    }
    let d = match super::decide_cdn(app, snap, o.door, peer, o.client_from, headers, &m, now) {
        Ok(d) => d,
        Err(reason) => return answer(cfg.deny_status, "deny", reason, None),
    };
    let territory = d.territory.map(|t| snap.territories.code(t));
    let with_grant = |mut a: Answer<'s>| {
        a.grant_status = grant_status;
        if let (Verdict::Allow, Some((scope, client))) = (d.verdict, &grant_scope) {
            // [grants] A fresh HMAC grant for the segments that follow.
            a.grant = app
                .grants
                .issue_token(scope, client.as_ref(), snap, now, d.valid_until)
                .and_then(|t| HeaderValue::from_str(&t).ok());
        }
        a
    };
    match d.verdict {
        Verdict::Allow => with_grant(decided(StatusCode::OK, "allow", d.reason, territory)),
        Verdict::Deny => with_grant(decided(cfg.deny_status, "deny", d.reason, territory)),
        Verdict::NeedPreciseLocation => with_grant(decided(
            cfg.need_precise_status,
            "need_precise_location",
            d.reason,
            territory,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_body_is_what_serde_json_writes() {
        for territory in [
            None,
            Some("DE"),
            Some("LAKE_CONSTANCE"),
            Some("a\"b\\c\u{1}d"),
            Some("Zürich"),
        ] {
            assert_eq!(
                refusal_body("deny", "not_licensed_in_territory", territory),
                json!({"decision": "deny", "reason": "not_licensed_in_territory", "territory": territory})
                    .to_string()
            );
        }
    }

    #[test]
    fn reason_values_follow_the_reasons() {
        for r in Reason::ALL {
            assert_eq!(REASON_VALUES[r as usize], r.as_str());
            assert_eq!(reason_value(r.as_str()).expect("value"), r.as_str());
        }
        for r in ["not_playback", "not_a_track_route", "bad_use", "bad_tier"] {
            assert_eq!(reason_value(r).expect("value"), r);
        }
        for d in ["allow", "deny", "need_precise_location", "unmatched"] {
            assert_eq!(decision_value(d), d);
        }
    }

    #[test]
    fn territory_values() {
        for code in ["AA", "DE", "LI", "ZZ", "LAKE_CONSTANCE", "De", "D"] {
            assert_eq!(
                territory_value(code).as_ref().and_then(|v| v.to_str().ok()),
                Some(code)
            );
        }
        assert_eq!(territory_value("bad\nvalue"), None);
    }
}

//! Front door 1: client preflight. "May I play track X here?" and "where am I?".
//!
//! * `GET /v1/tracks/{track_id}/playability?use=...&tier=...` (hints in `Geo-Hint` /
//!   `Cell-Hint` headers) → one decision.
//! * `POST /v1/playability` with a JSON body of up to `preflight.max_batch` tracks; hints in the
//!   body (same fields as the headers) or in the headers → one decision per track.
//! * `GET /v1/territory` → the caller's own territory, for storefront choice.
//!
//! Answers carry `Cache-Control: private, max-age=N`: they depend on the client, so shared
//! caches must not keep them. Responses name territories and evidence kinds only.

use super::{App, Body, bad_request, decision_json, json_response};
use crate::decide::{Decision, Question, resolve_territory};
use crate::gate::{self, Case, Door, Extracted};
use crate::license::{Tier, UseType};
use crate::locate::hints::{self, FixKind, Hints};
use crate::locate::wifi;
use crate::route::percent_decode;
use crate::snapshot::Snapshot;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// Longest track id accepted.
pub const MAX_TRACK_LEN: usize = 128;

fn query_param(query: Option<&str>, key: &str) -> Result<Option<String>, ()> {
    let Some(q) = query else { return Ok(None) };
    let mut found = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            if found.is_some() {
                return Err(());
            }
            found = Some(percent_decode(&v.replace('+', " ")).ok_or(())?);
        }
    }
    Ok(found)
}

fn use_tier(
    app: &App,
    use_s: Option<&str>,
    tier_s: Option<&str>,
) -> Result<(UseType, Tier), Response<Body>> {
    let use_type = match use_s {
        None => app.config.authz.default_use,
        Some(u) => u.parse().map_err(|_| {
            bad_request(
                "use",
                "expected on_demand_stream, non_interactive_stream or download",
            )
        })?,
    };
    let tier = match tier_s {
        None => app.config.authz.default_tier,
        Some(t) => t
            .parse()
            .map_err(|_| bad_request("tier", "expected free or premium"))?,
    };
    Ok((use_type, tier))
}

fn valid_track(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_TRACK_LEN && !t.chars().any(char::is_control)
}

/// Until when an answer may be reused: the configured max-age, cut at the end of the deal.
fn valid_until(app: &App, d: &Decision, now: DateTime<Utc>) -> DateTime<Utc> {
    let max = now
        + chrono::Duration::from_std(app.config.preflight_max_age)
            .unwrap_or(chrono::Duration::seconds(60));
    d.valid_until.map_or(max, |v| v.min(max))
}

fn with_cache(mut r: Response<Body>, seconds: i64) -> Response<Body> {
    let v = format!("private, max-age={}", seconds.max(0));
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("geo-hint, cell-hint, wifi-hint"),
    );
    r
}

/// `GET /v1/tracks/{track_id}/playability`.
pub fn get(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: &Request<Incoming>,
    raw_track: &str,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "use GET"}));
    }
    let Some(track) = percent_decode(raw_track).filter(|t| valid_track(t) && !t.contains('/'))
    else {
        return bad_request("track", "a track id is 1 to 128 printable characters");
    };
    let query = req.uri().query();
    let (Ok(u), Ok(t)) = (query_param(query, "use"), query_param(query, "tier")) else {
        return bad_request("query", "malformed or repeated query parameter");
    };
    let (use_type, tier) = match use_tier(app, u.as_deref(), t.as_deref()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = Utc::now();
    let hints = match gate::header_hints(req.headers(), now, &app.config) {
        Ok(h) => h,
        Err((header, e)) => return bad_request(&header, &e.to_string()),
    };
    let client = gate::client(&app.config, peer, req.headers());
    let x = Extracted {
        door: Door::Preflight,
        client,
        hints,
        now,
    };
    let q = Question {
        track: &track,
        use_type,
        tier,
    };
    let d = app.gate().pass(snap, x, &q);
    let until = valid_until(app, &d, now);
    let mut body = decision_json(snap, &track, &d, until);
    // [grants] A signed playback grant with an allow (src/grant/).
    app.grants
        .attach(&mut body, &grant_scope(&q), &d, client.as_ref(), snap, now);
    with_cache(
        json_response(StatusCode::OK, &body),
        (until - now).num_seconds(),
    )
}

/// [grants] What a grant for question `q` is for.
fn grant_scope<'a>(q: &Question<'a>) -> crate::grant::Scope<'a> {
    crate::grant::Scope {
        track: q.track,
        use_type: q.use_type,
        tier: q.tier,
    }
}

/// [grants] `GET /.well-known/jwks.json`: the public keys of the JWT grants; 404 when there
/// is no Ed25519 key.
pub fn jwks(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "use GET"}));
    }
    let Some(doc) = app.grants.jwks() else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "no JWT grant keys are configured"}),
        );
    };
    let mut r = Response::new(super::full(doc));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    // Short: a rotated key must reach verifiers (Envoy's remote_jwks cache) before it signs.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    tracks: Vec<TrackItem>,
    #[serde(rename = "use")]
    use_type: Option<String>,
    tier: Option<String>,
    hints: Option<BodyHints>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TrackItem {
    Id(String),
    Full {
        track: String,
        #[serde(rename = "use")]
        use_type: Option<String>,
        tier: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyHints {
    gps: Option<BodyGps>,
    cell: Option<BodyCell>,
    wifi: Option<Vec<BodyAp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyGps {
    lat: f64,
    lon: f64,
    acc: f64,
    ts: i64,
    src: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyAp {
    bssid: String,
    rssi: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyCell {
    mcc: String,
    mnc: String,
    radio: Option<String>,
    area: Option<u32>,
    cell: Option<String>,
}

/// `POST /v1/playability`.
pub async fn post(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != Method::POST {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "use POST"}),
        );
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, app.config.limits.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": "body too large", "limit_bytes": app.config.limits.max_body_bytes}),
            );
        }
        Err(_) => return bad_request("body", "could not read the body"),
    };
    let body: PostBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            // serde_json's messages quote the offending value ("invalid type: string
            // \"47.61\"..."), which may be a coordinate or an address: give a fixed reason.
            let reason = match e.classify() {
                serde_json::error::Category::Data => {
                    "not the expected shape: {\"tracks\": [id | {track, use?, tier?}], \"use\"?, \"tier\"?, \"hints\"?: {\"gps\"?: {lat, lon, acc, ts, src?}, \"cell\"?: {mcc, mnc, radio?, area?, cell?}, \"wifi\"?: [{bssid, rssi?}]}}"
                }
                _ => "not valid JSON",
            };
            return bad_request("body", reason);
        }
    };
    if body.tracks.is_empty() {
        return bad_request("tracks", "give at least one track");
    }
    if body.tracks.len() > app.config.max_batch {
        return bad_request(
            "tracks",
            &format!("at most {} tracks per request", app.config.max_batch),
        );
    }
    let now = Utc::now();
    let hints = match &body.hints {
        Some(h) => {
            let gps = match &h.gps {
                Some(g) => match g
                    .src
                    .as_deref()
                    .map_or(Ok(FixKind::Gps), FixKind::parse)
                    .and_then(|kind| {
                        hints::check_fix(
                            g.lat,
                            g.lon,
                            g.acc,
                            g.ts,
                            now.timestamp(),
                            &app.config.gps,
                            kind,
                        )
                    }) {
                    Ok(g) => Some(g),
                    Err(e) => return bad_request("hints.gps", &e.to_string()),
                },
                None => None,
            };
            let wifi = match &h.wifi {
                Some(aps) => match wifi::check_scan(aps.iter().map(|a| (a.bssid.as_str(), a.rssi)))
                {
                    Ok(w) => Some(w),
                    Err(e) => return bad_request("hints.wifi", &e.to_string()),
                },
                None => None,
            };
            let cell = match &h.cell {
                Some(c) => {
                    let area = c.area.map(|a| a.to_string());
                    match hints::check_cell(
                        &c.mcc,
                        &c.mnc,
                        c.radio.as_deref(),
                        area.as_deref(),
                        c.cell.as_deref(),
                    ) {
                        Ok(c) => Some(c),
                        Err(e) => return bad_request("hints.cell", &e.to_string()),
                    }
                }
                None => None,
            };
            Hints { gps, cell, wifi }
        }
        None => match gate::header_hints(&parts.headers, now, &app.config) {
            Ok(h) => h,
            Err((header, e)) => return bad_request(&header, &e.to_string()),
        },
    };
    let gate = app.gate();
    let case = Case::gather(
        snap,
        Extracted {
            door: Door::Preflight,
            client: gate::client(&app.config, peer, &parts.headers),
            hints,
            now,
        },
    );
    let mut out = Vec::with_capacity(body.tracks.len());
    let mut min_age = i64::MAX;
    for (i, item) in body.tracks.iter().enumerate() {
        let (track, u, t) = match item {
            TrackItem::Id(id) => (id.as_str(), body.use_type.as_deref(), body.tier.as_deref()),
            TrackItem::Full {
                track,
                use_type,
                tier,
            } => (
                track.as_str(),
                use_type.as_deref().or(body.use_type.as_deref()),
                tier.as_deref().or(body.tier.as_deref()),
            ),
        };
        if !valid_track(track) {
            return bad_request(
                &format!("tracks[{i}]"),
                "a track id is 1 to 128 printable characters",
            );
        }
        let (use_type, tier) = match use_tier(app, u, t) {
            Ok(x) => x,
            Err(_) => return bad_request(&format!("tracks[{i}]"), "bad use or tier"),
        };
        let q = Question {
            track,
            use_type,
            tier,
        };
        let d = gate.decide(snap, &case, &q);
        let until = valid_until(app, &d, now);
        min_age = min_age.min((until - now).num_seconds());
        let mut one = decision_json(snap, track, &d, until);
        // [grants] A signed playback grant with each allow (src/grant/).
        app.grants.attach(
            &mut one,
            &grant_scope(&q),
            &d,
            case.client.as_ref(),
            snap,
            now,
        );
        out.push(one);
    }
    with_cache(
        json_response(StatusCode::OK, &json!({"decisions": out})),
        min_age,
    )
}

/// `GET /v1/territory`.
pub fn territory(
    app: &App,
    snap: &Snapshot,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "use GET"}));
    }
    let now = Utc::now();
    let hints = match gate::header_hints(req.headers(), now, &app.config) {
        Ok(h) => h,
        Err((header, e)) => return bad_request(&header, &e.to_string()),
    };
    let client = gate::client(&app.config, peer, req.headers());
    let ev = gate::gather(snap, client.as_ref(), &hints);
    let (t, source, basis) = resolve_territory(snap, &app.config.policy, &ev);
    let body = json!({
        "territory": t.map(|t| snap.territories.code(t)),
        "source": source.as_str(),
        "decision_basis": basis.as_str(),
    });
    with_cache(
        json_response(StatusCode::OK, &body),
        app.config.preflight_max_age.as_secs() as i64,
    )
}

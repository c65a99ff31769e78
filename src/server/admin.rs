//! The admin listener: `/healthz` (process up), `/readyz` (a snapshot is loaded),
//! `/metrics` (Prometheus text), `GET /admin/snapshot` (version, inputs, counts, last reload)
//! and `POST /admin/reload` (bearer token; refused on a non-loopback listener without one),
//! `GET /admin/tracks/{id}[?at=&use=&tier=]` (the availability map of a track as a
//! self-contained HTML page; behind the bearer token when one is configured).

use super::{App, Body, full, json_response, reload};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (tokens have a fixed, documented minimum); the content is: every
    // byte is compared whatever the earlier ones were.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(app: &App, req: &Request<Incoming>) -> Result<(), Response<Body>> {
    let Some(token) = &app.config.admin_token else {
        if app.config.admin_listen.ip().is_loopback() {
            return Ok(());
        }
        return Err(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "reload is disabled: the admin listener is not on loopback and no admin token is configured"}),
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong bearer token"}),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Err(r)
    }
}

/// The snapshot report: version, inputs with hashes, counts, IP database facts, last reload.
pub fn snapshot_report(app: &App) -> serde_json::Value {
    let s = app.snapshot.load();
    let ip = |db: &Option<crate::locate::ip::IpDatabase>| {
        db.as_ref().map(|d| {
            let i = d.info();
            json!({"database_type": i.database_type, "layout": i.layout.as_str(), "build_epoch": i.build_epoch, "ip_version": i.ip_version})
        })
    };
    json!({
        "version": s.version,
        "loaded_unix": s.loaded_unix,
        "build_ms": s.build_time.as_millis() as u64,
        "inputs": s.inputs.iter().map(|f| json!({"path": f.path, "sha256": f.sha256, "bytes": f.bytes})).collect::<Vec<_>>(),
        "counts": {
            "territories": s.territories.len(),
            "groups": s.groups.len(),
            "deals": s.licenses.deal_count(),
            "tracks": s.licenses.track_count(),
            "mcc_rows": s.mcc.len(),
            "cells": s.cells.as_ref().map_or(0, |c| c.len()),
        },
        "ip_database": ip(&s.ip),
        "anonymizer_database": ip(&s.anonymizer),
        "last_reload": app.reload.last(),
        // [grants] Key ids, kinds and ages only (src/grant/).
        "grants": app.grants.report(),
    })
}

/// The availability map page of one track (`/admin/tracks/{id}`). Query: `at` (RFC 3339,
/// default now), `use` and `tier` (as `check`). The world geometry is read once per geometry
/// version, on a blocking thread.
async fn track_page(app: &App, req: &Request<Incoming>, id: &str) -> Response<Body> {
    use crate::license::{Tier, UseType};
    if app.config.admin_token.is_some()
        && let Err(r) = authorized(app, req)
    {
        return r;
    }
    let bad = |what: &str| json_response(StatusCode::BAD_REQUEST, &json!({"error": what}));
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return bad("track id: letters, digits, '.', '_', '-', ':' (at most 128)");
    }
    let (mut at, mut use_type, mut tier) =
        (chrono::Utc::now(), UseType::OnDemandStream, Tier::Premium);
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "at" => match chrono::DateTime::parse_from_rfc3339(
                &v.replace("%3A", ":").replace("%2B", "+"),
            ) {
                Ok(t) => at = t.with_timezone(&chrono::Utc),
                Err(_) => return bad("at: expected an RFC 3339 time"),
            },
            "use" => match v.parse() {
                Ok(u) => use_type = u,
                Err(e) => return bad(&format!("use: {e}")),
            },
            "tier" => match v.parse() {
                Ok(t) => tier = t,
                Err(e) => return bad(&format!("tier: {e}")),
            },
            _ => return bad("unknown query parameter (at, use, tier)"),
        }
    }
    let snap = app.snapshot.load_full();
    let source = app.config.regions.clone().map_or(
        crate::snapshot::DataSource::Embedded,
        crate::snapshot::DataSource::Dir,
    );
    let key = snap.geometry_key.clone();
    let world =
        match tokio::task::spawn_blocking(move || crate::map::World::cached(&source, &key)).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "track map: cannot read the map geometry");
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "cannot read the map geometry"}),
                );
            }
            Err(_) => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "map task failed"}),
                );
            }
        };
    let q = crate::decide::Question {
        track: id,
        use_type,
        tier,
    };
    let c = crate::map::track_colouring(&world, &snap, &q, at);
    let mut r = Response::new(full(crate::map::page(
        &world,
        &c,
        &format!("Availability of track {id}"),
    )));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Self-contained by construction; the policy makes a browser hold the page to it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

/// Handles an admin request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(id) = req.uri().path().strip_prefix("/admin/tracks/") {
        let id = id.to_owned();
        let r = if req.method() == Method::GET {
            track_page(&app, &req, &id).await
        } else {
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed"}),
            )
        };
        return Ok(r);
    }
    let r = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "version": app.snapshot.load().version}),
        ),
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(app.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/admin/snapshot") => json_response(StatusCode::OK, &snapshot_report(&app)),
        (&Method::POST, "/admin/reload") => match authorized(&app, &req) {
            Err(r) => r,
            Ok(()) => {
                let r = reload::reload(&app, "admin").await;
                let status = if r.result == "ok" {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                json_response(status, &serde_json::to_value(&r).unwrap_or_default())
            }
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/snapshot" | "/admin/reload") => {
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed"}),
            )
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abcdefghijklmnop", b"abcdefghijklmnop"));
        assert!(!constant_time_eq(b"abcdefghijklmnop", b"abcdefghijklmnoq"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}

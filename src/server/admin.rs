//! The admin listener: `/healthz` (process up), `/readyz` (a snapshot is loaded),
//! `/metrics` (Prometheus text), `GET /admin/snapshot` (version, inputs, counts, last reload)
//! and `POST /admin/reload` (bearer token; refused on a non-loopback listener without one).

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

/// Handles an admin request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
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

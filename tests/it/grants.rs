//! Playback grants end to end (src/grant/): issued with allows from preflight and authz,
//! checked by the authz fast path without deciding, refused for every kind of bad token,
//! keys rotated and reloaded, grants revoked by a licence change.
//!
//! The test client connects from 127.0.0.1, a trusted proxy in these configs; without an
//! `X-Forwarded-For` there is no location evidence at all, so an authz allow without one can
//! only come from the grant.

use crate::server::{
    IP_DE, IP_FR, LICENSES, LICENSES_T1_MOVED, config, ip_db, load_dir, world, world_with,
    write_data_dir,
};
use crate::util::{Reply, TestServer, call, get, metric};
use chrono::Utc;
use regiongate::grant::Scope;
use regiongate::grant::formats::{self, Claims};
use regiongate::grant::keys::{Key, KeyKind};
use regiongate::license::{Tier, UseType};
use std::path::Path;

pub(crate) const HMAC_K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const HMAC_K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn write(dir: &Path, name: &str, text: &str) {
    // Written beside and renamed, as an operator's tooling (or a Secret volume) would.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write key");
    std::fs::rename(&tmp, dir.join(name)).expect("rename key");
}

/// A key directory with the HMAC key `k1`.
fn key_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("key dir");
    write(d.path(), "k1.hmac", HMAC_K1);
    d
}

fn grants_config(dir: &Path, extra: &str) -> String {
    config(
        "",
        &format!("[grants]\nkeys_dir = \"{}\"\n{extra}\n", dir.display()),
    )
}

async fn authz(s: &TestServer, uri: &str, xff: Option<&str>) -> Reply {
    let mut h = vec![("x-original-uri", uri), ("x-original-method", "GET")];
    if let Some(ip) = xff {
        h.push(("x-forwarded-for", ip));
    }
    get(s.public, "/v1/authz", &h).await
}

async fn preflight_grant(s: &TestServer, track: &str, ip: &str) -> serde_json::Value {
    let r = get(
        s.public,
        &format!("/v1/tracks/{track}/playability"),
        &[("x-forwarded-for", ip)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn token_of(v: &serde_json::Value) -> String {
    v["grant"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no grant token in {v}"))
        .to_owned()
}

async fn metrics(s: &TestServer) -> String {
    get(s.admin, "/metrics", &[]).await.text()
}

/// A token signed with `secret` under `kid`, for T1 (on-demand, free) with expiry `exp` and
/// the served snapshot's epoch: what a correct issuer (or an attacker with that key) makes.
fn forged(s: &TestServer, kid: &str, secret: &str, exp: i64, track: &str) -> String {
    let key = Key::from_text(kid, KeyKind::Hmac, secret.as_bytes()).expect("key");
    let claims = Claims {
        exp,
        epoch: regiongate::grant::epoch(&s.app.snapshot.load()),
        use_type: "on_demand_stream".into(),
        tier: "free".into(),
        bound: false,
        track: track.into(),
    };
    formats::hmac_token(&key, &claims, None).expect("token")
}

#[tokio::test]
async fn allows_carry_grants_and_the_fast_path_checks_them_without_deciding() {
    let dir = key_dir();
    let s = TestServer::start(&grants_config(dir.path(), ""), world()).await;
    // Preflight GET: an allow carries a grant, a denial none.
    let v = preflight_grant(&s, "T1", IP_DE).await;
    assert_eq!(v["decision"], "allow", "{v}");
    let token = token_of(&v);
    assert!(token.starts_with("k1."), "{token}");
    assert_eq!(v["grant"]["query"], format!("rg_grant={token}"));
    let exp = v["grant"]["expires_unix"].as_i64().expect("expiry");
    let now = Utc::now().timestamp();
    assert!((now + 295..=now + 301).contains(&exp), "{exp} vs {now}");
    // No location in the grant: no address, no territory, no coordinates.
    let g = v["grant"].to_string();
    for leak in [IP_DE, "81.0.0", "\"DE\"", "2.0"] {
        assert!(!g.contains(leak), "{leak} in {g}");
    }
    let denied = preflight_grant(&s, "T1", IP_FR).await;
    assert_eq!(denied["decision"], "deny");
    assert!(denied.get("grant").is_none(), "{denied}");
    // POST batch: a grant on each allow only.
    let r = call(
        s.public,
        "POST",
        "/v1/playability",
        &[
            ("x-forwarded-for", IP_DE),
            ("content-type", "application/json"),
        ],
        r#"{"tracks": ["T1", "TFR", "TGONE"]}"#,
    )
    .await;
    let b = r.json();
    let d = b["decisions"].as_array().expect("decisions");
    assert_eq!(d[0]["decision"], "allow");
    assert!(d[0]["grant"]["token"].is_string(), "{b}");
    assert!(
        d[1].get("grant").is_none() && d[2].get("grant").is_none(),
        "{b}"
    );

    // The segment requests: no X-Forwarded-For, so no evidence; only the grant allows.
    let decisions_before = metric(&metrics(&s).await, "regiongate_decisions_total", &[]);
    for i in 0..5 {
        let r = authz(&s, &format!("/audio/T1/seg-{i}.mp4?rg_grant={token}"), None).await;
        assert_eq!(r.status, 200, "segment {i}: {:?}", r.headers);
        assert_eq!(r.header("x-regiongate-reason"), Some("grant"));
        assert_eq!(r.header("x-regiongate-decision"), Some("allow"));
        assert_eq!(r.header("x-regiongate-territory"), None);
    }
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "regiongate_decisions_total", &[]),
        decisions_before,
        "a grant check made a decision"
    );
    assert_eq!(
        metric(
            &m,
            "regiongate_grants_verified_total",
            &[("outcome", "valid")]
        ),
        5.0
    );
    assert_eq!(
        metric(&m, "regiongate_grants_issued_total", &[("format", "hmac")]),
        2.0
    );
    // Without a grant the same segment is decided: no evidence, a denial.
    let r = authz(&s, "/audio/T1/seg-1.mp4", None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-regiongate-reason"), Some("location_unknown"));
    assert_eq!(r.header("x-regiongate-grant-status"), None);
    // An allowed auth subrequest hands out a fresh grant, which then works alone.
    let r = authz(&s, "/audio/T1/seg-1.mp4", Some(IP_DE)).await;
    assert_eq!(r.status, 200);
    let fresh = r
        .header("x-regiongate-grant")
        .expect("fresh grant")
        .to_owned();
    let r = authz(&s, &format!("/audio/T1/seg-2.mp4?rg_grant={fresh}"), None).await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-regiongate-reason")),
        (200, Some("grant"))
    );
    // A denial hands out none.
    let r = authz(&s, "/audio/T1/seg-1.mp4", Some(IP_FR)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-regiongate-grant"), None);
    s.stop().await;
}

#[tokio::test]
async fn bad_grants_are_refused_with_a_reason_and_counted() {
    let dir = key_dir();
    let s = TestServer::start(&grants_config(dir.path(), ""), world()).await;
    let good = token_of(&preflight_grant(&s, "T1", IP_DE).await);
    let now = Utc::now().timestamp();
    let (kid_part, rest) = good.split_once('.').expect("kid");
    let truncated = &good[..good.len() - 5];
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let oversized = format!("{kid_part}.{}", "A".repeat(500));
    let expired = forged(&s, "k1", HMAC_K1, now - 1, "T1");
    let future = forged(&s, "k1", HMAC_K1, now + 3 * 3600, "T1");
    let wrong_key = forged(&s, "k1", HMAC_K2, now + 60, "T1");
    let unknown_kid = forged(&s, "k9", HMAC_K1, now + 60, "T1");
    let other_track = format!("k1.{rest}");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "malformed",
            "not-a-token".into(),
            "/audio/T1/s.mp4",
            "grant_malformed",
        ),
        (
            "truncated",
            truncated.into(),
            "/audio/T1/s.mp4",
            "grant_malformed",
        ),
        ("altered", flipped, "/audio/T1/s.mp4", "grant_bad_signature"),
        ("oversized", oversized, "/audio/T1/s.mp4", "grant_oversized"),
        ("expired", expired, "/audio/T1/s.mp4", "grant_expired"),
        ("future", future, "/audio/T1/s.mp4", "grant_future_dated"),
        (
            "wrong key",
            wrong_key,
            "/audio/T1/s.mp4",
            "grant_bad_signature",
        ),
        (
            "unknown key",
            unknown_kid,
            "/audio/T1/s.mp4",
            "grant_unknown_key",
        ),
        (
            "other track",
            other_track,
            "/audio/TFR/s.mp4",
            "grant_wrong_track",
        ),
    ];
    for (what, token, path, reason) in &cases {
        // Decided in full (no evidence: a denial), the refusal named, never the token.
        let r = authz(&s, &format!("{path}?rg_grant={token}"), None).await;
        assert_eq!(r.status, 403, "{what}");
        assert_eq!(
            r.header("x-regiongate-grant-status"),
            Some(*reason),
            "{what}"
        );
        assert_eq!(
            r.header("x-regiongate-reason"),
            Some("location_unknown"),
            "{what}"
        );
        let all = format!("{:?}{}", r.headers, r.text());
        assert!(!all.contains(token.as_str()), "{what}: the token echoed");
        // With evidence that allows, the full decision still allows.
        let r = authz(&s, &format!("{path}?rg_grant={token}"), Some(IP_DE)).await;
        let want = if *what == "other track" { 403 } else { 200 };
        assert_eq!(r.status, want, "{what} with evidence");
    }
    // The same use with another tier (the route's header, believed from a trusted proxy).
    let r = get(
        s.public,
        "/v1/authz",
        &[
            (
                "x-original-uri",
                &format!("/audio/T1/s.mp4?rg_grant={good}"),
            ),
            ("x-regiongate-tier", "premium"),
        ],
    )
    .await;
    assert_eq!(
        r.header("x-regiongate-grant-status"),
        Some("grant_wrong_use")
    );
    let m = metrics(&s).await;
    for (outcome, n) in [
        ("malformed", 4.0),
        ("bad_signature", 4.0),
        ("oversized", 2.0),
        ("expired", 2.0),
        ("future_dated", 2.0),
        ("unknown_key", 2.0),
        ("wrong_track", 2.0),
        ("wrong_use", 1.0),
    ] {
        assert_eq!(
            metric(
                &m,
                "regiongate_grants_verified_total",
                &[("outcome", outcome)]
            ),
            n,
            "{outcome}"
        );
    }
    s.stop().await;

    // on_invalid = "deny": refused at once, the refusal as the reason.
    let s = TestServer::start(&grants_config(dir.path(), "on_invalid = \"deny\""), world()).await;
    let expired = forged(&s, "k1", HMAC_K1, now - 1, "T1");
    let r = authz(
        &s,
        &format!("/audio/T1/s.mp4?rg_grant={expired}"),
        Some(IP_DE),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-regiongate-reason"), Some("grant_expired"));
    assert!(!r.text().contains(&expired));
    s.stop().await;
}

#[tokio::test]
async fn keys_rotate_and_reload_and_bad_keys_are_refused() {
    let dir = key_dir();
    // A data directory, so that the admin reload (data and keys) reloads the same data.
    let data = tempfile::tempdir().expect("data dir");
    write_data_dir(data.path(), LICENSES);
    std::fs::create_dir_all(data.path().join("ip")).expect("mkdir");
    std::fs::write(data.path().join("ip/geoip.mmdb"), ip_db()).expect("write");
    let cfg = format!(
        "regions = {:?}\n{}",
        data.path().display().to_string(),
        grants_config(dir.path(), "")
    );
    let s = TestServer::start(&cfg, load_dir(data.path()).await).await;
    let reload = || async {
        let r = call(s.admin, "POST", "/admin/reload", &[], "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let old = token_of(&preflight_grant(&s, "T1", IP_DE).await);
    assert!(old.starts_with("k1."));
    // A newer key signs; the old one still verifies.
    write(dir.path(), "k2.hmac", HMAC_K2);
    reload().await;
    let new = token_of(&preflight_grant(&s, "T1", IP_DE).await);
    assert!(new.starts_with("k2."), "{new}");
    for t in [&old, &new] {
        let r = authz(&s, &format!("/audio/T1/s.mp4?rg_grant={t}"), None).await;
        assert_eq!(r.status, 200, "{t}");
    }
    let report = get(s.admin, "/admin/snapshot", &[]).await.json();
    let keys = &report["grants"]["keys"];
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{report}");
    assert_eq!(keys[1]["kid"], "k2");
    assert_eq!(keys[1]["signing"], true);
    assert!(keys[1]["age_s"].is_u64());
    let text = report.to_string();
    assert!(
        !text.contains(HMAC_K1) && !text.contains(HMAC_K2),
        "key material in the report"
    );
    // A bad key refuses the whole directory: the keys in use stay.
    write(dir.path(), "k3.hmac", "c2hvcnQ=");
    reload().await;
    let report = get(s.admin, "/admin/snapshot", &[]).await.json();
    let last = &report["grants"]["last_key_reload"];
    assert_eq!(last["result"], "failed", "{report}");
    let problem = last["problem"].as_str().expect("problem");
    assert!(
        problem.contains("k3.hmac") && problem.contains("at least 32"),
        "{problem}"
    );
    assert!(!problem.contains("c2hvcnQ"), "{problem}");
    assert!(token_of(&preflight_grant(&s, "T1", IP_DE).await).starts_with("k2."));
    // The old key removed: its grants are refused from then on.
    std::fs::remove_file(dir.path().join("k3.hmac")).expect("rm");
    std::fs::remove_file(dir.path().join("k1.hmac")).expect("rm");
    reload().await;
    let r = authz(&s, &format!("/audio/T1/s.mp4?rg_grant={old}"), None).await;
    assert_eq!(
        r.header("x-regiongate-grant-status"),
        Some("grant_unknown_key")
    );
    let r = authz(&s, &format!("/audio/T1/s.mp4?rg_grant={new}"), None).await;
    assert_eq!(r.status, 200);
    let m = metrics(&s).await;
    assert_eq!(
        metric(
            &m,
            "regiongate_grant_key_reloads_total",
            &[("result", "failed")]
        ),
        1.0
    );
    s.stop().await;
}

#[tokio::test]
async fn the_key_directory_is_watched_on_its_own() {
    let dir = key_dir();
    let s = TestServer::start(&grants_config(dir.path(), ""), world()).await;
    let app = s.app.clone();
    let _w = regiongate::grant::keys::watch(dir.path(), move || {
        app.grants.reload_keys("key watch");
    })
    .expect("watch");
    write(dir.path(), "k2.hmac", HMAC_K2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let t = token_of(&preflight_grant(&s, "T1", IP_DE).await);
        if t.starts_with("k2.") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_licence_change_revokes_outstanding_grants() {
    let dir = key_dir();
    let s = TestServer::start(&grants_config(dir.path(), ""), world()).await;
    let t = token_of(&preflight_grant(&s, "T1", IP_DE).await);
    let r = authz(&s, &format!("/audio/T1/s.mp4?rg_grant={t}"), None).await;
    assert_eq!(r.status, 200);
    // The same data again (a reload that changed nothing): the grant stands.
    s.app.swap(world());
    let r = authz(&s, &format!("/audio/T1/s.mp4?rg_grant={t}"), None).await;
    assert_eq!(r.status, 200);
    // T1 moved to FR: the grant is revoked; the full decision for a DE listener denies.
    s.app.swap(world_with(LICENSES_T1_MOVED));
    let r = authz(&s, &format!("/audio/T1/s.mp4?rg_grant={t}"), Some(IP_DE)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-regiongate-grant-status"), Some("grant_revoked"));
    assert_eq!(
        r.header("x-regiongate-reason"),
        Some("not_licensed_in_territory")
    );
    s.stop().await;
}

#[tokio::test]
async fn grants_bound_to_the_client_network_need_that_network() {
    let dir = key_dir();
    let s = TestServer::start(
        &grants_config(dir.path(), "bind_client_net = true"),
        world(),
    )
    .await;
    let t = token_of(&preflight_grant(&s, "T1", IP_DE).await);
    assert!(!t.contains("81.0.0"));
    // Same /24: valid; another network (or none): refused.
    let r = authz(
        &s,
        &format!("/audio/T1/s.mp4?rg_grant={t}"),
        Some("81.0.0.200"),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.header("x-regiongate-reason")),
        (200, Some("grant"))
    );
    let r = authz(
        &s,
        &format!("/audio/T1/s.mp4?rg_grant={t}"),
        Some("81.0.7.1"),
    )
    .await;
    assert_eq!(
        r.header("x-regiongate-grant-status"),
        Some("grant_bad_signature")
    );
    s.stop().await;
}

#[test]
fn bad_key_directories_refuse_the_config() {
    use regiongate::config::{Config, Overrides};
    let d = tempfile::tempdir().expect("dir");
    write(d.path(), "k1.hmac", "dG9vIHNob3J0");
    let e = Config::load(
        Some(&grants_config(d.path(), "")),
        |_| None,
        Overrides::default(),
    )
    .expect_err("a short key");
    let msg = e.to_string();
    assert!(
        msg.contains("grants.keys_dir") && msg.contains("k1.hmac"),
        "{msg}"
    );
    assert!(!msg.contains("dG9vIHNob3J0"), "{msg}");
    let empty = tempfile::tempdir().expect("dir");
    let e = Config::load(
        Some(&grants_config(empty.path(), "")),
        |_| None,
        Overrides::default(),
    )
    .expect_err("no keys");
    assert!(e.to_string().contains("no key files"), "{e}");
    let ok = key_dir();
    for (extra, key) in [
        ("ttl_s = 5", "grants.ttl_s"),
        ("ttl_s = 7200", "grants.ttl_s"),
        ("secure_link_prefix = \"/a/\"", "grants.secure_link_prefix"),
        ("query_param = \"a b\"", "grants.query_param"),
    ] {
        let e = Config::load(
            Some(&grants_config(ok.path(), extra)),
            |_| None,
            Overrides::default(),
        )
        .expect_err(extra);
        assert_eq!(e.key, key, "{extra}");
    }
}

#[tokio::test]
async fn issued_grants_expire_with_the_deal() {
    // A scope issued straight from the library at a time near the deal's end would be cut
    // there; with no deal end the configured lifetime holds. Checked through Issued.
    let dir = key_dir();
    let s = TestServer::start(&grants_config(dir.path(), "ttl_s = 60"), world()).await;
    let snap = s.app.snapshot.load();
    let scope = Scope {
        track: "T1",
        use_type: UseType::OnDemandStream,
        tier: Tier::Free,
    };
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(20);
    let t = s
        .app
        .grants
        .issue_token(&scope, None, &snap, now, Some(until))
        .expect("token");
    let key = Key::from_text("k1", KeyKind::Hmac, HMAC_K1.as_bytes()).expect("key");
    let c = formats::verify_hmac_token(&key, &t, None).expect("verifies");
    assert_eq!(c.exp, until.timestamp());
    let t = s
        .app
        .grants
        .issue_token(&scope, None, &snap, now, None)
        .expect("token");
    let c = formats::verify_hmac_token(&key, &t, None).expect("verifies");
    assert_eq!(c.exp, now.timestamp() + 60);
    assert!(
        s.app
            .grants
            .issue_token(&scope, None, &snap, now, Some(now))
            .is_none()
    );
    drop(snap);
    s.stop().await;
}

/// The response bytes with the Date and fresh-grant values masked (a fresh grant's expiry
/// may fall in another second on either server).
fn masked(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .map(|l| {
            if l.starts_with("date: ") {
                "date: <date>".to_owned()
            } else if l.starts_with("x-regiongate-grant: ") {
                "x-regiongate-grant: <grant>".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn the_fast_path_answers_grants_byte_for_byte_as_hyper() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = key_dir();
    let fast = TestServer::start(&grants_config(dir.path(), ""), world()).await;
    let hyper_cfg =
        grants_config(dir.path(), "").replace("[grants]", "[authz]\nfast_path = false\n\n[grants]");
    let hyper = TestServer::start(&hyper_cfg, world()).await;
    assert!(!hyper.app.config.authz.fast_path);
    let good = token_of(&preflight_grant(&fast, "T1", IP_DE).await);
    let head = |uri: &str, xff: &str| {
        format!(
            "GET /v1/authz HTTP/1.1\r\nHost: rg\r\nX-Original-URI: {uri}\r\nX-Forwarded-For: {xff}\r\n\r\n"
        )
    };
    let cases = [
        head(&format!("/audio/T1/a.mp4?rg_grant={good}"), "127.0.0.9"),
        head("/audio/T1/a.mp4?rg_grant=k1.bad.bad", IP_DE),
        head("/audio/T1/a.mp4?rg_grant=k1.bad.bad", IP_FR),
        head("/audio/T1/a.mp4", IP_DE),
    ];
    for c in &cases {
        let mut out = Vec::new();
        for addr in [fast.public, hyper.public] {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(c.as_bytes()).await.expect("write");
            s.shutdown().await.expect("half close");
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b).await;
            out.push(masked(&b));
        }
        assert!(out[0].starts_with("HTTP/1.1 "), "{c}: {}", out[0]);
        assert_eq!(
            out[0], out[1],
            "{c}: fast path (left) and hyper (right) differ"
        );
    }
    fast.stop().await;
    hyper.stop().await;
}

// ---- nginx secure_link: the real nginx with deploy/nginx/grants.conf -----------------------

const GRANTS_CONF: &str = include_str!("../../deploy/nginx/grants.conf");
const SECURE_LINK_SECRET: &str = "sl-secret-0123456789abcdefghij";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_secure_link_checks_grants_by_itself() {
    use crate::nginx::{
        Procs, free_port, get as nginx_get, nginx_binary, start_origin, wait_until,
    };
    use std::process::{Command, Stdio};
    let nginx = nginx_binary();
    let keys = key_dir();
    write(keys.path(), "n1.secure-link", SECURE_LINK_SECRET);
    let s = TestServer::start(&grants_config(keys.path(), ""), world()).await;
    let v = preflight_grant(&s, "T1", IP_DE).await;
    let sl = &v["grant"]["secure_link"];
    assert_eq!(sl["prefix"], "/audio/T1/", "{v}");
    let query = sl["query"].as_str().expect("secure_link query").to_owned();
    assert!(
        query.contains("rg_kid=n1") && query.contains("rg_md5="),
        "{query}"
    );
    // The denial carries none.
    assert!(
        preflight_grant(&s, "T1", IP_FR)
            .await
            .get("grant")
            .is_none()
    );
    s.stop().await;

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    for d in ["logs", "tmp", "secure-link-keys.d"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    write(
        &dir.join("secure-link-keys.d"),
        "keys.map",
        &format!("n1 \"{SECURE_LINK_SECRET}\";\n"),
    );
    let (front, origin) = (free_port(), start_origin());
    for p in ["__LISTEN__", "__ORIGIN__"] {
        assert!(
            GRANTS_CONF.contains(p),
            "deploy/nginx/grants.conf lacks {p}"
        );
    }
    let conf_text = GRANTS_CONF
        .replace("__LISTEN__", &format!("127.0.0.1:{front}"))
        .replace("__ORIGIN__", &format!("127.0.0.1:{origin}"));
    assert!(!conf_text.contains("__"), "a placeholder is left");
    let conf = dir.join("nginx.conf");
    write(&dir, "nginx.conf", &conf_text);
    let prefix = format!("{}/", dir.display());
    let t = Command::new(&nginx)
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .args(["-p", &prefix])
        .output()
        .expect("nginx -t runs");
    assert!(
        t.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let mut procs = Procs {
        children: Vec::new(),
        logs: vec![dir.join("logs/error.log")],
    };
    let global = format!(
        "daemon off; master_process off; pid {};",
        dir.join("nginx.pid").display()
    );
    let child = Command::new(&nginx)
        .arg("-c")
        .arg(&conf)
        .args(["-p", &prefix, "-g", &global])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    procs.children.push(("nginx", child));
    wait_until("nginx listens", &mut procs, "nginx", || {
        std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
    });
    let status = |path: &str| nginx_get(front, path, &[]).status;
    // Every segment of the track passes with the grant, and reaches the origin.
    for i in 0..3 {
        let r = nginx_get(front, &format!("/audio/T1/seg-{i}.mp4?{query}"), &[]);
        assert_eq!(r.status, 200, "segment {i}: {r:?}");
        assert!(
            r.body
                .starts_with(&format!("origin /audio/T1/seg-{i}.mp4?")),
            "{r:?}"
        );
    }
    // Without it, for another track, altered, with an unknown key: refused.
    assert_eq!(status("/audio/T1/seg-1.mp4"), 403);
    assert_eq!(status(&format!("/audio/TFR/seg-1.mp4?{query}")), 403);
    let exp: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("rg_exp="))
        .and_then(|e| e.parse().ok())
        .expect("rg_exp");
    let later = query.replace(&format!("rg_exp={exp}"), &format!("rg_exp={}", exp + 3600));
    assert_eq!(status(&format!("/audio/T1/seg-1.mp4?{later}")), 403);
    let other_kid = query.replace("rg_kid=n1", "rg_kid=n9");
    assert_eq!(status(&format!("/audio/T1/seg-1.mp4?{other_kid}")), 403);
    // Expired (signed correctly, in the past): 410.
    let key =
        Key::from_text("n1", KeyKind::SecureLink, SECURE_LINK_SECRET.as_bytes()).expect("key");
    let old =
        formats::secure_link_query(&key, "/audio/T1/", Utc::now().timestamp() - 5).expect("query");
    assert_eq!(status(&format!("/audio/T1/seg-1.mp4?{old}")), 410);
    // A grant signed with another secret for the same kid: refused.
    let wrong = Key::from_text(
        "n1",
        KeyKind::SecureLink,
        b"another-secret-0123456789abcdef",
    )
    .expect("key");
    let forged = formats::secure_link_query(&wrong, "/audio/T1/", exp).expect("query");
    assert_eq!(status(&format!("/audio/T1/seg-1.mp4?{forged}")), 403);
    // The access log holds paths, never the grant.
    drop(procs);
    let log = std::fs::read_to_string(dir.join("logs/access.log")).unwrap_or_default();
    assert!(log.contains("/audio/T1/seg-0.mp4"), "{log}");
    assert!(!log.contains("rg_md5"), "{log}");
}

// ---- JWT grants checked by an independent library (PyJWT) against the served JWKS ---------

/// A PKCS#8 PEM Ed25519 key from a 32-byte seed, as `openssl genpkey -algorithm ed25519`
/// writes it.
pub(crate) fn ed25519_pem(seed: [u8; 32]) -> String {
    use base64::Engine;
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

/// The Python with PyJWT and cryptography (Debian's python3-jwt, python3-cryptography).
fn python_with_pyjwt() -> String {
    for cand in ["/usr/bin/python3", "python3"] {
        let ok = std::process::Command::new(cand)
            .args(["-c", "import jwt, cryptography"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return cand.to_owned();
        }
    }
    panic!(
        "no python3 with PyJWT and cryptography: this test verifies JWT grants with an \
         independent library and does not skip; `apt-get install -y python3-jwt \
         python3-cryptography` (.ci/run does)"
    );
}

/// PyJWT's verdict on `token` against `jwks`: the claims, or its error.
fn pyjwt(jwks: &str, token: &str) -> Result<serde_json::Value, String> {
    let d = tempfile::tempdir().expect("dir");
    std::fs::write(d.path().join("jwks.json"), jwks).expect("write");
    std::fs::write(d.path().join("token"), token).expect("write");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/jwt_verify.py");
    let out = std::process::Command::new(python_with_pyjwt())
        .arg(script)
        .arg(d.path().join("jwks.json"))
        .arg(d.path().join("token"))
        .args(["playback", "regiongate"])
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(serde_json::from_str(&text).expect("claims JSON"))
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[tokio::test]
async fn jwt_grants_verify_with_pyjwt_against_the_served_jwks() {
    let keys = key_dir();
    write(keys.path(), "e1.ed25519.pem", &ed25519_pem([1; 32]));
    let data = tempfile::tempdir().expect("data dir");
    write_data_dir(data.path(), LICENSES);
    std::fs::create_dir_all(data.path().join("ip")).expect("mkdir");
    std::fs::write(data.path().join("ip/geoip.mmdb"), ip_db()).expect("write");
    let cfg = format!(
        "regions = {:?}\n{}",
        data.path().display().to_string(),
        grants_config(keys.path(), "")
    );
    let s = TestServer::start(&cfg, load_dir(data.path()).await).await;
    let jwks_reply = get(s.public, "/.well-known/jwks.json", &[]).await;
    assert_eq!(jwks_reply.status, 200);
    assert_eq!(
        jwks_reply.header("content-type"),
        Some("application/jwk-set+json")
    );
    let jwks = jwks_reply.text();
    let v = preflight_grant(&s, "T1", IP_DE).await;
    let token = v["grant"]["jwt"].as_str().expect("jwt").to_owned();
    let claims = pyjwt(&jwks, &token).expect("PyJWT verifies the grant");
    assert_eq!(claims["sub"], "T1");
    assert_eq!(claims["use"], "on_demand_stream");
    assert_eq!(claims["tier"], "free");
    assert_eq!(claims["exp"], v["grant"]["expires_unix"]);
    assert_eq!(claims["ver"], s.version());
    // No location in the claims: the keys are exactly these.
    let mut names: Vec<&str> = claims
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aud", "exp", "iat", "iss", "nbf", "rev", "sub", "tier", "use", "ver"
        ]
    );
    assert!(!claims.to_string().contains("81.0.0"));
    // Altered claims, another key's JWKS: PyJWT refuses.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = String::from_utf8(e.decode(&parts[1]).expect("b64")).expect("utf8");
        parts[1] = e.encode(body.replace("\"T1\"", "\"TFR\""));
    }
    let altered = parts.join(".");
    let e = pyjwt(&jwks, &altered).expect_err("altered token");
    assert!(e.contains("Signature"), "{e}");

    // Rotation: a newer key signs, both are published, the old grant still verifies.
    write(keys.path(), "e2.ed25519.pem", &ed25519_pem([2; 32]));
    let r = call(s.admin, "POST", "/admin/reload", &[], "").await;
    assert_eq!(r.status, 200);
    let jwks2 = get(s.public, "/.well-known/jwks.json", &[]).await.text();
    let doc: serde_json::Value = serde_json::from_str(&jwks2).expect("jwks json");
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["e1", "e2"]);
    assert!(!jwks2.contains("\"d\""), "a private key part in the JWKS");
    let new = token_of_jwt(&preflight_grant(&s, "T1", IP_DE).await);
    assert_eq!(pyjwt(&jwks2, &new).expect("new grant")["sub"], "T1");
    pyjwt(&jwks2, &token).expect("the old grant still verifies");
    let e = pyjwt(&jwks, &new).expect_err("the old JWKS lacks e2");
    assert!(e.contains("e2"), "{e}");
    s.stop().await;

    // Without an Ed25519 key: no JWT in grants, no JWKS.
    let plain = key_dir();
    let s = TestServer::start(&grants_config(plain.path(), ""), world()).await;
    assert_eq!(
        get(s.public, "/.well-known/jwks.json", &[]).await.status,
        404
    );
    assert!(
        preflight_grant(&s, "T1", IP_DE).await["grant"]
            .get("jwt")
            .is_none()
    );
    s.stop().await;
}

fn token_of_jwt(v: &serde_json::Value) -> String {
    v["grant"]["jwt"].as_str().expect("jwt").to_owned()
}

// ---- HMAC grants through the real nginx: deploy/nginx/nginx.conf, unchanged ------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_passes_hmac_grants_without_a_decision() {
    use crate::nginx::{
        Procs, free_port, get as nginx_get, nginx_binary, start_origin, wait_until,
    };
    use std::process::{Command, Stdio};
    const NGINX_CONF: &str = include_str!("../../deploy/nginx/nginx.conf");
    let nginx = nginx_binary();
    let keys = key_dir();
    let s = TestServer::start(&grants_config(keys.path(), ""), world()).await;
    let token = token_of(&preflight_grant(&s, "T1", IP_DE).await);

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    for d in ["logs", "tmp", "client-address.d"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    let (front, origin) = (free_port(), start_origin());
    let conf_text = NGINX_CONF
        .replace("__LISTEN__", &format!("127.0.0.1:{front}"))
        .replace("__REGIONGATE__", &s.public.to_string())
        .replace("__ORIGIN__", &format!("127.0.0.1:{origin}"));
    write(&dir, "nginx.conf", &conf_text);
    write(
        &dir.join("client-address.d"),
        "test.conf",
        "set_real_ip_from 127.0.0.1;\nreal_ip_header X-Test-Client-IP;\n",
    );
    let conf = dir.join("nginx.conf");
    let prefix = format!("{}/", dir.display());
    let global = format!(
        "daemon off; master_process off; pid {};",
        dir.join("nginx.pid").display()
    );
    let mut procs = Procs {
        children: Vec::new(),
        logs: vec![dir.join("logs/error.log")],
    };
    let child = Command::new(&nginx)
        .arg("-c")
        .arg(&conf)
        .args(["-p", &prefix, "-g", &global])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    procs.children.push(("nginx", child));
    let results = tokio::task::spawn_blocking(move || {
        wait_until("nginx listens", &mut procs, "nginx", || {
            std::net::TcpStream::connect(("127.0.0.1", front)).is_ok()
        });
        let play = |path: String, ip: &str| nginx_get(front, &path, &[("X-Test-Client-IP", ip)]);
        let out = vec![
            // A listener in FR (T1 is DE only) with the DE listener's grant: through.
            play(format!("/audio/T1/seg-1.mp4?rg_grant={token}"), IP_FR),
            // Without a grant it is decided: denied (451 from nginx).
            play("/audio/T1/seg-1.mp4".into(), IP_FR),
            // The grant on another track: decided in full, denied.
            play(format!("/audio/TFR/seg-1.mp4?rg_grant={token}"), IP_DE),
            // An altered grant: decided, denied for FR.
            play(format!("/audio/T1/seg-1.mp4?rg_grant={token}x"), IP_FR),
        ];
        drop(procs);
        out
    })
    .await
    .expect("nginx calls");
    assert_eq!(results[0].status, 200, "{:?}", results[0]);
    assert!(
        results[0]
            .body
            .starts_with("origin /audio/T1/seg-1.mp4?rg_grant="),
        "{:?}",
        results[0]
    );
    assert!(
        results[0].body.contains("x-regiongate-decision=allow"),
        "{:?}",
        results[0]
    );
    for r in &results[1..] {
        assert_eq!(r.status, 451, "{r:?}");
    }
    let m = metrics(&s).await;
    assert_eq!(
        metric(
            &m,
            "regiongate_grants_verified_total",
            &[("outcome", "valid")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "regiongate_grants_verified_total",
            &[("outcome", "wrong_track")]
        ),
        1.0
    );
    s.stop().await;
}

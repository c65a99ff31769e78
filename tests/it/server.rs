//! The edge service end to end: the real server (`regiongate::server::run`) on loopback
//! listeners, spoken to over HTTP. Small worlds with GeoIP2-City fixtures written here; a tiny
//! origin server for the proxy mode; the embedded world only where real data matters.
//!
//! Tests connect from 127.0.0.1, which gives no IP evidence; where a test needs IP evidence it
//! trusts the loopback peer as a proxy and names the client in `X-Forwarded-For`.

use crate::util::{
    Reply, TestServer, call, collection, get, metric, now_unix, raw_exchange, request, send,
    send_streaming, small_world, square_feature, within,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use mmdb_writer::{Value, Writer};
use regiongate::{DataSource, Snapshot};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

// ---- The world: a few tracks on the small world, a GeoIP2-City database, an MCC table -------

/// T1: DE only, on-demand streams; TP: DE, premium only; TFR: FR only; TGONE: taken down;
/// TKNOWN: in the catalogue with no deal.
pub(crate) const LICENSES: &str = r#"
[[track]]
id = "TKNOWN"

[[dealset]]
selector = { track = "T1" }
updated = "2025-01-01"
deals = [{ id = "t1-de", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"] }]

[[dealset]]
selector = { track = "TP" }
updated = "2025-01-01"
deals = [{ id = "tp-de", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"], tiers = ["premium"] }]

[[dealset]]
selector = { track = "TFR" }
updated = "2025-01-01"
deals = [{ id = "tfr-fr", territories = ["FR"], start = "2020-01-01", uses = ["on_demand_stream"] }]

[[dealset]]
selector = { track = "TGONE" }
updated = "2025-01-01"
deals = []
"#;

/// A catalogue in which T1 is licensed in FR instead of DE.
pub(crate) const LICENSES_T1_MOVED: &str = r#"
[[dealset]]
selector = { track = "T1" }
updated = "2025-06-01"
deals = [{ id = "t1-fr", territories = ["FR"], start = "2020-01-01", uses = ["on_demand_stream"] }]
"#;

/// A City point deep inside DE (20 km circle).
pub(crate) const IP_DE: &str = "81.0.0.7";
/// A City point near the DE/FR border whose 50 km circle reaches FR.
pub(crate) const IP_BORDER: &str = "81.0.1.9";
/// A country-only FR record.
pub(crate) const IP_FR: &str = "81.0.2.1";

const MCC: &[u8] = b"mcc,mnc,countries\n262,,DE\n208,,FR\n234,,GB;DE\n";

fn city(country: &str, lat: f64, lon: f64, acc_km: u16) -> Value {
    Value::map([
        ("country", Value::map([("iso_code", Value::from(country))])),
        (
            "location",
            Value::map([
                ("latitude", Value::Double(lat)),
                ("longitude", Value::Double(lon)),
                ("accuracy_radius", Value::U16(acc_km)),
            ]),
        ),
    ])
}

pub(crate) fn ip_db() -> Vec<u8> {
    // A fixed build time (the writer stamps the current second otherwise): `world()` must
    // give the same data version each time it is called.
    let mut w = Writer::builder("GeoIP2-City")
        .build_epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_735_689_600))
        .build();
    let rows = [
        ("81.0.0.0/24", city("DE", 2.0, 2.0, 20)),
        ("81.0.1.0/24", city("DE", 5.0, 9.9, 50)),
        (
            "81.0.2.0/24",
            Value::map([("country", Value::map([("iso_code", Value::from("FR"))]))]),
        ),
    ];
    for (net, v) in rows {
        w.insert_value(net.parse::<ipnet::IpNet>().expect("net"), v)
            .expect("insert");
    }
    w.to_bytes().expect("mmdb bytes")
}

pub(crate) fn world_with(licenses: &str) -> Snapshot {
    small_world(
        licenses,
        vec![("ip/geoip.mmdb", ip_db()), ("mcc-mnc.csv", MCC.to_vec())],
    )
    .expect("valid small world")
}

pub(crate) fn world() -> Snapshot {
    world_with(LICENSES)
}

/// Tables every test config shares: the loopback peer is a trusted proxy.
const TRUSTING: &str = r#"
[client]
trusted_proxies = ["127.0.0.1/32"]

[preflight]
max_age_s = 30
max_batch = 3

[limits]
max_body_bytes = 1024
"#;

/// A config: top-level keys, the shared tables, then more tables.
pub(crate) fn config(top: &str, tables: &str) -> String {
    format!("{top}\n{TRUSTING}\n{tables}")
}

/// A proxy-mode config in front of `upstream`.
fn proxy_config(upstream: SocketAddr, tables: &str) -> String {
    config(
        "mode = \"proxy\"",
        &format!("[proxy]\nupstream = \"http://{upstream}\"\n{tables}"),
    )
}

/// A fresh Geo-Hint header value.
pub(crate) fn geo(lat: f64, lon: f64) -> String {
    format!("gps={lat},{lon}; acc=25; ts={}", now_unix())
}

fn playability(track: &str) -> String {
    format!("/v1/tracks/{track}/playability")
}

/// (decision, reason, source, territory) of a preflight answer; `null` for no territory.
type Answer = (String, String, String, String);
/// Request headers with owned values.
type Headers<'a> = Vec<(&'a str, String)>;

/// The headers as `get` takes them.
fn borrowed<'a>(h: &'a Headers<'_>) -> Vec<(&'a str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// (decision, reason, source, territory) of a preflight answer.
fn verdict(v: &serde_json::Value) -> Answer {
    let s = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (s("decision"), s("reason"), s("source"), s("territory"))
}

fn v4(d: &str, r: &str, s: &str, t: &str) -> Answer {
    (d.into(), r.into(), s.into(), t.into())
}

/// Nothing in a response may name the client's address or coordinates.
fn assert_no_location(r: &Reply, secrets: &[&str]) {
    let all = format!("{:?}\n{}", r.headers, r.text());
    for s in secrets.iter().chain(&["127.0.0.1"]) {
        assert!(!all.contains(s), "response leaks {s:?}: {all}");
    }
}

// ---- 1. Preflight GET -------------------------------------------------------------------------

#[tokio::test]
async fn preflight_get_decides_and_labels_the_answer() {
    within(30, "preflight get", async {
        let srv = TestServer::start(&config("", ""), world()).await;
        let a = srv.public;
        let version = srv.version();
        let xff = |ip: &'static str| [("x-forwarded-for", ip)];

        let r = get(a, &playability("T1"), &xff(IP_DE)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("private, max-age=30"));
        assert_eq!(r.header("x-regiongate-version"), Some(version.as_str()));
        let v = r.json();
        assert_eq!(verdict(&v), v4("allow", "licensed", "ip", "DE"));
        assert_eq!(
            (v["track"].clone(), v["playable"].clone()),
            (json!("T1"), json!(true))
        );
        let until: chrono::DateTime<chrono::Utc> = v["valid_until"]
            .as_str()
            .expect("valid_until")
            .parse()
            .expect("RFC 3339");
        let ahead = (until - chrono::Utc::now()).num_seconds();
        assert!((25..=31).contains(&ahead), "valid_until {ahead} s ahead");
        assert_no_location(&r, &[IP_DE, "81.0.0"]);

        let cases: Vec<(String, Headers<'_>, Answer)> = vec![
            (
                playability("T1"),
                vec![("x-forwarded-for", IP_FR.into())],
                v4("deny", "not_licensed_in_territory", "ip", "FR"),
            ),
            (
                playability("TFR"),
                vec![("x-forwarded-for", IP_FR.into())],
                v4("allow", "licensed", "ip", "FR"),
            ),
            (
                playability("T1"),
                vec![("x-forwarded-for", IP_BORDER.into())],
                v4("need_precise_location", "ambiguous_location", "ip", "DE"),
            ),
            (
                playability("T1"),
                vec![("cell-hint", "mcc=234; mnc=15".into())],
                v4(
                    "need_precise_location",
                    "ambiguous_location",
                    "cell",
                    "null",
                ),
            ),
            (
                playability("T1"),
                vec![("cell-hint", "mcc=262; mnc=01".into())],
                v4("allow", "licensed", "cell", "DE"),
            ),
            (
                playability("T1"),
                vec![("geo-hint", geo(2.5, 2.5))],
                v4("allow", "licensed", "gps", "DE"),
            ),
            (
                playability("T1"),
                vec![("geo-hint", geo(2.5, 12.5))],
                v4("deny", "not_licensed_in_territory", "gps", "FR"),
            ),
            (
                // The border address is uncertain; a GPS fix in DE settles it.
                playability("T1"),
                vec![
                    ("x-forwarded-for", IP_BORDER.into()),
                    ("geo-hint", geo(5.0, 9.0)),
                ],
                v4("allow", "licensed", "gps", "DE"),
            ),
            (
                playability("NOPE"),
                vec![("x-forwarded-for", IP_DE.into())],
                v4("deny", "unknown_track", "none", "null"),
            ),
            (
                playability("TGONE"),
                vec![("x-forwarded-for", IP_DE.into())],
                v4("deny", "taken_down", "none", "null"),
            ),
            (
                playability("TKNOWN"),
                vec![("x-forwarded-for", IP_DE.into())],
                v4("deny", "no_deal", "none", "null"),
            ),
            (
                playability("T1"),
                vec![],
                v4("deny", "location_unknown", "none", "null"),
            ),
            (
                format!("{}?use=download", playability("T1")),
                vec![("x-forwarded-for", IP_DE.into())],
                v4("deny", "use_not_licensed", "ip", "DE"),
            ),
            (
                playability("TP"),
                vec![("x-forwarded-for", IP_DE.into())],
                v4("deny", "tier_not_licensed", "ip", "DE"),
            ),
            (
                format!("{}?tier=premium&use=on_demand_stream", playability("TP")),
                vec![("x-forwarded-for", IP_DE.into())],
                v4("allow", "licensed", "ip", "DE"),
            ),
        ];
        for (path, headers, want) in cases {
            let h = borrowed(&headers);
            let r = get(a, &path, &h).await;
            assert_eq!(r.status, StatusCode::OK, "{path} {headers:?}: {}", r.text());
            assert_eq!(verdict(&r.json()), want, "{path} {headers:?}");
            assert_eq!(r.header("cache-control"), Some("private, max-age=30"));
            assert_eq!(r.header("x-regiongate-version"), Some(version.as_str()));
            // No raw evidence in the answer: no address, no coordinates, no cell ids.
            let secrets: Vec<&str> = headers
                .iter()
                .flat_map(|(_, v)| v.split(['=', ';', ',', ' ']))
                .filter(|s| s.len() >= 4 && s.contains('.'))
                .collect();
            assert_no_location(&r, &secrets);
        }
        srv.stop().await;
    })
    .await;
}

/// A bad request: path, headers, the field the 400 must name, values it must not echo.
type BadCase<'a> = (String, Headers<'a>, &'a str, &'a [&'a str]);

#[tokio::test]
async fn preflight_get_refuses_bad_input_naming_the_field_only() {
    within(30, "preflight bad input", async {
        let srv = TestServer::start(&config("", ""), world()).await;
        let a = srv.public;
        let stale = format!("gps=2.5,2.5; acc=25; ts={}", now_unix() - 3600);
        let cases: Vec<BadCase<'_>> = vec![
            (
                playability("T1"),
                vec![(
                    "geo-hint",
                    format!("gps=91.987654,2.5; acc=25; ts={}", now_unix()),
                )],
                "geo-hint",
                &["91.987654"],
            ),
            (
                playability("T1"),
                vec![("geo-hint", "gps=2.123456;acc=5".into())],
                "geo-hint",
                &["2.123456"],
            ),
            (
                playability("T1"),
                vec![("geo-hint", stale)],
                "geo-hint",
                &[],
            ),
            (
                playability("T1"),
                vec![("cell-hint", "mcc=26X7; mnc=01".into())],
                "cell-hint",
                &["26X7"],
            ),
            (
                playability("T1"),
                vec![("cell-hint", "mcc=262; mnc=01; cell=0xZZ9911".into())],
                "cell-hint",
                &["ZZ9911"],
            ),
            (
                playability("T1"),
                vec![
                    ("cell-hint", "mcc=262; mnc=01".into()),
                    ("cell-hint", "mcc=208; mnc=01".into()),
                ],
                "cell-hint",
                &[],
            ),
            (
                playability("T1"),
                vec![(
                    "wifi-hint",
                    "00:00:5e:00:53:a1@-50, 00:00:5e:00:53:b2x".into(),
                )],
                "wifi-hint",
                &["53:a1", "53:b2"],
            ),
            (
                playability("T1"),
                vec![(
                    "wifi-hint",
                    "00:00:5e:00:53:a1@-50, 00005E0053B2@-250".into(),
                )],
                "wifi-hint",
                &["53:a1", "0053b2", "-250"],
            ),
            (
                playability("T1"),
                vec![(
                    "wifi-hint",
                    "00:00:5e:00:53:a1@-50, 00-00-5E-00-53-A1@-60".into(),
                )],
                "wifi-hint",
                &["53:a1", "53-a1"],
            ),
            (
                playability("T1"),
                vec![(
                    "wifi-hint",
                    (0..33)
                        .map(|k| format!("00:00:5e:00:53:{k:02x}"))
                        .collect::<Vec<_>>()
                        .join(","),
                )],
                "wifi-hint",
                &["5e:00:53"],
            ),
            (
                playability("T1"),
                vec![(
                    "geo-hint",
                    format!("gps=2.5,2.5; acc=9000; ts={}; src=wifi", now_unix()),
                )],
                "geo-hint",
                &["2.5"],
            ),
            (
                playability("T1"),
                vec![(
                    "geo-hint",
                    format!("gps=2.5,2.5; acc=20; ts={}; src=radar", now_unix()),
                )],
                "geo-hint",
                &["2.5", "radar"],
            ),
            (
                format!("{}?use=karaoke", playability("T1")),
                vec![],
                "use",
                &["karaoke"],
            ),
            (
                format!("{}?tier=platinum", playability("T1")),
                vec![],
                "tier",
                &["platinum"],
            ),
            (
                format!("{}?tier=free&tier=premium", playability("T1")),
                vec![],
                "query",
                &[],
            ),
            (playability(&"X".repeat(129)), vec![], "track", &[]),
            (playability("a%2Fb"), vec![], "track", &[]),
        ];
        for (path, headers, field, secrets) in cases {
            let mut b = request("GET", &path);
            for (k, v) in &headers {
                b = b.header(*k, v.as_str());
            }
            let r = send(a, b.body(Full::new(Bytes::new())).expect("request")).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {headers:?}");
            let v = r.json();
            assert_eq!(v["field"], json!(field), "{path} {headers:?}: {v}");
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
            assert_no_location(&r, secrets);
        }
        let r = call(a, "PUT", &playability("T1"), &[], "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let r = get(a, "/v1/tracks/T1", &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        srv.stop().await;
    })
    .await;
}

// ---- 2. Preflight POST ------------------------------------------------------------------------

#[tokio::test]
async fn preflight_post_answers_batches_within_limits() {
    within(30, "preflight post", async {
        let srv = TestServer::start(&config("", ""), world()).await;
        let a = srv.public;
        let post = |body: String, headers: Headers<'static>| async move {
            let h = borrowed(&headers);
            call(a, "POST", "/v1/playability", &h, &body).await
        };
        let rows = |r: &Reply| -> Vec<Answer> {
            r.json()["decisions"]
                .as_array()
                .expect("decisions")
                .iter()
                .map(verdict)
                .collect()
        };

        // GPS in the body, in DE: three tracks, one with its own tier.
        let body = json!({
            "tracks": ["T1", "TFR", {"track": "TP", "tier": "premium"}],
            "hints": {"gps": {"lat": 2.25, "lon": 3.75, "acc": 20, "ts": now_unix()}},
        });
        let r = post(body.to_string(), vec![]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("cache-control"), Some("private, max-age=30"));
        assert_eq!(r.header("x-regiongate-version"), Some(srv.version().as_str()));
        assert_eq!(
            rows(&r),
            [
                v4("allow", "licensed", "gps", "DE"),
                v4("deny", "not_licensed_in_territory", "gps", "DE"),
                v4("allow", "licensed", "gps", "DE"),
            ]
        );
        let tracks: Vec<_> = r.json()["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .map(|d| d["track"].clone())
            .collect();
        assert_eq!(tracks, [json!("T1"), json!("TFR"), json!("TP")]);
        assert_no_location(&r, &["2.25", "3.75"]);

        // A cell in the body: MCC 234 is GB or DE. T1's answer differs between them, TFR's
        // does not (denied in both), so only T1 needs a precise location.
        let body = json!({"tracks": ["T1", "TFR"], "hints": {"cell": {"mcc": "234", "mnc": "15"}}});
        let r = post(body.to_string(), vec![]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let got = rows(&r);
        assert_eq!(
            (&got[0].0, &got[0].1, &got[0].2),
            (
                &"need_precise_location".to_owned(),
                &"ambiguous_location".to_owned(),
                &"cell".to_owned()
            )
        );
        assert_eq!(
            (&got[1].0, &got[1].1, &got[1].2),
            (
                &"deny".to_owned(),
                &"not_licensed_in_territory".to_owned(),
                &"cell".to_owned()
            )
        );

        // No hints in the body: the hint headers and the client address count.
        let r = post(
            json!({"tracks": ["T1"], "use": "on_demand_stream"}).to_string(),
            vec![("geo-hint", geo(2.5, 12.5))],
        )
        .await;
        assert_eq!(rows(&r), [v4("deny", "not_licensed_in_territory", "gps", "FR")]);
        let r = post(
            json!({"tracks": ["T1", "TP"]}).to_string(),
            vec![("x-forwarded-for", IP_DE.into())],
        )
        .await;
        assert_eq!(
            rows(&r),
            [
                v4("allow", "licensed", "ip", "DE"),
                v4("deny", "tier_not_licensed", "ip", "DE")
            ]
        );
        assert_no_location(&r, &[IP_DE]);

        // Refusals.
        let four = json!({"tracks": ["T1", "T1", "T1", "T1"]}).to_string();
        let bad = [
            (four, StatusCode::BAD_REQUEST, Some("tracks")),
            (json!({"tracks": []}).to_string(), StatusCode::BAD_REQUEST, Some("tracks")),
            ("{\"tracks\": [\"T1\"".to_owned(), StatusCode::BAD_REQUEST, Some("body")),
            ("not json".to_owned(), StatusCode::BAD_REQUEST, Some("body")),
            (json!({"tracks": [5]}).to_string(), StatusCode::BAD_REQUEST, Some("body")),
            (
                json!({"tracks": ["T1"], "tier": "platinum"}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("tracks[0]"),
            ),
            (
                json!({"tracks": ["T1"], "hints": {"gps": {"lat": 95.123456, "lon": 2, "acc": 5, "ts": now_unix()}}}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("hints.gps"),
            ),
            (
                json!({"tracks": ["T1"], "hints": {"cell": {"mcc": "2x4", "mnc": "15"}}}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("hints.cell"),
            ),
            (
                json!({"tracks": ["T1"], "hints": {"wifi": [{"bssid": "00:00:5e:00:53:a1"}, {"bssid": "00:00:5E:00:53:A1", "rssi": -60}]}}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("hints.wifi"),
            ),
            (
                json!({"tracks": ["T1"], "hints": {"wifi": [{"bssid": "00:00:5e:00:53:a1", "rssi": 12}]}}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("hints.wifi"),
            ),
            (
                json!({"tracks": ["T1"], "hints": {"gps": {"lat": 2.5, "lon": 2.5, "acc": 20, "ts": now_unix(), "src": "radar"}}}).to_string(),
                StatusCode::BAD_REQUEST,
                Some("hints.gps"),
            ),
            (
                json!({"tracks": ["T1"], "note": "x".repeat(2000)}).to_string(),
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
            ),
        ];
        for (body, status, field) in bad {
            let r = post(body.clone(), vec![]).await;
            let short: String = body.chars().take(80).collect();
            assert_eq!(r.status, status, "{short}: {}", r.text());
            let v = r.json();
            match field {
                Some(f) => assert_eq!(v["field"], json!(f), "{short}: {v}"),
                None => assert_eq!(v["limit_bytes"], json!(1024), "{v}"),
            }
            assert_no_location(&r, &["95.123456", "2x4", "53:a1", "radar"]);
        }
        let r = get(a, "/v1/playability", &[]).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        srv.stop().await;
    })
    .await;
}

// ---- 3. Territory ----------------------------------------------------------------------------

#[tokio::test]
async fn territory_names_the_place_never_the_evidence() {
    within(30, "territory", async {
        let srv = TestServer::start(&config("", ""), world()).await;
        let cases: Vec<(Headers<'_>, serde_json::Value)> = vec![
            (
                vec![("x-forwarded-for", IP_DE.into())],
                json!({"territory": "DE", "source": "ip", "decision_basis": "ip_point"}),
            ),
            (
                vec![("x-forwarded-for", IP_FR.into())],
                json!({"territory": "FR", "source": "ip", "decision_basis": "ip_country"}),
            ),
            (
                vec![("geo-hint", geo(12.25, 2.75))],
                json!({"territory": "GB", "source": "gps", "decision_basis": "gps_point"}),
            ),
            (
                vec![("cell-hint", "mcc=208; mnc=01".into())],
                json!({"territory": "FR", "source": "cell", "decision_basis": "cell_network"}),
            ),
            (
                vec![("cell-hint", "mcc=234; mnc=15".into())],
                json!({"territory": null, "source": "cell", "decision_basis": "ambiguous"}),
            ),
            (
                vec![],
                json!({"territory": null, "source": "none", "decision_basis": "none"}),
            ),
        ];
        for (headers, want) in cases {
            let h = borrowed(&headers);
            let r = get(srv.public, "/v1/territory", &h).await;
            assert_eq!(r.status, StatusCode::OK, "{headers:?}");
            assert_eq!(
                r.json(),
                want,
                "{headers:?}: exactly these keys, no raw values"
            );
            assert_eq!(r.header("cache-control"), Some("private, max-age=30"));
            assert_no_location(&r, &[IP_DE, IP_FR, "12.25", "2.75"]);
        }
        let r = get(
            srv.public,
            "/v1/territory",
            &[("geo-hint", "gps=12.25,2.75; acc=5")],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["field"], json!("geo-hint"));
        assert_no_location(&r, &["12.25"]);
        srv.stop().await;
    })
    .await;
}

// ---- 4. Auth subrequests ----------------------------------------------------------------------

/// (status, decision header, reason header, territory header, body).
fn authz_summary(r: &Reply) -> (u16, String, String, String, String) {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    (
        r.status.as_u16(),
        h("x-regiongate-decision"),
        h("x-regiongate-reason"),
        h("x-regiongate-territory"),
        r.text(),
    )
}

/// An auth subrequest: path, extra headers, expected status and reason.
type TierCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn authz_answers_nginx_and_envoy_subrequests() {
    within(30, "authz", async {
        let routes = r#"routes = ["/audio/{track}/{*rest}", "/t/{tier}/{use}/{track}"]"#;
        let srv = TestServer::start(&config(routes, ""), world()).await;
        let a = srv.public;
        let version = srv.version();
        let nginx = |uri: &'static str, ip: &'static str| {
            vec![
                ("x-original-uri", uri),
                ("x-original-method", "GET"),
                ("x-forwarded-for", ip),
            ]
        };

        // Allow: 200, empty body, decision/territory/version headers; both styles agree.
        for r in [
            get(a, "/v1/authz", &nginx("/audio/T1/seg-1.mp4", IP_DE)).await,
            get(
                a,
                "/v1/authz/audio/T1/seg-1.mp4",
                &[("x-forwarded-for", IP_DE)],
            )
            .await,
        ] {
            assert_eq!(
                authz_summary(&r),
                (
                    200,
                    "allow".into(),
                    "licensed".into(),
                    "DE".into(),
                    String::new()
                )
            );
            assert_eq!(r.header("x-regiongate-version"), Some(version.as_str()));
            assert_eq!(r.header("cache-control"), Some("private, no-store"));
        }

        // Deny: 403 with a small JSON reason; need precise: 428.
        let r = get(a, "/v1/authz", &nginx("/audio/T1/seg-1.mp4", IP_FR)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            r.json(),
            json!({"decision": "deny", "reason": "not_licensed_in_territory", "territory": "FR"})
        );
        assert_eq!(r.header("x-regiongate-decision"), Some("deny"));
        assert_eq!(r.header("x-regiongate-version"), Some(version.as_str()));
        assert_no_location(&r, &[IP_FR]);
        let r = get(
            a,
            "/v1/authz/audio/T1/seg-1.mp4",
            &[("x-forwarded-for", IP_BORDER)],
        )
        .await;
        assert_eq!(r.status.as_u16(), 428, "{}", r.text());
        assert_eq!(r.json()["reason"], json!("ambiguous_location"));
        assert_eq!(
            r.header("x-regiongate-decision"),
            Some("need_precise_location")
        );
        let r = get(
            a,
            "/v1/authz/audio/TGONE/x.mp4",
            &[("x-forwarded-for", IP_DE)],
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.json()["reason"].clone()),
            (403, json!("taken_down"))
        );

        // HEAD: same statuses, no body.
        let head = |path: &'static str, ip: &'static str| {
            send(
                a,
                request("HEAD", path)
                    .header("x-forwarded-for", ip)
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
        };
        let r = head("/v1/authz/audio/T1/seg.mp4", IP_DE).await;
        assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
        assert_eq!(r.header("x-regiongate-decision"), Some("allow"));
        let r = head("/v1/authz/audio/T1/seg.mp4", IP_FR).await;
        assert_eq!((r.status.as_u16(), r.body.len()), (403, 0));
        assert_eq!(
            r.header("x-regiongate-reason"),
            Some("not_licensed_in_territory")
        );

        // Unmatched paths are denied by default.
        let r = get(a, "/v1/authz", &nginx("/images/cover.jpg", IP_DE)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.header("x-regiongate-reason"), Some("not_a_track_route"));
        let r = get(
            a,
            "/v1/authz/images/cover.jpg",
            &[("x-forwarded-for", IP_DE)],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // The tier (and use) from the route, the original query, then the CDN header.
        let tier_cases: Vec<TierCase<'_>> = vec![
            ("/v1/authz/audio/TP/s.mp4", vec![], 403, "tier_not_licensed"),
            (
                "/v1/authz/t/premium/on_demand_stream/TP",
                vec![],
                200,
                "licensed",
            ),
            (
                "/v1/authz/t/free/on_demand_stream/TP",
                vec![],
                403,
                "tier_not_licensed",
            ),
            (
                "/v1/authz/t/premium/download/TP",
                vec![],
                403,
                "use_not_licensed",
            ),
            (
                // The listener writes the query: it never sets the tier.
                "/v1/authz/audio/TP/s.mp4?tier=premium",
                vec![],
                403,
                "tier_not_licensed",
            ),
            (
                "/v1/authz/audio/TP/s.mp4",
                vec![("x-regiongate-tier", "premium")],
                200,
                "licensed",
            ),
            (
                // The route beats the header.
                "/v1/authz/t/free/on_demand_stream/TP",
                vec![("x-regiongate-tier", "premium")],
                403,
                "tier_not_licensed",
            ),
            (
                "/v1/authz/audio/T1/s.mp4",
                vec![("x-regiongate-use", "download")],
                403,
                "use_not_licensed",
            ),
            (
                "/v1/authz/audio/T1/s.mp4",
                vec![("x-regiongate-tier", "gold")],
                403,
                "bad_tier",
            ),
        ];
        for (path, extra, status, reason) in tier_cases {
            let mut h = vec![("x-forwarded-for", IP_DE)];
            h.extend(extra.iter().copied());
            let r = get(a, path, &h).await;
            assert_eq!(
                (r.status.as_u16(), r.header("x-regiongate-reason")),
                (status, Some(reason)),
                "{path} {extra:?}"
            );
        }
        // nginx: a tier in the original URI's query is the listener's and is ignored.
        let r = get(
            a,
            "/v1/authz",
            &nginx("/audio/TP/s.mp4?tier=premium", IP_DE),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // Malformed subrequests.
        let r = get(a, "/v1/authz", &[("x-forwarded-for", IP_DE)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["field"], json!("x-original-uri"));
        // Envoy passes the listener's method: only GET and HEAD are playback; a CORS
        // preflight passes; nginx-style subrequests must be GET or HEAD themselves.
        let r = call(a, "POST", "/v1/authz/audio/T1/s.mp4", &[], "").await;
        assert_eq!(
            (r.status, r.header("x-regiongate-reason")),
            (StatusCode::FORBIDDEN, Some("not_playback"))
        );
        let r = call(a, "OPTIONS", "/v1/authz/audio/T1/s.mp4", &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        let r = call(a, "POST", "/v1/authz", &[], "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn authz_statuses_and_unmatched_paths_are_configurable() {
    within(30, "authz config", async {
        let tables = "[authz]\ndeny_status = 451\nneed_precise_status = 401\nunmatched = \"allow\"";
        let srv = TestServer::start(&config("", tables), world()).await;
        let a = srv.public;
        let r = get(a, "/v1/authz/audio/T1/s.mp4", &[("x-forwarded-for", IP_FR)]).await;
        assert_eq!(r.status.as_u16(), 451);
        assert_eq!(r.json()["reason"], json!("not_licensed_in_territory"));
        let r = get(
            a,
            "/v1/authz/audio/T1/s.mp4",
            &[("x-forwarded-for", IP_BORDER)],
        )
        .await;
        assert_eq!(r.status.as_u16(), 401);
        let r = get(a, "/v1/authz/audio/T1/s.mp4", &[("x-forwarded-for", IP_DE)]).await;
        assert_eq!(r.status.as_u16(), 200);
        let r = get(
            a,
            "/v1/authz",
            &[
                ("x-original-uri", "/images/cover.jpg"),
                ("x-forwarded-for", IP_FR),
            ],
        )
        .await;
        assert_eq!(
            authz_summary(&r),
            (
                200,
                "unmatched".into(),
                "not_a_track_route".into(),
                "-".into(),
                String::new()
            )
        );
        srv.stop().await;
    })
    .await;
}

// ---- 5. Spoofing through every front door ----------------------------------------------------

/// One outcome per front door, as text, for a request carrying `headers`.
async fn every_door(srv: &TestServer, headers: &[(&str, &str)]) -> Vec<String> {
    let a = srv.public;
    let get_v = get(a, &playability("T1"), headers).await;
    let post_v = call(
        a,
        "POST",
        "/v1/playability",
        headers,
        r#"{"tracks":["T1"]}"#,
    )
    .await;
    let terr = get(a, "/v1/territory", headers).await;
    let mut nginx_h = headers.to_vec();
    nginx_h.push(("x-original-uri", "/audio/T1/seg.mp4"));
    let nginx = get(a, "/v1/authz", &nginx_h).await;
    let envoy = get(a, "/v1/authz/audio/T1/seg.mp4", headers).await;
    let proxy = get(a, "/audio/T1/seg.mp4", headers).await;
    let reason = |r: &Reply| {
        r.header("x-regiongate-reason")
            .map(str::to_owned)
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| "-".into())
    };
    let (g, p, t) = (get_v.json(), post_v.json(), terr.json());
    vec![
        format!("get {} {}", g["decision"], g["reason"]),
        format!(
            "post {} {}",
            p["decisions"][0]["decision"], p["decisions"][0]["reason"]
        ),
        format!("territory {} {}", t["territory"], t["source"]),
        format!("nginx {} {}", nginx.status.as_u16(), reason(&nginx)),
        format!("envoy {} {}", envoy.status.as_u16(), reason(&envoy)),
        format!("proxy {} {}", proxy.status.as_u16(), reason(&proxy)),
    ]
}

fn doors(allowed: bool) -> Vec<String> {
    if allowed {
        vec![
            r#"get "allow" "licensed""#.into(),
            r#"post "allow" "licensed""#.into(),
            r#"territory "DE" "ip""#.into(),
            "nginx 200 licensed".into(),
            "envoy 200 licensed".into(),
            "proxy 200 -".into(),
        ]
    } else {
        vec![
            r#"get "deny" "location_unknown""#.into(),
            r#"post "deny" "location_unknown""#.into(),
            "territory null \"none\"".into(),
            "nginx 403 location_unknown".into(),
            "envoy 403 location_unknown".into(),
            "proxy 451 location_unknown".into(),
        ]
    }
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_move_nobody() {
    within(40, "spoofing", async {
        let origin = Origin::start().await;
        let untrusting = format!(
            "mode = \"proxy\"\n[client]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\ntrusted_header = \"CF-Connecting-IP\"\n[proxy]\nupstream = \"http://{}\"",
            origin.addr
        );
        // Proxies are trusted, but not the peer these requests come from (127.0.0.1).
        let srv = TestServer::start(&untrusting, world()).await;
        let spoofs: [&[(&str, &str)]; 5] = [
            &[],
            &[("x-forwarded-for", IP_DE)],
            &[("forwarded", "for=81.0.0.7;proto=https")],
            &[("cf-connecting-ip", IP_DE)],
            &[
                ("x-forwarded-for", IP_DE),
                ("forwarded", "for=81.0.0.7"),
                ("cf-connecting-ip", IP_DE),
                ("x-real-ip", IP_DE),
                ("true-client-ip", IP_DE),
            ],
        ];
        for h in spoofs {
            assert_eq!(every_door(&srv, h).await, doors(false), "spoofed with {h:?}");
        }
        assert!(
            origin.seen().is_empty(),
            "denied requests never reach the origin"
        );
        srv.stop().await;

        // The same headers do count from a trusted proxy: the test above could have failed.
        let chain_xff = proxy_config(origin.addr, "")
            .replace("[client]\n", "[client]\ntrusted_header = \"CF-Connecting-IP\"\n");
        let srv = TestServer::start(&chain_xff, world()).await;
        assert_eq!(every_door(&srv, &[("x-forwarded-for", IP_DE)]).await, doors(true));
        assert_eq!(every_door(&srv, &[("cf-connecting-ip", IP_DE)]).await, doors(true));
        assert_eq!(
            every_door(&srv, &[("forwarded", "for=81.0.0.7")]).await,
            doors(false),
            "Forwarded is not the configured chain header"
        );
        srv.stop().await;
        let chain_fwd = proxy_config(origin.addr, "")
            .replace("[client]\n", "[client]\nchain_header = \"forwarded\"\n");
        let srv = TestServer::start(&chain_fwd, world()).await;
        assert_eq!(
            every_door(&srv, &[("forwarded", "for=\"81.0.0.7:4711\";proto=https")]).await,
            doors(true)
        );
        srv.stop().await;
        assert_eq!(origin.seen().len(), 3, "the allowed proxy requests reached the origin");
    })
    .await;
}

// ---- 6. Reverse proxy -------------------------------------------------------------------------

/// Size of the origin's big media file.
const BIG: u64 = 32 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// The byte at offset `i` of the big file.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

fn pattern_chunk(start: u64, len: usize) -> Bytes {
    (start..start + len as u64)
        .map(pattern)
        .collect::<Vec<u8>>()
        .into()
}

/// A request as the origin saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
}

struct OriginState {
    seen: Mutex<Vec<Seen>>,
    arrived: mpsc::UnboundedSender<String>,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
}

/// A tiny origin: `/…/big.bin` (32 MiB, Range, HEAD), `/…/gated.bin` (one chunk, then waits for
/// the gate), `/…/slow.bin?ms=N` (answers after N ms), anything else echoes its path.
struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    arrived: mpsc::UnboundedReceiver<String>,
}

/// A streamed body fed by a channel.
struct ChanBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

type OriginBody = UnsyncBoxBody<Bytes, Infallible>;

fn small(body: String) -> Response<OriginBody> {
    Response::new(Full::new(Bytes::from(body)).boxed_unsync())
}

/// Streams bytes `start..end` of the big file in chunks.
fn stream_range(start: u64, end: u64) -> OriginBody {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut pos = start;
        while pos < end {
            let n = CHUNK.min((end - pos) as usize);
            if tx.send(pattern_chunk(pos, n)).await.is_err() {
                return;
            }
            pos += n as u64;
        }
    });
    ChanBody(rx).boxed_unsync()
}

fn big(req: &Request<Incoming>) -> Response<OriginBody> {
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| {
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                BIG - 1
            } else {
                b.parse().ok()?
            };
            (a <= b && b < BIG).then_some((a, b))
        });
    let (status, start, end) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        None => (StatusCode::OK, 0, BIG),
    };
    let body = if req.method() == Method::HEAD {
        Empty::new().boxed_unsync()
    } else {
        stream_range(start, end)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-length", (end - start).into());
    h.insert("accept-ranges", "bytes".parse().expect("value"));
    h.insert("content-type", "audio/mp4".parse().expect("value"));
    // Hop-by-hop headers on the way back must not reach the client either.
    h.insert("connection", "x-origin-secret".parse().expect("value"));
    h.insert("x-origin-secret", "1".parse().expect("value"));
    h.insert("keep-alive", "timeout=30".parse().expect("value"));
    if status == StatusCode::PARTIAL_CONTENT {
        let cr = format!("bytes {start}-{}/{BIG}", end - 1);
        h.insert("content-range", cr.parse().expect("value"));
    }
    r
}

async fn origin_handle(
    state: Arc<OriginState>,
    req: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_owned();
    state.seen.lock().expect("lock").push(Seen {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let _ = state.arrived.send(path.clone());
    if path.ends_with("/big.bin") {
        return Ok(big(&req));
    }
    if path.ends_with("/gated.bin") {
        let gate = state.gate.lock().expect("lock").take();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            if tx.send(pattern_chunk(0, CHUNK)).await.is_err() {
                return;
            }
            if let Some(g) = gate {
                let _ = g.await;
            }
            for i in 1..=16u64 {
                if tx
                    .send(pattern_chunk(i * CHUNK as u64, CHUNK))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        return Ok(Response::new(ChanBody(rx).boxed_unsync()));
    }
    if path.ends_with("/slow.bin") {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(small("slow-done".into()));
    }
    Ok(small(format!("origin:{path}")))
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (tx, arrived) = mpsc::unbounded_channel();
        let state = Arc::new(OriginState {
            seen: Mutex::new(Vec::new()),
            arrived: tx,
            gate: Mutex::new(None),
        });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |r| origin_handle(st.clone(), r));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            state,
            arrived,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Waits until the origin has received a request.
    async fn wait_arrival(&mut self) -> String {
        within(10, "a request reaching the origin", self.arrived.recv())
            .await
            .expect("origin alive")
    }
}

/// The metric value of `regiongate_upstream_errors_total{kind=...}`.
fn upstream_errors(metrics: &str, kind: &str) -> f64 {
    metric(
        metrics,
        "regiongate_upstream_errors_total",
        &[("kind", kind)],
    )
}

#[tokio::test]
async fn proxy_forwards_allowed_tracks_byte_for_byte() {
    within(60, "proxy forwarding", async {
        let origin = Origin::start().await;
        let srv = TestServer::start(&proxy_config(origin.addr, ""), world()).await;
        let a = srv.public;
        let version = srv.version();

        // The whole 32 MiB file, streamed and checked byte for byte.
        let resp = send_streaming(
            a,
            request("GET", "/audio/T1/big.bin")
                .header("x-forwarded-for", IP_DE)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers().get("content-length").map(|v| v.as_bytes()),
            Some(BIG.to_string().as_bytes())
        );
        assert_eq!(
            resp.headers()
                .get("x-regiongate-version")
                .map(|v| v.as_bytes()),
            Some(version.as_bytes())
        );
        for hop in ["x-origin-secret", "keep-alive"] {
            assert!(
                resp.headers().get(hop).is_none(),
                "{hop} came back to the client"
            );
        }
        let mut body = resp.into_body();
        let (mut pos, mut bad) = (0u64, None);
        while let Some(f) = body.frame().await {
            let f = f.expect("body frame");
            if let Some(d) = f.data_ref() {
                if bad.is_none()
                    && let Some(i) = d
                        .iter()
                        .enumerate()
                        .position(|(i, &b)| b != pattern(pos + i as u64))
                {
                    bad = Some(pos + i as u64);
                }
                pos += d.len() as u64;
            }
        }
        assert_eq!((pos, bad), (BIG, None), "every byte arrives, in order");

        // Range: 206 and Content-Range pass through.
        let r = send(
            a,
            request("GET", "/audio/T1/big.bin")
                .header("x-forwarded-for", IP_DE)
                .header("range", "bytes=1000000-1000999")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.header("content-range"),
            Some("bytes 1000000-1000999/33554432")
        );
        assert_eq!(r.body, pattern_chunk(1_000_000, 1000));
        let r = send(
            a,
            request("GET", "/audio/T1/big.bin")
                .header("x-forwarded-for", IP_DE)
                .header("range", "bytes=33554400-")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.body, pattern_chunk(BIG - 32, 32));

        // HEAD: headers only.
        let r = send(
            a,
            request("HEAD", "/audio/T1/big.bin")
                .header("x-forwarded-for", IP_DE)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
        assert_eq!(r.header("content-length"), Some("33554432"));

        // Hop-by-hop headers stay here; the forwarding headers are appended; the origin sees
        // its own Host. A raw request, so that exactly these headers are sent.
        let before = origin.seen().len();
        let raw = raw_exchange(
            a,
            b"GET /audio/T1/hop.bin?x=1 HTTP/1.1\r\n\
              Host: listener.example\r\n\
              Connection: close, X-Foo\r\n\
              X-Foo: secret\r\n\
              Keep-Alive: timeout=5\r\n\
              TE: trailers\r\n\
              Upgrade: websocket\r\n\
              Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
              X-Forwarded-For: 81.0.0.7\r\n\
              Forwarded: for=81.0.0.7;proto=https\r\n\
              X-Keep: kept\r\n\
              \r\n",
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        assert!(raw.ends_with("origin:/audio/T1/hop.bin"), "{raw}");
        let seen = origin.seen();
        assert_eq!(seen.len(), before + 1);
        let s = &seen[before];
        assert_eq!(
            (s.method.as_str(), s.uri.as_str()),
            ("GET", "/audio/T1/hop.bin?x=1")
        );
        for hop in [
            "connection",
            "x-foo",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(
                s.headers.get(hop).is_none(),
                "{hop} was forwarded: {:?}",
                s.headers
            );
        }
        let h = |n: &str| s.headers.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(h("x-keep"), Some("kept"));
        assert_eq!(h("x-forwarded-for"), Some("81.0.0.7, 127.0.0.1"));
        assert_eq!(
            h("forwarded"),
            Some("for=81.0.0.7;proto=https, for=127.0.0.1;proto=http")
        );
        assert_eq!(h("host"), Some(origin.addr.to_string().as_str()));
        assert_eq!(h("x-forwarded-host"), Some("listener.example"));

        // Location hints decide here and go no further: the origin never sees them.
        let r = get(
            a,
            "/audio/T1/hint.bin",
            &[
                ("geo-hint", &geo(2.5, 2.5)),
                ("cell-hint", "mcc=262; mnc=01"),
            ],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let seen = origin.seen();
        let last = seen.last().expect("forwarded");
        assert_eq!(last.uri, "/audio/T1/hint.bin");
        assert!(
            last.headers.get("geo-hint").is_none() && last.headers.get("cell-hint").is_none(),
            "location hints were forwarded to the origin: {:?}",
            last.headers
        );

        // Paths that match no track route are forwarded (proxy.unmatched defaults to allow).
        let r = get(a, "/index.html", &[]).await;
        assert_eq!(
            (r.status, r.text()),
            (StatusCode::OK, "origin:/index.html".to_owned())
        );
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn proxy_blocks_denied_tracks_with_451_before_the_origin() {
    within(30, "proxy 451", async {
        let origin = Origin::start().await;
        let tables = "blocked_by = \"https://rights.example/why\"";
        let srv = TestServer::start(&proxy_config(origin.addr, tables), world()).await;
        let a = srv.public;
        let cases = [
            (
                IP_FR,
                "/audio/T1/big.bin",
                "deny",
                "not_licensed_in_territory",
            ),
            (
                IP_BORDER,
                "/audio/T1/big.bin",
                "need_precise_location",
                "ambiguous_location",
            ),
            (IP_DE, "/audio/TGONE/big.bin", "deny", "taken_down"),
            (IP_DE, "/tracks/NOPE", "deny", "unknown_track"),
        ];
        for (ip, path, decision, reason) in cases {
            let r = get(a, path, &[("x-forwarded-for", ip)]).await;
            assert_eq!(r.status.as_u16(), 451, "{ip} {path}");
            assert_eq!(
                r.header("link"),
                Some("<https://rights.example/why>; rel=\"blocked-by\"")
            );
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("x-regiongate-decision"), Some(decision));
            let v = r.json();
            assert_eq!(
                (v["decision"].as_str(), v["reason"].as_str()),
                (Some(decision), Some(reason))
            );
            assert_no_location(&r, &[ip]);
        }
        let r = send(
            a,
            request("HEAD", "/audio/T1/big.bin")
                .header("x-forwarded-for", IP_FR)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!((r.status.as_u16(), r.body.len()), (451, 0));
        assert!(
            origin.seen().is_empty(),
            "the origin saw {:?}",
            origin.seen()
        );
        // The same path from DE does reach it.
        let r = get(a, "/audio/T1/other.bin", &[("x-forwarded-for", IP_DE)]).await;
        assert_eq!(r.text(), "origin:/audio/T1/other.bin");
        assert_eq!(origin.seen().len(), 1);
        srv.stop().await;

        // proxy.unmatched = "deny": paths outside the track routes are 404, never forwarded.
        let srv =
            TestServer::start(&proxy_config(origin.addr, "unmatched = \"deny\""), world()).await;
        let r = get(srv.public, "/index.html", &[("x-forwarded-for", IP_DE)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(origin.seen().len(), 1);
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn proxy_streams_without_buffering() {
    within(30, "proxy streaming", async {
        let origin = Origin::start().await;
        let srv = TestServer::start(&proxy_config(origin.addr, ""), world()).await;
        let (release, gate) = oneshot::channel();
        *origin.state.gate.lock().expect("lock") = Some(gate);
        let resp = send_streaming(
            srv.public,
            request("GET", "/audio/T1/gated.bin")
                .header("x-forwarded-for", IP_DE)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response headers before the origin finished");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        // The origin has sent one chunk and now waits for us: if the proxy buffered the body,
        // no byte would arrive until the release below, and this would time out.
        let mut got = 0usize;
        while got == 0 {
            let f = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("the first bytes arrive while the origin is still sending")
                .expect("not the end")
                .expect("frame");
            got += f.data_ref().map_or(0, Bytes::len);
        }
        assert!(
            got <= CHUNK,
            "only the first chunk exists yet ({got} bytes)"
        );
        release.send(()).expect("origin waiting");
        let rest = within(10, "the rest of the body", body.collect())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(got + rest.len(), 17 * CHUNK);
        assert_eq!(rest, pattern_chunk(got as u64, 17 * CHUNK - got));
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn proxy_upstream_failures_are_502_and_504_and_counted() {
    within(30, "upstream failures", async {
        // Down: a port nobody listens on.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr")
        };
        let srv =
            TestServer::start(&proxy_config(closed, "connect_timeout_ms = 2000"), world()).await;
        let started = Instant::now();
        let r = get(srv.public, "/audio/T1/a.mp4", &[("x-forwarded-for", IP_DE)]).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "502 quickly: {:?}",
            started.elapsed()
        );
        assert!(r.json()["error"].is_string());
        let m = get(srv.admin, "/metrics", &[]).await.text();
        assert_eq!(upstream_errors(&m, "connect"), 1.0, "{m}");
        assert_eq!(upstream_errors(&m, "timeout"), 0.0);
        srv.stop().await;

        // Accepts, reads nothing, answers never.
        let hang = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hang_addr = hang.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut conns: Vec<TcpStream> = Vec::new();
            while let Ok((s, _)) = hang.accept().await {
                conns.push(s);
            }
        });
        let srv = TestServer::start(
            &proxy_config(hang_addr, "response_timeout_ms = 400"),
            world(),
        )
        .await;
        let started = Instant::now();
        let r = get(srv.public, "/audio/T1/a.mp4", &[("x-forwarded-for", IP_DE)]).await;
        let took = started.elapsed();
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_secs(3),
            "504 after the response timeout: {took:?}"
        );
        let m = get(srv.admin, "/metrics", &[]).await.text();
        assert_eq!(upstream_errors(&m, "timeout"), 1.0, "{m}");
        assert_eq!(upstream_errors(&m, "connect"), 0.0);
        // A denied request never touches the upstream, so it is not an upstream error.
        let r = get(srv.public, "/audio/T1/a.mp4", &[("x-forwarded-for", IP_FR)]).await;
        assert_eq!(r.status.as_u16(), 451);
        let m = get(srv.admin, "/metrics", &[]).await.text();
        assert_eq!(upstream_errors(&m, "timeout"), 1.0);
        srv.stop().await;
        held.abort();
    })
    .await;
}

#[tokio::test]
async fn proxy_is_never_an_open_proxy() {
    within(30, "open proxy", async {
        let origin = Origin::start().await;
        let srv = TestServer::start(&proxy_config(origin.addr, ""), world()).await;
        let a = srv.public;
        let raw = raw_exchange(
            a,
            b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
        assert!(raw.contains("absolute-form"), "{raw}");
        let raw = raw_exchange(
            a,
            b"GET http://evil.example/audio/T1/a.mp4 HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-For: 81.0.0.7\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 400"), "even for an allowed track: {raw}");
        let raw = raw_exchange(
            a,
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
        // Host names no destination: a request for another host goes to the fixed origin.
        let r = send(
            a,
            Request::builder()
                .uri("/index.html")
                .header("host", "evil.example")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(r.text(), "origin:/index.html");
        let seen = origin.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].headers.get("host").and_then(|v| v.to_str().ok()),
            Some(origin.addr.to_string().as_str())
        );
        srv.stop().await;
    })
    .await;
}

// ---- 7. Admin listener -----------------------------------------------------------------------

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[tokio::test]
async fn admin_listener_reports_health_metrics_and_the_snapshot() {
    within(30, "admin", async {
        let srv = TestServer::start(&config("", ""), world()).await;
        let (a, p) = (srv.admin, srv.public);
        let version = srv.version();

        let r = get(a, "/healthz", &[]).await;
        assert_eq!(
            (r.status, r.json()["status"].clone()),
            (StatusCode::OK, json!("ok"))
        );
        let r = get(a, "/readyz", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["version"], json!(version));

        // Some decisions, then the counters.
        get(p, &playability("T1"), &[("x-forwarded-for", IP_DE)]).await;
        get(p, &playability("T1"), &[("x-forwarded-for", IP_FR)]).await;
        get(p, &playability("T1"), &[("x-forwarded-for", IP_FR)]).await;
        get(
            p,
            "/v1/authz/audio/T1/s.mp4",
            &[("geo-hint", &geo(2.5, 2.5))],
        )
        .await;
        let r = get(a, "/metrics", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain"))
        );
        let m = r.text();
        let d = |labels: &[(&str, &str)]| metric(&m, "regiongate_decisions_total", labels);
        assert_eq!(
            d(&[
                ("door", "preflight"),
                ("verdict", "allow"),
                ("reason", "licensed"),
                ("source", "ip")
            ]),
            1.0,
            "{m}"
        );
        assert_eq!(
            d(&[
                ("door", "preflight"),
                ("verdict", "deny"),
                ("reason", "not_licensed_in_territory"),
                ("source", "ip")
            ]),
            2.0
        );
        assert_eq!(
            d(&[
                ("door", "authz"),
                ("verdict", "allow"),
                ("reason", "licensed"),
                ("source", "gps")
            ]),
            1.0
        );
        assert!(
            m.contains(&format!(
                "regiongate_data_version_info{{data_version=\"{version}\"}} 1"
            )),
            "{m}"
        );
        assert!(m.contains("regiongate_request_duration_seconds_bucket{door=\"preflight\""));
        for secret in [IP_DE, IP_FR, "81.0.", "127.0.0.1"] {
            assert!(!m.contains(secret), "metrics name {secret}");
        }

        let r = get(a, "/admin/snapshot", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert_eq!(v["version"], json!(version));
        let inputs = v["inputs"].as_array().expect("inputs");
        let paths: Vec<&str> = inputs.iter().filter_map(|i| i["path"].as_str()).collect();
        for p in [
            "countries.geojson",
            "licenses/test.toml",
            "ip/geoip.mmdb",
            "mcc-mnc.csv",
        ] {
            assert!(paths.contains(&p), "{p} in {paths:?}");
        }
        for i in inputs {
            let sha = i["sha256"].as_str().expect("sha256");
            assert!(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{i}"
            );
        }
        let lic = inputs
            .iter()
            .find(|i| i["path"] == "licenses/test.toml")
            .expect("licence input");
        assert_eq!(lic["sha256"], json!(sha256_hex(LICENSES.as_bytes())));
        assert_eq!(lic["bytes"], json!(LICENSES.len()));
        let snap = srv.app.snapshot.load();
        assert_eq!(v["counts"]["territories"], json!(5));
        assert_eq!(v["counts"]["tracks"], json!(snap.licenses.track_count()));
        assert_eq!(v["counts"]["deals"], json!(snap.licenses.deal_count()));
        assert!(snap.licenses.deal_count() >= 3);
        assert_eq!(v["ip_database"]["database_type"], json!("GeoIP2-City"));
        assert_eq!(v["ip_database"]["layout"], json!("geoip2"));
        assert_eq!(v["last_reload"], json!(null));

        // Wrong methods on the admin listener, admin endpoints on the public one.
        assert_eq!(
            call(a, "POST", "/healthz", &[], "").await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            get(a, "/admin/reload", &[]).await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            get(a, "/v1/territory", &[]).await.status,
            StatusCode::NOT_FOUND
        );
        for path in ["/healthz", "/readyz", "/metrics", "/admin/snapshot"] {
            let r = get(p, path, &[]).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{path} on the public listener"
            );
            assert_eq!(r.json()["error"], json!("no such endpoint"));
        }
        let r = call(p, "POST", "/admin/reload", &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        srv.stop().await;
    })
    .await;
}

/// Writes a small data directory: DE and FR and a licence file.
pub(crate) fn write_data_dir(dir: &std::path::Path, licenses: &str) {
    let countries = collection(&[
        square_feature("DE", 0.0, 0.0, 10.0),
        square_feature("FR", 10.0, 0.0, 10.0),
    ]);
    std::fs::create_dir_all(dir.join("licenses")).expect("mkdir");
    std::fs::write(dir.join("countries.geojson"), countries).expect("write");
    std::fs::write(dir.join("licenses/test.toml"), licenses).expect("write");
}

pub(crate) async fn load_dir(dir: &std::path::Path) -> Snapshot {
    let src = DataSource::Dir(dir.to_owned());
    tokio::task::spawn_blocking(move || Snapshot::load(&src))
        .await
        .expect("load task")
        .expect("valid data directory")
}

#[tokio::test]
async fn admin_reload_on_loopback_swaps_the_data_directory() {
    within(40, "admin reload", async {
        let dir = tempfile::tempdir().expect("tempdir");
        write_data_dir(dir.path(), LICENSES);
        let cfg = config(
            &format!("regions = {:?}", dir.path().display().to_string()),
            "",
        );
        let srv = TestServer::start(&cfg, load_dir(dir.path()).await).await;
        let (a, p) = (srv.admin, srv.public);
        let old = srv.version();
        // A GPS fix in DE (the loopback peer gives no IP evidence).
        let ask = || async move {
            let g = geo(2.5, 2.5);
            get(p, &playability("T1"), &[("geo-hint", g.as_str())]).await
        };
        let first = ask().await.json();
        assert_eq!(verdict(&first).0, "allow", "{first}");

        // Nothing changed: reload succeeds and keeps the version.
        let r = call(a, "POST", "/admin/reload", &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            (r.json()["result"].clone(), r.json()["version"].clone()),
            (json!("ok"), json!(old))
        );

        // T1 moves to FR on disk; a reload makes it so.
        std::fs::write(dir.path().join("licenses/test.toml"), LICENSES_T1_MOVED).expect("write");
        let r = call(a, "POST", "/admin/reload", &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        assert_eq!(
            (v["result"].clone(), v["trigger"].clone()),
            (json!("ok"), json!("admin"))
        );
        let new = v["version"].as_str().expect("version").to_owned();
        assert_ne!(new, old);
        let r = ask().await;
        assert_eq!(
            verdict(&r.json()),
            v4("deny", "not_licensed_in_territory", "gps", "DE")
        );
        assert_eq!(r.header("x-regiongate-version"), Some(new.as_str()));

        // A broken file: the reload fails, names the file, and the last good data keeps serving.
        std::fs::write(
            dir.path().join("licenses/test.toml"),
            "[[dealset]]\nselector = 7\n",
        )
        .expect("write");
        let r = call(a, "POST", "/admin/reload", &[], "").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        let v = r.json();
        assert_eq!(v["result"], json!("failed"));
        assert!(
            v["problems"].as_array().is_some_and(|p| p
                .iter()
                .any(|p| p.as_str().is_some_and(|s| s.contains("licenses/test.toml")))),
            "{v}"
        );
        assert_eq!(
            ask().await.header("x-regiongate-version"),
            Some(new.as_str())
        );
        let s = get(a, "/admin/snapshot", &[]).await.json();
        assert_eq!(s["version"], json!(new));
        assert_eq!(s["last_reload"]["result"], json!("failed"));
        let m = get(a, "/metrics", &[]).await.text();
        assert_eq!(
            metric(&m, "regiongate_reloads_total", &[("result", "ok")]),
            2.0
        );
        assert_eq!(
            metric(&m, "regiongate_reloads_total", &[("result", "failed")]),
            1.0
        );
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn admin_reload_requires_the_configured_token() {
    within(40, "admin token", async {
        const TOKEN: &str = "s3cret-token-0123456";
        assert_eq!(TOKEN.len(), 20);
        let dir = tempfile::tempdir().expect("tempdir");
        write_data_dir(dir.path(), LICENSES);
        let cfg = config(
            &format!("regions = {:?}", dir.path().display().to_string()),
            "[admin]\ntoken_env = \"RG_TEST_ADMIN_TOKEN\"",
        );
        let env = |k: &str| (k == "RG_TEST_ADMIN_TOKEN").then(|| TOKEN.to_owned());
        let srv = TestServer::start_with_env(&cfg, env, load_dir(dir.path()).await).await;
        let a = srv.admin;
        let wrong = [
            None,
            Some("Bearer s3cret-token-0123457".to_owned()),
            Some("Bearer s3cret-token-012345".to_owned()),
            Some(format!("Basic {TOKEN}")),
            Some(format!("bearer{TOKEN}")),
        ];
        for auth in wrong {
            let h: Vec<(&str, &str)> = auth.iter().map(|v| ("authorization", v.as_str())).collect();
            let r = call(a, "POST", "/admin/reload", &h, "").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(!r.text().contains(TOKEN));
        }
        let s = get(a, "/admin/snapshot", &[]).await.json();
        assert_eq!(
            s["last_reload"],
            json!(null),
            "refused calls did not reload"
        );
        let r = call(
            a,
            "POST",
            "/admin/reload",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["result"], json!("ok"));
        srv.stop().await;
    })
    .await;
}

// ---- 8. Graceful shutdown --------------------------------------------------------------------

/// Connects until the listener is gone; true if a connection was refused in time.
async fn refused_soon(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    within(30, "graceful shutdown", async {
        let mut origin = Origin::start().await;
        let cfg = proxy_config(origin.addr, "")
            .replace("[limits]\n", "[limits]\ngrace_period_ms = 5000\n");
        let mut srv = TestServer::start(&cfg, world()).await;
        let p = srv.public;
        let in_flight = tokio::spawn(async move {
            let r = get(
                p,
                "/audio/T1/slow.bin?ms=1500",
                &[("x-forwarded-for", IP_DE)],
            )
            .await;
            (r, Instant::now())
        });
        assert_eq!(origin.wait_arrival().await, "/audio/T1/slow.bin");
        let shutdown_at = Instant::now();
        srv.trigger_shutdown();
        assert!(
            refused_soon(p).await,
            "new connections are refused after shutdown"
        );
        assert!(
            refused_soon(srv.admin).await,
            "the admin listener closes too"
        );
        assert!(
            !in_flight.is_finished(),
            "still in flight while the listeners are closed"
        );
        let (r, done_at) = within(10, "in-flight request", in_flight)
            .await
            .expect("task");
        assert_eq!(
            (r.status, r.text()),
            (StatusCode::OK, "slow-done".to_owned())
        );
        assert!(done_at > shutdown_at);
        within(10, "run returns", srv.join())
            .await
            .expect("run returns Ok");
        assert!(
            shutdown_at.elapsed() < Duration::from_secs(4),
            "run returned once drained"
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_cuts_requests_beyond_the_grace_period() {
    within(30, "grace period", async {
        let mut origin = Origin::start().await;
        let cfg = proxy_config(origin.addr, "")
            .replace("[limits]\n", "[limits]\ngrace_period_ms = 300\n");
        let mut srv = TestServer::start(&cfg, world()).await;
        let p = srv.public;
        let in_flight = tokio::spawn(async move {
            send_streaming(
                p,
                request("GET", "/audio/T1/slow.bin?ms=8000")
                    .header("x-forwarded-for", IP_DE)
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .map(|r| r.status())
        });
        origin.wait_arrival().await;
        let started = Instant::now();
        srv.trigger_shutdown();
        within(5, "run returns after the grace period", srv.join())
            .await
            .expect("run returns Ok");
        let ran = started.elapsed();
        assert!(
            ran >= Duration::from_millis(250),
            "the grace period was given: {ran:?}"
        );
        // The connection is closed without an answer, long before the origin would answer.
        let outcome = within(3, "the cut request ends", in_flight)
            .await
            .expect("task");
        assert!(outcome.is_err(), "the request was not cut: {outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
    })
    .await;
}

// ---- 9. Swapping snapshots -------------------------------------------------------------------

#[tokio::test]
async fn swapping_the_snapshot_changes_answers_and_version() {
    within(30, "swap", async {
        let srv = TestServer::start(&config("", ""), world()).await;
        let p = srv.public;
        let old = srv.version();
        let t1 = playability("T1");
        let ask = || get(p, &t1, &[("x-forwarded-for", IP_DE)]);
        let authz = || get(p, "/v1/authz/audio/T1/a.mp4", &[("x-forwarded-for", IP_DE)]);
        let r = ask().await;
        assert_eq!(verdict(&r.json()), v4("allow", "licensed", "ip", "DE"));
        assert_eq!(r.header("x-regiongate-version"), Some(old.as_str()));
        assert_eq!(authz().await.status, StatusCode::OK);

        let moved = world_with(LICENSES_T1_MOVED);
        let new = moved.version.clone();
        assert_ne!(new, old);
        srv.app.swap(moved);
        let r = ask().await;
        assert_eq!(
            verdict(&r.json()),
            v4("deny", "not_licensed_in_territory", "ip", "DE")
        );
        assert_eq!(r.header("x-regiongate-version"), Some(new.as_str()));
        let r = authz().await;
        assert_eq!(
            (r.status, r.header("x-regiongate-version")),
            (StatusCode::FORBIDDEN, Some(new.as_str()))
        );
        let r = get(srv.admin, "/readyz", &[]).await;
        assert_eq!(r.json()["version"], json!(new));
        let m = get(srv.admin, "/metrics", &[]).await.text();
        assert!(
            m.contains(&format!("data_version=\"{new}\"")) && !m.contains(&old),
            "{m}"
        );

        // And back.
        srv.app.swap(world());
        let r = ask().await;
        assert_eq!(verdict(&r.json()).0, "allow");
        assert_eq!(r.header("x-regiongate-version"), Some(old.as_str()));
        srv.stop().await;
    })
    .await;
}

// ---- Clients that misbehave -------------------------------------------------------------------

#[tokio::test]
async fn malformed_and_slow_clients_are_cut_off() {
    within(30, "malformed clients", async {
        let cfg = config("", "").replace(
            "[limits]\n",
            "[limits]\nheader_read_timeout_ms = 300\nmax_headers = 20\n",
        );
        let srv = TestServer::start(&cfg, world()).await;
        let a = srv.public;
        let raw = raw_exchange(a, b"THIS IS NOT HTTP\r\n\r\n").await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{raw:?}");
        let mut many = String::from("GET /v1/territory HTTP/1.1\r\nHost: x\r\n");
        for i in 0..30 {
            many.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        let raw = raw_exchange(a, many.as_bytes()).await;
        assert!(raw.starts_with("HTTP/1.1 431"), "{raw:?}");
        // Headers that never finish: the connection is closed after the header timeout.
        let started = Instant::now();
        let raw = raw_exchange(a, b"GET /v1/territory HTTP/1.1\r\nHost: x\r\n").await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(5),
            "closed after the header timeout: {took:?}"
        );
        assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 408"), "{raw:?}");
        // The server still answers well-formed requests.
        assert_eq!(get(a, "/v1/territory", &[]).await.status, StatusCode::OK);
        srv.stop().await;
    })
    .await;
}

/// A request head of exactly `len` bytes (request line, headers, the empty line), made long
/// by one `X-Pad` header.
fn head_of(len: usize) -> Vec<u8> {
    let start = "GET /v1/territory HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    let head = format!("{start}{}{end}", "a".repeat(pad));
    assert_eq!(head.len(), len);
    head.into_bytes()
}

/// Writes raw bytes on a new connection (the server may answer and close before it has read
/// them all: write errors are ignored) and reads until it closes: the status line.
async fn status_line(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(10, "raw exchange", async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let _ = s.write_all(bytes).await;
        let mut out = Vec::new();
        // A reset after the answer counts as the end too.
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        text.lines().next().unwrap_or("").to_owned()
    })
    .await
}

/// `GET /v1/territory` on an open keep-alive connection: the status.
async fn territory_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
) -> StatusCode {
    within(10, "a request on the kept connection", async {
        sender.ready().await.expect("connection still open");
        let req = request("GET", "/v1/territory")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let r = sender.send_request(req).await.expect("answer");
        let status = r.status();
        r.into_body().collect().await.expect("body");
        status
    })
    .await
}

#[tokio::test]
async fn request_heads_over_max_header_bytes_get_431_and_others_are_served() {
    within(30, "request head size", async {
        let cfg = config("", "").replace("[limits]\n", "[limits]\nmax_header_bytes = 16384\n");
        let srv = TestServer::start(&cfg, world()).await;
        let a = srv.public;
        // A keep-alive connection opened before, asked before and after the refusals.
        let stream = TcpStream::connect(a).await.expect("connect");
        let (mut kept, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        assert_eq!(territory_on(&mut kept).await, StatusCode::OK);

        // The limit is exact: a head of 16384 bytes is served, one of 16385 is refused (and
        // its connection closed: `status_line` reads to the end).
        assert_eq!(status_line(a, &head_of(16_384)).await, "HTTP/1.1 200 OK");
        assert_eq!(
            status_line(a, &head_of(16_385)).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // Far over it: a 64 KiB header value, and a 100 KB request target (over the head
        // limit before the target's own limit of 64 KiB is reached: 431, not 414).
        assert_eq!(
            status_line(a, &head_of(64 * 1024 + 100)).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        let long_target = format!(
            "GET /v1/tracks/{}/playability HTTP/1.1\r\nHost: x\r\n\r\n",
            "A".repeat(100_000)
        );
        assert_eq!(
            status_line(a, long_target.as_bytes()).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );

        // The others are served: the kept connection and new ones.
        assert_eq!(territory_on(&mut kept).await, StatusCode::OK);
        assert_eq!(get(a, "/v1/territory", &[]).await.status, StatusCode::OK);
        assert_eq!(status_line(a, &head_of(16_384)).await, "HTTP/1.1 200 OK");
        srv.stop().await;

        // The default is 32 KiB: a 64 KiB header value, accepted by hyper's own limit of
        // about 400 KiB, is refused; a head of 32 KiB is served.
        let srv = TestServer::start(&config("", ""), world()).await;
        assert_eq!(
            srv.app.config.limits.max_header_bytes,
            regiongate::config::DEFAULT_MAX_HEADER_BYTES
        );
        assert_eq!(
            status_line(srv.public, &head_of(32 * 1024)).await,
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_line(srv.public, &head_of(32 * 1024 + 1)).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        assert_eq!(
            status_line(srv.public, &head_of(64 * 1024 + 100)).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        srv.stop().await;
    })
    .await;
}

// ---- The embedded world ----------------------------------------------------------------------

#[tokio::test]
async fn embedded_world_answers_with_real_data() {
    within(60, "embedded world", async {
        let snap = tokio::task::spawn_blocking(|| Snapshot::load(&DataSource::Embedded))
            .await
            .expect("load task")
            .expect("the embedded data loads");
        let srv = TestServer::start(&config("", ""), snap).await;
        let p = srv.public;
        let alpenglow = playability("QZNW52400010");
        let cases: Vec<(&str, Headers<'_>, Answer)> = vec![
            (
                &alpenglow,
                vec![("x-forwarded-for", "193.99.144.80".into())],
                v4("allow", "licensed", "ip", "DE"),
            ),
            (
                &alpenglow,
                vec![("x-forwarded-for", "8.8.8.8".into())],
                v4("deny", "not_licensed_in_territory", "ip", "US"),
            ),
            (
                // Vienna, by GPS (no IP evidence from the loopback peer).
                &alpenglow,
                vec![("geo-hint", geo(48.2082, 16.3738))],
                v4("allow", "licensed", "gps", "AT"),
            ),
            (
                // Büsingen: a German exclave inside Switzerland; both are DACH.
                &alpenglow,
                vec![("geo-hint", geo(47.6964, 8.6906))],
                v4("allow", "licensed", "gps", "DE"),
            ),
            (
                &alpenglow,
                vec![("geo-hint", geo(48.8566, 2.3522))],
                v4("deny", "not_licensed_in_territory", "gps", "FR"),
            ),
        ];
        for (path, headers, want) in cases {
            let h = borrowed(&headers);
            let r = get(p, path, &h).await;
            assert_eq!(verdict(&r.json()), want, "{path} {headers:?}");
            assert_eq!(
                r.header("x-regiongate-version"),
                Some(srv.version().as_str())
            );
        }
        let r = get(
            p,
            &playability("QZNW52400003"),
            &[("x-forwarded-for", "193.99.144.80")],
        )
        .await;
        assert_eq!(verdict(&r.json()), v4("deny", "taken_down", "none", "null"));
        let r = get(
            p,
            &playability("QZXX52600001"),
            &[("x-forwarded-for", "193.99.144.80")],
        )
        .await;
        assert_eq!(verdict(&r.json()).1, "no_deal");
        let r = get(
            p,
            "/v1/territory",
            &[("x-forwarded-for", "114.114.114.114")],
        )
        .await;
        assert_eq!(r.json()["territory"], json!("CN"));
        srv.stop().await;
    })
    .await;
}

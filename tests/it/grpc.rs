//! Envoy's gRPC ext_authz (`envoy.service.auth.v3.Authorization/Check`) against the running
//! server, with a real tonic client (and raw HTTP/2 for what tonic would not send), and the
//! public listener spoken to over HTTP/2 (h2c with prior knowledge).

use crate::server::{IP_BORDER, IP_DE, IP_FR, geo, world};
use crate::util::*;
use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap as PbHeaderMap, HeaderValue as PbHeaderValue, SocketAddress,
    address::Address as AddressKind,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use prost::Message;
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::Channel;

/// The server with the gRPC listener on, trusting the loopback peer (Envoy), with more
/// `[limits]`.
async fn start(limits: &str) -> TestServer {
    let text = format!(
        "routes = [\"/audio/{{track}}/{{*rest}}\"]\ngrpc_listen = \"127.0.0.1:0\"\n\
         [client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[limits]\nmax_body_bytes = 1024\n{limits}\n"
    );
    TestServer::start(&text, world()).await
}

async fn client(srv: &TestServer) -> AuthorizationClient<Channel> {
    let addr = srv.grpc.expect("grpc listener");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    AuthorizationClient::new(channel)
}

/// A CheckRequest for `GET path` from downstream `source` (if any) with `headers`.
pub(crate) fn check(path: &str, source: Option<&str>, headers: &[(&str, &str)]) -> CheckRequest {
    let http = HttpRequest {
        method: "GET".into(),
        path: path.into(),
        host: "cdn.test".into(),
        scheme: "https".into(),
        protocol: "HTTP/2".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: source.map(|ip| Peer {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: ip.into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// (rpc code, HTTP status of a denial or 200, header map) of a response.
fn summary(r: &CheckResponse) -> (i32, u16, HashMap<String, String>, String) {
    let code = r.status.as_ref().map_or(-1, |s| s.code);
    let to_map = |hs: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| {
        hs.iter()
            .filter_map(|o| o.header.as_ref())
            .map(|h| {
                (
                    h.key.clone(),
                    String::from_utf8(h.raw_value.clone()).expect("utf-8 value"),
                )
            })
            .collect::<HashMap<_, _>>()
    };
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => (code, 200, to_map(&ok.headers), String::new()),
        Some(HttpResponse::DeniedResponse(d)) => (
            code,
            u16::try_from(d.status.as_ref().map_or(0, |s| s.code)).expect("status"),
            to_map(&d.headers),
            d.body.clone(),
        ),
        other => panic!("no http_response: {other:?}"),
    }
}

async fn ask(c: &mut AuthorizationClient<Channel>, req: CheckRequest) -> CheckResponse {
    within(10, "Check", c.check(req))
        .await
        .expect("Check answers OK at the gRPC level")
        .into_inner()
}

#[tokio::test]
async fn grpc_check_allows_denies_and_asks_for_precision() {
    within(60, "grpc check", async {
        let srv = start("").await;
        let mut c = client(&srv).await;
        let version = srv.version();

        // Allow: OK, OkHttpResponse with the decision headers for the upstream.
        let (code, status, h, body) =
            summary(&ask(&mut c, check("/audio/T1/seg-1.mp4", Some(IP_DE), &[])).await);
        assert_eq!((code, status, body.as_str()), (0, 200, ""));
        assert_eq!(h["x-regiongate-decision"], "allow");
        assert_eq!(h["x-regiongate-reason"], "licensed");
        assert_eq!(h["x-regiongate-territory"], "DE");
        assert_eq!(h["x-regiongate-version"], version);
        assert!(!h.contains_key("content-type"), "{h:?}");

        // Deny: PERMISSION_DENIED, 403 (authz.deny_status) and the HTTP mode's JSON body.
        let r = ask(&mut c, check("/audio/T1/seg-1.mp4", Some(IP_FR), &[])).await;
        let (code, status, h, body) = summary(&r);
        assert_eq!((code, status), (7, 403));
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(
            body,
            json!({"decision": "deny", "reason": "not_licensed_in_territory", "territory": "FR"})
        );
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-regiongate-decision"], "deny");
        assert_eq!(h["cache-control"], "private, no-store");
        // The same answer as the HTTP mode for the same request.
        let http = get(
            srv.public,
            "/v1/authz/audio/T1/seg-1.mp4",
            &[("x-forwarded-for", IP_FR)],
        )
        .await;
        assert_eq!(http.status.as_u16(), status);
        assert_eq!(http.json(), body);
        let all = format!("{r:?}");
        assert!(!all.contains(IP_FR), "the answer echoes the address: {all}");

        // Need a precise location (a 50 km circle across DE/FR): 428; a GPS hint settles it.
        let (code, status, h, _) =
            summary(&ask(&mut c, check("/audio/T1/x.mp4", Some(IP_BORDER), &[])).await);
        assert_eq!((code, status), (7, 428));
        assert_eq!(h["x-regiongate-decision"], "need_precise_location");
        let hint = geo(2.0, 2.0);
        let (code, status, h, _) = summary(
            &ask(
                &mut c,
                check(
                    "/audio/T1/x.mp4",
                    Some(IP_BORDER),
                    &[("geo-hint", hint.as_str())],
                ),
            )
            .await,
        );
        assert_eq!((code, status), (0, 200));
        assert_eq!(h["x-regiongate-territory"], "DE");

        // Raw headers (`header_map`, Envoy's encode_raw_headers) are read as the map is.
        let mut raw = check("/audio/T1/x.mp4", Some(IP_BORDER), &[]);
        if let Some(http) = raw
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.header_map = Some(PbHeaderMap {
                headers: vec![PbHeaderValue {
                    key: "Geo-Hint".into(),
                    raw_value: hint.clone().into_bytes(),
                    ..Default::default()
                }],
            });
        }
        assert_eq!(summary(&ask(&mut c, raw).await).1, 200);

        // Not playback: a CORS preflight passes, a POST is denied; no route: denied.
        let mut options = check("/audio/T1/x.mp4", Some(IP_FR), &[]);
        options
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .expect("http")
            .method = "OPTIONS".into();
        assert_eq!(summary(&ask(&mut c, options).await).1, 200);
        let (_, status, h, _) =
            summary(&ask(&mut c, check("/images/cover.jpg", Some(IP_DE), &[])).await);
        assert_eq!(status, 403);
        assert_eq!(h["x-regiongate-reason"], "not_a_track_route");

        // Counted under their own door.
        let m = get(srv.admin, "/metrics", &[]).await.text();
        let grpc = metric(
            &m,
            "regiongate_decisions_total",
            &[("door", "authz_grpc"), ("verdict", "allow")],
        );
        assert!(
            grpc >= 3.0,
            "allow decisions of door authz_grpc: {grpc}\n{m}"
        );
        let lat = metric(
            &m,
            "regiongate_request_duration_seconds_count",
            &[("door", "authz_grpc")],
        );
        assert!(lat >= 6.0, "latency samples: {lat}");
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn grpc_trusts_attributes_from_trusted_peers_only() {
    within(60, "grpc trust", async {
        // TP is licensed for the premium tier only; the CDN names the tier in a header.
        let tier = [("x-regiongate-tier", "premium")];
        let trusted = start("").await;
        let mut c = client(&trusted).await;
        let (_, status, h, _) =
            summary(&ask(&mut c, check("/audio/TP/x.mp4", Some(IP_DE), &tier)).await);
        assert_eq!((status, h["x-regiongate-territory"].as_str()), (200, "DE"));
        // x-forwarded-for is walked only from a trusted source; a listener's own is not.
        let xff = [("x-forwarded-for", IP_DE)];
        let (_, status, _, body) =
            summary(&ask(&mut c, check("/audio/T1/x.mp4", Some(IP_FR), &xff)).await);
        assert_eq!(status, 403, "{body}");
        // Without a source address, the chain starts at the trusted peer (as in HTTP mode).
        let (_, status, _, _) = summary(&ask(&mut c, check("/audio/T1/x.mp4", None, &xff)).await);
        assert_eq!(status, 200);
        trusted.stop().await;

        // An untrusted peer: its source address, forwarding and tier headers are ignored.
        let srv = TestServer::start(
            "routes = [\"/audio/{track}/{*rest}\"]\ngrpc_listen = \"127.0.0.1:0\"\n\
             [client]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            world(),
        )
        .await;
        let mut c = client(&srv).await;
        let (_, status, h, body) =
            summary(&ask(&mut c, check("/audio/T1/x.mp4", Some(IP_DE), &xff)).await);
        assert_ne!(status, 200, "{h:?} {body}");
        assert_ne!(
            h.get("x-regiongate-territory").map(String::as_str),
            Some("DE")
        );
        // The hint is the client's own evidence, read from anyone; the tier header is not.
        let hint = geo(2.0, 2.0);
        let with = [
            ("geo-hint", hint.as_str()),
            ("x-regiongate-tier", "premium"),
        ];
        let (_, status, h, _) =
            summary(&ask(&mut c, check("/audio/T1/x.mp4", Some(IP_FR), &with)).await);
        assert_eq!((status, h["x-regiongate-territory"].as_str()), (200, "DE"));
        let (_, status, h, _) =
            summary(&ask(&mut c, check("/audio/TP/x.mp4", Some(IP_FR), &with)).await);
        assert_eq!(
            (status, h["x-regiongate-reason"].as_str()),
            (403, "tier_not_licensed")
        );
        srv.stop().await;
    })
    .await;
}

/// A gRPC request of `message` bytes (already encoded) sent over raw HTTP/2: the status and
/// message of the answer (trailers-only or trailers).
async fn raw_call(addr: SocketAddr, message: &[u8], timeout: Option<&str>) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut h2, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{addr}/envoy.service.auth.v3.Authorization/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        req = req.header("grpc-timeout", t);
    }
    let (resp, mut body) = h2
        .send_request(req.body(()).expect("request"), false)
        .expect("send");
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).expect("length"));
    frame.extend_from_slice(message);
    body.send_data(frame.freeze(), true).expect("data");
    let resp = within(10, "raw gRPC answer", resp).await.expect("response");
    let (parts, mut body) = resp.into_parts();
    let pick = |h: &http::HeaderMap| {
        h.get("grpc-status").map(|s| {
            (
                s.to_str().expect("status").to_owned(),
                h.get("grpc-message")
                    .map(|m| m.to_str().expect("message").to_owned())
                    .unwrap_or_default(),
            )
        })
    };
    if let Some(trailers_only) = pick(&parts.headers) {
        return trailers_only;
    }
    while let Some(data) = body.data().await {
        let _ = data.expect("data");
    }
    let trailers = body.trailers().await.expect("trailers").expect("some");
    pick(&trailers).expect("grpc-status trailer")
}

#[tokio::test]
async fn grpc_refuses_bad_input_cleanly() {
    within(60, "grpc bad input", async {
        let srv = start("grpc_max_message_bytes = 4096").await;
        let mut c = client(&srv).await;
        let code = |r: Result<tonic::Response<CheckResponse>, tonic::Status>| match r {
            Ok(r) => panic!("answered {:?}", r.into_inner()),
            Err(s) => (s.code(), s.message().to_owned()),
        };

        // Missing attributes, an empty path.
        let (k, m) = code(c.check(CheckRequest::default()).await);
        assert_eq!(k, tonic::Code::InvalidArgument, "{m}");
        assert!(m.contains("attributes.request.http"), "{m}");
        let (k, _) = code(c.check(check("", Some(IP_DE), &[])).await);
        assert_eq!(k, tonic::Code::InvalidArgument);

        // Larger than the limit: RESOURCE_EXHAUSTED, and no value from the request in the
        // message.
        let big = "x".repeat(8192);
        let (k, m) = code(
            c.check(check(
                "/audio/T1/x.mp4",
                Some(IP_DE),
                &[("cookie", big.as_str())],
            ))
            .await,
        );
        assert_eq!(k, tonic::Code::ResourceExhausted, "{m}");
        assert!(!m.contains("xxxx") && !m.contains(IP_DE), "{m}");

        // The deadline passed before the decision: DEADLINE_EXCEEDED from the server.
        let (k, m) = raw_call(
            srv.grpc.expect("grpc"),
            &check("/audio/T1/x.mp4", Some(IP_DE), &[]).encode_to_vec(),
            Some("1n"),
        )
        .await;
        assert_eq!(k, (tonic::Code::DeadlineExceeded as i32).to_string(), "{m}");
        assert!(m.contains("deadline"), "{m}");
        // A generous one is decided.
        let mut req = tonic::Request::new(check("/audio/T1/x.mp4", Some(IP_DE), &[]));
        req.set_timeout(Duration::from_secs(5));
        assert_eq!(
            summary(&c.check(req).await.expect("ok").into_inner()).1,
            200
        );

        // Bytes that are not a CheckRequest: INVALID_ARGUMENT, prost's text not echoed.
        let grpc = srv.grpc.expect("grpc");
        let (k, m) = raw_call(grpc, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2], None).await;
        assert_eq!(k, (tonic::Code::InvalidArgument as i32).to_string(), "{m}");
        assert_eq!(m, "the CheckRequest does not decode");

        // Unknown fields are skipped (proto3): the request is decided.
        let mut bytes = check("/audio/T1/x.mp4", Some(IP_DE), &[]).encode_to_vec();
        bytes.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 111, varint 1
        let (k, m) = raw_call(grpc, &bytes, None).await;
        assert_eq!(k, "0", "{m}");

        // Headers larger than the HTTP/2 header list limit: refused, and the server serves on.
        let huge = "v".repeat(64 * 1024);
        let mut req = tonic::Request::new(check("/audio/T1/x.mp4", Some(IP_DE), &[]));
        req.metadata_mut()
            .insert("x-huge", huge.parse().expect("metadata value"));
        assert!(
            c.check(req).await.is_err(),
            "a 64 KiB header list is refused"
        );
        let mut c = client(&srv).await;
        let (_, status, _, _) =
            summary(&ask(&mut c, check("/audio/T1/x.mp4", Some(IP_DE), &[])).await);
        assert_eq!(status, 200);

        // Another method of the service: UNIMPLEMENTED.
        let (k, _) = {
            let tcp = tokio::net::TcpStream::connect(grpc).await.expect("connect");
            let (mut h2, conn) = h2::client::handshake(tcp).await.expect("h2");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = http::Request::builder()
                .method("POST")
                .uri(format!(
                    "http://{grpc}/envoy.service.auth.v2.Authorization/Check"
                ))
                .header("content-type", "application/grpc")
                .body(())
                .expect("request");
            let (resp, _) = h2.send_request(req, true).expect("send");
            let resp = resp.await.expect("response");
            (
                resp.headers()["grpc-status"]
                    .to_str()
                    .expect("status")
                    .to_owned(),
                (),
            )
        };
        assert_eq!(k, (tonic::Code::Unimplemented as i32).to_string());
        srv.stop().await;
    })
    .await;
}

/// One request over an HTTP/2 connection: status, headers, body.
async fn h2_request(
    h2: &mut h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Option<&str>,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), h2::Error> {
    let (resp, mut send) = h2.send_request(req, body.is_none())?;
    if let Some(b) = body {
        send.send_data(Bytes::copy_from_slice(b.as_bytes()), true)?;
    }
    let resp = within(10, "h2 response", resp).await?;
    let (parts, mut body) = resp.into_parts();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok((parts.status, parts.headers, bytes.freeze()))
}

#[tokio::test]
async fn public_listener_speaks_h2c() {
    within(60, "h2c", async {
        let srv = start("max_concurrent_streams = 7").await;
        let a = srv.public;
        let tcp = tokio::net::TcpStream::connect(a).await.expect("connect");
        let (mut h2, mut conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        // The connection runs in a task of its own, telling the stream limit the server
        // announced each time it is polled.
        let (limit_tx, limit) = tokio::sync::watch::channel(0usize);
        let conn = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| {
                let r = std::pin::Pin::new(&mut conn).poll(cx);
                limit_tx.send_replace(conn.max_concurrent_send_streams());
                r
            })
            .await;
        });
        let uri = |p: &str| format!("http://{a}{p}");
        let get = |p: &str, ip: &str| {
            http::Request::builder()
                .uri(uri(p))
                .header("x-forwarded-for", ip)
                .body(())
                .expect("request")
        };

        // Preflight GET, twice on one connection (two streams).
        for (ip, decision) in [(IP_DE, "allow"), (IP_FR, "deny")] {
            let (status, h, body) = h2_request(&mut h2, get("/v1/tracks/T1/playability", ip), None)
                .await
                .expect("h2 answer");
            assert_eq!(status, 200);
            assert_eq!(h["content-type"], "application/json");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(v["decision"], json!(decision), "{v}");
        }
        // The settings the server announced: its stream limit.
        assert_eq!(*limit.borrow(), 7);

        // Preflight POST, and the body limit of HTTP/1 (limits.max_body_bytes = 1024).
        let post = || {
            http::Request::builder()
                .method("POST")
                .uri(uri("/v1/playability"))
                .header("content-type", "application/json")
                .header("x-forwarded-for", IP_DE)
                .body(())
                .expect("request")
        };
        let (status, _, body) = h2_request(&mut h2, post(), Some(r#"{"tracks":["T1","TFR"]}"#))
            .await
            .expect("h2 answer");
        assert_eq!(status, 200, "{body:?}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["decisions"][0]["decision"], json!("allow"), "{v}");
        let large = format!(r#"{{"tracks":["{}"]}}"#, "T".repeat(2000));
        let (status, _, _) = h2_request(&mut h2, post(), Some(&large))
            .await
            .expect("h2 answer");
        assert_eq!(status, 413);

        // The HTTP authz mode, over h2 too.
        let (status, h, _) = h2_request(&mut h2, get("/v1/authz/audio/T1/s.mp4", IP_DE), None)
            .await
            .expect("h2 answer");
        assert_eq!(
            (status.as_u16(), h["x-regiongate-decision"].to_str().ok()),
            (200, Some("allow"))
        );

        // A header list over limits.max_header_bytes is refused; HTTP/1 is served as before.
        let mut big = get("/v1/tracks/T1/playability", IP_DE);
        big.headers_mut().insert(
            "x-big",
            "b".repeat(70 * 1024).parse().expect("header value"),
        );
        match h2_request(&mut h2, big, None).await {
            Ok((status, _, _)) => assert_eq!(status, 431),
            Err(e) => assert!(e.is_reset() || e.is_go_away() || e.is_remote(), "{e}"),
        }
        drop(h2);
        conn.abort();
        let r = crate::util::get(
            a,
            "/v1/tracks/T1/playability",
            &[("x-forwarded-for", IP_DE)],
        )
        .await;
        assert_eq!(r.json()["decision"], json!("allow"));
        srv.stop().await;
    })
    .await;
}

/// The gRPC listener holds at most `limits.max_connections` connections: with that many open,
/// a new client is not served until one of them closes.
#[tokio::test]
async fn grpc_listener_bounds_its_connections() {
    let srv = start("max_connections = 2").await;
    let addr = srv.grpc.expect("grpc listener");
    let path = "/audio/T1/seg-1.mp4";
    let mut first = client(&srv).await;
    let (code, status, ..) = summary(&ask(&mut first, check(path, Some(IP_DE), &[])).await);
    assert_eq!((code, status), (0, 200), "served while below the bound");
    let idle = tokio::net::TcpStream::connect(addr)
        .await
        .expect("second connection");
    // Two connections are open: a third client's Check gets no answer.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy();
    let mut third = AuthorizationClient::new(channel);
    let waiting = tokio::spawn(async move {
        third
            .check(check(path, Some(IP_DE), &[]))
            .await
            .map(|r| summary(&r.into_inner()))
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served beyond max_connections = 2"
    );
    // One closes: the waiting client is accepted and answered.
    drop(idle);
    let answered = within(10, "the waiting Check", waiting)
        .await
        .expect("task")
        .expect("answered once a slot is free");
    assert_eq!((answered.0, answered.1), (0, 200));
    // The first connection still works.
    let (code, status, ..) = summary(&ask(&mut first, check(path, Some(IP_FR), &[])).await);
    assert_eq!(
        (code, status),
        (7, 403),
        "FR is refused (PERMISSION_DENIED)"
    );
    drop(first);
    srv.stop().await;
}

/// The real binary with `--grpc-listen`, where the gRPC connections run on the public shards'
/// runtimes (TestServer runs them on the test's runtime): checks on several connections at
/// once are all answered with the decision, the attribute context's address from the
/// untrusted loopback peer is ignored, and SIGTERM drains and exits 0.
#[test]
fn the_binary_serves_grpc_on_its_shards_and_drains_on_sigterm() {
    let (mut child, started) = spawn_until_serving(
        std::process::Command::new(env!("CARGO_BIN_EXE_regiongate"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--grpc-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("TOKIO_WORKER_THREADS", "2")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null()),
        Duration::from_secs(60),
    );
    let grpc: SocketAddr = started
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("grpc= address in {started}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Four connections, ten checks each, all in flight together. The peer (loopback) is
        // not trusted by default, so it is the client, not the source address (a German one,
        // where the track is licensed): no country, the fail-closed refusal.
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connects");
            for _ in 0..10 {
                let mut c = AuthorizationClient::new(channel.clone());
                calls.spawn(async move {
                    c.check(check(
                        "/audio/QZNW52400010/seg-1.mp4",
                        Some("84.158.215.214"),
                        &[],
                    ))
                    .await
                    .map(|r| summary(&r.into_inner()))
                });
            }
        }
        let mut answered = 0;
        while let Some(r) = within(30, "checks", calls.join_next()).await {
            let (code, status, h, body) = r.expect("task").expect("Check answers");
            assert_eq!((code, status), (7, 403), "{h:?} {body}");
            assert_eq!(h["x-regiongate-decision"], "deny");
            assert!(body.contains("\"decision\":\"deny\""), "{body}");
            answered += 1;
        }
        assert_eq!(answered, 40);
    });
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
}

//! docs/openapi.yaml against the running server.
//!
//! Forward: every documented operation is called (`CASES`), each answer's status must be
//! documented for that operation (or, for a method the path does not list, in the path's
//! `x-other-methods`), its required headers must be there and match their schemas, its
//! content type must be a documented one and its JSON body must match the documented schema
//! (JSON Schema 2020-12, `$ref`s resolved against the document's own `components`). Every
//! documented status must be provoked by some case, or be listed in `NOT_PROVOKED` with the
//! reason.
//!
//! Backward: the routes found in src/server/mod.rs, proxy.rs and admin.rs cannot be listed
//! from the code, so paths the server answers with something other than 404 are probed and
//! must be documented, and undocumented paths must get the documented 404.
//!
//! The document is read at run time: editing it needs no rebuild to re-run these tests.

use crate::grants::{HMAC_K1, ed25519_pem};
use crate::server::{IP_BORDER, IP_DE, IP_FR, LICENSES, geo, ip_db, load_dir, write_data_dir};
use crate::util::{Reply, TestServer, call, within};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");

/// The admin token of the main server.
const TOKEN: &str = "openapi-test-token-0123";

// ---- The document ---------------------------------------------------------------------------

/// The OpenAPI document, as JSON values.
struct Doc {
    root: Value,
}

/// The operation methods of a path item (OpenAPI 3.1).
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Doc {
    fn load() -> Doc {
        let text = std::fs::read_to_string(DOC_PATH).expect("docs/openapi.yaml is readable");
        let root: Value = serde_yaml::from_str(&text).expect("docs/openapi.yaml parses as YAML");
        assert_eq!(root["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        Doc { root }
    }

    fn paths(&self) -> &Map<String, Value> {
        self.root["paths"].as_object().expect("paths is a map")
    }

    /// Follows a local `$ref` (`#/components/...`), repeatedly.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references: {r}"));
            v = self
                .root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {r}"));
        }
        v
    }

    /// The path parameters of a path item and its operations that span several segments
    /// (`x-multi-segment: true`).
    fn multi_segment(&self, item: &Value) -> BTreeSet<String> {
        let mut lists = vec![&item["parameters"]];
        lists.extend(METHODS.iter().map(|m| &item[*m]["parameters"]));
        lists
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| self.resolve(p))
            .filter(|p| p["in"] == "path" && p["x-multi-segment"] == true)
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Whether `path` (no query) matches `template`.
    fn matches(&self, template: &str, item: &Value, path: &str) -> bool {
        let multi = self.multi_segment(item);
        let t: Vec<&str> = template.split('/').collect();
        let p: Vec<&str> = path.split('/').collect();
        for (i, seg) in t.iter().enumerate() {
            let param = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .map(str::to_owned);
            match param {
                Some(name) if multi.contains(&name) && i + 1 == t.len() => {
                    return p.len() > i && p[i..].iter().all(|s| !s.is_empty());
                }
                Some(_) => {
                    if p.get(i).is_none_or(|s| s.is_empty()) {
                        return false;
                    }
                }
                None => {
                    if p.get(i) != Some(seg) {
                        return false;
                    }
                }
            }
        }
        p.len() == t.len()
    }

    /// The documented template `path` falls under (the one with the fewest parameters, as
    /// OpenAPI picks concrete paths first) and its path item.
    fn find(&self, path: &str) -> Option<(&str, &Value)> {
        self.paths()
            .iter()
            .filter(|(t, item)| self.matches(t, item, path))
            .min_by_key(|(t, _)| t.matches('{').count())
            .map(|(t, item)| (t.as_str(), item))
    }

    /// The documented answers of `method` on a path item: the operation's responses, or the
    /// path's `x-other-methods` (with `"other"` as the method's key) when it has no such
    /// operation.
    fn answers<'a>(&'a self, item: &'a Value, method: &str) -> Option<(String, &'a Value)> {
        let m = method.to_ascii_lowercase();
        match item.get(&m) {
            Some(op) => Some((m, &op["responses"])),
            None => item.get("x-other-methods").map(|r| ("other".to_owned(), r)),
        }
    }

    /// Whether the path item is on the admin listener: its `servers` are the admin ones.
    fn on_admin(&self, item: &Value) -> bool {
        item["servers"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("admin listener"))
            })
        })
    }

    /// Every documented (template, method, status): operations, and `other` for
    /// `x-other-methods`.
    fn documented(&self) -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        for (t, item) in self.paths() {
            for m in METHODS
                .iter()
                .map(|m| m.to_string())
                .chain(["other".into()])
            {
                let key = if m == "other" { "x-other-methods" } else { &m };
                let responses = match item.get(key) {
                    Some(v) if m == "other" => v,
                    Some(op) => &op["responses"],
                    None => continue,
                };
                for status in responses.as_object().expect("responses map").keys() {
                    out.insert((t.clone(), m.clone(), status.clone()));
                }
            }
        }
        out
    }

    /// The errors of `instance` against `schema`, a schema of the document (its references
    /// resolved against the document's components).
    fn schema_errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
        });
        root["components"] = self.root["components"].clone();
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema {schema} does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }
}

// ---- Checking one answer --------------------------------------------------------------------

/// Which listener a request goes to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Listener {
    Public,
    Admin,
}

/// What was seen: (template, method or `other`, status).
type Seen = BTreeSet<(String, String, String)>;

/// Checks one answer of the server against the document and records what it covered.
fn check(doc: &Doc, seen: &mut Seen, listener: Listener, method: &str, target: &str, r: &Reply) {
    let what = format!("{method} {target} ({listener:?})");
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let (template, item) = doc
        .find(path)
        .unwrap_or_else(|| panic!("{what}: no documented path matches"));
    let on = if doc.on_admin(item) {
        Listener::Admin
    } else {
        Listener::Public
    };
    assert_eq!(on, listener, "{what}: documented on another listener");
    let (m, responses) = doc
        .answers(item, method)
        .unwrap_or_else(|| panic!("{what}: {template} documents no {method}"));
    let status = r.status.as_str().to_owned();
    let response = doc.resolve(responses.get(&status).unwrap_or_else(|| {
        panic!(
            "{what}: status {status} is not documented for {m} {template} (documented: {:?}); body: {}",
            responses
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            r.text()
        )
    }));
    // Headers: the required ones are there, and every documented one present matches.
    if let Some(headers) = response.get("headers").and_then(Value::as_object) {
        for (name, h) in headers {
            let h = doc.resolve(h);
            match r.headers.get(name.to_ascii_lowercase().as_str()) {
                None => assert!(
                    h["required"] != true,
                    "{what}: required header {name} missing: {:?}",
                    r.headers
                ),
                Some(v) => {
                    let v = Value::from(v.to_str().expect("ASCII header"));
                    if let Some(schema) = h.get("schema") {
                        let errors = doc.schema_errors(schema, &v);
                        assert!(errors.is_empty(), "{what}: header {name}: {v}: {errors:?}");
                    }
                }
            }
        }
    }
    // Body: of a documented media type, matching its schema; none where none is documented.
    let head = method.eq_ignore_ascii_case("HEAD");
    match response.get("content").and_then(Value::as_object) {
        _ if head => assert!(r.body.is_empty(), "{what}: a body in a HEAD answer"),
        None => assert!(
            r.body.is_empty(),
            "{what}: a body where none is documented: {}",
            r.text()
        ),
        Some(content) => {
            let ct = r.header("content-type").unwrap_or("");
            let (media, spec) = content
                .iter()
                .find(|(media, _)| media.as_str() == ct || media.as_str() == "*/*")
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: content type {ct:?} is not documented ({:?})",
                        content.keys().collect::<Vec<_>>()
                    )
                });
            if media == "application/json" || media.ends_with("+json") {
                let body: Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {}", r.text()));
                let schema = spec
                    .get("schema")
                    .unwrap_or_else(|| panic!("{what}: {media} without a schema"));
                let errors = doc.schema_errors(schema, &body);
                assert!(
                    errors.is_empty(),
                    "{what}: the body does not match the schema of {status}: {errors:?}\n{body}"
                );
            } else if let Some(schema) = spec.get("schema") {
                let text = Value::from(r.text());
                if media != "*/*" {
                    let errors = doc.schema_errors(schema, &text);
                    assert!(errors.is_empty(), "{what}: {errors:?}");
                }
            }
        }
    }
    seen.insert((template.to_owned(), m, status));
}

// ---- Talking to the servers -----------------------------------------------------------------

/// A request with a raw head and body on a new connection; the answer is read by its
/// `Content-Length` (the connection may stay open) or to the close.
async fn raw_reply(addr: SocketAddr, bytes: &[u8]) -> Reply {
    within(15, "raw request", async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // The server may answer (431) and close before it has read everything.
        let _ = s.write_all(bytes).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = parse_reply(&buf) {
                return r;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        parse_reply(&buf).unwrap_or_else(|| {
            panic!(
                "no complete answer before the close: {}",
                String::from_utf8_lossy(&buf)
            )
        })
    })
    .await
}

/// A whole HTTP/1.1 answer in `buf` (a head, and a body of its `Content-Length`).
fn parse_reply(buf: &[u8]) -> Option<Reply> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(buf).ok()? else {
        return None;
    };
    let mut map = HeaderMap::new();
    for h in resp.headers.iter() {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).expect("header name"),
            HeaderValue::from_bytes(h.value).expect("header value"),
        );
    }
    let len: usize = map
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let body = buf.get(n..n + len)?;
    Some(Reply {
        status: StatusCode::from_u16(resp.code?).expect("status"),
        headers: map,
        body: Bytes::copy_from_slice(body),
    })
}

/// A tiny origin for the proxy mode: answers every request with a short body, after a
/// pause longer than the proxy's response timeout for requests with an `X-Slow` header.
async fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = l.local_addr().expect("origin addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    if req.headers().contains_key("x-slow") {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                        b"media bytes",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// The servers the cases run against.
struct Servers {
    /// Grants with HMAC and Ed25519 keys, an admin token, a data directory, short request
    /// timeout.
    main: TestServer,
    /// No grants, no admin token, an admin listener configured off loopback.
    plain: TestServer,
    /// `mode = "proxy"` in front of [`origin`].
    proxy: TestServer,
    /// `mode = "proxy"` in front of a closed port.
    proxy_down: TestServer,
    data: tempfile::TempDir,
    _keys: tempfile::TempDir,
}

/// The tables every config here shares: loopback is a trusted proxy (so `X-Forwarded-For`
/// names the client), small limits.
fn config(top: &str, limits: &str, tables: &str) -> String {
    format!(
        "{top}\n[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[preflight]\nmax_age_s = 30\n\
         max_batch = 3\n\n[limits]\nmax_body_bytes = 1024\n{limits}\n\n{tables}\n"
    )
}

impl Servers {
    async fn start() -> Servers {
        let data = tempfile::tempdir().expect("data dir");
        write_data_dir(data.path(), LICENSES);
        std::fs::create_dir_all(data.path().join("ip")).expect("mkdir ip");
        std::fs::write(data.path().join("ip/geoip.mmdb"), ip_db()).expect("write mmdb");
        let keys = tempfile::tempdir().expect("key dir");
        std::fs::write(keys.path().join("k1.hmac"), HMAC_K1).expect("write key");
        std::fs::write(keys.path().join("e1.ed25519.pem"), ed25519_pem([7; 32]))
            .expect("write key");
        let dir = |p: &Path| format!("{:?}", p.display().to_string());
        let main_cfg = config(
            &format!("regions = {}", dir(data.path())),
            "request_timeout_ms = 500",
            &format!(
                "[admin]\ntoken_env = \"RG_OPENAPI_TOKEN\"\n\n[grants]\nkeys_dir = {}\n",
                dir(keys.path())
            ),
        );
        let env = |k: &str| (k == "RG_OPENAPI_TOKEN").then(|| TOKEN.to_owned());
        let main = TestServer::start_with_env(&main_cfg, env, load_dir(data.path()).await).await;
        let plain = TestServer::start(
            &config("admin_listen = \"0.0.0.0:9090\"", "", ""),
            crate::server::world(),
        )
        .await;
        let up = origin().await;
        let proxy = TestServer::start(
            &config(
                "mode = \"proxy\"",
                "",
                &format!("[proxy]\nupstream = \"http://{up}\"\nresponse_timeout_ms = 300\n"),
            ),
            crate::server::world(),
        )
        .await;
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr")
        };
        let proxy_down = TestServer::start(
            &config(
                "mode = \"proxy\"",
                "",
                &format!("[proxy]\nupstream = \"http://{closed}\"\n"),
            ),
            crate::server::world(),
        )
        .await;
        Servers {
            main,
            plain,
            proxy,
            proxy_down,
            data,
            _keys: keys,
        }
    }

    async fn stop(self) {
        self.main.stop().await;
        self.plain.stop().await;
        self.proxy.stop().await;
        self.proxy_down.stop().await;
    }
}

/// Which server a case is for.
#[derive(Clone, Copy, Debug)]
enum On {
    Main,
    Plain,
    Proxy,
    ProxyDown,
}

/// One request: the server and listener, method, target, headers, body, and the status it
/// should provoke.
struct Case {
    on: On,
    listener: Listener,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    want: u16,
}

fn public(on: On, method: &'static str, target: &str, want: u16) -> Case {
    Case {
        on,
        listener: Listener::Public,
        method,
        target: target.to_owned(),
        headers: Vec::new(),
        body: String::new(),
        want,
    }
}

fn admin(on: On, method: &'static str, target: &str, want: u16) -> Case {
    Case {
        listener: Listener::Admin,
        ..public(on, method, target, want)
    }
}

impl Case {
    fn h(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn xff(self, ip: &str) -> Case {
        self.h("x-forwarded-for", ip)
    }
    fn body(mut self, b: &str) -> Case {
        self.body = b.to_owned();
        self
    }
    fn bearer(self) -> Case {
        self.h("authorization", &format!("Bearer {TOKEN}"))
    }
}

async fn run(s: &Servers, c: &Case) -> Reply {
    let srv = match c.on {
        On::Main => &s.main,
        On::Plain => &s.plain,
        On::Proxy => &s.proxy,
        On::ProxyDown => &s.proxy_down,
    };
    let addr = match c.listener {
        Listener::Public => srv.public,
        Listener::Admin => srv.admin,
    };
    let h: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    call(addr, c.method, &c.target, &h, &c.body).await
}

/// The cases: each documented status of each operation that can be provoked here.
fn cases() -> Vec<Case> {
    use On::*;
    let play = "/v1/tracks/T1/playability";
    let nginx =
        |uri: &str, want: u16| public(Main, "GET", "/v1/authz", want).h("x-original-uri", uri);
    let mut v = Vec::new();
    for m in ["GET", "HEAD"] {
        v.extend([
            public(Main, m, play, 200).xff(IP_DE),
            public(
                Main,
                m,
                "/v1/tracks/T1/playability?use=on_demand_stream&tier=free",
                200,
            )
            .h("geo-hint", &geo(2.5, 2.5)),
            public(Main, m, "/v1/tracks/T1/playability", 200).xff(IP_BORDER),
            public(Main, m, "/v1/tracks/NOPE/playability", 200),
            // The plain server's world has an MCC table: cell evidence.
            public(Plain, m, play, 200).h("cell-hint", "mcc=262; mnc=01"),
            public(Plain, m, "/v1/territory", 200).h("cell-hint", "mcc=208; mnc=10"),
            public(Main, m, "/v1/tracks/T1/playability?use=karaoke", 400),
            public(Main, m, play, 400).h("geo-hint", "gps=91,0; acc=10; ts=1"),
            public(Main, m, "/v1/territory", 200).xff(IP_FR),
            public(Main, m, "/v1/territory", 200),
            public(Main, m, "/v1/territory", 400).h("cell-hint", "mcc=1"),
            public(Main, m, "/.well-known/jwks.json", 200),
            public(Plain, m, "/.well-known/jwks.json", 404),
            Case {
                method: m,
                ..nginx("/audio/T1/seg-1.mp4", 200).xff(IP_DE)
            },
            Case {
                method: m,
                ..nginx("/audio/T1/seg-1.mp4", 403).xff(IP_FR)
            },
            Case {
                method: m,
                ..nginx("/tracks/T1", 428).xff(IP_BORDER)
            },
            public(Main, m, "/v1/authz", 400),
            public(Main, m, "/v1/authz/audio/T1/seg-1.mp4", 200).xff(IP_DE),
            public(Main, m, "/v1/authz/tracks/T1", 403).xff(IP_FR),
            public(Main, m, "/v1/authz/tracks/T1", 428).xff(IP_BORDER),
            public(Proxy, m, "/tracks/T1", 200).xff(IP_DE),
            public(Proxy, m, "/audio/T1/seg-1.mp4", 200).xff(IP_DE),
            public(Proxy, m, "/tracks/T1", 451).xff(IP_FR),
            public(Proxy, m, "/audio/T1/seg-1.mp4", 451).xff(IP_BORDER),
            public(Proxy, m, "/tracks/T1", 400).h("host", "second.example"),
            public(Proxy, m, "/audio/T1/seg-1.mp4", 400).h("host", "second.example"),
            public(ProxyDown, m, "/tracks/T1", 502).xff(IP_DE),
            public(ProxyDown, m, "/audio/T1/seg-1.mp4", 502).xff(IP_DE),
            public(Proxy, m, "/tracks/T1", 504)
                .xff(IP_DE)
                .h("x-slow", "1"),
            public(Proxy, m, "/audio/T1/seg-1.mp4", 504)
                .xff(IP_DE)
                .h("x-slow", "1"),
        ]);
    }
    // The nginx style with the original request in headers, as more cases need it.
    v.extend([
        nginx("/audio/T1/seg-1.mp4", 200)
            .xff(IP_DE)
            .h("x-original-method", "OPTIONS"),
        nginx("/audio/T1/seg-1.mp4", 403)
            .xff(IP_DE)
            .h("x-original-method", "POST"),
        nginx("/elsewhere/x", 403),
        public(Main, "OPTIONS", "/v1/authz/audio/T1/seg-1.mp4", 200),
        // Batches.
        public(Main, "POST", "/v1/playability", 200)
            .xff(IP_DE)
            .body(r#"{"tracks": ["T1", {"track": "TP", "tier": "premium"}, "TFR"]}"#),
        public(Main, "POST", "/v1/playability", 200).body(&format!(
            r#"{{"tracks": ["T1"], "use": "on_demand_stream", "hints": {{"gps": {{"lat": 2.5, "lon": 2.5, "acc": 20, "ts": {}}}}}}}"#,
            crate::util::now_unix()
        )),
        public(Main, "POST", "/v1/playability", 400).body(r#"{"tracks": []}"#),
        public(Main, "POST", "/v1/playability", 400).body("not json"),
        public(Main, "POST", "/v1/playability", 413)
            .body(&format!(r#"{{"tracks": ["{}"]}}"#, "x".repeat(2000))),
        // Methods an operation does not list.
        public(Main, "PUT", play, 405),
        public(Main, "GET", "/v1/playability", 405),
        public(Main, "DELETE", "/v1/territory", 405),
        public(Main, "POST", "/v1/authz", 405).h("x-original-uri", "/tracks/T1"),
        public(Main, "PUT", "/v1/authz/tracks/T1", 403).xff(IP_DE),
        public(Main, "POST", "/.well-known/jwks.json", 405),
        // The admin listener.
        admin(Main, "GET", "/healthz", 200),
        admin(Main, "GET", "/readyz", 200),
        admin(Main, "GET", "/metrics", 200),
        admin(Main, "GET", "/admin/snapshot", 200),
        admin(Plain, "GET", "/admin/snapshot", 200),
        admin(Main, "POST", "/admin/reload", 200).bearer(),
        admin(Main, "POST", "/admin/reload", 401),
        admin(Plain, "POST", "/admin/reload", 403),
        admin(Main, "GET", "/admin/tracks/T1?use=download&tier=free", 200).bearer(),
        admin(Main, "GET", "/admin/tracks/T1", 401),
        admin(Main, "GET", "/admin/tracks/a%20b", 400).bearer(),
        admin(Main, "GET", "/admin/tracks/T1?tier=gold", 400).bearer(),
        admin(Main, "HEAD", "/healthz", 405),
        admin(Main, "POST", "/readyz", 405),
        admin(Main, "PUT", "/metrics", 405),
        admin(Main, "DELETE", "/admin/snapshot", 405),
        admin(Main, "GET", "/admin/reload", 405),
        admin(Main, "POST", "/admin/tracks/T1", 405).bearer(),
        // Last: the admin listener again after a grant-carrying allow.
        admin(Main, "GET", "/admin/snapshot", 200),
    ]);
    v
}

/// Documented statuses no case provokes, with the reason.
const NOT_PROVOKED: &[(&str, &str, &str, &str)] = &[(
    "/admin/tracks/{id}",
    "get",
    "500",
    "needs map geometry that becomes unreadable while the server runs",
)];

/// A request head over the default `limits.max_header_bytes` (32 KiB).
fn oversized_head(method: &str, target: &str) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nhost: regiongate.test\r\nx-original-uri: /tracks/T1\r\n\
         x-padding: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    )
    .into_bytes()
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    within(120, "openapi forward", async {
        let doc = Doc::load();
        let s = Servers::start().await;
        let mut seen = Seen::new();
        for c in cases() {
            let r = run(&s, &c).await;
            if c.want != 0 {
                assert_eq!(
                    r.status.as_u16(),
                    c.want,
                    "{} {} {:?}: {}",
                    c.method,
                    c.target,
                    c.headers,
                    r.text()
                );
            }
            check(&doc, &mut seen, c.listener, c.method, &c.target, &r);
        }

        // 431: every public operation that documents it, on a raw connection.
        for (template, method, status) in doc.documented() {
            if status != "431" {
                continue;
            }
            let (on, target) = match template.as_str() {
                "/tracks/{track}" => (&s.proxy, "/tracks/T1".to_owned()),
                "/audio/{track}/{rest}" => (&s.proxy, "/audio/T1/seg-1.mp4".to_owned()),
                t => (
                    &s.main,
                    t.replace("{track}", "T1")
                        .replace("{originalPath}", "tracks/T1"),
                ),
            };
            let m = method.to_ascii_uppercase();
            let r = raw_reply(on.public, &oversized_head(&m, &target)).await;
            assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{m} {target}");
            check(&doc, &mut seen, Listener::Public, &m, &target, &r);
        }

        // 503: a batch whose body does not arrive within the request timeout (500 ms).
        let r = raw_reply(
            s.main.public,
            b"POST /v1/playability HTTP/1.1\r\nhost: regiongate.test\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"tracks\":",
        )
        .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        check(&doc, &mut seen, Listener::Public, "POST", "/v1/playability", &r);

        // 422: broken data, then a reload.
        std::fs::write(
            s.data.path().join("licenses/test.toml"),
            "[[dealset]]\nselector = 7\n",
        )
        .expect("write");
        let c = admin(On::Main, "POST", "/admin/reload", 422).bearer();
        let r = run(&s, &c).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        check(&doc, &mut seen, Listener::Admin, "POST", "/admin/reload", &r);
        let c = admin(On::Main, "GET", "/admin/snapshot", 200);
        let r = run(&s, &c).await;
        assert_eq!(r.json()["last_reload"]["result"], "failed");
        check(&doc, &mut seen, Listener::Admin, "GET", "/admin/snapshot", &r);

        // Every documented status was provoked, or is listed as not provoked (and documented).
        let documented = doc.documented();
        let excused: BTreeSet<(String, String, String)> = NOT_PROVOKED
            .iter()
            .map(|(t, m, s, _)| (t.to_string(), m.to_string(), s.to_string()))
            .collect();
        let stale: Vec<_> = excused.difference(&documented).collect();
        assert!(stale.is_empty(), "NOT_PROVOKED lists undocumented statuses: {stale:?}");
        let missing: Vec<_> = documented
            .iter()
            .filter(|k| !seen.contains(*k) && !excused.contains(*k))
            .collect();
        assert!(missing.is_empty(), "documented but never provoked: {missing:?}");
        // So every operation answered a success, and every path an error (of one of its
        // operations, or for a method it does not list).
        for (t, item) in doc.paths() {
            for m in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                assert!(
                    seen.iter().any(|(st, sm, ss)| st == t && sm == m && ss.starts_with('2')),
                    "{m} {t}: no success seen"
                );
            }
            assert!(
                seen.iter().any(|(st, _, ss)| st == t && !ss.starts_with('2')),
                "{t}: no error seen"
            );
        }
        s.stop().await;
    })
    .await;
}

/// Paths found in src/server/{mod,proxy,admin}.rs, with a method the server serves there.
fn probes() -> Vec<(On, Listener, &'static str, &'static str)> {
    use Listener::*;
    use On::*;
    vec![
        (Main, Public, "GET", "/v1/tracks/T1/playability"),
        (Main, Public, "GET", "/v1/tracks/some%20track/playability"),
        (Main, Public, "POST", "/v1/playability"),
        (Main, Public, "GET", "/v1/territory"),
        (Main, Public, "GET", "/v1/authz"),
        (Main, Public, "GET", "/v1/authz/tracks/T1"),
        (Main, Public, "GET", "/v1/authz/audio/T1/a/b/c.mp4"),
        (Main, Public, "GET", "/v1/authz/not/a/route"),
        (Main, Public, "OPTIONS", "/v1/authz/tracks/T1"),
        (Main, Public, "GET", "/.well-known/jwks.json"),
        (Proxy, Public, "GET", "/tracks/T1"),
        (Proxy, Public, "GET", "/audio/T1/x/y.mp4"),
        (Proxy, Public, "GET", "/.well-known/jwks.json"),
        (Proxy, Public, "GET", "/v1/territory"),
        (Main, Admin, "GET", "/healthz"),
        (Main, Admin, "GET", "/readyz"),
        (Main, Admin, "GET", "/metrics"),
        (Main, Admin, "GET", "/admin/snapshot"),
        (Main, Admin, "POST", "/admin/reload"),
        (Main, Admin, "GET", "/admin/tracks/T1"),
    ]
}

/// Paths no route of the code serves (in `mode = "authz"`), on either listener.
const UNDOCUMENTED: &[(Listener, &str, &str)] = &[
    (Listener::Public, "GET", "/"),
    (Listener::Public, "GET", "/v1"),
    (Listener::Public, "GET", "/v1/nope"),
    (Listener::Public, "GET", "/v1/tracks/T1"),
    (Listener::Public, "GET", "/v1/authzz"),
    (Listener::Public, "GET", "/healthz"),
    (Listener::Public, "POST", "/admin/reload"),
    (Listener::Public, "GET", "/.well-known/other.json"),
    (Listener::Admin, "GET", "/"),
    (Listener::Admin, "GET", "/v1/territory"),
    (Listener::Admin, "GET", "/admin"),
    (Listener::Admin, "GET", "/admin/nope"),
];

#[tokio::test]
async fn what_the_server_answers_is_documented_and_the_rest_is_404() {
    within(60, "openapi backward", async {
        let doc = Doc::load();
        let s = Servers::start().await;
        let not_found = doc.resolve(&doc.root["components"]["responses"]["NoSuchEndpoint"]);
        let no_such_endpoint = &not_found["content"]["application/json"]["schema"];
        for (on, listener, method, path) in probes() {
            let c = Case {
                listener,
                ..public(on, method, path, 0)
            };
            let r = run(&s, &c).await;
            // Served: not the answer to an unknown path (the JWKS of a server without JWT
            // keys is a 404 of its own).
            let generic = r.status == StatusCode::NOT_FOUND
                && doc.schema_errors(no_such_endpoint, &r.json()).is_empty();
            assert!(!generic, "{method} {path}: {} {}", r.status, r.text());
            let (template, item) = doc.find(path).unwrap_or_else(|| {
                panic!(
                    "{method} {path} is answered {} but not documented",
                    r.status
                )
            });
            assert!(
                doc.answers(item, method).is_some(),
                "{method} {path}: {template} documents neither {method} nor x-other-methods"
            );
        }
        for &(listener, method, path) in UNDOCUMENTED {
            // Not documented on this listener (the admin paths are not on the public one).
            let here = doc
                .find(path)
                .filter(|(_, item)| (listener == Listener::Admin) == doc.on_admin(item));
            assert!(here.is_none(), "{path} is documented on {listener:?}");
            let c = Case {
                listener,
                ..public(On::Main, method, path, 0)
            };
            let r = run(&s, &c).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path} ({listener:?})"
            );
            let errors = doc.schema_errors(no_such_endpoint, &r.json());
            assert!(errors.is_empty(), "{method} {path}: {errors:?}");
        }
        s.stop().await;
    })
    .await;
}

//! The auth subrequest fast path (src/server/fast.rs) against hyper: the same raw requests
//! sent to a server with the fast path (the default) and to one without it get the same
//! bytes back, apart from the Date value; and connections behave as hyper's do (keep-alive,
//! pipelining, handing over to hyper, the header-read timeout, shutdown).

use crate::server::{IP_BORDER, IP_DE, IP_FR, config, geo, world};
use crate::util::{TestServer, get, metric, within};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `bytes` on a new connection, closes the writing side and reads everything the
/// server sends until it closes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s.shutdown().await.expect("half close");
    let mut out = Vec::new();
    // A reset after the answer counts as the end too.
    let _ = s.read_to_end(&mut out).await;
    out
}

/// The response bytes with every Date value replaced (it is the only part that may differ).
fn dateless(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut rest = &*text;
    while let Some(i) = rest.find("\r\ndate: ") {
        let value = i + "\r\ndate: ".len();
        out.push_str(&rest[..value]);
        out.push_str("<date>");
        rest = &rest[value..];
        rest = &rest[rest.find("\r\n").unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// A plain nginx-style auth subrequest for `uri` from the client `ip`, with `extra` lines.
fn authz(uri: &str, ip: &str, extra: &str) -> String {
    format!(
        "GET /v1/authz HTTP/1.1\r\nHost: regiongate\r\nX-Original-URI: {uri}\r\n\
         X-Original-Method: GET\r\nX-Forwarded-For: {ip}\r\n{extra}\r\n"
    )
}

/// Raw requests of every kind the fast path answers or hands to hyper.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let seg = "/audio/T1/seg-1.mp4";
    let many_lines: String = (0..60).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let ten_k = format!("X-Padding: {}\r\n", "a".repeat(10 * 1024));
    let twenty_k = format!("X-Padding: {}\r\n", "a".repeat(20 * 1024));
    let c = |name, s: String| (name, s.into_bytes());
    vec![
        c("allow", authz(seg, IP_DE, "")),
        c("deny", authz(seg, IP_FR, "")),
        c(
            "head allow",
            authz(seg, IP_DE, "").replacen("GET", "HEAD", 1),
        ),
        c(
            "head deny",
            authz(seg, IP_FR, "").replacen("GET", "HEAD", 1),
        ),
        c("border", authz(seg, IP_BORDER, "")),
        c("no address", authz(seg, "unknown", "")),
        c(
            "gps hint",
            authz(seg, IP_FR, &format!("Geo-Hint: {}\r\n", geo(2.0, 2.0))),
        ),
        c("bad gps hint", authz(seg, IP_DE, "Geo-Hint: gps=91,0\r\n")),
        c("cell hint", authz(seg, "unknown", "Cell-Hint: mcc=262\r\n")),
        c("unknown track", authz("/audio/NOPE/seg-1.mp4", IP_DE, "")),
        c("taken down", authz("/audio/TGONE/seg-1.mp4", IP_DE, "")),
        c("premium only", authz("/audio/TP/seg-1.mp4", IP_DE, "")),
        c(
            "premium tier header",
            authz(
                "/audio/TP/seg-1.mp4",
                IP_DE,
                "X-Regiongate-Tier: premium\r\n",
            ),
        ),
        c(
            "bad tier header",
            authz(seg, IP_DE, "X-Regiongate-Tier: platinum\r\n"),
        ),
        c(
            "download use",
            authz(seg, IP_DE, "X-Regiongate-Use: download\r\n"),
        ),
        c("not a route", authz("/img/cover.jpg", IP_DE, "")),
        c(
            "query ignored",
            authz(&format!("{seg}?tier=premium"), IP_DE, ""),
        ),
        c(
            "options",
            authz(seg, IP_FR, "").replace("X-Original-Method: GET", "X-Original-Method: options"),
        ),
        c(
            "post original",
            authz(seg, IP_DE, "").replace("X-Original-Method: GET", "X-Original-Method: POST"),
        ),
        c(
            "no method header",
            authz(seg, IP_DE, "").replace("X-Original-Method: GET\r\n", ""),
        ),
        c(
            "two address lines",
            authz(seg, IP_FR, &format!("X-Forwarded-For: {IP_DE}\r\n")),
        ),
        c(
            "address chain",
            authz(seg, &format!("{IP_FR}, {IP_DE}"), ""),
        ),
        c(
            "name case",
            authz(seg, IP_DE, "").replace("X-Forwarded-For", "x-FORWARDED-for"),
        ),
        c(
            "envoy prefix",
            format!(
                "GET /v1/authz{seg}?sig=abc%20d HTTP/1.1\r\nHost: r\r\nX-Forwarded-For: {IP_DE}\r\n\r\n"
            ),
        ),
        c(
            "envoy head",
            format!("HEAD /v1/authz{seg} HTTP/1.1\r\nX-Forwarded-For: {IP_FR}\r\n\r\n"),
        ),
        c(
            "envoy post",
            format!(
                "POST /v1/authz{seg} HTTP/1.1\r\nContent-Length: 0\r\nX-Forwarded-For: {IP_DE}\r\n\r\n"
            ),
        ),
        c(
            "leading empty lines",
            format!("\r\n\r\n{}", authz(seg, IP_DE, "")),
        ),
        c(
            "keep-alive line",
            authz(seg, IP_DE, "Connection: keep-alive\r\n"),
        ),
        c(
            "content-length 0",
            authz(seg, IP_DE, "Content-Length: 0\r\n"),
        ),
        c(
            "pipelined",
            [
                authz(seg, IP_DE, ""),
                authz(seg, IP_FR, ""),
                authz(seg, IP_DE, ""),
            ]
            .concat(),
        ),
        c(
            "pipelined with other endpoints",
            [
                authz(seg, IP_DE, ""),
                format!("GET /v1/territory HTTP/1.1\r\nX-Forwarded-For: {IP_FR}\r\n\r\n"),
                authz(seg, IP_FR, ""),
            ]
            .concat(),
        ),
        c("ten KiB head", authz(seg, IP_DE, &ten_k)),
        // Handed to hyper:
        c(
            "missing original uri",
            format!("GET /v1/authz HTTP/1.1\r\nX-Forwarded-For: {IP_DE}\r\n\r\n"),
        ),
        c(
            "post",
            authz(seg, IP_DE, "Content-Length: 0\r\n").replacen("GET", "POST", 1),
        ),
        c(
            "connection close",
            authz(seg, IP_DE, "Connection: close\r\n"),
        ),
        c(
            "http/1.0",
            authz(seg, IP_DE, "").replacen("HTTP/1.1", "HTTP/1.0", 1),
        ),
        // A body, then the next request: taking the body for a head would show.
        c(
            "body",
            format!(
                "{}hello{}",
                authz(seg, IP_DE, "Content-Length: 5\r\n"),
                authz(seg, IP_FR, "")
            ),
        ),
        c(
            "chunked body",
            format!(
                "{}5\r\nhello\r\n0\r\n\r\n{}",
                authz(seg, IP_DE, "Transfer-Encoding: chunked\r\n"),
                authz(seg, IP_FR, "")
            ),
        ),
        c(
            "expect",
            authz(seg, IP_DE, "Expect: 100-continue\r\nContent-Length: 0\r\n"),
        ),
        c(
            "upgrade",
            authz(seg, IP_DE, "Connection: upgrade\r\nUpgrade: h2c\r\n"),
        ),
        c("sixty lines", authz(seg, IP_DE, &many_lines)),
        c("twenty KiB head", authz(seg, IP_DE, &twenty_k)),
        c(
            "quote in target",
            format!("GET /v1/authz/audio/T1/\"x\" HTTP/1.1\r\nX-Forwarded-For: {IP_DE}\r\n\r\n"),
        ),
        c(
            "absolute form",
            format!(
                "GET http://regiongate/v1/authz/audio/T1/x HTTP/1.1\r\nX-Forwarded-For: {IP_DE}\r\n\r\n"
            ),
        ),
        c(
            "other endpoint first",
            format!(
                "GET /v1/territory HTTP/1.1\r\nX-Forwarded-For: {IP_DE}\r\n\r\n{}",
                authz(seg, IP_FR, "")
            ),
        ),
        c(
            "malformed line",
            "GET /v1/authz HTTP/1.1\r\nX-Original-URI /audio/T1/x\r\n\r\n".to_owned(),
        ),
        c("bad version", "GET /v1/authz HTTP/7.1\r\n\r\n".to_owned()),
        c(
            "unfinished head",
            "GET /v1/authz HTTP/1.1\r\nX-Original-URI: /audio".to_owned(),
        ),
        c("nothing", String::new()),
    ]
}

#[tokio::test]
async fn the_fast_path_answers_byte_for_byte_as_hyper() {
    within(60, "fast path against hyper", async {
        let fast = TestServer::start(&config("", ""), world()).await;
        let hyper = TestServer::start(&config("", "[authz]\nfast_path = false"), world()).await;
        assert!(fast.app.config.authz.fast_path && !hyper.app.config.authz.fast_path);
        let mut answered = 0;
        for (name, bytes) in cases() {
            let (f, h) = tokio::join!(
                exchange(fast.public, &bytes),
                exchange(hyper.public, &bytes)
            );
            let (f, h) = (dateless(&f), dateless(&h));
            assert_eq!(f, h, "{name}: fast path (left) and hyper (right) differ");
            answered += f.matches("HTTP/1.1 ").count();
        }
        // Not a comparison of two silences: nearly every case has an answer (or several).
        assert!(answered >= cases().len(), "{answered} answers");

        // A head that arrives a byte at a time gets the answer it gets in one piece.
        let bytes = authz("/audio/T1/seg-1.mp4", IP_DE, "");
        let mut s = TcpStream::connect(fast.public).await.expect("connect");
        for b in bytes.as_bytes() {
            s.write_all(std::slice::from_ref(b)).await.expect("write");
            s.flush().await.expect("flush");
        }
        s.shutdown().await.expect("half close");
        let mut slow = Vec::new();
        let _ = s.read_to_end(&mut slow).await;
        let whole = exchange(hyper.public, bytes.as_bytes()).await;
        assert_eq!(dateless(&slow), dateless(&whole));
        assert!(
            dateless(&slow).starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            dateless(&slow)
        );

        // Heads around a smaller `limits.max_header_bytes` (hyper refuses a longer head with
        // 431; the fast path leaves those to it). Not 8192, the smallest limit: there hyper
        // closes a head of exactly 8192 bytes without an answer (its read buffer is full),
        // which the fast path answers.
        let small = |fast: bool| {
            config("", &format!("[authz]\nfast_path = {fast}"))
                .replace("[limits]\n", "[limits]\nmax_header_bytes = 12288\n")
        };
        let fast8 = TestServer::start(&small(true), world()).await;
        let hyper8 = TestServer::start(&small(false), world()).await;
        let base = authz("/audio/T1/seg-1.mp4", IP_DE, "X-Padding: \r\n").len();
        let mut statuses = Vec::new();
        for len in [12000, 12287, 12288, 12289, 12400] {
            let head = authz(
                "/audio/T1/seg-1.mp4",
                IP_DE,
                &format!("X-Padding: {}\r\n", "q".repeat(len - base)),
            );
            assert_eq!(head.len(), len);
            let (f, h) = tokio::join!(
                exchange(fast8.public, head.as_bytes()),
                exchange(hyper8.public, head.as_bytes())
            );
            let (f, h) = (dateless(&f), dateless(&h));
            assert_eq!(f, h, "a head of {len} bytes");
            statuses.push(f.lines().next().unwrap_or("").to_owned());
        }
        assert_eq!(statuses[0], "HTTP/1.1 200 OK");
        assert_eq!(statuses[4], "HTTP/1.1 431 Request Header Fields Too Large");
        fast8.stop().await;
        hyper8.stop().await;

        // Both counted the same decisions and answers.
        let count = |m: &str| {
            metric(
                m,
                "regiongate_request_duration_seconds_count",
                &[("door", "authz")],
            )
        };
        let (mf, mh) = (
            get(fast.admin, "/metrics", &[]).await.text(),
            get(hyper.admin, "/metrics", &[]).await.text(),
        );
        assert!(count(&mf) > 30.0, "{mf}");
        assert_eq!(count(&mf), count(&mh));
        fast.stop().await;
        hyper.stop().await;
    })
    .await;
}

/// Pipelined heads that arrive in pieces of every size (split at seeded random points, with
/// pauses so that the pieces are separate reads): heads cut anywhere, several heads in one
/// read, a 10 KiB head that makes the buffer grow, a head that must move to the front of the
/// buffer, and a hand-over to hyper at the end. The answers are those of hyper given the same
/// bytes in one piece.
#[tokio::test]
async fn heads_cut_anywhere_get_the_answers_of_one_piece() {
    use rand::{Rng, SeedableRng};
    within(60, "fast path pieces", async {
        let fast = TestServer::start(&config("", ""), world()).await;
        let hyper = TestServer::start(&config("", "[authz]\nfast_path = false"), world()).await;
        let seg = "/audio/T1/seg-1.mp4";
        let pad = format!("X-Padding: {}\r\n", "p".repeat(10 * 1024));
        let mut stream = String::new();
        for i in 0..40 {
            let ip = [IP_DE, IP_FR, IP_BORDER][i % 3];
            let extra = if i % 13 == 5 { pad.as_str() } else { "" };
            stream.push_str(&authz(seg, ip, extra));
        }
        stream.push_str(&format!(
            "GET /v1/territory HTTP/1.1\r\nX-Forwarded-For: {IP_DE}\r\n\r\n"
        ));
        stream.push_str(&authz(seg, IP_DE, ""));
        let bytes = stream.as_bytes();
        let want_raw = exchange(hyper.public, bytes).await;
        let want = dateless(&want_raw);
        assert_eq!(want.matches("HTTP/1.1 ").count(), 42, "{want}");

        for seed in 0..4u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut s = TcpStream::connect(fast.public).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut at = 0;
            while at < bytes.len() {
                let n = rng.gen_range(1..=700).min(bytes.len() - at);
                s.write_all(&bytes[at..at + n]).await.expect("write");
                at += n;
                if rng.gen_bool(0.3) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            // Read the answers without closing the writing side first: hyper drops pipelined
            // heads that are still unread when it sees the end of input (with or without the
            // fast path), so a half close would race with the last heads. Dates have one
            // length, so the answers are as long as hyper's.
            let mut got = Vec::new();
            let mut chunk = [0u8; 8192];
            while got.len() < want_raw.len() {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            assert_eq!(
                got.len(),
                want_raw.len(),
                "seed {seed}: answers missing or extra"
            );
            let got = dateless(&got);
            if let Some(at) = got.bytes().zip(want.bytes()).position(|(a, b)| a != b) {
                let window =
                    |t: &str| t[at.saturating_sub(100)..(at + 200).min(t.len())].to_owned();
                panic!(
                    "seed {seed}: at byte {at}\n{:?}\ninstead of\n{:?}",
                    window(&got),
                    window(&want)
                );
            }
        }
        fast.stop().await;
        hyper.stop().await;
    })
    .await;
}

/// A server with a short header-read timeout.
async fn short_timeout_server(ms: u64) -> TestServer {
    let toml = format!(
        "[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[limits]\nheader_read_timeout_ms = {ms}\n"
    );
    TestServer::start(&toml, world()).await
}

/// Reads one response (head and, when it names one, a body) from a keep-alive connection.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return Some(head);
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server closes `s` (end of input or reset) within `secs`.
async fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(secs), s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn fast_path_connections_keep_alive_and_time_out_like_hyper() {
    within(60, "fast path connections", async {
        let srv = short_timeout_server(400).await;
        let req = authz("/audio/T1/seg-1.mp4", IP_DE, "");

        // Requests every 150 ms for twice the timeout: one connection answers them all (the
        // timeout counts from the wait for each head, not from the connection's start).
        let mut s = TcpStream::connect(srv.public).await.expect("connect");
        let mut buf = Vec::new();
        let began = Instant::now();
        let mut answers = 0;
        while began.elapsed() < Duration::from_millis(800) {
            s.write_all(req.as_bytes()).await.expect("write");
            let head = read_response(&mut s, &mut buf).await.expect("an answer");
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            answers += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert!(answers >= 5, "{answers}");
        // Then idle: closed at the timeout, without an answer.
        let idle = Instant::now();
        assert!(
            closed_within(&mut s, 5).await,
            "idle keep-alive connection left open"
        );
        assert!(
            idle.elapsed() >= Duration::from_millis(200),
            "{:?}",
            idle.elapsed()
        );

        // A head that stops halfway: closed at the timeout, without an answer.
        let mut s = TcpStream::connect(srv.public).await.expect("connect");
        s.write_all(&req.as_bytes()[..30]).await.expect("write");
        let mut rest = Vec::new();
        let cut = Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        assert!(
            cut.elapsed() < Duration::from_secs(3),
            "{:?}",
            cut.elapsed()
        );

        // A connection that sends nothing at all.
        let mut s = TcpStream::connect(srv.public).await.expect("connect");
        assert!(
            closed_within(&mut s, 5).await,
            "silent connection left open"
        );

        // A keep-alive connection handed to hyper (another endpoint) goes on answering both
        // kinds of request.
        let mut s = TcpStream::connect(srv.public).await.expect("connect");
        let mut buf = Vec::new();
        let territory = format!("GET /v1/territory HTTP/1.1\r\nX-Forwarded-For: {IP_FR}\r\n\r\n");
        for (i, r) in [&req, &territory, &req, &territory].into_iter().enumerate() {
            s.write_all(r.as_bytes()).await.expect("write");
            let head = read_response(&mut s, &mut buf).await.expect("an answer");
            assert!(
                head.starts_with("HTTP/1.1 200 OK\r\n"),
                "request {i}: {head}"
            );
            let authz_answer = head.contains("x-regiongate-decision: allow");
            assert_eq!(authz_answer, i % 2 == 0, "request {i}: {head}");
        }
        srv.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_idle_fast_path_connections_at_once() {
    within(30, "fast path shutdown", async {
        // A grace period far longer than the test may take: only closing idle connections at
        // once lets the server stop in time.
        let toml = "[client]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[limits]\ngrace_period_ms = 60000\nheader_read_timeout_ms = 60000\n";
        let mut srv = TestServer::start(toml, world()).await;
        let req = authz("/audio/T1/seg-1.mp4", IP_DE, "");
        let mut idle = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(srv.public).await.expect("connect");
            let mut buf = Vec::new();
            s.write_all(req.as_bytes()).await.expect("write");
            let head = read_response(&mut s, &mut buf).await.expect("an answer");
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            idle.push(s);
        }
        let t = Instant::now();
        srv.trigger_shutdown();
        srv.join().await.expect("server stops");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        for mut s in idle {
            assert!(closed_within(&mut s, 2).await, "idle connection left open");
        }
    })
    .await;
}

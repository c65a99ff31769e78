//! Connections of the public listener, and the fast path for plain auth subrequests.
//!
//! Why a fast path: an auth subrequest is the hottest and simplest request regiongate
//! serves, and hyper's own work per request (the head parsed into a header map, the
//! dispatcher, a header-read timer set per request, encoding from a header map) is about
//! 13,000 instructions: what nginx + geoip2 spends on a whole request of the same gate
//! (benches/README.md). So a connection starts here: request heads are parsed by `httparse`
//! (the parser hyper uses, with hyper's settings) straight from the read buffer, and a *plain*
//! auth subrequest is answered at once by the same code as through hyper
//! ([`authz::judge`], [`authz::write_answer`]): the same bytes apart from the Date value.
//!
//! Plain means: `GET` or `HEAD`, `HTTP/1.1`, a request target of path (and query) made of
//! unreserved characters, sub-delimiters, `:@/%?=` only, at the auth prefix or under it, no
//! body (no Transfer-Encoding, Content-Length 0 at most), no Expect, Upgrade or Connection
//! header (other than `keep-alive`), at most [`FAST_LINES`] header lines and a head of at most
//! [`FAST_HEAD_BYTES`] (or `limits.max_header_bytes` when smaller: a head over it goes to hyper,
//! which refuses it with 431). The answer of a plain subrequest may not be an error response either
//! (a missing original-URI header: 400). Anything else goes to hyper, with the bytes read so
//! far, and the connection stays with hyper: hyper answers it exactly as without the fast
//! path (its errors, limits, bodies, `Connection: close`, HTTP/1.0, every other endpoint).
//! `tests/it/fast_path.rs` sends the same requests both ways and compares the bytes.
//!
//! What hyper does with a connection, the fast path does too: keep-alive; pipelined requests
//! answered in order (the answers to one read written together); leading empty lines skipped
//! (httparse); the header-read timeout counted from when the server starts waiting for a
//! head, between requests too (an idle keep-alive connection is closed at the timeout);
//! closing without an answer on end of input, on the timeout, or at shutdown when idle.

use super::authz::{self, Subrequest};
use super::metrics::Door;
use super::{App, public, shed, under_prefix, version_value, wall_clock};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::Watcher;
use std::cell::Cell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

/// Header lines a fast-path head may have; a head with more goes to hyper (which applies
/// `limits.max_headers`). nginx's auth subrequest carries the listener's request headers.
pub const FAST_LINES: usize = 48;

/// Bytes a fast-path head may have; a longer one goes to hyper (which applies
/// `limits.max_header_bytes`).
pub const FAST_HEAD_BYTES: usize = 16 * 1024;

/// The read buffer a connection starts with (grown up to [`FAST_HEAD_BYTES`] for a long head).
const INITIAL_BUFFER: usize = 4096;

/// How a public connection reaches hyper: the listener's connection settings and its
/// graceful-shutdown watcher.
pub(super) struct Hyper {
    /// The HTTP/1 settings of the listener.
    pub builder: http1::Builder,
    /// Its HTTP/2 settings (h2c with prior knowledge: a connection that opens with the
    /// HTTP/2 preface).
    pub h2: http2::Builder<TokioExecutor>,
    /// Signals the connection at shutdown.
    pub watcher: Watcher,
}

/// Which shard a connection's packets say it belongs to (cpu steering): asked now and then
/// between requests on the fast path, with the CPU its last packet arrived on.
pub(super) trait Follow: Send + Sync {
    /// The shard to move to, if not this one.
    fn shard_for(&self, incoming_cpu: usize) -> Option<usize>;
}

/// How many answered requests apart a connection's incoming CPU is looked at.
const FOLLOW_EVERY: u32 = 64;

/// Serves a connection of the public listener: on the fast path when it is on, handing over
/// to hyper on the first request that is not plain; entirely through hyper otherwise.
/// `stopped` turns true at shutdown. With `follow`, a connection whose packets have arrived
/// on another shard's CPU at two looks in a row, between requests (nothing read and not
/// answered), is given back with that shard's number, to be moved there.
pub(super) async fn serve(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    started: shed::Started,
    hyper: Hyper,
    stopped: watch::Receiver<bool>,
    follow: Option<Arc<dyn Follow>>,
) -> Option<(TcpStream, usize)> {
    if !app.config.authz.fast_path {
        to_hyper(app, Rewind::new(stream, Bytes::new()), peer, started, hyper).await;
        return None;
    }
    match fast(&app, stream, peer, &started, stopped, follow.as_deref()).await {
        Next::Done => None,
        Next::Move(stream, shard) => Some((stream, shard)),
        Next::Hyper(stream, read) => {
            to_hyper(app, Rewind::new(stream, read), peer, started, hyper).await;
            None
        }
    }
}

/// How the fast path of a connection ended.
enum Next {
    /// The connection is done.
    Done,
    /// hyper serves the rest, starting with these bytes already read.
    Hyper(TcpStream, Bytes),
    /// Between requests, for another shard.
    Move(TcpStream, usize),
}

/// Serves a connection through hyper, `io` replaying what the fast path had read: HTTP/2
/// when it opens with the preface, HTTP/1 otherwise. The same service answers both.
async fn to_hyper(
    app: Arc<App>,
    mut io: Rewind,
    peer: SocketAddr,
    started: shed::Started,
    h: Hyper,
) {
    let timeout = app.config.limits.header_read_timeout;
    let h2 = match tokio::time::timeout(timeout, io.opens_h2()).await {
        Ok(Ok(h2)) => h2,
        // Closed, failed, or silent for the header-read timeout.
        Ok(Err(_)) | Err(_) => return,
    };
    let service = hyper::service::service_fn(move |req| {
        // [shed] A connection that has started a request is never shed (shed.rs).
        started.mark();
        public(&app, peer, req)
    });
    if h2 {
        let _ = h
            .watcher
            .watch(h.h2.serve_connection(TokioIo::new(io), service))
            .await;
    } else {
        let _ = h
            .watcher
            .watch(h.builder.serve_connection(TokioIo::new(io), service))
            .await;
    }
}

/// The client preface of HTTP/2 (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a head in the buffer is.
enum Step {
    /// A plain auth subrequest of this many bytes, answered; when its answer began.
    Answered(usize, Instant),
    /// Not all there yet.
    Partial,
    /// For hyper.
    Hyper,
}

/// What ended a wait for input.
enum Wake {
    /// This many bytes were read (0: end of input).
    Read(usize),
    /// The connection failed.
    Failed,
    /// The header-read timeout passed.
    TimedOut,
    /// Shutdown began.
    Stop,
}

/// The fast path of a connection.
async fn fast(
    app: &App,
    mut stream: TcpStream,
    peer: SocketAddr,
    started: &shed::Started,
    mut stopped: watch::Receiver<bool>,
    follow: Option<&dyn Follow>,
) -> Next {
    // Answers until the next look at the incoming CPU, and the shard seen at the last look.
    let (mut until_look, mut seen) = (FOLLOW_EVERY, None);
    let timeout = app.config.limits.header_read_timeout;
    let head_limit = FAST_HEAD_BYTES.min(app.config.limits.max_header_bytes);
    let mut buf = vec![0u8; INITIAL_BUFFER.min(head_limit)];
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::with_capacity(512);
    // The header-read timeout runs from when the wait for a head begins: the connection's
    // start, then (closely enough) the start of the previous answer. The timer is set once
    // and moved only when it fires early: no timer work per request.
    let mut waiting_since = tokio::time::Instant::now();
    let sleep = tokio::time::sleep_until(waiting_since + timeout);
    let mut sleep = std::pin::pin!(sleep);
    let shutting_down = stopped.clone();
    let stop = stopped.wait_for(|s| *s);
    let mut stop = std::pin::pin!(stop);
    loop {
        while start < end {
            match step(app, peer, &buf[start..end], head_limit, &mut out) {
                Step::Answered(n, began) => {
                    started.mark();
                    start += n;
                    waiting_since = tokio::time::Instant::from_std(began);
                    until_look = until_look.saturating_sub(1);
                }
                Step::Partial => break,
                Step::Hyper => {
                    if !out.is_empty() && stream.write_all(&out).await.is_err() {
                        return Next::Done;
                    }
                    return Next::Hyper(stream, Bytes::copy_from_slice(&buf[start..end]));
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return Next::Done;
            }
            out.clear();
        }
        if start == end {
            (start, end) = (0, 0);
            // Never once shutdown has begun: the other shard may have stopped taking them.
            if let Some(f) = follow.filter(|_| until_look == 0 && !*shutting_down.borrow()) {
                until_look = FOLLOW_EVERY;
                let now = super::cpus::incoming_cpu(&stream).and_then(|cpu| f.shard_for(cpu));
                if let Some(shard) = now.filter(|_| seen == now) {
                    return Next::Move(stream, shard);
                }
                seen = now;
            }
        } else if end == buf.len() {
            // A partial head fills the buffer: move it to the front, or grow the buffer, or
            // leave the long head to hyper.
            if start > 0 {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            } else if buf.len() < head_limit {
                buf.resize((buf.len() * 2).min(head_limit), 0);
            } else {
                return Next::Hyper(stream, Bytes::copy_from_slice(&buf[start..end]));
            }
        }
        let deadline = waiting_since + timeout;
        let wake = std::future::poll_fn(|cx| {
            wait(
                cx,
                &mut stream,
                &mut buf[end..],
                sleep.as_mut(),
                deadline,
                stop.as_mut(),
            )
        })
        .await;
        match wake {
            Wake::Read(0) | Wake::Failed | Wake::TimedOut | Wake::Stop => return Next::Done,
            Wake::Read(n) => end += n,
        }
    }
}

/// Polls for input, the timeout and shutdown, in that order.
fn wait<F: Future>(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    buf: &mut [u8],
    mut sleep: Pin<&mut Sleep>,
    deadline: tokio::time::Instant,
    stop: Pin<&mut F>,
) -> Poll<Wake> {
    let mut rb = ReadBuf::new(buf);
    match Pin::new(stream).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => return Poll::Ready(Wake::Read(rb.filled().len())),
        Poll::Ready(Err(_)) => return Poll::Ready(Wake::Failed),
        Poll::Pending => {}
    }
    if sleep.as_mut().poll(cx).is_ready() {
        if sleep.deadline() >= deadline {
            return Poll::Ready(Wake::TimedOut);
        }
        // Set for an earlier wait: move it to this one's deadline (registering it again).
        sleep.as_mut().reset(deadline);
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::TimedOut);
        }
    }
    // Any outcome of the shutdown signal (true, or the sender gone) means stop.
    if stop.poll(cx).is_ready() {
        return Poll::Ready(Wake::Stop);
    }
    Poll::Pending
}

/// Parses the head at the start of `bytes`; answers it into `out` if it is a plain auth
/// subrequest of at most `head_limit` bytes.
fn step(app: &App, peer: SocketAddr, bytes: &[u8], head_limit: usize, out: &mut Vec<u8>) -> Step {
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FAST_LINES];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(bytes, &mut lines) {
        Ok(httparse::Status::Complete(len)) if len <= head_limit => len,
        Ok(httparse::Status::Complete(_)) => return Step::Hyper,
        Ok(httparse::Status::Partial) => return Step::Partial,
        // Too many lines, or a malformed head: hyper answers (or refuses) it.
        Err(_) => return Step::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Step::Hyper;
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Step::Hyper,
    };
    if !plain_target(target) || !plain_lines(req.headers) {
        return Step::Hyper;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !under_prefix(path, &app.config.authz.path_prefix) {
        return Step::Hyper;
    }
    let began = Instant::now();
    let snap = app.snapshot.load();
    let now = wall_clock(began);
    let sub = Subrequest {
        method,
        path,
        query,
        headers: req.headers,
    };
    let Ok(answer) = authz::judge(app, &snap, peer, &sub, now) else {
        return Step::Hyper;
    };
    DATE.with(|date| {
        let value = date_value(date, now);
        authz::write_answer(&answer, head, version_value(&snap).as_ref(), &value, out);
    });
    app.metrics
        .latency(Door::Authz, began.elapsed().as_secs_f64());
    Step::Answered(len, began)
}

/// A request target the fast path takes: origin form, of bytes that every URI parser reads
/// the same way (`http::Uri` accepts all of them). Others (spaces are already refused by
/// httparse; quotes, braces, `#`, non-ASCII...) go to hyper.
fn plain_target(target: &str) -> bool {
    target.starts_with('/')
        && target.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'%'
                        | b'?'
                )
        })
}

/// Header lines the fast path takes: none that asks for a body, an interim answer, an upgrade
/// or a connection option (hyper handles those).
fn plain_lines(lines: &[httparse::Header<'_>]) -> bool {
    lines.iter().all(|l| {
        let n = l.name.as_bytes();
        match n.len() {
            6 => !n.eq_ignore_ascii_case(b"expect"),
            7 => !n.eq_ignore_ascii_case(b"upgrade"),
            10 => {
                !n.eq_ignore_ascii_case(b"connection")
                    || l.value.eq_ignore_ascii_case(b"keep-alive")
            }
            14 => !n.eq_ignore_ascii_case(b"content-length") || l.value == b"0",
            17 => !n.eq_ignore_ascii_case(b"transfer-encoding"),
            _ => true,
        }
    })
}

thread_local! {
    /// The Date value of the current second (as hyper keeps one per thread).
    static DATE: Cell<(i64, [u8; 29])> = const { Cell::new((i64::MIN, [0; 29])) };
}

/// The IMF-fixdate of `now`'s second, made once per second per thread.
fn date_value(cache: &Cell<(i64, [u8; 29])>, now: DateTime<Utc>) -> [u8; 29] {
    let secs = now.timestamp();
    let (cached, value) = cache.get();
    if cached == secs {
        return value;
    }
    let mut value = [0u8; 29];
    let text = httpdate::fmt_http_date(std::time::SystemTime::from(now));
    if text.len() == value.len() {
        value.copy_from_slice(text.as_bytes());
        cache.set((secs, value));
    }
    value
}

/// A connection whose first bytes were already read by the fast path: hyper reads those
/// first, then the socket.
pub(super) struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl Rewind {
    fn new(stream: TcpStream, read: Bytes) -> Rewind {
        Rewind { read, stream }
    }

    /// Whether the connection opens with the HTTP/2 preface, reading until that is known
    /// (for an HTTP/1 request, its first bytes usually tell); what was read is replayed.
    /// An error when the connection ends or fails first.
    async fn opens_h2(&mut self) -> std::io::Result<bool> {
        loop {
            let n = self.read.len().min(H2_PREFACE.len());
            if self.read[..n] != H2_PREFACE[..n] {
                return Ok(false);
            }
            if n == H2_PREFACE.len() {
                return Ok(true);
            }
            let mut more = bytes::BytesMut::with_capacity(self.read.len() + 4096);
            more.extend_from_slice(&self.read);
            if tokio::io::AsyncReadExt::read_buf(&mut self.stream, &mut more).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.read = more.freeze();
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            let first = self.read.split_to(n);
            buf.put_slice(&first);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_targets() {
        for t in [
            "/v1/authz",
            "/v1/authz/audio/QZ/seg-1.mp4?tok=a%20b&x=1",
            "/v1/authz/a:b@c;d=e,f+g*h(i)!$'~",
        ] {
            assert!(plain_target(t), "{t}");
        }
        for t in [
            "*",
            "http://example.com/v1/authz",
            "/v1/authz#frag",
            "/v1/authz/\"q\"",
            "/v1/authz/{x}",
            "/v1/authz/a|b",
            "/v1/authz/a\\b",
            "/v1/authz/a^b",
            "/v1/authz/a`b",
            "/v1/authz/<a>",
            "/v1/authz/caf\u{e9}",
            "",
        ] {
            assert!(!plain_target(t), "{t}");
        }
    }

    #[test]
    fn plain_header_lines() {
        let line = |name, value| httparse::Header { name, value };
        let ok = [
            line("Host", b"x".as_slice()),
            line("Connection", b"Keep-Alive"),
            line("Content-Length", b"0"),
            line("X-Forwarded-For", b"192.0.2.1"),
        ];
        assert!(plain_lines(&ok));
        for bad in [
            line("connection", b"close".as_slice()),
            line("Connection", b"keep-alive, Upgrade"),
            line("Upgrade", b"h2c"),
            line("Content-Length", b"1"),
            line("content-length", b"00"),
            line("Transfer-Encoding", b"chunked"),
            line("EXPECT", b"100-continue"),
        ] {
            let mut lines = ok.to_vec();
            lines.push(bad);
            assert!(!plain_lines(&lines), "{}: {:?}", bad.name, bad.value);
        }
    }

    #[test]
    fn date_values_are_http_dates_renewed_each_second() {
        let cache = Cell::new((i64::MIN, [0; 29]));
        let t = DateTime::parse_from_rfc3339("2026-11-29T06:10:07.25Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(&date_value(&cache, t), b"Sun, 29 Nov 2026 06:10:07 GMT");
        let later = t + chrono::Duration::milliseconds(700);
        assert_eq!(&date_value(&cache, later), b"Sun, 29 Nov 2026 06:10:07 GMT");
        let next = t + chrono::Duration::milliseconds(800);
        assert_eq!(&date_value(&cache, next), b"Sun, 29 Nov 2026 06:10:08 GMT");
    }
}

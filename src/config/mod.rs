//! Configuration: a TOML file, environment overrides, then command-line flags, turned into a
//! validated [`Config`] in one conversion. Nothing downstream re-checks it.
//!
//! Every key is documented in `deploy/regiongate.example.toml`. A bad value is one
//! [`ConfigError`] naming the key.

use crate::decide::Policy;
use crate::locate::cidr::CidrSet;
use crate::locate::forwarded::{ChainHeader, ClientAddressPolicy};
use crate::locate::hints::GpsLimits;
use crate::route::RoutePattern;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Largest configuration file accepted, bytes (the example with every key is 8 KB).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Largest admin token file read, bytes: a token is one line, and a path such as `/dev/zero`
/// must give an error, not hang the start.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Largest `limits.max_body_bytes` accepted. A preflight body of `preflight.max_batch` (at
/// most 10,000) tracks is about 1.5 MB of JSON.
pub const MAX_BODY_BYTES_LIMIT: usize = 16 * 1024 * 1024;

/// Default `limits.max_header_bytes`: 32 KiB, nginx's default for a whole request head
/// (`large_client_header_buffers 4 8k`). The front proxies of `deploy/` send an auth
/// subrequest without the client's `Cookie` and `Authorization`, so its head is the request
/// line, `X-Original-URI` (at most 8 KiB behind nginx) and a few short headers; a browser's
/// request that nginx accepts fits in proxy mode too. It bounds each connection's read
/// buffer: at 10,000 connections, 320 MB at worst instead of the 4 GB of hyper's own limit
/// (about 400 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// Smallest `limits.max_header_bytes` accepted: hyper's minimum read buffer
/// (`http1::Builder::max_buf_size` panics below it).
pub const MIN_HEADER_BYTES_LIMIT: usize = 8192;

/// Largest `limits.max_header_bytes` accepted: 1 MiB, more than twice hyper's own default,
/// so that a typo cannot give every connection a buffer of gigabytes.
pub const MAX_HEADER_BYTES_LIMIT: usize = 1024 * 1024;

/// A configuration problem, naming the key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("config key `{key}`: {reason}")]
pub struct ConfigError {
    /// The key (dotted path), or `file` for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Which front doors serve the public listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Preflight API and auth subrequests (nginx `auth_request`, Envoy `ext_authz`).
    Authz,
    /// Also a reverse proxy in front of the origin: track routes are decided and forwarded.
    Proxy,
}

/// How the public threads (shards, one per CPU) share the incoming connections. Each shard
/// has a listening socket of its own on the public address (`SO_REUSEPORT`), except with
/// [`Steering::Shared`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Steering {
    /// [`Steering::Cpu`] when the public listener is on a loopback address (its clients are
    /// processes on the same host, such as the nginx sidecar), else [`Steering::Hash`].
    Auto,
    /// Shard *i* runs pinned to the *i*-th CPU the process may use, and the kernel hands it
    /// the connections whose packets arrive on that CPU (`SO_INCOMING_CPU`): a connection's
    /// packets, socket and thread stay on one CPU. For clients on the same host and NICs
    /// that spread packets over all CPUs (RSS/RPS). Falls back to [`Steering::Hash`] when
    /// the shards and the usable CPUs differ in number or pinning is refused.
    Cpu,
    /// The kernel spreads connections over the shards by a hash of their addresses and
    /// ports; the scheduler places the threads.
    Hash,
    /// One accept queue shared by all shards: whichever shard is free takes the next
    /// connection (nginx's default); every idle shard is woken by each new connection.
    Shared,
}

impl Steering {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Steering::Auto => "auto",
            Steering::Cpu => "cpu",
            Steering::Hash => "hash",
            Steering::Shared => "shared",
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not text or json")),
        }
    }
}

/// Per-decision log lines (target `regiongate::decision`, level `info`): for debugging, never
/// needed for the record (metrics and the aggregate report count every decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionLog {
    /// No line per decision (the default).
    Off,
    /// A line for every decision.
    Full,
    /// A line for one decision in N (per worker thread).
    Sampled(std::num::NonZeroU32),
}

impl std::str::FromStr for DecisionLog {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not off, full or 1/N (N from 1 to 1000000)");
        match s {
            "off" => Ok(DecisionLog::Off),
            "full" => Ok(DecisionLog::Full),
            _ => {
                let n: u32 = s
                    .strip_prefix("1/")
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(bad)?;
                std::num::NonZeroU32::new(n)
                    .map(DecisionLog::Sampled)
                    .ok_or_else(bad)
            }
        }
    }
}

/// What to do with a request whose path matches no track route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Let it through (authz: 200; proxy: forward).
    Allow,
    /// Refuse it (authz: the deny status; proxy: 404).
    Deny,
}

/// The auth-subrequest front door.
#[derive(Clone, Debug)]
pub struct AuthzConfig {
    /// Header with the original URI (nginx: `X-Original-URI`).
    pub original_uri_header: http::HeaderName,
    /// Header with the original method (nginx: `X-Original-Method`).
    pub original_method_header: http::HeaderName,
    /// Path prefix under which the original path follows (Envoy `path_prefix`).
    pub path_prefix: String,
    /// Header the CDN sets with the listener's tier.
    pub tier_header: http::HeaderName,
    /// Header the CDN sets with the use type.
    pub use_header: http::HeaderName,
    /// Use type when neither route, query nor header gives one.
    pub default_use: crate::license::UseType,
    /// Tier when neither route, query nor header gives one.
    pub default_tier: crate::license::Tier,
    /// Status for a denial (nginx treats only 401/403 as deny; Envoy passes any status).
    pub deny_status: http::StatusCode,
    /// Status for need-precise-location.
    pub need_precise_status: http::StatusCode,
    /// Paths that match no route.
    pub unmatched: Unmatched,
    /// Answer plain auth subrequests on the fast path (`server::fast`) instead of through
    /// hyper; anything else on the connection is still served by hyper.
    pub fast_path: bool,
}

/// The reverse-proxy front door.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The origin: `http://host:port`, fixed (the proxy is never open).
    pub upstream: http::Uri,
    /// `Link: <...>; rel="blocked-by"` target on 451 answers (RFC 7725).
    pub blocked_by: String,
    /// Paths that match no route.
    pub unmatched: Unmatched,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream response-header timeout.
    pub response_timeout: Duration,
}

/// Connection and request limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most (public listener); more wait in the kernel backlog.
    pub max_connections: usize,
    /// Time a client has to send the request headers.
    pub header_read_timeout: Duration,
    /// Time a request may take, body streaming through the proxy excepted.
    pub request_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub grace_period: Duration,
    /// Largest request body read (POST preflight).
    pub max_body_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Largest request head (request line and headers), bytes; a larger one is answered 431.
    /// Also each connection's read buffer limit.
    pub max_header_bytes: usize,
    /// HTTP/2 streams open at once on one connection (public listener in h2c, gRPC listener).
    pub max_concurrent_streams: u32,
    /// Largest gRPC message (an ext_authz `CheckRequest`) decoded; a larger one is refused
    /// with `RESOURCE_EXHAUSTED`.
    pub grpc_max_message_bytes: usize,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (health, metrics, reload).
    pub admin_listen: SocketAddr,
    /// Envoy gRPC `ext_authz` listener (HTTP/2), off when `None`.
    pub grpc_listen: Option<SocketAddr>,
    /// Data directory; `None` = the embedded data.
    pub regions: Option<PathBuf>,
    /// Reload when files in the data directory change.
    pub watch: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log the client's truncated network (IPv4 /24, IPv6 /48) in decision logs.
    pub log_client_ip: bool,
    /// Per-decision log lines: off (the default), every decision, or one in N.
    pub decision_log: DecisionLog,
    /// How often a summary line of the decisions made is logged; `None`: never.
    pub summary_interval: Option<Duration>,
    /// How the public threads share connections.
    pub connection_steering: Steering,
    /// Front doors.
    pub mode: Mode,
    /// Evidence policy.
    pub policy: Policy,
    /// Who is the client.
    pub client: ClientAddressPolicy,
    /// GPS hint limits.
    pub gps: GpsLimits,
    /// Track routes, tried in order.
    pub routes: Vec<RoutePattern>,
    /// Auth subrequests.
    pub authz: AuthzConfig,
    /// Tracks in one POST preflight at most.
    pub max_batch: usize,
    /// `Cache-Control: private, max-age` of preflight answers.
    pub preflight_max_age: Duration,
    /// Reverse proxy (mode = proxy).
    pub proxy: Option<ProxyConfig>,
    /// Limits.
    pub limits: Limits,
    /// Admin bearer token, if configured.
    pub admin_token: Option<String>,
    /// Aggregate decision report: directory and retention in days (off when `None`).
    pub report: Option<(PathBuf, u32)>,
    /// Playback grants (`[grants]`; off when `None`).
    pub grants: Option<crate::grant::GrantSettings>,
}

/// Values given on the command line; they override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--admin-listen`
    pub admin_listen: Option<String>,
    /// `--grpc-listen`
    pub grpc_listen: Option<String>,
    /// `--regions`
    pub regions: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<String>,
}

/// Environment variables read, in the order of [`Overrides`] fields, plus mode, upstream and
/// the decision log.
pub const ENV_VARS: [&str; 7] = [
    "REGIONGATE_LISTEN",
    "REGIONGATE_ADMIN_LISTEN",
    "REGIONGATE_REGIONS",
    "REGIONGATE_LOG_FORMAT",
    "REGIONGATE_MODE",
    "REGIONGATE_UPSTREAM",
    "REGIONGATE_DECISION_LOG",
];

mod load;
#[cfg(test)]
mod tests;

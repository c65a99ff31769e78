//! Configuration: a TOML file, environment overrides, then command-line flags, turned into a
//! validated [`Config`] in one conversion. Nothing downstream re-checks it.
//!
//! Every key is documented in `deploy/regiongate.example.toml`. A bad value is one
//! [`ConfigError`] naming the key.

use crate::decide::Policy;
use crate::locate::cidr::CidrSet;
use crate::locate::forwarded::{ChainHeader, ClientAddressPolicy};
use crate::locate::hints::GpsLimits;
use crate::server::route::RoutePattern;
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    admin_listen: Option<String>,
    regions: Option<PathBuf>,
    watch: Option<bool>,
    log_format: Option<String>,
    log_client_ip: Option<bool>,
    connection_steering: Option<Steering>,
    mode: Option<Mode>,
    policy: Option<Policy>,
    #[serde(default)]
    client: RawClient,
    #[serde(default)]
    hints: RawHints,
    routes: Option<Vec<String>>,
    #[serde(default)]
    authz: RawAuthz,
    #[serde(default)]
    preflight: RawPreflight,
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    report: RawReport,
    #[serde(default)]
    grants: RawGrants,
}

// ---- [grants]: playback grants (src/grant/), kept together -------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    keys_dir: Option<PathBuf>,
    ttl_s: Option<u64>,
    query_param: Option<String>,
    bind_client_net: Option<bool>,
    on_invalid: Option<crate::grant::OnInvalid>,
    secure_link_prefix: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    sign_after_s: Option<u64>,
}

/// The `[grants]` section: off (`None`) without `keys_dir`; with it, the keys are read now
/// and a bad key directory is an error naming `grants.keys_dir`.
fn grant_settings(raw: RawGrants) -> Result<Option<crate::grant::GrantSettings>, ConfigError> {
    use crate::grant::{GrantSettings, MAX_TTL, MIN_TTL, OnInvalid, keys::KeyRing};
    let Some(keys_dir) = raw.keys_dir else {
        return Ok(None);
    };
    let ttl = Duration::from_secs(raw.ttl_s.unwrap_or(300));
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(err(
            "grants.ttl_s",
            format!(
                "must be between {} and {} seconds",
                MIN_TTL.as_secs(),
                MAX_TTL.as_secs()
            ),
        ));
    }
    let query_param = raw.query_param.unwrap_or_else(|| "rg_grant".into());
    if query_param.is_empty()
        || !query_param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(err("grants.query_param", "1 or more of A-Z a-z 0-9 _ -"));
    }
    let secure_link_prefix = raw
        .secure_link_prefix
        .unwrap_or_else(|| "/audio/{track}/".into());
    if !secure_link_prefix.starts_with('/') || secure_link_prefix.matches("{track}").count() != 1 {
        return Err(err(
            "grants.secure_link_prefix",
            "a path starting with / holding {track} once",
        ));
    }
    let sign_after = Duration::from_secs(raw.sign_after_s.unwrap_or(0));
    if sign_after > Duration::from_secs(86_400) {
        return Err(err("grants.sign_after_s", "at most 86400 (a day)"));
    }
    let initial_keys =
        KeyRing::load(&keys_dir).map_err(|e| err("grants.keys_dir", e.to_string()))?;
    Ok(Some(GrantSettings {
        keys_dir,
        ttl,
        query_param,
        bind_client_net: raw.bind_client_net.unwrap_or(false),
        on_invalid: raw.on_invalid.unwrap_or(OnInvalid::Decide),
        secure_link_prefix,
        jwt_issuer: raw.jwt_issuer.unwrap_or_else(|| "regiongate".into()),
        jwt_audience: raw.jwt_audience.unwrap_or_else(|| "playback".into()),
        sign_after,
        initial_keys: std::sync::Arc::new(initial_keys),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReport {
    dir: Option<PathBuf>,
    retention_days: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClient {
    trusted_proxies: Option<Vec<String>>,
    chain_header: Option<String>,
    trusted_header: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHints {
    max_accuracy_m: Option<f64>,
    wifi_max_accuracy_m: Option<f64>,
    max_age_s: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuthz {
    original_uri_header: Option<String>,
    original_method_header: Option<String>,
    path_prefix: Option<String>,
    tier_header: Option<String>,
    use_header: Option<String>,
    default_use: Option<String>,
    default_tier: Option<String>,
    deny_status: Option<u16>,
    need_precise_status: Option<u16>,
    unmatched: Option<Unmatched>,
    fast_path: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPreflight {
    max_batch: Option<usize>,
    max_age_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    upstream: Option<String>,
    blocked_by: Option<String>,
    unmatched: Option<Unmatched>,
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    grace_period_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_header_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_file: Option<PathBuf>,
    token_env: Option<String>,
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
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (health, metrics, reload).
    pub admin_listen: SocketAddr,
    /// Data directory; `None` = the embedded data.
    pub regions: Option<PathBuf>,
    /// Reload when files in the data directory change.
    pub watch: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log the client's truncated network (IPv4 /24, IPv6 /48) in decision logs.
    pub log_client_ip: bool,
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
    /// `--regions`
    pub regions: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<String>,
}

/// Environment variables read, in the order of [`Overrides`] fields, plus mode and upstream.
pub const ENV_VARS: [&str; 6] = [
    "REGIONGATE_LISTEN",
    "REGIONGATE_ADMIN_LISTEN",
    "REGIONGATE_REGIONS",
    "REGIONGATE_LOG_FORMAT",
    "REGIONGATE_MODE",
    "REGIONGATE_UPSTREAM",
];

fn header_name(
    key: &str,
    v: Option<String>,
    default: &'static str,
) -> Result<http::HeaderName, ConfigError> {
    match v {
        None => Ok(http::HeaderName::from_static(default)),
        Some(s) => http::HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes())
            .map_err(|_| err(key, format!("{s:?} is not a header name"))),
    }
}

fn addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|_| err(key, format!("{v:?} is not ADDR:PORT")))
}

fn status(key: &str, v: Option<u16>, default: u16) -> Result<http::StatusCode, ConfigError> {
    let code = v.unwrap_or(default);
    match http::StatusCode::from_u16(code) {
        Ok(s) if (400..600).contains(&code) => Ok(s),
        _ => Err(err(key, format!("{code} is not a 4xx or 5xx status"))),
    }
}

/// A TOML error as a [`ConfigError`]: the key is the dotted key of the line the error points
/// at (`limits.max_connections` for a bad value), else the text it points at when that looks
/// like a key (toml points at unknown keys), else `file`; the line is given either way.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let start = e.span().map(|sp| sp.start);
    let line = start.map(|at| {
        let before = &text.as_bytes()[..at.min(text.len())];
        before.iter().filter(|&&b| b == b'\n').count() + 1
    });
    let looks_like_key = |k: &str| {
        !k.is_empty()
            && k.len() <= 64
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    let key = start
        .and_then(|at| key_of_line(text, at))
        .or_else(|| {
            e.span()
                .and_then(|sp| text.get(sp))
                .map(|k| k.trim().trim_matches('"').to_owned())
        })
        .filter(|k| looks_like_key(k))
        .unwrap_or_else(|| "file".to_owned());
    let reason = match line {
        Some(line) => format!("{} (line {line})", e.message().trim_end()),
        None => e.message().trim_end().to_owned(),
    };
    err(&key, reason)
}

/// The dotted key (`table.key`) assigned on the line holding byte `at`, if it is a
/// `key = value` line.
fn key_of_line(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['))
        .and_then(|l| {
            let inner = l.trim_start_matches('[');
            inner.split_once(']').map(|(t, _)| t.trim())
        });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

/// Reads the admin token file, at most [`MAX_TOKEN_FILE_BYTES`].
fn read_token_file(f: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let io = |e: std::io::Error| err("admin.token_file", format!("{}: {e}", f.display()));
    let mut text = String::new();
    std::fs::File::open(f)
        .map_err(io)?
        .take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(err(
            "admin.token_file",
            format!(
                "{}: longer than the limit of {MAX_TOKEN_FILE_BYTES} bytes",
                f.display()
            ),
        ));
    }
    Ok(text)
}

impl Config {
    /// Builds the configuration from the file text (if any), the environment (a lookup
    /// function, so tests need not touch the process environment) and the flags.
    ///
    /// # Errors
    /// The first bad key.
    pub fn load(
        file_text: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        flags: Overrides,
    ) -> Result<Config, ConfigError> {
        if let Some(t) = file_text
            && t.len() > MAX_CONFIG_BYTES
        {
            return Err(err(
                "file",
                format!(
                    "{} bytes, more than the limit of {MAX_CONFIG_BYTES}",
                    t.len()
                ),
            ));
        }
        let raw: RawConfig = match file_text {
            Some(t) => toml::from_str(t).map_err(|e| toml_error(t, &e))?,
            None => RawConfig::default(),
        };
        let listen = flags
            .listen
            .or_else(|| env("REGIONGATE_LISTEN"))
            .or(raw.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let admin_listen = flags
            .admin_listen
            .or_else(|| env("REGIONGATE_ADMIN_LISTEN"))
            .or(raw.admin_listen)
            .unwrap_or_else(|| "127.0.0.1:9090".into());
        let regions = flags
            .regions
            .or_else(|| env("REGIONGATE_REGIONS").map(PathBuf::from))
            .or(raw.regions);
        let log_format = flags
            .log_format
            .or_else(|| env("REGIONGATE_LOG_FORMAT"))
            .or(raw.log_format)
            .map_or(Ok(LogFormat::Text), |s| s.parse())
            .map_err(|e| err("log_format", e))?;
        let mode = match env("REGIONGATE_MODE") {
            Some(m) => match m.as_str() {
                "authz" => Mode::Authz,
                "proxy" => Mode::Proxy,
                _ => {
                    return Err(err(
                        "mode",
                        format!("{m:?} is not authz or proxy (from REGIONGATE_MODE)"),
                    ));
                }
            },
            None => raw.mode.unwrap_or(Mode::Authz),
        };
        let policy = raw.policy.unwrap_or_default();
        if !(policy.plausible_km.is_finite() && policy.plausible_km >= 0.0) {
            return Err(err("policy.plausible_km", "must be a non-negative number"));
        }
        if policy
            .wifi_plausible_km
            .is_some_and(|km| !(km.is_finite() && km >= 0.0))
        {
            return Err(err(
                "policy.wifi_plausible_km",
                "must be a non-negative number",
            ));
        }
        let trusted = raw.client.trusted_proxies.unwrap_or_default().join(",");
        let trusted_proxies = CidrSet::parse(&trusted).map_err(|(_, item)| {
            err(
                "client.trusted_proxies",
                format!("{item:?} is not a network"),
            )
        })?;
        let chain = match raw
            .client
            .chain_header
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("x-forwarded-for") => ChainHeader::XForwardedFor,
            Some("forwarded") => ChainHeader::Forwarded,
            Some(other) => {
                return Err(err(
                    "client.chain_header",
                    format!("{other:?} is not x-forwarded-for or forwarded"),
                ));
            }
        };
        let trusted_header = raw
            .client
            .trusted_header
            .map(|h| header_name("client.trusted_header", Some(h), "x"))
            .transpose()?;
        let gps = GpsLimits {
            max_accuracy_m: raw
                .hints
                .max_accuracy_m
                .unwrap_or(GpsLimits::default().max_accuracy_m),
            max_wifi_accuracy_m: raw
                .hints
                .wifi_max_accuracy_m
                .unwrap_or(GpsLimits::default().max_wifi_accuracy_m),
            max_age_s: raw
                .hints
                .max_age_s
                .unwrap_or(GpsLimits::default().max_age_s),
        };
        if !(gps.max_accuracy_m.is_finite() && gps.max_accuracy_m > 0.0) {
            return Err(err(
                "hints.max_accuracy_m",
                "must be a positive number of metres",
            ));
        }
        if !(gps.max_wifi_accuracy_m.is_finite() && gps.max_wifi_accuracy_m > 0.0) {
            return Err(err(
                "hints.wifi_max_accuracy_m",
                "must be a positive number of metres",
            ));
        }
        if gps.max_age_s <= 0 {
            return Err(err(
                "hints.max_age_s",
                "must be a positive number of seconds",
            ));
        }
        let routes = raw
            .routes
            .unwrap_or_else(|| {
                vec![
                    "/audio/{track}/{*rest}".to_owned(),
                    "/tracks/{track}".to_owned(),
                ]
            })
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.parse::<RoutePattern>()
                    .map_err(|e| err(&format!("routes[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let a = raw.authz;
        let authz = AuthzConfig {
            original_uri_header: header_name(
                "authz.original_uri_header",
                a.original_uri_header,
                "x-original-uri",
            )?,
            original_method_header: header_name(
                "authz.original_method_header",
                a.original_method_header,
                "x-original-method",
            )?,
            path_prefix: a.path_prefix.unwrap_or_else(|| "/v1/authz".into()),
            tier_header: header_name("authz.tier_header", a.tier_header, "x-regiongate-tier")?,
            use_header: header_name("authz.use_header", a.use_header, "x-regiongate-use")?,
            default_use: a
                .default_use
                .map_or(Ok(crate::license::UseType::OnDemandStream), |u| u.parse())
                .map_err(|e| err("authz.default_use", e))?,
            default_tier: a
                .default_tier
                .map_or(Ok(crate::license::Tier::Free), |t| t.parse())
                .map_err(|e| err("authz.default_tier", e))?,
            deny_status: status("authz.deny_status", a.deny_status, 403)?,
            need_precise_status: status("authz.need_precise_status", a.need_precise_status, 428)?,
            unmatched: a.unmatched.unwrap_or(Unmatched::Deny),
            fast_path: a.fast_path.unwrap_or(true),
        };
        if !authz.path_prefix.starts_with('/') || authz.path_prefix.ends_with('/') {
            return Err(err(
                "authz.path_prefix",
                "must start with / and not end with /",
            ));
        }
        let max_batch = raw.preflight.max_batch.unwrap_or(100);
        if !(1..=10_000).contains(&max_batch) {
            return Err(err("preflight.max_batch", "must be between 1 and 10000"));
        }
        let upstream = env("REGIONGATE_UPSTREAM").or(raw.proxy.upstream);
        let proxy = match (mode, upstream) {
            (Mode::Authz, _) => None,
            (Mode::Proxy, None) => {
                return Err(err(
                    "proxy.upstream",
                    "mode = \"proxy\" needs an upstream (http://host:port)",
                ));
            }
            (Mode::Proxy, Some(u)) => {
                let uri: http::Uri = u
                    .parse()
                    .map_err(|_| err("proxy.upstream", format!("{u:?} is not a URI")))?;
                let plain = uri.scheme_str() == Some("http")
                    && uri.authority().is_some()
                    && uri
                        .path_and_query()
                        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty());
                if !plain {
                    return Err(err(
                        "proxy.upstream",
                        "must be http://host:port with no path (TLS to the origin is terminated by a sidecar)",
                    ));
                }
                Some(ProxyConfig {
                    upstream: uri,
                    blocked_by: raw
                        .proxy
                        .blocked_by
                        .unwrap_or_else(|| "https://licensing.example.invalid/territories".into()),
                    unmatched: raw.proxy.unmatched.unwrap_or(Unmatched::Allow),
                    connect_timeout: Duration::from_millis(
                        raw.proxy.connect_timeout_ms.unwrap_or(1_000),
                    ),
                    response_timeout: Duration::from_millis(
                        raw.proxy.response_timeout_ms.unwrap_or(10_000),
                    ),
                })
            }
        };
        let l = raw.limits;
        let limits = Limits {
            max_connections: l.max_connections.unwrap_or(10_000),
            header_read_timeout: Duration::from_millis(l.header_read_timeout_ms.unwrap_or(5_000)),
            request_timeout: Duration::from_millis(l.request_timeout_ms.unwrap_or(5_000)),
            grace_period: Duration::from_millis(l.grace_period_ms.unwrap_or(10_000)),
            max_body_bytes: l.max_body_bytes.unwrap_or(64 * 1024),
            max_headers: l.max_headers.unwrap_or(100),
            max_header_bytes: l.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES),
        };
        if limits.max_connections == 0 {
            return Err(err("limits.max_connections", "must be at least 1"));
        }
        if !(1..=1000).contains(&limits.max_headers) {
            return Err(err("limits.max_headers", "must be between 1 and 1000"));
        }
        if !(MIN_HEADER_BYTES_LIMIT..=MAX_HEADER_BYTES_LIMIT).contains(&limits.max_header_bytes) {
            return Err(err(
                "limits.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES_LIMIT} and {MAX_HEADER_BYTES_LIMIT}"),
            ));
        }
        if !(1..=MAX_BODY_BYTES_LIMIT).contains(&limits.max_body_bytes) {
            return Err(err(
                "limits.max_body_bytes",
                format!("must be between 1 and {MAX_BODY_BYTES_LIMIT}"),
            ));
        }
        for (key, d) in [
            ("limits.header_read_timeout_ms", limits.header_read_timeout),
            ("limits.request_timeout_ms", limits.request_timeout),
        ] {
            if d.is_zero() {
                return Err(err(key, "must be at least 1"));
            }
        }
        let admin_token = match (&raw.admin.token_file, &raw.admin.token_env) {
            (Some(_), Some(_)) => return Err(err("admin", "token_file and token_env: give one")),
            (Some(f), None) => Some(read_token_file(f)?.trim().to_owned()),
            (None, Some(v)) => Some(
                env(v)
                    .ok_or_else(|| {
                        err(
                            "admin.token_env",
                            format!("environment variable {v} is not set"),
                        )
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(err(
                "admin",
                "the admin token must be at least 16 characters",
            ));
        }
        let admin_listen = addr("admin_listen", &admin_listen)?;
        Ok(Config {
            listen: addr("listen", &listen)?,
            admin_listen,
            regions,
            watch: raw.watch.unwrap_or(true),
            log_format,
            log_client_ip: raw.log_client_ip.unwrap_or(false),
            connection_steering: raw.connection_steering.unwrap_or(Steering::Auto),
            mode,
            policy,
            client: ClientAddressPolicy {
                trusted_proxies,
                chain,
                trusted_header,
            },
            gps,
            routes,
            authz,
            max_batch,
            preflight_max_age: Duration::from_secs(raw.preflight.max_age_s.unwrap_or(60)),
            proxy,
            limits,
            admin_token,
            report: match raw.report.dir {
                Some(d) => {
                    let days = raw.report.retention_days.unwrap_or(30);
                    if days == 0 {
                        return Err(err("report.retention_days", "must be at least 1"));
                    }
                    Some((d, days))
                }
                None => None,
            },
            grants: grant_settings(raw.grants)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults() {
        let c = Config::load(None, no_env, Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.mode, Mode::Authz);
        assert!(!c.policy.fail_open);
        assert_eq!(c.authz.deny_status, 403);
        assert_eq!(c.limits.max_header_bytes, 32 * 1024);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file = "listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n";
        let env = |k: &str| (k == "REGIONGATE_LISTEN").then(|| "127.0.0.1:3".to_owned());
        let c = Config::load(Some(file), env, Overrides::default()).expect("ok");
        assert_eq!((c.listen.port(), c.admin_listen.port()), (3, 2));
        let flags = Overrides {
            listen: Some("127.0.0.1:4".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load(Some(file), env, flags)
                .expect("ok")
                .listen
                .port(),
            4
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("lisen = \"127.0.0.1:1\"", "lisen"),
            ("[policy]\nkind = \"lenient\"", "lenient"),
            ("[authz]\ndeny_status = 200", "authz.deny_status"),
            ("routes = [\"/audio/{rest}\"]", "routes[0]"),
            ("mode = \"proxy\"", "proxy.upstream"),
            (
                "mode = \"proxy\"\n[proxy]\nupstream = \"http://o:1/x\"",
                "proxy.upstream",
            ),
            (
                "[client]\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "client.trusted_proxies",
            ),
            ("[hints]\nmax_age_s = 0", "hints.max_age_s"),
            (
                "[hints]\nwifi_max_accuracy_m = 0.0",
                "hints.wifi_max_accuracy_m",
            ),
            (
                "[policy]\nwifi_plausible_km = -1.0",
                "policy.wifi_plausible_km",
            ),
            (
                "[admin]\ntoken_env = \"REGIONGATE_TEST_UNSET\"",
                "admin.token_env",
            ),
        ];
        for (text, key) in cases {
            let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn limits_are_checked_with_the_key_and_the_bounds() {
        let cases = [
            (
                "[preflight]\nmax_batch = 0",
                "config key `preflight.max_batch`: must be between 1 and 10000",
            ),
            (
                "[preflight]\nmax_batch = 10001",
                "config key `preflight.max_batch`: must be between 1 and 10000",
            ),
            (
                "[limits]\nmax_headers = 0",
                "config key `limits.max_headers`: must be between 1 and 1000",
            ),
            (
                "[limits]\nmax_headers = 1001",
                "config key `limits.max_headers`: must be between 1 and 1000",
            ),
            (
                "[limits]\nmax_header_bytes = 8191",
                "config key `limits.max_header_bytes`: must be between 8192 and 1048576",
            ),
            (
                "[limits]\nmax_header_bytes = 1048577",
                "config key `limits.max_header_bytes`: must be between 8192 and 1048576",
            ),
            (
                "[limits]\nmax_connections = 0",
                "config key `limits.max_connections`: must be at least 1",
            ),
            (
                "[limits]\nmax_body_bytes = 0",
                "config key `limits.max_body_bytes`: must be between 1 and 16777216",
            ),
            (
                "[limits]\nmax_body_bytes = 16777217",
                "config key `limits.max_body_bytes`: must be between 1 and 16777216",
            ),
            (
                "[limits]\nheader_read_timeout_ms = 0",
                "config key `limits.header_read_timeout_ms`: must be at least 1",
            ),
            (
                "[limits]\nrequest_timeout_ms = 0",
                "config key `limits.request_timeout_ms`: must be at least 1",
            ),
            (
                "[hints]\nmax_accuracy_m = -1.0",
                "config key `hints.max_accuracy_m`: must be a positive number of metres",
            ),
            (
                "[hints]\nmax_accuracy_m = nan",
                "config key `hints.max_accuracy_m`: must be a positive number of metres",
            ),
        ];
        for (text, want) in cases {
            let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
            assert_eq!(e.to_string(), want, "{text}");
        }
        // The largest values accepted are accepted.
        let text = "[preflight]\nmax_batch = 10000\n[limits]\nmax_headers = 1000\nmax_body_bytes = 16777216\nmax_header_bytes = 1048576\n";
        let c = Config::load(Some(text), no_env, Overrides::default()).expect("at the limits");
        assert_eq!(
            (
                c.max_batch,
                c.limits.max_headers,
                c.limits.max_body_bytes,
                c.limits.max_header_bytes
            ),
            (10_000, 1000, 16 * 1024 * 1024, 1024 * 1024)
        );
        // And the smallest.
        let c = Config::load(
            Some("[limits]\nmax_header_bytes = 8192\n"),
            no_env,
            Overrides::default(),
        )
        .expect("at the lower limit");
        assert_eq!(c.limits.max_header_bytes, 8192);
    }

    #[test]
    fn more_bad_values_are_named() {
        let long_route = format!("routes = [\"/{}/{{track}}\"]", "a".repeat(600));
        let cases = [
            (
                long_route.as_str(),
                "config key `routes[0]`: pattern too long",
            ),
            (
                "[client]\nchain_header = \"x-real-ip\"",
                "config key `client.chain_header`: \"x-real-ip\" is not x-forwarded-for or forwarded",
            ),
            (
                "[authz]\npath_prefix = \"v1/\"",
                "config key `authz.path_prefix`: must start with / and not end with /",
            ),
            (
                "[authz]\ndefault_tier = \"gold\"",
                "config key `authz.default_tier`: unknown tier \"gold\" (expected free or premium)",
            ),
            (
                "[report]\ndir = \"/tmp/r\"\nretention_days = 0",
                "config key `report.retention_days`: must be at least 1",
            ),
            (
                "[admin]\ntoken_file = \"/t\"\ntoken_env = \"T\"",
                "config key `admin`: token_file and token_env: give one",
            ),
            (
                "[limits]\nmax_connections = -1",
                "config key `limits.max_connections`: invalid value: integer `-1`, expected usize (line 2)",
            ),
        ];
        for (text, want) in cases {
            let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
            assert_eq!(e.to_string(), want, "{text}");
        }
    }

    #[test]
    fn a_huge_or_unreadable_file_is_refused() {
        let big = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        let e = Config::load(Some(&big), no_env, Overrides::default()).expect_err("too big");
        assert_eq!(e.key, "file");
        assert!(e.reason.contains("more than the limit of 1048576"), "{e}");
        for text in ["listen = ", "[limits\n", "routes = \"x\"", "\u{0}"] {
            let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
            assert!(!e.reason.is_empty(), "{text}: {e}");
        }
        // Found by fuzzing (fuzz/corpus/config/regression-empty-key): a span on whitespace gave
        // an empty key name.
        let text =
            "[report]\ndir = \"/tmp/r\"\nretention_d[admin]\ntoken_file = \"/nays onexi= stent0\"";
        let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
        assert_eq!(e.key, "file", "{e}");
        assert!(e.reason.ends_with("(line 3)"), "{e}");
    }

    #[test]
    fn the_token_file_is_read_up_to_a_limit() {
        let dir =
            std::env::temp_dir().join(format!("regiongate-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let long = dir.join("long-token");
        std::fs::write(&long, "t".repeat(MAX_TOKEN_FILE_BYTES as usize + 1)).expect("write");
        let good = dir.join("token");
        std::fs::write(&good, "0123456789abcdef0123\n").expect("write");
        let load = |p: &std::path::Path| {
            let text = format!("[admin]\ntoken_file = {:?}\n", p.display().to_string());
            Config::load(Some(&text), no_env, Overrides::default())
        };
        let e = load(&long).expect_err("too long");
        assert_eq!(e.key, "admin.token_file");
        assert!(
            e.reason.contains("longer than the limit of 4096 bytes"),
            "{e}"
        );
        // An endless file is cut at the limit rather than read forever.
        let e = load(std::path::Path::new("/dev/zero")).expect_err("endless");
        assert!(e.reason.contains("longer than the limit"), "{e}");
        assert_eq!(
            load(&good).expect("token").admin_token.as_deref(),
            Some("0123456789abcdef0123")
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

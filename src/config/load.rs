//! Reading the configuration: the file's raw shape (every key optional, unknown keys refused),
//! then [`Config::load`], which applies flags over environment over file over defaults and
//! checks every value, naming its key.

use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    admin_listen: Option<String>,
    grpc_listen: Option<String>,
    regions: Option<PathBuf>,
    watch: Option<bool>,
    log_format: Option<String>,
    log_client_ip: Option<bool>,
    decision_log: Option<String>,
    summary_interval_s: Option<u64>,
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
    max_concurrent_streams: Option<u32>,
    grpc_max_message_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_file: Option<PathBuf>,
    token_env: Option<String>,
}

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
        let decision_log = env("REGIONGATE_DECISION_LOG")
            .or(raw.decision_log)
            .map_or(Ok(DecisionLog::Off), |s| s.parse())
            .map_err(|e| err("decision_log", e))?;
        let summary_interval = match raw.summary_interval_s.unwrap_or(60) {
            0 => None,
            s if s > 86_400 => {
                return Err(err(
                    "summary_interval_s",
                    "at most 86400 (a day); 0 turns it off",
                ));
            }
            s => Some(Duration::from_secs(s)),
        };
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
            max_concurrent_streams: l.max_concurrent_streams.unwrap_or(256),
            grpc_max_message_bytes: l.grpc_max_message_bytes.unwrap_or(64 * 1024),
        };
        if !(1..=10_000).contains(&limits.max_concurrent_streams) {
            return Err(err(
                "limits.max_concurrent_streams",
                "must be between 1 and 10000",
            ));
        }
        if !(1024..=MAX_BODY_BYTES_LIMIT).contains(&limits.grpc_max_message_bytes) {
            return Err(err(
                "limits.grpc_max_message_bytes",
                format!("must be between 1024 and {MAX_BODY_BYTES_LIMIT}"),
            ));
        }
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
        let grpc_listen = flags
            .grpc_listen
            .clone()
            .or_else(|| env("REGIONGATE_GRPC_LISTEN"))
            .or(raw.grpc_listen)
            .map(|a| addr("grpc_listen", &a))
            .transpose()?;
        Ok(Config {
            listen: addr("listen", &listen)?,
            admin_listen,
            grpc_listen,
            regions,
            watch: raw.watch.unwrap_or(true),
            log_format,
            log_client_ip: raw.log_client_ip.unwrap_or(false),
            decision_log,
            summary_interval,
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

//! Metrics: typed families on a registry created by the caller (no global registry). Labels
//! are small enums: front door, verdict, reason, source, upstream error kind. Never a track,
//! an address or a territory outside the known set.

use crate::decide::Decision;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The front door a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// `GET /v1/tracks/{id}/playability`, `POST /v1/playability`.
    Preflight,
    /// `GET /v1/territory`.
    Territory,
    /// Auth subrequests.
    Authz,
    /// Reverse proxy.
    Proxy,
    /// Anything else (404s, bad requests before routing).
    Other,
}

impl Door {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Preflight => "preflight",
            Door::Territory => "territory",
            Door::Authz => "authz",
            Door::Proxy => "proxy",
            Door::Other => "other",
        }
    }
}

/// Upstream failures of the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Connection refused or failed.
    Connect,
    /// No response headers in time.
    Timeout,
    /// The connection broke or the response was malformed.
    Protocol,
    /// The response body broke off mid-stream.
    Body,
}

impl UpstreamError {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol => "protocol",
            UpstreamError::Body => "body",
        }
    }
}

/// All metric families of the service.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    latency: HistogramVec,
    upstream_errors: IntCounterVec,
    /// Open connections on the public listener.
    pub open_connections: IntGauge,
    data_version: IntGaugeVec,
    reloads: IntCounterVec,
    reload_seconds: Histogram,
}

impl Metrics {
    /// Registers every family on `registry`.
    ///
    /// # Errors
    /// If a family is already registered there.
    pub fn new(registry: Registry) -> prometheus::Result<Metrics> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "regiongate_decisions_total",
                "Playback decisions by front door, verdict, reason and evidence source",
            ),
            &["door", "verdict", "reason", "source"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "regiongate_request_duration_seconds",
                "Request handling time by front door (proxy: until response headers)",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 1.0, 5.0,
            ]),
            &["door"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "regiongate_upstream_errors_total",
                "Proxy upstream failures by kind",
            ),
            &["kind"],
        )?;
        let open_connections = IntGauge::new(
            "regiongate_open_connections",
            "Open connections on the public listener",
        )?;
        let build = IntGaugeVec::new(
            Opts::new("regiongate_build_info", "Build of the running binary"),
            &["version"],
        )?;
        let data_version = IntGaugeVec::new(
            Opts::new(
                "regiongate_data_version_info",
                "Content version of the data being served (1 for the current one)",
            ),
            &["data_version"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("regiongate_reloads_total", "Data reloads by result"),
            &["result"],
        )?;
        let reload_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "regiongate_reload_duration_seconds",
                "Time to build and swap a new snapshot",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(build.clone()))?;
        registry.register(Box::new(data_version.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(reload_seconds.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Pre-create the small label sets so dashboards see zeros rather than gaps.
        for k in [
            UpstreamError::Connect,
            UpstreamError::Timeout,
            UpstreamError::Protocol,
            UpstreamError::Body,
        ] {
            upstream_errors.with_label_values(&[k.as_str()]);
        }
        for r in ["ok", "failed"] {
            reloads.with_label_values(&[r]);
        }
        Ok(Metrics {
            registry,
            decisions,
            latency,
            upstream_errors,
            open_connections,
            data_version,
            reloads,
            reload_seconds,
        })
    }

    /// Counts a decision.
    pub fn decision(&self, door: Door, d: &Decision) {
        self.decisions
            .with_label_values(&[
                door.as_str(),
                d.verdict.as_str(),
                d.reason.as_str(),
                d.source.as_str(),
            ])
            .inc();
    }

    /// Records a request's handling time.
    pub fn latency(&self, door: Door, seconds: f64) {
        self.latency
            .with_label_values(&[door.as_str()])
            .observe(seconds);
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Sets the data version being served (the previous one is removed).
    pub fn set_data_version(&self, version: &str) {
        self.data_version.reset();
        self.data_version.with_label_values(&[version]).set(1);
    }

    /// Counts a reload and its duration.
    pub fn reload(&self, ok: bool, seconds: f64) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
        self.reload_seconds.observe(seconds);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

//! Metrics: typed families on a registry created by the caller (no global registry). Labels
//! are small enums: front door, verdict, reason, source, upstream error kind. Never a track,
//! an address or a territory outside the known set.

use crate::decide::{Decision, Reason, Source, Verdict};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub use crate::gate::Door;

/// Decision counts by door and verdict ([`Metrics::decision_totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionTotals {
    counts: [[u64; Verdict::ALL.len()]; Door::ALL.len()],
}

impl DecisionTotals {
    /// The decisions of `door` with `verdict`.
    pub fn get(&self, door: Door, verdict: Verdict) -> u64 {
        self.counts[door as usize][verdict as usize]
    }

    /// Every decision.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// What was counted since `earlier` (a later reading minus an earlier one).
    pub fn since(&self, earlier: &DecisionTotals) -> DecisionTotals {
        let mut d = *self;
        for (row, old) in d.counts.iter_mut().zip(&earlier.counts) {
            for (n, o) in row.iter_mut().zip(old) {
                *n = n.saturating_sub(*o);
            }
        }
        d
    }

    /// Logs the summary line of these counts (target `regiongate::summary`, level `info`):
    /// totals per verdict and per door, no track, territory or client.
    pub fn log(&self, seconds: u64, data_version: &str) {
        let verdict = |v| Door::ALL.iter().map(|&d| self.get(d, v)).sum::<u64>();
        let door = |d| Verdict::ALL.iter().map(|&v| self.get(d, v)).sum::<u64>();
        tracing::info!(
            target: "regiongate::summary",
            seconds,
            decisions = self.total(),
            allow = verdict(Verdict::Allow),
            deny = verdict(Verdict::Deny),
            need_precise_location = verdict(Verdict::NeedPreciseLocation),
            preflight = door(Door::Preflight),
            authz = door(Door::Authz),
            authz_grpc = door(Door::AuthzGrpc),
            proxy = door(Door::Proxy),
            data_version,
            "decisions since the last summary"
        );
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

/// The request path's two families, counted per thread and summed when scraped.
///
/// `with_label_values` hashes the label values and takes the family's lock on every call, and
/// a shared counter or histogram is a cache line that every core writes on every request (the
/// public listener runs one thread per core). Here a request adds one to a cell of its
/// thread's slot, indexed by the label enums' discriminants, which no other core writes; the
/// prometheus families keep their names, help, labels and buckets, and the text exposition is
/// the same: a label combination appears once it has been used (`with_label_values` creates
/// its series then), never the 780 decision combinations at zero, and its value is the sum of
/// the slots at scrape time.
struct Hot {
    decisions: IntCounterVec,
    latency: HistogramVec,
    /// Whether a label combination's series exists yet ([`decision_index`]).
    decision_series: Box<[OnceLock<()>]>,
    /// The same per door.
    latency_series: [OnceLock<()>; Door::ALL.len()],
    slots: Box<[Slot]>,
}

/// Request latency buckets (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// How many slots threads are spread over (a thread takes the next one, round robin: the
/// public shards, one per core, each get their own).
const SLOTS: usize = 16;

const DECISION_CELLS: usize =
    Door::ALL.len() * Verdict::ALL.len() * Reason::ALL.len() * Source::ALL.len();

fn decision_index(door: Door, d: &Decision) -> usize {
    ((door as usize * Verdict::ALL.len() + d.verdict as usize) * Reason::ALL.len()
        + d.reason as usize)
        * Source::ALL.len()
        + d.source as usize
}

/// One thread's counters, on cache lines of their own.
#[repr(align(128))]
struct Slot {
    decisions: [AtomicU64; DECISION_CELLS],
    /// Per door: a count per bucket, the last one above the highest bound.
    latency: [[AtomicU64; LATENCY_BUCKETS.len() + 1]; Door::ALL.len()],
    /// Per door: the sum of the observations, `f64` bits.
    latency_sum: [AtomicU64; Door::ALL.len()],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            decisions: [const { AtomicU64::new(0) }; DECISION_CELLS],
            latency: [const { [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len() + 1] };
                Door::ALL.len()],
            latency_sum: [const { AtomicU64::new(0) }; Door::ALL.len()],
        }
    }
}

/// This thread's slot number.
fn slot_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

impl Hot {
    fn slot(&self) -> &Slot {
        &self.slots[slot_index() % self.slots.len()]
    }

    fn decision(&self, door: Door, d: &Decision) {
        let i = decision_index(door, d);
        // The index is in range by construction; `get` keeps a mistake from panicking.
        let Some(series) = self.decision_series.get(i) else {
            return;
        };
        series.get_or_init(|| {
            self.decisions.with_label_values(&[
                door.as_str(),
                d.verdict.as_str(),
                d.reason.as_str(),
                d.source.as_str(),
            ]);
        });
        self.slot().decisions[i].fetch_add(1, Ordering::Relaxed);
    }

    fn latency(&self, door: Door, seconds: f64) {
        let door_i = door as usize;
        self.latency_series[door_i].get_or_init(|| {
            self.latency.with_label_values(&[door.as_str()]);
        });
        let slot = self.slot();
        // As prometheus does: the first bucket whose bound is not below the value.
        let b = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        slot.latency[door_i][b].fetch_add(1, Ordering::Relaxed);
        let sum = &slot.latency_sum[door_i];
        let mut old = sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + seconds).to_bits();
            match sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
    }

    fn decision_total(&self, i: usize) -> u64 {
        self.slots
            .iter()
            .map(|s| s.decisions[i].load(Ordering::Relaxed))
            .sum()
    }
}

fn label<'m>(m: &'m proto::Metric, name: &str) -> Option<&'m str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// The cell of a decision series, from its labels.
fn decision_index_of(m: &proto::Metric) -> Option<usize> {
    let door = Door::ALL
        .into_iter()
        .find(|d| Some(d.as_str()) == label(m, "door"))?;
    let verdict = Verdict::ALL
        .into_iter()
        .find(|v| Some(v.as_str()) == label(m, "verdict"))?;
    let reason = Reason::ALL
        .into_iter()
        .find(|r| Some(r.as_str()) == label(m, "reason"))?;
    let source = Source::ALL
        .into_iter()
        .find(|s| Some(s.as_str()) == label(m, "source"))?;
    let d = Decision {
        verdict,
        reason,
        territory: None,
        deal: None,
        valid_until: None,
        source,
        touched: Default::default(),
    };
    Some(decision_index(door, &d))
}

impl Collector for Hot {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.decisions.desc();
        d.extend(self.latency.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.decisions.collect();
        for m in families.iter_mut().flat_map(|f| f.mut_metric().iter_mut()) {
            if let Some(i) = decision_index_of(m) {
                let mut c = proto::Counter::default();
                c.set_value(self.decision_total(i) as f64);
                m.set_counter(c);
            }
        }
        let mut latency = self.latency.collect();
        for m in latency.iter_mut().flat_map(|f| f.mut_metric().iter_mut()) {
            let Some(door) = Door::ALL
                .into_iter()
                .find(|d| Some(d.as_str()) == label(m, "door"))
            else {
                continue;
            };
            let (mut counts, mut sum) = ([0u64; LATENCY_BUCKETS.len() + 1], 0.0);
            for s in self.slots.iter() {
                for (c, cell) in counts.iter_mut().zip(&s.latency[door as usize]) {
                    *c += cell.load(Ordering::Relaxed);
                }
                sum += f64::from_bits(s.latency_sum[door as usize].load(Ordering::Relaxed));
            }
            // The count is the sum of the buckets, so that it agrees with them.
            let mut h = proto::Histogram::default();
            let mut cumulative = 0;
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
            for (bound, c) in LATENCY_BUCKETS.iter().zip(counts) {
                cumulative += c;
                let mut b = proto::Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                buckets.push(b);
            }
            h.set_bucket(buckets);
            h.set_sample_count(cumulative + counts[LATENCY_BUCKETS.len()]);
            h.set_sample_sum(sum);
            m.set_histogram(h);
        }
        families.extend(latency);
        families
    }
}

/// The registry's handle on [`Hot`] (the registry takes a boxed collector).
struct HotFamilies(Arc<Hot>);

impl Collector for HotFamilies {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// All metric families of the service.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    hot: Arc<Hot>,
    upstream_errors: IntCounterVec,
    /// Open connections on the public listener.
    pub open_connections: IntGauge,
    /// Open connections on the public listener by shard (public thread): how evenly the
    /// connection steering spreads them.
    pub shard_connections: IntGaugeVec,
    /// Public threads (shards), labelled with the connection steering in effect (set once at
    /// start by whoever runs the shards).
    pub public_threads: IntGaugeVec,
    /// Connections of the public listener closed to make room at the connection limit
    /// (counted by `shed::Slots`).
    pub connections_shed: IntCounter,
    data_version: IntGaugeVec,
    reloads: IntCounterVec,
    reload_seconds: Histogram,
    /// Playback grant families (src/grant/).
    pub grants: crate::grant::GrantMetrics,
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
            .buckets(LATENCY_BUCKETS.to_vec()),
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
        let shard_connections = IntGaugeVec::new(
            Opts::new(
                "regiongate_shard_open_connections",
                "Open connections on the public listener by shard (public thread)",
            ),
            &["shard"],
        )?;
        let public_threads = IntGaugeVec::new(
            Opts::new(
                "regiongate_public_threads",
                "Public threads (shards) by the connection steering in effect",
            ),
            &["steering"],
        )?;
        let connections_shed = IntCounter::new(
            "regiongate_connections_shed_total",
            "Connections closed unanswered to make room at the connection limit",
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
        let hot = Arc::new(Hot {
            decisions,
            latency,
            decision_series: (0..DECISION_CELLS).map(|_| OnceLock::new()).collect(),
            latency_series: Default::default(),
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        });
        registry.register(Box::new(HotFamilies(hot.clone())))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(shard_connections.clone()))?;
        registry.register(Box::new(public_threads.clone()))?;
        registry.register(Box::new(connections_shed.clone()))?;
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
        let grants = crate::grant::GrantMetrics::register(&registry)?;
        Ok(Metrics {
            grants,
            registry,
            hot,
            upstream_errors,
            open_connections,
            shard_connections,
            public_threads,
            connections_shed,
            data_version,
            reloads,
            reload_seconds,
        })
    }

    /// Counts a decision.
    pub fn decision(&self, door: Door, d: &Decision) {
        self.hot.decision(door, d);
    }

    /// Decisions made so far, by door and verdict (summed over reasons and sources).
    pub fn decision_totals(&self) -> DecisionTotals {
        let mut t = DecisionTotals::default();
        let per_door = Verdict::ALL.len() * Reason::ALL.len() * Source::ALL.len();
        let per_verdict = Reason::ALL.len() * Source::ALL.len();
        for i in 0..DECISION_CELLS {
            let n = self.hot.decision_total(i);
            if n > 0 {
                t.counts[i / per_door][i % per_door / per_verdict] += n;
            }
        }
        t
    }

    /// Records a request's handling time.
    pub fn latency(&self, door: Door, seconds: f64) {
        self.hot.latency(door, seconds);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_combination_has_its_own_cell() {
        let mut seen = std::collections::HashSet::new();
        for door in Door::ALL {
            for verdict in Verdict::ALL {
                for reason in Reason::ALL {
                    for source in Source::ALL {
                        let d = Decision {
                            verdict,
                            reason,
                            territory: None,
                            deal: None,
                            valid_until: None,
                            source,
                            touched: Default::default(),
                        };
                        let i = decision_index(door, &d);
                        assert!(i < DECISION_CELLS);
                        assert!(seen.insert(i), "{door:?} {verdict:?} {reason:?} {source:?}");
                    }
                }
            }
        }
        for (i, door) in Door::ALL.into_iter().enumerate() {
            assert_eq!(door as usize, i);
        }
        for (i, v) in Verdict::ALL.into_iter().enumerate() {
            assert_eq!(v as usize, i);
        }
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        for (i, s) in Source::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i);
        }
    }

    #[test]
    fn cached_children_count_in_the_family() {
        let m = Metrics::new(Registry::new()).expect("metrics");
        let d = Decision {
            verdict: Verdict::Deny,
            reason: Reason::NotLicensedInTerritory,
            territory: None,
            deal: None,
            valid_until: None,
            source: Source::Ip,
            touched: Default::default(),
        };
        for _ in 0..3 {
            m.decision(Door::Authz, &d);
        }
        m.clone().decision(Door::Authz, &d);
        m.latency(Door::Authz, 0.001);
        let text = m.render();
        assert!(text.contains(
            r#"regiongate_decisions_total{door="authz",reason="not_licensed_in_territory",source="ip",verdict="deny"} 4"#
        ), "{text}");
        assert!(text.contains(r#"regiongate_request_duration_seconds_count{door="authz"} 1"#));
        assert!(!text.contains(r#"door="proxy""#), "unused doors stay out");
    }

    #[test]
    fn labels_lead_back_to_the_cell() {
        for door in Door::ALL {
            for verdict in Verdict::ALL {
                for reason in Reason::ALL {
                    for source in Source::ALL {
                        let d = Decision {
                            verdict,
                            reason,
                            territory: None,
                            deal: None,
                            valid_until: None,
                            source,
                            touched: Default::default(),
                        };
                        let mut m = proto::Metric::default();
                        m.set_label(
                            [
                                ("door", door.as_str()),
                                ("reason", reason.as_str()),
                                ("source", source.as_str()),
                                ("verdict", verdict.as_str()),
                            ]
                            .into_iter()
                            .map(|(n, v)| {
                                let mut l = proto::LabelPair::default();
                                l.set_name(n.to_owned());
                                l.set_value(v.to_owned());
                                l
                            })
                            .collect(),
                        );
                        assert_eq!(decision_index_of(&m), Some(decision_index(door, &d)));
                    }
                }
            }
        }
    }

    /// The lines of `text` about `name`.
    fn family(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(name))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn exposition_is_what_the_prometheus_families_give() {
        // The same observations into plain prometheus families and into Metrics, from several
        // threads: the text must be the same.
        let m = Metrics::new(Registry::new()).expect("metrics");
        let reference = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "regiongate_decisions_total",
                "Playback decisions by front door, verdict, reason and evidence source",
            ),
            &["door", "verdict", "reason", "source"],
        )
        .expect("family");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "regiongate_request_duration_seconds",
                "Request handling time by front door (proxy: until response headers)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["door"],
        )
        .expect("family");
        reference
            .register(Box::new(decisions.clone()))
            .expect("register");
        reference
            .register(Box::new(latency.clone()))
            .expect("register");
        let values = [
            0.00001, 0.00005, 0.00007, 0.0003, 0.002, 0.02, 0.3, 2.0, 7.5, 0.0001,
        ];
        std::thread::scope(|scope| {
            for t in 0..4usize {
                let m = m.clone();
                scope.spawn(move || {
                    for (k, v) in values.iter().enumerate() {
                        let door = Door::ALL[(t + k) % 3];
                        let d = Decision {
                            verdict: Verdict::ALL[k % 3],
                            reason: Reason::ALL[(t * 7 + k) % Reason::ALL.len()],
                            territory: None,
                            deal: None,
                            valid_until: None,
                            source: Source::ALL[t % 4],
                            touched: Default::default(),
                        };
                        m.decision(door, &d);
                        m.latency(door, *v);
                    }
                });
            }
        });
        for t in 0..4usize {
            for (k, v) in values.iter().enumerate() {
                let door = Door::ALL[(t + k) % 3];
                decisions
                    .with_label_values(&[
                        door.as_str(),
                        Verdict::ALL[k % 3].as_str(),
                        Reason::ALL[(t * 7 + k) % Reason::ALL.len()].as_str(),
                        Source::ALL[t % 4].as_str(),
                    ])
                    .inc();
                latency.with_label_values(&[door.as_str()]).observe(*v);
            }
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&reference.gather(), &mut buf)
            .expect("encode");
        let expected = String::from_utf8(buf).expect("text");
        let got = m.render();
        for name in [
            "regiongate_decisions_total",
            "regiongate_request_duration_seconds",
        ] {
            let (g, e) = (family(&got, name), family(&expected, name));
            assert!(e.len() > 10);
            // Sums of floats may differ in the last bits with the order of addition.
            for (g, e) in g.iter().zip(&e) {
                if e.contains("_sum{") {
                    let num = |l: &str| -> f64 {
                        l.rsplit(' ')
                            .next()
                            .and_then(|x| x.parse().ok())
                            .expect("number")
                    };
                    assert!((num(g) - num(e)).abs() < 1e-9, "{g} / {e}");
                } else {
                    assert_eq!(g, e);
                }
            }
            assert_eq!(g.len(), e.len(), "{got}");
        }
    }
}

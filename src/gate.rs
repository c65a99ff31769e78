//! The gate: the one request pipeline every front door shares.
//!
//! ```text
//! door (HTTP preflight, authz, proxy, ...)      gate                       below
//!   parse its request ──► Extracted ──► gather ──► Case ──► decide ──► Decision
//!                                         │                   │
//!                                  locate, snapshot      decide, Record
//! ```
//!
//! A door turns its own request into an [`Extracted`] request (the client address after the
//! trust rules, the hints, the time), with the helpers here that read headers in any
//! representation ([`HeaderLines`]): [`header_hints`], [`client`], [`cdn_use_tier`]. The gate
//! gathers the evidence once ([`Case::gather`]: a batch asks several questions of it) and
//! [`Gate::decide`]s each question: the decision, its metric and report count (through the
//! door-neutral [`Record`]), and the decision log line when the operator asked for one
//! ([`DecisionLog`]). Doors keep their listeners, their wire formats and their encoding of the
//! answer; nothing here knows HTTP status codes or bodies.
//!
//! The pipeline reads one [`Snapshot`] from start to end; every value it holds about the
//! location is a redacted type, and the log line carries territory codes and kinds only.

use crate::config::{Config, DecisionLog};
use crate::decide::{Decision, Question, decide_with_evidence};
use crate::headers::HeaderLines;
use crate::license::{Tier, UseType};
use crate::locate::hints::{self, FixKind, HintError, Hints};
use crate::locate::{CellEvidence, Evidence, IpEvidence, WifiEvidence, WifiOrigin, wifi};
use crate::privacy::{ClientIp, truncate_ip};
use crate::snapshot::Snapshot;
use chrono::{DateTime, Utc};
use http::HeaderName;
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

/// The app's on-device fix (`gps=LAT,LON; acc=M; ts=UNIX[; src=gps|wifi]`).
pub const GEO_HINT: HeaderName = HeaderName::from_static("geo-hint");
/// Access points the client sees (`BSSID[@RSSI], ...`).
pub const WIFI_HINT: HeaderName = HeaderName::from_static("wifi-hint");
/// The mobile network (`mcc=..; mnc=..[; radio=..; area=..; cell=..]`).
pub const CELL_HINT: HeaderName = HeaderName::from_static("cell-hint");

/// The front door a request came through (a metric label and a decision log field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// `GET /v1/tracks/{id}/playability`, `POST /v1/playability`.
    Preflight,
    /// `GET /v1/territory`.
    Territory,
    /// Auth subrequests (HTTP: nginx `auth_request`, Envoy `ext_authz` HTTP service).
    Authz,
    /// Envoy's gRPC `ext_authz` (`envoy.service.auth.v3.Authorization/Check`).
    AuthzGrpc,
    /// Reverse proxy.
    Proxy,
    /// Anything else (404s, bad requests before routing).
    Other,
}

impl Door {
    /// Every door, in declaration order (`door as usize` indexes it).
    pub const ALL: [Door; 6] = [
        Door::Preflight,
        Door::Territory,
        Door::Authz,
        Door::AuthzGrpc,
        Door::Proxy,
        Door::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Preflight => "preflight",
            Door::Territory => "territory",
            Door::Authz => "authz",
            Door::AuthzGrpc => "authz_grpc",
            Door::Proxy => "proxy",
            Door::Other => "other",
        }
    }
}

/// Where decisions are counted (metrics, the aggregate report): the service implements it;
/// the gate calls it once per decision.
pub trait Record {
    /// Counts one decision made for `door` on `snap`.
    fn decision(&self, door: Door, snap: &Snapshot, d: &Decision);
}

/// A request as a door extracted it: who asks (the client address after the trusted-proxy
/// rules), with which hints, when. The question (track, use, tier) comes per decision.
pub struct Extracted {
    /// The door.
    pub door: Door,
    /// The client's address, if one could be trusted.
    pub client: Option<ClientIp>,
    /// The hints (on-device fix, cell, WiFi), already parsed and checked.
    pub hints: Hints,
    /// The time of the request.
    pub now: DateTime<Utc>,
}

/// A request's evidence, gathered once from a snapshot.
pub struct Case {
    /// The door.
    pub door: Door,
    /// The client's address (kept for the optional truncated network in the log line).
    pub client: Option<ClientIp>,
    /// What the address and the hints say.
    pub evidence: Evidence,
    /// The time of the request.
    pub now: DateTime<Utc>,
}

impl Case {
    /// Gathers the evidence of an extracted request in `snap`.
    pub fn gather(snap: &Snapshot, x: Extracted) -> Case {
        let evidence = gather(snap, x.client.as_ref(), &x.hints);
        Case {
            door: x.door,
            client: x.client,
            evidence,
            now: x.now,
        }
    }
}

/// The shared pipeline's settings and its recorder.
#[derive(Clone, Copy)]
pub struct Gate<'a> {
    /// The configuration (policy, decision log, client address logging).
    pub config: &'a Config,
    /// Where decisions are counted.
    pub record: &'a dyn Record,
}

impl Gate<'_> {
    /// Decides one question of a case and records it: the metric and report count, and the
    /// decision log line when [`Config::decision_log`] asks for it (the client network only
    /// when the operator turned IP logging on, truncated).
    pub fn decide(&self, snap: &Snapshot, case: &Case, q: &Question<'_>) -> Decision {
        // The line's fields (and the clock reads for decide_us) only when it is written.
        let log = self.logs_this_one();
        let started = log.then(Instant::now);
        let d = decide_with_evidence(snap, &self.config.policy, q, &case.evidence, case.now);
        self.record.decision(case.door, snap, &d);
        if let Some(started) = started {
            self.log_line(snap, case, q, &d, started);
        }
        d
    }

    /// The whole pipeline for one question of one request.
    pub fn pass(&self, snap: &Snapshot, x: Extracted, q: &Question<'_>) -> Decision {
        self.decide(snap, &Case::gather(snap, x), q)
    }

    /// Whether this decision gets a log line: the operator's choice, and the
    /// `regiongate::decision` target enabled at `info`.
    fn logs_this_one(&self) -> bool {
        thread_local! {
            /// Decisions this thread has made since its last sampled line.
            static SINCE_SAMPLE: Cell<u32> = const { Cell::new(0) };
        }
        let chosen = match self.config.decision_log {
            DecisionLog::Off => return false,
            DecisionLog::Full => true,
            DecisionLog::Sampled(every) => SINCE_SAMPLE.with(|n| {
                let seen = n.get() + 1;
                let hit = seen >= every.get();
                n.set(if hit { 0 } else { seen });
                hit
            }),
        };
        chosen && tracing::enabled!(target: "regiongate::decision", tracing::Level::INFO)
    }

    fn log_line(
        &self,
        snap: &Snapshot,
        case: &Case,
        q: &Question<'_>,
        d: &Decision,
        started: Instant,
    ) {
        let territory = d.territory.map(|t| snap.territories.code(t));
        let client_net = if self.config.log_client_ip {
            case.client.as_ref().map(truncate_ip)
        } else {
            None
        };
        tracing::info!(
            target: "regiongate::decision",
            door = case.door.as_str(),
            track = q.track,
            use_type = q.use_type.as_str(),
            tier = q.tier.as_str(),
            decision = d.verdict.as_str(),
            reason = d.reason.as_str(),
            territory = territory.unwrap_or(""),
            source = d.source.as_str(),
            data_version = %snap.version,
            decide_us = started.elapsed().as_micros() as u64,
            client_net = client_net.as_deref().unwrap_or(""),
        );
    }
}

/// Reads the hint headers (`Geo-Hint`, `Cell-Hint`, `Wifi-Hint`). A bad hint is an error
/// naming the header and field (never its value).
///
/// # Errors
/// The header's name and what is wrong with it.
pub fn header_hints<H: HeaderLines + ?Sized>(
    headers: &H,
    now: DateTime<Utc>,
    config: &Config,
) -> Result<Hints, (String, HintError)> {
    let one = |name: &HeaderName| -> Result<Option<&str>, (String, HintError)> {
        let mut values = headers.values_named(name);
        let Some(v) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err((name.as_str().to_owned(), HintError::Repeated("header")));
        }
        crate::headers::visible_ascii(v)
            .map(Some)
            .ok_or_else(|| (name.as_str().to_owned(), HintError::Syntax))
    };
    let gps = one(&GEO_HINT)?
        .map(|s| hints::parse_gps(s, now.timestamp(), &config.gps))
        .transpose()
        .map_err(|e| (GEO_HINT.as_str().to_owned(), e))?;
    let cell = one(&CELL_HINT)?
        .map(hints::parse_cell)
        .transpose()
        .map_err(|e| (CELL_HINT.as_str().to_owned(), e))?;
    let wifi = one(&WIFI_HINT)?
        .map(wifi::parse_wifi_hint)
        .transpose()
        .map_err(|e| (WIFI_HINT.as_str().to_owned(), e))?;
    Ok(Hints { gps, cell, wifi })
}

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
pub fn client<H: HeaderLines + ?Sized>(
    config: &Config,
    peer: SocketAddr,
    headers: &H,
) -> Option<ClientIp> {
    config.client.client(peer.ip(), headers)
}

/// Use type and tier of a CDN request: the route's `{use}` / `{tier}` captures (the operator
/// put them in the media URL, which the CDN signs), else the CDN's headers, believed only from
/// a trusted proxy (a listener could send them too), else the defaults. Never the query string.
///
/// # Errors
/// The reason to deny with, for a value that does not parse.
pub fn cdn_use_tier<H: HeaderLines + ?Sized>(
    config: &Config,
    peer: SocketAddr,
    headers: &H,
    route_use: Option<&str>,
    route_tier: Option<&str>,
) -> Result<(UseType, Tier), &'static str> {
    let cfg = &config.authz;
    // Only asked when the route lacks a capture (most routes lack both).
    let trusted = (route_use.is_none() || route_tier.is_none())
        && config.client.trusted_proxies.contains(peer.ip());
    let header = |h: &HeaderName| {
        if trusted { headers.first_str(h) } else { None }
    };
    let use_type = match route_use
        .or_else(|| header(&cfg.use_header))
        .map(str::parse)
    {
        None => cfg.default_use,
        Some(Ok(u)) => u,
        Some(Err(_)) => return Err("bad_use"),
    };
    let tier = match route_tier
        .or_else(|| header(&cfg.tier_header))
        .map(str::parse)
    {
        None => cfg.default_tier,
        Some(Ok(t)) => t,
        Some(Err(_)) => return Err("bad_tier"),
    };
    Ok((use_type, tier))
}

/// Looks up the evidence for a client address and hints in a snapshot. A database error on a
/// lookup counts as no answer from that source.
///
/// An on-device fix of kind [`FixKind::Wifi`] is WiFi evidence, not GPS. When the device sent
/// both its own WiFi fix and the access points it saw, the tighter of the two is kept. Access
/// points give evidence only when the snapshot has an access-point database and at least two
/// known access points agree ([`wifi::estimate`]).
pub fn gather(s: &Snapshot, client: Option<&ClientIp>, hints: &Hints) -> Evidence {
    let ip = client.and_then(|c| ip_evidence(s, c));
    let cell = hints.cell.as_ref().and_then(|h| {
        let countries = s.mcc.countries(h);
        let fix = s.cells.as_ref().and_then(|db| db.fix(h));
        (!countries.is_empty() || fix.is_some()).then_some(CellEvidence { countries, fix })
    });
    let (gps, device_wifi) = match hints.gps {
        Some(g) if g.kind == FixKind::Wifi => (
            None,
            Some(WifiEvidence {
                point: g.point,
                accuracy_m: g.accuracy_m,
                origin: WifiOrigin::Device,
            }),
        ),
        g => (g, None),
    };
    let scanned = hints
        .wifi
        .as_ref()
        .zip(s.aps.as_deref())
        .and_then(|(scan, db)| wifi::estimate(db, scan))
        .map(|f| WifiEvidence {
            point: f.point,
            accuracy_m: f.radius_m,
            origin: WifiOrigin::Scan,
        });
    let wifi = match (device_wifi, scanned) {
        (Some(d), Some(w)) => Some(if w.accuracy_m < d.accuracy_m { w } else { d }),
        (d, w) => d.or(w),
    };
    Evidence {
        ip,
        gps,
        wifi,
        cell,
    }
}

fn ip_evidence(s: &Snapshot, c: &ClientIp) -> Option<IpEvidence> {
    let mut flags = s
        .anonymizer
        .as_ref()
        .and_then(|db| db.anon_flags(c).ok())
        .unwrap_or_default();
    flags.operator_list = s.vpn_ranges.contains(c.addr());
    let rec = s.ip.as_ref().and_then(|db| db.lookup(c).ok().flatten());
    let country = rec.and_then(|r| r.country_str().and_then(|cc| s.territories.id(cc)));
    let point = rec.and_then(|r| {
        r.point
            .map(|p| (p, r.accuracy_km.unwrap_or(100.0) * 1000.0))
    });
    (country.is_some() || point.is_some() || flags.any()).then_some(IpEvidence {
        country,
        point,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Reason, Verdict};
    use std::sync::Mutex;

    /// Counts what the gate records.
    #[derive(Default)]
    struct Counted(Mutex<Vec<(Door, Verdict, Reason)>>);

    impl Record for Counted {
        fn decision(&self, door: Door, _: &Snapshot, d: &Decision) {
            self.0
                .lock()
                .expect("lock")
                .push((door, d.verdict, d.reason));
        }
    }

    fn config(decision_log: DecisionLog) -> Config {
        let mut c =
            Config::load(None, |_| None, crate::config::Overrides::default()).expect("defaults");
        c.decision_log = decision_log;
        c
    }

    #[test]
    fn every_decision_is_recorded_once_with_its_door() {
        let snap = Snapshot::load(&crate::snapshot::DataSource::Embedded).expect("embedded data");
        let cfg = config(DecisionLog::Off);
        let counted = Counted::default();
        let gate = Gate {
            config: &cfg,
            record: &counted,
        };
        let client = "81.23.157.20".parse().ok().map(ClientIp::new);
        let case = Case::gather(
            &snap,
            Extracted {
                door: Door::Authz,
                client,
                hints: Hints::default(),
                now: Utc::now(),
            },
        );
        assert!(case.evidence.ip.is_some(), "the sample database knows it");
        let q = |track| Question {
            track,
            use_type: UseType::OnDemandStream,
            tier: Tier::Premium,
        };
        let a = gate.decide(&snap, &case, &q("QZNW52400001"));
        let b = gate.decide(&snap, &case, &q("QZXX52600001"));
        let seen = counted.0.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![
                (Door::Authz, a.verdict, a.reason),
                (Door::Authz, b.verdict, b.reason)
            ]
        );
        assert_ne!(a.verdict, b.verdict, "a world track and one with no deal");
    }

    #[test]
    fn sampled_log_picks_one_decision_in_n_per_thread() {
        let cfg = config(DecisionLog::Sampled(
            std::num::NonZeroU32::new(4).expect("4"),
        ));
        let counted = Counted::default();
        let gate = Gate {
            config: &cfg,
            record: &counted,
        };
        // Without a subscriber the target is disabled: never a line, whatever the sampling.
        assert!(!(0..8).any(|_| gate.logs_this_one()));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let picks: Vec<bool> = (0..12).map(|_| gate.logs_this_one()).collect();
            assert_eq!(picks.iter().filter(|&&p| p).count(), 3, "{picks:?}");
            let off = config(DecisionLog::Off);
            let gate = Gate {
                config: &off,
                record: &counted,
            };
            assert!(!(0..8).any(|_| gate.logs_this_one()));
            let full = config(DecisionLog::Full);
            let gate = Gate {
                config: &full,
                record: &counted,
            };
            assert!((0..8).all(|_| gate.logs_this_one()));
        });
    }
}

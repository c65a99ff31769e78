//! Combining location evidence under the deployment's [`Policy`]: each kind of evidence is
//! judged (its point or disc placed, its countries listed), checked for plausibility against
//! the others, and the policy picks the decision; [`resolve_territory`] answers "where" alone.

use super::*;
use crate::locate::{CellEvidence, Evidence, GpsHint, IpEvidence, WifiEvidence};
use crate::privacy::GpsPoint;
use crate::snapshot::Snapshot;
use crate::territory::{Disc, Hits, TerritoryKind};
use smallvec::SmallVec;

/// How location evidence is combined into one decision. Configured per deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Every piece of evidence present must be in a licensed territory.
    Strict,
    /// GPS, then WiFi, then cell, then IP; a client hint counts only if it is plausible
    /// against the IP evidence (same country, or near the IP country or the IP point's
    /// accuracy circle).
    PreciseFirst,
    /// Only the IP address counts; hints are ignored.
    IpOnly,
}

/// What an implausible client hint leads to under `precise_first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictOutcome {
    /// Deny with reason `location_conflict`.
    Deny,
    /// Ask for a precise location (reason `location_conflict`).
    NeedPreciseLocation,
    /// Ignore the hint and decide on the IP evidence.
    UseIp,
}

/// What an anonymizer-flagged client address leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymizerOutcome {
    /// Deny with reason `anonymizer`.
    Deny,
    /// Disregard the address's location: decide on a GPS or else a WiFi fix if there is one
    /// (not under `ip_only`), otherwise ask for a precise location.
    NeedPreciseLocation,
}

/// What a GPS or WiFi fix whose accuracy disc touches territories with different answers
/// leads to.
/// Asking such a client for a better fix may go round in circles, so the operator chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UncertainFixOutcome {
    /// Deny with reason `ambiguous_location` (the default: fail closed, and final).
    Deny,
    /// Ask for a precise location (reason `ambiguous_location`).
    NeedPreciseLocation,
    /// Decide at the fix's point, disregarding its accuracy.
    DecideAtPoint,
}

/// The evidence policy.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// How evidence is combined.
    pub kind: PolicyKind,
    /// How far (km) a hint may lie from the IP country (or beyond the IP point's accuracy
    /// circle) and still be plausible.
    pub plausible_km: f64,
    /// The same for WiFi evidence; `plausible_km` when not set.
    pub wifi_plausible_km: Option<f64>,
    /// What an implausible hint leads to.
    pub on_conflict: ConflictOutcome,
    /// What an anonymizer-flagged address leads to.
    pub on_anonymizer: AnonymizerOutcome,
    /// With no location evidence at all: allow (`true`) or deny (`false`, the default).
    pub fail_open: bool,
    /// What a GPS or WiFi fix whose accuracy disc is uncertain leads to.
    pub on_uncertain_fix: UncertainFixOutcome,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            kind: PolicyKind::PreciseFirst,
            plausible_km: 100.0,
            wifi_plausible_km: None,
            on_conflict: ConflictOutcome::UseIp,
            on_anonymizer: AnonymizerOutcome::NeedPreciseLocation,
            fail_open: false,
            on_uncertain_fix: UncertainFixOutcome::Deny,
        }
    }
}

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres.
fn distance_m(a: &GpsPoint, b: &GpsPoint) -> f64 {
    let ([lon1, lat1], [lon2, lat2]) = (a.lon_lat(), b.lon_lat());
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A decision from one piece of evidence, and whether that evidence settles it.
struct Judged {
    decision: Decision,
    certain: bool,
    /// The territories at the point judged (empty for countries).
    center: Hits,
    /// When not certain: the territories the evidence touches.
    touched: Touched,
}

/// Every placement a disc allows: each country it touches (or none, when it touches no
/// country), with the custom territories covering the whole disc, alone and with each other
/// custom territory it touches. `touched` is `disc.touched()`.
fn placements(s: &Snapshot, disc: &Disc, touched: &Hits) -> SmallVec<[Hits; 8]> {
    let (countries, customs): (Hits, Hits) = touched
        .iter()
        .copied()
        .partition(|&t| s.territories.kind(t) == TerritoryKind::Country);
    let (cover, optional): (Hits, Hits) =
        customs.iter().copied().partition(|&k| disc.covered_by(k));
    let bases: SmallVec<[Option<TerritoryId>; 4]> = if countries.is_empty() {
        smallvec::smallvec![None]
    } else {
        countries.iter().copied().map(Some).collect()
    };
    let mut out = SmallVec::new();
    for c in bases {
        let mut base: Hits = c.into_iter().collect();
        base.extend(cover.iter().copied());
        for &k in &optional {
            let mut with = base.clone();
            let i = with.partition_point(|&x| x < k);
            with.insert(i, k);
            out.push(with);
        }
        out.push(base);
    }
    out
}

/// Decides at a point; when `radius_m` > 0, the answer is certain only if every placement the
/// accuracy disc allows (see [`placements`]) gives the same verdict. Placements in no territory
/// at all (open sea) are ignored: nobody is placed there by an accuracy disc. `fallback` fills
/// in the country when the point itself is in none (a City-database point in the sea).
fn judge_point(
    s: &Snapshot,
    deals: TrackDeals<'_>,
    q: &Question<'_>,
    now: DateTime<Utc>,
    p: &GpsPoint,
    radius_m: f64,
    fallback: Option<TerritoryId>,
) -> Judged {
    let disc = if radius_m > 0.0 {
        s.index.disc(p.lon_lat(), radius_m)
    } else {
        Disc {
            inside: s.index.locate(p.lon_lat()),
            crossed: Hits::new(),
        }
    };
    let mut center = disc.inside.clone();
    if let Some(c) = fallback
        && s.territories.country_of(&center).is_none()
    {
        center.insert(0, c);
    }
    let decision = decide_deals(&s.licenses, deals, q, &center, now);
    let mut judged = Judged {
        decision,
        certain: true,
        center,
        touched: Touched::default(),
    };
    if disc.crossed.is_empty() {
        return judged;
    }
    let touched = disc.touched();
    judged.certain = placements(s, &disc, &touched).iter().all(|hits| {
        hits.is_empty()
            || *hits == judged.center
            || decide_deals(&s.licenses, deals, q, hits, now).verdict == decision.verdict
    });
    if !judged.certain {
        judged.touched = Touched::new(&touched);
    }
    judged
}

fn judge_countries(
    s: &Snapshot,
    deals: TrackDeals<'_>,
    q: &Question<'_>,
    now: DateTime<Utc>,
    countries: &[TerritoryId],
) -> Option<Judged> {
    let first = decide_deals(
        &s.licenses,
        deals,
        q,
        &countries[..1.min(countries.len())],
        now,
    );
    if countries.is_empty() {
        return None;
    }
    let same = countries[1..].iter().all(|c| {
        decide_deals(&s.licenses, deals, q, std::slice::from_ref(c), now).verdict == first.verdict
    });
    let mut sorted: Hits = countries.iter().copied().collect();
    sorted.sort_unstable();
    Some(Judged {
        center: Hits::new(),
        decision: if countries.len() == 1 {
            first
        } else {
            Decision {
                territory: None,
                ..first
            }
        },
        certain: same,
        touched: if same {
            Touched::default()
        } else {
            Touched::new(&sorted)
        },
    })
}

fn judge_ip(
    s: &Snapshot,
    deals: TrackDeals<'_>,
    q: &Question<'_>,
    now: DateTime<Utc>,
    ip: &IpEvidence,
) -> Option<Judged> {
    match (ip.point, ip.country) {
        (Some((p, r)), c) => Some(judge_point(s, deals, q, now, &p, r, c)),
        (None, Some(c)) => judge_countries(s, deals, q, now, &[c]),
        (None, None) => None,
    }
}

fn judge_cell(
    s: &Snapshot,
    deals: TrackDeals<'_>,
    q: &Question<'_>,
    now: DateTime<Utc>,
    cell: &CellEvidence,
) -> Option<Judged> {
    match cell.fix {
        Some(f) => {
            let fallback = (cell.countries.len() == 1).then(|| cell.countries[0]);
            Some(judge_point(s, deals, q, now, &f.point, f.range_m, fallback))
        }
        None => judge_countries(s, deals, q, now, &cell.countries),
    }
}

/// Whether a hint (a point, or countries) is plausible against the IP evidence.
/// `at_point`: the territories at `point`, when the caller has them already.
fn plausible(
    s: &Snapshot,
    plausible_km: f64,
    ip: Option<&IpEvidence>,
    point: Option<&GpsPoint>,
    at_point: Option<&Hits>,
    countries: &[TerritoryId],
) -> bool {
    let Some(ip) = ip else { return true };
    let ip_country = ip.country.or_else(|| {
        ip.point
            .and_then(|(p, _)| s.territories.country_of(&s.index.locate(p.lon_lat())))
    });
    if let Some(c) = ip_country {
        if countries.contains(&c) {
            return true;
        }
        if let Some(p) = point {
            // In the IP country, or within plausible_km of it (the exact disc query).
            let near = at_point.is_some_and(|hits| hits.contains(&c))
                || s.index.disc_touches(p.lon_lat(), plausible_km * 1000.0, c);
            if near {
                return true;
            }
        }
    }
    match (point, ip.point) {
        (Some(p), Some((ipp, r))) => distance_m(p, &ipp) <= r + plausible_km * 1000.0,
        _ => ip_country.is_none(),
    }
}

fn need(reason: Reason, source: Source, territory: Option<TerritoryId>) -> Decision {
    Decision {
        verdict: Verdict::NeedPreciseLocation,
        reason,
        territory,
        deal: None,
        valid_until: None,
        source,
        touched: Touched::default(),
    }
}

/// `ambiguous_location`, asking for a precise location, with what the evidence touches.
fn ambiguous(j: &Judged, source: Source, territory: Option<TerritoryId>) -> Decision {
    Decision {
        touched: j.touched,
        ..need(Reason::AmbiguousLocation, source, territory)
    }
}

/// The answer for an uncertain GPS or WiFi fix, as `on_uncertain_fix` says.
fn uncertain_fix(policy: &Policy, j: &Judged, source: Source) -> Decision {
    let here = j.center.first().copied();
    match policy.on_uncertain_fix {
        UncertainFixOutcome::Deny => Decision {
            verdict: Verdict::Deny,
            ..ambiguous(j, source, here)
        },
        UncertainFixOutcome::NeedPreciseLocation => ambiguous(j, source, here),
        UncertainFixOutcome::DecideAtPoint => j.decision.from_source(source),
    }
}

/// A judged piece of evidence's answer when it settles the question, the uncertain-fix answer
/// for an uncertain GPS or WiFi fix, and `None` for other uncertain evidence.
fn settled(policy: &Policy, j: &Judged, source: Source) -> Option<Decision> {
    if j.certain {
        Some(j.decision.from_source(source))
    } else if source.is_fix() {
        Some(uncertain_fix(policy, j, source))
    } else {
        None
    }
}

fn unknown(policy: &Policy) -> Decision {
    let d = Decision::deny(Reason::LocationUnknown, None);
    if policy.fail_open {
        Decision {
            verdict: Verdict::Allow,
            ..d
        }
    } else {
        d
    }
}

/// Decides a question on the location evidence of a request, under a policy.
///
/// Questions whose answer does not depend on location (unknown track, no deal, takedown) are
/// answered without it. The decision's `source` says which evidence decided; a decision never
/// carries the evidence itself.
pub fn decide_with_evidence(
    s: &Snapshot,
    policy: &Policy,
    q: &Question<'_>,
    ev: &Evidence,
    now: DateTime<Utc>,
) -> Decision {
    // The track is looked up once; every decision below reuses the answer.
    let deals = s.licenses.lookup(q.track);
    let placeless = decide_deals(&s.licenses, deals, q, &[], now);
    if matches!(
        placeless.reason,
        Reason::UnknownTrack | Reason::NoDeal | Reason::TakenDown
    ) {
        return placeless;
    }
    let ip = ev.ip.as_ref();
    let gps = if policy.kind == PolicyKind::IpOnly {
        None
    } else {
        ev.gps.as_ref()
    };
    let cell = if policy.kind == PolicyKind::IpOnly {
        None
    } else {
        ev.cell.as_ref()
    };
    let wifi = if policy.kind == PolicyKind::IpOnly {
        None
    } else {
        ev.wifi.as_ref()
    };
    let judge_gps = |g: &GpsHint| judge_point(s, deals, q, now, &g.point, g.accuracy_m, None);
    let judge_wifi = |w: &WifiEvidence| judge_point(s, deals, q, now, &w.point, w.accuracy_m, None);

    if let Some(i) = ip.filter(|i| i.flags.any()) {
        let fix = match (gps, wifi) {
            (Some(g), _) => Some((judge_gps(g), Source::Gps)),
            (None, Some(w)) => Some((judge_wifi(w), Source::Wifi)),
            (None, None) => None,
        };
        return match (policy.on_anonymizer, fix) {
            (AnonymizerOutcome::Deny, _) => {
                Decision::deny(Reason::Anonymizer, i.country).from_source(Source::Ip)
            }
            (AnonymizerOutcome::NeedPreciseLocation, Some((j, src))) => {
                settled(policy, &j, src).unwrap_or_else(|| uncertain_fix(policy, &j, src))
            }
            (AnonymizerOutcome::NeedPreciseLocation, None) => {
                need(Reason::Anonymizer, Source::Ip, None)
            }
        };
    }

    // Judged when needed: a plausible, certain hint decides under `precise_first` without it
    // (with a City database the IP point's accuracy disc is a disc query).
    let jip = || ip.and_then(|i| judge_ip(s, deals, q, now, i));
    let jgps = gps.map(judge_gps);
    let jwifi = wifi.map(judge_wifi);
    let jcell = cell.and_then(|c| judge_cell(s, deals, q, now, c));
    let ip_territory = ip.and_then(|i| i.country);

    match policy.kind {
        PolicyKind::IpOnly => match jip() {
            None => unknown(policy),
            Some(j) if !j.certain => ambiguous(&j, Source::Ip, ip_territory),
            Some(j) => j.decision.from_source(Source::Ip),
        },
        PolicyKind::Strict => {
            let all: SmallVec<[(Source, Judged); 4]> = [
                (Source::Gps, jgps),
                (Source::Wifi, jwifi),
                (Source::Cell, jcell),
                (Source::Ip, jip()),
            ]
            .into_iter()
            .filter_map(|(src, j)| j.map(|j| (src, j)))
            .collect();
            // Each piece's own answer: certain ones as judged, an uncertain GPS or WiFi fix as
            // the policy says, other uncertain pieces ask for a precise location.
            let answers: SmallVec<[Decision; 4]> = all
                .iter()
                .map(|(src, j)| {
                    settled(policy, j, *src)
                        .unwrap_or_else(|| ambiguous(j, *src, j.decision.territory))
                })
                .collect();
            if let Some(d) = answers.iter().find(|d| d.verdict == Verdict::Deny) {
                return *d;
            }
            if let Some(d) = answers.iter().find(|d| d.verdict != Verdict::Allow) {
                return *d;
            }
            answers.first().copied().unwrap_or_else(|| unknown(policy))
        }
        PolicyKind::PreciseFirst => {
            let mut ambiguous_hint = None;
            // The GPS and WiFi points were just placed by `judge_point` (no fallback
            // country): reuse them.
            let gps_plausible = gps.is_some_and(|g| {
                plausible(
                    s,
                    policy.plausible_km,
                    ip,
                    Some(&g.point),
                    jgps.as_ref().map(|j| &j.center),
                    &[],
                )
            });
            let wifi_plausible = wifi.is_some_and(|w| {
                plausible(
                    s,
                    policy.wifi_plausible_km.unwrap_or(policy.plausible_km),
                    ip,
                    Some(&w.point),
                    jwifi.as_ref().map(|j| &j.center),
                    &[],
                )
            });
            let hints = [
                (Source::Gps, jgps, gps_plausible),
                (Source::Wifi, jwifi, wifi_plausible),
                (
                    Source::Cell,
                    jcell,
                    cell.is_some_and(|c| {
                        plausible(
                            s,
                            policy.plausible_km,
                            ip,
                            c.fix.as_ref().map(|f| &f.point),
                            None,
                            &c.countries,
                        )
                    }),
                ),
            ];
            for (src, judged, ok) in hints {
                let Some(j) = judged else { continue };
                if !ok {
                    match policy.on_conflict {
                        ConflictOutcome::Deny => {
                            return Decision::deny(Reason::LocationConflict, ip_territory)
                                .from_source(src);
                        }
                        ConflictOutcome::NeedPreciseLocation => {
                            return need(Reason::LocationConflict, src, ip_territory);
                        }
                        ConflictOutcome::UseIp => continue,
                    }
                }
                // A plausible GPS or WiFi fix settles it, certain or not (an uncertain one as
                // the policy says: the IP evidence cannot make a fix that may lie in an
                // unlicensed territory more certain); an uncertain cell hands over.
                if let Some(d) = settled(policy, &j, src) {
                    return d;
                }
                ambiguous_hint.get_or_insert((src, j));
            }
            match (jip(), ambiguous_hint) {
                (Some(j), _) if j.certain => j.decision.from_source(Source::Ip),
                (Some(j), _) => ambiguous(&j, Source::Ip, ip_territory),
                (None, Some((src, j))) => ambiguous(&j, src, None),
                (None, None) => unknown(policy),
            }
        }
    }
}

/// What a resolved territory rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The country of the client address.
    IpCountry,
    /// The point of the client address (City databases).
    IpPoint,
    /// The GPS hint's point.
    GpsPoint,
    /// The WiFi evidence's point.
    WifiPoint,
    /// The serving network's country.
    CellNetwork,
    /// A known cell's position.
    CellFix,
    /// The evidence names several countries.
    Ambiguous,
    /// No evidence.
    None,
}

impl Basis {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::IpCountry => "ip_country",
            Basis::IpPoint => "ip_point",
            Basis::GpsPoint => "gps_point",
            Basis::WifiPoint => "wifi_point",
            Basis::CellNetwork => "cell_network",
            Basis::CellFix => "cell_fix",
            Basis::Ambiguous => "ambiguous",
            Basis::None => "none",
        }
    }
}

/// The caller's own country territory, for storefront choice: the evidence the policy trusts
/// most that names one country (a plausible GPS hint, a plausible WiFi position, a plausible
/// decisive cell hint, then the IP evidence). Anonymized addresses name none.
pub fn resolve_territory(
    s: &Snapshot,
    policy: &Policy,
    ev: &Evidence,
) -> (Option<TerritoryId>, Source, Basis) {
    let ip = ev.ip.as_ref().filter(|i| !i.flags.any());
    let hints_count = policy.kind != PolicyKind::IpOnly;
    let country_at = |p: &GpsPoint| s.territories.country_of(&s.index.locate(p.lon_lat()));
    if let Some(g) = ev.gps.as_ref().filter(|_| hints_count)
        && plausible(s, policy.plausible_km, ip, Some(&g.point), None, &[])
        && let Some(c) = country_at(&g.point)
    {
        return (Some(c), Source::Gps, Basis::GpsPoint);
    }
    if let Some(w) = ev.wifi.as_ref().filter(|_| hints_count)
        && plausible(
            s,
            policy.wifi_plausible_km.unwrap_or(policy.plausible_km),
            ip,
            Some(&w.point),
            None,
            &[],
        )
        && let Some(c) = country_at(&w.point)
    {
        return (Some(c), Source::Wifi, Basis::WifiPoint);
    }
    if let Some(c) = ev.cell.as_ref().filter(|_| hints_count)
        && plausible(
            s,
            policy.plausible_km,
            ip,
            c.fix.as_ref().map(|f| &f.point),
            None,
            &c.countries,
        )
    {
        if let Some(t) = c.fix.as_ref().and_then(|f| country_at(&f.point)) {
            return (Some(t), Source::Cell, Basis::CellFix);
        }
        if c.countries.len() == 1 {
            return (Some(c.countries[0]), Source::Cell, Basis::CellNetwork);
        }
    }
    if let Some(i) = ip {
        if let Some((p, _)) = i.point
            && let Some(c) = country_at(&p)
        {
            return (Some(c), Source::Ip, Basis::IpPoint);
        }
        if let Some(c) = i.country {
            return (Some(c), Source::Ip, Basis::IpCountry);
        }
    }
    match ev.cell.as_ref() {
        Some(c) if hints_count && c.countries.len() > 1 => (None, Source::Cell, Basis::Ambiguous),
        _ => (None, Source::None, Basis::None),
    }
}

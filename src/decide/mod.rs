//! Decisions: may this track be played, for this use and tier, where the listener is, now?
//!
//! [`decide`] is pure: the same snapshot, question, placement and time give the same
//! [`Decision`]. A denial is a value with a machine-readable [`Reason`], never an error.
//! [`decide_with_evidence`] (in `evidence.rs`) combines the location evidence first.

use crate::license::{Deal, DealId, LicenseMap, Tier, TrackDeals, UseType};
use crate::territory::TerritoryId;
use chrono::{DateTime, Utc};
use serde::Serialize;

mod evidence;

pub use evidence::{
    AnonymizerOutcome, Basis, ConflictOutcome, Policy, PolicyKind, UncertainFixOutcome,
    decide_with_evidence, resolve_territory,
};

/// The outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Play it.
    Allow,
    /// Do not play it.
    Deny,
    /// The evidence is not good enough to decide; ask the listener for a precise location.
    NeedPreciseLocation,
}

impl Verdict {
    /// All verdicts, in declaration order (for metrics label sets).
    pub const ALL: [Verdict; 3] = [Verdict::Allow, Verdict::Deny, Verdict::NeedPreciseLocation];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::NeedPreciseLocation => "need_precise_location",
        }
    }
}

/// Why a decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A deal covers the territory, time, use and tier.
    Licensed,
    /// No deal covers the listener's territory.
    NotLicensedInTerritory,
    /// Deals cover the territory, but not at this time.
    OutsideValidityWindow,
    /// Deals cover territory and time, but not this use type.
    UseNotLicensed,
    /// Deals cover territory, time and use, but not this tier.
    TierNotLicensed,
    /// The track's deal set is explicitly empty.
    TakenDown,
    /// The track is not in the licence map.
    UnknownTrack,
    /// The track is known but no deal set covers it ("no deal = no deal").
    NoDeal,
    /// The location is in no territory at all (open sea, Antarctica outside any claim).
    NoTerritory,
    /// There is no location evidence.
    LocationUnknown,
    /// The client address is a VPN, proxy, Tor exit or hosting network.
    Anonymizer,
    /// A client hint is not plausible against the server-observed evidence.
    LocationConflict,
    /// The evidence does not settle the territory (an accuracy circle crossing a border where
    /// the answer differs, or a mobile country code shared by several countries).
    AmbiguousLocation,
}

impl Reason {
    /// All reasons (for metrics label sets).
    pub const ALL: [Reason; 13] = [
        Reason::Licensed,
        Reason::NotLicensedInTerritory,
        Reason::OutsideValidityWindow,
        Reason::UseNotLicensed,
        Reason::TierNotLicensed,
        Reason::TakenDown,
        Reason::UnknownTrack,
        Reason::NoDeal,
        Reason::NoTerritory,
        Reason::LocationUnknown,
        Reason::Anonymizer,
        Reason::LocationConflict,
        Reason::AmbiguousLocation,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Licensed => "licensed",
            Reason::NotLicensedInTerritory => "not_licensed_in_territory",
            Reason::OutsideValidityWindow => "outside_validity_window",
            Reason::UseNotLicensed => "use_not_licensed",
            Reason::TierNotLicensed => "tier_not_licensed",
            Reason::TakenDown => "taken_down",
            Reason::UnknownTrack => "unknown_track",
            Reason::NoDeal => "no_deal",
            Reason::NoTerritory => "no_territory",
            Reason::LocationUnknown => "location_unknown",
            Reason::Anonymizer => "anonymizer",
            Reason::LocationConflict => "location_conflict",
            Reason::AmbiguousLocation => "ambiguous_location",
        }
    }
}

/// What is asked: a track, how it is used, the listener's tier.
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    /// Track id (ISRC or platform id).
    pub track: &'a str,
    /// Use type.
    pub use_type: UseType,
    /// Listener tier.
    pub tier: Tier,
}

/// A decision. Holds territory ids and deal ids, never raw location data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny, or ask for a precise location.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// The territory the decision was judged in: the licensed one for an allow, the country
    /// (or first territory) of the location otherwise.
    pub territory: Option<TerritoryId>,
    /// The deal that allowed it.
    pub deal: Option<DealId>,
    /// Until when an allow stays true (the end of the deal's window), if it ends.
    pub valid_until: Option<DateTime<Utc>>,
    /// Which evidence decided.
    pub source: Source,
    /// With reason `ambiguous_location`: the territories the deciding evidence touches (its
    /// accuracy disc, or the countries of a shared mobile country code). Empty otherwise.
    pub touched: Touched,
}

/// A short list of territories, sorted by id, that fits in a [`Decision`] (which is `Copy`):
/// at most [`Touched::MAX`]; a longer list keeps the first ones and says it is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touched {
    ids: [TerritoryId; Touched::MAX],
    len: u8,
    cut: bool,
}

impl Default for Touched {
    fn default() -> Self {
        Touched::new(&[])
    }
}

impl Touched {
    /// Most territories held.
    pub const MAX: usize = 16;

    /// The list of `ids` (sorted by id).
    pub fn new(ids: &[TerritoryId]) -> Touched {
        let mut t = Touched {
            ids: [TerritoryId(0); Touched::MAX],
            len: ids.len().min(Touched::MAX) as u8,
            cut: ids.len() > Touched::MAX,
        };
        t.ids[..usize::from(t.len)].copy_from_slice(&ids[..usize::from(t.len)]);
        t
    }

    /// The territories held.
    pub fn as_slice(&self) -> &[TerritoryId] {
        &self.ids[..usize::from(self.len)]
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether there were more than [`Touched::MAX`] territories.
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

/// Which kind of evidence a decision rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The client's IP address.
    Ip,
    /// The app's GPS hint.
    Gps,
    /// The app's WiFi evidence: the device's WiFi positioning, or the access points it saw.
    Wifi,
    /// The app's cell hint.
    Cell,
    /// None (no evidence, or a question that needs none, such as a takedown).
    None,
}

impl Source {
    /// All sources (for metrics label sets).
    pub const ALL: [Source; 5] = [
        Source::Ip,
        Source::Gps,
        Source::Wifi,
        Source::Cell,
        Source::None,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ip => "ip",
            Source::Gps => "gps",
            Source::Wifi => "wifi",
            Source::Cell => "cell",
            Source::None => "none",
        }
    }

    /// Whether the source is a precise fix the listener's device made (GPS or WiFi): an
    /// uncertain one is answered as `on_uncertain_fix` says.
    pub fn is_fix(self) -> bool {
        matches!(self, Source::Gps | Source::Wifi)
    }
}

impl Decision {
    fn deny(reason: Reason, territory: Option<TerritoryId>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            reason,
            territory,
            deal: None,
            valid_until: None,
            source: Source::None,
            touched: Touched::default(),
        }
    }

    /// The same decision, attributed to `source`.
    pub fn from_source(mut self, source: Source) -> Decision {
        self.source = source;
        self
    }
}

/// Decides a question for a listener placed in `territories` (sorted, the country first), at
/// time `now`.
pub fn decide(
    licenses: &LicenseMap,
    q: &Question<'_>,
    territories: &[TerritoryId],
    now: DateTime<Utc>,
) -> Decision {
    decide_deals(licenses, licenses.lookup(q.track), q, territories, now)
}

/// [`decide`] on what the licence map says about `q.track` (`deals`), looked up once by a
/// caller that decides the same question in several places.
fn decide_deals(
    licenses: &LicenseMap,
    deals: TrackDeals<'_>,
    q: &Question<'_>,
    territories: &[TerritoryId],
    now: DateTime<Utc>,
) -> Decision {
    let here = territories.first().copied();
    let set = match deals {
        TrackDeals::UnknownTrack => return Decision::deny(Reason::UnknownTrack, here),
        TrackDeals::NoDealSet => return Decision::deny(Reason::NoDeal, here),
        TrackDeals::Found(set, _) => set,
    };
    if set.deals.is_empty() {
        return Decision::deny(Reason::TakenDown, here);
    }
    if territories.is_empty() {
        return Decision::deny(Reason::NoTerritory, None);
    }
    // How far each deal gets through the checks, in order; the best names the denial.
    let mut best = 0u8;
    let mut allow: Option<(DealId, &Deal, TerritoryId)> = None;
    for &id in set.deals.iter() {
        let deal = licenses.deal(id);
        let Some(t) = deal.scope.licensed_in(territories, now) else {
            continue;
        };
        let passed = if !deal.valid_at(now) {
            1
        } else if !deal.uses.has_use(q.use_type) {
            2
        } else if !deal.tiers.has_tier(q.tier) {
            3
        } else {
            4
        };
        if passed == 4 {
            // Of several allowing deals, report the one valid longest.
            let longer = match allow {
                None => true,
                Some((_, d, _)) => match (d.end, deal.end) {
                    (Some(a), Some(b)) => b > a,
                    (Some(_), None) => true,
                    _ => false,
                },
            };
            if longer {
                allow = Some((id, deal, t));
            }
        }
        best = best.max(passed);
    }
    if let Some((id, deal, t)) = allow {
        return Decision {
            verdict: Verdict::Allow,
            reason: Reason::Licensed,
            territory: Some(t),
            deal: Some(id),
            valid_until: deal.end,
            source: Source::None,
            touched: Touched::default(),
        };
    }
    let reason = match best {
        0 => Reason::NotLicensedInTerritory,
        1 => Reason::OutsideValidityWindow,
        2 => Reason::UseNotLicensed,
        _ => Reason::TierNotLicensed,
    };
    Decision::deny(reason, here)
}

// ---- Combining location evidence -----------------------------------------------------------

//! Decisions: may this track be played, for this use and tier, where the listener is, now?
//!
//! [`decide`] is pure: the same snapshot, question, placement and time give the same
//! [`Decision`]. A denial is a value with a machine-readable [`Reason`], never an error.

use crate::license::{Deal, DealId, LicenseMap, Tier, TrackDeals, UseType};
use crate::territory::TerritoryId;
use chrono::{DateTime, Utc};
use serde::Serialize;

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
}

impl Reason {
    /// All reasons (for metrics label sets).
    pub const ALL: [Reason; 10] = [
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
}

impl Decision {
    fn deny(reason: Reason, territory: Option<TerritoryId>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            reason,
            territory,
            deal: None,
            valid_until: None,
        }
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
    let here = territories.first().copied();
    let set = match licenses.lookup(q.track) {
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

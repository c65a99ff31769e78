//! `regiongate diff OLD NEW`: the impact of a data change before it ships.
//!
//! * Licences: for every selector (track, release, label, catalogue) in either directory, the
//!   territories licensed for each use type × tier at one point in time (default: now), old
//!   against new. Territory codes are compared, so renumbered ids do not matter. A takedown
//!   shows as the loss of everything.
//! * Territories: added, removed, and changed polygons (by a hash of their coordinates), with
//!   the area change.

use crate::license::{DealSet, LicenseMap, ScopeMode, Selector, Tier, UseType};
use crate::snapshot::Snapshot;
use crate::territory::{Territories, TerritoryKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Territory codes licensed for each `use/tier`.
type Rights = BTreeMap<String, BTreeSet<String>>;

/// How a selector changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectorChange {
    /// Only in the new data.
    Added,
    /// Only in the old data.
    Removed,
    /// Its new deal set is empty.
    TakenDown,
    /// Rights changed.
    Changed,
}

/// One selector's change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectorDiff {
    /// The selector, as text (`track X`, `label Y`).
    pub selector: String,
    /// What happened.
    pub change: SelectorChange,
    /// Territories gained per `use/tier`.
    pub gained: Rights,
    /// Territories lost per `use/tier`.
    pub lost: Rights,
}

/// How a territory changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TerritoryDiff {
    /// The territory id.
    pub id: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Area before, km².
    pub area_km2_old: Option<f64>,
    /// Area after, km².
    pub area_km2_new: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    /// The time the rights were evaluated at.
    pub at: String,
    /// Old and new data versions.
    pub versions: [String; 2],
    /// Selector changes, sorted by selector.
    pub selectors: Vec<SelectorDiff>,
    /// Territory changes, sorted by id.
    pub territories: Vec<TerritoryDiff>,
}

fn key(u: UseType, t: Tier) -> String {
    format!("{}/{}", u.as_str(), t.as_str())
}

fn rights(map: &LicenseMap, territories: &Territories, set: &DealSet, at: DateTime<Utc>) -> Rights {
    let mut out = Rights::new();
    for &id in set.deals.iter() {
        let d = map.deal(id);
        if !d.valid_at(at) {
            continue;
        }
        let listed = |t| {
            d.scope.always.contains(t)
                || d.scope
                    .dated
                    .iter()
                    .any(|m| m.territory == t && m.holds_at(at))
        };
        let codes: BTreeSet<String> = territories
            .ids()
            .filter(|&t| match d.scope.mode {
                ScopeMode::Include => listed(t),
                // Worldwide minus the list: every country not listed.
                ScopeMode::Exclude => territories.kind(t) == TerritoryKind::Country && !listed(t),
            })
            .map(|t| territories.code(t).to_owned())
            .collect();
        for u in UseType::ALL {
            for t in Tier::ALL {
                if d.uses.has_use(u) && d.tiers.has_tier(t) {
                    out.entry(key(u, t))
                        .or_default()
                        .extend(codes.iter().cloned());
                }
            }
        }
    }
    out
}

fn all_rights(
    s: &Snapshot,
    at: DateTime<Utc>,
    tick: &dyn Fn(),
) -> BTreeMap<String, (Rights, bool)> {
    s.licenses
        .selectors()
        .map(|(sel, set): (Selector, &DealSet)| {
            tick();
            (
                sel.to_string(),
                (
                    rights(&s.licenses, &s.territories, set, at),
                    set.deals.is_empty(),
                ),
            )
        })
        .collect()
}

fn minus(a: &Rights, b: &Rights) -> Rights {
    a.iter()
        .filter_map(|(k, set)| {
            let left: BTreeSet<String> = set
                .difference(b.get(k).unwrap_or(&BTreeSet::new()))
                .cloned()
                .collect();
            (!left.is_empty()).then(|| (k.clone(), left))
        })
        .collect()
}

/// Compares two snapshots at time `at`.
pub fn diff(old: &Snapshot, new: &Snapshot, at: DateTime<Utc>) -> Diff {
    diff_with_progress(old, new, at, &|| {})
}

/// The number of selectors [`diff_with_progress`] evaluates (its progress total).
pub fn selector_count(old: &Snapshot, new: &Snapshot) -> u64 {
    (old.licenses.selectors().count() + new.licenses.selectors().count()) as u64
}

/// [`diff`], calling `tick` once per selector evaluated (old and new), for a progress display.
pub fn diff_with_progress(
    old: &Snapshot,
    new: &Snapshot,
    at: DateTime<Utc>,
    tick: &dyn Fn(),
) -> Diff {
    let (a, b) = (all_rights(old, at, tick), all_rights(new, at, tick));
    let empty = (Rights::new(), false);
    let mut selectors = Vec::new();
    for sel in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        let (ra, rb) = (a.get(sel), b.get(sel));
        let (old_r, new_r) = (ra.unwrap_or(&empty), rb.unwrap_or(&empty));
        let change = match (ra, rb) {
            (None, Some(_)) => SelectorChange::Added,
            (Some(_), None) => SelectorChange::Removed,
            (Some((_, was_down)), Some((_, true))) if !was_down => SelectorChange::TakenDown,
            _ if old_r.0 != new_r.0 => SelectorChange::Changed,
            _ => continue,
        };
        selectors.push(SelectorDiff {
            selector: sel.clone(),
            change,
            gained: minus(&new_r.0, &old_r.0),
            lost: minus(&old_r.0, &new_r.0),
        });
    }
    let shape = |s: &Snapshot, code: &str| s.territories.id(code).map(|t| s.shapes[t.index()]);
    let codes: BTreeSet<String> = old
        .territories
        .ids()
        .map(|t| old.territories.code(t).to_owned())
        .chain(
            new.territories
                .ids()
                .map(|t| new.territories.code(t).to_owned()),
        )
        .collect();
    let mut territories = Vec::new();
    for code in codes {
        let (o, n) = (shape(old, &code), shape(new, &code));
        let change = match (o, n) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(o), Some(n)) if o.fingerprint != n.fingerprint => "changed",
            _ => continue,
        };
        territories.push(TerritoryDiff {
            id: code,
            change,
            area_km2_old: o.map(|s| (s.area_km2 * 10.0).round() / 10.0),
            area_km2_new: n.map(|s| (s.area_km2 * 10.0).round() / 10.0),
        });
    }
    Diff {
        at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        versions: [old.version.clone(), new.version.clone()],
        selectors,
        territories,
    }
}

fn rights_line(r: &Rights, sign: char) -> String {
    r.iter()
        .map(|(k, set)| {
            format!(
                "{k} {sign}{}",
                set.iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(&format!(" {sign}"))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty() && self.territories.is_empty()
    }

    /// The report for people: summary first, then at most `limit` lines of detail per part,
    /// with counts of what was left out.
    pub fn to_text(&self, limit: usize) -> String {
        let mut s = String::new();
        let count = |c: &SelectorChange| self.selectors.iter().filter(|d| d.change == *c).count();
        let _ = writeln!(
            s,
            "data {} -> {}, rights at {}",
            self.versions[0], self.versions[1], self.at
        );
        let _ = writeln!(
            s,
            "selectors: {} changed ({} taken down, {} added, {} removed); territories: {} changed",
            self.selectors.len(),
            count(&SelectorChange::TakenDown),
            count(&SelectorChange::Added),
            count(&SelectorChange::Removed),
            self.territories.len()
        );
        for d in self.selectors.iter().take(limit) {
            let what = match d.change {
                SelectorChange::Added => "added",
                SelectorChange::Removed => "removed",
                SelectorChange::TakenDown => "taken down",
                SelectorChange::Changed => "changed",
            };
            let mut parts = Vec::new();
            if !d.gained.is_empty() {
                parts.push(format!("gains {}", rights_line(&d.gained, '+')));
            }
            if !d.lost.is_empty() {
                parts.push(format!("loses {}", rights_line(&d.lost, '-')));
            }
            let _ = writeln!(
                s,
                "  {}: {what}{}{}",
                d.selector,
                if parts.is_empty() { "" } else { ": " },
                parts.join(" | ")
            );
        }
        if self.selectors.len() > limit {
            let _ = writeln!(
                s,
                "  ... and {} more selectors",
                self.selectors.len() - limit
            );
        }
        for t in self.territories.iter().take(limit) {
            let area = |a: Option<f64>| a.map_or("-".to_owned(), |a| format!("{a:.1} km²"));
            let _ = writeln!(
                s,
                "  territory {}: {}, area {} -> {}",
                t.id,
                t.change,
                area(t.area_km2_old),
                area(t.area_km2_new)
            );
        }
        if self.territories.len() > limit {
            let _ = writeln!(
                s,
                "  ... and {} more territories",
                self.territories.len() - limit
            );
        }
        s
    }
}

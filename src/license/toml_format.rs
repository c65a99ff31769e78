//! The human-edited licence format (TOML). See `regions/licenses/README.md` for the full
//! description with examples.
//!
//! ```toml
//! [[track]]                       # catalogue facts: release and label of a track
//! id = "GBAYE0601498"
//! release = "R-0001"
//! label = "Acme Records"
//!
//! [[deal_template]]               # a named deal, usable from deal sets and bulk CSV files
//! id = "acme-eu-premium"
//! territories = ["EU", "GB"]      # or excluded_territories = [...]
//! start = "2024-01-01"            # date (whole UTC day) or RFC 3339 time; required
//! end = "2027-12-31"              # optional, inclusive
//! uses = ["on_demand_stream"]
//! tiers = ["premium"]             # or commercial_models = ["SubscriptionModel"]
//!
//! [[dealset]]
//! selector = { label = "Acme Records" }   # or track / release, or catalog = true
//! updated = "2025-06-01T00:00:00Z"
//! deals = [{ template = "acme-eu-premium" }, { id = "inline-1", territories = ["CH"], ... }]
//! ```
//! `deals = []` is a takedown.

pub use super::MAX_TERRITORIES_PER_DEAL;
use super::{
    Bits, Deal, LicenseMapBuilder, LimitError, ScopeMode, Selector, TerritoryScope, Tier, UseType,
};
use crate::problem::Problem;
use crate::territory::{Groups, Territories, TerritorySet};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

/// A parsed but not yet compiled licence file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLicenseFile {
    #[serde(default)]
    track: Vec<RawTrack>,
    #[serde(default)]
    deal_template: Vec<RawDeal>,
    #[serde(default)]
    dealset: Vec<RawDealSet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    id: String,
    release: Option<String>,
    label: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawDeal {
    id: String,
    territories: Option<Vec<String>>,
    excluded_territories: Option<Vec<String>>,
    start: toml::Value,
    end: Option<toml::Value>,
    uses: Vec<String>,
    tiers: Option<Vec<String>>,
    commercial_models: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDealSet {
    selector: RawSelector,
    updated: toml::Value,
    deals: Option<Vec<RawDealRef>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDealRef {
    Template { template: String },
    Inline(Box<RawDeal>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    track: Option<String>,
    release: Option<String>,
    label: Option<String>,
    catalog: Option<bool>,
}

/// Resolves territory and group names while compiling deals.
pub struct Resolver<'a> {
    /// The snapshot's territories.
    pub territories: &'a Territories,
    /// The snapshot's groups.
    pub groups: &'a Groups,
}

/// Which end of a day a bare date means.
#[derive(Clone, Copy)]
enum DayEnd {
    Start,
    End,
}

/// Reads a date (`2024-01-01`, a whole UTC day) or an RFC 3339 time, from a string or a TOML
/// date/time value.
fn parse_time(v: &toml::Value, end: DayEnd) -> Result<DateTime<Utc>, String> {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            return Err(format!(
                "expected a date or time, found {}",
                other.type_str()
            ));
        }
    };
    parse_time_str(&s, end)
}

fn parse_time_str(s: &str, end: DayEnd) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let start = d.and_hms_opt(0, 0, 0).ok_or("bad date")?.and_utc();
        return Ok(match end {
            DayEnd::Start => start,
            DayEnd::End => start + Duration::days(1) - Duration::nanoseconds(1),
        });
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// Parses an `updated` time of a deal set (a bare date means the start of that day).
pub fn parse_updated(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time_str(s, DayEnd::Start)
}

/// Parses the file's TOML.
///
/// # Errors
/// A file over [`super::MAX_TOML_FILE_BYTES`], or the TOML parser's message (it names the line
/// and key; toml limits nesting depth itself).
pub fn parse(file: &str, text: &str) -> Result<RawLicenseFile, Problem> {
    LimitError::check_file_size(file, text.len())?;
    toml::from_str(text).map_err(|e| Problem::new(file, None, e.to_string().trim_end()))
}

impl Resolver<'_> {
    fn scope(&self, names: &[String], mode: ScopeMode) -> Result<TerritoryScope, String> {
        let mut always = TerritorySet::with_capacity(self.territories.len());
        let mut dated = Vec::new();
        let mut unknown = Vec::new();
        for n in names {
            if let Some(t) = self.territories.id(n) {
                always.insert(t);
            } else if let Some(g) = self.groups.get(n) {
                always.union_with(&g.always);
                dated.extend(g.dated.iter().cloned());
            } else {
                unknown.push(n.as_str());
            }
        }
        if !unknown.is_empty() {
            return Err(format!("unknown territory or group {}", unknown.join(", ")));
        }
        Ok(TerritoryScope {
            mode,
            always,
            dated,
        })
    }

    fn deal(&self, d: &RawDeal) -> Result<Deal, String> {
        let scope = match (&d.territories, &d.excluded_territories) {
            (Some(_), Some(_)) => {
                return Err(
                    "both territories and excluded_territories; a deal has one or the other".into(),
                );
            }
            (None, None) => {
                return Err(
                    "no territories (use territories = [...] or excluded_territories = [...])"
                        .into(),
                );
            }
            (Some(t), None) => {
                if t.is_empty() {
                    return Err("territories is empty; a deal must license somewhere".into());
                }
                self.scope(t, ScopeMode::Include)?
            }
            (None, Some(x)) => self.scope(x, ScopeMode::Exclude)?,
        };
        let start = parse_time(&d.start, DayEnd::Start).map_err(|e| format!("start: {e}"))?;
        let end = d
            .end
            .as_ref()
            .map(|e| parse_time(e, DayEnd::End))
            .transpose()
            .map_err(|e| format!("end: {e}"))?;
        if end.is_some_and(|e| e < start) {
            return Err("end is before start".into());
        }
        if d.uses.is_empty() {
            return Err("uses is empty".into());
        }
        let uses = d
            .uses
            .iter()
            .map(|u| u.parse::<UseType>())
            .collect::<Result<Vec<_>, _>>()?;
        let tiers = match (&d.tiers, &d.commercial_models) {
            (Some(_), Some(_)) => return Err("both tiers and commercial_models; use one".into()),
            (Some(t), None) => t
                .iter()
                .map(|t| t.parse::<Tier>())
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(m)) => m
                .iter()
                .map(|m| {
                    Tier::from_commercial_model(m)
                        .ok_or_else(|| format!("unknown commercial model {m:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            (None, None) => Tier::ALL.to_vec(),
        };
        if tiers.is_empty() {
            return Err("no tiers".into());
        }
        Ok(Deal {
            id: d.id.as_str().into(),
            scope,
            start,
            end,
            uses: Bits::of_uses(uses),
            tiers: Bits::of_tiers(tiers),
        })
    }
}

/// First pass: the file's catalogue facts, deal templates and inline deals.
pub(crate) fn add_deals(
    raw: &RawLicenseFile,
    file: &str,
    r: &Resolver<'_>,
    b: &mut LicenseMapBuilder,
    problems: &mut Vec<Problem>,
) {
    for t in &raw.track {
        b.add_track(&t.id, t.release.as_deref(), t.label.as_deref());
    }
    let inline = raw
        .dealset
        .iter()
        .flat_map(|s| s.deals.iter().flatten())
        .filter_map(|d| match d {
            RawDealRef::Inline(d) => Some(&**d),
            RawDealRef::Template { .. } => None,
        });
    for d in raw.deal_template.iter().chain(inline) {
        let count = d.territories.as_ref().map_or(0, Vec::len)
            + d.excluded_territories.as_ref().map_or(0, Vec::len);
        if count > MAX_TERRITORIES_PER_DEAL {
            problems.push(
                LimitError::TerritoriesPerDeal {
                    file: file.to_owned(),
                    deal: d.id.clone(),
                    count,
                }
                .into(),
            );
            continue;
        }
        let item = Some(format!("deal {:?}", d.id));
        match r.deal(d) {
            Ok(deal) => {
                if b.add_deal(deal).is_err() {
                    problems.push(Problem::new(file, item, "duplicate deal id"));
                }
            }
            Err(e) => problems.push(Problem::new(file, item, e)),
        }
    }
}

/// Second pass: attach the file's deal sets to their selectors.
pub(crate) fn attach_sets(
    raw: &RawLicenseFile,
    file: &str,
    b: &mut LicenseMapBuilder,
    problems: &mut Vec<Problem>,
) {
    for (i, s) in raw.dealset.iter().enumerate() {
        let sel = &s.selector;
        let selector = match (&sel.track, &sel.release, &sel.label, sel.catalog) {
            (Some(t), None, None, None) => Selector::Track(t.clone()),
            (None, Some(r), None, None) => Selector::Release(r.clone()),
            (None, None, Some(l), None) => Selector::Label(l.clone()),
            (None, None, None, Some(true)) => Selector::Catalog,
            _ => {
                problems.push(Problem::new(
                    file,
                    Some(format!("dealset #{i}")),
                    "selector must have exactly one of track, release, label or catalog = true",
                ));
                continue;
            }
        };
        let item = Some(format!("dealset for {selector}"));
        let updated = match parse_time(&s.updated, DayEnd::Start) {
            Ok(u) => u,
            Err(e) => {
                problems.push(Problem::new(file, item, format!("updated: {e}")));
                continue;
            }
        };
        let Some(refs) = &s.deals else {
            problems.push(Problem::new(
                file,
                item,
                "no deals key; write deals = [] for a takedown",
            ));
            continue;
        };
        let mut ids = Vec::with_capacity(refs.len());
        let mut ok = true;
        for d in refs {
            let name = match d {
                RawDealRef::Template { template } => template,
                RawDealRef::Inline(d) => &d.id,
            };
            match b.deal_id(name) {
                Some(id) => ids.push(id),
                None => {
                    // An inline deal that failed to compile was reported in the first pass.
                    if matches!(d, RawDealRef::Template { .. }) {
                        problems.push(Problem::new(
                            file,
                            item.clone(),
                            format!("unknown deal template {name:?}"),
                        ));
                    }
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        if let Err(super::AttachError::Ambiguous { other }) = b.attach(
            selector,
            updated,
            ids,
            super::Origin {
                file,
                item: i as u32,
            },
        ) {
            problems.push(Problem::new(
                file,
                item,
                format!("another deal set for the same selector has the same updated time and other deals ({other})"),
            ));
        }
    }
}

//! Licence maps: which deals apply to a track, modelled after DDEX ERN deal terms.
//!
//! * A **deal** licenses a set of territories (an included list, or worldwide minus an excluded
//!   list), a validity window (start inclusive, optional end inclusive), use types and tiers.
//! * A **deal set** is all deals for one **selector** (a track, a release, a label, or the whole
//!   catalogue) as of an `updated` time. A newer deal set for the same selector replaces the
//!   older one entirely, as a newer DDEX message replaces earlier deals. An explicitly empty deal
//!   set is a takedown.
//! * For a track, the most specific selector that has a deal set wins: track, then its release,
//!   then its label, then the catalogue default. No deal anywhere means no availability.
//!
//! Files: human-edited TOML ([`toml_format`]) and a bulk CSV for large catalogues ([`bulk`]).

pub mod bulk;
pub mod toml_format;

use crate::problem::Problem;
use crate::territory::groups::DatedMember;
use crate::territory::{TerritoryId, TerritorySet};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Largest TOML licence file read, in bytes. The sample is 3 KB and a label's catalogue facts
/// a few MB; whole catalogues belong in the bulk format. Parsing TOML takes several times the
/// text in memory, which this bounds.
pub const MAX_TOML_FILE_BYTES: usize = 64 * 1024 * 1024;

/// Largest bulk CSV licence file read, in bytes. A 1,000,000-track catalogue
/// (`benches/gen_catalog.py`) is 80 MB; the file is read as a stream, so this only bounds the
/// load time.
pub const MAX_BULK_FILE_BYTES: usize = 512 * 1024 * 1024;

/// Most territory entries (territories and groups) one deal may list. The world has about 250
/// countries; a list longer than this is a generated file gone wrong.
pub const MAX_TERRITORIES_PER_DEAL: usize = 5_000;

/// A licence file over a size limit, naming the file, the deal and the limit. Reported as a
/// [`Problem`] like every other licence problem.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// The file is larger than [`MAX_TOML_FILE_BYTES`] or [`MAX_BULK_FILE_BYTES`].
    #[error("{file}: {bytes} bytes, more than the limit of {limit} for a {format} licence file")]
    FileTooLarge {
        /// The file.
        file: String,
        /// Its size.
        bytes: usize,
        /// The limit for its format.
        limit: usize,
        /// `TOML` or `bulk CSV`.
        format: &'static str,
    },
    /// A deal lists more than [`MAX_TERRITORIES_PER_DEAL`] territories and groups.
    #[error(
        "{file}: deal {deal:?}: {count} territories, more than the limit of {MAX_TERRITORIES_PER_DEAL}"
    )]
    TerritoriesPerDeal {
        /// The file.
        file: String,
        /// The deal's id.
        deal: String,
        /// How many entries it lists.
        count: usize,
    },
}

impl LimitError {
    /// Checks a licence file's size against the limit of its format (by extension).
    ///
    /// # Errors
    /// [`LimitError::FileTooLarge`].
    pub fn check_file_size(file: &str, bytes: usize) -> Result<(), LimitError> {
        let (limit, format) = if file.ends_with(".csv") {
            (MAX_BULK_FILE_BYTES, "bulk CSV")
        } else {
            (MAX_TOML_FILE_BYTES, "TOML")
        };
        if bytes > limit {
            return Err(LimitError::FileTooLarge {
                file: file.to_owned(),
                bytes,
                limit,
                format,
            });
        }
        Ok(())
    }
}

impl From<LimitError> for Problem {
    fn from(e: LimitError) -> Problem {
        match e {
            LimitError::FileTooLarge {
                file,
                bytes,
                limit,
                format,
            } => Problem::new(
                file,
                None,
                format!(
                    "{bytes} bytes, more than the limit of {limit} for a {format} licence file"
                ),
            ),
            LimitError::TerritoriesPerDeal { file, deal, count } => Problem::new(
                file,
                Some(format!("deal {deal:?}")),
                format!("{count} territories, more than the limit of {MAX_TERRITORIES_PER_DEAL}"),
            ),
        }
    }
}

/// How a track is used. Names follow DDEX UseType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UseType {
    /// Interactive streaming: the listener picks the track (DDEX `OnDemandStream`).
    OnDemandStream,
    /// Radio-style streaming (DDEX `NonInteractiveStream`).
    NonInteractiveStream,
    /// Offline copy (DDEX `PermanentDownload` / `ConditionalDownload`).
    Download,
}

impl UseType {
    /// All use types, in bit order.
    pub const ALL: [UseType; 3] = [
        UseType::OnDemandStream,
        UseType::NonInteractiveStream,
        UseType::Download,
    ];

    /// The wire name (`on_demand_stream`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UseType::OnDemandStream => "on_demand_stream",
            UseType::NonInteractiveStream => "non_interactive_stream",
            UseType::Download => "download",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl FromStr for UseType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on_demand_stream" | "OnDemandStream" | "stream" => Ok(UseType::OnDemandStream),
            "non_interactive_stream" | "NonInteractiveStream" => Ok(UseType::NonInteractiveStream),
            "download" | "PermanentDownload" | "ConditionalDownload" => Ok(UseType::Download),
            _ => Err(format!(
                "unknown use {s:?} (expected on_demand_stream, non_interactive_stream or download)"
            )),
        }
    }
}

impl fmt::Display for UseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The listener's subscription tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Ad-supported or free of charge (DDEX `AdvertisementSupportedModel`, `FreeOfChargeModel`).
    Free,
    /// Paid subscription (DDEX `SubscriptionModel`).
    Premium,
}

impl Tier {
    /// All tiers, in bit order.
    pub const ALL: [Tier; 2] = [Tier::Free, Tier::Premium];

    /// The wire name (`free`, `premium`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Premium => "premium",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The tier a DDEX CommercialModelType maps to.
    pub fn from_commercial_model(s: &str) -> Option<Tier> {
        match s {
            "SubscriptionModel" => Some(Tier::Premium),
            "AdvertisementSupportedModel" | "FreeOfChargeModel" => Some(Tier::Free),
            _ => None,
        }
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "free" => Ok(Tier::Free),
            "premium" => Ok(Tier::Premium),
            _ => Err(format!("unknown tier {s:?} (expected free or premium)")),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of use types or tiers as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Bits(u8);

impl Bits {
    /// Whether the use type is in the set.
    pub fn has_use(self, u: UseType) -> bool {
        self.0 & u.bit() != 0
    }
    /// Whether the tier is in the set.
    pub fn has_tier(self, t: Tier) -> bool {
        self.0 & t.bit() != 0
    }
    /// A set of use types.
    pub fn of_uses(uses: impl IntoIterator<Item = UseType>) -> Bits {
        Bits(uses.into_iter().fold(0, |b, u| b | u.bit()))
    }
    /// A set of tiers.
    pub fn of_tiers(tiers: impl IntoIterator<Item = Tier>) -> Bits {
        Bits(tiers.into_iter().fold(0, |b, t| b | t.bit()))
    }
}

/// Whether a deal's territory list includes or excludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScopeMode {
    /// Only the listed territories.
    Include,
    /// Everywhere except the listed territories.
    Exclude,
}

/// The territories of a deal, compiled: groups expanded to a bitset plus dated members.
#[derive(Clone, Debug, PartialEq)]
pub struct TerritoryScope {
    /// Include or exclude.
    pub mode: ScopeMode,
    /// Listed territories with no date limits.
    pub always: TerritorySet,
    /// Listed territories whose group membership is dated.
    pub dated: Vec<DatedMember>,
}

impl TerritoryScope {
    fn lists(&self, t: TerritoryId, now: DateTime<Utc>) -> bool {
        self.always.contains(t)
            || self
                .dated
                .iter()
                .any(|d| d.territory == t && d.holds_at(now))
    }

    /// The territory of `hits` the scope licenses, if any: for an include list the first hit
    /// listed (the country first); for an exclude list the first hit, when no hit is excluded.
    pub fn licensed_in(&self, hits: &[TerritoryId], now: DateTime<Utc>) -> Option<TerritoryId> {
        match self.mode {
            ScopeMode::Include => hits.iter().copied().find(|&t| self.lists(t, now)),
            ScopeMode::Exclude => {
                if hits.iter().any(|&t| self.lists(t, now)) {
                    None
                } else {
                    hits.first().copied()
                }
            }
        }
    }
}

/// One deal.
#[derive(Clone, Debug, PartialEq)]
pub struct Deal {
    /// The deal's id, unique across all licence files.
    pub id: Box<str>,
    /// Where it applies.
    pub scope: TerritoryScope,
    /// First instant of validity.
    pub start: DateTime<Utc>,
    /// Last instant of validity (inclusive), or open-ended.
    pub end: Option<DateTime<Utc>>,
    /// Licensed use types.
    pub uses: Bits,
    /// Licensed tiers.
    pub tiers: Bits,
}

impl Deal {
    /// Whether `now` is inside the validity window.
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.start && self.end.is_none_or(|e| now <= e)
    }
}

/// Index of a deal in [`LicenseMap::deals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DealId(pub u32);

/// Index of a deal set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DealSetId(pub u32);

/// All deals for one selector as of `updated`. Empty `deals` is a takedown.
#[derive(Clone, Debug, PartialEq)]
pub struct DealSet {
    /// When this deal set was issued; the newest per selector wins.
    pub updated: DateTime<Utc>,
    /// The deals; empty means taken down.
    pub deals: Box<[DealId]>,
}

/// What a deal set is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// One track (ISRC or platform id).
    Track(String),
    /// Every track of a release.
    Release(String),
    /// Every track of a label.
    Label(String),
    /// Every known track.
    Catalog,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Track(t) => write!(f, "track {t}"),
            Selector::Release(r) => write!(f, "release {r}"),
            Selector::Label(l) => write!(f, "label {l}"),
            Selector::Catalog => f.write_str("catalog"),
        }
    }
}

/// Which kind of selector a track's deals came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorKind {
    /// The track's own deal set.
    Track,
    /// Its release's.
    Release,
    /// Its label's.
    Label,
    /// The catalogue default.
    Catalog,
}

const NONE: u32 = u32::MAX;

/// Catalogue facts about a track: its own deal set, release and label (interned), if any.
#[derive(Clone, Copy, Debug)]
struct TrackEntry {
    dealset: u32,
    release: u32,
    label: u32,
    /// Where the deal set came from (file index, item), for conflict messages.
    origin: (u32, u32),
}

/// What the licence map knows about a track.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrackDeals<'a> {
    /// Neither the catalogue nor any deal set names the track.
    UnknownTrack,
    /// The track is known but no selector covering it has a deal set.
    NoDealSet,
    /// The winning deal set and where it came from.
    Found(&'a DealSet, SelectorKind),
}

/// The compiled licence map of a snapshot.
#[derive(Debug, Default)]
pub struct LicenseMap {
    deals: Vec<Deal>,
    deal_ids: HashMap<Box<str>, DealId>,
    dealsets: Vec<DealSet>,
    tracks: HashMap<Box<str>, TrackEntry>,
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    releases: HashMap<u32, DealSetId>,
    labels: HashMap<u32, DealSetId>,
    catalog: Option<DealSetId>,
}

/// Loads licence files, given as `(path relative to the data directory, bytes)`: every TOML
/// file's deals first (a deal set may name a template of another file), then their deal sets,
/// then the bulk CSV files. Paths other than `licenses/*.toml` and `licenses/*.csv` are ignored.
/// Every problem found is added to `problems`; the map holds what loaded.
pub fn load_files(
    files: &[(&str, &[u8])],
    territories: &crate::territory::Territories,
    groups: &crate::territory::Groups,
    problems: &mut Vec<Problem>,
) -> LicenseMap {
    let tomls = files
        .iter()
        .filter(|(path, _)| path.starts_with("licenses/") && path.ends_with(".toml"))
        .filter_map(|&(path, data)| match std::str::from_utf8(data) {
            Ok(text) => parse_toml(path, text, problems),
            Err(e) => {
                problems.push(Problem::new(path, None, format!("not UTF-8: {e}")));
                None
            }
        })
        .collect();
    build_map(tomls, territories, groups, 0, problems, |b, problems| {
        for &(path, data) in files {
            if path.starts_with("licenses/") && path.ends_with(".csv") {
                bulk::load(path, data, b, problems);
            }
        }
    })
}

/// Parses one licence TOML file; a problem is recorded and `None` returned if it is broken.
pub(crate) fn parse_toml<'p>(
    path: &'p str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<(&'p str, toml_format::RawLicenseFile)> {
    match toml_format::parse(path, text) {
        Ok(raw) => Some((path, raw)),
        Err(p) => {
            problems.push(p);
            None
        }
    }
}

/// Builds the map in the one order that lets files refer to each other: every TOML file's
/// deals, then their deal sets, then the bulk CSV files (`load_bulk`), with room made for
/// about `track_hint` tracks first.
pub(crate) fn build_map(
    tomls: Vec<(&str, toml_format::RawLicenseFile)>,
    territories: &crate::territory::Territories,
    groups: &crate::territory::Groups,
    track_hint: usize,
    problems: &mut Vec<Problem>,
    load_bulk: impl FnOnce(&mut LicenseMapBuilder, &mut Vec<Problem>),
) -> LicenseMap {
    let resolver = toml_format::Resolver {
        territories,
        groups,
    };
    let mut b = LicenseMapBuilder::default();
    b.reserve_tracks(track_hint);
    for (file, raw) in &tomls {
        toml_format::add_deals(raw, file, &resolver, &mut b, problems);
    }
    for (file, raw) in &tomls {
        toml_format::attach_sets(raw, file, &mut b, problems);
    }
    load_bulk(&mut b, problems);
    b.finish()
}

impl LicenseMap {
    /// The deal set that applies to a track: the most specific selector with a deal set.
    pub fn lookup(&self, track: &str) -> TrackDeals<'_> {
        let Some(e) = self.tracks.get(track) else {
            return TrackDeals::UnknownTrack;
        };
        let found = if e.dealset != NONE {
            Some((DealSetId(e.dealset), SelectorKind::Track))
        } else if let Some(&d) = self.releases.get(&e.release) {
            Some((d, SelectorKind::Release))
        } else if let Some(&d) = self.labels.get(&e.label) {
            Some((d, SelectorKind::Label))
        } else {
            self.catalog.map(|d| (d, SelectorKind::Catalog))
        };
        match found {
            Some((d, k)) => TrackDeals::Found(&self.dealsets[d.0 as usize], k),
            None => TrackDeals::NoDealSet,
        }
    }

    /// A deal by index.
    pub fn deal(&self, id: DealId) -> &Deal {
        &self.deals[id.0 as usize]
    }

    /// A deal by its string id.
    pub fn deal_by_name(&self, name: &str) -> Option<&Deal> {
        self.deal_ids.get(name).map(|&d| self.deal(d))
    }

    /// Number of deals (templates and inline deals).
    pub fn deal_count(&self) -> usize {
        self.deals.len()
    }

    /// Number of tracks the map knows.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Every selector with its winning deal set, for `diff`. Tracks come in no fixed order.
    pub fn selectors(&self) -> impl Iterator<Item = (Selector, &DealSet)> + '_ {
        let name = |i: &u32| self.names[*i as usize].to_string();
        self.tracks
            .iter()
            .filter(|(_, e)| e.dealset != NONE)
            .map(|(t, e)| {
                (
                    Selector::Track(t.to_string()),
                    &self.dealsets[e.dealset as usize],
                )
            })
            .chain(
                self.releases
                    .iter()
                    .map(move |(r, d)| (Selector::Release(name(r)), &self.dealsets[d.0 as usize])),
            )
            .chain(
                self.labels
                    .iter()
                    .map(move |(l, d)| (Selector::Label(name(l)), &self.dealsets[d.0 as usize])),
            )
            .chain(
                self.catalog
                    .map(|d| (Selector::Catalog, &self.dealsets[d.0 as usize])),
            )
    }
}

/// Builds a [`LicenseMap`] from deals and selector → deal set assignments; used by the loaders.
///
/// Sized for bulk catalogues: a track id is allocated once and moved from the loader into the
/// map; where a deal set came from is two integers, turned into text only for an error.
#[derive(Default)]
pub(crate) struct LicenseMapBuilder {
    map: LicenseMap,
    interned_sets: HashMap<(i64, Box<[DealId]>), DealSetId>,
    other_sets: HashMap<Selector, Attached>,
    files: Vec<String>,
}

/// Where a deal set came from: a file (index into `files`) and an item number in it.
#[derive(Clone, Copy, Debug)]
struct Attached {
    set: DealSetId,
    file: u32,
    item: u32,
}

/// Why a deal set could not be attached to its selector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttachError {
    /// Another deal set for the same selector has the same `updated` time and other deals.
    Ambiguous {
        /// Where the other one came from.
        other: String,
    },
}

/// Names the place a deal set was written, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin<'a> {
    /// The file.
    pub file: &'a str,
    /// The line (CSV) or deal set number (TOML).
    pub item: u32,
}

impl LicenseMapBuilder {
    /// Adds a deal; `Err` if the id is taken.
    pub fn add_deal(&mut self, deal: Deal) -> Result<DealId, ()> {
        if self.map.deal_ids.contains_key(&deal.id) {
            return Err(());
        }
        let id = DealId(self.map.deals.len() as u32);
        self.map.deal_ids.insert(deal.id.clone(), id);
        self.map.deals.push(deal);
        Ok(id)
    }

    /// The index of a deal by its string id.
    pub fn deal_id(&self, name: &str) -> Option<DealId> {
        self.map.deal_ids.get(name).copied()
    }

    fn intern_name(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.name_ids.get(s) {
            return i;
        }
        let i = self.map.names.len() as u32;
        self.map.names.push(s.into());
        self.map.name_ids.insert(s.into(), i);
        i
    }

    fn track_entry(&mut self, track: Box<str>) -> &mut TrackEntry {
        self.map.tracks.entry(track).or_insert(TrackEntry {
            dealset: NONE,
            release: NONE,
            label: NONE,
            origin: (0, 0),
        })
    }

    /// Records catalogue facts: the track's release and label.
    pub fn add_track(&mut self, track: &str, release: Option<&str>, label: Option<&str>) {
        let release = release.map_or(NONE, |r| self.intern_name(r));
        let label = label.map_or(NONE, |l| self.intern_name(l));
        let e = self.track_entry(track.into());
        if release != NONE {
            e.release = release;
        }
        if label != NONE {
            e.label = label;
        }
    }

    fn file_index(&mut self, file: &str) -> u32 {
        match self.files.iter().rposition(|f| f == file) {
            Some(i) => i as u32,
            None => {
                self.files.push(file.to_owned());
                (self.files.len() - 1) as u32
            }
        }
    }

    fn intern_set(&mut self, updated: DateTime<Utc>, mut deals: Vec<DealId>) -> DealSetId {
        deals.sort_unstable();
        deals.dedup();
        let key = (updated.timestamp_micros(), deals.into_boxed_slice());
        if let Some(&s) = self.interned_sets.get(&key) {
            return s;
        }
        let s = DealSetId(self.map.dealsets.len() as u32);
        self.map.dealsets.push(DealSet {
            updated,
            deals: key.1.clone(),
        });
        self.interned_sets.insert(key, s);
        s
    }

    /// Decides whether `new` replaces `old` (newer wins; equal time and equal deals is the
    /// same deal set; equal time and other deals is an error).
    fn newer(&self, old: Option<&Attached>, new: DealSetId) -> Result<bool, AttachError> {
        let Some(old) = old else { return Ok(true) };
        let (o, n) = (
            &self.map.dealsets[old.set.0 as usize],
            &self.map.dealsets[new.0 as usize],
        );
        if o.updated != n.updated {
            return Ok(n.updated > o.updated);
        }
        if o.deals == n.deals {
            return Ok(false);
        }
        Err(AttachError::Ambiguous {
            other: format!("{} #{}", self.files[old.file as usize], old.item),
        })
    }

    /// Attaches a deal set to a selector; the newest `updated` wins.
    pub fn attach(
        &mut self,
        selector: Selector,
        updated: DateTime<Utc>,
        deals: Vec<DealId>,
        origin: Origin<'_>,
    ) -> Result<(), AttachError> {
        if let Selector::Track(t) = selector {
            return self.attach_track(t.into_boxed_str(), updated, deals, origin);
        }
        let set = self.intern_set(updated, deals);
        let att = Attached {
            set,
            file: self.file_index(origin.file),
            item: origin.item,
        };
        if self.newer(self.other_sets.get(&selector), set)? {
            self.other_sets.insert(selector, att);
        }
        Ok(())
    }

    /// Attaches a deal set to a track; the newest `updated` wins. Writes straight into the
    /// map: a million-track catalogue is held once.
    pub fn attach_track(
        &mut self,
        track: Box<str>,
        updated: DateTime<Utc>,
        deals: Vec<DealId>,
        origin: Origin<'_>,
    ) -> Result<(), AttachError> {
        let set = self.intern_set(updated, deals);
        let file = self.file_index(origin.file);
        let current = self
            .map
            .tracks
            .get(&track)
            .filter(|e| e.dealset != NONE)
            .map(|e| Attached {
                set: DealSetId(e.dealset),
                file: e.origin.0,
                item: e.origin.1,
            });
        if self.newer(current.as_ref(), set)? {
            let e = self.track_entry(track);
            e.dealset = set.0;
            e.origin = (file, origin.item);
        }
        Ok(())
    }

    /// Whether the track already has a deal set from `file`.
    pub fn track_has_set_from(&self, track: &str, file: &str) -> bool {
        self.map.tracks.get(track).is_some_and(|e| {
            e.dealset != NONE
                && self
                    .files
                    .get(e.origin.0 as usize)
                    .is_some_and(|f| f == file)
        })
    }

    /// Makes room for about `n` more tracks at once, so that a large catalogue does not grow
    /// the track table by doubling (each step holds the old and the new table).
    pub fn reserve_tracks(&mut self, n: usize) {
        self.map.tracks.reserve(n);
    }

    /// Finishes the map.
    pub fn finish(mut self) -> LicenseMap {
        for (sel, att) in std::mem::take(&mut self.other_sets) {
            match sel {
                Selector::Track(t) => self.track_entry(t.into_boxed_str()).dealset = att.set.0,
                Selector::Release(r) => {
                    let i = self.intern_name(&r);
                    self.map.releases.insert(i, att.set);
                }
                Selector::Label(l) => {
                    let i = self.intern_name(&l);
                    self.map.labels.insert(i, att.set);
                }
                Selector::Catalog => self.map.catalog = Some(att.set),
            }
        }
        self.map.tracks.shrink_to_fit();
        self.map
    }
}

#[cfg(test)]
mod tests;

//! Territories: where a point is.
//!
//! A territory is a named area: a country (ISO 3166-1 alpha-2 id, from the countries file) or a
//! rights holder's custom polygon (any id, from `custom/*.geojson`). Territories are compiled to
//! small integer ids ([`TerritoryId`]); countries get the lowest ids, so a sorted list of ids
//! names the country first.
//!
//! * [`geojson`] reads territory files into rings, checking them.
//! * [`index`] answers "which territories contain this point" exactly and fast.
//! * [`disc`] answers "which territories does this accuracy disc touch", through an R-tree of
//!   border chains kept in the index.
//! * [`groups`] names sets of territories (`EU`, `WORLDWIDE`, ...), possibly dated.

pub mod disc;
pub mod geojson;
pub mod groups;
pub mod index;

use std::collections::HashMap;
use std::fmt;

pub use disc::Disc;
pub use geojson::{RawTerritory, TerritoryFileError};
pub use groups::{GroupId, Groups};
pub use index::{Hits, TerritoryIndex};

/// A territory compiled to a small integer; ids index into [`Territories`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TerritoryId(pub u16);

impl TerritoryId {
    /// The id as an index into per-territory tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Whether a territory is a country (exclusive with other countries) or a custom area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerritoryKind {
    /// An ISO 3166-1 country or dependency; countries never overlap.
    Country,
    /// A rights holder's own polygon; may overlap countries and other custom territories.
    Custom,
}

/// The names and kinds of all territories of a snapshot.
#[derive(Debug, Default)]
pub struct Territories {
    codes: Vec<Box<str>>,
    kinds: Vec<TerritoryKind>,
    by_code: HashMap<Box<str>, TerritoryId>,
}

impl Territories {
    /// Builds the table; countries must come before custom territories and ids must be unique
    /// (the loader checks both before calling this).
    pub(crate) fn new(list: impl IntoIterator<Item = (Box<str>, TerritoryKind)>) -> Self {
        let mut t = Territories::default();
        for (code, kind) in list {
            let id = TerritoryId(t.codes.len() as u16);
            t.by_code.insert(code.clone(), id);
            t.codes.push(code);
            t.kinds.push(kind);
        }
        t
    }

    /// The id for a territory code (`"DE"`, `"XK"`, a custom id), if it exists.
    pub fn id(&self, code: &str) -> Option<TerritoryId> {
        self.by_code.get(code).copied()
    }

    /// The code of a territory id.
    ///
    /// # Panics
    /// If `id` did not come from this table.
    pub fn code(&self, id: TerritoryId) -> &str {
        &self.codes[id.index()]
    }

    /// Whether `id` is a country or a custom territory.
    pub fn kind(&self, id: TerritoryId) -> TerritoryKind {
        self.kinds[id.index()]
    }

    /// Number of territories.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether there are no territories at all.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// All ids, countries first.
    pub fn ids(&self) -> impl Iterator<Item = TerritoryId> + '_ {
        (0..self.codes.len()).map(|i| TerritoryId(i as u16))
    }

    /// The country among `hits`, if any (countries sort first).
    pub fn country_of(&self, hits: &[TerritoryId]) -> Option<TerritoryId> {
        hits.first()
            .copied()
            .filter(|&id| self.kind(id) == TerritoryKind::Country)
    }
}

/// A set of territories as a bitset over territory ids: membership is one bit test.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TerritorySet {
    words: Vec<u64>,
}

impl TerritorySet {
    /// An empty set able to hold `n` territories.
    pub fn with_capacity(n: usize) -> Self {
        TerritorySet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// Adds a territory.
    pub fn insert(&mut self, id: TerritoryId) {
        let (w, b) = (id.index() / 64, id.index() % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << b;
    }

    /// Whether the set holds `id`.
    #[inline]
    pub fn contains(&self, id: TerritoryId) -> bool {
        let (w, b) = (id.index() / 64, id.index() % 64);
        self.words.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    /// Adds every member of `other`.
    pub fn union_with(&mut self, other: &TerritorySet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Whether no territory is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The members in id order.
    pub fn iter(&self) -> impl Iterator<Item = TerritoryId> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| TerritoryId((wi * 64 + b) as u16))
        })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

impl fmt::Debug for TerritorySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|t| t.0)).finish()
    }
}

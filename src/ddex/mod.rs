//! DDEX ERN import: deals from `NewReleaseMessage`s (and takedowns from
//! `PurgeReleaseMessage`s) turned into the licence files of [`crate::license`].
//!
//! * [`parse`] reads one message as a stream of XML events (quick-xml): memory holds the facts
//!   the licence map needs (references, ISRCs, release ids, deal terms), never the document.
//! * [`Import`] merges messages: per selector the deals of the newest message
//!   (`MessageCreatedDateTime`) win, as they do in the licence map.
//! * [`write`] renders the merged deals as a TOML licence file, with the track deal sets in a
//!   bulk CSV file when there are many, and checks the result loads cleanly.
//!
//! What maps to what is described in `docs/licence-ops.md`. Elements of the deal list that the
//! licence model cannot hold are listed in [`Ignored`], never dropped silently; a deal that
//! cannot be expressed at all refuses the whole message with the element path and the reason.

mod read;
mod terms;
pub mod write;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use thiserror::Error;

use read::*;
pub use read::{parse, parse_checked};
use terms::*;

/// ERN versions read, by the last segment of their namespace (`http://ddex.net/xml/ern/43`).
pub const SUPPORTED_VERSIONS: [&str; 7] = ["38", "381", "382", "41", "411", "42", "43"];

/// The namespace prefix all ERN versions share.
const ERN_NS: &str = "http://ddex.net/xml/ern/";

/// Why a message could not be imported. Each names the file; all but I/O name the element.
#[derive(Debug, Error)]
pub enum DdexError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not well-formed XML.
    #[error("{file}: not well-formed XML at byte {offset}: {reason}")]
    Xml {
        /// The file.
        file: String,
        /// Byte offset where the parser stopped.
        offset: u64,
        /// The parser's message.
        reason: String,
    },
    /// The message is well-formed but cannot be expressed as licence files.
    #[error("{file}: {element}: {reason}")]
    Refused {
        /// The file.
        file: String,
        /// Path of the element concerned (`/NewReleaseMessage/DealList/ReleaseDeal[1]/...`).
        element: String,
        /// Why.
        reason: String,
    },
}

impl DdexError {
    fn refused(file: &str, element: impl Into<String>, reason: impl Into<String>) -> Self {
        DdexError::Refused {
            file: file.to_owned(),
            element: element.into(),
            reason: reason.into(),
        }
    }

    /// The error as JSON fields (`file`, `element`, `reason`) for `--json` output.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            DdexError::Io { file, source } => {
                serde_json::json!({"file": file, "element": null, "reason": source.to_string()})
            }
            DdexError::Xml {
                file,
                offset,
                reason,
            } => serde_json::json!({"file": file, "element": null, "offset": offset,
                                    "reason": format!("not well-formed XML: {reason}")}),
            DdexError::Refused {
                file,
                element,
                reason,
            } => serde_json::json!({"file": file, "element": element, "reason": reason}),
        }
    }
}

/// An element (or value) that was read but not applied, with how often it occurred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// The file.
    pub file: String,
    /// The element path without indexes (`/NewReleaseMessage/DealList/ReleaseDeal/Deal/DealTerms/PriceInformation`).
    pub element: String,
    /// Why it was not applied.
    pub reason: String,
    /// How many times it occurred in the file.
    pub count: u32,
}

/// The kind of message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// `NewReleaseMessage`: releases, resources and deals.
    NewRelease,
    /// `PurgeReleaseMessage`: the named releases are taken down.
    Purge,
}

/// What a deal list entry is attached to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A release by ICPN or GRid: every track of it.
    Release(String),
    /// One track by ISRC (a DDEX `TrackRelease`).
    Track(String),
}

/// Where a deal applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Only these territories (codes as the licence files name them: `DE`, `WORLDWIDE`, `2123`).
    Include(Vec<String>),
    /// Everywhere except these.
    Exclude(Vec<String>),
}

/// A deal's validity bound: a whole day or an instant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum When {
    /// A date (`2024-01-01`): the whole UTC day.
    Date(NaiveDate),
    /// An instant.
    Time(DateTime<Utc>),
}

impl When {
    /// The text the licence files read.
    pub fn to_licence_text(&self) -> String {
        match self {
            When::Date(d) => d.format("%Y-%m-%d").to_string(),
            When::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// One deal, in the terms of the licence model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct DealTerms {
    /// Territories.
    pub territories: Scope,
    /// First day or instant.
    pub start: When,
    /// Last day or instant (inclusive), if any.
    pub end: Option<When>,
    /// Use types (sorted, deduplicated).
    pub uses: Vec<&'static str>,
    /// Tiers (sorted, deduplicated).
    pub tiers: Vec<&'static str>,
}

/// One message, read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    /// The file it came from.
    pub file: String,
    /// New release or purge.
    pub kind: MessageKind,
    /// The ERN version (`4.3`).
    pub version: String,
    /// `MessageHeader/MessageId`.
    pub message_id: String,
    /// `MessageHeader/MessageCreatedDateTime`: orders this message against others.
    pub created: DateTime<Utc>,
    /// Catalogue facts: ISRC → (release id, label name).
    pub tracks: BTreeMap<String, (Option<String>, Option<String>)>,
    /// Deal sets per target; an empty list is a takedown.
    pub deals: BTreeMap<Target, Vec<DealTerms>>,
    /// What was read and not applied.
    pub ignored: Vec<Ignored>,
}

/// Several messages merged: per target, the deal set of the newest message.
#[derive(Debug, Default, Serialize)]
pub struct Import {
    /// Catalogue facts: ISRC → (release, label), the newest message's first.
    pub tracks: BTreeMap<String, (Option<String>, Option<String>)>,
    /// Per target: the winning deal set, the message it came from (id, created, file).
    pub deals: BTreeMap<Target, Winner>,
    /// What each message contributed, in the order given.
    pub messages: Vec<MessageSummary>,
    /// What was read and not applied, over all messages.
    pub ignored: Vec<Ignored>,
}

/// The winning deal set of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Winner {
    /// The deals; empty is a takedown.
    pub deals: Vec<DealTerms>,
    /// `MessageId` of the message it came from.
    pub message_id: String,
    /// Its `MessageCreatedDateTime`.
    pub created: DateTime<Utc>,
    /// Its file.
    pub file: String,
}

/// One message in the import report.
#[derive(Debug, Clone, Serialize)]
pub struct MessageSummary {
    /// The file.
    pub file: String,
    /// New release or purge.
    pub kind: MessageKind,
    /// ERN version.
    pub version: String,
    /// `MessageId`.
    pub message_id: String,
    /// `MessageCreatedDateTime`.
    pub created: DateTime<Utc>,
    /// Targets it names.
    pub targets: usize,
    /// Targets whose deal set it won (was the newest for).
    pub current: usize,
    /// Targets it takes down.
    pub takedowns: usize,
}

impl Import {
    /// Merges messages. Per target the newest `MessageCreatedDateTime` wins.
    ///
    /// # Errors
    /// [`DdexError::Refused`] when two messages created at the same time give one target
    /// different deals (which one is current cannot be told).
    pub fn merge(mut messages: Vec<Message>) -> Result<Import, DdexError> {
        // Stable: messages created at the same instant keep the order given.
        let mut order: Vec<usize> = (0..messages.len()).collect();
        order.sort_by_key(|&i| messages[i].created);
        let targets: Vec<Vec<Target>> = messages
            .iter()
            .map(|m| m.deals.keys().cloned().collect())
            .collect();
        let mut imp = Import::default();
        for &i in &order {
            let m = &mut messages[i];
            // A newer message's facts win field by field: an update that omits the label
            // keeps the one an earlier message gave.
            for (isrc, (release, label)) in std::mem::take(&mut m.tracks) {
                let e = imp.tracks.entry(isrc).or_default();
                if release.is_some() {
                    e.0 = release;
                }
                if label.is_some() {
                    e.1 = label;
                }
            }
            // Moved, not copied: a large message's deals are held once.
            for (target, deals) in std::mem::take(&mut m.deals) {
                if let Some(w) = imp.deals.get(&target)
                    && w.created == m.created
                    && w.deals != deals
                {
                    return Err(DdexError::refused(
                        &m.file,
                        "MessageHeader/MessageCreatedDateTime",
                        format!(
                            "{} has other deals in {} (message {}) created at the same time; \
                             which is current cannot be told",
                            target.describe(),
                            w.file,
                            w.message_id
                        ),
                    ));
                }
                imp.deals.insert(
                    target,
                    Winner {
                        deals,
                        message_id: m.message_id.clone(),
                        created: m.created,
                        file: m.file.clone(),
                    },
                );
            }
        }
        for (m, targets) in messages.iter().zip(targets) {
            let won: Vec<&Winner> = targets
                .iter()
                .filter_map(|t| imp.deals.get(t))
                .filter(|w| w.file == m.file && w.message_id == m.message_id)
                .collect();
            imp.messages.push(MessageSummary {
                file: m.file.clone(),
                kind: m.kind,
                version: m.version.clone(),
                message_id: m.message_id.clone(),
                created: m.created,
                targets: targets.len(),
                current: won.len(),
                takedowns: won.iter().filter(|w| w.deals.is_empty()).count(),
            });
            imp.ignored.extend(m.ignored.iter().cloned());
        }
        Ok(imp)
    }
}

impl Target {
    /// `release X` or `track X`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Release(r) => format!("release {r}"),
            Target::Track(t) => format!("track {t}"),
        }
    }
}

#[cfg(test)]
mod tests;

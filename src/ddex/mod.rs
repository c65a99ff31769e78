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

pub mod write;

use crate::license::{Tier, UseType};
use crate::territory::{Groups, Territories};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use thiserror::Error;

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

/// One open element: its local name and, for repeated ones, its 1-based position.
struct Frame {
    name: String,
    index: u32,
    children: HashMap<String, u32>,
}

/// Elements whose position is shown in paths, because they repeat.
const REPEATED: [&str; 13] = [
    "ReleaseDeal",
    "Deal",
    "Release",
    "TrackRelease",
    "SoundRecording",
    "Video",
    "Party",
    "TerritoryCode",
    "ExcludedTerritoryCode",
    "UseType",
    "CommercialModelType",
    "DealReleaseReference",
    "PurgedRelease",
];

#[derive(Default)]
struct RawRelease {
    track_release: bool,
    release_type: Option<String>,
    icpn: Option<String>,
    grid: Option<String>,
    isrc: Option<String>,
    resources: Vec<String>,
    label_refs: Vec<String>,
    label_names: Vec<String>,
}

#[derive(Default)]
struct RawDeal {
    path: String,
    territories: Vec<(String, String)>,
    excluded: Vec<(String, String)>,
    start: Option<(String, String)>,
    end: Option<(String, String)>,
    uses: Vec<(String, String)>,
    models: Vec<(String, String)>,
    takedown: bool,
}

/// A `ReleaseDeal` being read: its deals are turned into [`DealTerms`] as each `Deal` ends,
/// so the element paths kept for errors live only while that deal is read.
#[derive(Default)]
struct RawReleaseDeal {
    path: String,
    refs: Vec<String>,
    terms: Vec<DealTerms>,
}

/// Everything gathered while streaming, before it is checked.
#[derive(Default)]
struct Gathered {
    message_id: Option<String>,
    created: Option<(String, String)>,
    parties: HashMap<String, String>,
    party_ref: Option<String>,
    party_name: Option<String>,
    resources: HashMap<String, String>,
    resource_ref: Option<String>,
    resource_isrc: Option<String>,
    releases: Vec<(String, RawRelease)>,
    release: Option<(Option<String>, RawRelease)>,
    release_deals: Vec<RawReleaseDeal>,
    release_deal: Option<RawReleaseDeal>,
    deal: Option<RawDeal>,
    purged: Vec<(String, Option<String>, Option<String>)>,
    purged_ids: Option<(String, Option<String>, Option<String>)>,
    ignored: BTreeMap<(String, String), u32>,
}

/// Top-level children of a `NewReleaseMessage` that are read.
const READ_SECTIONS: [&str; 5] = [
    "MessageHeader",
    "PartyList",
    "ResourceList",
    "ReleaseList",
    "DealList",
];

/// Reads one ERN message from `input` (named `file` in errors).
///
/// # Errors
/// [`DdexError::Xml`] for XML that is not well-formed, [`DdexError::Refused`] for a wrong
/// namespace, an ERN version not in [`SUPPORTED_VERSIONS`], or a deal that cannot be
/// expressed (naming the element and the reason). Territory codes are checked by
/// [`parse_checked`].
pub fn parse<R: BufRead>(file: &str, input: R) -> Result<Message, DdexError> {
    parse_with(file, input, &|_| true)
}

/// [`parse`], checking every territory code with `known` as it is read, so an unknown code is
/// refused with the path of its element (`.../DealTerms/TerritoryCode[2]`).
///
/// # Errors
/// As [`parse`], and [`DdexError::Refused`] for a code `known` refuses.
pub fn parse_checked<R: BufRead>(
    file: &str,
    input: R,
    territories: &Territories,
    groups: &Groups,
) -> Result<Message, DdexError> {
    parse_with(file, input, &|c| {
        territories.id(c).is_some() || groups.get(c).is_some()
    })
}

fn parse_with<R: BufRead>(
    file: &str,
    input: R,
    known: &dyn Fn(&str) -> bool,
) -> Result<Message, DdexError> {
    let mut reader = quick_xml::reader::NsReader::from_reader(input);
    // Text is trimmed per element at its end: trimming each event would eat the spaces
    // around an entity (`Records &amp; Co`).
    let mut buf = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<(MessageKind, String)> = None;
    let mut text = String::new();
    let mut g = Gathered::default();
    let xml_err = |reader: &quick_xml::reader::NsReader<R>, e: quick_xml::Error| DdexError::Xml {
        file: file.to_owned(),
        offset: reader.error_position(),
        reason: e.to_string(),
    };
    loop {
        let (ns, ev) = match reader.read_resolved_event_into(&mut buf) {
            Ok(x) => x,
            Err(e) => return Err(xml_err(&reader, e)),
        };
        let ns_uri = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(DdexError::Xml {
                    file: file.to_owned(),
                    offset: reader.buffer_position(),
                    reason: format!(
                        "undeclared namespace prefix {:?}",
                        String::from_utf8_lossy(&p)
                    ),
                });
            }
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    root = Some(check_root(file, &name, ns_uri.as_deref())?);
                }
                let index = match stack.last_mut() {
                    Some(parent) => {
                        let c = parent.children.entry(name.clone()).or_insert(0);
                        *c += 1;
                        *c
                    }
                    None => 1,
                };
                stack.push(Frame {
                    name,
                    index,
                    children: HashMap::new(),
                });
                text.clear();
                on_start(&mut g, &stack);
                if empty {
                    on_end(file, &mut g, &stack, "", known)?;
                    stack.pop();
                }
            }
            Event::End(_) => {
                on_end(file, &mut g, &stack, text.trim(), known)?;
                text.clear();
                stack.pop();
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| xml_err(&reader, e.into()))?;
                text.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.xml_content().map_err(|e| xml_err(&reader, e.into()))?;
                text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| xml_err(&reader, e.into()))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => {
                            return Err(DdexError::Xml {
                                file: file.to_owned(),
                                offset: reader.buffer_position(),
                                reason: format!("unknown entity &{name};"),
                            });
                        }
                    }
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(DdexError::Xml {
            file: file.to_owned(),
            offset: reader.buffer_position(),
            reason: format!("the document ends inside <{}>", stack_path(&stack)),
        });
    }
    let Some((kind, version)) = root else {
        return Err(DdexError::Xml {
            file: file.to_owned(),
            offset: 0,
            reason: "no root element".into(),
        });
    };
    finish(file, kind, version, g)
}

fn check_root(
    file: &str,
    name: &str,
    ns: Option<&str>,
) -> Result<(MessageKind, String), DdexError> {
    let el = format!("/{name}");
    let kind = match name {
        "NewReleaseMessage" => MessageKind::NewRelease,
        "PurgeReleaseMessage" => MessageKind::Purge,
        _ => {
            return Err(DdexError::refused(
                file,
                el,
                "not an ERN NewReleaseMessage or PurgeReleaseMessage",
            ));
        }
    };
    let Some(ns) = ns else {
        return Err(DdexError::refused(
            file,
            el,
            format!("no namespace; expected {ERN_NS}43 (or another ERN 3.8/4.x namespace)"),
        ));
    };
    let Some(v) = ns.strip_prefix(ERN_NS) else {
        return Err(DdexError::refused(
            file,
            el,
            format!("wrong namespace {ns:?}; expected {ERN_NS}43 (or another ERN 3.8/4.x)"),
        ));
    };
    if !SUPPORTED_VERSIONS.contains(&v) {
        return Err(DdexError::refused(
            file,
            el,
            format!(
                "ERN version {} ({ns}) is not supported; supported: 3.8, 3.8.1, 3.8.2, 4.1, 4.1.1, 4.2, 4.3",
                dotted(v)
            ),
        ));
    }
    Ok((kind, dotted(v)))
}

/// `43` → `4.3`, `381` → `3.8.1`.
fn dotted(v: &str) -> String {
    v.chars()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn stack_path(stack: &[Frame]) -> String {
    let mut s = String::new();
    for f in stack {
        s.push('/');
        s.push_str(&f.name);
        if REPEATED.contains(&f.name.as_str()) {
            s.push_str(&format!("[{}]", f.index));
        }
    }
    s
}

fn plain_path(stack: &[Frame]) -> String {
    stack.iter().map(|f| format!("/{}", f.name)).collect()
}

/// The local names of the open elements below the root.
fn names(stack: &[Frame]) -> Vec<&str> {
    stack.iter().skip(1).map(|f| f.name.as_str()).collect()
}

fn on_start(g: &mut Gathered, stack: &[Frame]) {
    let n = names(stack);
    match n.as_slice() {
        ["PartyList", "Party"] => {
            g.party_ref = None;
            g.party_name = None;
        }
        ["ResourceList", _] => {
            g.resource_ref = None;
            g.resource_isrc = None;
        }
        ["ReleaseList", kind] => {
            g.release = Some((
                None,
                RawRelease {
                    track_release: *kind == "TrackRelease",
                    ..RawRelease::default()
                },
            ));
        }
        ["DealList", "ReleaseDeal"] => {
            g.release_deal = Some(RawReleaseDeal {
                path: stack_path(stack),
                ..RawReleaseDeal::default()
            });
        }
        ["DealList", "ReleaseDeal", "Deal"] => {
            g.deal = Some(RawDeal {
                path: stack_path(stack),
                ..RawDeal::default()
            });
        }
        ["PurgedRelease"] => g.purged_ids = Some((stack_path(stack), None, None)),
        _ => {}
    }
}

/// Elements of the deal list whose unknown children are listed (an unknown element's own
/// children are not: the element is listed once).
const DEAL_CONTAINERS: [&str; 6] = [
    "DealList",
    "ReleaseDeal",
    "Deal",
    "DealTerms",
    "ValidityPeriod",
    "Usage",
];

fn ignore(g: &mut Gathered, stack: &[Frame], reason: &str) {
    let parent = stack.len().checked_sub(2).map(|i| stack[i].name.as_str());
    if stack.len() > 2 && !parent.is_some_and(|p| DEAL_CONTAINERS.contains(&p)) {
        return;
    }
    *g.ignored
        .entry((plain_path(stack), reason.to_owned()))
        .or_insert(0) += 1;
}

fn on_end(
    file: &str,
    g: &mut Gathered,
    stack: &[Frame],
    text: &str,
    known: &dyn Fn(&str) -> bool,
) -> Result<(), DdexError> {
    let n = names(stack);
    let val = || (stack_path(stack), text.to_owned());
    match n.as_slice() {
        ["MessageHeader", "MessageId"] => g.message_id = Some(text.to_owned()),
        ["MessageHeader", "MessageCreatedDateTime"] => g.created = Some(val()),
        [section] if !READ_SECTIONS.contains(section) && *section != "PurgedRelease" => {
            ignore(g, stack, "not needed for licence files; not read");
        }
        // Parties: labels by reference.
        ["PartyList", "Party", "PartyReference"] => g.party_ref = Some(text.to_owned()),
        ["PartyList", "Party", "PartyName", "FullName"] if g.party_name.is_none() => {
            g.party_name = Some(text.to_owned());
        }
        ["PartyList", "Party"] => {
            if let (Some(r), Some(nm)) = (g.party_ref.take(), g.party_name.take()) {
                g.parties.insert(r, nm);
            }
        }
        // Resources: reference → ISRC, at any depth (4.x keeps it in SoundRecordingEdition).
        ["ResourceList", _, "ResourceReference"] => g.resource_ref = Some(text.to_owned()),
        ["ResourceList", _, .., "ISRC"] if g.resource_isrc.is_none() => {
            g.resource_isrc = Some(text.to_owned());
        }
        ["ResourceList", _] => {
            if let (Some(r), Some(i)) = (g.resource_ref.take(), g.resource_isrc.take()) {
                g.resources.insert(r, i);
            }
        }
        // Releases.
        ["ReleaseList", _, rest @ ..] if !rest.is_empty() => {
            if let Some((r, rel)) = g.release.as_mut() {
                match rest {
                    ["ReleaseReference"] => *r = Some(text.to_owned()),
                    ["ReleaseType"] => rel.release_type = Some(text.to_owned()),
                    ["ReleaseId", "ICPN"] => rel.icpn = Some(text.to_owned()),
                    ["ReleaseId", "GRid"] => rel.grid = Some(text.to_owned()),
                    ["ReleaseId", "ISRC"] => rel.isrc = Some(text.to_owned()),
                    [.., "ReleaseResourceReference"] => rel.resources.push(text.to_owned()),
                    [.., "ReleaseLabelReference"] => rel.label_refs.push(text.to_owned()),
                    [.., "LabelName"] => rel.label_names.push(text.to_owned()),
                    _ => {}
                }
            }
        }
        ["ReleaseList", _] => {
            if let Some((r, rel)) = g.release.take() {
                let Some(r) = r else {
                    return Err(DdexError::refused(
                        file,
                        stack_path(stack),
                        "release without ReleaseReference",
                    ));
                };
                g.releases.push((r, rel));
            }
        }
        // Deals.
        ["DealList", "ReleaseDeal", "DealReleaseReference"] => {
            if let Some(rd) = g.release_deal.as_mut() {
                rd.refs.push(text.to_owned());
            }
        }
        ["DealList", "ReleaseDeal", "Deal"] => {
            if let Some(d) = g.deal.take()
                && let Some(t) = deal_terms(file, &d, g, known)?
                && let Some(rd) = g.release_deal.as_mut()
                && !rd.terms.contains(&t)
            {
                rd.terms.push(t);
            }
        }
        ["DealList", "ReleaseDeal"] => {
            if let Some(rd) = g.release_deal.take() {
                g.release_deals.push(rd);
            }
        }
        ["DealList", "ReleaseDeal", "Deal", "DealTerms", rest @ ..] if !rest.is_empty() => {
            on_terms(g, stack, rest, text);
        }
        ["DealList", "ReleaseDeal", "Deal", "DealTerms"] => {}
        ["DealList", "ReleaseDeal", "Deal", "DealReference"] => {}
        ["DealList"] => {}
        ["DealList", ..] => ignore(g, stack, "not part of the licence model; not applied"),
        // Purge messages.
        ["PurgedRelease", "ReleaseId", "ICPN"] => {
            if let Some(p) = g.purged_ids.as_mut() {
                p.1 = Some(text.to_owned());
            }
        }
        ["PurgedRelease", "ReleaseId", "GRid"] => {
            if let Some(p) = g.purged_ids.as_mut() {
                p.2 = Some(text.to_owned());
            }
        }
        ["PurgedRelease"] => {
            if let Some(p) = g.purged_ids.take() {
                g.purged.push(p);
            }
        }
        _ => {}
    }
    Ok(())
}

fn on_terms(g: &mut Gathered, stack: &[Frame], rest: &[&str], text: &str) {
    let Some(d) = g.deal.as_mut() else { return };
    let val = (stack_path(stack), text.to_owned());
    match rest {
        ["TerritoryCode"] => d.territories.push(val),
        ["ExcludedTerritoryCode"] => d.excluded.push(val),
        ["ValidityPeriod", "StartDate" | "StartDateTime"] => d.start = Some(val),
        ["ValidityPeriod", "EndDate" | "EndDateTime"] => d.end = Some(val),
        ["ValidityPeriod"] => {}
        ["UseType"] | ["Usage", "UseType"] => d.uses.push(val),
        ["Usage"] => {}
        ["CommercialModelType"] => d.models.push(val),
        ["TakeDown"] => d.takedown = text == "true" || text == "1",
        _ => ignore(g, stack, "not part of the licence model; not applied"),
    }
}

/// Parses an ERN date or date-time. A date-time without a zone is read as UTC.
fn parse_when(s: &str) -> Option<When> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(When::Date(d));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(When::Time(t.with_timezone(&Utc)));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| When::Time(t.and_utc()))
}

fn map_use(s: &str) -> Option<&'static [UseType]> {
    Some(match s {
        "OnDemandStream" => &[UseType::OnDemandStream],
        "NonInteractiveStream" => &[UseType::NonInteractiveStream],
        "Stream" => &[UseType::OnDemandStream, UseType::NonInteractiveStream],
        "PermanentDownload" | "ConditionalDownload" | "TetheredDownload" | "Download" => {
            &[UseType::Download]
        }
        _ => return None,
    })
}

fn map_model(s: &str) -> Option<&'static [Tier]> {
    Some(match Tier::from_commercial_model(s) {
        Some(Tier::Premium) => &[Tier::Premium],
        Some(Tier::Free) => &[Tier::Free],
        // A purchase is open to every listener, whatever their subscription.
        None if s == "PayAsYouGoModel" => &[Tier::Free, Tier::Premium],
        None => return None,
    })
}

fn finish(
    file: &str,
    kind: MessageKind,
    version: String,
    mut g: Gathered,
) -> Result<Message, DdexError> {
    let root = match kind {
        MessageKind::NewRelease => "/NewReleaseMessage",
        MessageKind::Purge => "/PurgeReleaseMessage",
    };
    let message_id = g
        .message_id
        .take()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            DdexError::refused(
                file,
                format!("{root}/MessageHeader/MessageId"),
                "missing: the deal ids are made from it",
            )
        })?;
    let (cpath, ctext) = g.created.take().ok_or_else(|| {
        DdexError::refused(
            file,
            format!("{root}/MessageHeader/MessageCreatedDateTime"),
            "missing: it orders this message against other messages",
        )
    })?;
    let created = match parse_when(&ctext) {
        Some(When::Time(t)) => t,
        Some(When::Date(d)) => d
            .and_hms_opt(0, 0, 0)
            .map_or(DateTime::UNIX_EPOCH, |t| t.and_utc()),
        None => {
            return Err(DdexError::refused(
                file,
                cpath,
                format!("{ctext:?} is not an xs:dateTime"),
            ));
        }
    };
    let mut msg = Message {
        file: file.to_owned(),
        kind,
        version,
        message_id,
        created,
        tracks: BTreeMap::new(),
        deals: BTreeMap::new(),
        ignored: Vec::new(),
    };
    for (path, icpn, grid) in std::mem::take(&mut g.purged) {
        let id = icpn
            .or(grid)
            .ok_or_else(|| DdexError::refused(file, &path, "purged release has no ICPN or GRid"))?;
        msg.deals.insert(Target::Release(id), Vec::new());
    }
    // Releases: reference → target; tracks' catalogue facts from the non-track releases.
    let mut targets: HashMap<String, Result<Target, String>> = HashMap::new();
    for (r, rel) in &g.releases {
        let label = rel
            .label_refs
            .iter()
            .find_map(|l| g.parties.get(l).cloned())
            .or_else(|| rel.label_names.first().cloned());
        let is_track = rel.track_release
            || rel
                .release_type
                .as_deref()
                .is_some_and(|t| t == "TrackRelease" || t == "VideoTrackRelease");
        let target = if is_track {
            rel.isrc
                .clone()
                .or_else(|| {
                    rel.resources
                        .iter()
                        .find_map(|x| g.resources.get(x).cloned())
                })
                .map(Target::Track)
                .ok_or_else(|| format!("track release {r} names no resource with an ISRC"))
        } else {
            let id = rel.icpn.clone().or_else(|| rel.grid.clone());
            if let Some(id) = &id {
                for res in &rel.resources {
                    if let Some(isrc) = g.resources.get(res) {
                        msg.tracks
                            .entry(isrc.clone())
                            .or_insert_with(|| (Some(id.clone()), label.clone()));
                    }
                }
            }
            id.map(Target::Release)
                .ok_or_else(|| format!("release {r} has no ICPN or GRid in its ReleaseId"))
        };
        targets.insert(r.clone(), target);
    }
    for rd in std::mem::take(&mut g.release_deals) {
        if rd.refs.is_empty() {
            return Err(DdexError::refused(
                file,
                format!("{}/DealReleaseReference", rd.path),
                "missing: a deal must name the release it licenses",
            ));
        }
        let terms = rd.terms;
        for (i, r) in rd.refs.iter().enumerate() {
            let el = format!("{}/DealReleaseReference[{}]", rd.path, i + 1);
            let target = match targets.get(r) {
                Some(Ok(t)) => t.clone(),
                Some(Err(why)) => return Err(DdexError::refused(file, el, why.clone())),
                None => {
                    return Err(DdexError::refused(
                        file,
                        el,
                        format!("{r:?} names no release in the ReleaseList"),
                    ));
                }
            };
            let set = msg.deals.entry(target).or_default();
            for t in &terms {
                if !set.contains(t) {
                    set.push(t.clone());
                }
            }
        }
    }
    msg.ignored = g
        .ignored
        .into_iter()
        .map(|((element, reason), count)| Ignored {
            file: file.to_owned(),
            element,
            reason,
            count,
        })
        .collect();
    Ok(msg)
}

/// One `Deal` in licence terms; `None` for a takedown deal (its territories lose the rights,
/// which the replace-all rule of deal sets already does).
fn deal_terms(
    file: &str,
    d: &RawDeal,
    g: &mut Gathered,
    known: &dyn Fn(&str) -> bool,
) -> Result<Option<DealTerms>, DdexError> {
    let terms = format!("{}/DealTerms", d.path);
    if d.takedown {
        return Ok(None);
    }
    for (path, c) in d.territories.iter().chain(&d.excluded) {
        if !c.eq_ignore_ascii_case("Worldwide") && !known(c) {
            return Err(DdexError::refused(
                file,
                path,
                format!("unknown territory {c:?} (not a territory, group or TIS code of the data)"),
            ));
        }
    }
    let code = |c: &str| {
        if c.eq_ignore_ascii_case("Worldwide") {
            "WORLDWIDE".to_owned()
        } else {
            c.to_owned()
        }
    };
    let territories = match (d.territories.is_empty(), d.excluded.is_empty()) {
        (true, true) => {
            return Err(DdexError::refused(
                file,
                terms,
                "no TerritoryCode or ExcludedTerritoryCode: a deal must say where it applies",
            ));
        }
        (false, true) => Scope::Include(dedup(d.territories.iter().map(|(_, c)| code(c)))),
        (true, false) => Scope::Exclude(dedup(d.excluded.iter().map(|(_, c)| code(c)))),
        (false, false) => {
            if d.territories
                .iter()
                .all(|(_, c)| c.eq_ignore_ascii_case("Worldwide"))
            {
                Scope::Exclude(dedup(d.excluded.iter().map(|(_, c)| code(c))))
            } else {
                return Err(DdexError::refused(
                    file,
                    &d.excluded[0].0,
                    "ExcludedTerritoryCode with a TerritoryCode other than Worldwide: the licence \
                     files hold an included list or worldwide minus an excluded list, not both",
                ));
            }
        }
    };
    let Some((spath, stext)) = &d.start else {
        return Err(DdexError::refused(
            file,
            format!("{terms}/ValidityPeriod/StartDate"),
            "missing: a deal needs the start of its validity",
        ));
    };
    let start = parse_when(stext).ok_or_else(|| {
        DdexError::refused(file, spath, format!("{stext:?} is not a date or date-time"))
    })?;
    let end = match &d.end {
        Some((p, t)) => Some(parse_when(t).ok_or_else(|| {
            DdexError::refused(file, p, format!("{t:?} is not a date or date-time"))
        })?),
        None => None,
    };
    let mut uses = BTreeSet::new();
    for (p, u) in &d.uses {
        match map_use(u) {
            Some(us) => uses.extend(us.iter().map(|u| u.as_str())),
            None => {
                *g.ignored
                    .entry((
                        strip_indexes(p),
                        format!("UseType {u:?} has no licence-model use; not applied"),
                    ))
                    .or_insert(0) += 1;
            }
        }
    }
    if uses.is_empty() {
        return Err(DdexError::refused(
            file,
            format!("{terms}/UseType"),
            "no supported UseType (OnDemandStream, NonInteractiveStream, Stream, \
             PermanentDownload, ConditionalDownload, TetheredDownload)",
        ));
    }
    let mut tiers = BTreeSet::new();
    for (p, m) in &d.models {
        match map_model(m) {
            Some(ts) => tiers.extend(ts.iter().map(|t| t.as_str())),
            None => {
                *g.ignored
                    .entry((
                        strip_indexes(p),
                        format!("CommercialModelType {m:?} has no tier; not applied"),
                    ))
                    .or_insert(0) += 1;
            }
        }
    }
    if tiers.is_empty() {
        return Err(DdexError::refused(
            file,
            format!("{terms}/CommercialModelType"),
            "no supported CommercialModelType (SubscriptionModel, AdvertisementSupportedModel, \
             FreeOfChargeModel, PayAsYouGoModel)",
        ));
    }
    Ok(Some(DealTerms {
        territories,
        start,
        end,
        uses: uses.into_iter().collect(),
        tiers: tiers.into_iter().collect(),
    }))
}

fn dedup(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

fn strip_indexes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut skip = false;
    for c in p.chars() {
        match c {
            '[' => skip = true,
            ']' => skip = false,
            _ if !skip => out.push(c),
            _ => {}
        }
    }
    out
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

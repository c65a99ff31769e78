//! Reading one message: the XML event loop, the element stack and what each element adds.

use super::*;
use crate::license::{Tier, UseType};
use crate::territory::{Groups, Territories};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

/// One open element: its local name and, for repeated ones, its 1-based position.
pub(super) struct Frame {
    pub(super) name: String,
    pub(super) index: u32,
    pub(super) children: HashMap<String, u32>,
}

/// Elements whose position is shown in paths, because they repeat.
pub(super) const REPEATED: [&str; 13] = [
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
pub(super) struct RawRelease {
    pub(super) track_release: bool,
    pub(super) release_type: Option<String>,
    pub(super) icpn: Option<String>,
    pub(super) grid: Option<String>,
    pub(super) isrc: Option<String>,
    pub(super) resources: Vec<String>,
    pub(super) label_refs: Vec<String>,
    pub(super) label_names: Vec<String>,
}

#[derive(Default)]
pub(super) struct RawDeal {
    pub(super) path: String,
    pub(super) territories: Vec<(String, String)>,
    pub(super) excluded: Vec<(String, String)>,
    pub(super) start: Option<(String, String)>,
    pub(super) end: Option<(String, String)>,
    pub(super) uses: Vec<(String, String)>,
    pub(super) models: Vec<(String, String)>,
    pub(super) takedown: bool,
}

/// A `ReleaseDeal` being read: its deals are turned into [`DealTerms`] as each `Deal` ends,
/// so the element paths kept for errors live only while that deal is read.
#[derive(Default)]
pub(super) struct RawReleaseDeal {
    pub(super) path: String,
    pub(super) refs: Vec<String>,
    pub(super) terms: Vec<DealTerms>,
}

/// Everything gathered while streaming, before it is checked.
#[derive(Default)]
pub(super) struct Gathered {
    pub(super) message_id: Option<String>,
    pub(super) created: Option<(String, String)>,
    pub(super) parties: HashMap<String, String>,
    pub(super) party_ref: Option<String>,
    pub(super) party_name: Option<String>,
    pub(super) resources: HashMap<String, String>,
    pub(super) resource_ref: Option<String>,
    pub(super) resource_isrc: Option<String>,
    pub(super) releases: Vec<(String, RawRelease)>,
    pub(super) release: Option<(Option<String>, RawRelease)>,
    pub(super) release_deals: Vec<RawReleaseDeal>,
    pub(super) release_deal: Option<RawReleaseDeal>,
    pub(super) deal: Option<RawDeal>,
    pub(super) purged: Vec<(String, Option<String>, Option<String>)>,
    pub(super) purged_ids: Option<(String, Option<String>, Option<String>)>,
    pub(super) ignored: BTreeMap<(String, String), u32>,
}

/// Top-level children of a `NewReleaseMessage` that are read.
pub(super) const READ_SECTIONS: [&str; 5] = [
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

pub(super) fn parse_with<R: BufRead>(
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

pub(super) fn check_root(
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
pub(super) fn dotted(v: &str) -> String {
    v.chars()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

pub(super) fn stack_path(stack: &[Frame]) -> String {
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

pub(super) fn plain_path(stack: &[Frame]) -> String {
    stack.iter().map(|f| format!("/{}", f.name)).collect()
}

/// The local names of the open elements below the root.
pub(super) fn names(stack: &[Frame]) -> Vec<&str> {
    stack.iter().skip(1).map(|f| f.name.as_str()).collect()
}

pub(super) fn on_start(g: &mut Gathered, stack: &[Frame]) {
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
pub(super) const DEAL_CONTAINERS: [&str; 6] = [
    "DealList",
    "ReleaseDeal",
    "Deal",
    "DealTerms",
    "ValidityPeriod",
    "Usage",
];

pub(super) fn ignore(g: &mut Gathered, stack: &[Frame], reason: &str) {
    let parent = stack.len().checked_sub(2).map(|i| stack[i].name.as_str());
    if stack.len() > 2 && !parent.is_some_and(|p| DEAL_CONTAINERS.contains(&p)) {
        return;
    }
    *g.ignored
        .entry((plain_path(stack), reason.to_owned()))
        .or_insert(0) += 1;
}

pub(super) fn on_end(
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

pub(super) fn on_terms(g: &mut Gathered, stack: &[Frame], rest: &[&str], text: &str) {
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
pub(super) fn parse_when(s: &str) -> Option<When> {
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

pub(super) fn map_use(s: &str) -> Option<&'static [UseType]> {
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

pub(super) fn map_model(s: &str) -> Option<&'static [Tier]> {
    Some(match Tier::from_commercial_model(s) {
        Some(Tier::Premium) => &[Tier::Premium],
        Some(Tier::Free) => &[Tier::Free],
        // A purchase is open to every listener, whatever their subscription.
        None if s == "PayAsYouGoModel" => &[Tier::Free, Tier::Premium],
        None => return None,
    })
}

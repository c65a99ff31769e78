//! Turning what a message gathered into its deal terms, per target.

use super::*;
use chrono::DateTime;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(super) fn finish(
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
pub(super) fn deal_terms(
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

pub(super) fn dedup(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

pub(super) fn strip_indexes(p: &str) -> String {
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

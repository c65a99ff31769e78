//! Territory groups: named sets of territories (`EU`, `EEA`, `WORLDWIDE`), with CISAC TIS
//! numeric aliases, and members that may join or leave on given dates.
//!
//! File format (`groups.toml`):
//! ```toml
//! [groups.EU]
//! name = "European Union"
//! tis = "2123"
//! members = ["AT", "BE", { id = "GB", until = "2020-01-31" }, { id = "HR", from = "2013-07-01" }]
//!
//! [groups.EEA]
//! tis = "2121"
//! members = ["EU", "IS", "LI", "NO"]   # a member may name another group
//! ```
//! `WORLDWIDE` (TIS 2136) is built in: every country territory. Dates are whole UTC days and
//! both ends are inclusive.

use super::{Territories, TerritoryId, TerritoryKind, TerritorySet};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// The built-in group of all countries.
pub const WORLDWIDE: &str = "WORLDWIDE";
/// CISAC TIS code of the world.
pub const WORLDWIDE_TIS: &str = "2136";

/// Index of a group in [`Groups`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(pub u32);

/// A member whose membership is limited in time.
#[derive(Clone, Debug, PartialEq)]
pub struct DatedMember {
    /// The territory.
    pub territory: TerritoryId,
    /// First day of membership (inclusive), if limited.
    pub from: Option<NaiveDate>,
    /// Last day of membership (inclusive), if limited.
    pub until: Option<NaiveDate>,
}

impl DatedMember {
    /// Whether the membership holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        let day = now.date_naive();
        self.from.is_none_or(|f| day >= f) && self.until.is_none_or(|u| day <= u)
    }
}

/// One compiled group.
#[derive(Clone, Debug)]
pub struct Group {
    /// The group's name as written in files (`EU`).
    pub code: String,
    /// A human name, if given.
    pub name: Option<String>,
    /// The CISAC TIS alias, if any.
    pub tis: Option<String>,
    /// Members with no date limits.
    pub always: TerritorySet,
    /// Members with date limits.
    pub dated: Vec<DatedMember>,
}

impl Group {
    /// Whether `t` is a member at `now`.
    pub fn contains(&self, t: TerritoryId, now: DateTime<Utc>) -> bool {
        self.always.contains(t)
            || self
                .dated
                .iter()
                .any(|d| d.territory == t && d.holds_at(now))
    }
}

/// All groups of a snapshot, looked up by name or TIS alias.
#[derive(Clone, Debug, Default)]
pub struct Groups {
    groups: Vec<Group>,
    by_name: HashMap<String, GroupId>,
}

/// A problem in a groups file.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GroupError {
    /// The file is not valid TOML of the expected shape.
    #[error("{0}")]
    Syntax(String),
    /// A member is neither a territory nor a group.
    #[error("group {group:?}: unknown territory or group {member:?}")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member as written.
        member: String,
    },
    /// Groups include each other in a cycle.
    #[error("group {0:?}: includes itself through other groups")]
    Cycle(String),
    /// A group name or alias is already used by a territory or another group.
    #[error("group {group:?}: name or alias {name:?} is already taken")]
    NameTaken {
        /// The group.
        group: String,
        /// The clashing name.
        name: String,
    },
    /// `from` is after `until`.
    #[error("group {group:?}: member {member:?} has from after until")]
    BadDates {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: BTreeMap<String, RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Option<String>,
    tis: Option<String>,
    members: Vec<RawMember>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawMember {
    Plain(String),
    Dated {
        id: String,
        from: Option<NaiveDate>,
        until: Option<NaiveDate>,
    },
}

impl Groups {
    /// Compiles the groups file (if any) against the territories. Collects every problem.
    pub fn parse(text: Option<&str>, territories: &Territories) -> Result<Groups, Vec<GroupError>> {
        let raw: RawFile = match text {
            Some(t) => toml::from_str(t).map_err(|e| vec![GroupError::Syntax(e.to_string())])?,
            None => RawFile {
                groups: BTreeMap::new(),
            },
        };
        let mut errors = Vec::new();
        let mut out = Groups::default();
        let mut world = TerritorySet::with_capacity(territories.len());
        for id in territories
            .ids()
            .filter(|&id| territories.kind(id) == TerritoryKind::Country)
        {
            world.insert(id);
        }
        out.push(Group {
            code: WORLDWIDE.to_owned(),
            name: Some("The world (every country)".to_owned()),
            tis: Some(WORLDWIDE_TIS.to_owned()),
            always: world,
            dated: Vec::new(),
        });
        for (code, g) in &raw.groups {
            for name in std::iter::once(code).chain(g.tis.as_ref()) {
                if territories.id(name).is_some()
                    || out.by_name.contains_key(name)
                    || raw_name_clash(&raw, code, name)
                {
                    errors.push(GroupError::NameTaken {
                        group: code.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        for code in raw.groups.keys() {
            let mut stack = Vec::new();
            match expand(&raw, code, territories, &mut stack, &mut errors) {
                Some(members) => {
                    let g = &raw.groups[code];
                    let mut always = TerritorySet::with_capacity(territories.len());
                    let mut dated = Vec::new();
                    for m in members {
                        if m.from.is_none() && m.until.is_none() {
                            always.insert(m.territory);
                        } else {
                            dated.push(m);
                        }
                    }
                    dated.retain(|d| !always.contains(d.territory));
                    out.push(Group {
                        code: code.clone(),
                        name: g.name.clone(),
                        tis: g.tis.clone(),
                        always,
                        dated,
                    });
                }
                None => continue,
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn push(&mut self, g: Group) {
        let id = GroupId(self.groups.len() as u32);
        self.by_name.insert(g.code.clone(), id);
        if let Some(t) = &g.tis {
            self.by_name.insert(t.clone(), id);
        }
        self.groups.push(g);
    }

    /// A group by name or TIS alias.
    pub fn get(&self, name: &str) -> Option<&Group> {
        self.by_name.get(name).map(|id| &self.groups[id.0 as usize])
    }

    /// All groups, `WORLDWIDE` first.
    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter()
    }

    /// Number of groups, `WORLDWIDE` included.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Always false: `WORLDWIDE` is always there.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

fn raw_name_clash(raw: &RawFile, code: &str, name: &str) -> bool {
    raw.groups
        .iter()
        .any(|(c, g)| c != code && (c == name || g.tis.as_deref() == Some(name)))
}

/// Expands a group to its territories with date limits; `None` on error (recorded).
fn expand(
    raw: &RawFile,
    code: &str,
    territories: &Territories,
    stack: &mut Vec<String>,
    errors: &mut Vec<GroupError>,
) -> Option<Vec<DatedMember>> {
    if stack.iter().any(|s| s == code) {
        errors.push(GroupError::Cycle(code.to_owned()));
        return None;
    }
    stack.push(code.to_owned());
    let mut out = Vec::new();
    let mut ok = true;
    for m in &raw.groups[code].members {
        let (id, from, until) = match m.clone() {
            RawMember::Plain(id) => (id, None, None),
            RawMember::Dated { id, from, until } => (id, from, until),
        };
        if let (Some(f), Some(u)) = (from, until)
            && f > u
        {
            errors.push(GroupError::BadDates {
                group: code.to_owned(),
                member: id.clone(),
            });
            ok = false;
            continue;
        }
        if let Some(t) = territories.id(&id) {
            out.push(DatedMember {
                territory: t,
                from,
                until,
            });
        } else if id == WORLDWIDE || id == WORLDWIDE_TIS {
            for t in territories
                .ids()
                .filter(|&t| territories.kind(t) == TerritoryKind::Country)
            {
                out.push(DatedMember {
                    territory: t,
                    from,
                    until,
                });
            }
        } else if let Some(inner) = raw
            .groups
            .iter()
            .find(|(c, g)| **c == id || g.tis.as_deref() == Some(id.as_str()))
            .map(|(c, _)| c.clone())
        {
            match expand(raw, &inner, territories, stack, errors) {
                Some(ms) => out.extend(ms.into_iter().map(|d| DatedMember {
                    territory: d.territory,
                    from: later(d.from, from),
                    until: earlier(d.until, until),
                })),
                None => ok = false,
            }
        } else {
            errors.push(GroupError::UnknownMember {
                group: code.to_owned(),
                member: id,
            });
            ok = false;
        }
    }
    stack.pop();
    ok.then_some(out)
}

fn later(a: Option<NaiveDate>, b: Option<NaiveDate>) -> Option<NaiveDate> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn earlier(a: Option<NaiveDate>, b: Option<NaiveDate>) -> Option<NaiveDate> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Territories {
        Territories::new(["AT", "BE", "GB", "HR", "IS", "NO", "X1"].iter().map(|c| {
            (
                Box::from(*c),
                if *c == "X1" {
                    TerritoryKind::Custom
                } else {
                    TerritoryKind::Country
                },
            )
        }))
    }

    fn at(day: &str) -> DateTime<Utc> {
        format!("{day}T12:00:00Z").parse().expect("date")
    }

    #[test]
    fn dated_members_nesting_and_aliases() {
        let t = table();
        let g = Groups::parse(
            Some(
                r#"
                [groups.EU]
                tis = "2123"
                members = ["AT", "BE", { id = "GB", until = "2020-01-31" }, { id = "HR", from = "2013-07-01" }]
                [groups.EEA]
                tis = "2121"
                members = ["EU", "IS", "NO"]
                "#,
            ),
            &t,
        )
        .expect("valid");
        let eu = g.get("2123").expect("alias");
        let gb = t.id("GB").expect("GB");
        assert!(eu.contains(gb, at("2020-01-31")));
        assert!(!eu.contains(gb, at("2020-02-01")));
        let hr = t.id("HR").expect("HR");
        assert!(!eu.contains(hr, at("2013-06-30")));
        assert!(g.get("EEA").expect("EEA").contains(hr, at("2014-01-01")));
        assert!(
            g.get("EEA")
                .expect("EEA")
                .contains(t.id("NO").expect("NO"), at("2000-01-01"))
        );
        let world = g.get("2136").expect("world");
        assert!(world.contains(t.id("IS").expect("IS"), at("2000-01-01")));
        assert!(
            !world.contains(t.id("X1").expect("X1"), at("2000-01-01")),
            "customs are not countries"
        );
    }

    #[test]
    fn errors_are_named() {
        let t = table();
        let e = Groups::parse(
            Some(
                r#"
                [groups.A]
                members = ["B", "ZZ"]
                [groups.B]
                members = ["A"]
                [groups.AT]
                members = [{ id = "BE", from = "2020-01-02", until = "2020-01-01" }]
                "#,
            ),
            &t,
        )
        .expect_err("broken");
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|s| s.contains("\"AT\"") && s.contains("already taken")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|s| s.contains("unknown territory or group \"ZZ\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|s| s.contains("includes itself")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|s| s.contains("from after until")),
            "{text:?}"
        );
    }
}

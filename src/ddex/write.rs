//! Renders an [`Import`] as licence files (`licenses/` formats of [`crate::license`]) and
//! writes them to a directory all at once.

use super::{Import, Scope, Target};
use crate::problem::Problem;
use crate::territory::{Groups, Territories};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// The TOML file: catalogue facts, deal templates, release deal sets (and track deal sets
/// while there are few).
pub const TOML_FILE: &str = "ddex.toml";
/// The bulk CSV file of track deal sets, written when there are more than the bulk threshold.
pub const CSV_FILE: &str = "ddex-tracks.csv";
/// Track deal sets above which they go to [`CSV_FILE`] (the TOML format is for people).
pub const DEFAULT_BULK_OVER: usize = 1_000;

/// The rendered files, `(file name, contents)`, and what they hold.
#[derive(Debug)]
pub struct Rendered {
    /// File name and bytes.
    pub files: Vec<(String, Vec<u8>)>,
    /// Deal templates written.
    pub deals: usize,
    /// Deal sets written (release and track selectors).
    pub dealsets: usize,
    /// Takedowns among them.
    pub takedowns: usize,
    /// Catalogue facts (`[[track]]`) written.
    pub tracks: usize,
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn list(v: &[impl AsRef<str>]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A deal id from a message id: letters, digits, `.`, `_` and `-` kept, others `_`.
fn deal_id(message_id: &str, n: usize) -> String {
    let clean: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("ddex-{clean}-{n}")
}

/// Renders the import: track deal sets go to the bulk CSV when there are more than
/// `bulk_over` of them.
pub fn render(imp: &Import, bulk_over: usize) -> Rendered {
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Written by `regiongate import ddex`; re-import the messages rather than editing this."
    );
    for m in &imp.messages {
        let _ = writeln!(
            toml,
            "# {} ERN {} message {} created {}",
            m.file,
            m.version,
            m.message_id,
            m.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    let mut tracks = 0;
    for (isrc, (release, label)) in &imp.tracks {
        tracks += 1;
        let _ = write!(toml, "\n[[track]]\nid = {}\n", q(isrc));
        if let Some(r) = release {
            let _ = writeln!(toml, "release = {}", q(r));
        }
        if let Some(l) = label {
            let _ = writeln!(toml, "label = {}", q(l));
        }
    }
    // One template per distinct deal per message.
    let mut ids: HashMap<(&str, &super::DealTerms), String> = HashMap::new();
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    let mut templates = String::new();
    for w in imp.deals.values() {
        for d in &w.deals {
            if ids.contains_key(&(w.message_id.as_str(), d)) {
                continue;
            }
            let n = per_message.entry(&w.message_id).or_insert(0);
            *n += 1;
            let id = deal_id(&w.message_id, *n);
            let _ = write!(templates, "\n[[deal_template]]\nid = {}\n", q(&id));
            let _ = match &d.territories {
                Scope::Include(t) => writeln!(templates, "territories = {}", list(t)),
                Scope::Exclude(t) => writeln!(templates, "excluded_territories = {}", list(t)),
            };
            let _ = writeln!(templates, "start = {}", q(&d.start.to_licence_text()));
            if let Some(e) = &d.end {
                let _ = writeln!(templates, "end = {}", q(&e.to_licence_text()));
            }
            let _ = writeln!(templates, "uses = {}", list(&d.uses));
            let _ = writeln!(templates, "tiers = {}", list(&d.tiers));
            ids.insert((w.message_id.as_str(), d), id);
        }
    }
    toml.push_str(&templates);
    let track_sets = imp
        .deals
        .keys()
        .filter(|t| matches!(t, Target::Track(_)))
        .count();
    let bulk = track_sets > bulk_over;
    let mut csv = String::from("track_id,deal_id,updated\n");
    let (mut dealsets, mut takedowns) = (0, 0);
    for (target, w) in &imp.deals {
        dealsets += 1;
        if w.deals.is_empty() {
            takedowns += 1;
        }
        let updated = w.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let refs: Vec<&String> = w
            .deals
            .iter()
            .filter_map(|d| ids.get(&(w.message_id.as_str(), d)))
            .collect();
        match target {
            Target::Track(t) if bulk => {
                if refs.is_empty() {
                    let _ = writeln!(csv, "{t},,{updated}");
                }
                for r in refs {
                    let _ = writeln!(csv, "{t},{r},{updated}");
                }
            }
            _ => {
                let sel = match target {
                    Target::Release(r) => format!("{{ release = {} }}", q(r)),
                    Target::Track(t) => format!("{{ track = {} }}", q(t)),
                };
                let deals: Vec<String> = refs
                    .iter()
                    .map(|r| format!("{{ template = {} }}", q(r)))
                    .collect();
                let _ = write!(
                    toml,
                    "\n[[dealset]]   # message {} ({})\nselector = {sel}\nupdated = {}\ndeals = [{}]\n",
                    w.message_id,
                    w.file,
                    q(&updated),
                    deals.join(", ")
                );
            }
        }
    }
    let mut files = vec![(TOML_FILE.to_owned(), toml.into_bytes())];
    if bulk {
        files.push((CSV_FILE.to_owned(), csv.into_bytes()));
    }
    Rendered {
        files,
        deals: ids.len(),
        dealsets,
        takedowns,
        tracks,
    }
}

/// Loads the rendered files as the licence map would, with the data's territories and groups.
///
/// # Errors
/// Every problem the licence loader finds (there should be none: it is a bug in the import).
pub fn check(r: &Rendered, territories: &Territories, groups: &Groups) -> Result<(), Vec<Problem>> {
    let paths: Vec<(String, &[u8])> = r
        .files
        .iter()
        .map(|(n, b)| (format!("licenses/{n}"), b.as_slice()))
        .collect();
    let refs: Vec<(&str, &[u8])> = paths.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    let mut problems = Vec::new();
    crate::license::load_files(&refs, territories, groups, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Writes the files into `out` all at once: into a new directory beside it, then renamed to
/// `out`. `out` must not exist or be an empty directory (which the rename replaces).
///
/// # Errors
/// An existing non-empty `out`, or any I/O error; nothing is left at `out` then.
pub fn write_dir(out: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(out)
        && entries.next().is_some()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not empty (the import writes a whole directory)",
        ));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        std::fs::create_dir(&tmp)?;
        for (n, bytes) in files {
            std::fs::write(tmp.join(n), bytes)?;
        }
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

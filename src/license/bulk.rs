//! The bulk licence format for large catalogues: CSV rows `track_id,deal_id[,updated]` that
//! point tracks at deal templates defined in the TOML files.
//!
//! * The header line is required: `track_id,deal_id` or `track_id,deal_id,updated`.
//! * All rows of one track form its deal set, and they must be adjacent (sort the file by
//!   `track_id`): the file is read as a stream, one track at a time, so a million-track
//!   catalogue loads in seconds and is held in memory once.
//! * A row with an empty `deal_id` is an explicit takedown; it cannot be mixed with deal rows
//!   of the same track.
//! * `updated` (date or RFC 3339) orders this deal set against deal sets for the same track in
//!   other files; without it the rows are older than any dated deal set. Rows of one track must
//!   agree on it.

use super::{DealId, LicenseMapBuilder, Origin};
use crate::problem::Problem;
use chrono::{DateTime, Utc};

/// The rows of the track being read.
struct Current {
    track: Box<str>,
    deals: Vec<DealId>,
    takedown: bool,
    updated: Option<DateTime<Utc>>,
    first_line: u64,
    broken: bool,
}

/// Problems past this many in one file are counted, not listed.
const MAX_LISTED: usize = 100;

struct Reporter<'a> {
    file: &'a str,
    bad: usize,
}

impl Reporter<'_> {
    fn report(&mut self, problems: &mut Vec<Problem>, line: u64, reason: String) {
        self.bad += 1;
        if self.bad <= MAX_LISTED {
            problems.push(Problem::new(
                self.file,
                Some(format!("line {line}")),
                reason,
            ));
        }
    }
}

fn finish_track(
    cur: Current,
    file: &str,
    b: &mut LicenseMapBuilder,
    problems: &mut Vec<Problem>,
    r: &mut Reporter<'_>,
) {
    if cur.broken {
        return;
    }
    let origin = Origin {
        file,
        item: cur.first_line as u32,
    };
    let updated = cur.updated.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    if b.attach_track(cur.track, updated, cur.deals, origin)
        .is_err()
    {
        r.report(
            problems,
            cur.first_line,
            "another deal set for this track has the same updated time and other deals".into(),
        );
    }
}

/// Reads one bulk CSV file into the builder.
pub(crate) fn load(
    file: &str,
    data: &[u8],
    b: &mut LicenseMapBuilder,
    problems: &mut Vec<Problem>,
) {
    load_reader(file, data.len(), data, b, problems);
}

/// Reads one bulk CSV file of `len` bytes from a reader into the builder (a large file is
/// streamed, never held whole).
pub(crate) fn load_reader<R: std::io::Read>(
    file: &str,
    len: usize,
    data: R,
    b: &mut LicenseMapBuilder,
    problems: &mut Vec<Problem>,
) {
    if let Err(e) = super::LimitError::check_file_size(file, len) {
        problems.push(e.into());
        return;
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let header_ok = match rdr.byte_headers() {
        Ok(h) => {
            let cols: Vec<&[u8]> = h.iter().collect();
            cols.len() >= 2
                && cols[0] == b"track_id"
                && cols[1] == b"deal_id"
                && (cols.len() == 2 || cols[2] == b"updated")
        }
        Err(_) => false,
    };
    if !header_ok {
        problems.push(Problem::new(
            file,
            Some("line 1".into()),
            "header must be track_id,deal_id[,updated]",
        ));
        return;
    }
    let mut r = Reporter { file, bad: 0 };
    let mut rec = csv::ByteRecord::new();
    let mut cur: Option<Current> = None;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                r.report(problems, line, format!("unreadable CSV: {e}"));
                break;
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        let (Some(track), Some(deal)) = (rec.get(0), rec.get(1)) else {
            r.report(problems, line, "expected track_id,deal_id".into());
            continue;
        };
        let (Ok(track), Ok(deal)) = (std::str::from_utf8(track), std::str::from_utf8(deal)) else {
            r.report(problems, line, "not UTF-8".into());
            continue;
        };
        if track.is_empty() {
            r.report(problems, line, "empty track_id".into());
            continue;
        }
        let updated = match rec.get(2).map(std::str::from_utf8) {
            None | Some(Ok("")) => None,
            Some(Ok(s)) => match super::toml_format::parse_updated(s) {
                Ok(u) => Some(u),
                Err(e) => {
                    r.report(problems, line, format!("updated: {e}"));
                    continue;
                }
            },
            Some(Err(_)) => {
                r.report(problems, line, "not UTF-8".into());
                continue;
            }
        };
        let deal_id = if deal.is_empty() {
            None
        } else {
            match b.deal_id(deal) {
                Some(d) => Some(d),
                None => {
                    r.report(problems, line, format!("unknown deal template {deal:?}"));
                    if let Some(c) = cur.as_mut().filter(|c| &*c.track == track) {
                        c.broken = true;
                    }
                    continue;
                }
            }
        };
        if cur.as_ref().is_none_or(|c| &*c.track != track) {
            if let Some(done) = cur.take() {
                finish_track(done, file, b, problems, &mut r);
            }
            if b.track_has_set_from(track, file) {
                r.report(problems, line, format!("track {track:?} appears again, apart from its earlier rows: keep the rows of a track together"));
                continue;
            }
            cur = Some(Current {
                track: track.into(),
                deals: Vec::new(),
                takedown: false,
                updated,
                first_line: line,
                broken: false,
            });
        }
        let Some(c) = cur.as_mut() else { continue };
        if c.updated != updated {
            r.report(
                problems,
                line,
                format!("updated differs from line {}", c.first_line),
            );
            c.broken = true;
            continue;
        }
        match deal_id {
            Some(d) => c.deals.push(d),
            None => c.takedown = true,
        }
        if c.takedown && !c.deals.is_empty() {
            r.report(
                problems,
                line,
                format!(
                    "a takedown row and deal rows for the same track (from line {})",
                    c.first_line
                ),
            );
            c.broken = true;
        }
    }
    if let Some(done) = cur.take() {
        finish_track(done, file, b, problems, &mut r);
    }
    if r.bad > MAX_LISTED {
        problems.push(Problem::new(
            file,
            None,
            format!("{} more problems not listed", r.bad - MAX_LISTED),
        ));
    }
}

//! The bulk licence format for large catalogues: CSV rows `track_id,deal_id[,updated]` that
//! point tracks at deal templates defined in the TOML files.
//!
//! * The header line is required: `track_id,deal_id` or `track_id,deal_id,updated`.
//! * All rows of one track form its deal set (rows need not be adjacent).
//! * A row with an empty `deal_id` is an explicit takedown; it cannot be mixed with deal rows
//!   of the same track.
//! * `updated` (date or RFC 3339) orders this deal set against deal sets for the same track in
//!   other files; without it the rows are older than any dated deal set. Rows of one track must
//!   agree on it.

use super::{DealId, LicenseMapBuilder, Selector};
use crate::problem::Problem;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

struct TrackRows {
    deals: Vec<DealId>,
    takedown: bool,
    updated: Option<DateTime<Utc>>,
    first_line: u64,
}

/// Reads one bulk CSV file into the builder.
pub(crate) fn load(
    file: &str,
    data: &[u8],
    b: &mut LicenseMapBuilder,
    problems: &mut Vec<Problem>,
) {
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
    let mut order: Vec<Box<str>> = Vec::new();
    let mut rows: HashMap<Box<str>, TrackRows> = HashMap::new();
    let mut rec = csv::ByteRecord::new();
    let mut bad = 0usize;
    let mut report = |problems: &mut Vec<Problem>, line: u64, reason: String| {
        bad += 1;
        // Past a hundred, one more line per problem helps nobody: count them instead.
        if bad <= 100 {
            problems.push(Problem::new(file, Some(format!("line {line}")), reason));
        }
    };
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                report(problems, line, format!("unreadable CSV: {e}"));
                break;
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        let (Some(track), Some(deal)) = (rec.get(0), rec.get(1)) else {
            report(problems, line, "expected track_id,deal_id".into());
            continue;
        };
        let (Ok(track), Ok(deal)) = (std::str::from_utf8(track), std::str::from_utf8(deal)) else {
            report(problems, line, "not UTF-8".into());
            continue;
        };
        if track.is_empty() {
            report(problems, line, "empty track_id".into());
            continue;
        }
        let updated = match rec.get(2).map(std::str::from_utf8) {
            None => None,
            Some(Ok("")) => None,
            Some(Ok(s)) => match super::toml_format::parse_updated(s) {
                Ok(u) => Some(u),
                Err(e) => {
                    report(problems, line, format!("updated: {e}"));
                    continue;
                }
            },
            Some(Err(_)) => {
                report(problems, line, "not UTF-8".into());
                continue;
            }
        };
        let deal_id = if deal.is_empty() {
            None
        } else {
            match b.deal_id(deal) {
                Some(d) => Some(d),
                None => {
                    report(problems, line, format!("unknown deal template {deal:?}"));
                    continue;
                }
            }
        };
        let entry = match rows.get_mut(track) {
            Some(e) => e,
            None => {
                order.push(track.into());
                rows.entry(track.into()).or_insert(TrackRows {
                    deals: Vec::new(),
                    takedown: false,
                    updated,
                    first_line: line,
                })
            }
        };
        if entry.updated != updated {
            report(
                problems,
                line,
                format!(
                    "track {track:?}: updated differs from line {}",
                    entry.first_line
                ),
            );
            continue;
        }
        match deal_id {
            Some(d) => entry.deals.push(d),
            None => entry.takedown = true,
        }
        if entry.takedown && !entry.deals.is_empty() {
            report(
                problems,
                line,
                format!(
                    "track {track:?}: a takedown row and deal rows (from line {})",
                    entry.first_line
                ),
            );
        }
    }
    if bad > 100 {
        problems.push(Problem::new(
            file,
            None,
            format!("{} more problems not listed", bad - 100),
        ));
    }
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    for track in order {
        let Some(r) = rows.remove(&track) else {
            continue;
        };
        if r.takedown && !r.deals.is_empty() {
            continue;
        }
        let origin = format!("{file} line {}", r.first_line);
        if b.attach(
            Selector::Track(track.to_string()),
            r.updated.unwrap_or(epoch),
            r.deals,
            origin,
        )
        .is_err()
        {
            problems.push(Problem::new(
                file,
                Some(format!("line {}", r.first_line)),
                format!(
                    "track {track:?}: another deal set with the same updated time and other deals"
                ),
            ));
        }
    }
}

//! Rights-holder reporting without personal data: counts of decisions per hour × territory ×
//! decision, written to CSV files that are deleted after a retention period.
//!
//! Nothing about a listener is counted: no address, no point, no track, no user. The request
//! path only adds one to an atomic counter in the current hour's table (no lock); a background
//! task closes the table at the hour (or when a reload changes the territories) and appends it
//! to `DIR/regiongate-decisions-YYYY-MM-DD.csv` (`hour,territory,decision,count`).

use crate::decide::{Decision, Verdict};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, Timelike, Utc};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const VERDICTS: [Verdict; 3] = [Verdict::Allow, Verdict::Deny, Verdict::NeedPreciseLocation];

/// One hour's counters for one set of territories.
pub struct HourTable {
    hour: DateTime<Utc>,
    version: String,
    codes: Vec<String>,
    /// `(territories + 1) × 3`: the last row is "no territory".
    counts: Vec<AtomicU64>,
}

impl HourTable {
    fn new(hour: DateTime<Utc>, snap: &Snapshot) -> HourTable {
        let codes: Vec<String> = snap
            .territories
            .ids()
            .map(|t| snap.territories.code(t).to_owned())
            .collect();
        let counts = (0..(codes.len() + 1) * 3)
            .map(|_| AtomicU64::new(0))
            .collect();
        HourTable {
            hour,
            version: snap.version.clone(),
            codes,
            counts,
        }
    }

    fn rows(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let (t, v) = (i / 3, VERDICTS[i % 3]);
            let territory = self.codes.get(t).map_or("none", String::as_str);
            out.push(format!(
                "{},{},{},{}",
                self.hour.format("%Y-%m-%dT%H:00Z"),
                territory,
                v.as_str(),
                n
            ));
        }
        out
    }
}

/// The decision report: current table plus where files go.
pub struct Report {
    dir: PathBuf,
    retention_days: u32,
    current: ArcSwap<HourTable>,
}

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

impl Report {
    /// A report writing to `dir`, keeping files `retention_days` days.
    pub fn new(dir: PathBuf, retention_days: u32, snap: &Snapshot) -> Report {
        Report {
            dir,
            retention_days,
            current: ArcSwap::from_pointee(HourTable::new(hour_of(Utc::now()), snap)),
        }
    }

    /// Counts a decision (lock-free). Territory ids index the table of the snapshot they came
    /// from; a decision from another snapshot generation is counted as "none" rather than
    /// under a wrong territory.
    pub fn count(&self, snap: &Snapshot, d: &Decision) {
        let table = self.current.load();
        let t = match d.territory {
            Some(t) if table.version == snap.version => t.index(),
            _ => table.codes.len(),
        };
        let v = VERDICTS.iter().position(|&v| v == d.verdict).unwrap_or(1);
        if let Some(c) = table.counts.get(t * 3 + v) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the current table if its hour is over or the snapshot changed, appends it to
    /// the day's file, and deletes files past the retention period.
    ///
    /// # Errors
    /// File system errors.
    pub fn flush(&self, snap: &Snapshot, now: DateTime<Utc>, force: bool) -> std::io::Result<()> {
        let current = self.current.load();
        let hour = hour_of(now);
        if !force && current.hour == hour && current.version == snap.version {
            return Ok(());
        }
        let old = self.current.swap(Arc::new(HourTable::new(hour, snap)));
        let rows = old.rows();
        std::fs::create_dir_all(&self.dir)?;
        if !rows.is_empty() {
            let path = self.dir.join(format!(
                "regiongate-decisions-{}.csv",
                old.hour.format("%Y-%m-%d")
            ));
            let new_file = !path.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let mut text = String::new();
            if new_file {
                text.push_str("hour,territory,decision,count\n");
            }
            for r in rows {
                text.push_str(&r);
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
        }
        self.expire(now)
    }

    fn expire(&self, now: DateTime<Utc>) -> std::io::Result<()> {
        let cutoff = (now - Duration::days(i64::from(self.retention_days))).date_naive();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(day) = name
                .strip_prefix("regiongate-decisions-")
                .and_then(|r| r.strip_suffix(".csv"))
            else {
                continue;
            };
            if let Ok(d) = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                && d < cutoff
            {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Reason, Source};

    fn world() -> Snapshot {
        let f = |id: &str, x: f64| {
            format!(
                r#"{{"type":"Feature","properties":{{"id":"{id}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x},0],[{},0],[{},1],[{x},1],[{x},0]]]}}}}"#,
                x + 1.0,
                x + 1.0
            )
        };
        let fc = format!(
            r#"{{"type":"FeatureCollection","features":[{},{}]}}"#,
            f("DE", 0.0),
            f("FR", 1.0)
        );
        Snapshot::from_memory([("countries.geojson", fc.into_bytes())]).expect("world")
    }

    fn decision(verdict: Verdict, t: Option<u16>) -> Decision {
        Decision {
            verdict,
            reason: Reason::Licensed,
            territory: t.map(crate::territory::TerritoryId),
            deal: None,
            valid_until: None,
            touched: Default::default(),
            source: Source::Ip,
        }
    }

    #[test]
    fn counts_per_hour_territory_decision_and_expires_old_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = world();
        let r = Report::new(dir.path().to_owned(), 7, &s);
        for _ in 0..3 {
            r.count(&s, &decision(Verdict::Allow, Some(0)));
        }
        r.count(&s, &decision(Verdict::Deny, Some(1)));
        r.count(&s, &decision(Verdict::Deny, None));
        let old = dir.path().join("regiongate-decisions-2000-01-01.csv");
        std::fs::write(&old, "hour,territory,decision,count\n").expect("write");
        let now = Utc::now();
        r.flush(&s, now, true).expect("flush");
        let day = dir.path().join(format!(
            "regiongate-decisions-{}.csv",
            hour_of(now).format("%Y-%m-%d")
        ));
        let text = std::fs::read_to_string(day).expect("report file");
        let h = hour_of(now).format("%Y-%m-%dT%H:00Z").to_string();
        assert_eq!(
            text,
            format!(
                "hour,territory,decision,count\n{h},DE,allow,3\n{h},FR,deny,1\n{h},none,deny,1\n"
            )
        );
        assert!(!old.exists(), "files past the retention are deleted");
        // A second flush with nothing counted adds nothing.
        r.flush(&s, now, true).expect("flush");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!(
                "regiongate-decisions-{}.csv",
                hour_of(now).format("%Y-%m-%d")
            )))
            .expect("file")
            .lines()
            .count(),
            4
        );
    }
}

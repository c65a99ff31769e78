//! WiFi: access points seen by the client, looked up in the operator's access-point database,
//! give a position with an accuracy radius.
//!
//! # The hint
//! ```text
//! Wifi-Hint: 00:00:5e:00:53:2a@-61, 00005E00532B@-70, 00-00-5e-00-53-2c
//! ```
//! A comma-separated list of at most [`MAX_APS`] BSSIDs (12 hex digits, bare or in pairs with
//! `:` or `-`, any case), each optionally with its signal strength in dBm (`@RSSI`, -120 to 0;
//! [`DEFAULT_RSSI`] when absent). A malformed address, an absurd RSSI, a repeated address or
//! too many of them refuse the hint with the field name, never the value. Multicast and
//! locally administered addresses (randomised hotspots, virtual interfaces) name no fixed
//! access point: they are dropped, not looked up.
//!
//! # The database
//! `wifi/aps.csv` in the data directory: `bssid,lat,lon,range_m`, one access point per line
//! (`#` lines are comments; the first other line, if it starts with `bssid`, is a header).
//! `range_m` is how far from its position the access point is heard, 1 to [`MAX_RANGE_M`]
//! metres. Every broken line is a problem named by line number and reason; the snapshot then
//! does not load, and the last good one keeps serving. [`import_wigle`] builds the file from
//! WiGLE CSV exports. The file is shared between snapshots while it does not change.
//!
//! # The estimate
//! Like the public positioning services, it answers only when at least two known access
//! points agree: a single address's lookup would let anyone locate a router from its
//! address. Two access points agree when their coverage discs overlap (the client can hear
//! both). The largest group agreeing with one access point is kept (an access point that was
//! moved drops out); with fewer than [`MIN_AGREEING`], there is no WiFi evidence.
//!
//! * Position: the weighted centroid of the group, weights from the log-distance path-loss
//!   model (`w = 10^(RSSI / 15)`, path-loss exponent 1.5 × 2: a stronger signal is nearer).
//! * Radius: the client hears every access point of the group, so it is within
//!   `range_i` of each, hence within `min_i(distance(centroid, ap_i) + range_i)` of the
//!   centroid; that bound is the radius (at least [`MIN_RADIUS_M`]), plus 1 % for the local
//!   plane the distances are computed in (accurate to well under 1 % over the ≤ 10 km of an
//!   access point's range).

use crate::locate::hints::HintError;
use crate::privacy::{Bssid, GpsPoint};
use crate::problem::Problem;
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// Most access points in one hint.
pub const MAX_APS: usize = 32;
/// Longest `Wifi-Hint` header accepted (32 × `aa:bb:cc:dd:ee:ff@-100, `).
pub const MAX_WIFI_HINT_LEN: usize = 800;
/// Signal strength assumed when the hint gives none, dBm.
pub const DEFAULT_RSSI: i16 = -80;
/// Fewest agreeing known access points for an estimate.
pub const MIN_AGREEING: usize = 2;
/// Largest range of an access point in the database, metres.
pub const MAX_RANGE_M: f64 = 10_000.0;
/// Smallest radius of an estimate, metres.
pub const MIN_RADIUS_M: f64 = 10.0;

/// One access point the client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenAp {
    /// Its address (redacted in `Debug`).
    pub bssid: Bssid,
    /// Signal strength, dBm.
    pub rssi: i16,
}

/// The checked list of access points of a hint (multicast and locally administered addresses
/// already dropped). Prints nothing of the addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WifiScan {
    aps: SmallVec<[SeenAp; 16]>,
}

impl WifiScan {
    /// The usable access points.
    pub fn aps(&self) -> &[SeenAp] {
        &self.aps
    }
}

fn invalid(reason: &'static str) -> HintError {
    HintError::Invalid {
        field: "wifi",
        reason,
    }
}

/// Checks a list of `(bssid, rssi)` pairs (the header's items or the preflight body's).
///
/// # Errors
/// Too many, a malformed address, an RSSI outside -120..=0, or an address given twice; the
/// error names the field, never the value.
pub fn check_scan<'a>(
    items: impl IntoIterator<Item = (&'a str, Option<f64>)>,
) -> Result<WifiScan, HintError> {
    let mut scan = WifiScan::default();
    let mut seen: SmallVec<[Bssid; 16]> = SmallVec::new();
    for (i, (b, rssi)) in items.into_iter().enumerate() {
        if i >= MAX_APS {
            return Err(invalid("more access points than the limit"));
        }
        let bssid = Bssid::parse(b).map_err(|_| invalid("expected BSSID[@RSSI] items"))?;
        let rssi = match rssi {
            None => DEFAULT_RSSI,
            Some(r) if r.is_finite() && (-120.0..=0.0).contains(&r) => r.round() as i16,
            Some(_) => return Err(invalid("rssi must be within -120..=0 dBm")),
        };
        if seen.contains(&bssid) {
            return Err(invalid("an access point is given twice"));
        }
        seen.push(bssid);
        if !bssid.is_unusable() {
            scan.aps.push(SeenAp { bssid, rssi });
        }
    }
    if seen.is_empty() {
        return Err(HintError::Missing("wifi"));
    }
    Ok(scan)
}

/// Parses a `Wifi-Hint` header value.
///
/// # Errors
/// As [`check_scan`]; also a value longer than [`MAX_WIFI_HINT_LEN`] or an RSSI that is not a
/// number.
pub fn parse_wifi_hint(s: &str) -> Result<WifiScan, HintError> {
    if s.len() > MAX_WIFI_HINT_LEN {
        return Err(HintError::TooLong);
    }
    let mut items: SmallVec<[(&str, Option<f64>); 16]> = SmallVec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (b, r) = match item.split_once('@') {
            Some((b, r)) => {
                let r = r
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| invalid("rssi must be a number of dBm"))?;
                (b.trim(), Some(r))
            }
            None => (item, None),
        };
        items.push((b, r));
    }
    check_scan(items)
}

/// One access point of the database.
#[derive(Clone, Copy, Debug)]
struct ApRecord {
    lat: f64,
    lon: f64,
    range_m: f32,
}

/// The operator's access-point database (`wifi/aps.csv`), sorted by address.
#[derive(Debug, Default)]
pub struct ApDb {
    keys: Vec<u64>,
    recs: Vec<ApRecord>,
}

impl ApDb {
    /// Reads `wifi/aps.csv` text (see the module docs).
    ///
    /// # Errors
    /// Every broken line, as problems of `file` naming the line and the reason.
    pub fn load(file: &str, text: &[u8]) -> Result<ApDb, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut rows: Vec<(u64, ApRecord, usize)> = Vec::new();
        let Ok(text) = std::str::from_utf8(text) else {
            return Err(vec![Problem::new(file, None, "not UTF-8 text".to_owned())]);
        };
        let mut first = true;
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The first line that is not a comment may be the header.
            if std::mem::take(&mut first) && line.starts_with("bssid") {
                continue;
            }
            let at =
                |reason: &str| Problem::new(file, Some(format!("line {n}")), reason.to_owned());
            let cols: SmallVec<[&str; 4]> = line.split(',').map(str::trim).collect();
            let [b, lat, lon, range] = cols[..] else {
                problems.push(at("expected 4 columns: bssid,lat,lon,range_m"));
                continue;
            };
            let Ok(bssid) = Bssid::parse(b) else {
                problems.push(at("bssid: expected 12 hex digits"));
                continue;
            };
            if bssid.is_unusable() {
                problems.push(at(
                    "bssid: multicast or locally administered, never looked up",
                ));
                continue;
            }
            let (Ok(lat), Ok(lon)) = (lat.parse::<f64>(), lon.parse::<f64>()) else {
                problems.push(at("lat, lon: expected degrees"));
                continue;
            };
            if GpsPoint::new(lat, lon).is_err() {
                problems.push(at("lat, lon: out of range or not finite"));
                continue;
            }
            match range.parse::<f64>() {
                Ok(r) if r.is_finite() && (1.0..=MAX_RANGE_M).contains(&r) => rows.push((
                    bssid.key(),
                    ApRecord {
                        lat,
                        lon,
                        range_m: r as f32,
                    },
                    n,
                )),
                _ => problems.push(at("range_m: expected 1 to 10000 metres")),
            }
        }
        rows.sort_unstable_by_key(|r| (r.0, r.2));
        for w in rows.windows(2) {
            if w[0].0 == w[1].0 {
                problems.push(Problem::new(
                    file,
                    Some(format!("line {}", w[1].2)),
                    format!("bssid: the same access point as line {}", w[0].2),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ApDb {
            keys: rows.iter().map(|r| r.0).collect(),
            recs: rows.iter().map(|r| r.1).collect(),
        })
    }

    /// Number of access points.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the database is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, b: Bssid) -> Option<ApRecord> {
        self.keys.binary_search(&b.key()).ok().map(|i| self.recs[i])
    }
}

/// A position estimated from access points: a point and a radius in metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WifiFix {
    /// The estimate (redacted in `Debug`).
    pub point: GpsPoint,
    /// Radius within which the client is, metres.
    pub radius_m: f64,
}

/// Metres per degree of latitude, and of longitude at `lat` (a local plane, spherical).
fn plane_scale(lat: f64) -> (f64, f64) {
    let m = 6_371_008.8 * std::f64::consts::PI / 180.0;
    (m, m * lat.to_radians().cos())
}

/// Where the client is, from the access points it saw (see the module docs), or `None` when
/// fewer than [`MIN_AGREEING`] known access points agree.
pub fn estimate(db: &ApDb, scan: &WifiScan) -> Option<WifiFix> {
    let known: SmallVec<[(ApRecord, i16); 16]> = scan
        .aps()
        .iter()
        .filter_map(|a| db.get(a.bssid).map(|r| (r, a.rssi)))
        .collect();
    if known.len() < MIN_AGREEING {
        return None;
    }
    let (ky, kx) = plane_scale(known[0].0.lat);
    // Each access point on the local plane around the first, once (the pairwise agreement
    // test below reads each position n times).
    let pts: SmallVec<[(f64, f64); 16]> = known
        .iter()
        .map(|(r, _)| {
            let mut dlon = r.lon - known[0].0.lon;
            if dlon > 180.0 {
                dlon -= 360.0;
            } else if dlon < -180.0 {
                dlon += 360.0;
            }
            (dlon * kx, (r.lat - known[0].0.lat) * ky)
        })
        .collect();
    let xy = |i: usize| pts[i];
    let dist = |a: (f64, f64), b: (f64, f64)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
    let agree = |i: usize, j: usize| {
        dist(xy(i), xy(j)) <= f64::from(known[i].0.range_m) + f64::from(known[j].0.range_m)
    };
    // The access point most others agree with (the stronger on ties), and its group.
    let seed = (0..known.len()).max_by_key(|&i| {
        let n = (0..known.len()).filter(|&j| j != i && agree(i, j)).count();
        (n, known[i].1)
    })?;
    let group: SmallVec<[usize; 16]> = (0..known.len())
        .filter(|&j| j == seed || agree(seed, j))
        .collect();
    if group.len() < MIN_AGREEING {
        return None;
    }
    let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
    for &i in &group {
        let w = 10f64.powf(f64::from(known[i].1) / 15.0);
        let (x, y) = xy(i);
        (sx, sy, sw) = (sx + w * x, sy + w * y, sw + w);
    }
    let c = (sx / sw, sy / sw);
    let radius = group
        .iter()
        .map(|&i| dist(c, xy(i)) + f64::from(known[i].0.range_m))
        .fold(f64::INFINITY, f64::min);
    let lat = known[0].0.lat + c.1 / ky;
    let lon = (known[0].0.lon + c.0 / kx + 540.0).rem_euclid(360.0) - 180.0;
    Some(WifiFix {
        point: GpsPoint::new(lat.clamp(-90.0, 90.0), lon).ok()?,
        radius_m: (radius * 1.01).max(MIN_RADIUS_M),
    })
}

/// Why a WiGLE export could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum WigleError {
    /// The first line is not a WiGLE header (`WigleWifi-1.x,...`).
    #[error("{file}: not a WiGLE CSV export (first line must start with WigleWifi-)")]
    NotWigle {
        /// The file.
        file: String,
    },
    /// The column header lacks a column the import needs.
    #[error("{file}: the column header has no {column} column")]
    MissingColumn {
        /// The file.
        file: String,
        /// The column.
        column: &'static str,
    },
    /// A row could not be read.
    #[error("{file}: line {line}: {reason}")]
    Row {
        /// The file.
        file: String,
        /// Line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// What an import read and wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WigleStats {
    /// Observation rows read.
    pub rows: usize,
    /// Rows skipped: not WiFi (Bluetooth, cell), or an unusable address.
    pub skipped: usize,
    /// Access points written.
    pub access_points: usize,
}

/// Builds `wifi/aps.csv` from WiGLE CSV exports (`WigleWifi-1.4` and later: a pre-header
/// line, then `MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,
/// AltitudeMeters,AccuracyMeters,Type`). Observations of each WiFi access point are combined
/// as the estimate does: the RSSI-weighted centroid, and a range that covers every
/// observation (its distance from the centroid plus its GPS accuracy), clamped to 30 m ..
/// [`MAX_RANGE_M`]. SSIDs and observation times are not kept.
///
/// # Errors
/// The first file, line and reason that could not be read.
pub fn import_wigle(files: &[(String, String)]) -> Result<(String, WigleStats), WigleError> {
    let mut stats = WigleStats::default();
    // Per access point: observations (lat, lon, rssi, accuracy).
    let mut obs: BTreeMap<u64, Vec<(f64, f64, f64, f64)>> = BTreeMap::new();
    for (file, text) in files {
        let mut lines = text.lines().enumerate();
        if !lines
            .next()
            .is_some_and(|(_, l)| l.trim_start_matches('\u{feff}').starts_with("WigleWifi-"))
        {
            return Err(WigleError::NotWigle { file: file.clone() });
        }
        let header: Vec<&str> = lines
            .next()
            .map_or(Vec::new(), |(_, l)| l.split(',').map(str::trim).collect());
        let col = |column: &'static str| {
            header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(column))
                .ok_or(WigleError::MissingColumn {
                    file: file.clone(),
                    column,
                })
        };
        let (c_mac, c_rssi, c_lat, c_lon, c_acc, c_type) = (
            col("MAC")?,
            col("RSSI")?,
            col("CurrentLatitude")?,
            col("CurrentLongitude")?,
            col("AccuracyMeters")?,
            col("Type")?,
        );
        // The rows after the two header lines, as a CSV reader sees them (SSIDs may be quoted).
        let body = text.splitn(3, '\n').nth(2).unwrap_or("");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(body.as_bytes())
            .into_records();
        for (line, rec) in (3..).zip(reader.by_ref()) {
            let row_err = |reason: &str| WigleError::Row {
                file: file.clone(),
                line,
                reason: reason.to_owned(),
            };
            let rec = rec.map_err(|e| row_err(&format!("unreadable: {e}")))?;
            let field = |i: usize| rec.get(i).map(str::trim).unwrap_or("");
            stats.rows += 1;
            if !field(c_type).eq_ignore_ascii_case("WIFI") {
                stats.skipped += 1;
                continue;
            }
            let Ok(bssid) = Bssid::parse(field(c_mac)) else {
                return Err(row_err("MAC: expected 12 hex digits"));
            };
            if bssid.is_unusable() {
                stats.skipped += 1;
                continue;
            }
            let num = |i: usize, what: &str| {
                field(i)
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| row_err(&format!("{what}: expected a number")))
            };
            let (lat, lon) = (
                num(c_lat, "CurrentLatitude")?,
                num(c_lon, "CurrentLongitude")?,
            );
            if GpsPoint::new(lat, lon).is_err() {
                return Err(row_err("CurrentLatitude, CurrentLongitude: out of range"));
            }
            let rssi = num(c_rssi, "RSSI")?.clamp(-120.0, 0.0);
            let acc = num(c_acc, "AccuracyMeters")?.clamp(0.0, MAX_RANGE_M);
            obs.entry(bssid.key())
                .or_default()
                .push((lat, lon, rssi, acc));
        }
    }
    let mut out = String::from("bssid,lat,lon,range_m\n");
    for (key, o) in &obs {
        let (ky, kx) = plane_scale(o[0].0);
        let xy = |p: &(f64, f64, f64, f64)| {
            let dlon = (p.1 - o[0].1 + 540.0).rem_euclid(360.0) - 180.0;
            (dlon * kx, (p.0 - o[0].0) * ky)
        };
        let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
        for p in o {
            let w = 10f64.powf(p.2 / 15.0);
            let (x, y) = xy(p);
            (sx, sy, sw) = (sx + w * x, sy + w * y, sw + w);
        }
        let c = (sx / sw, sy / sw);
        let range = o
            .iter()
            .map(|p| {
                let (x, y) = xy(p);
                ((x - c.0).powi(2) + (y - c.1).powi(2)).sqrt() + p.3
            })
            .fold(0.0f64, f64::max)
            .clamp(30.0, MAX_RANGE_M);
        let lat = o[0].0 + c.1 / ky;
        let lon = (o[0].1 + c.0 / kx + 540.0).rem_euclid(360.0) - 180.0;
        let k = key.to_be_bytes();
        out.push_str(&format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x},{lat:.6},{lon:.6},{:.0}\n",
            k[2],
            k[3],
            k[4],
            k[5],
            k[6],
            k[7],
            range.ceil()
        ));
        stats.access_points += 1;
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> ApDb {
        // Documentation addresses (RFC 7042: 00-00-5E-00-53-00 to -FF), in Vienna.
        ApDb::load(
            "wifi/aps.csv",
            b"bssid,lat,lon,range_m\n\
              00:00:5e:00:53:01,48.2082,16.3738,60\n\
              00:00:5e:00:53:02,48.2085,16.3742,60\n\
              00:00:5e:00:53:03,48.2079,16.3735,80\n\
              00:00:5e:00:53:04,52.5200,13.4050,60\n",
        )
        .expect("valid")
    }

    #[test]
    fn hints_parse_and_refuse_by_field() {
        let s = parse_wifi_hint("00:00:5e:00:53:01@-61, 00005E005302@-70,00-00-5e-00-53-03")
            .expect("valid");
        assert_eq!(s.aps().len(), 3);
        assert_eq!(s.aps()[2].rssi, DEFAULT_RSSI);
        // Locally administered and multicast addresses are dropped, not refused.
        let s = parse_wifi_hint("02:00:5e:00:53:01@-50, 01:00:5e:00:00:01, 00:00:5e:00:53:01")
            .expect("valid");
        assert_eq!(s.aps().len(), 1);
        for (bad, want) in [
            ("00:00:5e:00:53", "wifi: expected BSSID[@RSSI] items"),
            (
                "00:00:5e:00:53:01@-200",
                "wifi: rssi must be within -120..=0 dBm",
            ),
            (
                "00:00:5e:00:53:01@5",
                "wifi: rssi must be within -120..=0 dBm",
            ),
            (
                "00:00:5e:00:53:01@loud",
                "wifi: rssi must be a number of dBm",
            ),
            (
                "00:00:5e:00:53:01@NaN",
                "wifi: rssi must be within -120..=0 dBm",
            ),
            (
                "00:00:5e:00:53:01, 00005e005301",
                "wifi: an access point is given twice",
            ),
            ("", "wifi: missing"),
        ] {
            let e = parse_wifi_hint(bad).expect_err(bad).to_string();
            assert_eq!(e, want, "{bad}");
            assert!(!e.contains("5e"), "{e}");
        }
        let many: Vec<String> = (0..=MAX_APS)
            .map(|i| format!("00:00:5e:00:53:{i:02x}"))
            .collect();
        assert_eq!(
            parse_wifi_hint(&many.join(","))
                .expect_err("too many")
                .to_string(),
            "wifi: more access points than the limit"
        );
        assert_eq!(parse_wifi_hint(&"a".repeat(801)), Err(HintError::TooLong));
    }

    #[test]
    fn two_agreeing_access_points_give_a_fix_one_does_not() {
        let db = db();
        let one = parse_wifi_hint("00:00:5e:00:53:01@-50").expect("valid");
        assert_eq!(estimate(&db, &one), None, "a single address never locates");
        let unknown = parse_wifi_hint("00:00:5e:00:53:01@-50, 00:00:5e:00:53:99").expect("ok");
        assert_eq!(estimate(&db, &unknown), None);
        let two = parse_wifi_hint("00:00:5e:00:53:01@-50, 00:00:5e:00:53:02@-80").expect("ok");
        let f = estimate(&db, &two).expect("a fix");
        let [lon, lat] = f.point.lon_lat();
        // Nearer the stronger one, and within both ranges.
        assert!((lat - 48.2082).abs() < (lat - 48.2085).abs(), "{lat}");
        assert!((16.3738..16.3742).contains(&lon) || (lon - 16.3738).abs() < 1e-4);
        assert!(
            // At most the stronger one's 60 m range plus its offset from the estimate, + 1 %.
            f.radius_m >= MIN_RADIUS_M && f.radius_m <= 62.0,
            "{}",
            f.radius_m
        );
    }

    #[test]
    fn an_access_point_that_moved_drops_out() {
        let db = db();
        // Three in Vienna agree; the one in Berlin does not and is ignored.
        let s = parse_wifi_hint(
            "00:00:5e:00:53:04@-40, 00:00:5e:00:53:01@-60, 00:00:5e:00:53:02@-60, 00:00:5e:00:53:03@-70",
        )
        .expect("ok");
        let f = estimate(&db, &s).expect("a fix");
        assert!((f.point.lon_lat()[1] - 48.208).abs() < 0.001);
        // Berlin and one Vienna access point: no two agree.
        let s = parse_wifi_hint("00:00:5e:00:53:04@-40, 00:00:5e:00:53:01@-60").expect("ok");
        assert_eq!(estimate(&db, &s), None);
    }

    #[test]
    fn broken_database_lines_are_named() {
        let e = ApDb::load(
            "wifi/aps.csv",
            b"bssid,lat,lon,range_m\n\
              00:00:5e:00:53:01,48.2,16.3,60\n\
              zz:00:5e:00:53:01,48.2,16.3,60\n\
              00:00:5e:00:53:02,91,16.3,60\n\
              00:00:5e:00:53:03,48.2,16.3,0\n\
              02:00:5e:00:53:04,48.2,16.3,50\n\
              00:00:5e:00:53:05,48.2\n\
              00:00:5e:00:53:01,48.2,16.3,60\n",
        )
        .expect_err("broken");
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        let want = [
            ("line 3", "bssid: expected 12 hex digits"),
            ("line 4", "lat, lon: out of range"),
            ("line 5", "range_m"),
            ("line 6", "multicast or locally administered"),
            ("line 7", "expected 4 columns"),
            ("line 8", "the same access point as line 2"),
        ];
        assert_eq!(text.len(), want.len(), "{text:?}");
        for (line, reason) in want {
            assert!(
                text.iter()
                    .any(|t| t.contains("wifi/aps.csv") && t.contains(line) && t.contains(reason)),
                "{line} {reason}: {text:?}"
            );
        }
    }

    #[test]
    fn wigle_exports_become_an_access_point_file_the_loader_reads() {
        let export = "WigleWifi-1.4,appRelease=2.53,model=Pixel,release=11,device=x,display=x,board=x,brand=x\n\
            MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,Type\n\
            00:00:5e:00:53:10,home,[WPA2],2024-01-01 10:00:00,6,-50,48.20820,16.37380,180,5,WIFI\n\
            00:00:5e:00:53:10,home,[WPA2],2024-01-01 10:01:00,6,-70,48.20840,16.37400,180,8,WIFI\n\
            00:00:5e:00:53:11,\"cafe, upstairs\",[ESS],2024-01-01 10:02:00,11,-60,48.20850,16.37420,180,4,WIFI\n\
            00:00:5e:00:53:12,tower,,2024-01-01 10:02:00,0,-80,48.2,16.3,180,4,LTE\n\
            02:11:22:33:44:55,hotspot,[WPA2],2024-01-01 10:03:00,1,-40,48.2,16.3,180,4,WIFI\n";
        let (csv, stats) =
            import_wigle(&[("survey.csv".to_owned(), export.to_owned())]).expect("imports");
        assert_eq!(
            stats,
            WigleStats {
                rows: 5,
                skipped: 2,
                access_points: 2
            }
        );
        assert!(
            !csv.contains("home") && !csv.contains("cafe"),
            "no SSIDs: {csv}"
        );
        let db = ApDb::load("wifi/aps.csv", csv.as_bytes()).expect("the loader reads it");
        assert_eq!(db.len(), 2);
        let s = parse_wifi_hint("00:00:5e:00:53:10@-55, 00:00:5e:00:53:11@-60").expect("ok");
        assert!(estimate(&db, &s).is_some());
        let e = import_wigle(&[("x.csv".to_owned(), "MAC,SSID\n".to_owned())]).expect_err("not");
        assert!(e.to_string().contains("x.csv: not a WiGLE CSV export"));
        let bad = export.replace("48.20840", "north");
        let e = import_wigle(&[("s.csv".to_owned(), bad)]).expect_err("bad row");
        assert_eq!(
            e.to_string(),
            "s.csv: line 4: CurrentLatitude: expected a number"
        );
    }
}

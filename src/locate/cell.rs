//! Cell evidence: MCC/MNC of the serving network → countries, and an optional cell database
//! (OpenCellID CSV) → a point with the cell's range.
//!
//! The MCC/MNC table (`mcc-mnc.csv`, built by `regions/scripts/build_mcc.py`) has one row per
//! MCC listing every country it serves, and one row per network. A network row decides; an MCC
//! serving one country decides; an MCC shared by several countries without a decisive network
//! row is *ambiguous* evidence (a set of countries). International codes (901, ...) have no
//! rows and give no evidence.

use crate::privacy::{CellHint, GpsPoint, Radio};
use crate::problem::Problem;
use crate::territory::{Territories, TerritoryId};
use smallvec::SmallVec;
use std::collections::HashMap;

/// Countries a cell hint points at: empty (no evidence), one (decisive) or several (ambiguous).
pub type CellCountries = SmallVec<[TerritoryId; 4]>;

/// The MCC/MNC → countries table.
#[derive(Debug, Default)]
pub struct MccTable {
    /// Key: mcc * 10_000 + digits * 1000 + mnc (digits 0 = the MCC row).
    rows: HashMap<u32, CellCountries>,
}

fn key(mcc: u16, mnc: u16, digits: u8) -> u32 {
    u32::from(mcc) * 10_000 + u32::from(digits) * 1000 + u32::from(mnc)
}

impl MccTable {
    /// Parses `mcc-mnc.csv`. Codes that are not territories of the snapshot are dropped (the
    /// table may know countries the territory files do not); rows left empty are dropped.
    ///
    /// # Errors
    /// Every malformed line, as problems of `file`.
    pub fn parse(
        file: &str,
        text: &str,
        territories: &Territories,
    ) -> Result<MccTable, Vec<Problem>> {
        let mut rows = HashMap::new();
        let mut problems = Vec::new();
        let mut header = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header {
                header = true;
                if line != "mcc,mnc,countries" {
                    problems.push(Problem::new(
                        file,
                        Some(format!("line {}", i + 1)),
                        "header must be mcc,mnc,countries",
                    ));
                    break;
                }
                continue;
            }
            let bad =
                |why: &str| Problem::new(file, Some(format!("line {}", i + 1)), why.to_owned());
            let mut cols = line.split(',');
            let (Some(mcc), Some(mnc), Some(countries), None) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                problems.push(bad("expected mcc,mnc,countries"));
                continue;
            };
            let (Ok(mcc_n), true) = (mcc.parse::<u16>(), mcc.len() == 3) else {
                problems.push(bad("mcc must be 3 digits"));
                continue;
            };
            let (mnc_n, digits) = if mnc.is_empty() {
                (0, 0)
            } else {
                match (mnc.parse::<u16>(), mnc.len()) {
                    (Ok(n), d @ 2..=3) => (n, d as u8),
                    _ => {
                        problems.push(bad("mnc must be empty, 2 or 3 digits"));
                        continue;
                    }
                }
            };
            let set: CellCountries = countries
                .split(';')
                .filter_map(|c| territories.id(c.trim()))
                .collect();
            if !set.is_empty() {
                rows.insert(key(mcc_n, mnc_n, digits), set);
            }
        }
        if problems.is_empty() {
            Ok(MccTable { rows })
        } else {
            Err(problems)
        }
    }

    /// The countries of the serving network.
    pub fn countries(&self, hint: &CellHint) -> CellCountries {
        if let Some(set) = self.rows.get(&key(hint.mcc, hint.mnc, hint.mnc_digits)) {
            return set.clone();
        }
        self.rows
            .get(&key(hint.mcc, 0, 0))
            .cloned()
            .unwrap_or_default()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// A known cell's position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellFix {
    /// Where the cell is (redacted in `Debug`).
    pub point: GpsPoint,
    /// The cell's range in metres.
    pub range_m: f64,
}

/// An OpenCellID-format cell database held as a sorted array (20 bytes a cell).
#[derive(Debug, Default)]
pub struct CellDb {
    keys: Vec<u64>,
    fixes: Vec<(f32, f32, u32)>,
}

/// Packs a cell's identity into 64 bits: mcc (10) | mnc (10) | local id (44). LTE and NR cell
/// ids are unique within a network; GSM, UMTS and CDMA ids only within their area.
fn cell_key(mcc: u16, mnc: u16, radio: Option<Radio>, area: u32, cell: u64) -> Option<u64> {
    if mcc > 999 || mnc > 999 {
        return None;
    }
    let local = match radio {
        Some(Radio::Lte) | Some(Radio::Nr) => (cell < (1 << 44)).then_some(cell)?,
        _ => (area < (1 << 16) && cell < (1 << 28)).then_some((u64::from(area) << 28) | cell)?,
    };
    Some((u64::from(mcc) << 54) | (u64::from(mnc) << 44) | local)
}

impl CellDb {
    /// Loads OpenCellID CSV (`radio,mcc,net,area,cell,unit,lon,lat,range,...`, with or without
    /// the header). Rows that do not parse are counted and skipped.
    ///
    /// # Errors
    /// I/O errors of the reader.
    pub fn load(reader: impl std::io::Read) -> Result<(CellDb, u64), csv::Error> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(reader);
        let mut rec = csv::ByteRecord::new();
        let mut rows: Vec<(u64, (f32, f32, u32))> = Vec::new();
        let mut skipped = 0u64;
        while rdr.read_byte_record(&mut rec)? {
            let field = |i: usize| rec.get(i).and_then(|b| std::str::from_utf8(b).ok());
            let parsed = (|| {
                let radio = field(0)?.parse::<Radio>().ok();
                let mcc = field(1)?.parse::<u16>().ok()?;
                let mnc = field(2)?.parse::<u16>().ok()?;
                let area = field(3)?.parse::<u32>().ok()?;
                let cell = field(4)?.parse::<u64>().ok()?;
                let lon = field(6)?.parse::<f32>().ok()?;
                let lat = field(7)?.parse::<f32>().ok()?;
                let range = field(8)?.parse::<u32>().ok()?;
                GpsPoint::new(f64::from(lat), f64::from(lon)).ok()?;
                Some((cell_key(mcc, mnc, radio, area, cell)?, (lat, lon, range)))
            })();
            match parsed {
                Some(r) => rows.push(r),
                None => skipped += 1,
            }
        }
        rows.sort_unstable_by_key(|r| r.0);
        rows.dedup_by_key(|r| r.0);
        let (keys, fixes) = rows.into_iter().unzip();
        // The header line, when present, is counted as skipped.
        Ok((CellDb { keys, fixes }, skipped))
    }

    /// The fix of a hinted cell, if the hint names a cell the database knows.
    pub fn fix(&self, hint: &CellHint) -> Option<CellFix> {
        let k = cell_key(
            hint.mcc,
            hint.mnc,
            hint.radio,
            hint.area.unwrap_or(0),
            hint.cell?,
        )?;
        let i = self.keys.binary_search(&k).ok()?;
        let (lat, lon, range) = self.fixes[i];
        Some(CellFix {
            point: GpsPoint::new(f64::from(lat), f64::from(lon)).ok()?,
            range_m: f64::from(range.max(1)),
        })
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the database is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::territory::TerritoryKind;

    fn territories() -> Territories {
        Territories::new(
            ["DE", "GB", "IM", "JE", "US", "PR"]
                .iter()
                .map(|c| (Box::from(*c), TerritoryKind::Country)),
        )
    }

    fn hint(mcc: u16, mnc: u16, digits: u8) -> CellHint {
        CellHint {
            mcc,
            mnc,
            mnc_digits: digits,
            radio: None,
            area: None,
            cell: None,
        }
    }

    #[test]
    fn networks_decide_mccs_may_be_ambiguous() {
        let t = territories();
        let table = MccTable::parse("mcc-mnc.csv", "# c\nmcc,mnc,countries\n262,,DE\n234,,GB;IM;JE\n234,58,IM\n310,,US;PR\n310,260,US\n310,110,PR\n", &t).expect("valid");
        let codes = |h: CellHint| {
            table
                .countries(&h)
                .iter()
                .map(|&i| t.code(i).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(codes(hint(262, 1, 2)), ["DE"]);
        assert_eq!(codes(hint(234, 58, 2)), ["IM"]);
        assert_eq!(codes(hint(234, 15, 2)), ["GB", "IM", "JE"], "ambiguous");
        assert_eq!(codes(hint(310, 110, 3)), ["PR"]);
        assert_eq!(
            codes(hint(310, 110, 2)),
            ["US", "PR"],
            "010 is not 110 with two digits"
        );
        assert!(codes(hint(901, 18, 2)).is_empty(), "international");
        let e =
            MccTable::parse("m.csv", "mcc,mnc,countries\n26,,DE\n262,1,DE\n", &t).expect_err("bad");
        assert_eq!(e.len(), 2);
        assert!(e[0].to_string().contains("line 2"));
    }

    #[test]
    fn cell_database() {
        let csv = "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n\
                   LTE,262,1,47110,27542332,,13.405,52.52,1500,10,1,0,0,0\n\
                   GSM,262,1,100,5000,,9.99,53.55,3000,5,1,0,0,0\n\
                   GSM,262,1,101,5000,,11.58,48.14,800,5,1,0,0,0\n\
                   UMTS,262,1,x,1,,0,0,1,1,1,0,0,0\n";
        let (db, skipped) = CellDb::load(csv.as_bytes()).expect("loads");
        assert_eq!((db.len(), skipped), (3, 2));
        let mut h = hint(262, 1, 2);
        h.radio = Some(Radio::Lte);
        h.cell = Some(27542332);
        let f = db.fix(&h).expect("known");
        assert_eq!(f.range_m, 1500.0);
        assert!((f.point.lon_lat()[1] - 52.52).abs() < 1e-4);
        h.radio = Some(Radio::Gsm);
        h.area = Some(101);
        h.cell = Some(5000);
        assert!(
            (db.fix(&h).expect("known").point.lon_lat()[1] - 48.14).abs() < 1e-4,
            "area tells the GSM cells apart"
        );
        h.cell = None;
        assert!(db.fix(&h).is_none());
    }
}

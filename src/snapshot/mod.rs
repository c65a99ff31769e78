//! The snapshot: everything a decision reads, loaded and checked as one immutable value.
//!
//! A data directory holds:
//!
//! | path | what |
//! |---|---|
//! | `countries.geojson.gz` or `countries.geojson` | country territories (ISO 3166-1 alpha-2 ids) |
//! | `custom/*.geojson` | custom territories (any id) |
//! | `groups.toml` | territory groups |
//! | `licenses/*.toml`, `licenses/*.csv` | licence maps (TOML and bulk CSV) |
//! | `ip/geoip.mmdb` | IP → country (and point) database, GeoIP2 or flat layout |
//! | `ip/anonymous-ip.mmdb` | optional anonymizer database (GeoIP2 Anonymous-IP layout) |
//! | `ip/vpn-ranges.txt` | optional operator list of VPN / hosting networks (CIDR per line) |
//! | `mcc-mnc.csv` | MCC/MNC → countries table |
//! | `cells.csv` | optional OpenCellID-format cell database |
//! | `wifi/aps.csv` | optional WiFi access-point database (`bssid,lat,lon,range_m`) |
//!
//! Other files are ignored. Building either yields a whole snapshot or the full list of
//! problems; nothing half-loaded is ever returned, so a failed reload leaves the old snapshot
//! serving.

use crate::filemap::{
    FileBytes, PAGED_CHUNK, PagedReader, drop_pages, map_open_file, release_freed_memory,
};
use crate::license::{self, LicenseMap, bulk};
use crate::locate::cell::{CellDb, MccTable};
use crate::locate::cidr::CidrSet;
use crate::locate::ip::{IpDatabase, Layout};
use crate::locate::wifi::ApDb;
use crate::problem::Problem;
use crate::progress::{NoProgress, ProgressReader, Tally};
use crate::territory::{Groups, RawTerritory, Territories, TerritoryIndex, TerritoryKind, geojson};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

mod input;

pub use input::embedded_file;
use input::*;

/// The default data, compiled into the binary.
pub(super) static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/regions");

/// Largest input file accepted (a region file replaced by a huge one is refused, not read).
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Where a snapshot's files come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The `regions/` directory compiled into the binary.
    Embedded,
    /// A directory on disk.
    Dir(PathBuf),
}

/// Why a snapshot could not be built.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// A file or the directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The files were read but have problems; every problem found is listed.
    #[error("{} problem(s) in the data:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// Facts about one territory's geometry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TerritoryShape {
    /// Vertices stored.
    pub vertices: usize,
    /// Area in km² on a sphere of the Earth's mean radius, edges straight in the equal-area
    /// cylindrical projection; rings signed by orientation as RFC 7946 prescribes (exterior
    /// counter-clockwise, holes clockwise). For reports, not for decisions.
    pub area_km2: f64,
    /// A hash of the coordinates: equal for identical geometry.
    pub fingerprint: u64,
}

impl TerritoryShape {
    fn of(rings: &[Vec<[f64; 2]>]) -> TerritoryShape {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut area = 0.0;
        let r2 = 6371.0088f64 * 6371.0088;
        for ring in rings {
            ring.len().hash(&mut h);
            let mut a = 0.0;
            for w in ring.windows(2) {
                let (x0, y0) = (w[0][0].to_radians(), w[0][1].to_radians().sin());
                let (x1, y1) = (w[1][0].to_radians(), w[1][1].to_radians().sin());
                a += x0 * y1 - x1 * y0;
            }
            for p in ring {
                p[0].to_bits().hash(&mut h);
                p[1].to_bits().hash(&mut h);
            }
            area += a * 0.5 * r2;
        }
        TerritoryShape {
            vertices: rings.iter().map(Vec::len).sum(),
            area_km2: area.abs(),
            fingerprint: h.finish(),
        }
    }
}

/// One input file of a snapshot.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// Path relative to the data directory.
    pub path: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Everything a decision reads.
pub struct Snapshot {
    /// Territory ids and codes (shared with the previous snapshot when the geometry files
    /// did not change).
    pub territories: Arc<Territories>,
    /// The point index (shared like `territories`).
    pub index: Arc<TerritoryIndex>,
    /// Size and fingerprint of each territory's geometry (by territory id), for `diff`.
    pub shapes: Arc<Vec<TerritoryShape>>,
    /// A hash over the paths and SHA-256 of the geometry files (`*.geojson[.gz]`): equal keys
    /// mean the same territories, index and shapes.
    pub geometry_key: String,
    /// Territory groups.
    pub groups: Groups,
    /// Licence maps.
    pub licenses: LicenseMap,
    /// IP → country (and point) database.
    pub ip: Option<IpDatabase>,
    /// Anonymizer database.
    pub anonymizer: Option<IpDatabase>,
    /// Operator list of VPN / hosting networks.
    pub vpn_ranges: CidrSet,
    /// MCC/MNC → countries.
    pub mcc: MccTable,
    /// Cell database.
    pub cells: Option<CellDb>,
    /// WiFi access-point database (shared with the previous snapshot when the file did not
    /// change).
    pub aps: Option<Arc<ApDb>>,
    /// Content version: a hash over every input's path and SHA-256.
    pub version: String,
    /// The inputs.
    pub inputs: Vec<InputFile>,
    /// How long building took.
    pub build_time: Duration,
    /// When it was built (Unix seconds).
    pub loaded_unix: u64,
}

/// Whether a data file is geometry (country or custom territories).
fn is_geometry(path: &str) -> bool {
    path.contains(".geojson")
}

/// Walks every node of an IP database's search tree and decodes every record it points to.
///
/// Opening a database reads only its metadata (and layout detection the first records); one
/// damaged further in would load and then fail lookups client by client, which the service
/// answers as "no location evidence". `maxminddb`'s own `verify` also insists on metadata
/// that real databases lack (an empty description map), so the tree and records are checked
/// here.
fn check_ip_database(bytes: &[u8]) -> Result<(), maxminddb::MaxMindDbError> {
    use maxminddb::{Reader, WithinOptions};
    let reader = Reader::from_source(bytes)?;
    // A tree of n nodes has at most 2n leaves; more means a cycle.
    let limit = reader.metadata().node_count as usize * 2 + 2;
    let mut seen = std::collections::HashSet::new();
    let opts = WithinOptions::default().include_networks_without_data();
    for (i, r) in reader.networks(opts)?.enumerate() {
        let r = r?;
        if i > limit {
            return Err(maxminddb::MaxMindDbError::invalid_database(
                "the search tree has a cycle",
            ));
        }
        if let Some(offset) = r.offset()
            && seen.insert(offset)
        {
            r.decode::<serde::de::IgnoredAny>()?;
        }
    }
    Ok(())
}

fn is_country_code(id: &str) -> bool {
    id.len() == 2 && id.bytes().all(|b| b.is_ascii_uppercase())
}

impl Snapshot {
    /// Loads and checks a snapshot from a source.
    ///
    /// # Errors
    /// [`SnapshotError::Io`] if files cannot be read, [`SnapshotError::Invalid`] with every
    /// problem found otherwise.
    pub fn load(source: &DataSource) -> Result<Snapshot, SnapshotError> {
        Snapshot::load_after(source, None)
    }

    /// Loads and checks a snapshot from a source, as a reload does: when the geometry files
    /// are byte for byte those of `previous` (the snapshot being served), its territories and
    /// index are shared instead of parsed and built again. The usual reload (licence maps,
    /// IP database) then costs neither the index build time nor a second index in memory.
    ///
    /// # Errors
    /// As [`Snapshot::load`].
    pub fn load_after(
        source: &DataSource,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::read_and_build(source, previous, &NoProgress)
    }

    /// Loads and checks a snapshot as [`Snapshot::load`] does, telling `progress` how far it
    /// got: the total is the bytes of the inputs (known from their sizes once the files are
    /// open), and each file's bytes count as done when it has been parsed and checked (a bulk
    /// licence or cell CSV as it is read). For the command line; the service loads with
    /// [`Snapshot::load_after`], which pays nothing for it.
    ///
    /// # Errors
    /// As [`Snapshot::load`].
    pub fn load_with_progress(
        source: &DataSource,
        progress: &dyn Tally,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::read_and_build(source, None, progress)
    }

    fn read_and_build(
        source: &DataSource,
        previous: Option<&Snapshot>,
        tally: &dyn Tally,
    ) -> Result<Snapshot, SnapshotError> {
        let inputs = match source {
            DataSource::Embedded => read_embedded(),
            DataSource::Dir(d) => read_dir(d)?,
        };
        let built = Snapshot::build(inputs, previous, tally);
        release_freed_memory();
        built
    }

    /// Builds a snapshot from files held in memory, as `(path relative to the data directory,
    /// bytes)`: the seam tests use to make and swap snapshots.
    ///
    /// # Errors
    /// [`SnapshotError::Invalid`] with every problem found.
    pub fn from_memory<P: Into<String>>(
        files: impl IntoIterator<Item = (P, Vec<u8>)>,
    ) -> Result<Snapshot, SnapshotError> {
        let inputs = files
            .into_iter()
            .map(|(p, d)| Input {
                path: p.into(),
                data: FileBytes::Owned(d),
            })
            .filter(|i| wanted(&i.path))
            .collect();
        Snapshot::build(inputs, None, &NoProgress)
    }

    fn build(
        mut inputs: Vec<Input>,
        previous: Option<&Snapshot>,
        tally: &dyn Tally,
    ) -> Result<Snapshot, SnapshotError> {
        let started = Instant::now();
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        tally.total(inputs.iter().map(|i| i.data.len() as u64).sum());
        let mut problems = Vec::new();
        let mut files = Vec::with_capacity(inputs.len());
        let mut version = Sha256::new();
        let mut track_hint = 0;
        for i in &inputs {
            let (sha, runs) = first_pass(i);
            track_hint += runs;
            version.update(i.path.as_bytes());
            version.update([0]);
            version.update(sha.as_bytes());
            files.push(InputFile {
                path: i.path.clone(),
                sha256: sha,
                bytes: i.data.len() as u64,
            });
        }
        let version = hex(&version.finalize())[..16].to_owned();
        // Every input is parsed by one of the steps below, which count its bytes as done.
        let done = |path: &str| {
            let bytes = files.iter().find(|f| f.path == path).map_or(0, |f| f.bytes);
            tally.advance(bytes);
        };
        let mut geometry = Sha256::new();
        for f in files.iter().filter(|f| is_geometry(&f.path)) {
            geometry.update(f.path.as_bytes());
            geometry.update([0]);
            geometry.update(f.sha256.as_bytes());
        }
        let geometry_key = hex(&geometry.finalize())[..16].to_owned();
        let (territories, index, shapes) = match previous {
            Some(p) if p.geometry_key == geometry_key => {
                files
                    .iter()
                    .filter(|f| is_geometry(&f.path))
                    .for_each(|f| done(&f.path));
                (
                    Arc::clone(&p.territories),
                    Some(Arc::clone(&p.index)),
                    Arc::clone(&p.shapes),
                )
            }
            _ => Snapshot::build_geometry(&inputs, &mut problems, tally),
        };

        let groups_text = inputs
            .iter()
            .find(|i| i.path == "groups.toml")
            .and_then(|i| text(i, &mut problems));
        let groups = match Groups::parse(groups_text.as_deref(), &territories) {
            Ok(g) => g,
            Err(errs) => {
                problems.extend(
                    errs.into_iter()
                        .map(|e| Problem::new("groups.toml", None, e.to_string())),
                );
                Groups::default()
            }
        };
        done("groups.toml");

        let licenses = load_licenses(
            &inputs,
            track_hint,
            &territories,
            &groups,
            &mut problems,
            tally,
        );
        let mcc = match inputs
            .iter()
            .find(|i| i.path == "mcc-mnc.csv")
            .and_then(|i| text(i, &mut problems))
        {
            Some(t) => MccTable::parse("mcc-mnc.csv", &t, &territories).unwrap_or_else(|p| {
                problems.extend(p);
                MccTable::default()
            }),
            None => MccTable::default(),
        };
        done("mcc-mnc.csv");
        let vpn_ranges = match inputs
            .iter()
            .find(|i| i.path == "ip/vpn-ranges.txt")
            .and_then(|i| text(i, &mut problems))
        {
            Some(t) => CidrSet::parse(&t).unwrap_or_else(|(line, item)| {
                problems.push(Problem::new(
                    "ip/vpn-ranges.txt",
                    Some(format!("line {line}")),
                    format!("{item:?} is not a network"),
                ));
                CidrSet::default()
            }),
            None => CidrSet::default(),
        };
        done("ip/vpn-ranges.txt");
        let mut take = |path: &str| {
            inputs
                .iter()
                .position(|i| i.path == path)
                .map(|at| inputs.swap_remove(at))
        };
        // A database byte for byte the one being served was checked when that one loaded.
        let checked_before = |path: &str| {
            let sha = |inputs: &[InputFile]| {
                inputs
                    .iter()
                    .find(|f| f.path == path)
                    .map(|f| f.sha256.clone())
            };
            previous.is_some_and(|p| sha(&p.inputs).is_some() && sha(&p.inputs) == sha(&files))
        };
        let mut open_db = |path: &str, want_anon: bool, problems: &mut Vec<Problem>| {
            let input = take(path)?;
            if !checked_before(path)
                && let Err(e) = check_ip_database(&input.data)
            {
                problems.push(Problem::new(path, None, format!("damaged database: {e}")));
                return None;
            }
            match IpDatabase::from_bytes(input.data) {
                Ok(db) if (db.info().layout == Layout::Anonymous) == want_anon => Some(db),
                Ok(db) => {
                    let expected = if want_anon {
                        "anonymous-ip"
                    } else {
                        "geoip2 or flat country/city"
                    };
                    problems.push(Problem::new(
                        path,
                        None,
                        format!(
                            "expected a {expected} database, found {}",
                            db.info().layout.as_str()
                        ),
                    ));
                    None
                }
                Err(e) => {
                    problems.push(Problem::new(path, None, e.to_string()));
                    None
                }
            }
        };
        let ip = open_db("ip/geoip.mmdb", false, &mut problems);
        done("ip/geoip.mmdb");
        let anonymizer = open_db("ip/anonymous-ip.mmdb", true, &mut problems);
        done("ip/anonymous-ip.mmdb");
        let cells = match take("cells.csv") {
            Some(i) => match streamed(&*i.data, i.data.len(), tally, |r| CellDb::load(r)) {
                Ok((db, _skipped)) => Some(db),
                Err(e) => {
                    problems.push(Problem::new("cells.csv", None, format!("unreadable: {e}")));
                    None
                }
            },
            None => None,
        };
        let aps = match take("wifi/aps.csv") {
            Some(_) if checked_before("wifi/aps.csv") => previous.and_then(|p| p.aps.clone()),
            Some(i) => match ApDb::load("wifi/aps.csv", &i.data) {
                Ok(db) => Some(Arc::new(db)),
                Err(p) => {
                    problems.extend(p);
                    None
                }
            },
            None => None,
        };
        done("wifi/aps.csv");
        let index = match index {
            Some(index) if problems.is_empty() => index,
            _ => return Err(SnapshotError::Invalid(problems)),
        };
        Ok(Snapshot {
            territories,
            index,
            shapes,
            geometry_key,
            groups,
            licenses,
            ip,
            anonymizer,
            vpn_ranges,
            mcc,
            cells,
            aps,
            version,
            inputs: files,
            build_time: started.elapsed(),
            loaded_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// Parses the geometry files and builds territories, index and shapes; the index is
    /// `None` when there were problems. A file's bytes count half as done on `tally` when it
    /// is parsed and half when the index is built (the two take about as long).
    #[allow(clippy::type_complexity)]
    fn build_geometry(
        inputs: &[Input],
        problems: &mut Vec<Problem>,
        tally: &dyn Tally,
    ) -> (
        Arc<Territories>,
        Option<Arc<TerritoryIndex>>,
        Arc<Vec<TerritoryShape>>,
    ) {
        let mut countries: Vec<RawTerritory> = Vec::new();
        let mut customs: Vec<(RawTerritory, String)> = Vec::new();
        let geo_inputs = inputs.iter().filter(|i| is_geometry(&i.path));
        if inputs
            .iter()
            .filter(|i| i.path.starts_with("countries."))
            .count()
            > 1
        {
            problems.push(Problem::new(
                "countries.geojson",
                None,
                "both countries.geojson and countries.geojson.gz exist; keep one",
            ));
        }
        for i in geo_inputs {
            let parsed = text(i, problems).map(|t| geojson::parse(&t));
            tally.advance(i.data.len() as u64 / 2);
            let Some((territories, errs)) = parsed else {
                continue;
            };
            problems.extend(
                errs.into_iter()
                    .map(|e| Problem::new(&i.path, None, e.to_string())),
            );
            if i.path.starts_with("countries.") {
                for t in territories {
                    if is_country_code(&t.id) {
                        countries.push(t);
                    } else {
                        problems.push(Problem::new(
                            &i.path,
                            Some(format!("feature {:?}", t.id)),
                            "country ids must be ISO 3166-1 alpha-2 codes (two capital letters)",
                        ));
                    }
                }
            } else {
                customs.extend(territories.into_iter().map(|t| (t, i.path.clone())));
            }
        }
        countries.sort_by(|a, b| a.id.cmp(&b.id));
        customs.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut seen: HashMap<&str, &str> =
            countries.iter().map(|c| (&*c.id, "countries")).collect();
        for (c, file) in &customs {
            if let Some(other) = seen.insert(&c.id, file) {
                problems.push(Problem::new(
                    file,
                    Some(format!("feature {:?}", c.id)),
                    format!("territory id also defined in {other}"),
                ));
            }
        }
        if countries.len() + customs.len() > usize::from(u16::MAX) {
            problems.push(Problem::new("custom/", None, "more than 65535 territories"));
        }
        // With territory problems, go on checking groups and licences against the territories
        // that did load, so one run reports everything; only the index is skipped.
        let territories = Territories::new(
            countries
                .iter()
                .map(|c| (c.id.clone(), TerritoryKind::Country))
                .chain(
                    customs
                        .iter()
                        .map(|(c, _)| (c.id.clone(), TerritoryKind::Custom)),
                ),
        );
        let rings: Vec<Vec<Vec<[f64; 2]>>> = countries
            .into_iter()
            .map(|c| c.rings)
            .chain(customs.into_iter().map(|(c, _)| c.rings))
            .collect();
        let shapes: Vec<TerritoryShape> = rings.iter().map(|r| TerritoryShape::of(r)).collect();
        let index = problems.is_empty().then(|| TerritoryIndex::build(&rings));
        let bytes = inputs.iter().filter(|i| is_geometry(&i.path));
        tally.advance(
            bytes
                .map(|i| i.data.len() as u64 - i.data.len() as u64 / 2)
                .sum(),
        );
        drop(rings);
        (Arc::new(territories), index.map(Arc::new), Arc::new(shapes))
    }
}

/// `track_hint`: about how many tracks the bulk files name (sizes the track table once).
fn load_licenses(
    inputs: &[Input],
    track_hint: usize,
    territories: &Territories,
    groups: &Groups,
    problems: &mut Vec<Problem>,
    tally: &dyn Tally,
) -> LicenseMap {
    let tomls = inputs
        .iter()
        .filter(|i| i.path.starts_with("licenses/") && i.path.ends_with(".toml"))
        .filter_map(|i| {
            let parsed = text(i, problems).and_then(|t| license::parse_toml(&i.path, &t, problems));
            tally.advance(i.data.len() as u64);
            parsed
        })
        .collect();
    license::build_map(
        tomls,
        territories,
        groups,
        track_hint,
        problems,
        |b, problems| {
            for i in inputs
                .iter()
                .filter(|i| i.path.starts_with("licenses/") && i.path.ends_with(".csv"))
            {
                let load =
                    |r: &mut dyn Read| bulk::load_reader(&i.path, i.data.len(), r, b, problems);
                match &i.data {
                    FileBytes::Mapped(m) => streamed(PagedReader::new(m), m.len(), tally, load),
                    other => streamed(&other[..], other.len(), tally, load),
                }
            }
        },
    )
}

/// Runs `read` over `data` (`len` bytes) through a reader that counts the bytes on `tally`;
/// what a parse that stopped early left unread is counted after it, as the file is done.
fn streamed<R: Read, T>(
    data: R,
    len: usize,
    tally: &dyn Tally,
    read: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    let mut reader = ProgressReader::new(data, tally);
    let out = read(&mut reader);
    tally.advance((len as u64).saturating_sub(reader.bytes_read()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(id: &str, x: f64) -> String {
        format!(
            r#"{{"type":"Feature","properties":{{"id":"{id}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x},0],[{x1},0],[{x1},10],[{x},10],[{x},0]]]}}}}"#,
            x1 = x + 10.0
        )
    }

    fn write(dir: &Path, countries: &[String], licensed_in: &str) {
        std::fs::create_dir_all(dir.join("licenses")).expect("mkdir");
        std::fs::write(
            dir.join("countries.geojson"),
            format!(
                r#"{{"type":"FeatureCollection","features":[{}]}}"#,
                countries.join(",")
            ),
        )
        .expect("write");
        std::fs::write(
            dir.join("licenses/l.toml"),
            format!(
                "[[dealset]]\nselector = {{ track = \"T1\" }}\nupdated = \"2025-01-01\"\ndeals = [{{ id = \"d\", territories = [\"{licensed_in}\"], start = \"2020-01-01\", uses = [\"on_demand_stream\"] }}]\n"
            ),
        )
        .expect("write");
    }

    #[test]
    fn run_counter_counts_tracks_across_chunk_boundaries() {
        let csv = b"track_id,deal_id\nA1,d1\nA1,d2\nB22,d1\nA1,d3\nC,\nC,\nD,d1";
        for split in 0..csv.len() {
            let mut c = RunCounter::default();
            c.feed(&csv[..split]);
            c.feed(&csv[split..]);
            // header, A1, B22, A1 again, C, D
            assert_eq!(c.runs, 6, "split at {split}");
        }
    }

    #[test]
    fn reload_shares_unchanged_geometry_and_rebuilds_changed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().to_path_buf();
        let source = DataSource::Dir(dir.clone());
        write(&dir, &[square("DE", 0.0), square("FR", 10.0)], "DE");
        let first = Snapshot::load(&source).expect("first");

        // A licence change: new version, same territories and index (shared, not rebuilt).
        write(&dir, &[square("DE", 0.0), square("FR", 10.0)], "FR");
        let second = Snapshot::load_after(&source, Some(&first)).expect("second");
        assert_ne!(first.version, second.version);
        assert_eq!(first.geometry_key, second.geometry_key);
        assert!(Arc::ptr_eq(&first.index, &second.index));
        assert!(Arc::ptr_eq(&first.territories, &second.territories));
        assert_ne!(
            first.licenses.track_count() + first.licenses.deal_count(),
            0,
            "the licence file loaded"
        );

        // A geometry change: everything built again, and the new geometry answers.
        write(&dir, &[square("DE", 0.0), square("FR", 20.0)], "FR");
        let third = Snapshot::load_after(&source, Some(&second)).expect("third");
        assert_ne!(second.geometry_key, third.geometry_key);
        assert!(!Arc::ptr_eq(&second.index, &third.index));
        let fr = third.territories.id("FR").expect("FR");
        assert!(third.index.locate([25.0, 5.0]).contains(&fr));
        assert!(!second.index.locate([25.0, 5.0]).contains(&fr));

        // A broken geometry file is still rejected even though a previous snapshot exists.
        std::fs::write(dir.join("countries.geojson"), "{").expect("write");
        assert!(Snapshot::load_after(&source, Some(&third)).is_err());
    }

    /// Records what a load tells its progress display.
    #[derive(Default)]
    struct Recorder {
        totals: std::cell::RefCell<Vec<u64>>,
        steps: std::cell::RefCell<Vec<u64>>,
    }

    impl Tally for Recorder {
        fn total(&self, total: u64) {
            self.totals.borrow_mut().push(total);
        }
        fn advance(&self, n: u64) {
            self.steps.borrow_mut().push(n);
        }
    }

    /// Loads with a recorder: the one total announced is the bytes of the inputs, and the
    /// steps add up to it exactly. Returns the number of steps.
    fn counts_every_byte(source: &DataSource, previous: Option<&Snapshot>) -> usize {
        let r = Recorder::default();
        let snap = Snapshot::read_and_build(source, previous, &r);
        let inputs = match (&snap, source) {
            (Ok(s), _) => s.inputs.iter().map(|f| f.bytes).sum::<u64>(),
            (Err(_), DataSource::Dir(d)) => read_dir(d)
                .expect("read")
                .iter()
                .map(|i| i.data.len() as u64)
                .sum(),
            (Err(e), _) => panic!("{e}"),
        };
        assert_eq!(*r.totals.borrow(), [inputs], "one total, the inputs' bytes");
        assert_eq!(
            r.steps.borrow().iter().sum::<u64>(),
            inputs,
            "done adds up to the total"
        );
        r.steps.borrow().len()
    }

    #[test]
    fn a_load_reports_its_inputs_bytes_as_total_and_reaches_it() {
        assert!(
            counts_every_byte(&DataSource::Embedded, None) >= 7,
            "one step a file at least"
        );
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        write(dir, &[square("DE", 0.0), square("FR", 10.0)], "DE");
        let mut csv = String::from("track_id,deal_id\n");
        (0..20_000).for_each(|n| csv.push_str(&format!("T{n},d\n")));
        std::fs::write(dir.join("licenses/bulk.csv"), &csv).expect("write");
        std::fs::create_dir_all(dir.join("ip")).expect("mkdir");
        std::fs::write(dir.join("ip/vpn-ranges.txt"), "10.0.0.0/8\n").expect("write");
        std::fs::write(dir.join("cells.csv"), "LTE,262,1,1,1,0,13.4,52.5,1000\n").expect("write");
        let source = DataSource::Dir(dir.to_path_buf());
        assert!(
            counts_every_byte(&source, None) > 20,
            "the bulk CSV is counted as it is read"
        );
        // Shared geometry is counted as done too.
        let first = Snapshot::load(&source).expect("loads");
        counts_every_byte(&source, Some(&first));
        // A CSV whose parse stops early, and a file that is not UTF-8: still all counted.
        std::fs::write(dir.join("licenses/bad.csv"), "what,ever\nT1,d\n").expect("write");
        std::fs::write(dir.join("groups.toml"), [0xff, 0xfe]).expect("write");
        counts_every_byte(&source, None);
    }
}

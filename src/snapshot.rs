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
//!
//! Other files are ignored. Building either yields a whole snapshot or the full list of
//! problems; nothing half-loaded is ever returned, so a failed reload leaves the old snapshot
//! serving.

use crate::license::{LicenseMap, LicenseMapBuilder, bulk, toml_format};
use crate::locate::cell::{CellDb, MccTable};
use crate::locate::cidr::CidrSet;
use crate::locate::ip::{IpDatabase, Layout};
use crate::problem::Problem;
use crate::territory::{Groups, RawTerritory, Territories, TerritoryIndex, TerritoryKind, geojson};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The default data, compiled into the binary.
static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/regions");

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
    /// Territory ids and codes.
    pub territories: Territories,
    /// The point index.
    pub index: TerritoryIndex,
    /// Size and fingerprint of each territory's geometry (by territory id), for `diff`.
    pub shapes: Vec<TerritoryShape>,
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
    /// Content version: a hash over every input's path and SHA-256.
    pub version: String,
    /// The inputs.
    pub inputs: Vec<InputFile>,
    /// How long building took.
    pub build_time: Duration,
    /// When it was built (Unix seconds).
    pub loaded_unix: u64,
}

/// The bytes of an input file: compiled in, read into memory, or memory-mapped.
pub enum FileBytes {
    /// Compiled into the binary.
    Static(&'static [u8]),
    /// Read into memory.
    Owned(Vec<u8>),
    /// Memory-mapped (IP databases and the cell database, which can be large).
    Mapped(memmap2::Mmap),
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            FileBytes::Static(b) => b,
            FileBytes::Owned(b) => b,
            FileBytes::Mapped(m) => m,
        }
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

/// Gives the memory freed after building a snapshot back to the operating system. Loading
/// allocates about three times what a snapshot keeps (the decompressed GeoJSON text, the
/// parsed rings, per-thread build buffers), and glibc keeps freed pages in its arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live
    // allocation and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives freed memory back to the operating system (nothing to do on this platform).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() {}

/// Maps a file read-only.
///
/// # Safety argument
/// `unsafe` is needed because another process could truncate the file while it is mapped,
/// which would fault on access. Data updates must therefore replace files (write a new file,
/// then rename it over the old one, or swap a directory symlink), which is what geoipupdate,
/// editors' write-rename, `mv`, Kubernetes ConfigMap volumes and the object-storage sync in
/// `deploy/` do; the old mapping keeps the old inode alive until the snapshot holding it is
/// dropped. The mapping is never written through.
#[allow(unsafe_code)]
pub(crate) fn map_file(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let f = std::fs::File::open(path)?;
    // SAFETY: see the doc comment: files are replaced, never truncated in place, so the
    // mapped bytes stay valid for the mapping's lifetime.
    unsafe { memmap2::Mmap::map(&f) }
}

struct Input {
    path: String,
    data: FileBytes,
}

/// Files that are memory-mapped rather than read: databases and CSV files, which can be large
/// and are read as they are.
fn mapped(path: &str) -> bool {
    path.ends_with(".mmdb") || path.ends_with(".csv")
}

fn wanted(path: &str) -> bool {
    path == "countries.geojson.gz"
        || path == "countries.geojson"
        || path == "groups.toml"
        || path == "mcc-mnc.csv"
        || path == "cells.csv"
        || path == "ip/geoip.mmdb"
        || path == "ip/anonymous-ip.mmdb"
        || path == "ip/vpn-ranges.txt"
        || (path.starts_with("custom/") && path.ends_with(".geojson"))
        || (path.starts_with("licenses/") && (path.ends_with(".toml") || path.ends_with(".csv")))
}

fn read_embedded() -> Vec<Input> {
    let mut out = Vec::new();
    let mut stack = vec![&EMBEDDED];
    while let Some(d) = stack.pop() {
        stack.extend(d.dirs());
        for f in d.files() {
            let path = f.path().to_string_lossy().replace('\\', "/");
            if wanted(&path) {
                out.push(Input {
                    path,
                    data: FileBytes::Static(f.contents()),
                });
            }
        }
    }
    out
}

fn read_dir(root: &Path) -> Result<Vec<Input>, SnapshotError> {
    let io = |p: &Path, e| SnapshotError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let mut out = Vec::new();
    // Fixed names; every file of custom/ and licenses/ (wanted() filters by extension).
    let mut candidates: Vec<String> = [
        "countries.geojson.gz",
        "countries.geojson",
        "groups.toml",
        "mcc-mnc.csv",
        "cells.csv",
        "ip/geoip.mmdb",
        "ip/anonymous-ip.mmdb",
        "ip/vpn-ranges.txt",
    ]
    .map(String::from)
    .to_vec();
    for sub in ["custom", "licenses"] {
        let dir = root.join(sub);
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(|e| io(&dir, e))?;
                    candidates.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir, e)),
        }
    }
    let meta = std::fs::metadata(root).map_err(|e| io(root, e))?;
    if !meta.is_dir() {
        return Err(io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    for path in candidates.into_iter().filter(|p| wanted(p)) {
        let full = root.join(&path);
        let f = match std::fs::File::open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&full, e)),
        };
        let len = f.metadata().map_err(|e| io(&full, e))?.len();
        if len > MAX_FILE_BYTES {
            return Err(SnapshotError::Invalid(vec![Problem::new(
                path,
                None,
                format!("{len} bytes, more than the limit of {MAX_FILE_BYTES}"),
            )]));
        }
        let data = if mapped(&path) {
            FileBytes::Mapped(map_file(&full).map_err(|e| io(&full, e))?)
        } else {
            let mut data = Vec::with_capacity(len as usize);
            f.take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|e| io(&full, e))?;
            FileBytes::Owned(data)
        };
        out.push(Input { path, data });
    }
    Ok(out)
}

fn is_country_code(id: &str) -> bool {
    id.len() == 2 && id.bytes().all(|b| b.is_ascii_uppercase())
}

fn text<'a>(i: &'a Input, problems: &mut Vec<Problem>) -> Option<Cow<'a, str>> {
    if i.path.ends_with(".gz") {
        let mut s = String::new();
        match flate2::read::GzDecoder::new(&i.data[..])
            .take(4 * MAX_FILE_BYTES)
            .read_to_string(&mut s)
        {
            Ok(_) => Some(Cow::Owned(s)),
            Err(e) => {
                problems.push(Problem::new(
                    &i.path,
                    None,
                    format!("cannot decompress: {e}"),
                ));
                None
            }
        }
    } else {
        match std::str::from_utf8(&i.data) {
            Ok(s) => Some(Cow::Borrowed(s)),
            Err(e) => {
                problems.push(Problem::new(&i.path, None, format!("not UTF-8: {e}")));
                None
            }
        }
    }
}

impl Snapshot {
    /// Loads and checks a snapshot from a source.
    ///
    /// # Errors
    /// [`SnapshotError::Io`] if files cannot be read, [`SnapshotError::Invalid`] with every
    /// problem found otherwise.
    pub fn load(source: &DataSource) -> Result<Snapshot, SnapshotError> {
        let inputs = match source {
            DataSource::Embedded => read_embedded(),
            DataSource::Dir(d) => read_dir(d)?,
        };
        let built = Snapshot::build(inputs);
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
        Snapshot::build(inputs)
    }

    fn build(mut inputs: Vec<Input>) -> Result<Snapshot, SnapshotError> {
        let started = Instant::now();
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        let mut problems = Vec::new();
        let mut files = Vec::with_capacity(inputs.len());
        let mut version = Sha256::new();
        for i in &inputs {
            let sha = hex(&Sha256::digest(&i.data));
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

        // Territories: countries first, then custom ones, each sorted by id.
        let mut countries: Vec<RawTerritory> = Vec::new();
        let mut customs: Vec<(RawTerritory, String)> = Vec::new();
        let geo_inputs = inputs.iter().filter(|i| i.path.contains(".geojson"));
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
            let Some(t) = text(i, &mut problems) else {
                continue;
            };
            let (territories, errs) = geojson::parse(&t);
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
        drop(rings);

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

        let licenses = load_licenses(&inputs, &territories, &groups, &mut problems);
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
        let mut take = |path: &str| {
            inputs
                .iter()
                .position(|i| i.path == path)
                .map(|at| inputs.swap_remove(at))
        };
        let mut open_db = |path: &str, want_anon: bool, problems: &mut Vec<Problem>| {
            let input = take(path)?;
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
        let anonymizer = open_db("ip/anonymous-ip.mmdb", true, &mut problems);
        let cells = match take("cells.csv") {
            Some(i) => match CellDb::load(&*i.data) {
                Ok((db, _skipped)) => Some(db),
                Err(e) => {
                    problems.push(Problem::new("cells.csv", None, format!("unreadable: {e}")));
                    None
                }
            },
            None => None,
        };
        let index = match index {
            Some(index) if problems.is_empty() => index,
            _ => return Err(SnapshotError::Invalid(problems)),
        };
        Ok(Snapshot {
            territories,
            index,
            shapes,
            groups,
            licenses,
            ip,
            anonymizer,
            vpn_ranges,
            mcc,
            cells,
            version,
            inputs: files,
            build_time: started.elapsed(),
            loaded_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

fn load_licenses(
    inputs: &[Input],
    territories: &Territories,
    groups: &Groups,
    problems: &mut Vec<Problem>,
) -> LicenseMap {
    let resolver = toml_format::Resolver {
        territories,
        groups,
    };
    let mut b = LicenseMapBuilder::default();
    let tomls: Vec<(&str, toml_format::RawLicenseFile)> = inputs
        .iter()
        .filter(|i| i.path.starts_with("licenses/") && i.path.ends_with(".toml"))
        .filter_map(|i| {
            let t = text(i, problems)?;
            match toml_format::parse(&i.path, &t) {
                Ok(raw) => Some((i.path.as_str(), raw)),
                Err(p) => {
                    problems.push(p);
                    None
                }
            }
        })
        .collect();
    for (file, raw) in &tomls {
        toml_format::add_deals(raw, file, &resolver, &mut b, problems);
    }
    for (file, raw) in &tomls {
        toml_format::attach_sets(raw, file, &mut b, problems);
    }
    for i in inputs
        .iter()
        .filter(|i| i.path.starts_with("licenses/") && i.path.ends_with(".csv"))
    {
        bulk::load(&i.path, &i.data, &mut b, problems);
    }
    b.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

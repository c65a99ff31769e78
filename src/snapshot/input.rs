//! The snapshot's inputs: the files of the embedded data or of a data directory (which are
//! read, which mapped, size limits, symlinks), their first pass (SHA-256, bulk CSV track
//! count), and their text (gzip, UTF-8), each problem named by file.

use super::*;

pub(super) struct Input {
    pub(super) path: String,
    pub(super) data: FileBytes,
}

/// What the first pass over an input learns: its SHA-256 and, for a bulk licence CSV, how
/// many tracks it names (runs of rows with the same first field), to size the track table once.
pub(super) fn first_pass(i: &Input) -> (String, usize) {
    let bulk = i.path.starts_with("licenses/") && i.path.ends_with(".csv");
    let mut h = Sha256::new();
    let mut runs = RunCounter::default();
    let mut feed = |chunk: &[u8]| {
        h.update(chunk);
        if bulk {
            runs.feed(chunk);
        }
    };
    match &i.data {
        FileBytes::Mapped(m) => {
            for (k, chunk) in m.chunks(PAGED_CHUNK).enumerate() {
                feed(chunk);
                drop_pages(m, k * PAGED_CHUNK, chunk.len());
            }
        }
        other => feed(other),
    }
    (hex(&h.finalize()), runs.runs)
}

/// Counts runs of lines with the same first CSV field, fed in chunks.
#[derive(Default)]
pub(super) struct RunCounter {
    pub(super) runs: usize,
    pub(super) previous: Vec<u8>,
    pub(super) field: Vec<u8>,
    /// In the first field of the current line.
    pub(super) in_field: bool,
    pub(super) started: bool,
}

impl RunCounter {
    pub(super) fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if !self.started {
                self.started = true;
                self.in_field = true;
            }
            match b {
                b'\n' => {
                    if self.in_field {
                        self.end_field();
                    }
                    self.in_field = true;
                }
                b',' if self.in_field => self.end_field(),
                _ if self.in_field => self.field.push(b),
                _ => {}
            }
        }
    }

    pub(super) fn end_field(&mut self) {
        self.in_field = false;
        if self.field != self.previous {
            self.runs += 1;
            std::mem::swap(&mut self.field, &mut self.previous);
        }
        self.field.clear();
    }
}

/// Files that are memory-mapped rather than read: CSV files, which can be large (a cell
/// database of millions of rows) and are only parsed, so the mapping lives only while the
/// snapshot is built.
///
/// IP databases are read into memory although the snapshot uses their bytes for as long as it
/// serves: a mapping shows the file as it is now, not as it was loaded. `cp new.mmdb
/// geoip.mmdb` truncates and rewrites the same file in place, and the served snapshot would
/// then answer from a half-copied database or die of SIGBUS on the first lookup past the
/// new end of the file (tests/it/faults.rs shows both). A copy costs the file's size in
/// memory (7.5 MB for the bundled database, about 70 MB for a GeoIP2 City database).
pub(super) fn mapped(path: &str) -> bool {
    path.ends_with(".csv")
}

pub(super) fn wanted(path: &str) -> bool {
    path == "countries.geojson.gz"
        || path == "countries.geojson"
        || path == "groups.toml"
        || path == "mcc-mnc.csv"
        || path == "cells.csv"
        || path == "wifi/aps.csv"
        || path == "ip/geoip.mmdb"
        || path == "ip/anonymous-ip.mmdb"
        || path == "ip/vpn-ranges.txt"
        || (path.starts_with("custom/") && path.ends_with(".geojson"))
        || (path.starts_with("licenses/") && (path.ends_with(".toml") || path.ends_with(".csv")))
}

/// A file of the embedded `regions/` directory (for [`crate::map`], which draws the embedded
/// countries when no data directory is given).
pub fn embedded_file(path: &str) -> Option<&'static [u8]> {
    EMBEDDED.get_file(path).map(|f| f.contents())
}

pub(super) fn read_embedded() -> Vec<Input> {
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

pub(super) fn read_dir(root: &Path) -> Result<Vec<Input>, SnapshotError> {
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
        "wifi/aps.csv",
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
        // Opened non-blocking: a FIFO where a file should be would otherwise block the open,
        // and with it this reload and every later one, until someone writes to it.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&full);
        let f = match opened {
            Ok(f) => f,
            // No such entry: an optional file that is not there. An entry that leads nowhere
            // (a dangling symlink) is a broken file, not a missing one: loading without it
            // would silently drop its territories or deals.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&full).is_err() =>
            {
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(io(
                    &full,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "a symlink to a file that does not exist",
                    ),
                ));
            }
            Err(e) => return Err(io(&full, e)),
        };
        let meta = f.metadata().map_err(|e| io(&full, e))?;
        // Directories, FIFOs, sockets and devices (a link to /dev/zero never ends) are refused.
        if !meta.is_file() {
            return Err(SnapshotError::Invalid(vec![Problem::new(
                path,
                None,
                "not a regular file",
            )]));
        }
        let too_big = |path: String, len: u64| {
            SnapshotError::Invalid(vec![Problem::new(
                path,
                None,
                format!("{len} bytes, more than the limit of {MAX_FILE_BYTES}"),
            )])
        };
        let len = meta.len();
        if len > MAX_FILE_BYTES {
            return Err(too_big(path, len));
        }
        let data = if mapped(&path) {
            FileBytes::Mapped(map_open_file(&f).map_err(|e| io(&full, e))?)
        } else {
            let mut data = Vec::with_capacity(len as usize);
            f.take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|e| io(&full, e))?;
            FileBytes::Owned(data)
        };
        // The file may have grown since it was measured.
        if data.len() as u64 > MAX_FILE_BYTES {
            return Err(too_big(path, data.len() as u64));
        }
        out.push(Input { path, data });
    }
    Ok(out)
}

pub(super) fn text<'a>(i: &'a Input, problems: &mut Vec<Problem>) -> Option<Cow<'a, str>> {
    if i.path.ends_with(".gz") {
        let mut s = String::new();
        match flate2::read::GzDecoder::new(&i.data[..])
            // One byte past the GeoJSON limit is enough for the parser to refuse the size:
            // a gzip bomb stops here instead of at several GiB.
            .take(crate::territory::geojson::MAX_FILE_BYTES as u64 + 1)
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

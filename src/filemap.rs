//! File bytes for the snapshot and the databases it holds: compiled in, read, or memory-mapped,
//! and the page and heap housekeeping that keeps a large build from staying resident.
//!
//! This is the crate's one home of `unsafe` for memory: mapping a file, dropping the pages of
//! a mapping already read, and giving freed heap back (each with its safety argument).

use std::path::Path;

/// How long a watched directory (the data directory, the grant keys) must be quiet before a
/// watch-triggered reload: editors, `mv`, geoipupdate and the ConfigMap `..data` swap produce
/// bursts of events.
pub const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(400);

/// The bytes of an input file: compiled in, read into memory, or memory-mapped.
pub enum FileBytes {
    /// Compiled into the binary.
    Static(&'static [u8]),
    /// Read into memory.
    Owned(Vec<u8>),
    /// Memory-mapped (CSV files while a snapshot is built; see `mapped`).
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
/// dropped. The mapping is never written through. A data directory maps only CSV files, and
/// only while a snapshot is built (see `mapped`), which keeps the window for an in-place
/// rewrite short.
pub(crate) fn map_file(path: &Path) -> std::io::Result<memmap2::Mmap> {
    map_open_file(&std::fs::File::open(path)?)
}

/// Maps an open file read-only (see [`map_file`]).
#[allow(unsafe_code)]
pub(crate) fn map_open_file(f: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see the doc comment of map_file: files are replaced, never truncated in place,
    // so the mapped bytes stay valid for the mapping's lifetime.
    unsafe { memmap2::Mmap::map(f) }
}

/// Bytes read from a mapped file before its pages are given back.
pub(crate) const PAGED_CHUNK: usize = 8 << 20;

/// Gives back the resident pages of a range of a file mapping that has been read, so that a
/// large CSV read once (hashed, then parsed) never holds more than a chunk of itself in
/// memory: without this, a 80 MB catalogue stays resident, as file-backed pages of this
/// process, until the snapshot build ends.
#[allow(unsafe_code)]
pub(crate) fn drop_pages(map: &memmap2::Mmap, offset: usize, len: usize) {
    // SAFETY: the mapping is read-only and private, and its file is replaced, never changed in
    // place (see `map_file`). MADV_DONTNEED on such a mapping only drops the page-table
    // entries: a later read of the range faults the same bytes back in from the file, so
    // every reference into the mapping keeps seeing the data it saw.
    let dropped =
        unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    // Only a hint: if it fails, the pages stay resident until the mapping is dropped.
    let _ = dropped;
}

/// Reads a mapped file front to back, giving its pages back every [`PAGED_CHUNK`] bytes.
pub(crate) struct PagedReader<'a> {
    map: &'a memmap2::Mmap,
    pos: usize,
    dropped: usize,
}

impl<'a> PagedReader<'a> {
    /// A reader from the start of `map`.
    pub(crate) fn new(map: &'a memmap2::Mmap) -> Self {
        PagedReader {
            map,
            pos: 0,
            dropped: 0,
        }
    }
}

impl std::io::Read for PagedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.map.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        if self.pos - self.dropped >= PAGED_CHUNK || self.pos == self.map.len() {
            // Chunk boundaries are multiples of 8 MiB from the page-aligned start.
            let end = if self.pos == self.map.len() {
                self.pos
            } else {
                self.pos / PAGED_CHUNK * PAGED_CHUNK
            };
            if end > self.dropped {
                drop_pages(self.map, self.dropped, end - self.dropped);
                self.dropped = end;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paged_reader_reads_a_mapped_file_whole() {
        use std::io::Read;
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("big.csv");
        let data: Vec<u8> = (0..PAGED_CHUNK * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).expect("write");
        let map = map_file(&path).expect("map");
        let mut back = Vec::new();
        PagedReader::new(&map).read_to_end(&mut back).expect("read");
        assert!(back == data, "the bytes read back differ");
        // Pages given back fault in again with the same bytes.
        assert!(map[..] == data[..]);
    }
}

//! regiongate decides, on every playback request, whether a track may be played where the
//! listener is.
//!
//! One request makes one pass through these stages, all reading one immutable [`Snapshot`]:
//!
//! ```text
//! extract ──► locate ──► place ──► decide ──► respond ──► record
//! ```
//!
//! * **extract** and **locate** ([`locate`]): the client address (trusted proxies), GPS and
//!   cell hints, IP databases and cell tables → location evidence.
//! * **place** ([`territory`]): a point → every territory containing it, exactly, through the
//!   [`territory::TerritoryIndex`]; territories are small integer ids, groups and deal
//!   territories are bitsets over them.
//! * **decide** ([`decide`]): a pure function of the licence map ([`license`]), the question
//!   (track, use, tier), the territories and the time, giving a [`decide::Decision`] value.
//! * The [`snapshot`] holds everything a decision reads and is built whole or not at all; its
//!   problems are [`problem::Problem`]s naming the file, the feature or deal, and the reason.
//! * [`privacy`] holds the redacted types raw location data lives in.
//! * Licence operations, off the request path: [`ddex`] turns DDEX ERN messages into licence
//!   files, [`map`] draws where a track is playable (CLI and admin page), [`progress`] shows
//!   long CLI work on a terminal.

#![deny(unsafe_code)] // reviewed exceptions: snapshot::map_file (memory-mapped CSV files while a snapshot is built), snapshot::drop_pages (MADV_DONTNEED on read pages of such a mapping), snapshot::release_freed_memory (malloc_trim)

pub mod config;
pub mod ddex;
pub mod decide;
pub mod diff;
pub mod headers;
pub mod license;
pub mod locate;
pub mod map;
pub mod privacy;
pub mod problem;
pub mod progress;
pub mod server;
pub mod snapshot;
pub mod territory;

pub use snapshot::{DataSource, Snapshot, SnapshotError};

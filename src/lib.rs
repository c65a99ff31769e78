//! regiongate decides, on every playback request, whether a track may be played where the
//! listener is.
//!
//! One request makes one pass through these stages, all reading one immutable [`Snapshot`]:
//!
//! ```text
//! door: extract ──► gate: gather ──► place ──► decide ──► record ──► door: respond
//! ```
//!
//! * A front door ([`server`]: preflight, authz, proxy) parses its request and hands the
//!   [`gate`] an extracted request: the client address after the trusted-proxy rules
//!   ([`locate::forwarded`]), the hints ([`locate::hints`], [`locate::wifi`]), the question
//!   and the time. The gate is the one pipeline every door shares.
//! * **gather** ([`gate::gather`], [`locate`]): IP databases, cell tables and the
//!   access-point database → location evidence.
//! * **place** ([`territory`]): a point → every territory containing it, exactly, through the
//!   [`territory::TerritoryIndex`]; a disc → every territory it touches; territories are small
//!   integer ids, groups and deal territories are bitsets over them.
//! * **decide** ([`decide`]): a pure function of the licence map ([`license`]), the question
//!   (track, use, tier), the evidence and the time, giving a [`decide::Decision`] value.
//! * **record** ([`gate::Record`]): metrics and the aggregate report; a decision log line
//!   only when the operator asks ([`config::DecisionLog`]).
//! * The [`snapshot`] holds everything a decision reads and is built whole or not at all; its
//!   problems are [`problem::Problem`]s naming the file, the feature or deal, and the reason.
//!   [`filemap`] holds the bytes of its files (compiled in, read or mapped).
//! * [`grant`]: signed playback grants issued with an allow and checked at the edge.
//! * [`privacy`] holds the redacted types raw location data lives in.
//! * Licence operations, off the request path: [`ddex`] turns DDEX ERN messages into licence
//!   files, [`map`] draws where a track is playable (CLI and admin page), [`progress`] shows
//!   long CLI work on a terminal.
//!
//! Modules use only those below them in this order (checked by `tests/it/layers.rs`):
//! privacy, problem, headers, filemap, progress; territory; license; locate; snapshot;
//! decide, diff; ddex, map, grant; route; config; gate; server.

#![deny(unsafe_code)] // reviewed exceptions: filemap::map_open_file (memory-mapped CSV files while a snapshot is built), filemap::drop_pages (MADV_DONTNEED on read pages of such a mapping), filemap::release_freed_memory (malloc_trim)

pub mod config;
pub mod ddex;
pub mod decide;
pub mod diff;
pub mod filemap;
pub mod gate;
pub mod grant;
pub mod headers;
pub mod license;
pub mod locate;
pub mod map;
pub mod privacy;
pub mod problem;
pub mod progress;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod territory;

pub use snapshot::{DataSource, Snapshot, SnapshotError};

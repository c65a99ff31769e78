//! The integration test binary: one binary, one `util` module, a module per area.

mod cli;
mod diff;
mod licenses;
mod locate;
mod nginx;
mod server;
mod util;
mod world;

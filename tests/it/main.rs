//! The integration test binary: one binary, one `util` module, a module per area.

mod cli;
mod ddex;
mod diff;
mod disc;
mod fast_path;
mod faults;
mod grants;
mod grpc;
mod layers;
mod leak;
mod licenses;
mod locate;
mod map;
mod nginx;
mod openapi;
mod progress;
mod record;
mod reload;
mod server;
mod sync;
mod util;
mod world;

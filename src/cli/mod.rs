//! The subcommands of the `regiongate` binary other than `serve` and `validate`, which stay in
//! `main.rs`. Part of the binary, not the library: it may use anything the library offers.

pub mod ask;
pub mod ops;

//! The configuration file (src/config/).
//!
//! Properties: never panics, never hangs; a refusal names a key. The validated `Config` has no
//! printer (it is built from the file, the environment and flags, and holds the admin token),
//! so there is no round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::config::{Config, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::load(Some(text), |_| None, Overrides::default()) {
        Ok(c) => {
            assert!(c.limits.max_connections >= 1);
            assert!((1..=10_000).contains(&c.max_batch));
            assert!(!c.routes.is_empty() || text.contains("routes"));
        }
        Err(e) => assert!(!e.key.is_empty(), "an error without a key: {e}"),
    }
});

//! Bulk CSV licence files (src/license/bulk.rs), with the deal templates of the sample TOML
//! file, against the default world.
//!
//! Properties: never panics, never hangs; every problem names the CSV file and at most 100
//! problems (plus a count of the rest) are listed; every track with a deal set answers with
//! it. No printer exists for licence maps, so there is no round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::license::{Selector, TrackDeals, load_files};
use regiongate::{DataSource, Snapshot};
use std::sync::OnceLock;

const TEMPLATES: &[u8] = include_bytes!("../../regions/licenses/sample.toml");

fn world() -> &'static Snapshot {
    static W: OnceLock<Snapshot> = OnceLock::new();
    W.get_or_init(|| Snapshot::load(&DataSource::Embedded).expect("the embedded data loads"))
}

fuzz_target!(
    // Load the world before fuzzing starts, so that its load time is not taken for a hang.
    init: {
        world();
    },
    |data: &[u8]| {
    let w = world();
    let mut problems = Vec::new();
    let map = load_files(
        &[
            ("licenses/sample.toml", TEMPLATES),
            ("licenses/zz-fuzz.csv", data),
        ],
        &w.territories,
        &w.groups,
        &mut problems,
    );
    assert!(problems.len() <= 101, "{} problems listed", problems.len());
    for p in &problems {
        assert_eq!(p.file, "licenses/zz-fuzz.csv", "{p}");
    }
    for (selector, _) in map.selectors() {
        if let Selector::Track(t) = selector {
            assert!(matches!(map.lookup(&t), TrackDeals::Found(..)));
        }
    }
}
);

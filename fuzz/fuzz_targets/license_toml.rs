//! TOML licence files (src/license/toml_format.rs), loaded against the default world's
//! territories and groups.
//!
//! Properties: never panics, never hangs; every problem names the file; the loaded map answers
//! lookups for every track and deal it holds. There is no printer for licence maps (they are
//! compiled, not kept as text), so there is no round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::license::{TrackDeals, load_files};
use regiongate::{DataSource, Snapshot};
use std::sync::OnceLock;

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
        &[("licenses/fuzz.toml", data)],
        &w.territories,
        &w.groups,
        &mut problems,
    );
    for p in &problems {
        assert_eq!(p.file, "licenses/fuzz.toml");
        let _ = p.to_string();
    }
    let now = chrono::Utc::now();
    for (selector, set) in map.selectors() {
        for &d in set.deals.iter() {
            let deal = map.deal(d);
            let _ = deal.valid_at(now);
            assert!(map.deal_by_name(&deal.id).is_some());
            let _ = deal.scope.licensed_in(&[], now);
        }
        if let regiongate::license::Selector::Track(t) = selector {
            assert!(matches!(map.lookup(&t), TrackDeals::Found(..)));
        }
    }
}
);

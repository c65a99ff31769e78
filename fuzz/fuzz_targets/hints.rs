//! `Geo-Hint` and `Cell-Hint` header values (src/locate/hints.rs).
//!
//! Properties: never panics; a hint that parses, printed again in the canonical header form,
//! parses to the same value. The library has no printer on purpose (hints hold location data
//! and print as `[redacted]`), so the canonical form is written here, from the public fields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::locate::hints::{GpsLimits, parse_cell, parse_gps};
use regiongate::privacy::{CellHint, Radio};

/// A fixed "now" inside the fix-age window of the seeds.
const NOW: i64 = 1_764_370_000;

fn radio_name(r: Radio) -> &'static str {
    match r {
        Radio::Gsm => "gsm",
        Radio::Umts => "umts",
        Radio::Cdma => "cdma",
        Radio::Lte => "lte",
        Radio::Nr => "nr",
    }
}

/// The canonical `Cell-Hint` form of a parsed hint (test-only printer).
fn print_cell(c: &CellHint) -> String {
    let mut s = format!(
        "mcc={:03}; mnc={:0width$}",
        c.mcc,
        c.mnc,
        width = usize::from(c.mnc_digits)
    );
    if let Some(r) = c.radio {
        s.push_str(&format!("; radio={}", radio_name(r)));
    }
    if let Some(a) = c.area {
        s.push_str(&format!("; area={a}"));
    }
    if let Some(id) = c.cell {
        s.push_str(&format!("; cell=0x{id:X}"));
    }
    s
}

fn cell_fields(c: &CellHint) -> (u16, u16, u8, Option<Radio>, Option<u32>, Option<u64>) {
    (c.mcc, c.mnc, c.mnc_digits, c.radio, c.area, c.cell)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Both limit settings: the defaults and the most permissive a config can give.
    for limits in [
        GpsLimits::default(),
        GpsLimits {
            max_accuracy_m: f64::MAX,
            max_wifi_accuracy_m: f64::MAX,
            max_age_s: i64::MAX,
        },
    ] {
        if let Ok(h) = parse_gps(s, NOW, &limits) {
            let [lon, lat] = h.point.lon_lat();
            assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
            assert!(h.accuracy_m.is_finite() && h.accuracy_m > 0.0);
            assert!(h.accuracy_m <= limits.max_accuracy_m.max(limits.max_wifi_accuracy_m));
            // `{:?}` prints the shortest text that reads back to the same f64.
            let printed = format!(
                "gps={lat:?},{lon:?}; acc={:?}; ts={NOW}; src={}",
                h.accuracy_m,
                h.kind.as_str()
            );
            let again = parse_gps(&printed, NOW, &limits)
                .unwrap_or_else(|e| panic!("printed GPS hint does not parse: {e}"));
            assert_eq!(again, h, "GPS hint round trip");
        }
    }
    if let Ok(c) = parse_cell(s) {
        let printed = print_cell(&c);
        let again = parse_cell(&printed)
            .unwrap_or_else(|e| panic!("printed cell hint does not parse: {e}"));
        assert_eq!(cell_fields(&again), cell_fields(&c), "cell hint round trip");
    }
});

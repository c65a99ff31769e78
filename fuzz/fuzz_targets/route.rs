//! Route patterns and path matching (src/route.rs).
//!
//! The input's first line is a pattern, the following lines are paths and capture values.
//! Properties: never panics; a pattern prints (`Display`) as text that parses to the same
//! pattern; a match's captures are a valid track id (1 to 128 bytes, no `/`); captures
//! written into a path built from the pattern (percent-encoded) match back to the same
//! captures; percent-decoding inverts percent-encoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::route::{RoutePattern, percent_decode};

/// Percent-encodes everything but RFC 3986 unreserved characters (test-only printer).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path for `pattern` with these captures, built from the pattern's text.
fn path_for(pattern: &str, track: &str, use_type: &str, tier: &str) -> String {
    let mut out = String::new();
    for seg in pattern[1..].split('/') {
        out.push('/');
        match seg {
            "{track}" => out.push_str(&encode(track)),
            "{use}" => out.push_str(&encode(use_type)),
            "{tier}" => out.push_str(&encode(tier)),
            "{*rest}" => {
                out.push_str("rest/of/path");
            }
            s if s.starts_with('{') => out.push('x'),
            s => out.push_str(s),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = s.split('\n');
    let first = lines.next().unwrap_or("");
    let rest: Vec<&str> = lines.collect();

    for line in std::iter::once(first).chain(rest.iter().copied()) {
        if let Some(decoded) = percent_decode(line) {
            assert_eq!(percent_decode(&encode(&decoded)), Some(decoded));
        }
    }

    let Ok(p) = first.parse::<RoutePattern>() else {
        return;
    };
    let printed = p.to_string();
    assert_eq!(
        printed.parse::<RoutePattern>().as_ref(),
        Ok(&p),
        "pattern round trip"
    );

    for path in &rest {
        if let Some(m) = p.matches(path) {
            assert!(!m.track.is_empty() && m.track.len() <= 128 && !m.track.contains('/'));
        }
    }

    let track = rest.first().copied().unwrap_or("T1");
    let use_type = rest.get(1).copied().unwrap_or("download");
    let tier = rest.get(2).copied().unwrap_or("premium");
    let path = path_for(&printed, track, use_type, tier);
    let m = p.matches(&path);
    let valid_track = !track.is_empty() && track.len() <= 128 && !track.contains('/');
    match m {
        Some(m) => {
            assert!(valid_track, "an invalid track id matched");
            assert_eq!(m.track, track, "track round trip through {path}");
            if printed.split('/').any(|s| s == "{use}") {
                assert_eq!(m.use_type.as_deref(), Some(use_type));
            }
            if printed.split('/').any(|s| s == "{tier}") {
                assert_eq!(m.tier.as_deref(), Some(tier));
            }
        }
        None => assert!(
            !valid_track,
            "a path built from the pattern does not match: {path}"
        ),
    }
});

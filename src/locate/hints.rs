//! Client location hints: an on-device fix (GPS, or the OS's WiFi positioning), the serving
//! cell, and the WiFi access points the device sees, sent by the app.
//!
//! Headers (the preflight JSON body has the same fields, see the service docs):
//!
//! ```text
//! Geo-Hint: gps=48.20820,16.37380; acc=25; ts=1764370000
//! Geo-Hint: gps=48.20820,16.37380; acc=40; ts=1764370000; src=wifi
//! Cell-Hint: mcc=262; mnc=01; radio=lte; area=47110; cell=0x1A2B3C4
//! Wifi-Hint: 00:00:5e:00:53:2a@-61, 00:00:5e:00:53:2b@-70
//! ```
//!
//! * `gps=LAT,LON` in WGS 84 degrees; `acc` the 68 % accuracy radius in metres (0 < acc ≤ the
//!   configured maximum for the fix's kind, default 5 km); `ts` the fix time in Unix seconds,
//!   required, at most `max_age` old (default 300 s) and at most 60 s in the future; `src` what
//!   made the fix, `gps` (the default) or `wifi` (the OS's network location provider: Android's
//!   fused or network provider, Apple Core Location without GPS, a browser's Geolocation API).
//! * `Wifi-Hint`: see [`wifi`](super::wifi).
//! * `mcc` 3 digits, `mnc` 2 or 3 digits (as sent: `01` ≠ `001`), both of the serving network,
//!   not the SIM; `radio` one of gsm, umts, cdma, lte, nr; `area` the LAC/TAC; `cell` the cell
//!   id, decimal or `0x` hex.
//!
//! Parameters are `key=value` separated by `;`, whitespace around them ignored, keys
//! case-insensitive, unknown keys ignored (for newer clients), repeated keys refused. Errors
//! name the field and the reason, never the value.

use super::wifi::WifiScan;
use crate::privacy::{CellHint, GpsPoint, Radio};
use thiserror::Error;

/// Longest hint header accepted.
pub const MAX_HINT_LEN: usize = 256;
/// Most parameters in one hint header.
pub const MAX_HINT_PARAMS: usize = 12;

/// What made an on-device fix (`src=` of the `Geo-Hint`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FixKind {
    /// Satellite positioning (the default).
    #[default]
    Gps,
    /// The OS's WiFi positioning (network location provider).
    Wifi,
}

impl FixKind {
    /// The wire name (`src=`).
    pub fn as_str(self) -> &'static str {
        match self {
            FixKind::Gps => "gps",
            FixKind::Wifi => "wifi",
        }
    }

    /// The kind named `s` (`gps` or `wifi`, any case).
    ///
    /// # Errors
    /// Another name; the error names the field `src`.
    pub fn parse(s: &str) -> Result<FixKind, HintError> {
        if s.eq_ignore_ascii_case("gps") {
            Ok(FixKind::Gps)
        } else if s.eq_ignore_ascii_case("wifi") {
            Ok(FixKind::Wifi)
        } else {
            Err(invalid("src", "expected gps or wifi"))
        }
    }
}

/// A checked on-device fix (GPS or WiFi positioning, see [`FixKind`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpsHint {
    /// The position (redacted in `Debug`).
    pub point: GpsPoint,
    /// Accuracy radius in metres.
    pub accuracy_m: f64,
    /// What made the fix.
    pub kind: FixKind,
}

/// Limits applied to on-device fixes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpsLimits {
    /// Largest accuracy radius accepted for a GPS fix, metres.
    pub max_accuracy_m: f64,
    /// Largest accuracy radius accepted for a WiFi fix (`src=wifi`), metres.
    pub max_wifi_accuracy_m: f64,
    /// Oldest fix accepted, seconds.
    pub max_age_s: i64,
}

impl Default for GpsLimits {
    fn default() -> Self {
        GpsLimits {
            max_accuracy_m: 5_000.0,
            max_wifi_accuracy_m: 5_000.0,
            max_age_s: 300,
        }
    }
}

/// The client hints of one request, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hints {
    /// An on-device fix.
    pub gps: Option<GpsHint>,
    /// The serving cell.
    pub cell: Option<CellHint>,
    /// WiFi access points seen.
    pub wifi: Option<WifiScan>,
}

/// Why a hint was refused. Names the field, never its value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HintError {
    /// Longer than [`MAX_HINT_LEN`] or more than [`MAX_HINT_PARAMS`] parameters.
    #[error("hint too long")]
    TooLong,
    /// Not `key=value` pairs, or not ASCII.
    #[error("hint is not a list of key=value parameters")]
    Syntax,
    /// A key appears twice.
    #[error("{0}: given twice")]
    Repeated(&'static str),
    /// A required field is missing.
    #[error("{0}: missing")]
    Missing(&'static str),
    /// A field does not parse or is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

fn invalid(field: &'static str, reason: &'static str) -> HintError {
    HintError::Invalid { field, reason }
}

/// `s` without leading and trailing whitespace: what `str::trim` removes from ASCII text
/// (tab, line feed, vertical tab, form feed, carriage return, space), without its Unicode
/// tables.
fn trim(s: &str) -> &str {
    let ws = |b: &u8| matches!(b, b' ' | b'\t'..=b'\r');
    let b = s.as_bytes();
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    // Both ends sit next to ASCII bytes: character boundaries.
    s.get(start..end).unwrap_or_default()
}

/// The pieces of `s` between `sep` bytes (an ASCII separator), as `str::split` gives them.
fn pieces(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                // An ASCII separator: both sides of it are character boundaries.
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Splits `k=v; k=v` into pairs, checking size, syntax and repeats against `known` keys.
fn params<'a, const N: usize>(
    s: &'a str,
    known: [&'static str; N],
) -> Result<[Option<&'a str>; N], HintError> {
    if s.len() > MAX_HINT_LEN {
        return Err(HintError::TooLong);
    }
    if !s.is_ascii() {
        return Err(HintError::Syntax);
    }
    let mut out = [None; N];
    let mut count = 0;
    // Byte by byte (the value is ASCII): `split` and `trim` on `str` search for characters
    // and Unicode whitespace, several times the work for a hint on every request.
    for part in pieces(s, b';').map(trim).filter(|p| !p.is_empty()) {
        count += 1;
        if count > MAX_HINT_PARAMS {
            return Err(HintError::TooLong);
        }
        let eq = part
            .bytes()
            .position(|b| b == b'=')
            .ok_or(HintError::Syntax)?;
        let (k, v) = (trim(&part[..eq]), trim(&part[eq + 1..]));
        if k.is_empty() {
            return Err(HintError::Syntax);
        }
        if let Some(i) = known.iter().position(|n| n.eq_ignore_ascii_case(k)) {
            if out[i].is_some() {
                return Err(HintError::Repeated(known[i]));
            }
            out[i] = Some(v);
        }
    }
    Ok(out)
}

/// Checks GPS fix fields (shared by the header and the JSON body): [`check_fix`] for a
/// [`FixKind::Gps`] fix.
///
/// # Errors
/// The field and the reason.
pub fn check_gps(
    lat: f64,
    lon: f64,
    acc: f64,
    ts: i64,
    now_unix: i64,
    limits: &GpsLimits,
) -> Result<GpsHint, HintError> {
    check_fix(lat, lon, acc, ts, now_unix, limits, FixKind::Gps)
}

/// Checks on-device fix fields of a fix of `kind` (shared by the header and the JSON body).
///
/// # Errors
/// The field and the reason.
pub fn check_fix(
    lat: f64,
    lon: f64,
    acc: f64,
    ts: i64,
    now_unix: i64,
    limits: &GpsLimits,
    kind: FixKind,
) -> Result<GpsHint, HintError> {
    let point = GpsPoint::new(lat, lon).map_err(|e| match e {
        crate::privacy::GpsError::NotFinite => invalid("gps", "not a finite number"),
        crate::privacy::GpsError::OutOfRange => invalid(
            "gps",
            "latitude must be within ±90 and longitude within ±180",
        ),
    })?;
    if !acc.is_finite() || acc <= 0.0 {
        return Err(invalid("acc", "must be a positive number of metres"));
    }
    let max = match kind {
        FixKind::Gps => limits.max_accuracy_m,
        FixKind::Wifi => limits.max_wifi_accuracy_m,
    };
    if acc > max {
        return Err(invalid(
            "acc",
            "accuracy radius too large to place the listener",
        ));
    }
    if ts > now_unix.saturating_add(60) {
        return Err(invalid("ts", "fix time is in the future"));
    }
    // Saturating: a fix time near i64::MIN must be stale, not wrap round to "fresh" (found by
    // the `hints` fuzz target).
    if now_unix.saturating_sub(ts) > limits.max_age_s {
        return Err(invalid("ts", "fix is stale"));
    }
    Ok(GpsHint {
        point,
        accuracy_m: acc,
        kind,
    })
}

/// Parses a `Geo-Hint` header value.
///
/// # Errors
/// The field and the reason.
pub fn parse_gps(s: &str, now_unix: i64, limits: &GpsLimits) -> Result<GpsHint, HintError> {
    let [gps, acc, ts, src] = params(s, ["gps", "acc", "ts", "src"])?;
    let kind = src.map_or(Ok(FixKind::Gps), FixKind::parse)?;
    let gps = gps.ok_or(HintError::Missing("gps"))?;
    let comma = gps
        .bytes()
        .position(|b| b == b',')
        .ok_or(invalid("gps", "expected LAT,LON"))?;
    let (lat, lon) = (&gps[..comma], &gps[comma + 1..]);
    let num = |v: &str| {
        trim(v)
            .parse::<f64>()
            .map_err(|_| invalid("gps", "expected LAT,LON in degrees"))
    };
    let (lat, lon) = (num(lat)?, num(lon)?);
    let acc = acc
        .ok_or(HintError::Missing("acc"))?
        .parse::<f64>()
        .map_err(|_| invalid("acc", "expected metres"))?;
    let ts = ts
        .ok_or(HintError::Missing("ts"))?
        .parse::<i64>()
        .map_err(|_| invalid("ts", "expected Unix seconds"))?;
    check_fix(lat, lon, acc, ts, now_unix, limits, kind)
}

/// Checks cell fields (shared by the header and the JSON body). `mnc` is given as its digits.
///
/// # Errors
/// The field and the reason.
pub fn check_cell(
    mcc: &str,
    mnc: &str,
    radio: Option<&str>,
    area: Option<&str>,
    cell: Option<&str>,
) -> Result<CellHint, HintError> {
    if mcc.len() != 3 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("mcc", "expected 3 digits"));
    }
    if !(2..=3).contains(&mnc.len()) || !mnc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("mnc", "expected 2 or 3 digits"));
    }
    let radio = radio
        .map(|r| {
            r.parse::<Radio>()
                .map_err(|()| invalid("radio", "expected gsm, umts, cdma, lte or nr"))
        })
        .transpose()?;
    let area = area
        .map(|a| {
            a.parse::<u32>()
                .map_err(|_| invalid("area", "expected a number"))
        })
        .transpose()?;
    let cell = cell
        .map(|c| {
            let parsed = match c.strip_prefix("0x").or_else(|| c.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => c.parse::<u64>(),
            };
            // NR cell identities are 36 bits; anything larger is not a cell id.
            parsed
                .ok()
                .filter(|&v| v < (1 << 36))
                .ok_or(invalid("cell", "expected a cell id (decimal or 0x hex)"))
        })
        .transpose()?;
    Ok(CellHint {
        mcc: mcc
            .parse()
            .map_err(|_| invalid("mcc", "expected 3 digits"))?,
        mnc: mnc
            .parse()
            .map_err(|_| invalid("mnc", "expected 2 or 3 digits"))?,
        mnc_digits: mnc.len() as u8,
        radio,
        area,
        cell,
    })
}

/// Parses a `Cell-Hint` header value.
///
/// # Errors
/// The field and the reason.
pub fn parse_cell(s: &str) -> Result<CellHint, HintError> {
    let [mcc, mnc, radio, area, cell] = params(s, ["mcc", "mnc", "radio", "area", "cell"])?;
    check_cell(
        mcc.ok_or(HintError::Missing("mcc"))?,
        mnc.ok_or(HintError::Missing("mnc"))?,
        radio,
        area,
        cell,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_370_000;

    #[test]
    fn fix_times_far_in_the_past_are_stale_not_wrapped() {
        let limits = GpsLimits::default();
        for ts in [
            "-9223372036854775807",
            "-9223372036854775808",
            "-0000009223372036854775807",
        ] {
            let h = format!("gps=40,1; acc=2; ts={ts}");
            assert!(
                matches!(
                    parse_gps(&h, NOW, &limits),
                    Err(HintError::Invalid { field: "ts", .. })
                ),
                "{h}: {:?}",
                parse_gps(&h, NOW, &limits)
            );
        }
        let far_future = "gps=40,1; acc=2; ts=9223372036854775807";
        assert!(parse_gps(far_future, NOW, &limits).is_err());
        assert!(parse_gps(far_future, i64::MAX, &limits).is_ok());
    }

    #[test]
    fn fix_kind_from_src_with_its_own_accuracy_limit() {
        let limits = GpsLimits {
            max_accuracy_m: 100.0,
            max_wifi_accuracy_m: 2_000.0,
            ..GpsLimits::default()
        };
        let kind = |h: &str| parse_gps(h, NOW, &limits).map(|g| g.kind);
        assert_eq!(kind("gps=40,1; acc=50; ts=1764370000"), Ok(FixKind::Gps));
        assert_eq!(
            kind("gps=40,1; acc=50; ts=1764370000; src=gps"),
            Ok(FixKind::Gps)
        );
        assert_eq!(
            kind("gps=40,1; acc=50; ts=1764370000; SRC=WiFi"),
            Ok(FixKind::Wifi)
        );
        // The WiFi limit applies to WiFi fixes only.
        assert_eq!(
            kind("gps=40,1; acc=1500; ts=1764370000; src=wifi"),
            Ok(FixKind::Wifi)
        );
        assert!(matches!(
            kind("gps=40,1; acc=1500; ts=1764370000"),
            Err(HintError::Invalid { field: "acc", .. })
        ));
        assert!(matches!(
            kind("gps=40,1; acc=2500; ts=1764370000; src=wifi"),
            Err(HintError::Invalid { field: "acc", .. })
        ));
        assert!(matches!(
            kind("gps=40,1; acc=5; ts=1764370000; src=cell"),
            Err(HintError::Invalid { field: "src", .. })
        ));
        assert_eq!(
            kind("gps=40,1; acc=5; ts=1764370000; src=wifi; src=gps"),
            Err(HintError::Repeated("src"))
        );
    }

    /// `trim` and `pieces` are `str::trim` (on ASCII) and `str::split` on every string of three
    /// characters from an alphabet of whitespace, separators and text (and a few longer ones).
    #[test]
    fn byte_helpers_agree_with_str() {
        let alphabet = [
            " ", "\t", "\n", "\u{b}", "\u{c}", "\r", ";", "=", "a", "\u{a0}", "\u{e9}",
        ];
        let mut strings = vec![String::new(), " gps=1,2 ; acc=3;;ts=4 ".to_owned()];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    strings.push(format!("{a}{b}{c}"));
                }
            }
        }
        for s in &strings {
            // `params` takes ASCII text only (Unicode whitespace such as U+00A0 stays).
            if s.is_ascii() {
                assert_eq!(trim(s), s.trim(), "{s:?}");
            }
            assert_eq!(
                pieces(s, b';').collect::<Vec<_>>(),
                s.split(';').collect::<Vec<_>>(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn good_gps() {
        let h = parse_gps(
            " gps=48.2082,16.3738 ; ACC=25;ts=1764369990;future=1",
            NOW,
            &GpsLimits::default(),
        )
        .expect("valid");
        assert_eq!(h.point.lon_lat(), [16.3738, 48.2082]);
        assert_eq!(h.accuracy_m, 25.0);
    }

    #[test]
    fn bad_gps_names_the_field_not_the_value() {
        let l = GpsLimits::default();
        let cases = [
            ("gps=91,0;acc=5;ts=1764370000", "gps: latitude"),
            ("gps=NaN,0;acc=5;ts=1764370000", "gps: not a finite"),
            ("gps=inf,0;acc=5;ts=1764370000", "gps: not a finite"),
            ("gps=1;acc=5;ts=1764370000", "gps: expected LAT,LON"),
            ("gps=1,2;acc=0;ts=1764370000", "acc: must be positive"),
            ("gps=1,2;acc=-3;ts=1764370000", "acc: must be positive"),
            (
                "gps=1,2;acc=90000;ts=1764370000",
                "acc: accuracy radius too large",
            ),
            ("gps=1,2;acc=5;ts=1764369000", "ts: fix is stale"),
            (
                "gps=1,2;acc=5;ts=1764379000",
                "ts: fix time is in the future",
            ),
            ("gps=1,2;acc=5", "ts: missing"),
            ("gps=1,2;gps=3,4;acc=5;ts=1764370000", "gps: given twice"),
            ("garbage", "hint is not a list of key=value"),
            (
                "gps=1,2;acc=5;ts=1764370000;é=1",
                "hint is not a list of key=value",
            ),
        ];
        for (input, want) in cases {
            let e = parse_gps(input, NOW, &l).expect_err(input).to_string();
            let want = want.replace("must be positive", "must be a positive");
            assert!(e.starts_with(&want), "{input}: {e}");
            assert!(!e.contains("48.") && !e.contains("1764"), "{e}");
        }
        assert_eq!(
            parse_gps(&"x".repeat(300), NOW, &l),
            Err(HintError::TooLong)
        );
    }

    #[test]
    fn size_limits() {
        let l = GpsLimits::default();
        // MAX_HINT_PARAMS parameters are read (unknown ones too); one more is refused.
        let extra: Vec<String> = (0..MAX_HINT_PARAMS - 3)
            .map(|i| format!("x{i}=1"))
            .collect();
        let full = format!("gps=1,2;acc=5;ts={NOW};{}", extra.join(";"));
        assert!(parse_gps(&full, NOW, &l).is_ok());
        assert_eq!(
            parse_gps(&format!("{full};y=1"), NOW, &l),
            Err(HintError::TooLong)
        );
        // Empty parameters do not count.
        assert!(parse_gps(&format!(";;{full};;;"), NOW, &l).is_ok());
        // MAX_HINT_LEN bytes are read; one more is refused, before any parsing.
        let pad = |s: &str, n: usize| format!("{s};pad={}", "0".repeat(n - s.len() - 5));
        let at_limit = pad("mcc=262;mnc=01", MAX_HINT_LEN);
        assert_eq!(at_limit.len(), MAX_HINT_LEN);
        assert!(parse_cell(&at_limit).is_ok());
        assert_eq!(
            parse_cell(&pad("mcc=262;mnc=01", MAX_HINT_LEN + 1)),
            Err(HintError::TooLong)
        );
        assert_eq!(HintError::TooLong.to_string(), "hint too long");
    }

    #[test]
    fn cells() {
        let c =
            parse_cell("mcc=262; mnc=01; radio=LTE; area=47110; cell=0x1A2B3C4").expect("valid");
        assert_eq!(
            (c.mcc, c.mnc, c.mnc_digits, c.radio, c.area, c.cell),
            (262, 1, 2, Some(Radio::Lte), Some(47110), Some(0x1A2B3C4))
        );
        let c = parse_cell("mcc=310;mnc=260").expect("valid");
        assert_eq!((c.mnc, c.mnc_digits, c.cell), (260, 3, None));
        for (input, want) in [
            ("mcc=26;mnc=01", "mcc: expected 3 digits"),
            ("mcc=262;mnc=1", "mnc: expected 2 or 3"),
            ("mcc=262", "mnc: missing"),
            ("mcc=262;mnc=01;radio=6g", "radio:"),
            ("mcc=262;mnc=01;cell=0xZZ", "cell:"),
            ("mcc=262;mnc=01;cell=99999999999999", "cell:"),
            ("mcc=262;mnc=01;area=-1", "area:"),
        ] {
            let e = parse_cell(input).expect_err(input).to_string();
            assert!(e.starts_with(want), "{input}: {e}");
        }
    }
}

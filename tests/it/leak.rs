//! Minimal retention, proven on the real binary: raw location data goes in, and nothing
//! that leaves the process holds it.
//!
//! The test runs `regiongate serve` (the built binary, `RUST_LOG=trace`) twice on a data
//! directory assembled from `regions/` plus a GeoIP2-City database and an OpenCellID
//! `cells.csv` written here:
//!
//! | run | `log_format` | `log_client_ip` |
//! |-----|--------------|-----------------|
//! | 1   | json         | false           |
//! | 2   | text         | true            |
//!
//! Each run drives well over 1,000 requests through every front door (preflight GET and
//! POST, territory, nginx- and Envoy-style auth subrequests, the reverse proxy with allowed,
//! denied and unmatched paths, invalid requests of every kind) while the data is reloaded
//! through `POST /admin/reload` and through the directory watcher. Client addresses arrive in
//! `X-Forwarded-For` from the trusted loopback proxy; GPS fixes, cells and WiFi access points
//! in `Geo-Hint` / `Cell-Hint` / `Wifi-Hint` headers and in POST bodies. Then Envoy's gRPC
//! door (`grpc_listen`, ext_authz `Check`) gets the planted clients as the attribute context's
//! `source.address` and the hints (a bad one too) as its headers; its answers and statuses are
//! searched like the HTTP responses.
//!
//! Everything the process emits is then searched for every planted value in every textual
//! form it could take: stdout, stderr, every response (status, headers, body), `/metrics`,
//! `/admin/snapshot`, the admin reload answers, every file of the report directory, and all
//! bytes the origin received (raw, as read from the socket). The search ignores case (upper
//! and lower case forms are both covered) and ANSI colour codes. Short numeric forms must stand
//! alone (no digit, or hex digit, right next to them) so that they do not match inside
//! timestamps, hashes or longer numbers; a form that starts at the seconds of an RFC 3339
//! timestamp (`2026-12-07T23:34:50.110922Z` holds `50.110922`) is the clock, not a coordinate.
//!
//! * IPv4: dotted, zero-padded, reversed (in-addr.arpa order), as a 32-bit integer and in hex;
//!   the /24 prefix followed by anything but `0/24`.
//! * IPv6: compressed, fully expanded with and without leading zeros, compressed with leading
//!   zeros, the /64 prefix, the interface identifier, ip6.arpa nibbles, percent-encoded; the
//!   /48 prefix followed by anything but `:/48`.
//! * IPv4-mapped IPv6: `::ffff:a.b.c.d`, `::ffff:hhhh:hhhh` (with and without leading zeros,
//!   any expansion of the leading zeros), and the embedded IPv4 in all the IPv4 forms.
//! * Coordinates (the hints, the points of the IP records and the cell's point): 2 to all
//!   decimals, truncated and rounded (decimal and binary rounding), the f32 value of the cell
//!   database widened to f64, with the sign for negative values (a form preceded by any
//!   non-digit matches, so `+47.61…` and `-47.61…` are found by the unsigned form too), and as
//!   E6/E7 integers.
//! * Cell ids (19283746 = 0x1263F22, the cell in `cells.csv`; 0x1264E22 = 19287586; a 36-bit
//!   NR cell): decimal and hex (with and without `0x`, with and without leading zeros, any
//!   case); the area code 64711 (five digits above the ephemeral port range, so that no port,
//!   counter or timing in the output can be it by chance), decimal and hex.
//! * BSSIDs (the access points of `wifi/aps.csv`, and a locally administered one sent with
//!   them): with colons, dashes, Cisco dots, bare, as the 48-bit integer in hex and decimal,
//!   upper and lower case; the access points' positions and the position regiongate derives
//!   from them, as coordinates.
//!
//! Zero hits are required, with two exceptions:
//!
//! * With `log_client_ip = true` the truncated networks (`81.23.157.0/24`,
//!   `2a02:8071:5d94::/48`, ...) must appear in the logs (stderr), and nowhere else.
//! * The proxy legitimately tells the origin it fronts who the client is: the origin's
//!   `X-Forwarded-For` and `Forwarded` request header lines may hold the client address (they
//!   are checked for coordinates and cell ids only). `Geo-Hint`, `Cell-Hint`, coordinates or
//!   cell ids reaching the origin anywhere are a leak.
//!
//! The test can fail: the same search must find every planted value in the log of the
//! requests the test sent and in a fabricated line of disguised forms, the origin's forwarding
//! headers must hold the planted addresses, the evidence must have been used (answers with
//! source `gps`, `wifi`, `cell` and `ip`), and at least 1,000 decision log lines must exist per run.

use crate::util::{now_unix, request, send_streaming, within};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mmdb_writer::{Value, Writer};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

// ---- Planted values -----------------------------------------------------------------------

/// DE (Konstanz record, 10 km: its circle reaches CH).
const IP_A: &str = "81.23.157.201";
/// DE (Berlin record).
const IP_B: &str = "91.64.178.33";
/// FR (Lyon record).
const IP_C: &str = "90.112.241.77";
/// DE (Hamburg record): no zero groups.
const V6_A: &str = "2a02:8071:5d94:9e00:1234:5678:9abc:def0";
/// DE (Frankfurt record): zero groups and short groups, so the forms differ.
const V6_B: &str = "2a01:c22:b04c:9700::2b:a9";
/// IPv4-mapped, in IP_A's /24.
const MAPPED_A: &str = "::ffff:81.23.157.202";
/// IPv4-mapped, in a /24 of its own (Munich record): its network in the log proves the mapped
/// address is logged as IPv4.
const MAPPED_B: &str = "::ffff:46.142.77.19";
/// The client addresses, in the order requests rotate through them.
const CLIENTS: [&str; 7] = [IP_A, IP_B, IP_C, V6_A, V6_B, MAPPED_A, MAPPED_B];

/// GPS fixes sent as hints: in CH waters of Lake Constance (inside LAKE_CONSTANCE), Berlin,
/// Sydney (negative latitude).
const GPS: [(&str, &str); 3] = [
    ("47.61723845", "9.31289467"),
    ("52.5162738", "13.3777013"),
    ("-33.856784", "151.215297"),
];
/// Out-of-range coordinates sent in invalid hints (planted values of their own).
const BAD_LAT: &str = "147.61723845";
const BAD_LON: &str = "-189.31289467";

/// Records of the IP database: network, country, point (planted: derived location data).
const IP_RECORDS: [(&str, &str, &str, &str, u16); 6] = [
    ("81.23.157.0/24", "DE", "47.66338514", "9.17543672", 10),
    ("91.64.178.0/24", "DE", "52.52437125", "13.41053473", 5),
    ("90.112.241.0/24", "FR", "45.76404127", "4.83565931", 10),
    ("46.142.77.0/24", "DE", "48.13743285", "11.57549347", 5),
    ("2a02:8071::/32", "DE", "53.55108241", "9.99368274", 20),
    ("2a01:c22::/32", "DE", "50.11092193", "8.68212718", 10),
];

/// The LTE cell in `cells.csv` (mcc 262, mnc 01, area 64711) and its point.
const CELL_LTE: u64 = 19_283_746; // 0x1263F22
/// 0x1264E22 (19287586): another LTE cell of the same network, unknown to the database.
const CELL_LTE2: u64 = 0x126_4E22;
/// An NR cell (36 bits) that the cell database does not know.
const CELL_NR: u64 = 0x8_F3A6_1C27;
const AREA: &str = "64711";
const CELL_POINT: (&str, &str) = ("47.65487", "9.47512");

/// Access points of `wifi/aps.csv` near Berlin (RFC 7042 documentation addresses): address,
/// latitude, longitude. The first three are sent in `Wifi-Hint` headers and POST bodies, the
/// fourth never (its address and position are derived data only).
const APS: [(&str, &str, &str); 4] = [
    ("00:00:5e:00:53:a1", "52.50743218", "13.39012877"),
    ("00:00:5e:00:53:b2", "52.50761934", "13.39055641"),
    ("00:00:5e:00:53:c3", "52.50729457", "13.39071295"),
    ("00:00:5e:00:53:d4", "52.50752116", "13.38988432"),
];
/// A locally administered address sent with them (dropped, never looked up).
const AP_LOCAL: &str = "02:00:5e:00:53:e5";

/// Tracks of `regions/licenses/sample.toml`: world stream, DACH only, Lake Constance only,
/// EEA premium/free, taken down, no deal, a second world track, unknown.
const TRACKS: [&str; 8] = [
    "QZNW52400001",
    "QZNW52400010",
    "QZHL52500003",
    "QZHL52500001",
    "QZNW52400003",
    "QZXX52600001",
    "QZNW52400002",
    "NOPE00000001",
];

/// Requests per run before the traffic may stop (it goes on, paced, until the reloads are done).
const MIN_REQUESTS: usize = 1_100;
/// Requests per run at most (keeps every counter far from the 4-digit planted area code).
const MAX_REQUESTS: usize = 3_800;
/// Concurrent clients.
const WORKERS: usize = 4;
/// The admin reloads start once this many requests have been started (well below
/// MIN_REQUESTS: the traffic is at full rate).
const RELOAD_AFTER: usize = 150;

// ---- The data directory -------------------------------------------------------------------

fn city(country: &str, lat: &str, lon: &str, acc_km: u16) -> Value {
    let num = |s: &str| Value::Double(s.parse().expect("coordinate"));
    Value::map([
        ("country", Value::map([("iso_code", Value::from(country))])),
        (
            "location",
            Value::map([
                ("latitude", num(lat)),
                ("longitude", num(lon)),
                ("accuracy_radius", Value::U16(acc_km)),
            ]),
        ),
    ])
}

fn ip_db() -> Vec<u8> {
    let mut w = Writer::new("GeoIP2-City");
    for (net, cc, lat, lon, acc) in IP_RECORDS {
        w.insert_value(
            net.parse::<ipnet::IpNet>().expect("net"),
            city(cc, lat, lon, acc),
        )
        .expect("insert");
    }
    w.to_bytes().expect("mmdb bytes")
}

/// `regions/` pieces plus the planted IP and cell databases.
fn write_regions(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    for d in ["custom", "licenses", "ip"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    for f in [
        "countries.geojson.gz",
        "groups.toml",
        "mcc-mnc.csv",
        "custom/lake-constance.geojson",
        "licenses/sample.toml",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    std::fs::write(dir.join("ip/geoip.mmdb"), ip_db()).expect("write mmdb");
    let cells = format!(
        "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n\
         LTE,262,1,{AREA},{CELL_LTE},,{},{},1200,17,1,1700000000,1760000000,0\n",
        CELL_POINT.1, CELL_POINT.0
    );
    std::fs::write(dir.join("cells.csv"), cells).expect("write cells.csv");
    std::fs::create_dir_all(dir.join("wifi")).expect("mkdir wifi");
    std::fs::write(dir.join("wifi/aps.csv"), aps_csv()).expect("write aps.csv");
}

fn aps_csv() -> String {
    let mut csv = "bssid,lat,lon,range_m\n".to_owned();
    for (b, lat, lon) in APS {
        csv.push_str(&format!("{b},{lat},{lon},80\n"));
    }
    csv
}

/// The position regiongate derives from the sent access points (every hint form has the same
/// addresses and signal strengths), as (lat, lon) text: planted derived data.
fn wifi_estimate() -> (String, String) {
    use regiongate::locate::wifi;
    let db = wifi::ApDb::load("aps.csv", aps_csv().as_bytes()).expect("aps.csv");
    let scan = wifi::parse_wifi_hint(&wifi_hint(0)).expect("hint");
    let fix = wifi::estimate(&db, &scan).expect("three agreeing access points");
    let [lon, lat] = fix.point.lon_lat();
    (format!("{lat}"), format!("{lon}"))
}

// ---- The forms a planted value can take -----------------------------------------------------

/// What must surround a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edge {
    /// Any neighbours (long, unambiguous forms).
    Plain,
    /// No digit on either side.
    Digit,
    /// No digit on the left; anything on the right (the full value followed by more digits
    /// is still the value).
    DigitLeft,
    /// No hex digit on either side.
    Hex,
    /// No hex digit on the left (a prefix).
    HexLeft,
}

/// What kind of datum a form belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A client address (allowed in the origin's forwarding headers).
    Address,
    /// A coordinate, cell id or area code (allowed nowhere).
    Location,
}

#[derive(Clone, Debug)]
struct Form {
    /// The planted value this is a form of.
    value: String,
    /// Which form.
    how: String,
    /// Lower-case text searched for.
    text: String,
    edge: Edge,
    kind: Kind,
    /// Derived data (IP records, the cell database) is never sent, so it is not expected in the
    /// control search of the sent requests.
    derived: bool,
}

fn push(out: &mut Vec<Form>, value: &str, how: &str, text: String, edge: Edge, kind: Kind) {
    let text = text.to_ascii_lowercase();
    if text.len() < 3 || out.iter().any(|f| f.value == value && f.text == text) {
        return;
    }
    out.push(Form {
        value: value.to_owned(),
        how: how.to_owned(),
        text,
        edge,
        kind,
        derived: false,
    });
}

/// Rounds a decimal string (digits only, one '.') half up to `k` decimals.
fn round_decimal(int: &str, frac: &str, k: usize) -> String {
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes().take(k)).collect();
    if frac.as_bytes().get(k).is_some_and(|&d| d >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - k;
    let s = String::from_utf8(digits).expect("digits");
    format!("{}.{}", &s[..split], &s[split..])
}

/// A coordinate at 2 to all decimals, truncated and rounded; `f32` adds the forms of the value
/// as a cell database holds it (f32 widened to f64).
fn coordinate_forms(out: &mut Vec<Form>, text: &str, f32_too: bool) {
    let neg = text.starts_with('-');
    let unsigned = text.trim_start_matches(['-', '+']);
    let value: f64 = unsigned.parse().expect("coordinate");
    let mut sources = vec![unsigned.to_owned()];
    if f32_too {
        sources.push(format!(
            "{}",
            f64::from(unsigned.parse::<f32>().expect("f32"))
        ));
    }
    for src in &sources {
        let (int, frac) = src.split_once('.').expect("a decimal point");
        let max = frac.len().max(2);
        for k in 2..=max.min(12) {
            let full = k >= frac.len();
            let edge = if full { Edge::DigitLeft } else { Edge::Digit };
            let trunc = format!("{int}.{}", &frac[..k.min(frac.len())]);
            let rounded = round_decimal(int, frac, k.min(frac.len()));
            let binary = format!("{:.*}", k, src.parse::<f64>().expect("f64"));
            for (how, t) in [
                ("truncated", trunc),
                ("rounded", rounded),
                ("rounded (binary)", binary),
            ] {
                // Beyond 8 decimals only the source's own digits matter.
                if k > 8 && how != "truncated" {
                    continue;
                }
                push(
                    out,
                    text,
                    &format!("{k} decimals, {how}"),
                    t.clone(),
                    edge,
                    Kind::Location,
                );
                if neg {
                    push(
                        out,
                        text,
                        &format!("{k} decimals, {how}, signed"),
                        format!("-{t}"),
                        edge,
                        Kind::Location,
                    );
                }
            }
        }
    }
    for (how, scale) in [("E6 integer", 1e6), ("E7 integer", 1e7)] {
        let n = (value * scale).round() as i64;
        push(out, text, how, n.to_string(), Edge::Digit, Kind::Location);
    }
}

fn ipv4_forms(out: &mut Vec<Form>, value: &str, v4: Ipv4Addr) {
    let o = v4.octets();
    let n = u32::from(v4);
    let (hi, lo) = (n >> 16, n & 0xffff);
    let forms = [
        ("IPv4 dotted", v4.to_string(), Edge::Digit),
        (
            "IPv4 zero-padded",
            format!("{:03}.{:03}.{:03}.{:03}", o[0], o[1], o[2], o[3]),
            Edge::Digit,
        ),
        (
            "IPv4 reversed (in-addr.arpa)",
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0]),
            Edge::Digit,
        ),
        ("IPv4 as integer", n.to_string(), Edge::Digit),
        ("IPv4 as hex", format!("{n:08x}"), Edge::Hex),
        // `ffff:...` is in every spelling of the mapped address (`::ffff:`, `0:0:0:0:0:ffff:`,
        // `0000:...:ffff:`).
        (
            "IPv4-mapped, hex groups",
            format!("ffff:{hi:x}:{lo:x}"),
            Edge::Plain,
        ),
        (
            "IPv4-mapped, hex groups padded",
            format!("ffff:{hi:04x}:{lo:04x}"),
            Edge::Plain,
        ),
        ("IPv4-mapped, dotted", format!("ffff:{v4}"), Edge::Plain),
    ];
    for (how, text, edge) in forms {
        push(out, value, how, text, edge, Kind::Address);
    }
}

fn ipv6_forms(out: &mut Vec<Form>, value: &str, v6: Ipv6Addr) {
    let s = v6.segments();
    let unpadded: Vec<String> = s.iter().map(|g| format!("{g:x}")).collect();
    let padded: Vec<String> = s.iter().map(|g| format!("{g:04x}")).collect();
    let compressed = v6.to_string();
    let compressed_padded = compressed
        .split("::")
        .map(|half| {
            half.split(':')
                .filter(|g| !g.is_empty())
                .map(|g| format!("{g:0>4}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect::<Vec<_>>()
        .join("::");
    let nibbles: Vec<String> = padded.concat().chars().rev().map(String::from).collect();
    let mut forms = vec![
        ("IPv6 compressed", compressed.clone(), Edge::Plain),
        ("IPv6 expanded", unpadded.join(":"), Edge::Plain),
        (
            "IPv6 expanded, leading zeros",
            padded.join(":"),
            Edge::Plain,
        ),
        (
            "IPv6 compressed, leading zeros",
            compressed_padded,
            Edge::Plain,
        ),
        ("IPv6 /64 prefix", unpadded[..4].join(":"), Edge::Plain),
        (
            "IPv6 /64 prefix, leading zeros",
            padded[..4].join(":"),
            Edge::Plain,
        ),
        ("IPv6 interface id", unpadded[4..].join(":"), Edge::Plain),
        (
            "IPv6 interface id, leading zeros",
            padded[4..].join(":"),
            Edge::Plain,
        ),
        ("IPv6 ip6.arpa nibbles", nibbles.join("."), Edge::Plain),
        (
            "IPv6 percent-encoded",
            compressed.replace(':', "%3a"),
            Edge::Plain,
        ),
    ];
    // The /48 as logged is unpadded; a padded spelling of it is never legitimate.
    if padded[..3] != unpadded[..3] {
        let p = format!("{}:", padded[..3].join(":"));
        forms.push(("IPv6 /48 prefix, leading zeros", p, Edge::HexLeft));
    }
    for (how, text, edge) in forms {
        push(out, value, how, text, edge, Kind::Address);
    }
}

/// A BSSID: with colons, dashes, dots (Cisco), bare, as the 48-bit integer in hex and
/// decimal (case is ignored by the search).
fn bssid_forms(out: &mut Vec<Form>, bssid: &str) {
    let hex: String = bssid.chars().filter(char::is_ascii_hexdigit).collect();
    let pairs: Vec<&str> = (0..6).map(|i| &hex[2 * i..2 * i + 2]).collect();
    let k = Kind::Location;
    push(out, bssid, "colons", pairs.join(":"), Edge::Hex, k);
    push(out, bssid, "dashes", pairs.join("-"), Edge::Hex, k);
    let dotted = format!("{}.{}.{}", &hex[..4], &hex[4..8], &hex[8..]);
    push(out, bssid, "dotted", dotted, Edge::Hex, k);
    push(out, bssid, "bare", hex.clone(), Edge::Hex, k);
    let n = u64::from_str_radix(&hex, 16).expect("hex");
    push(out, bssid, "integer, hex", format!("{n:x}"), Edge::Hex, k);
    push(out, bssid, "integer", n.to_string(), Edge::Digit, k);
}

fn cell_forms(out: &mut Vec<Form>, cell: u64) {
    let value = format!("cell {cell} (0x{cell:X})");
    let k = Kind::Location;
    push(out, &value, "decimal", cell.to_string(), Edge::Digit, k);
    push(out, &value, "hex", format!("{cell:x}"), Edge::Hex, k);
    for w in 8..=10 {
        push(
            out,
            &value,
            "hex, zero-padded",
            format!("{cell:0w$x}"),
            Edge::Hex,
            k,
        );
    }
}

/// Every form of every planted value.
fn planted_forms() -> Vec<Form> {
    let mut out = Vec::new();
    for c in CLIENTS {
        match c.parse::<IpAddr>().expect("planted address") {
            IpAddr::V4(v4) => ipv4_forms(&mut out, c, v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    push(
                        &mut out,
                        c,
                        "IPv4-mapped as sent",
                        c.to_owned(),
                        Edge::Plain,
                        Kind::Address,
                    );
                    ipv4_forms(&mut out, c, v4);
                }
                None => ipv6_forms(&mut out, c, v6),
            },
        }
    }
    for (lat, lon) in GPS {
        coordinate_forms(&mut out, lat, false);
        coordinate_forms(&mut out, lon, false);
    }
    coordinate_forms(&mut out, BAD_LAT, false);
    coordinate_forms(&mut out, BAD_LON, false);
    for c in [CELL_LTE, CELL_LTE2, CELL_NR] {
        cell_forms(&mut out, c);
    }
    // The area code is searched bare (any neighbours but hex digits) and in hex. It has five
    // digits above the ephemeral port range, so that no port, counter or timing can be it.
    let area: u32 = AREA.parse().expect("area");
    for (how, text) in [("decimal", AREA.to_owned()), ("hex", format!("{area:x}"))] {
        push(&mut out, "area", how, text, Edge::Hex, Kind::Location);
    }
    for (b, _, _) in &APS[..3] {
        bssid_forms(&mut out, b);
    }
    bssid_forms(&mut out, AP_LOCAL);
    let sent = out.len();
    bssid_forms(&mut out, APS[3].0);
    for (_, lat, lon) in APS {
        coordinate_forms(&mut out, lat, false);
        coordinate_forms(&mut out, lon, false);
    }
    let (lat, lon) = wifi_estimate();
    coordinate_forms(&mut out, &lat, false);
    coordinate_forms(&mut out, &lon, false);
    for (_, _, lat, lon, _) in IP_RECORDS {
        coordinate_forms(&mut out, lat, false);
        coordinate_forms(&mut out, lon, false);
    }
    coordinate_forms(&mut out, CELL_POINT.0, true);
    coordinate_forms(&mut out, CELL_POINT.1, true);
    for f in &mut out[sent..] {
        f.derived = true;
    }
    out
}

/// The networks that may be logged with `log_client_ip = true`, and the prefix every
/// occurrence of which must continue as that network.
fn networks() -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for c in CLIENTS {
        let ip = regiongate::privacy::canonical_ip(c.parse().expect("planted address"));
        let (net, prefix, rest) = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                let p = format!("{}.{}.{}.", o[0], o[1], o[2]);
                (format!("{p}0/24"), p, "0/24".to_owned())
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let p = format!("{:x}:{:x}:{:x}:", s[0], s[1], s[2]);
                (format!("{p}:/48"), p, ":/48".to_owned())
            }
        };
        if !out.iter().any(|n| n.0 == net) {
            out.push((net, prefix, rest));
        }
    }
    out
}

// ---- Searching ------------------------------------------------------------------------------

/// Where a text came from, which decides the rules applied to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// stdout and stderr of the process.
    Logs,
    /// Responses of the public and admin listeners, report files.
    Output,
    /// What the origin received, forwarding header lines excepted.
    Origin,
    /// The origin's `X-Forwarded-For` / `Forwarded` lines: addresses allowed.
    OriginForwarding,
}

struct Artifact {
    name: String,
    /// ANSI escapes removed, ASCII lower-cased.
    text: String,
    scope: Scope,
    /// For artifacts made of many texts (the responses): where each starts, and what it is.
    parts: Vec<(usize, String)>,
}

fn artifact(name: impl Into<String>, raw: &str, scope: Scope) -> Artifact {
    Artifact {
        name: name.into(),
        text: strip_ansi(raw).to_ascii_lowercase(),
        scope,
        parts: Vec::new(),
    }
}

/// Many texts searched as one (cheaper than one search each), each found again by offset.
fn grouped(name: impl Into<String>, items: &[(String, String)], scope: Scope) -> Artifact {
    let mut text = String::new();
    let mut parts = Vec::new();
    for (label, raw) in items {
        parts.push((text.len(), label.clone()));
        text.push_str(&strip_ansi(raw).to_ascii_lowercase());
        text.push_str("\n\n");
    }
    Artifact {
        name: name.into(),
        text,
        scope,
        parts,
    }
}

impl Artifact {
    /// The part of a grouped artifact (which request's response) a position is in.
    fn place(&self, pos: usize) -> String {
        match self.parts.partition_point(|(start, _)| *start <= pos) {
            0 => "-".to_owned(),
            i => self.parts[i - 1].1.clone(),
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn edge_ok(text: &[u8], start: usize, end: usize, edge: Edge) -> bool {
    let before = start.checked_sub(1).map(|i| text[i]);
    let after = text.get(end).copied();
    let digit = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit());
    let hex = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
    match edge {
        Edge::Plain => true,
        Edge::Digit => !digit(before) && !digit(after),
        Edge::DigitLeft => !digit(before),
        Edge::Hex => !hex(before) && !hex(after),
        Edge::HexLeft => !hex(before),
    }
}

/// Whether `start` is where the seconds of an RFC 3339 timestamp begin: the text before it
/// is `dddd-dd-ddThh:mm:` (any case, `T` or a space).
fn at_timestamp_seconds(text: &[u8], start: usize) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:";
    let Some(from) = start.checked_sub(SHAPE.len()) else {
        return false;
    };
    text[from..start].iter().zip(SHAPE).all(|(&b, &s)| match s {
        b'd' => b.is_ascii_digit(),
        b'T' => b == b'T' || b == b't' || b == b' ',
        _ => b == s,
    })
}

/// Positions of `needle` in `hay` with the edge rule, leaving out the seconds of timestamps.
fn find_all(hay: &str, needle: &str, edge: Edge) -> Vec<usize> {
    let bytes = hay.as_bytes();
    hay.match_indices(needle)
        .map(|(i, _)| i)
        .filter(|&i| edge_ok(bytes, i, i + needle.len(), edge) && !at_timestamp_seconds(bytes, i))
        .collect()
}

/// The line around a position, shortened.
fn context(text: &str, pos: usize) -> String {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let (mut a, mut b) = (start.max(pos.saturating_sub(160)), end.min(pos + 160));
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    while !text.is_char_boundary(b) {
        b += 1;
    }
    text[a..b].to_owned()
}

#[derive(Debug)]
struct Hit {
    run: &'static str,
    artifact: String,
    /// For grouped artifacts, the request whose response it is.
    place: String,
    value: String,
    how: String,
    form: String,
    context: String,
}

/// Searches the artifacts of one run. `net_logs_allowed`: `log_client_ip = true`, so the
/// networks may appear in the logs.
fn search(
    run: &'static str,
    arts: &[Artifact],
    forms: &[Form],
    net_logs_allowed: bool,
) -> Vec<Hit> {
    let nets = networks();
    let mut hits = Vec::new();
    for a in arts {
        let mut seen = std::collections::HashSet::new();
        for f in forms {
            if a.scope == Scope::OriginForwarding && f.kind == Kind::Address {
                continue;
            }
            for pos in find_all(&a.text, &f.text, f.edge) {
                // One hit per value and position (forms overlap).
                if seen.insert((f.value.clone(), pos)) {
                    hits.push(Hit {
                        run,
                        artifact: a.name.clone(),
                        place: a.place(pos),
                        value: f.value.clone(),
                        how: f.how.clone(),
                        form: f.text.clone(),
                        context: context(&a.text, pos),
                    });
                }
            }
        }
        if a.scope == Scope::OriginForwarding {
            continue;
        }
        for (net, prefix, rest) in &nets {
            let edge = if prefix.contains(':') {
                Edge::HexLeft
            } else {
                Edge::DigitLeft
            };
            for pos in find_all(&a.text, prefix, edge) {
                let end = pos + prefix.len();
                let is_net = a.text[end..].starts_with(rest.as_str())
                    && edge_ok(a.text.as_bytes(), pos, end + rest.len(), Edge::Digit);
                let allowed = is_net && net_logs_allowed && a.scope == Scope::Logs;
                if !allowed && seen.insert((net.clone(), pos)) {
                    hits.push(Hit {
                        run,
                        artifact: a.name.clone(),
                        place: a.place(pos),
                        value: format!("network {net}"),
                        how: if is_net {
                            "the truncated network outside the allowed place".into()
                        } else {
                            "the network prefix continued (more than the network)".into()
                        },
                        form: prefix.clone(),
                        context: context(&a.text, pos),
                    });
                }
            }
        }
    }
    hits
}

// ---- The origin: records every byte it receives -------------------------------------------

/// A socket that keeps a copy of every byte read from it.
struct Tee {
    inner: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = buf.filled()[before..].to_vec();
            self.log.lock().expect("lock").extend_from_slice(&new);
        }
        r
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[derive(Default)]
struct OriginLog {
    /// Raw bytes per connection.
    connections: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    /// Request line and headers of every request, as hyper parsed them.
    requests: Mutex<Vec<String>>,
}

struct Origin {
    addr: SocketAddr,
    log: Arc<OriginLog>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let log = Arc::new(OriginLog::default());
        let l2 = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let raw = Arc::new(Mutex::new(Vec::new()));
                l2.connections.lock().expect("lock").push(raw.clone());
                let l3 = l2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let l4 = l3.clone();
                        async move {
                            let mut line =
                                format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
                            for (k, v) in req.headers() {
                                line.push_str(&format!(
                                    "{k}: {}\n",
                                    String::from_utf8_lossy(v.as_bytes())
                                ));
                            }
                            l4.requests.lock().expect("lock").push(line);
                            let path = req.uri().path().to_owned();
                            let _ = req.into_body().collect().await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(format!("origin:{path}")),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(Tee { inner: s, log: raw }), svc)
                        .await;
                });
            }
        });
        Origin { addr, log, task }
    }

    /// Everything received, split into forwarding header lines and the rest.
    fn received(&self) -> (String, String) {
        let mut rest = String::new();
        let mut fwd = String::new();
        for c in self.log.connections.lock().expect("lock").iter() {
            let bytes = c.lock().expect("lock").clone();
            for line in String::from_utf8_lossy(&bytes).split("\r\n") {
                let l = line.to_ascii_lowercase();
                if l.starts_with("x-forwarded-for:") || l.starts_with("forwarded:") {
                    fwd.push_str(line);
                    fwd.push('\n');
                } else {
                    rest.push_str(line);
                    rest.push('\n');
                }
            }
        }
        (rest, fwd)
    }
}

// ---- Requests -------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Spec {
    kind: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Spec {
    fn new(kind: &'static str, method: &'static str, path: impl Into<String>) -> Spec {
        Spec {
            kind,
            method,
            path: path.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }
    fn h(mut self, k: &'static str, v: impl Into<String>) -> Spec {
        self.headers.push((k, v.into()));
        self
    }
    fn body(mut self, b: impl Into<String>) -> Spec {
        self.body = b.into();
        self
    }
    /// The request as text (for the control search).
    fn render(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.path);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push('\n');
        s.push_str(&self.body);
        s.push('\n');
        s
    }
}

/// An `X-Forwarded-For` value naming a planted client, in a few shapes.
fn xff(i: usize) -> String {
    let c = CLIENTS[i % CLIENTS.len()];
    match (i / CLIENTS.len()) % 4 {
        0 => c.to_owned(),
        // An untrusted hop on the left is ignored; the client is the rightmost untrusted one.
        1 => format!("198.51.100.23, {c}"),
        // A trusted hop on the right is skipped.
        2 => format!("{c}, 127.0.0.1"),
        _ if c.contains(':') => format!("[{}]:4433", c.to_ascii_uppercase()),
        _ => format!("{c}:4433"),
    }
}

fn geo(i: usize, now: i64) -> String {
    let (lat, lon) = GPS[i % GPS.len()];
    match (i / GPS.len()) % 3 {
        0 => format!("gps={lat},{lon}; acc=25; ts={now}"),
        1 => format!("GPS= {lat} , {lon} ;ACC=12.5;ts={}", now - 20),
        _ => format!("ts={now}; acc=40; gps={lat},{lon}; v=2"),
    }
}

fn cell(i: usize) -> String {
    match i % 5 {
        0 => format!("mcc=262; mnc=01; radio=lte; area={AREA}; cell={CELL_LTE}"),
        1 => format!("mcc=262; mnc=01; radio=LTE; area={AREA}; cell=0x{CELL_LTE:X}"),
        2 => format!("mcc=262;mnc=01;radio=lte;area={AREA};cell=0x{CELL_LTE:x}"),
        3 => format!("mcc=262; mnc=01; radio=lte; area={AREA}; cell=0x{CELL_LTE2:X}"),
        _ => format!("mcc=262; mnc=01; radio=nr; area={AREA}; cell=0x{CELL_NR:X}"),
    }
}

/// A `Wifi-Hint` in one of several textual forms, always the same three access points and
/// signal strengths (and, in some forms, a locally administered address).
fn wifi_hint(i: usize) -> String {
    let [a, b, c] = [APS[0].0, APS[1].0, APS[2].0];
    let bare = |x: &str| x.replace(':', "");
    let dashes = |x: &str| x.replace(':', "-");
    match i % 4 {
        0 => format!("{a}@-55, {b}@-63, {c}@-70"),
        1 => format!(
            "{}@-55,{}@-63,{}@-70",
            bare(a).to_uppercase(),
            bare(b),
            bare(c)
        ),
        2 => format!(
            "{} @ -55 , {}@-63, {AP_LOCAL}@-40, {}@-70",
            dashes(a),
            b.to_uppercase(),
            bare(c)
        ),
        _ => format!(
            "{}@-55, {}@-63, {}@-70",
            dashes(a).to_uppercase(),
            dashes(b),
            c.to_uppercase()
        ),
    }
}

fn body_wifi(i: usize) -> serde_json::Value {
    let forms: Vec<String> = APS[..3]
        .iter()
        .map(|(b, _, _)| {
            if i.is_multiple_of(2) {
                b.to_uppercase()
            } else {
                b.replace(':', "")
            }
        })
        .collect();
    serde_json::json!([
        {"bssid": forms[0], "rssi": -55},
        {"bssid": forms[1], "rssi": -63},
        {"bssid": AP_LOCAL, "rssi": -40},
        {"bssid": forms[2], "rssi": -70},
    ])
}

fn track(i: usize) -> &'static str {
    TRACKS[i % TRACKS.len()]
}

fn body_gps(i: usize, now: i64) -> serde_json::Value {
    let (lat, lon) = GPS[i % GPS.len()];
    let n = |s: &str| s.parse::<f64>().expect("coordinate");
    serde_json::json!({"lat": n(lat), "lon": n(lon), "acc": 25, "ts": now})
}

fn body_cell(i: usize) -> serde_json::Value {
    let c = if i.is_multiple_of(2) {
        CELL_LTE.to_string()
    } else {
        format!("0x{CELL_LTE:x}")
    };
    let area: u32 = AREA.parse().expect("area");
    serde_json::json!({"mcc": "262", "mnc": "01", "radio": "lte", "area": area, "cell": c})
}

/// Requests that fail validation (or whose bad hints a CDN door ignores), all with planted
/// values in them.
fn invalid(j: usize, now: i64) -> Spec {
    let (lat, lon) = GPS[0];
    let play = format!("/v1/tracks/{}/playability", TRACKS[0]);
    let post = "/v1/playability";
    let tracks = serde_json::json!(["QZNW52400001", "QZNW52400010"]);
    let x = xff(j);
    match j % 30 {
        0 => Spec::new("bad geo-hint: latitude out of range", "GET", &play)
            .h("geo-hint", format!("gps={BAD_LAT},{lon}; acc=25; ts={now}"))
            .h("x-forwarded-for", x),
        1 => Spec::new("bad geo-hint: longitude out of range", "GET", &play)
            .h("geo-hint", format!("gps={lat},{BAD_LON}; acc=25; ts={now}")),
        2 => Spec::new("bad geo-hint: stale", "GET", &play)
            .h("geo-hint", format!("gps={lat},{lon}; acc=25; ts={}", now - 3600))
            .h("x-forwarded-for", x),
        3 => Spec::new("bad geo-hint: future", "GET", &play)
            .h("geo-hint", format!("gps={lat},{lon}; acc=25; ts={}", now + 3600)),
        4 => Spec::new("bad cell-hint: cell id", "GET", &play).h(
            "cell-hint",
            format!("mcc=262; mnc=01; radio=lte; area={AREA}; cell=0x{CELL_LTE:X}Q"),
        ),
        5 => Spec::new("bad cell-hint: cell id too large", "GET", &play).h(
            "cell-hint",
            format!("mcc=262; mnc=01; radio=lte; area={AREA}; cell={CELL_LTE}{CELL_LTE}"),
        ),
        6 => Spec::new("bad geo-hint: syntax", "GET", &play)
            .h("geo-hint", format!("gps={lat};{lon}; acc=25; ts={now}")),
        7 => Spec::new("bad geo-hint: repeated header", "GET", &play)
            .h("geo-hint", geo(j, now))
            .h("geo-hint", geo(j + 1, now)),
        8 => Spec::new("malformed JSON: latitude as a string", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"gps":{{"lat":"{lat}","lon":{lon},"acc":25,"ts":{now}}}}}}}"#
        )),
        9 => Spec::new("malformed JSON: cell id as a number", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"cell":{{"mcc":"262","mnc":"01","radio":"lte","area":{AREA},"cell":{CELL_LTE}}}}}}}"#
        )),
        10 => Spec::new("malformed JSON: area as a string", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"cell":{{"mcc":"262","mnc":"01","area":"{AREA}","cell":"{CELL_LTE}"}}}}}}"#
        )),
        11 => Spec::new("malformed JSON: truncated", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"gps":{{"lat":{lat},"lon":{lon},"acc""#
        )),
        12 => Spec::new("malformed JSON: address as the track list", "POST", post)
            .body(format!(r#"{{"tracks":"{IP_A}"}}"#)),
        13 => Spec::new("malformed JSON: unknown hint field", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"ip":"{V6_A}","gps":{{"lat":{lat},"lon":{lon},"acc":25,"ts":{now}}}}}}}"#
        )),
        14 => {
            let pad = format!("{lat},{lon};{IP_A};{V6_A};{CELL_LTE};").repeat(160);
            Spec::new("oversized body", "POST", post)
                .body(format!(r#"{{"tracks":{tracks},"pad":"{pad}"}}"#))
        }
        15 => Spec::new("body gps: latitude out of range", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"gps":{{"lat":{BAD_LAT},"lon":{lon},"acc":25,"ts":{now}}}}}}}"#
        )),
        16 => Spec::new("body gps: stale", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"gps":{{"lat":{lat},"lon":{lon},"acc":25,"ts":{}}}}}}}"#,
            now - 3600
        )),
        17 => Spec::new("territory: bad geo-hint", "GET", "/v1/territory")
            .h("geo-hint", format!("gps={BAD_LAT},{BAD_LON}; acc=25; ts={now}"))
            .h("x-forwarded-for", x),
        18 => Spec::new("body cell: bad cell id", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"cell":{{"mcc":"262","mnc":"01","cell":"0x{CELL_LTE:X}Q"}}}}}}"#
        )),
        19 => Spec::new("bad cell-hint: area", "GET", &play).h(
            "cell-hint",
            format!("mcc=262; mnc=01; area={AREA}x; cell={CELL_LTE}"),
        ),
        20 => Spec::new("malformed JSON: negative latitude as a string", "POST", post).body(
            format!(
                r#"{{"tracks":{tracks},"hints":{{"gps":{{"lat":"{}","lon":{},"acc":25,"ts":{now}}}}}}}"#,
                GPS[2].0, GPS[2].1
            ),
        ),
        21 => Spec::new("malformed JSON: syntax error", "POST", post).body(format!(
            r#"{{"tracks":{tracks},"hints":{{"gps":{{"lat":{lat},,"lon":{lon}}}}}}}"#
        )),
        22 => Spec::new("authz: bad hints are ignored", "GET", "/v1/authz")
            .h("x-original-uri", "/audio/QZNW52400001/seg-9.mp4")
            .h("x-original-method", "GET")
            .h("x-forwarded-for", x)
            .h("geo-hint", format!("gps={BAD_LAT},{lon}; acc=25; ts={now}"))
            .h("cell-hint", format!("mcc=262; mnc=01; cell=0x{CELL_LTE:X}Q")),
        23 => Spec::new("proxy: bad hints are ignored", "GET", "/audio/QZNW52400001/bad.mp4")
            .h("x-forwarded-for", x)
            .h("geo-hint", format!("gps={lat},{lon}; acc=25; ts={}", now - 3600))
            .h("cell-hint", format!("mcc=262; mnc=1; cell={CELL_LTE}")),
        24 => Spec::new("bad geo-hint: not ASCII", "GET", &play)
            .h("geo-hint", format!("gps={lat},{lon}; acc=25; ts={now}; é=1")),
        25 => Spec::new("bad wifi-hint: malformed address", "GET", &play).h(
            "wifi-hint",
            format!("{}@-55, {}x@-60", APS[0].0, APS[1].0),
        ),
        26 => Spec::new("bad wifi-hint: absurd signal", "GET", &play).h(
            "wifi-hint",
            format!("{}@-55, {}@-300", APS[0].0, APS[1].0.to_uppercase()),
        ),
        27 => Spec::new("bad wifi-hint: repeated access point", "GET", &play).h(
            "wifi-hint",
            format!("{}@-55, {}@-60", APS[0].0, APS[0].0.replace(':', "")),
        ),
        28 => {
            let mut aps = vec![serde_json::json!({"bssid": APS[2].0, "rssi": -50})];
            aps.extend((0..40).map(|k| serde_json::json!({"bssid": format!("00:00:5e:00:53:{k:02x}")})));
            Spec::new("bad body wifi: too many access points", "POST", post)
                .body(serde_json::json!({"tracks": tracks, "hints": {"wifi": aps}}).to_string())
        }
        _ => Spec::new("POST with a bad header hint", "POST", post)
            .h("geo-hint", format!("gps={lat},{BAD_LON}; acc=25; ts={now}"))
            .body(format!(r#"{{"tracks":{tracks}}}"#)),
    }
}

/// The i-th request of the traffic: a fixed rotation over every front door.
fn spec(i: usize, now: i64) -> Spec {
    let round = i / 20;
    let t = track(i + round);
    let play = |t: &str| format!("/v1/tracks/{t}/playability");
    match i % 20 {
        0 => Spec::new("preflight GET: address + gps", "GET", play(t))
            .h("x-forwarded-for", xff(i))
            .h("geo-hint", geo(round, now)),
        1 => Spec::new("preflight GET: gps only", "GET", play(t)).h("geo-hint", geo(round, now)),
        2 => Spec::new("preflight GET: cell only", "GET", play(t)).h("cell-hint", cell(round)),
        3 => Spec::new(
            "preflight GET: address + gps + cell",
            "GET",
            format!("{}?use=on_demand_stream&tier=premium", play(t)),
        )
        .h("x-forwarded-for", xff(i))
        .h("geo-hint", geo(round + 1, now))
        .h("cell-hint", cell(round + 1)),
        4 if round.is_multiple_of(2) => {
            Spec::new("preflight GET: address only", "GET", play(t)).h("x-forwarded-for", xff(i))
        }
        4 => Spec::new("preflight GET: address + wifi", "GET", play(t))
            .h("x-forwarded-for", xff(i))
            .h("wifi-hint", wifi_hint(round / 2)),
        5 => Spec::new("preflight POST: body gps + cell", "POST", "/v1/playability")
            .h("x-forwarded-for", xff(i))
            .body(
                serde_json::json!({
                    "tracks": [TRACKS[0], TRACKS[1], TRACKS[2], TRACKS[3]],
                    "use": "on_demand_stream",
                    "tier": "premium",
                    "hints": {"gps": body_gps(round, now), "cell": body_cell(round)},
                })
                .to_string(),
            ),
        6 => Spec::new("preflight POST: body gps", "POST", "/v1/playability").body(
            serde_json::json!({
                "tracks": [TRACKS[2], {"track": TRACKS[3], "tier": "free"}, TRACKS[6]],
                "hints": {"gps": body_gps(round + 1, now), "wifi": body_wifi(round)},
            })
            .to_string(),
        ),
        7 => Spec::new("preflight POST: header hints", "POST", "/v1/playability")
            .h("x-forwarded-for", xff(i))
            .h("geo-hint", geo(round + 2, now))
            .h("cell-hint", cell(round + 2))
            .body(serde_json::json!({"tracks": TRACKS[..5]}).to_string()),
        8 => {
            let s = Spec::new("territory", "GET", "/v1/territory").h("x-forwarded-for", xff(i));
            match round % 3 {
                0 => s.h("geo-hint", geo(round, now)),
                1 => s.h("cell-hint", cell(round)),
                _ => s,
            }
        }
        9 | 10 => {
            let s = Spec::new("authz nginx", "GET", "/v1/authz")
                .h(
                    "x-original-uri",
                    format!("/audio/{t}/seg-1.mp4?tier=premium"),
                )
                .h("x-original-method", "GET")
                .h("x-forwarded-for", xff(i));
            if i % 20 == 9 {
                s.h("geo-hint", geo(round, now))
            } else {
                s.h("cell-hint", cell(round))
                    .h("wifi-hint", wifi_hint(round + 1))
            }
        }
        11 | 12 => {
            let s = Spec::new(
                "authz envoy",
                "GET",
                format!("/v1/authz/audio/{t}/seg-2.mp4"),
            )
            .h("x-forwarded-for", xff(i));
            if i % 20 == 11 {
                s.h("geo-hint", geo(round, now))
            } else {
                s.h("cell-hint", cell(round))
                    .h("geo-hint", geo(round + 1, now))
            }
        }
        13 => Spec::new(
            "proxy allowed",
            "GET",
            format!("/audio/{}/seg-{round}.mp4", TRACKS[0]),
        )
        .h("x-forwarded-for", xff(i))
        .h("geo-hint", geo(round, now))
        .h("cell-hint", cell(round))
        .h("wifi-hint", wifi_hint(round + 2)),
        14 => Spec::new("proxy allowed", "GET", format!("/tracks/{}", TRACKS[6]))
            .h("x-forwarded-for", xff(i))
            .h(
                "forwarded",
                format!("for=\"{}\"", CLIENTS[round % CLIENTS.len()]),
            )
            .h("geo-hint", geo(round + 1, now)),
        15 => {
            // DACH only from the FR address; taken down and unlicensed from anywhere.
            let (t, x) = match round % 3 {
                0 => (TRACKS[1], IP_C.to_owned()),
                1 => (TRACKS[4], xff(i)),
                _ => (TRACKS[5], xff(i)),
            };
            Spec::new("proxy denied", "GET", format!("/audio/{t}/seg-1.mp4"))
                .h("x-forwarded-for", x)
                .h("geo-hint", geo(round, now))
                .h("cell-hint", cell(round))
        }
        16 => Spec::new("proxy unmatched", "GET", format!("/covers/{round}.jpg"))
            .h("x-forwarded-for", xff(i))
            .h("geo-hint", geo(round, now))
            .h("cell-hint", cell(round)),
        k => invalid(round * 3 + (k - 17), now),
    }
}

/// A response as text.
fn render_response(parts: &http::response::Parts, body: &[u8]) -> String {
    let mut s = format!("{}\n", parts.status.as_u16());
    for (k, v) in &parts.headers {
        s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    s.push('\n');
    s.push_str(&String::from_utf8_lossy(body));
    s
}

/// Sends a request on a new connection; (status, response as text).
async fn exchange(addr: SocketAddr, s: &Spec) -> Result<(u16, String), String> {
    let mut b = request(s.method, &s.path);
    for (k, v) in &s.headers {
        b = b.header(*k, v.as_str());
    }
    let req = b
        .body(Full::new(Bytes::from(s.body.clone())))
        .map_err(|e| format!("request: {e}"))?;
    let go = async {
        let resp = send_streaming(addr, req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts.status.as_u16(), render_response(&parts, &body)))
    };
    tokio::time::timeout(Duration::from_secs(20), go)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// One exchange as the test recorded it.
struct Exchange {
    spec: Spec,
    status: Result<u16, String>,
    response: String,
    started: Instant,
    ended: Instant,
}

// ---- The server process ---------------------------------------------------------------------

/// Reads a pipe to its end, keeping every byte; lines go to `lines` while someone listens.
fn capture(
    r: impl Read + Send + 'static,
    lines: Option<std::sync::mpsc::Sender<String>>,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b2 = buf.clone();
    let t = std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    b2.lock().expect("lock").extend_from_slice(&line);
                    if let Some(tx) = &lines {
                        let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        }
    });
    (buf, t)
}

/// The running binary; killed if the test fails before it is stopped.
struct Proc {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text_of(b: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&b.lock().expect("lock")).into_owned()
}

/// Starts `regiongate serve`; returns the process and its (public, admin) addresses, read from
/// its "serving" log line.
/// The process and its public, admin and gRPC listeners.
fn start_server(config: &Path, regions: &Path) -> (Proc, SocketAddr, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regiongate"));
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--regions")
        .arg(regions)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in regiongate::config::ENV_VARS {
        cmd.env_remove(v);
    }
    let mut child = cmd.spawn().expect("regiongate starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stdout, t1) = capture(child.stdout.take().expect("stdout"), None);
    let (stderr, t2) = capture(child.stderr.take().expect("stderr"), Some(tx));
    let mut p = Proc {
        child: Some(child),
        stdout,
        stderr,
        threads: vec![t1, t2],
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) if line.contains("regiongate serving") => {
                let addrs: Vec<SocketAddr> = line
                    .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .filter(|w| w.starts_with("127.0.0.1:"))
                    .map(|w| w.trim_end_matches(':').parse().expect("address"))
                    .collect();
                assert!(addrs.len() >= 3, "no listen addresses in {line}");
                return (p, addrs[0], addrs[1], addrs[2]);
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("regiongate exited at start:\n{}", text_of(&p.stderr))
            }
        }
        let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "regiongate exited at start ({exited:?}):\n{}",
            text_of(&p.stderr)
        );
        assert!(
            Instant::now() < deadline,
            "regiongate did not start in 60 s:\n{}",
            text_of(&p.stderr)
        );
    }
}

/// SIGTERM, then wait for a clean exit (bounded) and for the pipes to close.
fn stop_server(p: &mut Proc) {
    let mut child = p.child.take().expect("running");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("regiongate did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "regiongate exit status {status}:\n{}",
        text_of(&p.stderr)
    );
    for t in p.threads.drain(..) {
        t.join().expect("capture thread");
    }
}

// ---- One run --------------------------------------------------------------------------------

struct RunResult {
    artifacts: Vec<Artifact>,
    sent: String,
    forwarding: String,
    decision_lines: usize,
    requests: usize,
    statuses: BTreeMap<u16, usize>,
    kinds: BTreeMap<&'static str, usize>,
    transport_errors: Vec<String>,
    answers: Vec<String>,
    during_reloads: Vec<(String, usize)>,
    origin_requests: Vec<String>,
    stderr_bytes: usize,
    report_files: usize,
    elapsed: Duration,
}

fn json_field(text: &str, field: &str) -> Option<serde_json::Value> {
    let body = text.split_once("\n\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.pointer(field).cloned()
}

/// Admin-side work during the traffic: two concurrent reloads, a touched licence file (the
/// watcher reloads), one more reload. Returns the windows and every admin answer.
async fn reloads(
    admin: SocketAddr,
    regions: PathBuf,
    admin_log: Arc<Mutex<Vec<(String, String)>>>,
    sent: Arc<AtomicUsize>,
) -> Vec<(String, Instant, Instant)> {
    let reload = Spec::new("admin reload", "POST", "/admin/reload");
    let mut windows = Vec::new();
    let record = |name: &str, r: &Result<(u16, String), String>| {
        let text = match r {
            Ok((_, t)) => t.clone(),
            Err(e) => format!("error: {e}"),
        };
        admin_log
            .lock()
            .expect("lock")
            .push((name.to_owned(), text));
    };
    // The two concurrent reloads keep the geometry and are over in tens of ms: start them
    // while the workers send back to back (before MIN_REQUESTS, after which they pause
    // between requests), so that requests are in flight during them whatever the speed of
    // the machine.
    while sent.load(Ordering::SeqCst) < RELOAD_AFTER {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let t0 = Instant::now();
    let (a, b) = tokio::join!(exchange(admin, &reload), exchange(admin, &reload));
    for r in [&a, &b] {
        record("POST /admin/reload", r);
        let (status, text) = r.as_ref().expect("reload answers");
        assert_eq!(*status, 200, "{text}");
        assert_eq!(
            json_field(text, "/result"),
            Some(serde_json::json!("ok")),
            "{text}"
        );
    }
    windows.push(("2 concurrent admin reloads".to_owned(), t0, Instant::now()));

    // Touch a licence file: the watcher reloads after its debounce.
    let t1 = Instant::now();
    let touched_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    std::fs::File::options()
        .write(true)
        .open(regions.join("licenses/sample.toml"))
        .expect("open licence file")
        .set_modified(SystemTime::now())
        .expect("touch");
    let snap = Spec::new("admin snapshot", "GET", "/admin/snapshot");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = exchange(admin, &snap).await;
        record("GET /admin/snapshot (waiting for the watcher)", &r);
        let text = r.expect("snapshot answers").1;
        let trigger = json_field(&text, "/last_reload/trigger");
        let finished = json_field(&text, "/last_reload/finished_unix").and_then(|v| v.as_u64());
        if trigger == Some(serde_json::json!("watch")) && finished >= Some(touched_at) {
            assert_eq!(
                json_field(&text, "/last_reload/result"),
                Some(serde_json::json!("ok"))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher did not reload within 40 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    windows.push(("watch reload".to_owned(), t1, Instant::now()));

    // A geometry change: the admin reload builds a whole new territory index (a reload of
    // unchanged geometry shares the served one and is over in a few ms).
    std::fs::create_dir_all(regions.join("custom")).expect("mkdir custom");
    std::fs::write(
        regions.join("custom/leak-extra.geojson"),
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"LEAK_EXTRA"},"geometry":{"type":"Polygon","coordinates":[[[-30,40],[-29,40],[-29,41],[-30,41],[-30,40]]]}}]}"#,
    )
    .expect("write custom territory");
    let t2 = Instant::now();
    let r = exchange(admin, &reload).await;
    record("POST /admin/reload", &r);
    let (status, text) = r.expect("reload answers");
    assert_eq!(status, 200, "{text}");
    windows.push(("admin reload".to_owned(), t2, Instant::now()));
    windows
}

/// Checks on the gRPC listener (ext_authz `Check`) from the trusted loopback Envoy, cycling
/// over the planted clients as `source.address` and over GPS, cell and WiFi hints (and a bad
/// GPS hint) as headers of the original request: (what was asked, the answer or the status as
/// text). Some must be allowed and some refused, so that the evidence was used.
async fn grpc_checks(addr: SocketAddr) -> Vec<(String, String)> {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC connects");
    let mut c = AuthorizationClient::new(channel);
    let now = now_unix();
    let mut out = Vec::new();
    let (mut allowed, mut refused) = (0, 0);
    for i in 0..4 * CLIENTS.len() {
        let hint = match i % 4 {
            0 => ("geo-hint", geo(i, now)),
            1 => ("cell-hint", cell(i)),
            2 => ("wifi-hint", wifi_hint(i)),
            _ => (
                "geo-hint",
                format!("gps={BAD_LAT},{BAD_LON}; acc=10; ts={now}"),
            ),
        };
        let path = format!("/audio/{}/seg-1.mp4", track(i));
        let req = crate::grpc::check(
            &path,
            Some(CLIENTS[i % CLIENTS.len()]),
            &[(hint.0, &hint.1)],
        );
        let answer = match c.check(req).await {
            Ok(r) => {
                let r = r.into_inner();
                match r.status.as_ref().map(|s| s.code) {
                    Some(0) => allowed += 1,
                    _ => refused += 1,
                }
                format!("{r:?}")
            }
            Err(status) => format!("{status:?}"),
        };
        out.push((format!("#{i} Check {path} with {}", hint.0), answer));
    }
    assert!(
        allowed > 0 && refused > 0,
        "gRPC answers {allowed} allowed, {refused} refused"
    );
    out
}

async fn run(name: &'static str, json_logs: bool, log_client_ip: bool) -> RunResult {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let regions = tmp.path().join("regions");
    let report = tmp.path().join("report");
    write_regions(&regions);
    let origin = Origin::start().await;
    let config = tmp.path().join("regiongate.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
log_format = "{}"
log_client_ip = {log_client_ip}
decision_log = "full"
summary_interval_s = 1
mode = "proxy"
watch = true

[client]
trusted_proxies = ["127.0.0.1/32"]

[proxy]
upstream = "http://{}"

[preflight]
max_batch = 20

[limits]
max_body_bytes = 4096
grace_period_ms = 3000

[report]
dir = {:?}
"#,
            if json_logs { "json" } else { "text" },
            origin.addr,
            report.display().to_string()
        ),
    )
    .expect("write config");

    let (mut proc_, public, admin, grpc) =
        tokio::task::block_in_place(|| start_server(&config, &regions));

    // Traffic and reloads at the same time.
    let next = Arc::new(AtomicUsize::new(0));
    let reloads_done = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Exchange>>> = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (next, done, log) = (next.clone(), reloads_done.clone(), log.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= MAX_REQUESTS || (i >= MIN_REQUESTS && done.load(Ordering::SeqCst)) {
                    return;
                }
                if i >= MIN_REQUESTS {
                    // Enough requests: keep some going while the reloads finish.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                let s = spec(i, now_unix());
                let t0 = Instant::now();
                let r = exchange(public, &s).await;
                let (status, response) = match r {
                    Ok((st, text)) => (Ok(st), text),
                    Err(e) => (Err(e.clone()), format!("error: {e}")),
                };
                log.lock().expect("lock").push(Exchange {
                    spec: s,
                    status,
                    response,
                    started: t0,
                    ended: Instant::now(),
                });
            }
        }));
    }
    let admin_log: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let windows = within(
        120,
        "reloads during traffic",
        reloads(admin, regions.clone(), admin_log.clone(), next.clone()),
    )
    .await;
    reloads_done.store(true, Ordering::SeqCst);
    for w in workers {
        within(60, "traffic workers", w).await.expect("worker");
    }

    // Envoy's gRPC door: the planted clients as the attribute context's source address, the
    // hints as its headers (bad ones too); every answer or status is an artifact.
    let grpc_log = within(60, "gRPC checks", grpc_checks(grpc)).await;

    // The admin views after the traffic.
    for path in ["/metrics", "/admin/snapshot", "/healthz", "/readyz"] {
        let r = exchange(admin, &Spec::new("admin", "GET", path)).await;
        let (status, text) = r.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "{path}: {text}");
        admin_log
            .lock()
            .expect("lock")
            .push((format!("GET {path}"), text));
    }

    tokio::task::block_in_place(|| stop_server(&mut proc_));
    origin.task.abort();

    // Collect.
    let exchanges = std::mem::take(&mut *log.lock().expect("lock"));
    let mut artifacts = vec![
        artifact(
            format!("{name} stdout"),
            &text_of(&proc_.stdout),
            Scope::Logs,
        ),
        artifact(
            format!("{name} stderr"),
            &text_of(&proc_.stderr),
            Scope::Logs,
        ),
    ];
    let mut sent = String::new();
    let mut statuses = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    let mut transport_errors = Vec::new();
    let mut answers = Vec::new();
    let mut responses: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
    for (n, e) in exchanges.iter().enumerate() {
        sent.push_str(&e.spec.render());
        *kinds.entry(e.spec.kind).or_insert(0) += 1;
        match &e.status {
            Ok(s) => *statuses.entry(*s).or_insert(0) += 1,
            Err(err) => transport_errors.push(format!("{} {}: {err}", e.spec.kind, e.spec.path)),
        }
        if e.response.contains("\"source\"") {
            answers.push(e.response.clone());
        }
        responses.entry(e.spec.kind).or_default().push((
            format!("#{n} {} {}", e.spec.method, e.spec.path),
            e.response.clone(),
        ));
    }
    *kinds.entry("grpc check").or_insert(0) += grpc_log.len();
    responses.entry("grpc check").or_default().extend(grpc_log);
    for (kind, items) in &responses {
        artifacts.push(grouped(
            format!("{name} responses to {kind}"),
            items,
            Scope::Output,
        ));
    }
    for (what, text) in admin_log.lock().expect("lock").iter() {
        artifacts.push(artifact(
            format!("{name} admin {what}"),
            text,
            Scope::Output,
        ));
    }
    let mut report_files = 0;
    for entry in walk(&report) {
        report_files += 1;
        let text = std::fs::read_to_string(&entry).expect("report file is text");
        artifacts.push(artifact(
            format!("{name} report file {}", entry.display()),
            &text,
            Scope::Output,
        ));
    }
    let (rest, forwarding) = origin.received();
    artifacts.push(artifact(
        format!("{name} origin (received bytes)"),
        &rest,
        Scope::Origin,
    ));
    artifacts.push(artifact(
        format!("{name} origin forwarding headers"),
        &forwarding,
        Scope::OriginForwarding,
    ));
    let origin_requests = origin.log.requests.lock().expect("lock").clone();

    let stderr = text_of(&proc_.stderr);
    let decision_lines = stderr
        .lines()
        .filter(|l| l.contains("regiongate::decision"))
        .count();
    let during_reloads = windows
        .iter()
        .map(|(w, a, b)| {
            let n = exchanges
                .iter()
                .filter(|e| e.started < *b && e.ended > *a)
                .count();
            (w.clone(), n)
        })
        .collect();
    RunResult {
        artifacts,
        sent: sent.to_ascii_lowercase(),
        forwarding: forwarding.to_ascii_lowercase(),
        decision_lines,
        requests: exchanges.len(),
        statuses,
        kinds,
        transport_errors,
        answers,
        during_reloads,
        origin_requests,
        stderr_bytes: stderr.len(),
        report_files,
        elapsed: started.elapsed(),
    }
}

/// Every file under a directory.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

// ---- The checks -----------------------------------------------------------------------------

/// The detector finds disguised forms: truncated, rounded, upper-case, padded, hex, mapped.
fn check_the_detector(forms: &[Form]) {
    let fabricated = artifact(
        "fabricated",
        &format!(
            "lat=47.6172 lon=9.313 ip=2A02:8071:5D94:9E00:1234:5678:9ABC:DEF0 \
             ip6=2a01:0c22:b04c:9700:0000:0000:002b:00a9 cell=0x0{CELL_LTE:X} \
             v4=[::FFFF:5117:9DCA] sydney=-33.86 {{\"lat\":-33.8568}} net=81.23.157.20/30 \
             CellHint {{ area: Some({AREA}) }} ap=0000.5E00.53B2 ap2=00-00-5E-00-53-A1"
        ),
        Scope::Output,
    );
    let hits = search("detector", &[fabricated], forms, false);
    let values: std::collections::BTreeSet<&str> = hits.iter().map(|h| h.value.as_str()).collect();
    for want in [
        GPS[0].0,
        GPS[0].1,
        V6_A,
        V6_B,
        "cell 19283746 (0x1263F22)",
        "area",
        MAPPED_A,
        GPS[2].0,
        "network 81.23.157.0/24",
        APS[0].0,
        APS[1].0,
    ] {
        assert!(
            values.contains(want),
            "the detector misses {want}: {hits:#?}"
        );
    }
    // And it does not fire on what legitimately surrounds the data.
    let clean = artifact(
        "clean",
        "2026-11-29T01:37:47.6172389Z 09.312894 147.6 ts=1764370000 decide_us=6471 \
         {\"timestamp\":\"2026-12-07t23:34:50.110922z\"} 2026-12-07 23:34:47.617238 \
         81.23.157.0/24 2a02:8071:5d94::/48 2a01:c22:b04c::/48 port 60999 sha 9a1263f22b",
        Scope::Logs,
    );
    let hits = search("detector", &[clean], forms, true);
    assert!(hits.is_empty(), "{hits:#?}");
}

fn summary(r: &RunResult) -> String {
    format!(
        "{} requests in {:.1} s; statuses {:?}; {} decision log lines; {} origin requests; \
         {} KB stderr; {} report files; requests overlapping reloads {:?}",
        r.requests,
        r.elapsed.as_secs_f64(),
        r.statuses,
        r.decision_lines,
        r.origin_requests.len(),
        r.stderr_bytes / 1024,
        r.report_files,
        r.during_reloads
    )
}

/// The planted values were really sent, reached the decision, and the run did what it claims.
fn check_run(name: &str, r: &RunResult, forms: &[Form], log_client_ip: bool) {
    eprintln!("{name}: {}", summary(r));
    eprintln!("{name}: request kinds {:?}", r.kinds);
    assert!(
        r.requests >= MIN_REQUESTS,
        "{name}: {} requests",
        r.requests
    );
    assert!(
        r.decision_lines >= 1000,
        "{name}: only {} decision log lines",
        r.decision_lines
    );
    let oversized_only = r
        .transport_errors
        .iter()
        .all(|e| e.starts_with("oversized body"));
    assert!(
        oversized_only,
        "{name}: transport errors {:?}",
        r.transport_errors
    );
    for s in r.statuses.keys() {
        assert!(*s < 500, "{name}: server errors: {:?}", r.statuses);
    }
    for k in [400, 413, 451, 200] {
        assert!(
            r.statuses.contains_key(&k),
            "{name}: no {k}: {:?}",
            r.statuses
        );
    }
    // A reload that keeps the geometry shares the served index and takes tens of ms, so a
    // window may hold only a few requests; at least one must have been in flight.
    for (w, n) in &r.during_reloads {
        assert!(*n >= 1, "{name}: no request during {w}");
    }
    assert!(r.report_files >= 1, "{name}: no report file written");

    // Control: the search finds every planted value in what the test sent.
    let sent = artifact("sent", &r.sent, Scope::Output);
    let found = search("control", std::slice::from_ref(&sent), forms, false);
    for f in forms.iter().filter(|f| !f.derived) {
        assert!(
            found.iter().any(|h| h.value == f.value),
            "{name}: control search does not find {} in the sent requests",
            f.value
        );
    }
    // Control: the origin's forwarding headers name every client (the one allowed place).
    let fwd = artifact("forwarding", &r.forwarding, Scope::Output);
    let found = search("control", std::slice::from_ref(&fwd), forms, false);
    for c in CLIENTS {
        assert!(
            found.iter().any(|h| h.value == c),
            "{name}: the origin never saw {c} in X-Forwarded-For"
        );
    }
    // Hints never reach the origin, by header name either.
    for req in &r.origin_requests {
        let l = req.to_ascii_lowercase();
        assert!(
            !l.contains("geo-hint") && !l.contains("cell-hint") && !l.contains("wifi-hint"),
            "{name}: hint header at the origin: {req}"
        );
    }
    // The evidence was used: answers decided by GPS (Sydney: AU), by the cell, by the address.
    let has = |needle: &[&str]| {
        r.answers
            .iter()
            .any(|a| needle.iter().all(|n| a.contains(n)))
    };
    assert!(
        has(&["\"source\":\"gps\"", "\"territory\":\"AU\""]),
        "{name}: no answer decided by the GPS hint"
    );
    assert!(
        has(&["\"source\":\"cell\""]),
        "{name}: no answer decided by the cell hint"
    );
    assert!(
        has(&["\"source\":\"wifi\"", "\"territory\":\"DE\""]),
        "{name}: no answer decided by the WiFi hint"
    );
    assert!(
        has(&["\"source\":\"ip\"", "\"territory\":\"FR\""]),
        "{name}: no answer decided by the address"
    );
    let snapshot = r
        .artifacts
        .iter()
        .rev()
        .find(|a| a.name.ends_with("admin GET /admin/snapshot"))
        .expect("snapshot fetched");
    assert!(
        snapshot.text.contains("\"cells\":1") && snapshot.text.contains("\"layout\":\"geoip2\""),
        "{name}: the planted databases are not loaded: {}",
        snapshot.text
    );
    let stderr = r
        .artifacts
        .iter()
        .find(|a| a.name.ends_with("stderr"))
        .expect("stderr");
    for (net, _, _) in networks() {
        let n = stderr.text.matches(net.as_str()).count();
        if log_client_ip {
            assert!(
                n > 0,
                "{name}: log_client_ip = true but {net} is not in the log"
            );
        } else {
            assert_eq!(
                n, 0,
                "{name}: log_client_ip = false but {net} is in the log"
            );
        }
    }
}

fn describe(hits: &[Hit]) -> String {
    let mut by: BTreeMap<(&str, &str, &str), Vec<&Hit>> = BTreeMap::new();
    for h in hits {
        by.entry((h.run, h.artifact.as_str(), h.value.as_str()))
            .or_default()
            .push(h);
    }
    let mut out = format!("{} hits of planted values:\n", hits.len());
    for ((_, artifact, value), hs) in &by {
        let h = hs[0];
        out.push_str(&format!(
            "- {artifact}: {value} x{}, e.g. {} `{}` (request {}):\n    {}\n",
            hs.len(),
            h.how,
            h.form,
            h.place,
            h.context
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_location_data_leaves_the_process() {
    within(240, "leak test", async {
        let forms = planted_forms();
        check_the_detector(&forms);
        eprintln!(
            "searching {} forms of {} planted values",
            forms.len(),
            forms
                .iter()
                .map(|f| f.value.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        let json = run("run 1 (json, log_client_ip = false)", true, false).await;
        check_run("run 1", &json, &forms, false);
        let text = run("run 2 (text, log_client_ip = true)", false, true).await;
        check_run("run 2", &text, &forms, true);

        // REGIONGATE_LEAK_DUMP=DIR keeps what was searched, for whoever chases a hit.
        if let Some(dir) = std::env::var_os("REGIONGATE_LEAK_DUMP") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("dump dir");
            for a in json.artifacts.iter().chain(&text.artifacts) {
                let file: String = a
                    .name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                std::fs::write(dir.join(file), &a.text).expect("dump");
            }
        }
        let mut hits = search("run 1", &json.artifacts, &forms, false);
        hits.extend(search("run 2", &text.artifacts, &forms, true));
        let searched: usize = json
            .artifacts
            .iter()
            .chain(&text.artifacts)
            .map(|a| a.text.len())
            .sum();
        eprintln!(
            "searched {} artifacts, {} KB",
            json.artifacts.len() + text.artifacts.len(),
            searched / 1024
        );
        assert!(hits.is_empty(), "{}", describe(&hits));
    })
    .await;
}

//! IP evidence from MaxMind DB files.
//!
//! Two record layouts are read and told apart automatically when the file is opened:
//!
//! * **GeoIP2** (MaxMind GeoIP2/GeoLite2 Country and City, the output of geoipupdate):
//!   `country.iso_code` (else `registered_country.iso_code`), `location.latitude`,
//!   `location.longitude`, `location.accuracy_radius` (km).
//! * **Flat** (DB-IP lite and ip-location-db files such as the embedded default):
//!   `country_code`, and in city files `latitude`/`longitude` stored as float32.
//!
//! An optional anonymizer database in the GeoIP2 Anonymous-IP layout adds flags. Private,
//! loopback, link-local, CGNAT, documentation and other special ranges never reach a database:
//! they give no IP evidence.

use crate::filemap::FileBytes;
use crate::privacy::{ClientIp, GpsPoint};
use maxminddb::{MaxMindDbError, Reader, WithinOptions};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use thiserror::Error;

/// Which record layout a database uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `country.iso_code`, `location.*`.
    GeoIp2,
    /// `country_code`, `latitude`, `longitude`.
    Flat,
    /// GeoIP2 Anonymous-IP: `is_anonymous`, `is_anonymous_vpn`, ...
    Anonymous,
}

impl Layout {
    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::GeoIp2 => "geoip2",
            Layout::Flat => "flat",
            Layout::Anonymous => "anonymous-ip",
        }
    }
}

/// Why a database could not be used.
#[derive(Debug, Error)]
pub enum IpDbError {
    /// The file could not be read or mapped.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// Not a MaxMind DB file, or corrupt.
    #[error("not a valid MaxMind DB: {0}")]
    Format(#[from] MaxMindDbError),
    /// No record has a layout we know.
    #[error(
        "unknown record layout (expected country.iso_code, country_code, or is_anonymous fields)"
    )]
    UnknownLayout,
    /// The layout is not the one this database is used for.
    #[error("expected a {expected} database, found {found}")]
    WrongLayout {
        /// What the configuration needs.
        expected: &'static str,
        /// What the file holds.
        found: &'static str,
    },
}

/// Facts about an opened database, for `/admin/snapshot` and `validate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    /// `database_type` from the metadata.
    pub database_type: String,
    /// Build time, Unix seconds.
    pub build_epoch: u64,
    /// 4 or 6.
    pub ip_version: u16,
    /// The detected layout.
    pub layout: Layout,
}

/// An opened MaxMind DB.
pub struct IpDatabase {
    reader: Reader<FileBytes>,
    info: DbInfo,
}

/// What the IP database says about an address. Holds no address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IpRecord {
    /// ISO 3166-1 alpha-2 country, if known.
    pub country: Option<[u8; 2]>,
    /// A point (city databases), redacted in `Debug`.
    pub point: Option<GpsPoint>,
    /// The point's accuracy radius in km, if the database gives one.
    pub accuracy_km: Option<f64>,
}

impl IpRecord {
    /// The country code as text.
    pub fn country_str(&self) -> Option<&str> {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

/// Anonymizer flags of an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnonFlags {
    /// `is_anonymous`
    pub anonymous: bool,
    /// `is_anonymous_vpn`
    pub vpn: bool,
    /// `is_hosting_provider`
    pub hosting: bool,
    /// `is_tor_exit_node`
    pub tor: bool,
    /// `is_public_proxy`
    pub public_proxy: bool,
    /// `is_residential_proxy`
    pub residential_proxy: bool,
    /// Listed in the operator's CIDR list of VPN / hosting ranges.
    pub operator_list: bool,
}

impl AnonFlags {
    /// Whether any flag is set.
    pub fn any(&self) -> bool {
        self.anonymous
            || self.vpn
            || self.hosting
            || self.tor
            || self.public_proxy
            || self.residential_proxy
            || self.operator_list
    }
}

/// A number stored as double, float, or integer.
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f32<E: de::Error>(self, v: f32) -> Result<Num, E> {
                Ok(Num(f64::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<Num>,
    longitude: Option<Num>,
    accuracy_radius: Option<Num>,
}

#[derive(Deserialize)]
struct GeoIp2Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct FlatRecord<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    latitude: Option<Num>,
    longitude: Option<Num>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnonRecord {
    is_anonymous: bool,
    is_anonymous_vpn: bool,
    is_hosting_provider: bool,
    is_tor_exit_node: bool,
    is_public_proxy: bool,
    is_residential_proxy: bool,
}

fn code(s: Option<&str>) -> Option<[u8; 2]> {
    let b = s?.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic))
        .then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

/// Whether an address is in a range that never locates anyone: private, loopback, link-local,
/// CGNAT, documentation, benchmarking, multicast, unspecified, reserved.
pub fn is_special(ip: IpAddr) -> bool {
    match crate::privacy::canonical_ip(ip) {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard 100::/64
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // ::/96 (IPv4-compatible)
}

fn detect(reader: &Reader<FileBytes>) -> Result<Layout, IpDbError> {
    let mut seen = 0;
    for r in reader.networks(WithinOptions::default())? {
        let r = r?;
        let Some(map) = r.decode::<BTreeMap<String, IgnoredAny>>()? else {
            continue;
        };
        if map.contains_key("country")
            || map.contains_key("registered_country")
            || map.contains_key("location")
        {
            return Ok(Layout::GeoIp2);
        }
        if map.contains_key("country_code") {
            return Ok(Layout::Flat);
        }
        if map.keys().any(|k| k.starts_with("is_")) {
            return Ok(Layout::Anonymous);
        }
        seen += 1;
        if seen > 1000 {
            break;
        }
    }
    Err(IpDbError::UnknownLayout)
}

impl IpDatabase {
    /// Memory-maps a database file and detects its layout.
    ///
    /// # Errors
    /// If the file cannot be read, is not a MaxMind DB, or has no known layout.
    pub fn open(path: &Path) -> Result<IpDatabase, IpDbError> {
        IpDatabase::from_bytes(FileBytes::Mapped(crate::filemap::map_file(path)?))
    }

    /// Opens a database from bytes (embedded data, tests).
    ///
    /// # Errors
    /// If the bytes are not a MaxMind DB with a known layout.
    pub fn from_bytes(bytes: FileBytes) -> Result<IpDatabase, IpDbError> {
        let reader = Reader::from_source(bytes)?;
        let layout = detect(&reader)?;
        let m = reader.metadata();
        let info = DbInfo {
            database_type: m.database_type.clone(),
            build_epoch: m.build_epoch,
            ip_version: m.ip_version,
            layout,
        };
        Ok(IpDatabase { reader, info })
    }

    /// Facts about the database.
    pub fn info(&self) -> &DbInfo {
        &self.info
    }

    fn lookup_raw(
        &self,
        ip: IpAddr,
    ) -> Result<Option<maxminddb::LookupResult<'_, FileBytes>>, MaxMindDbError> {
        let ip = crate::privacy::canonical_ip(ip);
        if is_special(ip) {
            return Ok(None);
        }
        // An IPv4-only file cannot answer IPv6 (the reader would error).
        if self.info.ip_version == 4 && ip.is_ipv6() {
            return Ok(None);
        }
        let r = self.reader.lookup(ip)?;
        Ok(r.has_data().then_some(r))
    }

    /// The record for a client address, or `None` when the address gives no evidence (special
    /// range, not in the database, other family).
    ///
    /// # Errors
    /// A corrupt record.
    pub fn lookup(&self, ip: &ClientIp) -> Result<Option<IpRecord>, MaxMindDbError> {
        let Some(r) = self.lookup_raw(ip.addr())? else {
            return Ok(None);
        };
        let rec = match self.info.layout {
            Layout::GeoIp2 => {
                let Some(g) = r.decode::<GeoIp2Record<'_>>()? else {
                    return Ok(None);
                };
                let country = code(g.country.and_then(|c| c.iso_code))
                    .or_else(|| code(g.registered_country.and_then(|c| c.iso_code)));
                let (point, accuracy_km) = match g.location {
                    Some(Location {
                        latitude: Some(lat),
                        longitude: Some(lon),
                        accuracy_radius,
                    }) => (
                        GpsPoint::new(lat.0, lon.0).ok(),
                        accuracy_radius.map(|a| a.0),
                    ),
                    _ => (None, None),
                };
                IpRecord {
                    country,
                    point,
                    accuracy_km,
                }
            }
            Layout::Flat => {
                let Some(f) = r.decode::<FlatRecord<'_>>()? else {
                    return Ok(None);
                };
                let point = match (f.latitude, f.longitude) {
                    (Some(lat), Some(lon)) => GpsPoint::new(lat.0, lon.0).ok(),
                    _ => None,
                };
                IpRecord {
                    country: code(f.country_code),
                    point,
                    accuracy_km: None,
                }
            }
            Layout::Anonymous => return Ok(None),
        };
        Ok((rec.country.is_some() || rec.point.is_some()).then_some(rec))
    }

    /// Anonymizer flags (for an Anonymous-IP layout database).
    ///
    /// # Errors
    /// A corrupt record.
    pub fn anon_flags(&self, ip: &ClientIp) -> Result<AnonFlags, MaxMindDbError> {
        let Some(r) = self.lookup_raw(ip.addr())? else {
            return Ok(AnonFlags::default());
        };
        let a = r.decode::<AnonRecord>()?.unwrap_or_default();
        Ok(AnonFlags {
            anonymous: a.is_anonymous,
            vpn: a.is_anonymous_vpn,
            hosting: a.is_hosting_provider,
            tor: a.is_tor_exit_node,
            public_proxy: a.is_public_proxy,
            residential_proxy: a.is_residential_proxy,
            operator_list: false,
        })
    }
}

impl fmt::Debug for IpDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpDatabase")
            .field("info", &self.info)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ranges() {
        for s in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_special(s.parse().expect("ip")), "{s}");
        }
        for s in [
            "8.8.8.8",
            "100.128.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "114.114.114.114",
        ] {
            assert!(!is_special(s.parse().expect("ip")), "{s}");
        }
    }
}

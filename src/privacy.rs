//! Types that hold raw location data. They print as `[redacted]` in `Debug` and `Display`, are
//! not `Serialize`, and give their value only to the code that needs it for the decision.

use std::fmt;
use thiserror::Error;

const REDACTED: &str = "[redacted]";

/// A precise position (WGS 84 degrees). Never printed, never serialised.
#[derive(Clone, Copy, PartialEq)]
pub struct GpsPoint {
    lat: f64,
    lon: f64,
}

/// Why a position was refused. Never holds the position itself.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum GpsError {
    /// Latitude or longitude is NaN or infinite.
    #[error("coordinates must be finite numbers")]
    NotFinite,
    /// Latitude outside ±90 or longitude outside ±180.
    #[error("latitude must be within ±90 and longitude within ±180")]
    OutOfRange,
}

impl GpsPoint {
    /// Checks and wraps a position.
    ///
    /// # Errors
    /// If a coordinate is not finite or out of range.
    pub fn new(lat: f64, lon: f64) -> Result<GpsPoint, GpsError> {
        if !lat.is_finite() || !lon.is_finite() {
            return Err(GpsError::NotFinite);
        }
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(GpsError::OutOfRange);
        }
        Ok(GpsPoint { lat, lon })
    }

    /// `[longitude, latitude]`, the order of the territory index. Use it for the lookup only.
    pub fn lon_lat(&self) -> [f64; 2] {
        [self.lon, self.lat]
    }
}

impl fmt::Debug for GpsPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for GpsPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A WiFi access point's MAC address (BSSID): it identifies a home, so it is personal data.
/// Never printed, never serialised; compared and looked up as a 48-bit number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bssid(u64);

/// Why a BSSID was refused. Never holds the value.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BssidError {
    /// Not 12 hex digits, bare or in pairs separated by `:` or `-` (one separator throughout).
    #[error("expected 12 hex digits, bare or as pairs separated by ':' or '-'")]
    Syntax,
}

impl Bssid {
    /// Parses `00:11:22:aa:bb:cc`, `00-11-22-AA-BB-CC` or `001122aabbcc` (any case).
    ///
    /// # Errors
    /// If it is none of these forms.
    pub fn parse(s: &str) -> Result<Bssid, BssidError> {
        let b = s.as_bytes();
        let digits: [u8; 12] = match b.len() {
            12 => b.try_into().map_err(|_| BssidError::Syntax)?,
            17 => {
                let sep = b[2];
                if !(sep == b':' || sep == b'-') {
                    return Err(BssidError::Syntax);
                }
                let mut d = [0u8; 12];
                for i in 0..6 {
                    if i < 5 && b[i * 3 + 2] != sep {
                        return Err(BssidError::Syntax);
                    }
                    d[i * 2] = b[i * 3];
                    d[i * 2 + 1] = b[i * 3 + 1];
                }
                d
            }
            _ => return Err(BssidError::Syntax),
        };
        let mut v = 0u64;
        for c in digits {
            let x = (c as char).to_digit(16).ok_or(BssidError::Syntax)?;
            v = v << 4 | u64::from(x);
        }
        Ok(Bssid(v))
    }

    /// Whether the address is multicast or locally administered (randomised phone hotspots,
    /// virtual interfaces): such an address names no fixed access point and is never looked
    /// up.
    pub fn is_unusable(self) -> bool {
        let first = (self.0 >> 40) as u8;
        first & 0b11 != 0
    }

    /// The address as a number, for the access-point database's sorted keys only.
    pub fn key(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Bssid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Bssid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gps_point_hides_its_value() {
        let p = GpsPoint::new(47.6964123, 8.6906789).expect("valid");
        for s in [format!("{p:?}"), format!("{p}"), format!("{:?}", Some(p))] {
            assert!(!s.contains("47.69") && !s.contains("8.69"), "{s}");
            assert!(s.contains("[redacted]"));
        }
        assert_eq!(p.lon_lat(), [8.6906789, 47.6964123]);
    }

    #[test]
    fn bssids_parse_in_every_form_and_hide_their_value() {
        let forms = [
            "00:00:5e:00:53:2a",
            "00:00:5E:00:53:2A",
            "00-00-5e-00-53-2a",
            "00005E00532a",
        ];
        let b = Bssid::parse(forms[0]).expect("valid");
        for f in forms {
            assert_eq!(Bssid::parse(f), Ok(b), "{f}");
        }
        assert_eq!(b.key(), 0x0000_5e00_532a);
        for s in [format!("{b:?}"), format!("{b}")] {
            assert_eq!(s, "[redacted]");
        }
        for bad in [
            "",
            "00:00:5e:00:53",
            "00:00:5e-00:53:2a",
            "00:00:5e:00:53:2g",
            "0000.5e00.532a",
            "00:00:5e:00:53:2a:",
            "+0:00:5e:00:53:2a",
        ] {
            assert_eq!(Bssid::parse(bad), Err(BssidError::Syntax), "{bad}");
        }
        assert!(!b.is_unusable());
        assert!(
            Bssid::parse("02:00:5e:00:53:2a").expect("ok").is_unusable(),
            "local"
        );
        assert!(
            Bssid::parse("01:00:5e:00:00:01").expect("ok").is_unusable(),
            "multicast"
        );
    }

    #[test]
    fn gps_point_checks_range() {
        assert_eq!(GpsPoint::new(f64::NAN, 0.0), Err(GpsError::NotFinite));
        assert_eq!(GpsPoint::new(0.0, f64::INFINITY), Err(GpsError::NotFinite));
        assert_eq!(GpsPoint::new(90.1, 0.0), Err(GpsError::OutOfRange));
        assert_eq!(GpsPoint::new(0.0, -180.5), Err(GpsError::OutOfRange));
        assert!(GpsPoint::new(-90.0, 180.0).is_ok());
    }
}

/// The client's IP address. Never printed, never serialised; logs get [`truncate_ip`] of it,
/// and only when the operator turns IP logging on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(std::net::IpAddr);

impl ClientIp {
    /// Wraps an address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the IPv4 address.
    pub fn new(ip: std::net::IpAddr) -> ClientIp {
        ClientIp(canonical_ip(ip))
    }

    /// The address, for the database lookup only.
    pub fn addr(&self) -> std::net::IpAddr {
        self.0
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4; everything else unchanged.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// The network an address is logged as, when IP logging is on: IPv4 /24, IPv6 /48
/// (IPv4-mapped IPv6 is treated as IPv4), as `a.b.c.0/24` or `2001:db8:1::/48`.
pub fn truncate_ip(ip: &ClientIp) -> String {
    match ip.0 {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

/// A mobile cell hint: the serving network's MCC and MNC (not the SIM's), optionally radio,
/// area (LAC/TAC) and cell id. Never printed, never serialised.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CellHint {
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Digits of the MNC as sent (2 or 3): `01` and `001` are different networks.
    pub mnc_digits: u8,
    /// Radio technology, if given.
    pub radio: Option<Radio>,
    /// Location or tracking area code, if given.
    pub area: Option<u32>,
    /// Cell id, if given.
    pub cell: Option<u64>,
}

/// Radio technology of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Radio {
    /// 2G.
    Gsm,
    /// 3G.
    Umts,
    /// 3G CDMA.
    Cdma,
    /// 4G.
    Lte,
    /// 5G.
    Nr,
}

impl std::str::FromStr for Radio {
    type Err = ();
    fn from_str(s: &str) -> Result<Radio, ()> {
        match s.to_ascii_lowercase().as_str() {
            "gsm" => Ok(Radio::Gsm),
            "umts" | "wcdma" => Ok(Radio::Umts),
            "cdma" => Ok(Radio::Cdma),
            "lte" => Ok(Radio::Lte),
            "nr" | "5g" => Ok(Radio::Nr),
            _ => Err(()),
        }
    }
}

impl fmt::Debug for CellHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for CellHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn client_ip_hides_its_value_and_truncates() {
        let v4 = ClientIp::new("198.51.100.77".parse::<IpAddr>().expect("ip"));
        let mapped = ClientIp::new("::ffff:198.51.100.77".parse::<IpAddr>().expect("ip"));
        let v6 = ClientIp::new("2001:db8:abcd:1234::77".parse::<IpAddr>().expect("ip"));
        for ip in [v4, mapped, v6] {
            for s in [format!("{ip:?}"), format!("{ip}")] {
                assert_eq!(s, "[redacted]");
            }
        }
        assert_eq!(v4, mapped, "IPv4-mapped IPv6 is the IPv4 address");
        assert_eq!(truncate_ip(&mapped), "198.51.100.0/24");
        assert_eq!(truncate_ip(&v6), "2001:db8:abcd::/48");
    }

    #[test]
    fn cell_hint_hides_its_value() {
        let c = CellHint {
            mcc: 262,
            mnc: 1,
            mnc_digits: 2,
            radio: Some(Radio::Lte),
            area: Some(47110),
            cell: Some(0x1A2B3C4),
        };
        for s in [format!("{c:?}"), format!("{c}")] {
            assert_eq!(s, "[redacted]");
        }
    }
}

//! Locate: turn a request's raw inputs into location [`Evidence`].
//!
//! * [`forwarded`]: which address is the client's (trusted proxies, XFF, `Forwarded`).
//! * [`ip`]: IP databases (GeoIP2 and flat layouts, anonymizer flags).
//! * [`hints`]: the app's on-device fix (GPS or WiFi), cell and WiFi hints.
//! * [`cell`]: MCC/MNC → countries, cell database → point.
//! * [`wifi`]: access points seen → the access-point database → point and radius.
//! * [`cidr`]: network sets.
//!
//! Evidence holds territory ids and redacted points; the raw inputs are dropped when the
//! request is.

pub mod cell;
pub mod cidr;
pub mod forwarded;
pub mod hints;
pub mod ip;
pub mod wifi;

use crate::privacy::{ClientIp, GpsPoint};
use crate::snapshot::Snapshot;
use crate::territory::TerritoryId;
pub use cell::{CellCountries, CellFix};
pub use hints::{FixKind, GpsHint, Hints};
pub use ip::AnonFlags;
pub use wifi::WifiScan;

/// What the client's IP address says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IpEvidence {
    /// The country territory, if the database knows it and it is a territory here.
    pub country: Option<TerritoryId>,
    /// A point and its accuracy radius in metres (city databases).
    pub point: Option<(GpsPoint, f64)>,
    /// Anonymizer flags.
    pub flags: AnonFlags,
}

/// What the serving cell says.
#[derive(Clone, Debug, PartialEq)]
pub struct CellEvidence {
    /// Countries of the network: one decides, several are ambiguous.
    pub countries: CellCountries,
    /// The cell's position and range, if the cell database knows the cell.
    pub fix: Option<CellFix>,
}

/// Where WiFi evidence came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WifiOrigin {
    /// The device's own WiFi positioning (`Geo-Hint: ...; src=wifi`).
    Device,
    /// Access points the device saw, placed with the access-point database (`Wifi-Hint`).
    Scan,
}

/// What WiFi says: a point and its accuracy radius.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WifiEvidence {
    /// The position (redacted in `Debug`).
    pub point: GpsPoint,
    /// Accuracy radius, metres.
    pub accuracy_m: f64,
    /// Where it came from.
    pub origin: WifiOrigin,
}

/// All location evidence of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Server-observed: the client address in the IP database.
    pub ip: Option<IpEvidence>,
    /// Client-claimed: a GPS fix.
    pub gps: Option<GpsHint>,
    /// Client-claimed: a WiFi position (the device's own, or from the access points it saw).
    pub wifi: Option<WifiEvidence>,
    /// Client-claimed: the serving cell.
    pub cell: Option<CellEvidence>,
}

/// Looks up the evidence for a client address and hints in a snapshot. A database error on a
/// corrupt record counts as no IP evidence (the decision then follows the policy for missing
/// evidence) rather than failing the request.
///
/// An on-device fix of kind [`FixKind::Wifi`] is WiFi evidence, not GPS. When the device sent
/// both its own WiFi fix and the access points it saw, the tighter of the two is kept. Access
/// points give evidence only when the snapshot has an access-point database and at least two
/// known access points agree ([`wifi::estimate`]).
pub fn gather(s: &Snapshot, client: Option<&ClientIp>, hints: &Hints) -> Evidence {
    let ip = client.and_then(|c| ip_evidence(s, c));
    let cell = hints.cell.as_ref().and_then(|h| {
        let countries = s.mcc.countries(h);
        let fix = s.cells.as_ref().and_then(|db| db.fix(h));
        (!countries.is_empty() || fix.is_some()).then_some(CellEvidence { countries, fix })
    });
    let (gps, device_wifi) = match hints.gps {
        Some(g) if g.kind == FixKind::Wifi => (
            None,
            Some(WifiEvidence {
                point: g.point,
                accuracy_m: g.accuracy_m,
                origin: WifiOrigin::Device,
            }),
        ),
        g => (g, None),
    };
    let scanned = hints
        .wifi
        .as_ref()
        .zip(s.aps.as_deref())
        .and_then(|(scan, db)| wifi::estimate(db, scan))
        .map(|f| WifiEvidence {
            point: f.point,
            accuracy_m: f.radius_m,
            origin: WifiOrigin::Scan,
        });
    let wifi = match (device_wifi, scanned) {
        (Some(d), Some(w)) => Some(if w.accuracy_m < d.accuracy_m { w } else { d }),
        (d, w) => d.or(w),
    };
    Evidence {
        ip,
        gps,
        wifi,
        cell,
    }
}

fn ip_evidence(s: &Snapshot, c: &ClientIp) -> Option<IpEvidence> {
    let mut flags = s
        .anonymizer
        .as_ref()
        .and_then(|db| db.anon_flags(c).ok())
        .unwrap_or_default();
    flags.operator_list = s.vpn_ranges.contains(c.addr());
    let rec = s.ip.as_ref().and_then(|db| db.lookup(c).ok().flatten());
    let country = rec.and_then(|r| r.country_str().and_then(|cc| s.territories.id(cc)));
    let point = rec.and_then(|r| {
        r.point
            .map(|p| (p, r.accuracy_km.unwrap_or(100.0) * 1000.0))
    });
    (country.is_some() || point.is_some() || flags.any()).then_some(IpEvidence {
        country,
        point,
        flags,
    })
}

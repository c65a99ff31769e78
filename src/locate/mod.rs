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

use crate::privacy::GpsPoint;
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

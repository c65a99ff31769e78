//! Locate: turn a request's raw inputs into location [`Evidence`].
//!
//! * [`forwarded`]: which address is the client's (trusted proxies, XFF, `Forwarded`).
//! * [`ip`]: IP databases (GeoIP2 and flat layouts, anonymizer flags).
//! * [`hints`]: the app's GPS and cell hints.
//! * [`cell`]: MCC/MNC → countries, cell database → point.
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

use crate::privacy::{CellHint, ClientIp, GpsPoint};
use crate::snapshot::Snapshot;
use crate::territory::TerritoryId;
pub use cell::{CellCountries, CellFix};
pub use hints::GpsHint;
pub use ip::AnonFlags;

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

/// All location evidence of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Server-observed: the client address in the IP database.
    pub ip: Option<IpEvidence>,
    /// Client-claimed: a GPS fix.
    pub gps: Option<GpsHint>,
    /// Client-claimed: the serving cell.
    pub cell: Option<CellEvidence>,
}

/// Looks up the evidence for a client address and hints in a snapshot. A database error on a
/// corrupt record counts as no IP evidence (the decision then follows the policy for missing
/// evidence) rather than failing the request.
pub fn gather(
    s: &Snapshot,
    client: Option<&ClientIp>,
    gps: Option<GpsHint>,
    cell: Option<&CellHint>,
) -> Evidence {
    let ip = client.and_then(|c| ip_evidence(s, c));
    let cell = cell.and_then(|h| {
        let countries = s.mcc.countries(h);
        let fix = s.cells.as_ref().and_then(|db| db.fix(h));
        (!countries.is_empty() || fix.is_some()).then_some(CellEvidence { countries, fix })
    });
    Evidence { ip, gps, cell }
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

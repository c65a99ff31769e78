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
    fn gps_point_checks_range() {
        assert_eq!(GpsPoint::new(f64::NAN, 0.0), Err(GpsError::NotFinite));
        assert_eq!(GpsPoint::new(0.0, f64::INFINITY), Err(GpsError::NotFinite));
        assert_eq!(GpsPoint::new(90.1, 0.0), Err(GpsError::OutOfRange));
        assert_eq!(GpsPoint::new(0.0, -180.5), Err(GpsError::OutOfRange));
        assert!(GpsPoint::new(-90.0, 180.0).is_ok());
    }
}

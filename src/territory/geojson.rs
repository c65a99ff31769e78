//! Reading territory files: RFC 7946 GeoJSON FeatureCollections of Polygon and MultiPolygon
//! features, the territory id in `properties.id` (or the feature's own `id` member).
//!
//! Every ring of a feature is kept and the feature is read with the even-odd rule, so ring
//! orientation does not matter and holes, enclaves and islands in lakes all work. Rings must not
//! cross the ±180° meridian (RFC 7946 §3.1.9: split them there); touching it is fine.

use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use thiserror::Error;

/// Most vertices one feature may have (the largest country in the default world has ~0.3 M).
pub const MAX_VERTICES_PER_FEATURE: usize = 5_000_000;

/// One territory as read from a file: its id and all its rings, closed (first = last vertex).
#[derive(Debug, Clone)]
pub struct RawTerritory {
    /// The territory id (`DE`, `XK`, or a custom id).
    pub id: Box<str>,
    /// All rings, outer and inner alike (the even-odd rule gives them their meaning).
    pub rings: Vec<Vec<[f64; 2]>>,
}

/// What is wrong with one feature (or the whole file) of a territory file.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TerritoryFileError {
    /// The file is not JSON or not a FeatureCollection of the expected shape.
    #[error("not a GeoJSON FeatureCollection: {0}")]
    NotFeatureCollection(String),
    /// A feature has no usable id.
    #[error("feature #{index}: no territory id (set properties.id to a non-empty string)")]
    MissingId {
        /// Position of the feature in the file.
        index: usize,
    },
    /// Two features carry the same id.
    #[error("feature {id:?}: duplicate territory id (also feature #{first})")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// Position of the first feature with that id.
        first: usize,
    },
    /// The geometry is missing or not a Polygon/MultiPolygon.
    #[error("feature {id:?}: geometry must be Polygon or MultiPolygon, found {found}")]
    GeometryType {
        /// The feature's id.
        id: String,
        /// What was found.
        found: String,
    },
    /// The coordinates do not have the shape the geometry type needs.
    #[error("feature {id:?}: bad coordinates: {reason}")]
    Coordinates {
        /// The feature's id.
        id: String,
        /// The parser's reason.
        reason: String,
    },
    /// The feature has no ring at all.
    #[error("feature {id:?}: empty polygon (no rings)")]
    Empty {
        /// The feature's id.
        id: String,
    },
    /// A ring has fewer than four positions or is not closed.
    #[error("feature {id:?}: ring {ring}: {reason}")]
    Ring {
        /// The feature's id.
        id: String,
        /// Ring number within the feature (0-based, over all polygons).
        ring: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A coordinate is NaN, infinite or outside ±180 / ±90.
    #[error(
        "feature {id:?}: ring {ring}: coordinate out of range (longitude must be within ±180, latitude within ±90)"
    )]
    OutOfRange {
        /// The feature's id.
        id: String,
        /// Ring number within the feature.
        ring: usize,
    },
    /// An edge jumps more than 180° of longitude: the ring crosses the antimeridian unsplit.
    #[error(
        "feature {id:?}: ring {ring} crosses the ±180° meridian; split it there (RFC 7946 §3.1.9)"
    )]
    CrossesAntimeridian {
        /// The feature's id.
        id: String,
        /// Ring number within the feature.
        ring: usize,
    },
    /// The feature has more vertices than [`MAX_VERTICES_PER_FEATURE`].
    #[error("feature {id:?}: {count} vertices, more than the limit of {MAX_VERTICES_PER_FEATURE}")]
    TooManyVertices {
        /// The feature's id.
        id: String,
        /// How many it has.
        count: usize,
    },
}

#[derive(Deserialize)]
struct FeatureCollection<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    features: Vec<Feature<'a>>,
}

#[derive(Deserialize)]
struct Feature<'a> {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(borrow, default)]
    geometry: Option<Geometry<'a>>,
}

#[derive(Deserialize)]
struct Geometry<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow, default)]
    coordinates: Option<&'a RawValue>,
}

/// A GeoJSON position: longitude, latitude, and any further members (altitude) ignored.
struct Position([f64; 2]);

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Position;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a position [longitude, latitude]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Position, A::Error> {
                let x: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let y: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Position([x, y]))
            }
        }
        d.deserialize_seq(V)
    }
}

fn feature_id(f: &Feature<'_>) -> Option<String> {
    let from_props = f
        .properties
        .as_ref()
        .and_then(|p| p.get("id"))
        .and_then(|v| v.as_str());
    let from_member = f.id.as_ref().and_then(|v| v.as_str());
    from_props
        .or(from_member)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Parses a territory file's text. Returns every territory read, and every problem found (a
/// feature with problems is left out of the territories).
pub fn parse(text: &str) -> (Vec<RawTerritory>, Vec<TerritoryFileError>) {
    let fc: FeatureCollection<'_> = match serde_json::from_str(text) {
        Ok(fc) => fc,
        Err(e) => {
            return (
                Vec::new(),
                vec![TerritoryFileError::NotFeatureCollection(e.to_string())],
            );
        }
    };
    if fc.kind != "FeatureCollection" {
        return (
            Vec::new(),
            vec![TerritoryFileError::NotFeatureCollection(format!(
                "type is {:?}",
                fc.kind
            ))],
        );
    }
    let mut out = Vec::with_capacity(fc.features.len());
    let mut problems = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, f) in fc.features.iter().enumerate() {
        let Some(id) = feature_id(f) else {
            problems.push(TerritoryFileError::MissingId { index });
            continue;
        };
        if let Some(&first) = seen.get(&id) {
            problems.push(TerritoryFileError::DuplicateId { id, first });
            continue;
        }
        seen.insert(id.clone(), index);
        match read_geometry(&id, f.geometry.as_ref()) {
            Ok(rings) => out.push(RawTerritory {
                id: id.into_boxed_str(),
                rings,
            }),
            Err(e) => problems.push(e),
        }
    }
    (out, problems)
}

fn read_geometry(
    id: &str,
    g: Option<&Geometry<'_>>,
) -> Result<Vec<Vec<[f64; 2]>>, TerritoryFileError> {
    let bad_type = |found: &str| TerritoryFileError::GeometryType {
        id: id.to_owned(),
        found: found.to_owned(),
    };
    let g = g.ok_or_else(|| bad_type("null"))?;
    let raw = g
        .coordinates
        .ok_or_else(|| TerritoryFileError::Coordinates {
            id: id.to_owned(),
            reason: "no coordinates member".to_owned(),
        })?;
    let coord_err = |e: serde_json::Error| TerritoryFileError::Coordinates {
        id: id.to_owned(),
        reason: e.to_string(),
    };
    let polygons: Vec<Vec<Vec<Position>>> = match g.kind.as_str() {
        "Polygon" => vec![serde_json::from_str(raw.get()).map_err(coord_err)?],
        "MultiPolygon" => serde_json::from_str(raw.get()).map_err(coord_err)?,
        other => return Err(bad_type(other)),
    };
    let rings: Vec<Vec<[f64; 2]>> = polygons
        .into_iter()
        .flatten()
        .map(|r| r.into_iter().map(|p| p.0).collect())
        .collect();
    check_rings(id, &rings)?;
    Ok(rings)
}

fn check_rings(id: &str, rings: &[Vec<[f64; 2]>]) -> Result<(), TerritoryFileError> {
    if rings.is_empty() {
        return Err(TerritoryFileError::Empty { id: id.to_owned() });
    }
    let count: usize = rings.iter().map(Vec::len).sum();
    if count > MAX_VERTICES_PER_FEATURE {
        return Err(TerritoryFileError::TooManyVertices {
            id: id.to_owned(),
            count,
        });
    }
    for (ring, r) in rings.iter().enumerate() {
        let ring_err = |reason| TerritoryFileError::Ring {
            id: id.to_owned(),
            ring,
            reason,
        };
        if r.len() < 4 {
            return Err(ring_err("fewer than 4 positions"));
        }
        if r.first() != r.last() {
            return Err(ring_err("not closed (first and last positions differ)"));
        }
        for p in r {
            let ok = p[0].is_finite()
                && p[1].is_finite()
                && (-180.0..=180.0).contains(&p[0])
                && (-90.0..=90.0).contains(&p[1]);
            if !ok {
                return Err(TerritoryFileError::OutOfRange {
                    id: id.to_owned(),
                    ring,
                });
            }
        }
        if r.windows(2).any(|w| (w[0][0] - w[1][0]).abs() > 180.0) {
            return Err(TerritoryFileError::CrossesAntimeridian {
                id: id.to_owned(),
                ring,
            });
        }
        if r.windows(2).all(|w| w[0] == w[1]) {
            return Err(ring_err("all positions are the same point"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<RawTerritory, Vec<TerritoryFileError>> {
        let (mut t, p) = parse(json);
        if p.is_empty() {
            Ok(t.remove(0))
        } else {
            Err(p)
        }
    }

    #[test]
    fn reads_polygon_and_multipolygon_with_altitude() {
        let t = one(r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"X"},
            "geometry":{"type":"MultiPolygon","coordinates":[[[[0,0,5],[1,0,5],[1,1,5],[0,0,5]]],[[[2,2],[3,2],[3,3],[2,2]]]]}}]}"#)
        .expect("valid");
        assert_eq!(&*t.id, "X");
        assert_eq!(t.rings.len(), 2);
        assert_eq!(t.rings[0][1], [1.0, 0.0]);
    }

    #[test]
    fn feature_member_id_is_a_fallback() {
        let t = one(
            r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"Y","properties":null,
            "geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#,
        )
        .expect("valid");
        assert_eq!(&*t.id, "Y");
    }

    #[test]
    fn names_each_problem() {
        let (t, p) = parse(
            r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
            {"type":"Feature","properties":{"id":"A"},"geometry":{"type":"Point","coordinates":[0,0]}},
            {"type":"Feature","properties":{"id":"B"},"geometry":{"type":"Polygon","coordinates":[]}},
            {"type":"Feature","properties":{"id":"C"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,91],[0,0]]]}},
            {"type":"Feature","properties":{"id":"D"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1]]]}},
            {"type":"Feature","properties":{"id":"E"},"geometry":{"type":"Polygon","coordinates":[[[179,0],[-179,0],[-179,1],[179,0]]]}},
            {"type":"Feature","properties":{"id":"F"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
            {"type":"Feature","properties":{"id":"F"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}},
            {"type":"Feature","properties":{"id":"G"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],["x",1],[0,0]]]}}
            ]}"#,
        );
        assert_eq!(t.len(), 1, "only the first F is good");
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("feature #0") && text[0].contains("no territory id"));
        assert!(text[1].contains("\"A\"") && text[1].contains("Point"));
        assert!(text[2].contains("\"B\"") && text[2].contains("empty polygon"));
        assert!(text[3].contains("\"C\"") && text[3].contains("out of range"));
        assert!(text[4].contains("\"D\"") && text[4].contains("fewer than 4"));
        assert!(text[5].contains("\"E\"") && text[5].contains("±180"));
        assert!(text[6].contains("\"F\"") && text[6].contains("duplicate"));
        assert!(text[7].contains("\"G\"") && text[7].contains("bad coordinates"));
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn not_a_feature_collection() {
        let (_, p) = parse(r#"{"type":"Feature","features":[]}"#);
        assert!(matches!(p[0], TerritoryFileError::NotFeatureCollection(_)));
        let (_, p) = parse("{");
        assert!(matches!(p[0], TerritoryFileError::NotFeatureCollection(_)));
    }
}

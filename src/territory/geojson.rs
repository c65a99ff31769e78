//! Reading territory files: RFC 7946 GeoJSON FeatureCollections of Polygon and MultiPolygon
//! features, the territory id in `properties.id` (or the feature's own `id` member).
//!
//! Every ring of a feature is kept and the feature is read with the even-odd rule, so ring
//! orientation does not matter and holes, enclaves and islands in lakes all work. Rings must not
//! cross the ±180° meridian (RFC 7946 §3.1.9: split them there); touching it is fine.

use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
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
struct FeatureCollection {
    #[serde(rename = "type")]
    kind: String,
    features: Vec<Feature>,
}

#[derive(Deserialize)]
struct Feature {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    geometry: Option<Geometry>,
}

#[derive(Deserialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    coordinates: Option<Nested>,
}

/// A `coordinates` member read in one pass whatever its nesting (the object's `type` may come
/// after it): every innermost array of positions becomes a ring, and `depth` tells a Polygon
/// (3) from a MultiPolygon (4) afterwards. Wrong content (strings, mixed nesting) is kept as
/// `error` so that only this feature is refused, not the file.
struct Nested {
    rings: Vec<Vec<[f64; 2]>>,
    depth: u8,
    error: Option<&'static str>,
}

/// What one array element turned out to be.
enum Elem {
    Number(f64),
    Position([f64; 2]),
    /// A ring or a deeper array, already recorded, with its depth (a ring is 2).
    Container(u8),
    Invalid(&'static str),
}

struct ElemSeed<'a> {
    rings: &'a mut Vec<Vec<[f64; 2]>>,
}

impl<'de> de::DeserializeSeed<'de> for ElemSeed<'_> {
    type Value = Elem;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Elem, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElemSeed<'_> {
    type Value = Elem;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nested arrays of positions")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Elem, E> {
        Ok(Elem::Number(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Elem, E> {
        Ok(Elem::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Elem, E> {
        Ok(Elem::Number(v as f64))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Elem, E> {
        Ok(Elem::Invalid("a coordinate is a string, not a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Elem, E> {
        Ok(Elem::Invalid("a coordinate is a boolean, not a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Elem, E> {
        Ok(Elem::Invalid("a coordinate is null"))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Elem, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Elem::Invalid("an object inside coordinates"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elem, A::Error> {
        let mut numbers = 0usize;
        let mut xy = [0.0; 2];
        let mut ring: Vec<[f64; 2]> = Vec::new();
        let mut depth = None;
        let mut invalid = None;
        while let Some(e) = seq.next_element_seed(ElemSeed {
            rings: &mut *self.rings,
        })? {
            let kind = match e {
                Elem::Number(v) => {
                    // Members after longitude and latitude (altitude) are ignored.
                    if numbers < 2 {
                        xy[numbers] = v;
                    }
                    numbers += 1;
                    1
                }
                Elem::Position(p) => {
                    ring.push(p);
                    2
                }
                Elem::Container(d) => d.saturating_add(1),
                Elem::Invalid(why) => {
                    invalid.get_or_insert(why);
                    continue;
                }
            };
            if *depth.get_or_insert(kind) != kind {
                invalid.get_or_insert("arrays of different nesting side by side");
            }
        }
        if let Some(why) = invalid {
            return Ok(Elem::Invalid(why));
        }
        Ok(match depth {
            Some(1) if numbers >= 2 => Elem::Position(xy),
            Some(1) => Elem::Invalid("a position needs a longitude and a latitude"),
            Some(2) => {
                self.rings.push(ring);
                Elem::Container(2)
            }
            Some(d) => Elem::Container(d),
            // An empty array: no rings (or a ring without positions, which the checks refuse).
            None => Elem::Container(2),
        })
    }
}

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut rings = Vec::new();
        let (depth, error) = match d.deserialize_any(ElemSeed { rings: &mut rings })? {
            Elem::Container(d) => (d, None),
            Elem::Invalid(why) => (0, Some(why)),
            Elem::Number(_) | Elem::Position(_) => {
                (0, Some("coordinates must be an array of rings"))
            }
        };
        Ok(Nested {
            rings,
            depth,
            error,
        })
    }
}

fn feature_id(f: &Feature) -> Option<String> {
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
    let fc: FeatureCollection = match serde_json::from_str(text) {
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
    for (index, f) in fc.features.into_iter().enumerate() {
        let Some(id) = feature_id(&f) else {
            problems.push(TerritoryFileError::MissingId { index });
            continue;
        };
        if let Some(&first) = seen.get(&id) {
            problems.push(TerritoryFileError::DuplicateId { id, first });
            continue;
        }
        seen.insert(id.clone(), index);
        match read_geometry(&id, f.geometry) {
            Ok(rings) => out.push(RawTerritory {
                id: id.into_boxed_str(),
                rings,
            }),
            Err(e) => problems.push(e),
        }
    }
    (out, problems)
}

fn read_geometry(id: &str, g: Option<Geometry>) -> Result<Vec<Vec<[f64; 2]>>, TerritoryFileError> {
    let bad_type = |found: &str| TerritoryFileError::GeometryType {
        id: id.to_owned(),
        found: found.to_owned(),
    };
    let g = g.ok_or_else(|| bad_type("null"))?;
    let want = match g.kind.as_str() {
        "Polygon" => 3,
        "MultiPolygon" => 4,
        other => return Err(bad_type(other)),
    };
    let coord_err = |reason: String| TerritoryFileError::Coordinates {
        id: id.to_owned(),
        reason,
    };
    let n = g
        .coordinates
        .ok_or_else(|| coord_err("no coordinates member".to_owned()))?;
    if let Some(why) = n.error {
        return Err(coord_err(why.to_owned()));
    }
    // An empty array reads as depth 2 (no rings), which check_rings reports as empty.
    if n.depth != want && !n.rings.is_empty() {
        return Err(coord_err(format!(
            "nesting depth {} does not fit {}",
            n.depth, g.kind
        )));
    }
    check_rings(id, &n.rings)?;
    Ok(n.rings)
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

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

/// Most vertices one feature may have. The largest country in the default world (CN) has
/// 80,199; this leaves room for data at full OpenStreetMap resolution. Counted while reading, so
/// a larger feature is refused without being held in memory.
pub const MAX_VERTICES_PER_FEATURE: usize = 5_000_000;

/// Most vertices one file may have (the default world has 1.86 M in 250 features): bounds the
/// memory and the index build time of one file to what a few full-resolution worlds need.
pub const MAX_VERTICES_PER_FILE: usize = 25_000_000;

/// Largest territory file read, in bytes of (decompressed) GeoJSON text. The default world is
/// 37 MB decompressed; a file over this is refused before it is parsed.
pub const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

/// Deepest JSON nesting read anywhere in a territory file. This is serde_json's recursion
/// limit, which is what keeps a file of a million `[` from overflowing the stack. Inside
/// `coordinates`, anything deeper than a MultiPolygon (4) is skipped without recursion and
/// refused for that feature alone.
pub const MAX_JSON_DEPTH: usize = 128;

/// Deepest `coordinates` nesting that has a meaning (MultiPolygon: polygons, rings, positions,
/// numbers).
const MAX_COORDINATE_DEPTH: usize = 4;

/// Longest territory id, in bytes (ids appear in licence files, headers and error messages).
pub const MAX_ID_LEN: usize = 64;

/// The size limits a territory file is read under. [`parse`] uses the defaults, which are the
/// constants above; tests and fuzzing lower them to reach the checks with small inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest text, bytes.
    pub file_bytes: usize,
    /// Most vertices of one feature. Vertices past [`MAX_VERTICES_PER_FEATURE`] are never held,
    /// whatever this says.
    pub vertices_per_feature: usize,
    /// Most vertices of the whole file.
    pub vertices_per_file: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: MAX_FILE_BYTES,
            vertices_per_feature: MAX_VERTICES_PER_FEATURE,
            vertices_per_file: MAX_VERTICES_PER_FILE,
        }
    }
}

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
    /// The feature has more vertices than the limit ([`MAX_VERTICES_PER_FEATURE`]).
    #[error("feature {id:?}: {count} vertices, more than the limit of {limit}")]
    TooManyVertices {
        /// The feature's id.
        id: String,
        /// How many it has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The file's features together have more vertices than the limit
    /// ([`MAX_VERTICES_PER_FILE`]).
    #[error("{count} vertices in the file, more than the limit of {limit}")]
    TooManyVerticesInFile {
        /// How many the file has (counting only features read whole).
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The text is longer than the limit ([`MAX_FILE_BYTES`]).
    #[error("{bytes} bytes of GeoJSON, more than the limit of {limit}")]
    TooLarge {
        /// The text's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// JSON nested deeper than [`MAX_JSON_DEPTH`] somewhere in the file.
    #[error("JSON nested deeper than the limit of {MAX_JSON_DEPTH} levels ({position})")]
    TooDeep {
        /// Where: line and column.
        position: String,
    },
    /// The territory id is longer than [`MAX_ID_LEN`] bytes (the id is not repeated).
    #[error("feature #{index}: territory id of {len} bytes, more than the limit of {MAX_ID_LEN}")]
    IdTooLong {
        /// Position of the feature in the file.
        index: usize,
        /// The id's length in bytes.
        len: usize,
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
/// (3) from a MultiPolygon (4) afterwards. Wrong content (strings, mixed nesting, nesting
/// deeper than a MultiPolygon) is kept as `error` so that only this feature is refused, not
/// the file.
struct Nested {
    rings: Vec<Vec<[f64; 2]>>,
    /// Positions seen; past [`MAX_VERTICES_PER_FEATURE`] they are counted but not kept.
    vertices: usize,
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

/// What the reader of one `coordinates` member keeps while it descends.
struct Reader {
    rings: Vec<Vec<[f64; 2]>>,
    vertices: usize,
}

struct ElemSeed<'a> {
    reader: &'a mut Reader,
    /// Nesting level of the value read (the `coordinates` array itself is 1).
    level: usize,
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
        if self.level > MAX_COORDINATE_DEPTH {
            // Skipped, not read: serde_json skips a value it is told to ignore in a loop,
            // without recursion, however deep it is.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Elem::Invalid("arrays nested deeper than a MultiPolygon"));
        }
        let mut numbers = 0usize;
        let mut xy = [0.0; 2];
        let mut ring: Vec<[f64; 2]> = Vec::new();
        let mut depth = None;
        let mut invalid = None;
        while let Some(e) = seq.next_element_seed(ElemSeed {
            reader: &mut *self.reader,
            level: self.level + 1,
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
                    self.reader.vertices += 1;
                    if self.reader.vertices <= MAX_VERTICES_PER_FEATURE {
                        ring.push(p);
                    }
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
                self.reader.rings.push(ring);
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
        let mut reader = Reader {
            rings: Vec::new(),
            vertices: 0,
        };
        let (depth, error) = match d.deserialize_any(ElemSeed {
            reader: &mut reader,
            level: 1,
        })? {
            Elem::Container(d) => (d, None),
            Elem::Invalid(why) => (0, Some(why)),
            Elem::Number(_) | Elem::Position(_) => {
                (0, Some("coordinates must be an array of rings"))
            }
        };
        Ok(Nested {
            rings: reader.rings,
            vertices: reader.vertices,
            depth,
            error,
        })
    }
}

/// Longest text quoted from the file in a problem message.
const MAX_QUOTED: usize = 80;

/// Text from the file (or a parser message quoting it) cut to [`MAX_QUOTED`] bytes, so that a
/// problem stays one readable line whatever the file holds.
fn shorten(s: &str) -> String {
    if s.len() <= MAX_QUOTED {
        return s.to_owned();
    }
    let mut end = MAX_QUOTED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// serde_json's message with any quoted value shortened, and the position kept.
fn json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&at) {
        Some(message) => format!("{}{at}", shorten(message)),
        None => shorten(&full),
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
///
/// # Limits
/// [`MAX_FILE_BYTES`] of text, [`MAX_JSON_DEPTH`] levels of nesting, [`MAX_ID_LEN`] bytes per
/// id, [`MAX_VERTICES_PER_FEATURE`] and [`MAX_VERTICES_PER_FILE`] vertices.
pub fn parse(text: &str) -> (Vec<RawTerritory>, Vec<TerritoryFileError>) {
    parse_with(text, &Limits::default())
}

/// [`parse`] under other size limits.
pub fn parse_with(text: &str, limits: &Limits) -> (Vec<RawTerritory>, Vec<TerritoryFileError>) {
    if text.len() > limits.file_bytes {
        return (
            Vec::new(),
            vec![TerritoryFileError::TooLarge {
                bytes: text.len(),
                limit: limits.file_bytes,
            }],
        );
    }
    let fc: FeatureCollection = match serde_json::from_str(text) {
        Ok(fc) => fc,
        // serde_json stops at MAX_JSON_DEPTH with this message (it has no error code for it).
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            return (
                Vec::new(),
                vec![TerritoryFileError::TooDeep {
                    position: format!("line {}, column {}", e.line(), e.column()),
                }],
            );
        }
        Err(e) => {
            return (
                Vec::new(),
                vec![TerritoryFileError::NotFeatureCollection(json_error(&e))],
            );
        }
    };
    if fc.kind != "FeatureCollection" {
        return (
            Vec::new(),
            vec![TerritoryFileError::NotFeatureCollection(format!(
                "type is {:?}",
                shorten(&fc.kind)
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
        if id.len() > MAX_ID_LEN {
            problems.push(TerritoryFileError::IdTooLong {
                index,
                len: id.len(),
            });
            continue;
        }
        if let Some(&first) = seen.get(&id) {
            problems.push(TerritoryFileError::DuplicateId { id, first });
            continue;
        }
        seen.insert(id.clone(), index);
        match read_geometry(&id, f.geometry, limits) {
            Ok(rings) => out.push(RawTerritory {
                id: id.into_boxed_str(),
                rings,
            }),
            Err(e) => problems.push(e),
        }
    }
    let count: usize = out.iter().flat_map(|t| &t.rings).map(Vec::len).sum();
    if count > limits.vertices_per_file {
        problems.push(TerritoryFileError::TooManyVerticesInFile {
            count,
            limit: limits.vertices_per_file,
        });
        return (Vec::new(), problems);
    }
    (out, problems)
}

fn read_geometry(
    id: &str,
    g: Option<Geometry>,
    limits: &Limits,
) -> Result<Vec<Vec<[f64; 2]>>, TerritoryFileError> {
    let bad_type = |found: &str| TerritoryFileError::GeometryType {
        id: id.to_owned(),
        found: shorten(found),
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
    let limit = limits.vertices_per_feature.min(MAX_VERTICES_PER_FEATURE);
    if n.vertices > limit {
        return Err(TerritoryFileError::TooManyVertices {
            id: id.to_owned(),
            count: n.vertices,
            limit,
        });
    }
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
mod tests;

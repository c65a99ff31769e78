//! Availability maps: the world's countries as SVG, coloured by the decision for one track
//! (`regiongate map`, the admin page `/admin/tracks/{id}`) or by the rights a data change
//! gains and loses (`regiongate diff --map`).
//!
//! * [`World`] is the countries file simplified for drawing: each ring reduced with
//!   Ramer–Douglas–Peucker (`geo`'s `Simplify`, [`SIMPLIFY_DEGREES`]) and projected
//!   equirectangularly (plate carrée) onto a [`WIDTH`] × [`HEIGHT`] box, so a pixel of the map
//!   is a fixed longitude/latitude step (the tests read colours at countries' positions).
//!   Rings smaller than a pixel are dropped unless they are all a territory has.
//! * Countries are coloured by deciding the question with the country as the evidence, the way
//!   `check --country` does. Custom territories are not drawn.
//! * The output is self-contained: no scripts, no external fonts or images.

use crate::decide::{Question, Verdict, decide};
use crate::diff::Diff;
use crate::snapshot::{DataSource, Snapshot};
use crate::territory::geojson;
use chrono::{DateTime, Utc};
use geo::{LineString, Simplify};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use thiserror::Error;

/// Map width in SVG units (pixels at 100 %).
pub const WIDTH: f64 = 1000.0;
/// Map height: 180° of latitude at the same scale as longitude.
pub const HEIGHT: f64 = 500.0;
/// Height of the legend band below the map.
pub const LEGEND_HEIGHT: f64 = 60.0;
/// Simplification tolerance in degrees (0.05° ≈ 5.5 km, a seventh of a pixel at this scale).
pub const SIMPLIFY_DEGREES: f64 = 0.05;

/// Largest decompressed countries file read for a map (as for a snapshot).
const MAX_COUNTRIES_BYTES: u64 = 512 * 1024 * 1024;

/// Why the map geometry could not be read.
#[derive(Debug, Error)]
pub enum MapError {
    /// The countries file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The data has no countries file.
    #[error("no countries.geojson[.gz] in the data")]
    NoCountries,
    /// The countries file does not parse.
    #[error("countries file: {0}")]
    Geometry(String),
}

/// The countries, simplified and projected: territory code → SVG path data.
#[derive(Debug, Default)]
pub struct World {
    shapes: Vec<(Box<str>, String)>,
}

/// Projects longitude/latitude to map coordinates.
pub fn project(lon: f64, lat: f64) -> (f64, f64) {
    ((lon + 180.0) / 360.0 * WIDTH, (90.0 - lat) / 180.0 * HEIGHT)
}

fn path_of(rings: &[Vec<[f64; 2]>]) -> String {
    let mut kept: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut largest: Option<(f64, Vec<(f64, f64)>)> = None;
    for ring in rings {
        let line: LineString<f64> = ring.iter().map(|p| (p[0], p[1])).collect();
        let simple = line.simplify(&SIMPLIFY_DEGREES);
        let pts: Vec<(f64, f64)> = simple.points().map(|p| project(p.x(), p.y())).collect();
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for &(x, y) in ring
            .iter()
            .map(|p| project(p[0], p[1]))
            .collect::<Vec<_>>()
            .iter()
        {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        let size = (x1 - x0).max(y1 - y0);
        if pts.len() >= 4 && size >= 1.0 {
            kept.push(pts);
        } else if largest.as_ref().is_none_or(|(s, _)| size > *s) {
            // A microstate or small island: a one-pixel square at its place.
            let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let sq = vec![
                (cx - 0.75, cy - 0.75),
                (cx + 0.75, cy - 0.75),
                (cx + 0.75, cy + 0.75),
                (cx - 0.75, cy + 0.75),
            ];
            largest = Some((size, sq));
        }
    }
    if kept.is_empty()
        && let Some((_, sq)) = largest
    {
        kept.push(sq);
    }
    let mut d = String::new();
    for ring in kept {
        for (i, (x, y)) in ring.iter().enumerate() {
            let _ = write!(d, "{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, x, y);
        }
        d.push('Z');
    }
    d
}

impl World {
    /// Reads the countries file of a data source.
    ///
    /// # Errors
    /// [`MapError`] when the file is missing, unreadable or not GeoJSON.
    pub fn load(source: &DataSource) -> Result<World, MapError> {
        let (name, raw): (String, Vec<u8>) = match source {
            DataSource::Embedded => {
                let f = crate::snapshot::embedded_file("countries.geojson.gz")
                    .or_else(|| crate::snapshot::embedded_file("countries.geojson"))
                    .ok_or(MapError::NoCountries)?;
                ("countries.geojson.gz".into(), f.to_vec())
            }
            DataSource::Dir(d) => {
                let gz = d.join("countries.geojson.gz");
                let plain = d.join("countries.geojson");
                let p = if gz.exists() {
                    gz
                } else if plain.exists() {
                    plain
                } else {
                    return Err(MapError::NoCountries);
                };
                let bytes = std::fs::read(&p).map_err(|source| MapError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                (p.display().to_string(), bytes)
            }
        };
        let text = if name.ends_with(".gz") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(MAX_COUNTRIES_BYTES)
                .read_to_string(&mut s)
                .map_err(|source| MapError::Io { path: name, source })?;
            s
        } else {
            String::from_utf8(raw).map_err(|e| MapError::Geometry(e.to_string()))?
        };
        World::from_geojson(&text)
    }

    /// Builds the map geometry from GeoJSON text (a FeatureCollection of countries).
    ///
    /// # Errors
    /// [`MapError::Geometry`] when the text is not a FeatureCollection or no feature parses.
    pub fn from_geojson(text: &str) -> Result<World, MapError> {
        let (territories, errors) = geojson::parse(text);
        if territories.is_empty() {
            return Err(MapError::Geometry(
                errors
                    .first()
                    .map_or_else(|| "no features".to_owned(), ToString::to_string),
            ));
        }
        let mut shapes: Vec<(Box<str>, String)> = territories
            .iter()
            .map(|t| (t.id.clone(), path_of(&t.rings)))
            .collect();
        shapes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(World { shapes })
    }

    /// The territory codes drawn, in order.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.shapes.iter().map(|(c, _)| &**c)
    }

    /// The world of a data source, kept while its geometry (`geometry_key`) is unchanged: the
    /// admin page reads and simplifies the countries once, not per request.
    ///
    /// # Errors
    /// As [`World::load`].
    pub fn cached(source: &DataSource, geometry_key: &str) -> Result<Arc<World>, MapError> {
        type Cache = Mutex<Option<(String, Arc<World>)>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(None));
        if let Ok(c) = cache.lock()
            && let Some((k, w)) = c.as_ref()
            && k == geometry_key
        {
            return Ok(w.clone());
        }
        let w = Arc::new(World::load(source)?);
        if let Ok(mut c) = cache.lock() {
            *c = Some((geometry_key.to_owned(), w.clone()));
        }
        Ok(w)
    }
}

/// A class of the map with its colour and legend text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shade {
    /// Playable.
    Allow,
    /// Not playable.
    Deny,
    /// Rights gained (diff).
    Gained,
    /// Rights lost (diff).
    Lost,
    /// Some rights gained and others lost (diff).
    Mixed,
    /// No change (diff).
    Unchanged,
    /// The country is not a territory of the data.
    NoData,
}

impl Shade {
    /// The CSS class name.
    pub fn class(self) -> &'static str {
        match self {
            Shade::Allow => "allow",
            Shade::Deny => "deny",
            Shade::Gained => "gained",
            Shade::Lost => "lost",
            Shade::Mixed => "mixed",
            Shade::Unchanged => "unchanged",
            Shade::NoData => "nodata",
        }
    }

    /// The fill colour, `#rrggbb`.
    pub fn colour(self) -> &'static str {
        match self {
            Shade::Allow | Shade::Gained => "#2e7d32",
            Shade::Deny | Shade::Unchanged => "#c8c8c8",
            Shade::Lost => "#c62828",
            Shade::Mixed => "#f9a825",
            Shade::NoData => "#ffffff",
        }
    }

    /// The legend text.
    pub fn label(self) -> &'static str {
        match self {
            Shade::Allow => "playable",
            Shade::Deny => "not playable",
            Shade::Gained => "rights gained",
            Shade::Lost => "rights lost",
            Shade::Mixed => "gained and lost",
            Shade::Unchanged => "unchanged",
            Shade::NoData => "not in the data",
        }
    }
}

/// One country on the map: its shade and the hover text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Colouring {
    /// Territory code → (shade, detail for the tooltip).
    pub by_code: BTreeMap<String, (Shade, String)>,
    /// Title lines above the legend.
    pub title: Vec<String>,
}

/// XML text escaping.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Colours the countries by the decision for `q` at `at`.
pub fn track_colouring(
    world: &World,
    snap: &Snapshot,
    q: &Question<'_>,
    at: DateTime<Utc>,
) -> Colouring {
    let mut by_code = BTreeMap::new();
    for code in world.codes() {
        let entry = match snap.territories.id(code) {
            None => (Shade::NoData, "not a territory of the data".to_owned()),
            Some(t) => {
                let d = decide(&snap.licenses, q, &[t], at);
                let shade = if d.verdict == Verdict::Allow {
                    Shade::Allow
                } else {
                    Shade::Deny
                };
                (
                    shade,
                    format!("{} ({})", d.verdict.as_str(), d.reason.as_str()),
                )
            }
        };
        by_code.insert(code.to_owned(), entry);
    }
    Colouring {
        by_code,
        title: vec![
            format!(
                "track {} · {} · {} · at {}",
                q.track,
                q.use_type.as_str(),
                q.tier.as_str(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            format!("data version {}", snap.version),
        ],
    }
}

/// Colours the countries by the rights a diff gains and loses (over all selectors and every
/// use/tier).
pub fn diff_colouring(world: &World, d: &Diff) -> Colouring {
    let (mut gained, mut lost) = (
        BTreeMap::<&str, usize>::new(),
        BTreeMap::<&str, usize>::new(),
    );
    for s in &d.selectors {
        let g: BTreeSet<&str> = s.gained.values().flatten().map(String::as_str).collect();
        let l: BTreeSet<&str> = s.lost.values().flatten().map(String::as_str).collect();
        for c in g {
            *gained.entry(c).or_insert(0) += 1;
        }
        for c in l {
            *lost.entry(c).or_insert(0) += 1;
        }
    }
    let by_code = world
        .codes()
        .map(|c| {
            let (g, l) = (
                gained.get(c).copied().unwrap_or(0),
                lost.get(c).copied().unwrap_or(0),
            );
            let shade = match (g > 0, l > 0) {
                (true, true) => Shade::Mixed,
                (true, false) => Shade::Gained,
                (false, true) => Shade::Lost,
                (false, false) => Shade::Unchanged,
            };
            (
                c.to_owned(),
                (shade, format!("{g} selector(s) gained, {l} lost")),
            )
        })
        .collect();
    Colouring {
        by_code,
        title: vec![
            format!(
                "rights at {}: {} selector(s) changed",
                d.at,
                d.selectors.len()
            ),
            format!("data version {} → {}", d.versions[0], d.versions[1]),
        ],
    }
}

/// The map as a standalone SVG document: one `<path>` per country (`id="t-DE"`, class by
/// shade, a `<title>` tooltip), the title lines and a legend with counts.
pub fn svg(world: &World, c: &Colouring) -> String {
    let mut out = String::with_capacity(1 << 20);
    let total_h = HEIGHT + LEGEND_HEIGHT;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_h}" viewBox="0 0 {WIDTH} {total_h}" font-family="sans-serif" font-size="12">"#
    );
    out.push_str("<style>path{stroke:#ffffff;stroke-width:0.3;fill-rule:evenodd}");
    let shades: BTreeSet<Shade> = c.by_code.values().map(|(s, _)| *s).collect();
    for s in &shades {
        let _ = write!(out, ".{}{{fill:{}}}", s.class(), s.colour());
    }
    out.push_str("</style>");
    let _ = write!(
        out,
        r##"<rect id="sea" x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#eaf2fa"/><g id="countries">"##
    );
    for (code, d) in &world.shapes {
        let (shade, detail) = c
            .by_code
            .get(&**code)
            .cloned()
            .unwrap_or((Shade::NoData, String::new()));
        let _ = write!(
            out,
            r#"<path id="t-{0}" class="{1}" data-territory="{0}" d="{2}"><title>{0}: {3}</title></path>"#,
            esc(code),
            shade.class(),
            d,
            esc(&detail)
        );
    }
    out.push_str("</g>");
    let _ = write!(
        out,
        r##"<g id="legend"><rect x="0" y="{HEIGHT}" width="{WIDTH}" height="{LEGEND_HEIGHT}" fill="#ffffff"/>"##
    );
    for (i, line) in c.title.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="8" y="{}">{}</text>"#,
            HEIGHT + 18.0 + 16.0 * i as f64,
            esc(line)
        );
    }
    let mut x = 560.0;
    for s in &shades {
        let n = c.by_code.values().filter(|(t, _)| t == s).count();
        let _ = write!(
            out,
            r##"<g class="key" data-shade="{0}"><rect x="{x}" y="{1}" width="14" height="14" fill="{2}" stroke="#888888"/><text x="{3}" y="{4}">{5} ({n})</text></g>"##,
            s.class(),
            HEIGHT + 12.0,
            s.colour(),
            x + 18.0,
            HEIGHT + 24.0,
            s.label()
        );
        x += 145.0;
    }
    out.push_str("</g></svg>\n");
    out
}

/// The admin page: the SVG inline at the top left, then the countries by shade. No scripts,
/// no external resources.
pub fn page(world: &World, c: &Colouring, heading: &str) -> String {
    let mut out = String::with_capacity(1 << 20);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{margin:0;font-family:sans-serif}}svg{{display:block}}main{{padding:8px}}\
         td{{padding:2px 8px;vertical-align:top}}</style></head><body>",
        esc(heading)
    );
    out.push_str(&svg(world, c));
    let _ = write!(out, "<main><h1>{}</h1><table>", esc(heading));
    let mut by_shade: BTreeMap<Shade, Vec<&str>> = BTreeMap::new();
    for (code, (s, _)) in &c.by_code {
        by_shade.entry(*s).or_default().push(code);
    }
    for (s, codes) in by_shade {
        let _ = write!(
            out,
            "<tr><th>{} ({})</th><td>{}</td></tr>",
            s.label(),
            codes.len(),
            esc(&codes.join(" "))
        );
    }
    out.push_str("</table></main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::{Tier, UseType};

    fn square(id: &str, x: f64, y: f64, s: f64) -> String {
        format!(
            r#"{{"type":"Feature","properties":{{"id":"{id}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x},{y}],[{x1},{y}],[{x1},{y1}],[{x},{y1}],[{x},{y}]]]}}}}"#,
            x1 = x + s,
            y1 = y + s
        )
    }

    fn countries() -> String {
        format!(
            r#"{{"type":"FeatureCollection","features":[{},{},{}]}}"#,
            square("DE", 0.0, 0.0, 10.0),
            square("US", 20.0, 0.0, 10.0),
            square("VA", 40.0, 40.0, 0.01)
        )
    }

    fn snapshot() -> Snapshot {
        let lic = r#"
            [[track]]
            id = "T1"
            [[dealset]]
            selector = { track = "T1" }
            updated = "2025-01-01"
            deals = [{ id = "d", territories = ["DE"], start = "2025-01-01", uses = ["on_demand_stream"] }]
        "#;
        let geo = format!(
            r#"{{"type":"FeatureCollection","features":[{},{}]}}"#,
            square("DE", 0.0, 0.0, 10.0),
            square("US", 20.0, 0.0, 10.0)
        );
        Snapshot::from_memory([
            ("countries.geojson", geo.into_bytes()),
            ("licenses/t.toml", lic.as_bytes().to_vec()),
        ])
        .expect("snapshot")
    }

    fn path_element<'a>(svg: &'a str, code: &str) -> &'a str {
        let start = svg.find(&format!("<path id=\"t-{code}\"")).expect("path");
        let end = svg[start..].find("</path>").expect("end") + start;
        &svg[start..end]
    }

    #[test]
    fn the_track_map_colours_each_country_by_its_decision() {
        let world = World::from_geojson(&countries()).expect("world");
        assert_eq!(world.codes().collect::<Vec<_>>(), ["DE", "US", "VA"]);
        let snap = snapshot();
        let q = Question {
            track: "T1",
            use_type: UseType::OnDemandStream,
            tier: Tier::Premium,
        };
        let at = "2025-06-01T00:00:00Z".parse().expect("time");
        let c = track_colouring(&world, &snap, &q, at);
        let s = svg(&world, &c);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<path ").count(), 3, "one path per country");
        let de = path_element(&s, "DE");
        assert!(
            de.contains("class=\"allow\"") && de.contains("<title>DE: allow (licensed)"),
            "{de}"
        );
        // DE spans lon 0..10, lat 0..10: x 500..527.8, y 222.2..250.
        assert!(
            de.contains("d=\"M500.0 250.0L527.8 250.0L527.8 222.2L500.0 222.2"),
            "{de}"
        );
        let us = path_element(&s, "US");
        assert!(
            us.contains("class=\"deny\"") && us.contains("not_licensed_in_territory"),
            "{us}"
        );
        let va = path_element(&s, "VA");
        assert!(va.contains("class=\"nodata\""), "{va}");
        assert!(
            va.contains("d=\"M"),
            "a sub-pixel country is still drawn: {va}"
        );
        assert!(s.contains(".allow{fill:#2e7d32}") && s.contains(".deny{fill:#c8c8c8}"));
        assert!(
            s.contains("playable (1)")
                && s.contains("not playable (1)")
                && s.contains("not in the data (1)")
        );
        assert!(s.contains(&format!("data version {}", snap.version)));
        assert!(s.contains("track T1 · on_demand_stream · premium · at 2025-06-01T00:00:00Z"));
        let before = track_colouring(
            &world,
            &snap,
            &q,
            "2024-06-01T00:00:00Z".parse().expect("t"),
        );
        assert_eq!(before.by_code["DE"].0, Shade::Deny, "before the window");
    }

    #[test]
    fn the_diff_map_colours_gains_losses_and_both() {
        let world = World::from_geojson(&countries()).expect("world");
        let rights = |codes: &[&str]| {
            BTreeMap::from([(
                "on_demand_stream/premium".to_owned(),
                codes.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>(),
            )])
        };
        let sel = |g: &[&str], l: &[&str]| crate::diff::SelectorDiff {
            selector: "track X".into(),
            change: crate::diff::SelectorChange::Changed,
            gained: rights(g),
            lost: rights(l),
        };
        let d = Diff {
            at: "2025-01-01T00:00:00Z".into(),
            versions: ["a".into(), "b".into()],
            selectors: vec![sel(&["DE"], &["US"]), sel(&["US"], &[])],
            territories: vec![],
        };
        let c = diff_colouring(&world, &d);
        assert_eq!(c.by_code["DE"].0, Shade::Gained);
        assert_eq!(c.by_code["US"].0, Shade::Mixed);
        assert_eq!(c.by_code["VA"].0, Shade::Unchanged);
        let s = svg(&world, &c);
        assert!(path_element(&s, "US").contains("1 selector(s) gained, 1 lost"));
        assert!(s.contains("data version a → b"));
        let p = page(&world, &c, "diff <a> & <b>");
        assert!(p.contains("<title>diff &lt;a&gt; &amp; &lt;b&gt;</title>"));
        assert!(
            !p.contains("<script") && !p.contains("src="),
            "self-contained"
        );
    }

    #[test]
    fn a_broken_countries_file_is_an_error() {
        assert!(matches!(
            World::from_geojson("{}"),
            Err(MapError::Geometry(_))
        ));
        let dir = tempfile::tempdir().expect("tmp");
        assert!(matches!(
            World::load(&DataSource::Dir(dir.path().to_owned())),
            Err(MapError::NoCountries)
        ));
    }
}

//! The default world: tricky places, exclusivity of countries, and agreement of the index with
//! a brute-force `geo` containment test on random points.

use crate::util::{codes_at, world};
use geo::{BoundingRect, Contains, Coord, LineString, Point, Polygon, Rect};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regiongate::territory::{TerritoryKind, geojson};
use std::io::Read;
use std::sync::OnceLock;

fn country_at(lat: f64, lon: f64) -> Option<String> {
    let w = world();
    let hits = w.index.locate([lon, lat]);
    w.territories
        .country_of(&hits)
        .map(|t| w.territories.code(t).to_owned())
}

#[test]
fn tricky_places_resolve_to_their_country() {
    let cases: &[(&str, f64, f64, &str)] = &[
        ("Llívia (Spanish exclave in France)", 42.4636, 1.9714, "ES"),
        (
            "Büsingen (German exclave in Switzerland)",
            47.6964,
            8.6906,
            "DE",
        ),
        (
            "Campione d'Italia (Italian exclave in Switzerland)",
            45.9686,
            8.9711,
            "IT",
        ),
        (
            "Baarle-Hertog (Belgian enclave in the Netherlands)",
            51.43660,
            4.92634,
            "BE",
        ),
        (
            "Baarle-Nassau (Dutch counter-enclave inside a Belgian enclave)",
            51.43875,
            4.92330,
            "NL",
        ),
        (
            "Jungholz (Austria, reachable only through Germany)",
            47.5748,
            10.4461,
            "AT",
        ),
        ("Vatican City", 41.9029, 12.4534, "VA"),
        ("San Marino", 43.9356, 12.4473, "SM"),
        ("Monaco", 43.7384, 7.4246, "MC"),
        (
            "Maseru (Lesotho, inside South Africa)",
            -29.3100,
            27.4800,
            "LS",
        ),
        (
            "Suva, Fiji (east of the meridian)",
            -18.1416,
            178.4419,
            "FJ",
        ),
        ("Lakeba, Fiji (west of the meridian)", -18.2, -178.8, "FJ"),
        (
            "Uelen (Russia, west of the meridian)",
            66.1594,
            -169.8100,
            "RU",
        ),
        ("Attu (USA, east of the meridian)", 52.90, 172.90, "US"),
        ("Hong Kong (not China)", 22.3193, 114.1694, "HK"),
        ("Macau (not China)", 22.1987, 113.5439, "MO"),
        (
            "San Juan (Puerto Rico, not the US)",
            18.4655,
            -66.1057,
            "PR",
        ),
        ("Saint-Denis (Réunion, not France)", -20.8789, 55.4481, "RE"),
        ("Mariehamn (Åland, not Finland)", 60.0973, 19.9348, "AX"),
        (
            "Longyearbyen (Svalbard, not Norway)",
            78.2232,
            15.6267,
            "SJ",
        ),
        (
            "Flying Fish Cove (Christmas Island, not Australia)",
            -10.4218,
            105.6790,
            "CX",
        ),
        (
            "Sea 2.4 km off Saint-Denis: Réunion's waters, not France's",
            -20.8500,
            55.4500,
            "RE",
        ),
        (
            "Sea 5 km off Basse-Terre: Guadeloupe's waters",
            16.0000,
            -61.7900,
            "GP",
        ),
        (
            "Sea 19 km off San Juan: Puerto Rico's waters, not the US's",
            18.6450,
            -66.1060,
            "PR",
        ),
        (
            "Sea 8 km off Saipan: Northern Mariana Islands' waters",
            15.1800,
            145.6300,
            "MP",
        ),
        (
            "Sea off Hong Kong Island: Hong Kong's waters",
            22.1800,
            114.2000,
            "HK",
        ),
        ("Berlin", 52.52, 13.405, "DE"),
        ("Pristina (Kosovo)", 42.6629, 21.1655, "XK"),
        ("Beijing", 39.9042, 116.4074, "CN"),
        ("New York", 40.7128, -74.0060, "US"),
        ("Paris", 48.8566, 2.3522, "FR"),
    ];
    let mut wrong = Vec::new();
    for &(name, lat, lon, want) in cases {
        let got = country_at(lat, lon);
        if got.as_deref() != Some(want) {
            wrong.push(format!("{name}: want {want}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(
        country_at(0.0, -140.0),
        None,
        "mid-Pacific is in no country"
    );
    assert_eq!(
        country_at(-30.0, -30.0),
        None,
        "mid-Atlantic is in no country"
    );
}

#[test]
fn custom_territory_comes_after_the_country() {
    // On Lake Constance near Friedrichshafen: Germany and the sample custom territory.
    assert_eq!(codes_at(world(), 47.62, 9.45), ["DE", "LAKE_CONSTANCE"]);
    assert_eq!(codes_at(world(), 47.50, 9.70)[1], "LAKE_CONSTANCE");
    assert_eq!(codes_at(world(), 52.52, 13.405), ["DE"]);
}

/// Every ring of every default country as a `geo` polygon with its bounding box, for brute force.
/// A country id, a ring's bounding box and the ring as a polygon.
type Ring = (String, Rect<f64>, Polygon<f64>);

fn rings() -> &'static Vec<Ring> {
    static R: OnceLock<Vec<Ring>> = OnceLock::new();
    R.get_or_init(|| {
        let gz = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/regions/countries.geojson.gz"
        ))
        .expect("countries file");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gzip");
        let (ts, problems) = geojson::parse(&text);
        assert!(problems.is_empty(), "{problems:?}");
        ts.into_iter()
            .flat_map(|t| {
                let id = t.id.to_string();
                t.rings.into_iter().map(move |r| {
                    let ls = LineString::from(
                        r.into_iter()
                            .map(|p| Coord { x: p[0], y: p[1] })
                            .collect::<Vec<_>>(),
                    );
                    let poly = Polygon::new(ls, vec![]);
                    (
                        id.clone(),
                        poly.bounding_rect().expect("non-empty ring"),
                        poly,
                    )
                })
            })
            .collect()
    })
}

/// Countries containing a point by brute force: even-odd over `geo` ring containment.
fn brute(lon: f64, lat: f64) -> Vec<String> {
    let p = Point::new(lon, lat);
    let mut inside: std::collections::BTreeMap<&str, bool> = Default::default();
    for (id, rect, poly) in rings() {
        if rect.min().x <= lon
            && lon <= rect.max().x
            && rect.min().y <= lat
            && lat <= rect.max().y
            && poly.contains(&p)
        {
            let e = inside.entry(id.as_str()).or_insert(false);
            *e = !*e;
        }
    }
    inside
        .into_iter()
        .filter(|(_, v)| *v)
        .map(|(k, _)| k.to_owned())
        .collect()
}

fn countries_of(lon: f64, lat: f64) -> Vec<String> {
    let w = world();
    let mut v: Vec<String> = w
        .index
        .locate([lon, lat])
        .iter()
        .filter(|&&t| w.territories.kind(t) == TerritoryKind::Country)
        .map(|&t| w.territories.code(t).to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn index_agrees_with_brute_force_on_random_points() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261128);
    let mut land = 0;
    for i in 0..3000 {
        // Uniform on the sphere.
        let lon = rng.gen_range(-180.0..180.0);
        let lat = (rng.gen_range(-1.0f64..1.0)).asin().to_degrees();
        let (fast, slow) = (countries_of(lon, lat), brute(lon, lat));
        assert_eq!(fast, slow, "point #{i}");
        land += usize::from(!fast.is_empty());
    }
    assert!(
        land > 300,
        "a fair share of random points is in some country: {land}"
    );
}

#[test]
fn index_agrees_with_brute_force_near_borders() {
    // Points within ~100 m of random vertices: where the fast path's edge tests matter.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let r = rings();
    for i in 0..3000 {
        let (_, _, poly) = &r[rng.gen_range(0..r.len())];
        let pts = &poly.exterior().0;
        let c = pts[rng.gen_range(0..pts.len())];
        // Offsets that would leave the plane are mirrored back inside: a point clamped onto
        // x = ±180 would sit on a border, where `geo` says "outside" for every territory and
        // the index applies its documented border rule.
        let (dx, dy): (f64, f64) = (rng.gen_range(-0.001..0.001), rng.gen_range(-0.001..0.001));
        let lon = if (c.x + dx).abs() < 180.0 {
            c.x + dx
        } else {
            c.x - dx
        };
        let lat = if (c.y + dy).abs() < 90.0 {
            c.y + dy
        } else {
            c.y - dy
        };
        assert_eq!(
            countries_of(lon, lat),
            brute(lon, lat),
            "point #{i} ({lat}, {lon})"
        );
    }
}

#[test]
fn countries_are_exclusive() {
    // Uniform points, and points right next to border vertices where overlaps would hide.
    let w = world();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let r = rings();
    for i in 0..200_000 {
        let (lon, lat) = if i % 2 == 0 {
            (rng.gen_range(-180.0..180.0), rng.gen_range(-90.0..90.0))
        } else {
            let (_, _, poly) = &r[rng.gen_range(0..r.len())];
            let pts = &poly.exterior().0;
            let c = pts[rng.gen_range(0..pts.len())];
            (
                (c.x + rng.gen_range(-1e-4..1e-4)).clamp(-180.0, 180.0),
                (c.y + rng.gen_range(-1e-4..1e-4)).clamp(-90.0, 90.0),
            )
        };
        let hits = w.index.locate([lon, lat]);
        let countries = hits
            .iter()
            .filter(|&&t| w.territories.kind(t) == TerritoryKind::Country)
            .count();
        assert!(countries <= 1, "point #{i} is in {countries} countries");
    }
}

#[test]
fn world_has_the_expected_countries() {
    let w = world();
    let countries: Vec<&str> = w
        .territories
        .ids()
        .filter(|&t| w.territories.kind(t) == TerritoryKind::Country)
        .map(|t| w.territories.code(t))
        .collect();
    assert!(countries.len() >= 240, "{}", countries.len());
    for cc in [
        "DE", "XK", "HK", "PR", "VA", "SJ", "AX", "CX", "NF", "GF", "BQ",
    ] {
        assert!(countries.contains(&cc), "{cc} missing");
    }
}

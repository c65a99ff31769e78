#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! Point lookups on the default world, against peers measured in the same run on the same points:
//!
//! * `regiongate`: the territory index (exact, OSM resolution with territorial waters);
//! * `country-boundaries`: the crate of that name (simplified land-only raster, ODbL data);
//! * `rtree-geo`: an rstar R-tree of ring bounding boxes, then `geo`'s exact `contains` on the
//!   candidates: the obvious design, kept here as the measured reason for the index.
//!
//! Point sets (fixed seeds): uniform on the sphere, random land points (uniform points that fall
//! in a country), and points within 100 m of a border vertex.
//!
//! Run: `cargo bench --bench lookup`. Figures go to `benches/README.md`.

use country_boundaries::{BOUNDARIES_ODBL_360X180, CountryBoundaries, LatLon};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use geo::{BoundingRect, Contains, Coord, LineString, Point, Polygon};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regiongate::territory::geojson;
use regiongate::{DataSource, Snapshot};
use rstar::{AABB, RTree, RTreeObject};
use std::hint::black_box;
use std::io::Read;

const N: usize = 2000;

struct Ring {
    id: u16,
    poly: Polygon<f64>,
    env: AABB<[f64; 2]>,
}

impl RTreeObject for Ring {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.env
    }
}

fn rings() -> Vec<Ring> {
    let gz = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/regions/countries.geojson.gz"
    ))
    .expect("countries file");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gzip");
    let (ts, _) = geojson::parse(&text);
    ts.into_iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.rings.into_iter().map(move |r| {
                let poly = Polygon::new(
                    LineString::from(
                        r.into_iter()
                            .map(|p| Coord { x: p[0], y: p[1] })
                            .collect::<Vec<_>>(),
                    ),
                    vec![],
                );
                let b = poly.bounding_rect().expect("ring");
                Ring {
                    id: i as u16,
                    env: AABB::from_corners([b.min().x, b.min().y], [b.max().x, b.max().y]),
                    poly,
                }
            })
        })
        .collect()
}

/// Point sets as `[lon, lat]`.
fn point_sets(world: &Snapshot, rings: &[Ring]) -> Vec<(&'static str, Vec<[f64; 2]>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut sphere = || {
        [
            rng.gen_range(-180.0..180.0),
            rng.gen_range(-1.0f64..1.0).asin().to_degrees(),
        ]
    };
    let uniform: Vec<[f64; 2]> = (0..N).map(|_| sphere()).collect();
    let mut land = Vec::with_capacity(N);
    while land.len() < N {
        let p = sphere();
        if world
            .territories
            .country_of(&world.index.locate(p))
            .is_some()
        {
            land.push(p);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    // ~100 m is about 0.0009° of latitude.
    let border: Vec<[f64; 2]> = (0..N)
        .map(|_| {
            let r = &rings[rng.gen_range(0..rings.len())];
            let v = r.poly.exterior().0[rng.gen_range(0..r.poly.exterior().0.len())];
            [
                (v.x + rng.gen_range(-0.0009..0.0009)).clamp(-180.0, 180.0),
                (v.y + rng.gen_range(-0.0009..0.0009)).clamp(-90.0, 90.0),
            ]
        })
        .collect();
    vec![("uniform", uniform), ("land", land), ("border", border)]
}

fn bench(c: &mut Criterion) {
    let world = Snapshot::load(&DataSource::Embedded).expect("embedded data");
    let rings = rings();
    let peer = CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180).expect("peer data");
    let tree = RTree::bulk_load(
        rings
            .iter()
            .map(|r| Ring {
                id: r.id,
                poly: r.poly.clone(),
                env: r.env,
            })
            .collect(),
    );
    for (name, points) in point_sets(&world, &rings) {
        let mut g = c.benchmark_group(format!("lookup/{name}"));
        g.throughput(Throughput::Elements(points.len() as u64));
        g.bench_with_input(BenchmarkId::new("regiongate", N), &points, |b, pts| {
            b.iter(|| {
                for p in pts {
                    black_box(world.index.locate(black_box(*p)));
                }
            })
        });
        g.bench_with_input(
            BenchmarkId::new("country-boundaries", N),
            &points,
            |b, pts| {
                b.iter(|| {
                    for p in pts {
                        if let Ok(ll) = LatLon::new(p[1], p[0]) {
                            black_box(peer.ids(black_box(ll)));
                        }
                    }
                })
            },
        );
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::new("rtree-geo", N), &points, |b, pts| {
            b.iter(|| {
                for p in pts {
                    let pt = Point::new(p[0], p[1]);
                    let mut parity = [false; 300];
                    for r in tree.locate_in_envelope_intersecting(&AABB::from_point(*p)) {
                        if r.poly.contains(&pt) {
                            parity[usize::from(r.id)] ^= true;
                        }
                    }
                    black_box(parity.iter().position(|&x| x));
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

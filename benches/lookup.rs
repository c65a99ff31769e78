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
//! Accuracy discs (`disc/RADIUS`, on the border points): `regiongate` is the exact disc query
//! (`territories_within`); `sampled-24` is the check it replaced, 24 point lookups on two rings
//! (16 on the circle, 8 at half the radius), which misses anything between its samples. After
//! the criterion groups, each radius's per-query median and p99 are printed (every query timed
//! alone, 5 passes over the points).
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
use std::time::Instant;

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
    let border = point_sets(&world, &rings)
        .into_iter()
        .find(|(n, _)| *n == "border")
        .map(|(_, p)| p)
        .expect("border points");
    for r in RADII {
        let mut g = c.benchmark_group(format!("disc/{r}m"));
        g.throughput(Throughput::Elements(border.len() as u64));
        g.bench_with_input(BenchmarkId::new("regiongate", N), &border, |b, pts| {
            b.iter(|| {
                for p in pts {
                    black_box(world.index.territories_within(black_box(*p), r));
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("sampled-24", N), &border, |b, pts| {
            b.iter(|| {
                for p in pts {
                    black_box(sampled(&world, black_box(*p), r));
                }
            })
        });
        g.finish();
    }
    for r in RADII {
        let mut times = Vec::with_capacity(border.len() * 5);
        for _ in 0..5 {
            for p in &border {
                let t = Instant::now();
                black_box(world.index.territories_within(black_box(*p), r));
                times.push(t.elapsed().as_nanos() as u64);
            }
        }
        times.sort_unstable();
        let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
        eprintln!(
            "disc/{r}m per query near borders: median {} ns, p99 {} ns",
            q(0.5),
            q(0.99)
        );
    }
}

/// Radii of the disc benches, metres.
const RADII: [f64; 4] = [20.0, 1_000.0, 10_000.0, 50_000.0];

/// The sampled check the disc query replaced: territories at 16 points on the circle and 8 at
/// half the radius (spherical destinations), plus the centre.
fn sampled(world: &Snapshot, p: [f64; 2], r: f64) -> usize {
    const R: f64 = 6_371_008.8;
    let (phi1, l1) = (p[1].to_radians(), p[0].to_radians());
    let mut n = world.index.locate(p).len();
    for i in 0..24 {
        let (b, d) = if i < 16 {
            (f64::from(i) * std::f64::consts::TAU / 16.0, r)
        } else {
            (
                (f64::from(i - 16) + 0.5) * std::f64::consts::TAU / 8.0,
                r / 2.0,
            )
        };
        let delta = d / R;
        let phi2 = (phi1.sin() * delta.cos() + phi1.cos() * delta.sin() * b.cos()).asin();
        let l2 =
            l1 + (b.sin() * delta.sin() * phi1.cos()).atan2(delta.cos() - phi1.sin() * phi2.sin());
        let lon = (l2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        n += world.index.locate([lon, phi2.to_degrees()]).len();
    }
    n
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

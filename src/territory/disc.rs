//! The disc query: every territory a geodesic disc touches (a location with an accuracy
//! radius), exactly up to a stated bound.
//!
//! # Shape
//! A disc touches a territory when the territory contains its centre (the point index answers
//! that) or when the territory's border comes within the radius of the centre. Countries'
//! borders are long and detailed (1.9 M vertices in the default world), so they are cut into
//! chains of up to [`CHAIN_EDGES`] consecutive edges, and an `rstar` R-tree over the chains'
//! longitude/latitude boxes, bulk-loaded once per geometry and shared between snapshots with
//! the point index, gives the chains near a disc. A territory wholly inside the disc (a
//! microstate in a City-database circle) has all of its border within the radius, so it is
//! found the same way.
//!
//! # Distances, and the worst error
//! Borders are straight lines in longitude/latitude (that is what the point index tests
//! against); distances are geodesic on the WGS 84 ellipsoid. For each candidate edge, two plane
//! distances bound the true distance from the centre to the edge:
//!
//! * On the ellipsoid `ds² = M(φ)² dφ² + P(φ)² dλ²` (`M` the meridional radius of curvature, `P`
//!   the radius of the parallel). Any point within `r` of the centre lies in the latitude band
//!   `φ₀ ± (r + 1 m) / M_min`, because `|dφ/ds| ≤ 1 / M ≤ 1 / M_min` on any path.
//! * With the smallest `M` and `P` of that band as plane scales, the plane distance from the
//!   centre to the edge is a *lower* bound of the geodesic distance (every path is at least
//!   that long); with the largest, the plane distance to the edge's closest point is an *upper*
//!   bound (the straight plane path to it is a path on the earth no longer than that).
//! * Lower bound over `r`: not touched. Upper bound within `r`: touched. Between the two (a
//!   band a few hundred metres wide at 50 km, well under a millimetre at 20 m), the edge is
//!   decided by branch and bound on exact geodesic distances (Karney's algorithm, through
//!   `geo::Geodesic`, accurate to 15 nm): the distance at an interval's middle, less an upper
//!   bound of the interval's half length, bounds the distance over the interval from below.
//!   An interval whose half length is at most [`TOLERANCE_M`] and which cannot be ruled out
//!   counts as touching.
//!
//! So a territory whose border comes within `r` is always reported, and a reported territory's
//! border comes within `r + 0.5 m` (the tolerance), at every radius, at the poles and across
//! ±180°. The one exception, a disc built to lie tangent to many edges at once, is bounded in
//! cost instead: after [`MAX_EXACT_EVALUATIONS`] geodesic evaluations in one query, edges still
//! undecided count as touching (an error towards "touches", never towards "allow"). The tests
//! check the query against a brute-force reference on random discs worldwide.

use super::TerritoryId;
use super::index::Hits;
use geo::{Distance, Geodesic, Point};
use rstar::{AABB, RStarInsertionStrategy, RTree, RTreeObject, RTreeParams};
use smallvec::SmallVec;
use std::ops::{ControlFlow, Range};

type Pt = [f64; 2];

/// Edges per chain: the R-tree's elements are runs of this many consecutive border edges. The
/// boxes of 8 edges of the default world are a few km wide, so a disc of 20 m near a border
/// meets one or two chains, and the tree has ~0.3 M elements instead of 1.9 M.
pub const CHAIN_EDGES: usize = 8;

/// The branch and bound stops refining an interval of an edge at this half length (metres);
/// such an interval that cannot be ruled out counts as touching. It is the worst error of the
/// query, towards "touches".
pub const TOLERANCE_M: f64 = 0.5;

/// Geodesic evaluations one query may spend on edges the plane bounds leave undecided; beyond
/// it they count as touching. Only discs built to be tangent to borders reach it.
pub const MAX_EXACT_EVALUATIONS: u32 = 2048;

/// WGS 84 semi-major axis, metres.
const WGS84_A: f64 = 6_378_137.0;
/// WGS 84 first eccentricity squared.
const WGS84_E2: f64 = {
    let f = 1.0 / 298.257_223_563;
    f * (2.0 - f)
};
/// The smallest meridional radius of curvature (at the equator), metres.
const M_MIN: f64 = WGS84_A * (1.0 - WGS84_E2);

/// Meridional radius of curvature at latitude `lat` (degrees), in metres per degree.
fn m_per_deg(lat: f64) -> f64 {
    let s = lat.to_radians().sin();
    M_MIN / (1.0 - WGS84_E2 * s * s).powf(1.5) * std::f64::consts::PI / 180.0
}

/// Radius of the parallel at latitude `lat` (degrees), in metres per degree of longitude.
fn p_per_deg(lat: f64) -> f64 {
    let (s, c) = lat.to_radians().sin_cos();
    (WGS84_A * c / (1.0 - WGS84_E2 * s * s).sqrt()).max(0.0) * std::f64::consts::PI / 180.0
}

/// The smallest and largest absolute latitude of a latitude range.
fn abs_range(lo: f64, hi: f64) -> (f64, f64) {
    let min = if lo <= 0.0 && hi >= 0.0 {
        0.0
    } else {
        lo.abs().min(hi.abs())
    };
    (min, lo.abs().max(hi.abs()))
}

/// Distance from the origin to the plane segment `a`–`b`.
#[inline]
fn origin_to_segment(a: Pt, b: Pt) -> f64 {
    let d = [b[0] - a[0], b[1] - a[1]];
    let dd = d[0] * d[0] + d[1] * d[1];
    let t = if dd > 0.0 {
        (-(a[0] * d[0] + a[1] * d[1]) / dd).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (x, y) = (a[0] + t * d[0], a[1] + t * d[1]);
    // Not `hypot`: libm's is several times slower, and these values are far from overflow.
    (x * x + y * y).sqrt()
}

/// What a disc touches: the territories containing its centre, and those whose border comes
/// within its radius. Both sorted by id (countries first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disc {
    /// Territories containing the centre (the point index's answer).
    pub inside: Hits,
    /// Territories whose border comes within the radius.
    pub crossed: Hits,
}

impl Disc {
    /// Every territory the disc touches, sorted by id.
    pub fn touched(&self) -> Hits {
        let mut all = self.inside.clone();
        for &t in &self.crossed {
            if let Err(i) = all.binary_search(&t) {
                all.insert(i, t);
            }
        }
        all
    }

    /// Whether the whole disc lies in `t`: `t` contains the centre and no border of `t` comes
    /// within the radius.
    pub fn covered_by(&self, t: TerritoryId) -> bool {
        self.inside.contains(&t) && !self.crossed.contains(&t)
    }
}

/// A run of consecutive border edges of one territory: edges `start .. start + edges` of the
/// shared vertex array (edge `e` joins vertices `e` and `e + 1`).
struct Chain {
    env: AABB<Pt>,
    start: u32,
    edges: u8,
    territory: u16,
}

impl RTreeObject for Chain {
    type Envelope = AABB<Pt>;
    fn envelope(&self) -> AABB<Pt> {
        self.env
    }
}

/// Node sizes of the border tree: a query is a chain of dependent reads, one per level, mostly
/// cache misses on a world-sized tree; 32 children per node make the tree of ~0.23 M chains 4
/// levels deep instead of rstar's default 7, and a node's children are contiguous.
struct Params;

impl RTreeParams for Params {
    const MIN_SIZE: usize = 8;
    const MAX_SIZE: usize = 32;
    const REINSERTION_COUNT: usize = 8;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// The R-tree of border chains of a geometry.
pub(super) struct BorderTree {
    tree: RTree<Chain, Params>,
    territories: usize,
}

/// Whether an edge is within the radius, by the plane bounds.
enum Near {
    No,
    Yes,
    Unsure,
}

/// Territories found, as a bitset over territory ids (inline up to 512 territories).
struct Found(SmallVec<[u64; 8]>);

impl Found {
    fn new(n: usize) -> Self {
        Found(SmallVec::from_elem(0, n.div_ceil(64).max(1)))
    }
    #[inline]
    fn has(&self, t: u16) -> bool {
        self.0
            .get(usize::from(t) / 64)
            .is_some_and(|w| w & (1 << (t % 64)) != 0)
    }
    fn set(&mut self, t: u16) {
        if let Some(w) = self.0.get_mut(usize::from(t) / 64) {
            *w |= 1 << (t % 64);
        }
    }
    fn hits(&self) -> Hits {
        let mut h = Hits::new();
        for (wi, &w) in self.0.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                h.push(TerritoryId((wi * 64 + w.trailing_zeros() as usize) as u16));
                w &= w - 1;
            }
        }
        h
    }
}

/// One disc, with the plane scales of its latitude band.
pub(super) struct Frame {
    lon: f64,
    lat: f64,
    r: f64,
    /// Band of latitudes any point within `r` lies in.
    lat_lo: f64,
    lat_hi: f64,
    /// Smallest and largest metres per degree of longitude (`x`) and latitude (`y`) in the band.
    kx_lo: f64,
    ky_lo: f64,
    kx_hi: f64,
    ky_hi: f64,
    /// Largest longitude difference of a point within `r`, degrees; `None`: any.
    lon_half: Option<f64>,
}

impl Frame {
    /// The frame of the disc of `r` metres around `p`. `r` must be finite and positive, `p`
    /// within ±180 / ±90 (the caller checks).
    pub(super) fn new(p: Pt, r: f64) -> Frame {
        let [lon, lat] = p;
        let beta = ((r + 1.0) / M_MIN).to_degrees();
        let (lat_lo, lat_hi) = ((lat - beta).max(-90.0), (lat + beta).min(90.0));
        let (abs_min, abs_max) = abs_range(lat_lo, lat_hi);
        let kx_lo = p_per_deg(abs_max);
        // Any point within r has |Δλ| · kx_lo ≤ r.
        let lon_half = (kx_lo > 1e-6)
            .then(|| r / kx_lo * (1.0 + 1e-9) + 1e-9)
            .filter(|&h| h < 180.0);
        Frame {
            lon,
            lat,
            r,
            lat_lo,
            lat_hi,
            kx_lo,
            ky_lo: m_per_deg(abs_min),
            kx_hi: p_per_deg(abs_min),
            ky_hi: m_per_deg(abs_max),
            lon_half,
        }
    }

    /// The longitude/latitude boxes holding every point within `r` (two across ±180°).
    fn boxes(&self) -> SmallVec<[AABB<Pt>; 2]> {
        let (y0, y1) = (self.lat_lo, self.lat_hi);
        let mut out = SmallVec::new();
        let Some(h) = self.lon_half else {
            out.push(AABB::from_corners([-180.0, y0], [180.0, y1]));
            return out;
        };
        let (x0, x1) = (self.lon - h, self.lon + h);
        out.push(AABB::from_corners(
            [x0.max(-180.0), y0],
            [x1.min(180.0), y1],
        ));
        if x0 < -180.0 {
            out.push(AABB::from_corners([x0 + 360.0, y0], [180.0, y1]));
        }
        if x1 > 180.0 {
            out.push(AABB::from_corners([-180.0, y0], [x1 - 360.0, y1]));
        }
        out
    }

    /// Whether every point within `r` lies in the closed box `lo`–`hi` (no wrap).
    #[inline]
    pub(super) fn inside_box(&self, lo: Pt, hi: Pt) -> bool {
        self.lon_half.is_some_and(|h| {
            self.lon - h >= lo[0]
                && self.lon + h <= hi[0]
                && self.lat_lo >= lo[1]
                && self.lat_hi <= hi[1]
        })
    }

    /// Longitude difference from the centre, in [-180, 180).
    #[inline]
    fn dlon(&self, x: f64) -> f64 {
        let d = x - self.lon;
        if d >= 180.0 {
            d - 360.0
        } else if d < -180.0 {
            d + 360.0
        } else {
            d
        }
    }

    /// The edge relative to the centre, `[Δλ, Δφ]` in degrees, lifted so that it does not jump
    /// across ±180° relative to the centre.
    #[inline]
    fn relative(&self, a: Pt, b: Pt) -> (Pt, Pt) {
        let (ax, mut bx) = (self.dlon(a[0]), self.dlon(b[0]));
        if bx - ax > 180.0 {
            bx -= 360.0;
        } else if ax - bx > 180.0 {
            bx += 360.0;
        }
        ([ax, a[1] - self.lat], [bx, b[1] - self.lat])
    }

    /// A lower bound of the distance from the centre to any point of the box (metres).
    #[inline]
    fn box_low(&self, env: &AABB<Pt>) -> f64 {
        let (lo, hi) = (env.lower(), env.upper());
        let gx = if (lo[0]..=hi[0]).contains(&self.lon) {
            0.0
        } else {
            // The shorter way round to either end of the box's longitude range.
            self.dlon(lo[0]).abs().min(self.dlon(hi[0]).abs())
        };
        let gy = (lo[1] - self.lat).max(self.lat - hi[1]).max(0.0);
        let (x, y) = (gx * self.kx_lo, gy * self.ky_lo);
        (x * x + y * y).sqrt()
    }

    /// Whether the edge is within `r`, by the plane bounds.
    #[inline]
    fn near(&self, a: Pt, b: Pt) -> Near {
        let (a, b) = self.relative(a, b);
        let scaled = |p: Pt, kx: f64, ky: f64| [p[0] * kx, p[1] * ky];
        let mut low = origin_to_segment(
            scaled(a, self.kx_lo, self.ky_lo),
            scaled(b, self.kx_lo, self.ky_lo),
        );
        if a[0].abs().max(b[0].abs()) > 180.0 {
            // Part of the lifted edge is nearer the other way round.
            let s = if a[0] + b[0] > 0.0 { -360.0 } else { 360.0 };
            let shift = |p: Pt| [p[0] + s, p[1]];
            low = low.min(origin_to_segment(
                scaled(shift(a), self.kx_lo, self.ky_lo),
                scaled(shift(b), self.kx_lo, self.ky_lo),
            ));
        }
        // Margins of a few ulps keep rounding from deciding either way.
        if low > self.r * (1.0 + 1e-12) + 1e-9 {
            return Near::No;
        }
        let high = origin_to_segment(
            scaled(a, self.kx_hi, self.ky_hi),
            scaled(b, self.kx_hi, self.ky_hi),
        );
        if high <= self.r * (1.0 - 1e-12) {
            Near::Yes
        } else {
            Near::Unsure
        }
    }

    /// An upper bound of the length of the longitude/latitude segment `a`–`b` (relative
    /// coordinates), metres.
    fn length_high(&self, a: Pt, b: Pt) -> f64 {
        let (abs_min, abs_max) = abs_range(
            self.lat + a[1].min(b[1]),
            (self.lat + a[1].max(b[1])).min(90.0),
        );
        ((b[0] - a[0]) * p_per_deg(abs_min)).hypot((b[1] - a[1]) * m_per_deg(abs_max))
    }

    /// Whether the edge comes within `r` (or within `r` + [`TOLERANCE_M`]), by branch and
    /// bound on geodesic distances. `budget` counts the evaluations left for this query.
    fn exact_near(&self, a: Pt, b: Pt, budget: &mut u32) -> bool {
        let (a, b) = self.relative(a, b);
        let centre = Point::new(self.lon, self.lat);
        let at = |t: f64| [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
        let mut stack: SmallVec<[(f64, f64); 48]> = SmallVec::new();
        stack.push((0.0, 1.0));
        while let Some((t0, t1)) = stack.pop() {
            if *budget == 0 {
                return true;
            }
            *budget -= 1;
            let tm = 0.5 * (t0 + t1);
            let q = at(tm);
            let d = Geodesic.distance(centre, Point::new(self.lon + q[0], self.lat + q[1]));
            if d <= self.r {
                return true;
            }
            let half = 0.5 * self.length_high(at(t0), at(t1));
            if d - half > self.r {
                continue;
            }
            if half <= TOLERANCE_M {
                return true;
            }
            stack.push((t0, tm));
            stack.push((tm, t1));
        }
        false
    }
}

impl BorderTree {
    /// Builds the tree over every ring of every territory. `rings[t]` holds the vertex ranges
    /// of territory `t`'s closed rings in `verts`.
    ///
    /// # Runtime
    /// One pass over the vertices and an R-tree bulk load of ~verts / 8 chains.
    pub(super) fn build(verts: &[Pt], rings: &[Vec<Range<u32>>]) -> BorderTree {
        let mut chains = Vec::with_capacity(verts.len() / CHAIN_EDGES + rings.len() * 4);
        for (t, ranges) in rings.iter().enumerate() {
            for r in ranges {
                let last = r.end.saturating_sub(1); // edges start at start .. end - 1
                let mut e = r.start;
                while e < last {
                    let n = (last - e).min(CHAIN_EDGES as u32);
                    let vs = &verts[e as usize..=(e + n) as usize];
                    let (mut lo, mut hi) = (vs[0], vs[0]);
                    for v in vs {
                        lo = [lo[0].min(v[0]), lo[1].min(v[1])];
                        hi = [hi[0].max(v[0]), hi[1].max(v[1])];
                    }
                    chains.push(Chain {
                        env: AABB::from_corners(lo, hi),
                        start: e,
                        edges: n as u8,
                        territory: t as u16,
                    });
                    e += n;
                }
            }
        }
        BorderTree {
            tree: RTree::bulk_load_with_params(chains),
            territories: rings.len(),
        }
    }

    /// Number of chains (R-tree elements).
    pub(super) fn len(&self) -> usize {
        self.tree.size()
    }

    /// Approximate heap bytes (elements and nodes).
    pub(super) fn heap_bytes(&self) -> usize {
        // Elements, plus about one node (a Vec of children and a box) per 4 elements.
        self.tree.size() * (std::mem::size_of::<Chain>() + 16)
    }

    /// Territories whose border comes within the frame's radius of its centre (sorted by id).
    /// With `only`, just that territory is looked for, and the search stops when it is found.
    pub(super) fn reached(&self, verts: &[Pt], frame: &Frame, only: Option<TerritoryId>) -> Hits {
        let mut search = Search::new(frame, verts, self.territories, only);
        for env in frame.boxes() {
            let flow = self
                .tree
                .locate_in_envelope_intersecting_int(&env, |c: &Chain| {
                    if !search.wants(c.territory) || frame.box_low(&c.env) > frame.r {
                        return ControlFlow::Continue(());
                    }
                    search.edges(c.territory, c.start..c.start + u32::from(c.edges))
                });
            if flow.is_break() {
                break;
            }
        }
        search.finish()
    }
}

/// One disc query's state: the territories found so far by the plane bounds, and the edges
/// those bounds could not settle, which [`finish`](Search::finish) decides exactly. Shared by
/// the R-tree walk and the point index's leaf path ([`TerritoryIndex::disc`]).
///
/// [`TerritoryIndex::disc`]: super::TerritoryIndex::disc
pub(super) struct Search<'a> {
    frame: &'a Frame,
    verts: &'a [Pt],
    found: Found,
    unsure: SmallVec<[(u32, u16); 16]>,
    only: Option<TerritoryId>,
    done: bool,
}

impl<'a> Search<'a> {
    /// A search over `territories` territory ids; with `only`, for that one.
    pub(super) fn new(
        frame: &'a Frame,
        verts: &'a [Pt],
        territories: usize,
        only: Option<TerritoryId>,
    ) -> Self {
        Search {
            frame,
            verts,
            found: Found::new(territories),
            unsure: SmallVec::new(),
            only,
            done: false,
        }
    }

    /// Whether edges of territory `t` still need testing.
    #[inline]
    pub(super) fn wants(&self, t: u16) -> bool {
        !self.found.has(t) && self.only.is_none_or(|o| o.0 == t)
    }

    /// Tests edges `edges` (edge `e` joins vertices `e` and `e + 1`) of territory `t`.
    /// Breaks when `only` was given and is found.
    #[inline]
    pub(super) fn edges(&mut self, t: u16, edges: Range<u32>) -> ControlFlow<()> {
        for e in edges {
            let (a, b) = (self.verts[e as usize], self.verts[e as usize + 1]);
            match self.frame.near(a, b) {
                Near::No => {}
                Near::Yes => {
                    self.found.set(t);
                    if self.only.is_some() {
                        self.done = true;
                        return ControlFlow::Break(());
                    }
                    break;
                }
                Near::Unsure => self.unsure.push((e, t)),
            }
        }
        ControlFlow::Continue(())
    }

    /// The territories found, the unsure edges decided by branch and bound.
    pub(super) fn finish(mut self) -> Hits {
        if !self.done {
            let mut budget = MAX_EXACT_EVALUATIONS;
            for (e, t) in std::mem::take(&mut self.unsure) {
                if !self.found.has(t) {
                    let (a, b) = (self.verts[e as usize], self.verts[e as usize + 1]);
                    if self.frame.exact_near(a, b, &mut budget) {
                        self.found.set(t);
                        if self.only.is_some() {
                            break;
                        }
                    }
                }
            }
        }
        self.found.hits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_match_the_ellipsoid() {
        // One degree of latitude: 110.574 km at the equator, 111.694 km at the pole; one
        // degree of longitude: 111.320 km at the equator, 78.847 km at 45°.
        assert!((m_per_deg(0.0) - 110_574.3).abs() < 1.0);
        assert!((m_per_deg(90.0) - 111_693.9).abs() < 1.0);
        assert!((p_per_deg(0.0) - 111_319.5).abs() < 1.0);
        assert!((p_per_deg(45.0) - 78_846.8).abs() < 1.0);
        assert!(p_per_deg(90.0) < 1e-6);
    }

    #[test]
    fn bounds_bracket_the_geodesic_distance() {
        // Points at known geodesic distances: the plane bounds of the degenerate edge at that
        // point bracket them, at several latitudes and both sides of ±180°.
        for &(lon, lat) in &[(0.0, 0.0), (12.45, 41.9), (179.99, 65.0), (-179.9, -60.0)] {
            for &r in &[20.0, 1_000.0, 10_000.0, 50_000.0] {
                let f = Frame::new([lon, lat], r);
                for i in 0..16 {
                    let az = f64::from(i) * 22.5;
                    let (dlat, dlon) = {
                        use geo::Destination;
                        let q = Geodesic.destination(Point::new(lon, lat), az, r * 0.999);
                        (q.y(), q.x())
                    };
                    let q = [dlon, dlat];
                    assert!(
                        !matches!(f.near(q, q), Near::No),
                        "{lon},{lat} r={r} az={az}"
                    );
                    let q = {
                        use geo::Destination;
                        let q = Geodesic.destination(Point::new(lon, lat), az, r * 1.001 + 1.0);
                        [q.x(), q.y()]
                    };
                    assert!(
                        !matches!(f.near(q, q), Near::Yes),
                        "{lon},{lat} r={r} az={az}"
                    );
                }
            }
        }
    }

    #[test]
    fn exact_refinement_finds_the_closest_point_of_a_long_edge() {
        // A 200 km east-west edge at 60° N passing about 10 km north of the centre at its
        // middle: the plane bounds cannot decide a radius close to that, the geodesic can.
        let centre = [10.0, 60.0];
        let a = [8.2, 60.09];
        let b = [11.8, 60.09];
        let mid = Geodesic.distance(Point::new(10.0, 60.0), Point::new(10.0, 60.09));
        let f = Frame::new(centre, mid + 2.0);
        let mut budget = MAX_EXACT_EVALUATIONS;
        assert!(f.exact_near(a, b, &mut budget));
        // A lon/lat line bulges poleward of the great circle, so the closest point is the
        // middle: just under that distance the edge is not reached.
        let f = Frame::new(centre, mid - 2.0);
        let mut budget = MAX_EXACT_EVALUATIONS;
        assert!(!f.exact_near(a, b, &mut budget));
        assert!(budget > 0, "decided without running out of evaluations");
    }

    #[test]
    fn boxes_wrap_at_the_antimeridian_and_cover_all_longitudes_at_a_pole() {
        let f = Frame::new([179.95, 0.0], 20_000.0);
        let b = f.boxes();
        assert_eq!(b.len(), 2);
        assert!(b[1].lower()[0] == -180.0 && b[1].upper()[0] > -179.9);
        let f = Frame::new([0.0, 89.99], 5_000.0);
        assert!(f.lon_half.is_none());
        assert_eq!(f.boxes()[0].lower()[0], -180.0);
    }
}

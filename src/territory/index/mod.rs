//! The point index: which territories contain a point, exactly, in about a hundred nanoseconds.
//!
//! # Shape
//! The plane of longitude × latitude is cut into a fixed root grid of 1024 × 512 cells
//! (0.35° squares), and each root cell is a quadtree whose leaves hold at most a handful of
//! territory edges. A leaf knows, for every territory with edges in it, whether the leaf's
//! centre is inside that territory, plus the edges themselves. A point is then inside a
//! territory when the centre is inside and the segment centre → point crosses that territory's
//! edges an even number of times (or the centre is outside and it crosses an odd number). The
//! segment lies in the leaf, so only the leaf's edges can cross it. Cells with no edges at all
//! are "uniform": every point in them is in the same territories. This is the idea behind S2's
//! point queries and tidwall/tg; an R-tree of polygon bounding boxes followed by a full
//! point-in-polygon test scans every edge of a large country and costs 10-20 µs a lookup at this
//! resolution (see `benches/README.md`).
//!
//! # Memory layout
//! A lookup is a chain of dependent memory reads (root cell, each quadtree level, the leaf, its
//! vertices), so the layout keeps that chain short. Split nodes and leaf records share one
//! array of 32-bit words, and the leaf children of a split node are stored right after it, so a
//! leaf's record is usually in the cache lines just read. A leaf record lists the territories
//! covering the leaf and, per territory with edges there, the centre's state and the edges as
//! runs of consecutive ring vertices (first vertex and count), read straight from the shared
//! vertex array: no per-edge references to chase. Leaves hold at most 8 edges (above the depth
//! limit), because a lookup's cost is mostly the edges it tests, while smaller leaves cost only
//! a level or two more. Uniform cells point straight at their territory list in one flat array.
//!
//! # Exactness and the border rule
//! Every predicate is an exact orientation test (`robust::orient2d`), so the answer is the exact
//! even-odd membership on the stored coordinates, not an approximation. The border rule is the
//! half-open crossing rule of PNPOLY (the slow path, [`TerritoryIndex::locate_slow`]): a point
//! on a north-south border belongs to the territory east of it, a point on an east-west border to
//! the territory north of it; so a point on a border shared by two countries belongs to exactly
//! one of them. That rule gives every point `p` the membership of the point `p + (ε, ε²)` for an
//! infinitely small `ε > 0`, which is on no border. The index computes exactly that membership by
//! symbolic perturbation: centres and query points are all moved by `(ε, ε²)`, and an orientation
//! that is exactly zero is decided by the sign of its ε terms. So a point on a border, a leaf
//! centre on a border and a segment through a vertex need no special path, and the index answers
//! the same as the slow path for every point.
//!
//! # The ±180° meridian
//! Rings are split at the meridian (the loader refuses unsplit ones), so the plane needs no
//! wrapping: a territory on both sides is two parts that touch x = ±180. Longitude 180 and -180
//! are different points of the plane; by the border rule a point at exactly -180 belongs to the
//! territory that touches -180 from the east, and +180 belongs to none (nothing lies east of it).
//!
//! # Building
//! Edges are binned straight into the root cells they touch, and the root centres' states come
//! from one sweep per grid row: the edges that cross a row's centre line, placed exactly among
//! the row's centres, give every centre's PNPOLY state at once. The root cells' quadtrees are
//! then built depth first, in parallel chunks. A cell's states are known at its reference point:
//! a root cell's centre, or for a child its parent's centre, one of its corners. One pass over a
//! cell's edges hands them to the children they touch and carries the states from the reference
//! point to the centre (the segment between them lies in one child), which becomes the
//! children's reference point; a leaf carries its states on to its own centre. Child edge lists
//! live in one scratch buffer per thread, used as a stack, so splitting a cell allocates nothing.

use super::TerritoryId;
use super::disc::{BorderTree, Disc, Frame, Search};
use rayon::prelude::*;
use robust::{Coord, orient2d};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;

mod build;
mod exact;
#[cfg(test)]
mod tests;

use build::*;
use exact::*;

/// Territories containing a point, sorted by id: the country (if any) first.
pub type Hits = SmallVec<[TerritoryId; 4]>;

const ROOT_LEVEL: u32 = 10;
const ROOT_N: usize = 1 << ROOT_LEVEL;
const ROOT_ROWS: usize = ROOT_N / 2;
const ROOT_SIZE: f64 = 360.0 / ROOT_N as f64;
/// A leaf is split while it holds more edges than this: a lookup's cost is mostly the edges it
/// tests, against memory and build time. On the default world 8 gives ~0.56 M leaves and a
/// 60 MB index; 6 makes border lookups ~5 % faster for 11 MB and ~15 % more build time.
const MAX_LEAF_EDGES: usize = 8;
/// Deepest level below a root cell: 0.35° / 2^16 ≈ 0.6 m.
const MAX_DEPTH: u32 = 16;

/// Node references are `payload << 2 | tag`.
const TAG_UNIFORM: u32 = 0;
const TAG_SPLIT: u32 = 1;
const TAG_LEAF: u32 = 2;
/// Payloads (offsets into `tree` and `sets`) must fit the 30 bits left by the tag.
const MAX_PAYLOAD: usize = 1 << 30;

/// Root cells per parallel build task: enough tasks to balance two or more cores, few enough
/// that appending their arenas is cheap.
const TASK_CHUNK: usize = 512;

/// In a leaf's entry word: the centre is inside the territory.
const INSIDE: u32 = 1 << 16;

type Pt = [f64; 2];

/// The compiled point index over a list of territories.
pub struct TerritoryIndex {
    geo: Geometry,
    /// Node reference per root cell, row-major from (-180, -90).
    roots: Vec<u32>,
    /// The quadtrees: split nodes (four child references, ordered SW, SE, NW, NE) and leaf
    /// records (see [`Arena::leaf`]). A split node's leaf children are stored right after it,
    /// so a leaf's record is usually in the cache lines just read.
    tree: Vec<u32>,
    /// Territory sets of uniform cells: a length, then that many territory ids.
    sets: Vec<u32>,
    node_count: usize,
    leaf_count: usize,
    edge_count: usize,
    /// Border chains for disc queries ([`TerritoryIndex::disc`]).
    borders: BorderTree,
}

/// Figures about a built index, for `regiongate validate` and the benches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Vertices stored.
    pub vertices: usize,
    /// Quadtree nodes (split nodes × 4).
    pub nodes: usize,
    /// Leaves holding edges.
    pub leaves: usize,
    /// Edges held by leaves (an edge in several leaves counts once per leaf).
    pub edge_refs: usize,
    /// Border chains in the disc query's R-tree.
    pub border_chains: usize,
    /// Approximate heap bytes of the index (point index and border R-tree).
    pub heap_bytes: usize,
}

#[derive(Clone, Copy)]
struct Cell {
    x0: f64,
    y0: f64,
    size: f64,
}

impl Cell {
    /// Root cell `col`, `row`. Grid lines are multiples of 360 / 1024 = 45/128 degrees, so
    /// they and every quadtree line below them are exact in `f64`.
    fn root(col: usize, row: usize) -> Cell {
        Cell {
            x0: grid_x(col),
            y0: grid_y(row),
            size: ROOT_SIZE,
        }
    }
    fn center(&self) -> Pt {
        let h = self.size * 0.5;
        [self.x0 + h, self.y0 + h]
    }
    /// The child holding `p`, a point of the cell: a point on a mid-line goes east or north.
    #[inline]
    fn quadrant(&self, p: Pt) -> usize {
        let h = self.size * 0.5;
        usize::from(p[0] >= self.x0 + h) | usize::from(p[1] >= self.y0 + h) << 1
    }
    /// Child `q`: bit 0 east, bit 1 north.
    fn child(&self, q: usize) -> Cell {
        let h = self.size * 0.5;
        Cell {
            x0: if q & 1 == 1 { self.x0 + h } else { self.x0 },
            y0: if q & 2 == 2 { self.y0 + h } else { self.y0 },
            size: h,
        }
    }
}

impl TerritoryIndex {
    /// Every territory containing the point `[longitude, latitude]`, the country first.
    /// A point outside ±180 / ±90 or not finite is in no territory.
    #[inline]
    pub fn locate(&self, p: Pt) -> Hits {
        match self.cell_of(p) {
            Some((cell, node)) => self.hits_in(cell, node, p),
            None => Hits::new(),
        }
    }

    /// The uniform cell or leaf holding `p`, with its node reference; `None` outside the plane.
    #[inline]
    fn cell_of(&self, p: Pt) -> Option<(Cell, u32)> {
        if !inside_plane(p) {
            return None;
        }
        // The division can round across a grid line; the exact comparisons put the point in
        // the cell whose closed box holds it.
        let mut col = (((p[0] + 180.0) / ROOT_SIZE) as usize).min(ROOT_N - 1);
        if p[0] < grid_x(col) {
            col -= 1;
        } else if col + 1 < ROOT_N && p[0] >= grid_x(col + 1) {
            col += 1;
        }
        let mut row = (((p[1] + 90.0) / ROOT_SIZE) as usize).min(ROOT_ROWS - 1);
        if p[1] < grid_y(row) {
            row -= 1;
        } else if row + 1 < ROOT_ROWS && p[1] >= grid_y(row + 1) {
            row += 1;
        }
        let mut cell = Cell::root(col, row);
        let mut node = self.roots[row * ROOT_N + col];
        while node & 3 == TAG_SPLIT {
            let q = cell.quadrant(p);
            cell = cell.child(q);
            node = self.tree[(node >> 2) as usize + q];
        }
        Some((cell, node))
    }

    /// The territories containing `p`, a point of `cell` (node `node`, uniform or a leaf).
    #[inline]
    fn hits_in(&self, cell: Cell, node: u32, p: Pt) -> Hits {
        let mut hits = Hits::new();
        let payload = (node >> 2) as usize;
        if node & 3 == TAG_UNIFORM {
            let n = self.sets[payload] as usize;
            hits.extend(
                self.sets[payload + 1..payload + 1 + n]
                    .iter()
                    .map(|&t| TerritoryId(t as u16)),
            );
        } else {
            debug_assert_eq!(node & 3, TAG_LEAF);
            self.leaf_hits(payload, cell.center(), p, &mut hits);
        }
        hits
    }

    /// Adds the territories of the leaf at word `at` that contain `p`; `c` is the leaf's centre.
    #[inline]
    fn leaf_hits(&self, at: usize, c: Pt, p: Pt, hits: &mut Hits) {
        let w = &self.tree[at..];
        let (n_cover, n_entries) = (w[0] as usize, w[1] as usize);
        let mut i = 2 + n_cover.div_ceil(2);
        hits.extend(
            w[2..i]
                .iter()
                .flat_map(|&x| [TerritoryId(x as u16), TerritoryId((x >> 16) as u16)])
                .take(n_cover),
        );
        let probe = Probe::new(c, p);
        for _ in 0..n_entries {
            let (head, runs) = (w[i], w[i + 1] as usize);
            let mut inside = head & INSIDE != 0;
            for run in w[i + 2..i + 2 + 2 * runs].chunks_exact(2) {
                let start = run[0] as usize;
                let verts = &self.geo.verts[start..start + run[1] as usize];
                inside ^= probe.chain_parity(verts.iter().copied());
            }
            i += 2 + 2 * runs;
            if inside {
                hits.push(TerritoryId(head as u16));
            }
        }
        if n_cover > 0 && hits.len() > n_cover {
            hits.sort_unstable();
        }
    }

    /// Every territory whose polygon intersects the geodesic disc of `radius_m` metres around
    /// `p` (`[longitude, latitude]`, WGS 84), sorted, the countries first: the territories
    /// containing `p` and those whose border comes within `radius_m`. Exact up to
    /// [`disc::TOLERANCE_M`](super::disc::TOLERANCE_M) towards "touches" (see
    /// [`disc`](super::disc)). A radius that is not a positive finite number is the point alone.
    pub fn territories_within(&self, p: Pt, radius_m: f64) -> Hits {
        self.disc(p, radius_m).touched()
    }

    /// The territories a disc touches, split into those containing its centre and those whose
    /// border comes within the radius (see [`territories_within`](Self::territories_within)).
    pub fn disc(&self, p: Pt, radius_m: f64) -> Disc {
        let Some((cell, node)) = self.cell_of(p) else {
            return Disc::default();
        };
        let inside = self.hits_in(cell, node, p);
        let crossed = if radius_m.is_finite() && radius_m > 0.0 {
            self.reached(cell, node, &Frame::new(p, radius_m), None)
        } else {
            Hits::new()
        };
        Disc { inside, crossed }
    }

    /// Whether the disc of `radius_m` metres around `p` touches territory `t`: the
    /// question of [`territories_within`](Self::territories_within) for one territory, which
    /// stops at the first border edge of `t` within the radius.
    pub fn disc_touches(&self, p: Pt, radius_m: f64, t: TerritoryId) -> bool {
        let Some((cell, node)) = self.cell_of(p) else {
            return false;
        };
        self.hits_in(cell, node, p).contains(&t)
            || (radius_m.is_finite()
                && radius_m > 0.0
                && !self
                    .reached(cell, node, &Frame::new(p, radius_m), Some(t))
                    .is_empty())
    }

    /// Territories whose border comes within the frame's disc. `cell` and `node` are the
    /// point index's cell holding the centre: when the disc lies inside it, which is the case
    /// for most GPS-sized discs, the cell's own edges are all the borders the disc can reach
    /// (a uniform cell has none), and the border R-tree is not walked.
    fn reached(&self, cell: Cell, node: u32, frame: &Frame, only: Option<TerritoryId>) -> Hits {
        let hi = [cell.x0 + cell.size, cell.y0 + cell.size];
        if !frame.inside_box([cell.x0, cell.y0], hi) {
            return self.borders.reached(&self.geo.verts, frame, only);
        }
        if node & 3 == TAG_UNIFORM {
            return Hits::new();
        }
        let w = &self.tree[(node >> 2) as usize..];
        let (n_cover, n_entries) = (w[0] as usize, w[1] as usize);
        let mut i = 2 + n_cover.div_ceil(2);
        let mut search = Search::new(frame, &self.geo.verts, self.geo.rings.len(), only);
        'entries: for _ in 0..n_entries {
            let (t, runs) = (w[i] as u16, w[i + 1] as usize);
            let at = i + 2;
            i = at + 2 * runs;
            for run in w[at..i].chunks_exact(2) {
                if !search.wants(t) {
                    continue 'entries;
                }
                // A run of n vertices is n - 1 edges.
                let (start, n) = (run[0], run[1]);
                if search.edges(t, start..start + n - 1).is_break() {
                    break 'entries;
                }
            }
        }
        search.finish()
    }

    /// The same answer as [`locate`](Self::locate), computed the slow way (every edge of every
    /// territory). For tests and `validate`.
    pub fn locate_slow(&self, p: Pt) -> Hits {
        if !((-180.0..=180.0).contains(&p[0]) && (-90.0..=90.0).contains(&p[1])) {
            return Hits::new();
        }
        (0..self.geo.rings.len())
            .map(|i| TerritoryId(i as u16))
            .filter(|&t| self.geo.pnpoly(t, p))
            .collect()
    }

    /// Size figures of the index.
    pub fn stats(&self) -> IndexStats {
        let heap_bytes = self.geo.verts.len() * 16
            + self
                .geo
                .rings
                .iter()
                .map(|r| r.len() * 8 + 24)
                .sum::<usize>()
            + self.geo.ends.len() * 4
            + self.roots.len() * 4
            + self.tree.len() * 4
            + self.sets.len() * 4
            + self.borders.heap_bytes();
        IndexStats {
            vertices: self.geo.verts.len(),
            nodes: self.node_count,
            leaves: self.leaf_count,
            edge_refs: self.edge_count,
            border_chains: self.borders.len(),
            heap_bytes,
        }
    }

    /// Area of a territory in square degrees (shoelace, even-odd rings): for `diff` reports.
    pub fn area_deg2(&self, t: TerritoryId) -> f64 {
        self.geo.rings[t.index()]
            .iter()
            .map(|r| {
                let ring = &self.geo.verts[r.start as usize..r.end as usize];
                ring.windows(2)
                    .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
                    .sum::<f64>()
                    .abs()
                    * 0.5
            })
            .sum()
    }
}

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
//! # Exactness and the border rule
//! Every predicate is an exact orientation test (`robust::orient2d`), so the answer is the exact
//! even-odd membership on the stored coordinates, not an approximation. A point exactly on a
//! border, and the rare segment that passes exactly through a vertex, take the slow path: the
//! half-open crossing rule of PNPOLY over all of the territory's edges. Under that rule a point
//! on a north-south border belongs to the territory east of it, a point on an east-west border
//! to the territory north of it; so a point on a border shared by two countries belongs to
//! exactly one of them.
//!
//! # The ±180° meridian
//! Rings are split at the meridian (the loader refuses unsplit ones), so the plane needs no
//! wrapping: a territory on both sides is two parts that touch x = ±180. Longitude 180 and -180
//! are different points of the plane; by the border rule a point at exactly -180 belongs to the
//! territory that touches -180 from the east, and +180 belongs to none (nothing lies east of it).

use super::TerritoryId;
use rayon::prelude::*;
use robust::{Coord, orient2d};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::ops::Range;

/// Territories containing a point, sorted by id: the country (if any) first.
pub type Hits = SmallVec<[TerritoryId; 4]>;

const ROOT_LEVEL: u32 = 11;
const ROOT_N: usize = 1 << ROOT_LEVEL;
const ROOT_ROWS: usize = ROOT_N / 2;
const ROOT_SIZE: f64 = 360.0 / ROOT_N as f64;
/// A leaf is split while it holds more edges than this (cost of a lookup vs. memory).
const MAX_LEAF_EDGES: usize = 32;
/// Deepest level below a root cell: 0.35° / 2^16 ≈ 0.6 m.
const MAX_DEPTH: u32 = 16;

const TAG_UNIFORM: u32 = 0;
const TAG_SPLIT: u32 = 1;
const TAG_LEAF: u32 = 2;

type Pt = [f64; 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Inside,
    Outside,
    /// The reference point lies on the territory's boundary: always use the exact slow path.
    OnBoundary,
}

struct Leaf {
    center: Pt,
    covering: u32,
    entries: Range<u32>,
}

struct Entry {
    territory: TerritoryId,
    state: State,
    edges: Range<u32>,
}

/// The compiled point index over a list of territories.
pub struct TerritoryIndex {
    geo: Geometry,
    roots: Vec<u32>,
    children: Vec<u32>,
    leaves: Vec<Leaf>,
    entries: Vec<Entry>,
    edge_refs: Vec<u32>,
    sets: Vec<Box<[TerritoryId]>>,
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
    /// Edge references held by leaves.
    pub edge_refs: usize,
    /// Approximate heap bytes of the index.
    pub heap_bytes: usize,
}

#[derive(Clone, Copy)]
struct Cell {
    x0: f64,
    y0: f64,
    size: f64,
}

impl Cell {
    fn center(&self) -> Pt {
        let h = self.size * 0.5;
        [self.x0 + h, self.y0 + h]
    }
    fn child(&self, q: usize) -> Cell {
        let h = self.size * 0.5;
        Cell {
            x0: if q & 1 == 1 { self.x0 + h } else { self.x0 },
            y0: if q & 2 == 2 { self.y0 + h } else { self.y0 },
            size: h,
        }
    }
}

struct Active {
    territory: TerritoryId,
    state: State,
    edges: Vec<u32>,
}

#[inline]
fn orient(a: Pt, b: Pt, c: Pt) -> f64 {
    orient2d(
        Coord { x: a[0], y: a[1] },
        Coord { x: b[0], y: b[1] },
        Coord { x: c[0], y: c[1] },
    )
}

enum Crossing {
    No,
    Yes,
    Degenerate,
}

/// Whether segment p-q properly crosses segment a-b; `Degenerate` when they touch or overlap
/// in a way the parity count cannot use.
#[inline]
fn crossing(p: Pt, q: Pt, a: Pt, b: Pt) -> Crossing {
    if p[0].max(q[0]) < a[0].min(b[0])
        || p[0].min(q[0]) > a[0].max(b[0])
        || p[1].max(q[1]) < a[1].min(b[1])
        || p[1].min(q[1]) > a[1].max(b[1])
    {
        return Crossing::No;
    }
    let o1 = orient(p, q, a);
    let o2 = orient(p, q, b);
    if (o1 > 0.0 && o2 > 0.0) || (o1 < 0.0 && o2 < 0.0) {
        return Crossing::No;
    }
    let o3 = orient(a, b, p);
    let o4 = orient(a, b, q);
    if (o3 > 0.0 && o4 > 0.0) || (o3 < 0.0 && o4 < 0.0) {
        return Crossing::No;
    }
    if o1 == 0.0 || o2 == 0.0 || o3 == 0.0 || o4 == 0.0 {
        return Crossing::Degenerate;
    }
    Crossing::Yes
}

/// Whether segment a-b meets the closed box of `c`. Exact: an edge that touches the box is
/// never missed (a missed edge would break the parity argument), and one that misses it is
/// only dropped when all four corners are strictly on one side of its line.
fn touches_box(a: Pt, b: Pt, c: &Cell) -> bool {
    let (x1, y1) = (c.x0 + c.size, c.y0 + c.size);
    if a[0].max(b[0]) < c.x0 || a[0].min(b[0]) > x1 || a[1].max(b[1]) < c.y0 || a[1].min(b[1]) > y1
    {
        return false;
    }
    let corners = [[c.x0, c.y0], [x1, c.y0], [c.x0, y1], [x1, y1]];
    let s: [f64; 4] = corners.map(|k| orient(a, b, k));
    !(s.iter().all(|&v| v > 0.0) || s.iter().all(|&v| v < 0.0))
}

fn on_segment(a: Pt, b: Pt, q: Pt) -> bool {
    q[0] >= a[0].min(b[0])
        && q[0] <= a[0].max(b[0])
        && q[1] >= a[1].min(b[1])
        && q[1] <= a[1].max(b[1])
        && orient(a, b, q) == 0.0
}

/// The stored rings: what the index answers about, and the slow path's input.
struct Geometry {
    verts: Vec<Pt>,
    /// Per territory, the vertex ranges of its closed rings; edge `e` joins `verts[e]` and
    /// `verts[e + 1]`.
    rings: Vec<Vec<Range<u32>>>,
}

impl Geometry {
    #[inline]
    fn edge(&self, e: u32) -> (Pt, Pt) {
        (self.verts[e as usize], self.verts[e as usize + 1])
    }

    /// The half-open crossing rule over every edge of territory `t` (the slow, exact path).
    fn pnpoly(&self, t: TerritoryId, p: Pt) -> bool {
        let mut inside = false;
        for r in &self.rings[t.index()] {
            let ring = &self.verts[r.start as usize..r.end as usize];
            for w in ring.windows(2) {
                let (a, b) = (w[0], w[1]);
                if (a[1] > p[1]) != (b[1] > p[1]) {
                    let o = orient(a, b, p);
                    // p is strictly left of an upward edge <=> the edge crosses the ray east of p.
                    let east = if b[1] > a[1] { o > 0.0 } else { o < 0.0 };
                    if east {
                        inside = !inside;
                    }
                }
            }
        }
        inside
    }

    /// Exact state of `p` for a territory, knowing the territory's edges near `p`.
    fn exact_state(&self, t: TerritoryId, p: Pt, near: &[u32]) -> State {
        let on = near.iter().any(|&e| {
            let (a, b) = self.edge(e);
            on_segment(a, b, p)
        });
        if on {
            State::OnBoundary
        } else if self.pnpoly(t, p) {
            State::Inside
        } else {
            State::Outside
        }
    }

    /// The state at `to`, knowing the state at `from` and that every edge crossing the
    /// segment between them is in `edges`.
    fn carry_state(&self, t: TerritoryId, known: State, from: Pt, to: Pt, edges: &[u32]) -> State {
        let mut odd = false;
        let mut on = false;
        for &e in edges {
            let (a, b) = self.edge(e);
            match crossing(from, to, a, b) {
                Crossing::No => {}
                Crossing::Yes => odd = !odd,
                Crossing::Degenerate => return self.exact_state(t, to, edges),
            }
            on = on || on_segment(a, b, to);
        }
        match (on, (known == State::Inside) != odd) {
            (true, _) => State::OnBoundary,
            (false, true) => State::Inside,
            (false, false) => State::Outside,
        }
    }

    /// Splits `cell` into its four children, carrying every active territory's state from the
    /// cell centre (a corner of each child) to the child centre.
    fn split(
        &self,
        cell: &Cell,
        covering: &[TerritoryId],
        active: &[Active],
    ) -> [(Cell, Vec<TerritoryId>, Vec<Active>); 4] {
        let from = cell.center();
        let children: [Cell; 4] = std::array::from_fn(|q| cell.child(q));
        let mut out: [(Cell, Vec<TerritoryId>, Vec<Active>); 4] =
            std::array::from_fn(|q| (children[q], covering.to_vec(), Vec::new()));
        for a in active {
            // Distribute the edges: an edge whose bounding box stays on one side of both
            // mid-lines touches exactly that child (it touches the parent); only edges whose
            // box straddles a mid-line need the exact test.
            let mut parts: [Vec<u32>; 4] = Default::default();
            for &e in &a.edges {
                let (p, q) = self.edge(e);
                let west = p[0].min(q[0]) <= from[0];
                let east = p[0].max(q[0]) >= from[0];
                let south = p[1].min(q[1]) <= from[1];
                let north = p[1].max(q[1]) >= from[1];
                let straddles = (west && east) || (south && north);
                for (k, part) in parts.iter_mut().enumerate() {
                    let side_x = if k & 1 == 1 { east } else { west };
                    let side_y = if k & 2 == 2 { north } else { south };
                    if side_x && side_y && (!straddles || touches_box(p, q, &children[k])) {
                        part.push(e);
                    }
                }
            }
            for (k, edges) in parts.into_iter().enumerate() {
                let to = children[k].center();
                let state = match a.state {
                    State::OnBoundary => self.exact_state(a.territory, to, &edges),
                    known => self.carry_state(a.territory, known, from, to, &edges),
                };
                if edges.is_empty() {
                    // No edge in the child: the whole child is on one side. (A boundary state
                    // cannot happen without an edge through the centre.)
                    if state == State::Inside {
                        out[k].1.push(a.territory);
                    }
                } else {
                    out[k].2.push(Active {
                        territory: a.territory,
                        state,
                        edges,
                    });
                }
            }
        }
        out
    }

    /// Levels above the root grid: subdivides the world (in parallel) down to root cells.
    fn top(
        &self,
        cell: Cell,
        level: u32,
        covering: Vec<TerritoryId>,
        active: Vec<Active>,
    ) -> Vec<RootTask> {
        if level == ROOT_LEVEL || active.is_empty() {
            return vec![RootTask {
                cell,
                covering,
                active,
            }];
        }
        self.split(&cell, &covering, &active)
            .into_par_iter()
            .filter(|(child, _, _)| child.y0 < 90.0 && child.y0 + child.size > -90.0)
            .flat_map_iter(|(child, cov, act)| self.top(child, level + 1, cov, act))
            .collect()
    }
}

/// A cell at or above root level, with what is known of it, waiting for its quadtree.
struct RootTask {
    cell: Cell,
    covering: Vec<TerritoryId>,
    active: Vec<Active>,
}

/// The quadtree storage. Each root cell's tree is built in its own arena (in parallel), then
/// the arenas are appended to one.
#[derive(Default)]
struct Arena {
    children: Vec<u32>,
    leaves: Vec<Leaf>,
    entries: Vec<Entry>,
    edge_refs: Vec<u32>,
    sets: Vec<Box<[TerritoryId]>>,
    interner: HashMap<Box<[TerritoryId]>, u32>,
}

impl Arena {
    fn intern(&mut self, mut set: Vec<TerritoryId>) -> u32 {
        set.sort_unstable();
        if let Some(&id) = self.interner.get(set.as_slice()) {
            return id;
        }
        let id = self.sets.len() as u32;
        let set = set.into_boxed_slice();
        self.sets.push(set.clone());
        self.interner.insert(set, id);
        id
    }

    /// Builds the quadtree below a cell; returns its node reference.
    fn node(
        &mut self,
        geo: &Geometry,
        cell: Cell,
        depth: u32,
        covering: Vec<TerritoryId>,
        active: Vec<Active>,
    ) -> u32 {
        if active.is_empty() {
            return (self.intern(covering) << 2) | TAG_UNIFORM;
        }
        let edges: usize = active.iter().map(|a| a.edges.len()).sum();
        if edges <= MAX_LEAF_EDGES || depth >= MAX_DEPTH {
            let covering = self.intern(covering);
            let start = self.entries.len() as u32;
            for a in active {
                let e0 = self.edge_refs.len() as u32;
                self.edge_refs.extend_from_slice(&a.edges);
                self.entries.push(Entry {
                    territory: a.territory,
                    state: a.state,
                    edges: e0..self.edge_refs.len() as u32,
                });
            }
            let leaf = self.leaves.len() as u32;
            self.leaves.push(Leaf {
                center: cell.center(),
                covering,
                entries: start..self.entries.len() as u32,
            });
            return (leaf << 2) | TAG_LEAF;
        }
        let at = self.children.len();
        self.children.extend_from_slice(&[0; 4]);
        for (q, (child, cov, act)) in geo.split(&cell, &covering, &active).into_iter().enumerate() {
            let r = self.node(geo, child, depth + 1, cov, act);
            self.children[at + q] = r;
        }
        ((at as u32) << 2) | TAG_SPLIT
    }

    /// Appends `other`, returning `other_ref` rewritten to point into `self`.
    fn append(&mut self, other: Arena, other_ref: u32) -> u32 {
        let set_map: Vec<u32> = other
            .sets
            .into_iter()
            .map(|s| self.intern(s.into_vec()))
            .collect();
        let (child_off, leaf_off) = (self.children.len() as u32, self.leaves.len() as u32);
        let (entry_off, edge_off) = (self.entries.len() as u32, self.edge_refs.len() as u32);
        let fix = |r: u32| {
            let payload = r >> 2;
            match r & 3 {
                TAG_UNIFORM => (set_map[payload as usize] << 2) | TAG_UNIFORM,
                TAG_SPLIT => ((payload + child_off) << 2) | TAG_SPLIT,
                _ => ((payload + leaf_off) << 2) | TAG_LEAF,
            }
        };
        self.children.extend(other.children.iter().map(|&r| fix(r)));
        self.leaves.extend(other.leaves.into_iter().map(|l| Leaf {
            center: l.center,
            covering: set_map[l.covering as usize],
            entries: l.entries.start + entry_off..l.entries.end + entry_off,
        }));
        self.entries
            .extend(other.entries.into_iter().map(|e| Entry {
                territory: e.territory,
                state: e.state,
                edges: e.edges.start + edge_off..e.edges.end + edge_off,
            }));
        self.edge_refs.extend_from_slice(&other.edge_refs);
        fix(other_ref)
    }
}

impl TerritoryIndex {
    /// Compiles the index. `territories[i]` holds the closed rings of `TerritoryId(i)`; rings
    /// are read with the even-odd rule and must not cross the ±180° meridian (the loader checks).
    ///
    /// # Runtime
    /// Linear in the vertices times the quadtree depth they reach; the root cells' trees are
    /// built in parallel. See `benches/README.md` for the default world's figure.
    pub fn build(territories: &[Vec<Vec<Pt>>]) -> Self {
        let mut verts = Vec::with_capacity(territories.iter().flatten().map(Vec::len).sum());
        let mut rings = Vec::with_capacity(territories.len());
        let mut all_edges = Vec::with_capacity(territories.len());
        for t in territories {
            let mut ranges = Vec::with_capacity(t.len());
            let mut edges = Vec::new();
            for ring in t {
                let start = verts.len() as u32;
                verts.extend_from_slice(ring);
                let end = verts.len() as u32;
                edges.extend(start..end.saturating_sub(1));
                ranges.push(start..end);
            }
            rings.push(ranges);
            all_edges.push(edges);
        }
        let geo = Geometry { verts, rings };
        let world = Cell {
            x0: -180.0,
            y0: -180.0,
            size: 360.0,
        };
        let center = world.center();
        let active: Vec<Active> = all_edges
            .into_par_iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(i, edges)| {
                let territory = TerritoryId(i as u16);
                let state = geo.exact_state(territory, center, &edges);
                Active {
                    territory,
                    state,
                    edges,
                }
            })
            .collect();
        let tasks = geo.top(world, 0, Vec::new(), active);
        let built: Vec<(Cell, Arena, u32)> = tasks
            .into_par_iter()
            .map(|t| {
                let mut arena = Arena::default();
                let r = if t.cell.size > ROOT_SIZE {
                    // A uniform cell above root level: one node for all its root cells.
                    (arena.intern(t.covering) << 2) | TAG_UNIFORM
                } else {
                    arena.node(&geo, t.cell, 0, t.covering, t.active)
                };
                (t.cell, arena, r)
            })
            .collect();
        let mut arena = Arena::default();
        let mut roots = vec![0; ROOT_N * ROOT_ROWS];
        for (cell, part, r) in built {
            let node = arena.append(part, r);
            // Fill every root cell under `cell` (within latitude ±90).
            let col0 = ((cell.x0 + 180.0) / ROOT_SIZE) as usize;
            let n = ((cell.size / ROOT_SIZE) as usize).max(1);
            let row_lo = ((cell.y0.max(-90.0) + 90.0) / ROOT_SIZE) as usize;
            let row_hi = (((cell.y0 + cell.size).min(90.0) + 90.0) / ROOT_SIZE) as usize;
            for row in row_lo..row_hi {
                roots[row * ROOT_N + col0..row * ROOT_N + col0 + n].fill(node);
            }
        }
        TerritoryIndex {
            geo,
            roots,
            children: arena.children,
            leaves: arena.leaves,
            entries: arena.entries,
            edge_refs: arena.edge_refs,
            sets: arena.sets,
        }
    }

    /// Every territory containing the point `[longitude, latitude]`, the country first.
    /// A point outside ±180 / ±90 or not finite is in no territory.
    #[inline]
    pub fn locate(&self, p: Pt) -> Hits {
        let mut hits = Hits::new();
        if !((-180.0..=180.0).contains(&p[0]) && (-90.0..=90.0).contains(&p[1])) {
            return hits;
        }
        let col = (((p[0] + 180.0) / ROOT_SIZE) as usize).min(ROOT_N - 1);
        let row = (((p[1] + 90.0) / ROOT_SIZE) as usize).min(ROOT_ROWS - 1);
        let mut cell = Cell {
            x0: -180.0 + col as f64 * ROOT_SIZE,
            y0: -90.0 + row as f64 * ROOT_SIZE,
            size: ROOT_SIZE,
        };
        let mut node = self.roots[row * ROOT_N + col];
        loop {
            let payload = (node >> 2) as usize;
            match node & 3 {
                TAG_UNIFORM => {
                    hits.extend_from_slice(&self.sets[payload]);
                    return hits;
                }
                TAG_SPLIT => {
                    let h = cell.size * 0.5;
                    let q =
                        usize::from(p[0] >= cell.x0 + h) | (usize::from(p[1] >= cell.y0 + h) << 1);
                    cell = cell.child(q);
                    node = self.children[payload + q];
                }
                _ => {
                    let leaf = &self.leaves[payload];
                    hits.extend_from_slice(&self.sets[leaf.covering as usize]);
                    for en in &self.entries[leaf.entries.start as usize..leaf.entries.end as usize]
                    {
                        if self.entry_contains(leaf.center, en, p) {
                            hits.push(en.territory);
                        }
                    }
                    hits.sort_unstable();
                    return hits;
                }
            }
        }
    }

    #[inline]
    fn entry_contains(&self, center: Pt, en: &Entry, p: Pt) -> bool {
        if en.state == State::OnBoundary {
            return self.geo.pnpoly(en.territory, p);
        }
        let mut odd = false;
        for &e in &self.edge_refs[en.edges.start as usize..en.edges.end as usize] {
            let (a, b) = (self.geo.verts[e as usize], self.geo.verts[e as usize + 1]);
            match crossing(center, p, a, b) {
                Crossing::No => {}
                Crossing::Yes => odd = !odd,
                Crossing::Degenerate => return self.geo.pnpoly(en.territory, p),
            }
        }
        (en.state == State::Inside) != odd
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
        let set_bytes: usize = self.sets.iter().map(|s| s.len() * 2 + 16).sum();
        let heap_bytes = self.geo.verts.len() * 16
            + self
                .geo
                .rings
                .iter()
                .map(|r| r.len() * 8 + 24)
                .sum::<usize>()
            + self.roots.len() * 4
            + self.children.len() * 4
            + self.leaves.len() * std::mem::size_of::<Leaf>()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self.edge_refs.len() * 4
            + set_bytes;
        IndexStats {
            vertices: self.geo.verts.len(),
            nodes: self.children.len(),
            leaves: self.leaves.len(),
            edge_refs: self.edge_refs.len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, s: f64) -> Vec<Pt> {
        vec![
            [x0, y0],
            [x0 + s, y0],
            [x0 + s, y0 + s],
            [x0, y0 + s],
            [x0, y0],
        ]
    }

    fn ids(h: &Hits) -> Vec<u16> {
        h.iter().map(|t| t.0).collect()
    }

    #[test]
    fn holes_islands_and_overlaps() {
        // 0: a square with a hole and an island in the hole; 1: a custom area across 0's edge.
        let t0 = vec![
            square(0.0, 0.0, 10.0),
            square(2.0, 2.0, 6.0),
            square(4.0, 4.0, 2.0),
        ];
        let t1 = vec![square(8.0, 8.0, 4.0)];
        let ix = TerritoryIndex::build(&[t0, t1]);
        assert_eq!(ids(&ix.locate([1.0, 1.0])), [0]);
        assert_eq!(
            ids(&ix.locate([3.0, 3.0])),
            Vec::<u16>::new(),
            "in the hole"
        );
        assert_eq!(ids(&ix.locate([5.0, 5.0])), [0], "island in the hole");
        assert_eq!(ids(&ix.locate([9.0, 9.0])), [0, 1]);
        assert_eq!(ids(&ix.locate([11.0, 11.0])), [1]);
        assert_eq!(ids(&ix.locate([-1.0, 5.0])), Vec::<u16>::new());
    }

    #[test]
    fn border_rule_east_and_north_win() {
        // Two squares sharing the edge x = 1; two sharing y = 1.
        let ix = TerritoryIndex::build(&[
            vec![square(0.0, 0.0, 1.0)],
            vec![square(1.0, 0.0, 1.0)],
            vec![square(0.0, 1.0, 1.0)],
        ]);
        assert_eq!(ids(&ix.locate([1.0, 0.5])), [1], "on x=1: the eastern one");
        assert_eq!(ids(&ix.locate([0.5, 1.0])), [2], "on y=1: the northern one");
        assert_eq!(
            ids(&ix.locate([0.0, 0.5])),
            [0],
            "west edge of 0 belongs to 0"
        );
        assert_eq!(
            ids(&ix.locate([2.0, 0.5])),
            Vec::<u16>::new(),
            "east edge of 1 belongs to nobody"
        );
        for p in [[1.0, 0.5], [0.5, 1.0], [0.0, 0.5], [0.5, 0.5], [1.5, 0.25]] {
            assert_eq!(ix.locate(p), ix.locate_slow(p), "{p:?}");
        }
    }

    #[test]
    fn antimeridian_parts() {
        // One territory in two parts touching ±180.
        let ix =
            TerritoryIndex::build(&[vec![square(170.0, -20.0, 10.0), square(-180.0, -20.0, 5.0)]]);
        assert_eq!(ids(&ix.locate([179.9, -17.0])), [0]);
        assert_eq!(ids(&ix.locate([-179.9, -17.0])), [0]);
        assert_eq!(ids(&ix.locate([-180.0, -17.0])), [0]);
        assert_eq!(ids(&ix.locate([180.0, -17.0])), Vec::<u16>::new());
        assert_eq!(ids(&ix.locate([-174.0, -17.0])), Vec::<u16>::new());
    }

    #[test]
    fn out_of_range_is_nowhere() {
        let ix = TerritoryIndex::build(&[vec![square(-180.0, -90.0, 180.0)]]);
        assert!(ix.locate([f64::NAN, 0.0]).is_empty());
        assert!(ix.locate([0.0, 91.0]).is_empty());
        assert_eq!(ids(&ix.locate([-179.0, -89.0])), [0]);
    }

    #[test]
    fn dense_ring_agrees_with_slow_path() {
        // A many-sided star forces deep subdivision; compare against the slow path on a grid.
        let n = 4000;
        let mut ring: Vec<Pt> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let r = if i % 2 == 0 { 1.0 } else { 0.97 };
                [10.0 + r * a.cos(), 45.0 + r * a.sin()]
            })
            .collect();
        ring.push(ring[0]);
        let ix = TerritoryIndex::build(&[vec![ring]]);
        let mut inside = 0;
        for i in 0..200 {
            for j in 0..200 {
                let p = [8.9 + i as f64 * 0.011, 43.9 + j as f64 * 0.011];
                let fast = ix.locate(p);
                assert_eq!(fast, ix.locate_slow(p), "{p:?}");
                inside += fast.len();
            }
        }
        assert!(
            inside > 20_000,
            "a good share of the grid is inside: {inside}"
        );
    }
}

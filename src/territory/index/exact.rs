//! The exact predicates of the point index: orientation with symbolic perturbation (the
//! border rule of the module documentation), segment crossings, and which cells an edge
//! touches.

use super::*;

/// West edge of root column `col` (exact).
pub(super) fn grid_x(col: usize) -> f64 {
    -180.0 + col as f64 * ROOT_SIZE
}

/// South edge of root row `row` (exact).
pub(super) fn grid_y(row: usize) -> f64 {
    -90.0 + row as f64 * ROOT_SIZE
}

/// The root cells `i` in `0..n` whose closed span `[origin + i·s, origin + (i+1)·s]` meets
/// `[lo, hi]`, with `s = ROOT_SIZE`. The division only guesses (it rounds, and `s` is not a
/// power of two) but is never a whole cell off; exact comparisons with the grid lines decide,
/// so an edge touching a cell is never missed.
pub(super) fn span(lo: f64, hi: f64, origin: f64, n: usize) -> (usize, usize) {
    let line = |i: usize| origin + i as f64 * ROOT_SIZE;
    let guess = |v: f64| (((v - origin) / ROOT_SIZE) as usize).min(n - 1);
    // Bounded steps rather than `while` loops: LLVM vectorises such search loops into code
    // that costs more than the rest of the build's first pass.
    let mut first = guess(lo);
    if line(first) < lo && hi < line(first + 1) {
        // Inside one cell, touching none of its sides: most edges.
        return (first, first);
    }
    for _ in 0..2 {
        if first > 0 && line(first) >= lo {
            first -= 1;
        }
    }
    for _ in 0..2 {
        if first < n - 1 && line(first + 1) < lo {
            first += 1;
        }
    }
    let mut last = guess(hi).max(first);
    for _ in 0..2 {
        if last < n - 1 && line(last + 1) <= hi {
            last += 1;
        }
    }
    for _ in 0..2 {
        if last > first && line(last) > hi {
            last -= 1;
        }
    }
    (first, last)
}

/// Centre line of root row `row` (exact).
pub(super) fn centre_y(row: usize) -> f64 {
    grid_y(row) + ROOT_SIZE * 0.5
}

#[inline]
pub(super) fn orient(a: Pt, b: Pt, c: Pt) -> f64 {
    orient2d(
        Coord { x: a[0], y: a[1] },
        Coord { x: b[0], y: b[1] },
        Coord { x: c[0], y: c[1] },
    )
}

/// Whether `v` is left of the line `c + δ → p + δ`, with `δ = (ε, ε²)`. The orientation is
/// `orient(c, p, v) + (p.y - c.y)·ε - (p.x - c.x)·ε²`: when the exact part is zero the ε terms
/// decide, and they are zero only when `p == c` (a segment of length zero, which crosses
/// nothing: every vertex then gets the same side).
#[inline]
pub(super) fn vertex_left_of(c: Pt, p: Pt, v: Pt) -> bool {
    let o = orient(c, p, v);
    if o != 0.0 {
        o > 0.0
    } else if p[1] != c[1] {
        p[1] > c[1]
    } else {
        p[0] < c[0]
    }
}

/// Whether `q + δ` is left of the edge `a → b`. The orientation is
/// `orient(a, b, q) - (b.y - a.y)·ε + (b.x - a.x)·ε²`, never zero for an edge of positive length.
#[inline]
pub(super) fn point_left_of(a: Pt, b: Pt, q: Pt) -> bool {
    let o = orient(a, b, q);
    if o != 0.0 {
        o > 0.0
    } else if a[1] != b[1] {
        a[1] > b[1]
    } else {
        b[0] > a[0]
    }
}

/// Whether the segment `c + δ → p + δ` crosses the edge `a-b`. Under the perturbation the
/// segment never touches a vertex and its ends never lie on an edge, so crossings are proper
/// and their parity is the change of even-odd membership between the ends. (An edge of length
/// zero gets the same side at both ends, so it never crosses.)
#[inline]
pub(super) fn crosses(c: Pt, p: Pt, a: Pt, b: Pt) -> bool {
    vertex_left_of(c, p, a) != vertex_left_of(c, p, b)
        && point_left_of(a, b, c) != point_left_of(a, b, p)
}

/// A segment from a point of known states (a leaf's centre, or a cell's reference point while
/// building) to another, with its bounding box for the cheap rejection of edges. The box test
/// uses strict comparisons, which an infinitely small shift cannot change.
pub(super) struct Probe {
    pub(super) c: Pt,
    pub(super) p: Pt,
    pub(super) lo: Pt,
    pub(super) hi: Pt,
}

impl Probe {
    pub(super) fn new(c: Pt, p: Pt) -> Self {
        Probe {
            c,
            p,
            lo: [c[0].min(p[0]), c[1].min(p[1])],
            hi: [c[0].max(p[0]), c[1].max(p[1])],
        }
    }

    /// Which sides of the box `v` is strictly beyond (one bit per side): an edge whose two
    /// ends share a bit cannot reach the segment.
    #[inline]
    pub(super) fn outcode(&self, v: Pt) -> u8 {
        u8::from(v[0] < self.lo[0])
            | u8::from(v[0] > self.hi[0]) << 1
            | u8::from(v[1] < self.lo[1]) << 2
            | u8::from(v[1] > self.hi[1]) << 3
    }

    /// Parity of the crossings with a chain of edges joining consecutive vertices.
    #[inline]
    pub(super) fn chain_parity(&self, mut vs: impl Iterator<Item = Pt>) -> bool {
        let Some(mut a) = vs.next() else {
            return false;
        };
        let mut ca = self.outcode(a);
        let mut odd = false;
        for b in vs {
            let cb = self.outcode(b);
            if ca & cb == 0 && crosses(self.c, self.p, a, b) {
                odd = !odd;
            }
            (a, ca) = (b, cb);
        }
        odd
    }

    /// Parity of the crossings with a set of single edges.
    pub(super) fn edges_parity(&self, geo: &Geometry, edges: &[u32]) -> bool {
        let mut odd = false;
        for &e in edges {
            let (a, b) = geo.edge(e);
            if self.outcode(a) & self.outcode(b) == 0 && crosses(self.c, self.p, a, b) {
                odd = !odd;
            }
        }
        odd
    }
}

/// Whether segment a-b meets the closed box of `c`. Exact: an edge that touches the box is
/// never missed (a missed edge would break the parity argument), and one that misses it is
/// only dropped when all four corners are strictly on one side of its line.
pub(super) fn touches_box(a: Pt, b: Pt, c: &Cell) -> bool {
    let (x1, y1) = (c.x0 + c.size, c.y0 + c.size);
    if a[0].max(b[0]) < c.x0 || a[0].min(b[0]) > x1 || a[1].max(b[1]) < c.y0 || a[1].min(b[1]) > y1
    {
        return false;
    }
    let corners = [[c.x0, c.y0], [x1, c.y0], [c.x0, y1], [x1, y1]];
    let s: [f64; 4] = corners.map(|k| orient(a, b, k));
    !(s.iter().all(|&v| v > 0.0) || s.iter().all(|&v| v < 0.0))
}

/// Which children of `cell` (bit `q` for `cell.child(q)`) the edge a-b touches, given that it
/// touches `cell`. An edge whose bounding box stays on one side of both mid-lines touches
/// exactly that child, and one that crosses a single mid-line within the cell's span along it
/// touches both children on either side. For the others the exact test of [`touches_box`] is
/// made per candidate child, sharing the orientations of the 3 × 3 grid of children's corners.
pub(super) fn children_touched(a: Pt, b: Pt, cell: &Cell) -> u8 {
    let h = cell.size * 0.5;
    let mid = [cell.x0 + h, cell.y0 + h];
    let (x_lo, x_hi) = (a[0].min(b[0]), a[0].max(b[0]));
    let (y_lo, y_hi) = (a[1].min(b[1]), a[1].max(b[1]));
    // Candidate columns and rows of children: 0 = west / south, 1 = east / north.
    let (c0, c1) = (usize::from(x_lo > mid[0]), usize::from(x_hi >= mid[0]));
    let (r0, r1) = (usize::from(y_lo > mid[1]), usize::from(y_hi >= mid[1]));
    if c0 == c1 && r0 == r1 {
        return 1 << (c0 | r0 << 1);
    }
    let (x1, y1) = (cell.x0 + cell.size, cell.y0 + cell.size);
    let within_x = cell.x0 <= x_lo && x_hi <= x1;
    let within_y = cell.y0 <= y_lo && y_hi <= y1;
    if r0 == r1 && within_y || c0 == c1 && within_x {
        // It crosses one mid-line, within the cell's span along that line: both candidates.
        return 1 << (c0 | r0 << 1) | 1 << (c1 | r1 << 1);
    }
    // Grid point (i, j) is (x0 + i·h, y0 + j·h); only those around candidates are needed.
    let mut side = [0.0; 9];
    for j in r0..=r1 + 1 {
        for i in c0..=c1 + 1 {
            side[j * 3 + i] = orient(a, b, [cell.x0 + i as f64 * h, cell.y0 + j as f64 * h]);
        }
    }
    let mut mask = 0;
    for r in r0..=r1 {
        for c in c0..=c1 {
            let s = [
                side[r * 3 + c],
                side[r * 3 + c + 1],
                side[r * 3 + c + 3],
                side[r * 3 + c + 4],
            ];
            if !(s.iter().all(|&v| v > 0.0) || s.iter().all(|&v| v < 0.0)) {
                mask |= 1 << (c | r << 1);
            }
        }
    }
    mask
}

/// Whether `p` is a point of the plane the index covers (finite, within ±180 / ±90).
pub(super) fn inside_plane(p: Pt) -> bool {
    (-180.0..=180.0).contains(&p[0]) && (-90.0..=90.0).contains(&p[1])
}

/// PNPOLY's test for one edge: it crosses the horizontal ray from `p` to the east, counting an
/// end exactly at `p`'s latitude as above it.
#[inline]
pub(super) fn crosses_east_ray(a: Pt, b: Pt, p: Pt) -> bool {
    if (a[1] > p[1]) == (b[1] > p[1]) {
        return false;
    }
    let o = orient(a, b, p);
    // p is strictly left of an upward edge <=> the edge crosses the ray east of p.
    if b[1] > a[1] { o > 0.0 } else { o < 0.0 }
}

//! Building the point index: edges binned into the root grid, one sweep per grid row for the
//! root centres' states, then each root cell's quadtree depth first, in parallel chunks (see
//! the module documentation's "Building").

use super::*;

/// The stored rings: what the index answers about, and the slow path's input.
pub(super) struct Geometry {
    pub(super) verts: Vec<Pt>,
    /// Per territory, the vertex ranges of its closed rings; edge `e` joins `verts[e]` and
    /// `verts[e + 1]`.
    pub(super) rings: Vec<Vec<Range<u32>>>,
    /// Per territory, the end of its vertices: territories are stored one after the other.
    pub(super) ends: Vec<u32>,
}

impl Geometry {
    pub(super) fn new(territories: &[Vec<Vec<Pt>>]) -> Self {
        let mut verts = Vec::with_capacity(territories.iter().flatten().map(Vec::len).sum());
        let mut rings = Vec::with_capacity(territories.len());
        let mut ends = Vec::with_capacity(territories.len());
        for t in territories {
            let mut ranges = Vec::with_capacity(t.len());
            for ring in t {
                let start = verts.len() as u32;
                verts.extend_from_slice(ring);
                ranges.push(start..verts.len() as u32);
            }
            rings.push(ranges);
            ends.push(verts.len() as u32);
        }
        Geometry { verts, rings, ends }
    }

    #[inline]
    pub(super) fn edge(&self, e: u32) -> (Pt, Pt) {
        match self.verts[e as usize..e as usize + 2] {
            [a, b] => (a, b),
            _ => unreachable!("a two-element slice"),
        }
    }

    /// The territory whose vertices include `v`.
    pub(super) fn territory_of(&self, v: u32) -> TerritoryId {
        TerritoryId(self.ends.partition_point(|&end| end <= v) as u16)
    }

    /// The half-open crossing rule over every edge of territory `t` (the slow, exact path).
    pub(super) fn pnpoly(&self, t: TerritoryId, p: Pt) -> bool {
        let mut inside = false;
        for r in &self.rings[t.index()] {
            let ring = &self.verts[r.start as usize..r.end as usize];
            for w in ring.windows(2) {
                if crosses_east_ray(w[0], w[1], p) {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Files edge `e` of territory `t` under every root cell it touches (`cells`, as
    /// `cell << 32 | e`), and records every root row centre line it crosses under the half-open
    /// rule, with the number of that row's centres west of the crossing (`crossings`, as
    /// `row << 32 | centres << 16 | t`).
    pub(super) fn bin_edge(
        &self,
        t: TerritoryId,
        e: u32,
        cells: &mut Vec<u64>,
        crossings: &mut Vec<u64>,
    ) {
        let (a, b) = self.edge(e);
        let (x_lo, x_hi) = (a[0].min(b[0]), a[0].max(b[0]));
        let (y_lo, y_hi) = (a[1].min(b[1]), a[1].max(b[1]));
        let (c0, c1) = span(x_lo, x_hi, -180.0, ROOT_N);
        let (r0, r1) = span(y_lo, y_hi, -90.0, ROOT_ROWS);
        if c0 == c1 && r0 == r1 {
            cells.push(((r0 * ROOT_N + c0) as u64) << 32 | u64::from(e));
        } else {
            for row in r0..=r1 {
                for col in c0..=c1 {
                    if touches_box(a, b, &Cell::root(col, row)) {
                        cells.push(((row * ROOT_N + col) as u64) << 32 | u64::from(e));
                    }
                }
            }
        }
        // (a.y > y) != (b.y > y) exactly when y_lo <= y < y_hi; such a centre line lies in a
        // row the edge touches.
        for row in r0..=r1 {
            let y = centre_y(row);
            if !(y_lo <= y && y < y_hi) {
                continue;
            }
            let east_of = |col: usize| crosses_east_ray(a, b, [grid_x(col) + ROOT_SIZE * 0.5, y]);
            // The crossing is east of the first `west` centres and of no other.
            let x = a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            let mut west = ((x + 180.0) / ROOT_SIZE - 0.5)
                .ceil()
                .clamp(0.0, ROOT_N as f64) as usize;
            while west > 0 && !east_of(west - 1) {
                west -= 1;
            }
            while west < ROOT_N && east_of(west) {
                west += 1;
            }
            crossings.push((row as u64) << 32 | (west as u64) << 16 | u64::from(t.0));
        }
    }
}

/// A territory with edges in the cell being built: its state at the cell's reference point
/// (see [`Builder::node`]) and its edges (a range of the builder's scratch buffer, ascending).
pub(super) struct Span {
    pub(super) territory: TerritoryId,
    pub(super) inside: bool,
    pub(super) edges: Range<usize>,
}

/// A root cell with edges, waiting for its quadtree: the territories covering it, and per
/// territory with edges there its centre state and its range of [`Bins::edges`].
pub(super) struct RootTask {
    pub(super) cell: usize,
    pub(super) covering: SmallVec<[TerritoryId; 4]>,
    pub(super) actives: SmallVec<[(TerritoryId, bool, Range<usize>); 2]>,
}

/// The index storage. Root cells' trees are built in several arenas in parallel, then
/// appended to one.
#[derive(Default)]
pub(super) struct Arena {
    pub(super) tree: Vec<u32>,
    /// Where the split nodes are in `tree`, so that their references can be moved.
    pub(super) splits: Vec<u32>,
    pub(super) sets: Vec<u32>,
    pub(super) interner: HashMap<Box<[TerritoryId]>, u32>,
    pub(super) leaf_count: usize,
    pub(super) edge_count: usize,
}

impl Arena {
    /// The reference of a uniform cell covered by `set` (any order).
    pub(super) fn uniform(&mut self, set: &[TerritoryId]) -> u32 {
        let mut set: SmallVec<[TerritoryId; 8]> = SmallVec::from_slice(set);
        set.sort_unstable();
        if let Some(&at) = self.interner.get(set.as_slice()) {
            return at << 2 | TAG_UNIFORM;
        }
        let at = self.sets.len();
        assert!(at < MAX_PAYLOAD, "index too large");
        self.sets.push(set.len() as u32);
        self.sets.extend(set.iter().map(|t| u32::from(t.0)));
        self.interner.insert(set.as_slice().into(), at as u32);
        (at as u32) << 2 | TAG_UNIFORM
    }

    /// Stores a leaf and returns its reference. The record is, in 32-bit words: the covering
    /// territory count; the entry count; the covering territories, two 16-bit ids a word; then
    /// per entry `territory | INSIDE` (the centre's state), its run count, and per run the first
    /// vertex and the vertex count. A run of `n` vertices is `n - 1` consecutive edges of one
    /// ring, read straight from the shared vertex array.
    pub(super) fn leaf(
        &mut self,
        scratch: &[u32],
        covering: &[TerritoryId],
        actives: &[Span],
    ) -> u32 {
        let w = &mut self.tree;
        let at = w.len();
        assert!(at < MAX_PAYLOAD, "index too large");
        let mut cover: SmallVec<[TerritoryId; 8]> = SmallVec::from_slice(covering);
        cover.sort_unstable();
        w.extend([cover.len() as u32, actives.len() as u32]);
        for two in cover.chunks(2) {
            w.push(u32::from(two[0].0) | two.get(1).map_or(0, |t| u32::from(t.0) << 16));
        }
        for a in actives {
            let head = w.len();
            w.extend([
                u32::from(a.territory.0) | if a.inside { INSIDE } else { 0 },
                0,
            ]);
            let edges = &scratch[a.edges.clone()];
            let mut runs = 0;
            let mut i = 0;
            while i < edges.len() {
                let mut j = i + 1;
                // Edges e and e + 1 share a vertex (e + 1 is never the start of the next ring:
                // that one starts at the closing vertex's successor).
                while j < edges.len() && edges[j] == edges[j - 1] + 1 {
                    j += 1;
                }
                w.extend([edges[i], edges[j - 1] - edges[i] + 2]);
                runs += 1;
                i = j;
            }
            w[head + 1] = runs;
            self.edge_count += edges.len();
        }
        self.leaf_count += 1;
        (at as u32) << 2 | TAG_LEAF
    }

    /// Appends `other`, returning a function that rewrites `other`'s references.
    pub(super) fn append(&mut self, other: &Arena) -> impl Fn(u32) -> u32 + use<> {
        let mut set_map = vec![0u32; other.sets.len()];
        let mut at = 0;
        while at < other.sets.len() {
            let n = other.sets[at] as usize;
            let set: SmallVec<[TerritoryId; 8]> = other.sets[at + 1..at + 1 + n]
                .iter()
                .map(|&t| TerritoryId(t as u16))
                .collect();
            set_map[at] = self.uniform(&set);
            at += 1 + n;
        }
        let off = self.tree.len() as u32;
        assert!(
            self.tree.len() + other.tree.len() < MAX_PAYLOAD,
            "index too large"
        );
        let fix = move |r: u32| match r & 3 {
            TAG_UNIFORM => set_map[(r >> 2) as usize],
            _ => r + (off << 2),
        };
        let start = self.tree.len();
        self.tree.extend_from_slice(&other.tree);
        for &s in &other.splits {
            let at = start + s as usize;
            for r in &mut self.tree[at..at + 4] {
                *r = fix(*r);
            }
            self.splits.push(s + off);
        }
        self.leaf_count += other.leaf_count;
        self.edge_count += other.edge_count;
        fix
    }
}

/// Builds root cells' quadtrees into its own arena. Child edge lists live in one scratch
/// buffer used as a stack, so splitting a cell allocates nothing.
pub(super) struct Builder<'g> {
    pub(super) geo: &'g Geometry,
    pub(super) arena: Arena,
    pub(super) scratch: Vec<u32>,
    /// Per edge of the territory being split, the children it touches.
    pub(super) masks: Vec<u8>,
}

impl Builder<'_> {
    /// Builds a root cell's quadtree; `edges` are [`Bins::edges`].
    pub(super) fn root(&mut self, task: &RootTask, edges: &[u32]) -> u32 {
        self.scratch.clear();
        let mut actives: SmallVec<[Span; 4]> = SmallVec::new();
        for (territory, inside, range) in &task.actives {
            let start = self.scratch.len();
            self.scratch.extend_from_slice(&edges[range.clone()]);
            actives.push(Span {
                territory: *territory,
                inside: *inside,
                edges: start..self.scratch.len(),
            });
        }
        let cell = Cell::root(task.cell % ROOT_N, task.cell / ROOT_N);
        self.node(cell, cell.center(), 0, &task.covering, &actives)
    }

    /// Builds the quadtree below `cell`, whose every active edge touches the closed cell, and
    /// returns its reference. The actives' states are those of `from`, the cell's centre or a
    /// corner of it (its parent's centre).
    pub(super) fn node(
        &mut self,
        cell: Cell,
        from: Pt,
        depth: u32,
        covering: &[TerritoryId],
        actives: &[Span],
    ) -> u32 {
        if actives.is_empty() {
            return self.arena.uniform(covering);
        }
        if ends(actives, depth) {
            // The segment from `from` to the centre stays in the cell.
            let to_mid = Probe::new(from, cell.center());
            let centred: SmallVec<[Span; 4]> = actives
                .iter()
                .map(|a| Span {
                    territory: a.territory,
                    inside: a.inside
                        != to_mid.edges_parity(self.geo, &self.scratch[a.edges.clone()]),
                    edges: a.edges.clone(),
                })
                .collect();
            return self.arena.leaf(&self.scratch, covering, &centred);
        }
        let base = self.scratch.len();
        let kids = self.split(cell, from, covering, actives);
        let at = self.arena.tree.len();
        assert!(at < MAX_PAYLOAD, "index too large");
        self.arena.tree.extend_from_slice(&[0; 4]);
        self.arena.splits.push(at as u32);
        // Children that end here first, so that their records follow this node closely.
        for pass in [true, false] {
            for (q, k) in kids.iter().enumerate() {
                if ends(&k.actives, depth + 1) == pass {
                    let r = self.node(k.cell, k.from, depth + 1, &k.covering, &k.actives);
                    self.arena.tree[at + q] = r;
                }
            }
        }
        self.scratch.truncate(base);
        (at as u32) << 2 | TAG_SPLIT
    }

    /// Splits `cell` into its four children (in [`Cell::child`] order), appending their edges
    /// to the scratch buffer. The states are carried from `from` to the cell's centre, which is
    /// a corner of every child and becomes their `from`: the segment from a corner (or the
    /// centre itself) to the centre lies in one child, so only edges touching that child can
    /// cross it, and the test is folded into the pass that hands the edges to the children.
    pub(super) fn split(
        &mut self,
        cell: Cell,
        from: Pt,
        covering: &[TerritoryId],
        actives: &[Span],
    ) -> [Kid; 4] {
        let mid = cell.center();
        let from_kid = if from == mid {
            None
        } else {
            Some(usize::from(from[0] > mid[0]) | usize::from(from[1] > mid[1]) << 1)
        };
        let mut kids: [Kid; 4] = std::array::from_fn(|q| Kid {
            cell: cell.child(q),
            from: mid,
            covering: SmallVec::from_slice(covering),
            actives: SmallVec::new(),
        });
        for a in actives {
            self.masks.clear();
            let mut counts = [0; 4];
            let mut odd = false;
            for i in a.edges.clone() {
                let (p, r) = self.geo.edge(self.scratch[i]);
                let mask = children_touched(p, r, &cell);
                let mut bits = mask;
                while bits != 0 {
                    counts[bits.trailing_zeros() as usize] += 1;
                    bits &= bits - 1;
                }
                self.masks.push(mask);
                if from_kid.is_some_and(|q| mask >> q & 1 == 1) && crosses(from, mid, p, r) {
                    odd = !odd;
                }
            }
            let inside = a.inside != odd;
            // Each child's edges go to their own range at the end of the scratch buffer.
            let mut at = [0; 4];
            let mut end = self.scratch.len();
            for q in 0..4 {
                at[q] = end;
                end += counts[q];
            }
            let ranges: [Range<usize>; 4] = std::array::from_fn(|q| at[q]..at[q] + counts[q]);
            self.scratch.resize(end, 0);
            for (k, i) in a.edges.clone().enumerate() {
                let (e, mut bits) = (self.scratch[i], self.masks[k]);
                while bits != 0 {
                    let pos = &mut at[bits.trailing_zeros() as usize];
                    self.scratch[*pos] = e;
                    *pos += 1;
                    bits &= bits - 1;
                }
            }
            for (kid, edges) in kids.iter_mut().zip(ranges) {
                if !edges.is_empty() {
                    kid.actives.push(Span {
                        territory: a.territory,
                        inside,
                        edges,
                    });
                } else if inside {
                    // No edge of the territory touches the child: it is all on one side.
                    kid.covering.push(a.territory);
                }
            }
        }
        kids
    }
}

/// A child cell waiting to be built: see [`Builder::node`].
pub(super) struct Kid {
    pub(super) cell: Cell,
    /// The reference point: the parent's centre.
    pub(super) from: Pt,
    pub(super) covering: SmallVec<[TerritoryId; 4]>,
    pub(super) actives: SmallVec<[Span; 4]>,
}

/// Whether a cell with these actives at this depth is a leaf (or uniform) rather than split.
pub(super) fn ends(actives: &[Span], depth: u32) -> bool {
    actives.iter().map(|s| s.edges.len()).sum::<usize>() <= MAX_LEAF_EDGES || depth >= MAX_DEPTH
}

/// Adds `t` to the sorted set `set`, or removes it if present.
pub(super) fn toggle(set: &mut SmallVec<[TerritoryId; 8]>, t: TerritoryId) {
    match set.binary_search(&t) {
        Ok(i) => {
            set.remove(i);
        }
        Err(i) => set.insert(i, t),
    }
}

/// Every edge filed under the root cells it touches, and the crossings of root row centre
/// lines, from one parallel pass over the edges.
pub(super) struct Bins {
    /// Edges grouped by root cell (row-major), ascending within a cell.
    pub(super) edges: Vec<u32>,
    /// Per root cell, the end of its group in `edges` (the group starts at the previous end).
    pub(super) ends: Vec<u32>,
    /// Sorted `row << 32 | centres << 16 | territory`: an edge of `territory` crosses row
    /// `row`'s centre line east of the first `centres` centres (see [`Geometry::bin_edge`]).
    pub(super) crossings: Vec<u64>,
}

impl Bins {
    pub(super) fn new(geo: &Geometry) -> Self {
        let rings: Vec<(TerritoryId, Range<u32>)> = geo
            .rings
            .iter()
            .enumerate()
            .flat_map(|(t, rs)| rs.iter().map(move |r| (TerritoryId(t as u16), r.clone())))
            .collect();
        let parts: Vec<(Vec<u64>, Vec<u64>)> = rings
            .par_iter()
            .fold(
                || (Vec::new(), Vec::new()),
                |(mut cells, mut crossings), (t, r)| {
                    for e in r.start..r.end.saturating_sub(1) {
                        geo.bin_edge(*t, e, &mut cells, &mut crossings);
                    }
                    (cells, crossings)
                },
            )
            .collect();
        // A counting sort by cell, stable, so that edges stay ascending within a cell (the
        // parts are in edge order).
        let mut ends = vec![0u32; ROOT_N * ROOT_ROWS];
        for (cells, _) in &parts {
            for &k in cells {
                ends[(k >> 32) as usize] += 1;
            }
        }
        let mut next = 0;
        for n in &mut ends {
            (*n, next) = (next, next + *n);
        }
        let mut edges = vec![0u32; next as usize];
        for (cells, _) in &parts {
            for &k in cells {
                let at = &mut ends[(k >> 32) as usize];
                edges[*at as usize] = k as u32;
                *at += 1;
            }
        }
        let mut crossings: Vec<u64> = parts.into_iter().flat_map(|p| p.1).collect();
        crossings.sort_unstable();
        Bins {
            edges,
            ends,
            crossings,
        }
    }

    /// The range of `edges` filed under root cell `cell`.
    pub(super) fn cell(&self, cell: usize) -> Range<usize> {
        let start = if cell == 0 { 0 } else { self.ends[cell - 1] };
        start as usize..self.ends[cell] as usize
    }
}

/// Sweeps each root row from east to west: a centre is inside a territory when an odd number
/// of its edges cross the row's centre line east of it. Returns the arena holding the uniform
/// cells' sets, the root references of uniform cells, and the cells with edges to build.
pub(super) fn sweep(geo: &Geometry, bins: &Bins) -> (Arena, Vec<u32>, Vec<RootTask>) {
    let mut top = Arena::default();
    let mut roots = vec![0u32; ROOT_N * ROOT_ROWS];
    let mut tasks: Vec<RootTask> = Vec::new();
    let crossings = &bins.crossings;
    let mut ci = crossings.len();
    let mut inside: SmallVec<[TerritoryId; 8]> = SmallVec::new();
    for row in (0..ROOT_ROWS).rev() {
        inside.clear();
        let mut set_ref = None;
        for col in (0..ROOT_N).rev() {
            while ci > 0
                && (crossings[ci - 1] >> 32) as usize == row
                && (crossings[ci - 1] >> 16 & 0xffff) as usize > col
            {
                toggle(&mut inside, TerritoryId(crossings[ci - 1] as u16));
                set_ref = None;
                ci -= 1;
            }
            let cell = row * ROOT_N + col;
            let range = bins.cell(cell);
            if range.is_empty() {
                roots[cell] = *set_ref.get_or_insert_with(|| top.uniform(&inside));
                continue;
            }
            let mut actives = SmallVec::new();
            let edges = &bins.edges[range.clone()];
            let mut s = 0;
            while s < edges.len() {
                let t = geo.territory_of(edges[s]);
                let t_end = geo.ends[t.index()];
                let k = s + edges[s..].partition_point(|&e| e < t_end);
                let start = range.start;
                actives.push((t, inside.binary_search(&t).is_ok(), start + s..start + k));
                s = k;
            }
            let covering = inside
                .iter()
                .copied()
                .filter(|t| !actives.iter().any(|a: &(TerritoryId, _, _)| a.0 == *t))
                .collect();
            tasks.push(RootTask {
                cell,
                covering,
                actives,
            });
        }
        // Crossings west of every centre count for none of them.
        while ci > 0 && (crossings[ci - 1] >> 32) as usize == row {
            ci -= 1;
        }
    }
    (top, roots, tasks)
}

impl TerritoryIndex {
    /// Compiles the index. `territories[i]` holds the closed rings of `TerritoryId(i)`; rings
    /// are read with the even-odd rule, must lie within ±180 / ±90 and must not cross the ±180°
    /// meridian (the loader checks).
    ///
    /// # Runtime
    /// Linear in the vertices times the quadtree depth they reach; the root cells' trees are
    /// built in parallel. See `benches/README.md` for the default world's figure.
    ///
    /// # Panics
    /// If the index would need more than 2^30 words in one of its tables (about a hundred
    /// times the default world).
    pub fn build(territories: &[Vec<Vec<Pt>>]) -> Self {
        let geo = Geometry::new(territories);
        let borders = BorderTree::build(&geo.verts, &geo.rings);
        let bins = Bins::new(&geo);
        let (top, roots, tasks) = sweep(&geo, &bins);
        // Only the edges are needed from here; freeing the rest lowers the peak memory.
        let Bins {
            edges,
            ends,
            crossings,
        } = bins;
        drop((ends, crossings));
        // Root cells' trees are built in chunks on all cores and appended to `top` in chunk
        // order as they complete, so that a chunk's arena is freed at once and the peak
        // memory holds the tree about once. Chunks are handed out in order, so few wait.
        let merge = Mutex::new((top, roots, 0, BTreeMap::new()));
        tasks
            .chunks(TASK_CHUNK)
            .enumerate()
            .par_bridge()
            .for_each(|(i, chunk)| {
                let mut b = Builder {
                    geo: &geo,
                    arena: Arena::default(),
                    scratch: Vec::new(),
                    masks: Vec::new(),
                };
                let refs: Vec<(usize, u32)> =
                    chunk.iter().map(|t| (t.cell, b.root(t, &edges))).collect();
                let mut guard = merge.lock().unwrap_or_else(|e| e.into_inner());
                let (top, roots, next, pending) = &mut *guard;
                pending.insert(i, (b.arena, refs));
                while let Some((arena, refs)) = pending.remove(next) {
                    let fix = top.append(&arena);
                    for (cell, r) in refs {
                        roots[cell] = fix(r);
                    }
                    *next += 1;
                }
            });
        drop((edges, tasks));
        let (mut top, roots, _, _) = merge.into_inner().unwrap_or_else(|e| e.into_inner());
        top.tree.shrink_to_fit();
        TerritoryIndex {
            geo,
            roots,
            node_count: top.splits.len() * 4,
            tree: top.tree,
            sets: top.sets,
            leaf_count: top.leaf_count,
            edge_count: top.edge_count,
            borders,
        }
    }
}

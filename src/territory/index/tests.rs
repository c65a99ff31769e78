//! Tests of the point index and its disc queries.

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

/// Small discs near every edge of a square, the closing edge included, are answered from
/// the leaf holding the centre (the disc lies inside it) and must see that edge, and no
/// more than it, both ways: just reaching and just missing.
#[test]
fn small_discs_answered_from_the_leaf_see_each_edge() {
    // Edges off the root grid lines (multiples of 45/128 degrees).
    let index = TerritoryIndex::build(&[vec![square(0.1, 0.1, 10.0)]]);
    // ~11 m outside the middle of each edge (1e-4 degrees: 11.06 m of latitude, 11.07 m of
    // longitude at latitude 5.1).
    let outside = [
        [5.1, 0.1 - 1e-4],
        [10.1 + 1e-4, 5.1],
        [5.1, 10.1 + 1e-4],
        [0.1 - 1e-4, 5.1],
    ];
    for p in outside {
        assert!(index.locate(p).is_empty(), "{p:?} is outside");
        let frame = Frame::new(p, 20.0);
        let (cell, _) = index.cell_of(p).expect("in the plane");
        assert!(
            frame.inside_box(
                [cell.x0, cell.y0],
                [cell.x0 + cell.size, cell.y0 + cell.size]
            ),
            "{p:?}: the disc lies in the centre's cell, so the leaf path answers"
        );
        assert_eq!(
            ids(&index.territories_within(p, 20.0)),
            [0],
            "{p:?} at 20 m"
        );
        assert!(index.disc_touches(p, 20.0, TerritoryId(0)), "{p:?} at 20 m");
        assert!(
            index.territories_within(p, 10.0).is_empty(),
            "{p:?} at 10 m"
        );
        assert!(
            !index.disc_touches(p, 10.0, TerritoryId(0)),
            "{p:?} at 10 m"
        );
    }
    // Inside, near the middle: the disc is covered.
    let d = index.disc([5.1, 5.1], 1000.0);
    assert_eq!((ids(&d.inside), ids(&d.crossed)), (vec![0], vec![]));
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
    let ix = TerritoryIndex::build(&[vec![square(170.0, -20.0, 10.0), square(-180.0, -20.0, 5.0)]]);
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

/// A ring through the given points, closed.
fn ring(pts: &[Pt]) -> Vec<Pt> {
    let mut r = pts.to_vec();
    r.push(pts[0]);
    r
}

#[test]
fn lattice_borders_agree_with_slow_path() {
    // Edges along quadtree lines and through cell centres and corners, queried on a finer
    // lattice: points on edges and vertices, leaf centres on borders, segments through
    // vertices. Every one of these is decided by the symbolic perturbation.
    let s = ROOT_SIZE / 8.0;
    let (x0, y0) = (10.0 * ROOT_SIZE, 5.0 * ROOT_SIZE);
    let at = |i: i32, j: i32| [x0 + f64::from(i) * s, y0 + f64::from(j) * s];
    let mut ts = Vec::new();
    // A checkerboard of squares, each its own territory, sharing every border.
    for i in 0..6 {
        for j in 0..6 {
            if (i + j) % 2 == 0 {
                ts.push(vec![ring(&[
                    at(i, j),
                    at(i + 1, j),
                    at(i + 1, j + 1),
                    at(i, j + 1),
                ])]);
            }
        }
    }
    // A diamond whose 45° edges pass through lattice points, over the board.
    ts.push(vec![ring(&[at(3, -2), at(8, 3), at(3, 8), at(-2, 3)])]);
    // A staircase with a hole, and a fan of thin triangles meeting at one lattice point
    // (many edges there, so cells split deep).
    let mut stair = vec![at(8, 0)];
    for k in 0..6 {
        stair.push(at(14 - k, k));
        stair.push(at(14 - k, k + 1));
    }
    stair.push(at(8, 6));
    ts.push(vec![
        ring(&stair),
        ring(&[at(10, 1), at(11, 1), at(11, 2), at(10, 2)]),
    ]);
    let hub = at(4, 12);
    let fan: Vec<Vec<Pt>> = (0..40)
        .map(|k| {
            let a = f64::from(k) * std::f64::consts::TAU / 40.0;
            let b = a + 0.07;
            ring(&[
                hub,
                [hub[0] + 3.0 * s * a.cos(), hub[1] + 3.0 * s * a.sin()],
                [hub[0] + 3.0 * s * b.cos(), hub[1] + 3.0 * s * b.sin()],
            ])
        })
        .collect();
    ts.push(fan);
    let ix = TerritoryIndex::build(&ts);
    for i in -24..=64 {
        for j in -24..=64 {
            let p = [x0 + f64::from(i) * s / 4.0, y0 + f64::from(j) * s / 4.0];
            assert_eq!(ix.locate(p), ix.locate_slow(p), "{p:?}");
        }
    }
    // The hub itself, and points a hair off it in every direction.
    for (dx, dy) in [
        (0.0, 0.0),
        (1e-12, 0.0),
        (-1e-12, 0.0),
        (0.0, 1e-12),
        (0.0, -1e-12),
    ] {
        let p = [hub[0] + dx, hub[1] + dy];
        assert_eq!(ix.locate(p), ix.locate_slow(p), "{p:?}");
    }
}

#[test]
fn random_snapped_rings_agree_with_slow_path() {
    use rand::{Rng, SeedableRng};
    // Random rings with vertices on a coarse dyadic lattice (so collinear, overlapping and
    // crossing edges abound), across root cells and the ±180 meridian, queried on the
    // lattice and at random.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let s = ROOT_SIZE / 4.0;
    let snap = |x: f64, y: f64| -> Pt {
        [
            ((x / s).round() * s).clamp(-180.0, 180.0),
            ((y / s).round() * s).clamp(-90.0, 90.0),
        ]
    };
    let mut ts: Vec<Vec<Vec<Pt>>> = Vec::new();
    for (cx, cy) in [(0.0, 0.0), (179.5, 10.0), (-179.6, 10.0), (45.0, 89.6)] {
        for _ in 0..6 {
            let rings = (0..rng.gen_range(1..4))
                .map(|_| {
                    let n = rng.gen_range(3..40);
                    let pts: Vec<Pt> = (0..n)
                        .map(|_| snap(cx + rng.gen_range(-1.0..1.0), cy + rng.gen_range(-1.0..1.0)))
                        .collect();
                    ring(&pts)
                })
                .collect();
            ts.push(rings);
        }
    }
    let ix = TerritoryIndex::build(&ts);
    for _ in 0..20_000 {
        let (cx, cy) =
            [(0.0, 0.0), (179.5, 10.0), (-179.6, 10.0), (45.0, 89.6)][rng.gen_range(0..4)];
        let (x, y) = (cx + rng.gen_range(-1.2..1.2), cy + rng.gen_range(-1.2..1.2));
        let p = if rng.gen_bool(0.5) {
            [
                (x / s * 4.0).round() * s / 4.0,
                (y / s * 4.0).round() * s / 4.0,
            ]
        } else {
            [x, y]
        };
        let p = [p[0].clamp(-180.0, 180.0), p[1].clamp(-90.0, 90.0)];
        assert_eq!(ix.locate(p), ix.locate_slow(p), "{p:?}");
    }
}

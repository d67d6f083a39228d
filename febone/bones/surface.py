"""Closed triangle surfaces: checks and repairs, inside test by ray casting, distances.

All pure NumPy. A :class:`Surface` is a closed, edge-manifold, consistently and outward
oriented triangle mesh in mm; :func:`clean_surface` makes one from raw triangles or says
exactly what is wrong with them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["Surface", "SurfaceError", "clean_surface", "voxelize_surface", "closest_points",
           "surface_volume"]

log = logging.getLogger(__name__)


class SurfaceError(ValueError):
    """A surface that cannot be turned into a solid (open, non-manifold, empty, wrong units)."""


@dataclass(frozen=True)
class Surface:
    """A closed triangle surface.

    Attributes:
        points: (n_points, 3) vertex coordinates, mm.
        triangles: (n_triangles, 3) vertex ids, counter-clockwise seen from outside.
        repairs: what :func:`clean_surface` changed (empty when nothing).
        source: file name or description.
    """

    points: np.ndarray
    triangles: np.ndarray
    repairs: tuple = ()
    source: str = ""

    @property
    def volume_mm3(self) -> float:
        """Enclosed volume by the divergence theorem, mm³ (positive when outward)."""
        return surface_volume(self.points, self.triangles)

    @property
    def lower(self) -> np.ndarray:
        return self.points.min(axis=0)

    @property
    def upper(self) -> np.ndarray:
        return self.points.max(axis=0)


def surface_volume(points: np.ndarray, triangles: np.ndarray) -> float:
    """Signed enclosed volume Σ (a · (b × c)) / 6 of a closed triangle mesh, mm³."""
    a, b, c = (points[triangles[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _where(points, ids) -> str:
    p = points[np.asarray(ids).ravel()[0]]
    return f"({p[0]:.4g}, {p[1]:.4g}, {p[2]:.4g})"


def _edge_table(tri: np.ndarray):
    """Undirected edge ids per triangle corner edge, counts, and directed orientation."""
    directed = np.stack([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], axis=1).reshape(-1, 2)
    und = np.sort(directed, axis=1)
    uniq, inv, counts = np.unique(und, axis=0, return_inverse=True, return_counts=True)
    forward = directed[:, 0] == und[:, 0]
    return uniq, inv.ravel(), counts, forward


def _orient(tri: np.ndarray, inv: np.ndarray, forward: np.ndarray, n_edges: int):
    """Flip triangles so that every edge is used once in each direction (BFS over the
    edge adjacency). Returns (triangles, n_flipped, component id per triangle).

    Raises:
        SurfaceError: the surface is not orientable (a Möbius-like configuration).
    """
    n = len(tri)
    edge_tris = np.full((n_edges, 2), -1, dtype=np.int64)
    slot = np.zeros(n_edges, dtype=np.int64)
    owner = np.repeat(np.arange(n), 3)
    for e, t in zip(inv, owner):  # each manifold edge has exactly two triangles
        edge_tris[e, slot[e]] = t
        slot[e] += 1
    edge_fwd = forward.reshape(n, 3)
    edge_ids = inv.reshape(n, 3)
    flip = np.zeros(n, dtype=bool)
    comp = -np.ones(n, dtype=np.int64)
    n_comp = 0
    for seed in range(n):
        if comp[seed] >= 0:
            continue
        comp[seed] = n_comp
        stack = [seed]
        while stack:
            t = stack.pop()
            for k in range(3):
                e = edge_ids[t, k]
                other = edge_tris[e, 0] if edge_tris[e, 1] == t else edge_tris[e, 1]
                # directions must differ: fwd(t) xor flip(t) != fwd(other) xor flip(other)
                ko = int(np.flatnonzero(edge_ids[other] == e)[0])
                want = (edge_fwd[t, k] ^ flip[t]) ^ True ^ edge_fwd[other, ko]
                if comp[other] < 0:
                    comp[other] = n_comp
                    flip[other] = want
                    stack.append(other)
                elif flip[other] != want:
                    raise SurfaceError("the surface is not orientable (its triangles cannot be "
                                       "ordered consistently); repair it in a mesh editor")
        n_comp += 1
    out = tri.copy()
    out[flip] = out[flip][:, ::-1]
    return out, int(flip.sum()), comp


def clean_surface(points, triangles, *, source: str = "", repair: bool = True) -> Surface:
    """Check a triangle surface and make the documented repairs.

    Repairs (recorded in ``Surface.repairs``, logged; with ``repair=False`` each is an
    error instead): merging duplicate vertices (STL files store every triangle's own
    copies), dropping degenerate (zero-area) and duplicate triangles, dropping unused
    vertices, making the orientation consistent, and turning inside-out components
    outward.

    Raises:
        SurfaceError: no triangles; open surface (boundary edges: holes); non-manifold
            edges (shared by more than two triangles); non-orientable surface. The message
            says where and how to fix it.
    """
    pts = np.asarray(points, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64)
    if pts.ndim != 2 or pts.shape[1] != 3 or tri.ndim != 2 or tri.shape[1] != 3 or len(tri) == 0:
        raise SurfaceError(f"{source or 'the surface'} has no triangles (points {pts.shape}, "
                           f"triangles {tri.shape}); febone needs a closed triangle surface")
    if not np.all(np.isfinite(pts)):
        raise SurfaceError(f"{source or 'the surface'} has NaN/inf vertex coordinates")
    repairs = []

    def note(msg):
        if not repair:
            raise SurfaceError(f"{source or 'the surface'}: {msg} (pass repair=True to let "
                               f"febone fix this)")
        repairs.append(msg)
        log.info("%s: %s", source or "surface", msg)

    diag = float(np.linalg.norm(pts.max(0) - pts.min(0)))
    tol = 1e-9 * max(diag, 1e-30)
    key = np.round((pts - pts.min(0)) / tol).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    if len(first) < len(pts):
        order = np.argsort(first)
        remap = np.empty(len(first), dtype=np.int64)
        remap[order] = np.arange(len(first))
        tri = remap[inverse.ravel()][tri]
        pts = pts[np.sort(first)]
        note(f"merged {len(key) - len(first)} duplicate vertices")
    a, b, c = (pts[tri[:, i]] for i in range(3))
    area2 = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    degenerate = (tri[:, 0] == tri[:, 1]) | (tri[:, 1] == tri[:, 2]) | (tri[:, 0] == tri[:, 2]) \
        | (area2 <= 1e-12 * diag**2)
    if degenerate.any():
        tri = tri[~degenerate]
        note(f"dropped {int(degenerate.sum())} degenerate (zero-area) triangles")
    _, first = np.unique(np.sort(tri, axis=1), axis=0, return_index=True)
    if len(first) < len(tri):
        note(f"dropped {len(tri) - len(first)} duplicate triangles")
        tri = tri[np.sort(first)]
    used = np.unique(tri)
    if len(used) < len(pts):
        remap = -np.ones(len(pts), dtype=np.int64)
        remap[used] = np.arange(len(used))
        tri, pts = remap[tri], pts[used]
        note(f"dropped {len(remap) - len(used)} unused vertices")
    edges, inv, counts, forward = _edge_table(tri)
    bad = np.flatnonzero(counts > 2)
    if bad.size:
        raise SurfaceError(
            f"{source or 'the surface'} is non-manifold: {bad.size} edges are shared by more "
            f"than two triangles, e.g. at {_where(pts, edges[bad])} mm (touching or "
            f"self-intersecting shells); separate or remesh it (pymeshfix.MeshFix, MeshLab "
            f"'Repair non Manifold Edges')")
    open_e = np.flatnonzero(counts == 1)
    if open_e.size:
        raise SurfaceError(
            f"{source or 'the surface'} is open: {open_e.size} boundary edges (holes), e.g. at "
            f"{_where(pts, edges[open_e])} mm; a volume mesh needs a closed surface: close the "
            f"holes first (pymeshfix.MeshFix, MeshLab 'Close Holes', Blender 3D-Print toolbox)")
    fwd = forward.copy()
    tri2, n_flip, comp = _orient(tri, inv, fwd, len(edges))
    if n_flip:
        note(f"re-oriented {n_flip} triangles for a consistent orientation")
        tri = tri2
    # outward: each component's signed volume must be positive
    flipped = 0
    for k in np.unique(comp):
        sel = comp == k
        if surface_volume(pts, tri[sel]) < 0:
            tri[sel] = tri[sel][:, ::-1]
            flipped += 1
    if flipped:
        note(f"turned {flipped} inside-out component(s) outward")
    return Surface(pts, tri, tuple(repairs), source)


def voxelize_surface(surface: Surface, h: float, *, pad: int = 1):
    """Voxels whose centre lies inside a closed surface (non-zero winding along z rays).

    Returns:
        (mask (nz, ny, nx) bool, origin (3,) mm).
    """
    lo, hi = surface.lower, surface.upper
    n = np.ceil((hi - lo) / h).astype(np.int64) + 2 * pad
    origin = lo - pad * h
    nx, ny, nz = (int(v) for v in n)
    P = surface.points
    T = surface.triangles
    a, b, c = P[T[:, 0]], P[T[:, 1]], P[T[:, 2]]
    nrm_z = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    def cast(jitter):
        wind = np.zeros((ny, nx, nz + 1), dtype=np.int64)
        cx0 = origin[0] + 0.5 * h + jitter[0]
        cy0 = origin[1] + 0.5 * h + jitter[1]
        xs = np.stack([a[:, 0], b[:, 0], c[:, 0]], 1)
        ys = np.stack([a[:, 1], b[:, 1], c[:, 1]], 1)
        i0 = np.maximum(np.ceil((xs.min(1) - cx0) / h).astype(np.int64), 0)
        i1 = np.minimum(np.floor((xs.max(1) - cx0) / h).astype(np.int64), nx - 1)
        j0 = np.maximum(np.ceil((ys.min(1) - cy0) / h).astype(np.int64), 0)
        j1 = np.minimum(np.floor((ys.max(1) - cy0) / h).astype(np.int64), ny - 1)
        ni, nj = np.maximum(i1 - i0 + 1, 0), np.maximum(j1 - j0 + 1, 0)
        cnt = ni * nj
        keep = (cnt > 0) & (nrm_z != 0)
        t = np.repeat(np.flatnonzero(keep), cnt[keep])
        start = np.repeat(np.cumsum(cnt[keep]) - cnt[keep], cnt[keep])
        local = np.arange(len(t)) - start
        ii = i0[t] + local % ni[t]
        jj = j0[t] + local // ni[t]
        px, py = cx0 + ii * h, cy0 + jj * h
        # barycentric coordinates in the xy projection
        ax, ay, bx, by, cx, cy = a[t, 0], a[t, 1], b[t, 0], b[t, 1], c[t, 0], c[t, 1]
        det = nrm_z[t]
        l1 = ((px - ax) * (cy - ay) - (py - ay) * (cx - ax)) / det
        l2 = ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) / det
        l0 = 1.0 - l1 - l2
        hit = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        zc = l0 * a[t, 2] + l1 * b[t, 2] + l2 * c[t, 2]
        k = np.clip(np.ceil((zc - origin[2]) / h - 0.5).astype(np.int64), 0, nz)
        sign = -np.sign(det).astype(np.int64)  # entering through a downward face: +1
        np.add.at(wind, (jj[hit], ii[hit], k[hit]), sign[hit])
        total = wind.sum(axis=2)
        return np.cumsum(wind, axis=2)[:, :, :nz] != 0, total != 0

    inside, bad = cast(np.array([1.37e-7, 2.91e-7]) * h)
    if bad.any():  # a ray grazed an edge or vertex: recast those columns slightly shifted
        inside2, bad2 = cast(np.array([3.13e-4, -2.21e-4]) * h)
        inside[bad] = inside2[bad]
        if np.any(bad & bad2):
            log.warning("%d voxel columns could not be classified cleanly", int(np.sum(bad & bad2)))
    return np.transpose(inside, (2, 0, 1)).copy(), origin


def _closest_on_triangles(p, a, b, c):
    """Closest points on triangles (a, b, c) to points p (all (..., 3)); Ericson 2005 §5.1.5."""
    ab, ac, ap = b - a, c - a, p - a
    d1 = np.sum(ab * ap, -1)
    d2 = np.sum(ac * ap, -1)
    bp = p - b
    d3 = np.sum(ab * bp, -1)
    d4 = np.sum(ac * bp, -1)
    cp = p - c
    d5 = np.sum(ab * cp, -1)
    d6 = np.sum(ac * cp, -1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v = vb / denom
        w = vc / denom
        res = a + ab * v[..., None] + ac * w[..., None]  # interior
        # edge regions
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    r_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    r_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    r_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    res = np.where(r_bc[..., None], b + (c - b) * np.nan_to_num(t_bc)[..., None], res)
    res = np.where(r_ac[..., None], a + ac * np.nan_to_num(t_ac)[..., None], res)
    res = np.where(r_ab[..., None], a + ab * np.nan_to_num(t_ab)[..., None], res)
    res = np.where(((d6 >= 0) & (d5 <= d6))[..., None], c, res)
    res = np.where(((d3 >= 0) & (d4 <= d3))[..., None], b, res)
    res = np.where(((d1 <= 0) & (d2 <= 0))[..., None], a, res)
    return res


def closest_points(surface: Surface, p: np.ndarray, max_dist: float):
    """Closest surface points (mm) and distances, searched within ``max_dist`` mm.

    Points farther than ``max_dist`` from every triangle get distance ``max_dist`` and
    themselves as closest point.

    Returns:
        (closest (n, 3) mm, distance (n,) mm).
    """
    p = np.asarray(p, dtype=np.float64)
    P, T = surface.points, surface.triangles
    A, B, C = P[T[:, 0]], P[T[:, 1]], P[T[:, 2]]
    tlo = np.minimum(np.minimum(A, B), C) - max_dist
    thi = np.maximum(np.maximum(A, B), C) + max_dist
    order = np.lexsort(np.floor(p / max(max_dist, 1e-9)).T[::-1].astype(np.int64))
    best = np.array(p)
    dist = np.full(len(p), float(max_dist))
    chunk = 256
    for s in range(0, len(p), chunk):
        idx = order[s:s + chunk]
        q = p[idx]
        qlo, qhi = q.min(0), q.max(0)
        cand = np.flatnonzero(np.all((thi >= qlo) & (tlo <= qhi), axis=1))
        for c0 in range(0, len(cand), 512):
            cs = cand[c0:c0 + 512]
            cp = _closest_on_triangles(q[:, None, :], A[None, cs], B[None, cs], C[None, cs])
            d = np.linalg.norm(cp - q[:, None, :], axis=2)
            j = np.argmin(d, axis=1)
            dj = d[np.arange(len(q)), j]
            better = dj < dist[idx]
            dist[idx[better]] = dj[better]
            best[idx[better]] = cp[np.arange(len(q)), j][better]
    return best, dist

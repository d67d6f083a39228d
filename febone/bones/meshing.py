"""Meshing implicit bones: voxel hex8 meshes and surface-fitted tet4 meshes.

* ``hexahedron``: the voxels whose centre lies inside the bone (after keeping the largest
  face-connected component and a well-composedness repair, so that the surface is a closed
  2-manifold). Regular, axis-aligned, ready for a structured voxel operator.
* ``tetra``: the same voxels split into 6 Kuhn tetrahedra (conforming across voxels), then
  every surface node is moved onto the implicit surface by Newton projection. Each move is
  halved (per node, up to 8 times, then dropped) while any tetrahedron touching it would
  fall below a shape quality of 0.2 (0.66 for an undistorted Kuhn tet; quality =
  6√2·V / ℓ_rms³, 1 for the regular tetrahedron), so no element is ever inverted or
  flattened; :func:`febone.mesh.validate_mesh` checks the result. Faces on the bone's flat
  planes (cut faces, endplates) stay exactly on their planes.

Why not TetGen/CGAL (pygalmesh, pytetwild): both are compiled dependencies with their own
random refinement; the grid-based mesh here is pure NumPy, regenerates bit for bit on one
platform, conforms to the voxel mesh (the same nodes plus surface fitting), and is good
enough for continuum FE of whole bones at 1–3 mm. A Delaunay mesher would give fewer,
better-graded elements; plug one in through :func:`febone.mesh.read_mesh` if needed.

Element density: mean of ``bone.density`` over sub-sample points of the element that lie
inside the bone (27 per voxel, 5 per tetrahedron), a partial-volume average like a QCT
voxel's.
"""
from __future__ import annotations

import logging

import numpy as np

from ..mesh import Mesh
from .implicit import ImplicitBone
from .voxels import grid_for_box, keep_largest_component, make_well_composed, mask_hex_cells, \
    voxel_centres

__all__ = ["mesh_bone", "sample_mask", "hex_to_tets", "snap_to_surface", "tet_quality",
           "project_to_surface", "boundary_face_keys", "tet4_to_tet10", "KUHN"]

log = logging.getLogger(__name__)

#: Kuhn split of a VTK-ordered hexahedron into 6 positively oriented tetrahedra around the
#: diagonal 0–6 (the same split as febone.mesh.structured.box_mesh): conforming between
#: neighbouring voxels.
KUHN = np.array([[0, 1, 2, 6], [0, 2, 3, 6], [0, 3, 7, 6], [0, 7, 4, 6], [0, 4, 5, 6],
                 [0, 5, 1, 6]])

_CHUNK = 262_144
Q_MIN = 0.2


def _chunked(fn, pts: np.ndarray) -> np.ndarray:
    if len(pts) <= _CHUNK:
        return fn(pts)
    return np.concatenate([fn(pts[i:i + _CHUNK]) for i in range(0, len(pts), _CHUNK)])


def sample_mask(bone: ImplicitBone, h: float):
    """Voxelise a bone: voxels whose centre has sdf < 0, largest component, well-composed.

    Returns:
        (mask (nz, ny, nx) bool, origin (3,) mm).
    """
    shape, origin = grid_for_box(bone.lower, bone.upper, h, anchor=bone.grid_anchor)
    centres = voxel_centres(shape, origin, h)
    mask = (_chunked(bone.sdf, centres) < 0).reshape(shape)
    if not mask.any():
        raise ValueError(f"no voxel of size {h} mm has its centre inside {bone.name!r}; use a "
                         f"smaller voxel size")
    mask = keep_largest_component(mask)
    if bone.well_composed:
        mask = make_well_composed(mask)
    return mask, origin


def hex_to_tets(cells: np.ndarray) -> np.ndarray:
    """(6·n_hex, 4) Kuhn tetrahedra of VTK-ordered hexahedra, hex by hex."""
    return np.asarray(cells)[:, KUHN].reshape(-1, 4)


def tet_quality(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """(n_tets,) signed shape quality 6√2·V/ℓ_rms³: 1 regular, 0 flat, < 0 inverted."""
    x = points[tets]
    e1, e2, e3 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]
    vol = np.einsum("ij,ij->i", np.cross(e1, e2), e3) / 6.0
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    l2 = sum(np.sum((x[:, a] - x[:, b]) ** 2, axis=1) for a, b in pairs) / 6.0
    return 6.0 * np.sqrt(2.0) * vol / np.maximum(l2, 1e-300) ** 1.5


def project_to_surface(sdf, p: np.ndarray, h: float, n_iter: int = 4,
                       frozen_axis: np.ndarray | None = None) -> np.ndarray:
    """Newton projection of points onto the zero level set of ``sdf`` (central-difference
    gradient, step 1e-3·h), in mm. ``frozen_axis`` (n,) holds, per point, an axis (0/1/2)
    along which it must not move, or −1."""
    p = np.array(p, dtype=np.float64)
    eps = 1e-3 * h
    for _ in range(n_iter):
        f = sdf(p)
        g = np.stack([(sdf(p + eps * e) - sdf(p - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
        if frozen_axis is not None:
            rows = np.flatnonzero(frozen_axis >= 0)
            g[rows, frozen_axis[rows]] = 0.0
        g2 = np.maximum(np.sum(g * g, axis=1), 1e-12)
        p = p - (f / g2)[:, None] * g
    return p


def snap_to_surface(points: np.ndarray, tets: np.ndarray, nodes: np.ndarray,
                    targets: np.ndarray, *, q_min: float = Q_MIN, max_halvings: int = 8):
    """Move ``nodes`` towards ``targets`` as far as element quality allows.

    Args:
        points: (n_nodes, 3) mm. tets: (n_tets, 4). nodes: (m,) ids to move.
        targets: (m, 3) mm, where each node would like to go.
        q_min: lowest :func:`tet_quality` any touched tetrahedron may reach.

    Returns:
        (new points (n_nodes, 3), fraction moved (m,) in [0, 1]).
    """
    p0 = np.asarray(points, float)
    nodes = np.asarray(nodes)
    move = targets - p0[nodes]
    alpha = np.ones(len(nodes))
    halvings = np.zeros(len(nodes), dtype=np.int64)
    local = -np.ones(len(p0), dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    touched = np.flatnonzero((local[tets] >= 0).any(axis=1))
    t = tets[touched]
    floor = np.minimum(q_min, tet_quality(p0, t))  # never below q_min, nor below the start
    # alpha only decreases and alpha = 0 everywhere restores the valid start, so this ends
    for _ in range((max_halvings + 1) * 8):
        p = p0.copy()
        p[nodes] += alpha[:, None] * move
        bad = tet_quality(p, t) < floor
        if not bad.any():
            return p, alpha
        ids = local[t[bad]].ravel()
        ids = np.unique(ids[ids >= 0])
        ids = ids[alpha[ids] > 0]
        halvings[ids] += 1
        alpha[ids] = np.where(halvings[ids] >= max_halvings, 0.0, 0.5 * alpha[ids])
    log.warning("surface snapping stopped before every element was valid; keeping the "
                "unsnapped voxel surface")
    return p0, np.zeros(len(nodes))


def _edges(tets: np.ndarray) -> np.ndarray:
    e = tets[:, [0, 0, 0, 1, 1, 2]], tets[:, [1, 2, 3, 2, 3, 3]]
    pairs = np.sort(np.stack([e[0].ravel(), e[1].ravel()], axis=1), axis=1)
    return np.unique(pairs, axis=0)


def _fit_surface(points, tets, surface_nodes, project, *, rounds: int = 3, layers: int = 2):
    """Alternate guarded surface snapping and guarded Laplacian relaxation of the interior
    nodes within ``layers`` edges of the surface (which makes room for the next snap)."""
    edges = _edges(tets)
    n = len(points)
    near = np.zeros(n, dtype=bool)
    near[surface_nodes] = True
    for _ in range(layers):
        near[edges[near[edges[:, 0]], 1]] = True
        near[edges[near[edges[:, 1]], 0]] = True
    on = np.zeros(n, dtype=bool)
    on[surface_nodes] = True
    inner = np.flatnonzero(near & ~on)
    deg = np.bincount(edges.ravel(), minlength=n).astype(float)
    alpha = np.zeros(len(surface_nodes))
    for r in range(rounds):
        targets = project(points[surface_nodes])
        points, alpha = snap_to_surface(points, tets, surface_nodes, targets)
        if r == rounds - 1 or len(inner) == 0:
            break
        acc = np.zeros_like(points)
        np.add.at(acc, edges[:, 0], points[edges[:, 1]])
        np.add.at(acc, edges[:, 1], points[edges[:, 0]])
        mean = acc[inner] / deg[inner, None]
        relaxed = points[inner] + 0.5 * (mean - points[inner])
        points, _ = snap_to_surface(points, tets, inner, relaxed)
    return points, alpha


def _sub_points_hex(points, cells, n: int = 3) -> np.ndarray:
    """(n_cells, n³, 3) regular sub-sample points of axis-aligned voxels."""
    lo = points[cells[:, 0]]
    hi = points[cells[:, 6]]
    f = (np.arange(n) + 0.5) / n
    fz, fy, fx = np.meshgrid(f, f, f, indexing="ij")
    frac = np.stack([fx.ravel(), fy.ravel(), fz.ravel()], axis=1)
    return lo[:, None, :] + frac[None] * (hi - lo)[:, None, :]


_TET_SAMPLES = np.array([[0.25, 0.25, 0.25, 0.25], [0.5854102, 0.1381966, 0.1381966, 0.1381966],
                         [0.1381966, 0.5854102, 0.1381966, 0.1381966],
                         [0.1381966, 0.1381966, 0.5854102, 0.1381966],
                         [0.1381966, 0.1381966, 0.1381966, 0.5854102]])


def _sub_points_tet(points, tets) -> np.ndarray:
    """(n_tets, 5, 3): centroid and the 4 points of the degree-2 Gauss rule."""
    return np.einsum("sa,tai->tsi", _TET_SAMPLES, points[tets[:, :4]])


def element_density(bone: ImplicitBone, sub: np.ndarray) -> np.ndarray:
    """(n_el,) mean density over each element's sub-sample points inside the bone, g/cm³."""
    n_el, n_s, _ = sub.shape
    flat = sub.reshape(-1, 3)
    rho = _chunked(bone.density, flat).reshape(n_el, n_s)
    inside = (_chunked(bone.sdf, flat) < 0).reshape(n_el, n_s)
    num = np.where(inside, rho, 0.0).sum(axis=1)
    cnt = inside.sum(axis=1)
    return np.where(cnt > 0, num / np.maximum(cnt, 1), rho.mean(axis=1))


def boundary_face_keys(cells: np.ndarray, cell_type: str, n_nodes: int):
    """Boundary faces of a tet4/hex8 mesh, found with 1-D integer keys (fast).

    Returns:
        faces: (n_faces, 3 or 4) node ids, outward by the right-hand rule.
        owner: (n_faces,) element ids.
    """
    from ..mesh.elements import element

    local = element(cell_type).faces
    faces = cells[:, local].reshape(-1, local.shape[1])
    srt = np.sort(faces, axis=1)[:, :3].astype(np.int64)  # 3 corners identify a face
    key = (srt[:, 0] * n_nodes + srt[:, 1]) * n_nodes + srt[:, 2] if n_nodes < 2**20 else None
    if key is None:
        _, inverse, counts = np.unique(srt, axis=0, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    single = counts[inverse.ravel()] == 1
    owner = np.repeat(np.arange(len(cells)), local.shape[0])
    return faces[single], owner[single]


def _surface_nodes(points, cells, cell_type) -> np.ndarray:
    faces, _ = boundary_face_keys(cells, cell_type, len(points))
    on = np.zeros(len(points), dtype=bool)
    on[faces.ravel()] = True
    return on


def mesh_bone(bone: ImplicitBone, h: float, cell_type: str = "hexahedron", *,
              snap: bool = True) -> Mesh:
    """Mesh an implicit bone with cell and point data.

    Args:
        bone: from a generator (:func:`febone.bones.femur`, ...).
        h: voxel edge length, mm.
        cell_type: ``"hexahedron"``/``"hex8"`` (voxels) or ``"tetra"``/``"tet4"`` (Kuhn split
            fitted to the surface).
        snap: for tetrahedra, move surface nodes onto the implicit surface.

    Returns:
        A validated :class:`febone.Mesh` with cell data ``density_g_cm3`` (apparent density),
        ``E_MPa`` (by ``bone.law``), ``region_<name>`` (uint8 0/1) and point data node-set
        masks (uint8 0/1, see the generator).
    """
    from ..mesh.elements import ALIASES

    name = ALIASES.get(cell_type, cell_type)
    if name not in ("hexahedron", "tetra"):
        raise ValueError(f"mesh_bone builds 'hexahedron' (hex8) or 'tetra' (tet4) meshes; got "
                         f"{cell_type!r} (make tet10 with febone.bones.tet4_to_tet10)")
    mask, origin = sample_mask(bone, h)
    points, hexes, _ = mask_hex_cells(mask, origin, h)
    if name == "hexahedron":
        cells = hexes
        sub = _sub_points_hex(points, cells)
    else:
        cells = hex_to_tets(hexes)
        if snap:
            nodes = np.flatnonzero(_surface_nodes(points, cells, "tetra"))

            def project(p):
                # nodes on a flat face (cut, cube face) stay on it and slide within it onto
                # the rest of the surface: seen from 2h inside the face, the face itself is
                # not the nearest surface any more, and they move only parallel to it
                q = np.array(p)
                frozen = -np.ones(len(p), dtype=np.int64)
                on_plane = []
                for axis, value, inward in bone.flat_planes:
                    m = np.abs(p[:, axis] - value) <= 1e-9 * max(1.0, abs(value))
                    q[m, axis] += inward * 2.0 * h
                    frozen[m] = axis
                    on_plane.append((axis, value, m))
                target = project_to_surface(bone.sdf, q, h, frozen_axis=frozen)
                for axis, value, m in on_plane:
                    target[m, axis] = value
                step = target - p
                length = np.linalg.norm(step, axis=1)
                far = length > 0.9 * h  # never jump across a thin wall: cap the move
                step[far] *= (0.9 * h / length[far])[:, None]
                return p + step

            points, alpha = _fit_surface(points, cells, nodes, project)
            log.info("snapped %d surface nodes (%.1f%% fully, %.1f%% not at all)", len(nodes),
                     100 * np.mean(alpha == 1), 100 * np.mean(alpha == 0))
        sub = _sub_points_tet(points, cells)
    if bone.uniform_density is not None:
        rho = np.full(len(cells), float(bone.uniform_density))
    else:
        rho = element_density(bone, sub)
    centroids = points[cells].mean(axis=1)
    cell_data = {"density_g_cm3": rho, "E_MPa": bone.modulus(rho)}
    for rname, m in bone.regions(centroids).items():
        cell_data[f"region_{rname}"] = np.asarray(m, dtype=np.uint8)
    on = _surface_nodes(points, cells, name)
    point_data = {k: np.asarray(v, dtype=np.uint8)
                  for k, v in bone.node_sets(points, on, h).items()}
    mesh = Mesh.create(points, cells, name, point_data, cell_data)
    log.info("%s h=%.3g mm %s: %d nodes, %d elements", bone.name, h, name, mesh.n_nodes,
             mesh.n_elements)
    return mesh


def tet4_to_tet10(mesh: Mesh) -> Mesh:
    """Quadratic (tet10) version of a tet4 mesh: a shared node at the midpoint of every edge
    (VTK edge order), cell data copied, node-set masks set on a midside node when both
    edge ends are in the set (other point data: the mean of the two ends)."""
    if mesh.cell_type != "tetra":
        raise ValueError(f"tet4_to_tet10 needs a tetra (tet4) mesh; got {mesh.cell_type!r}")
    edges = np.array([[0, 1], [1, 2], [2, 0], [0, 3], [1, 3], [2, 3]])
    pairs = np.sort(mesh.cells[:, edges].reshape(-1, 2), axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    points = np.concatenate([mesh.points, 0.5 * (mesh.points[unique[:, 0]]
                                                  + mesh.points[unique[:, 1]])])
    cells = np.concatenate([mesh.cells, mesh.n_nodes + inverse.reshape(-1, 6)], axis=1)
    point_data = {}
    for name, a in mesh.point_data.items():
        a = np.asarray(a)
        ends = a[unique[:, 0]], a[unique[:, 1]]
        if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
            mid = np.minimum(*ends).astype(a.dtype)
        else:
            mid = 0.5 * (ends[0] + ends[1])
        point_data[name] = np.concatenate([a, mid])
    return Mesh.create(points, cells, "tetra10", point_data, dict(mesh.cell_data))

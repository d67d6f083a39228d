"""Mesh builders and error norms used only by the verification tests.

Every mesh here is built from :func:`febone.box_mesh` points (or explicit coordinates) and
passed through :meth:`febone.Mesh.create`, so the library's own validation (positive
Jacobians, no unused nodes) runs on it. Units: mm.

* :func:`macneal_harder_cube` — the 7-element distorted hex8 patch (MacNeal & Harder 1985).
* :func:`jittered_box` — a box whose interior nodes are moved randomly (distorted patch).
* :func:`mapped_mesh` — any coordinate map applied to all nodes (tet10 mid-side nodes
  too, so tet10 elements become curved, isoparametric ones).
* :func:`cylinder_quarter`, :func:`sphere_octant` — thick-walled shells for Lamé problems.
* :func:`l2_error`, :func:`element_average` — ‖u_h − u‖_L2 and element means of a field by a
  high-order quadrature over the (mapped) elements,
  independent of the element's own stiffness quadrature.
"""
from __future__ import annotations

import numpy as np

import febone as fb
from febone.mesh.elements import element

# ------------------------------------------------------------------ patch-test meshes
#: Interior nodes of the MacNeal–Harder patch (science.md §9), listed so that node k lies
#: next to outer corner k of the unit cube in VTK hex order.
MACNEAL_HARDER_INNER = np.array([
    [0.249, 0.342, 0.192], [0.826, 0.288, 0.288], [0.850, 0.649, 0.263], [0.273, 0.750, 0.230],
    [0.320, 0.186, 0.643], [0.677, 0.305, 0.683], [0.788, 0.693, 0.644], [0.165, 0.745, 0.702],
])
_CUBE_CORNERS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                          [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
# faces of a VTK hexahedron with outward normals (right-hand rule)
_HEX_FACES = np.array([[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6],
                       [3, 0, 4, 7]])


def macneal_harder_cube() -> fb.Mesh:
    """Unit cube of 7 distorted hexahedra: one inner hex and one per cube face.

    Nodes 0..7 are the cube corners, 8..15 the inner nodes. For a cube face listed with
    its outward normal, the hex between the inner face (bottom, nodes 0..3) and the outer
    face (top, nodes 4..7) is positively oriented in VTK order.
    """
    points = np.concatenate([_CUBE_CORNERS, MACNEAL_HARDER_INNER])
    inner = np.arange(8, 16)
    cells = [inner]
    for face in _HEX_FACES:
        cells.append(np.concatenate([inner[face], face]))
    return fb.Mesh.create(points, np.array(cells), "hexahedron")


def _interior_mask(points: np.ndarray, lo, hi, tol: float = 1e-9) -> np.ndarray:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return np.all((points > lo + tol) & (points < hi - tol), axis=1)


def _straighten_tet10(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Put every tet10 mid-side node at the midpoint of its edge (straight-sided elements)."""
    edges = np.array([[0, 1], [1, 2], [2, 0], [0, 3], [1, 3], [2, 3]])
    points = points.copy()
    for k, (a, b) in enumerate(edges):
        points[cells[:, 4 + k]] = 0.5 * (points[cells[:, a]] + points[cells[:, b]])
    return points


def jittered_box(shape, cell_type: str, *, size=(1.0, 1.0, 1.0), amplitude: float = 0.15,
                 seed: int = 0) -> fb.Mesh:
    """``fb.box_mesh`` with every interior corner node moved by up to ``amplitude`` × the
    cell size per axis (uniform random). tet10 mid-side nodes are re-centred on their
    (now distorted) straight edges, so elements stay affine. Surface nodes do not move."""
    base = fb.box_mesh(shape, size=size, cell_type=cell_type)
    pts = base.points.copy()
    h = np.asarray(size, float) / np.asarray(shape, float)
    n_corner = int(np.prod(np.asarray(shape) + 1))  # box_mesh lists grid nodes first
    rng = np.random.default_rng(seed)
    move = _interior_mask(pts, (0, 0, 0), size)
    move[n_corner:] = False
    pts[move] += rng.uniform(-amplitude, amplitude, size=(int(move.sum()), 3)) * h
    if base.cell_type == "tetra10":
        pts = _straighten_tet10(pts, base.cells)
    return fb.Mesh.create(pts, base.cells, base.cell_type)


# ------------------------------------------------------------------ mapped meshes
def mapped_mesh(mesh: fb.Mesh, mapping) -> fb.Mesh:
    """Apply ``mapping(points: (n, 3)) -> (n, 3)`` to every node (tet10 mid-side nodes
    included, so quadratic elements follow the curved geometry) and re-validate."""
    return fb.Mesh.create(mapping(mesh.points), mesh.cells, mesh.cell_type)


def _snap(x: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    return np.where(np.abs(x) < tol, 0.0, x)


def cylinder_quarter(a: float, b: float, height: float, shape, cell_type: str) -> fb.Mesh:
    """Quarter of a thick cylinder a ≤ r ≤ b, 0 ≤ θ ≤ π/2, 0 ≤ z ≤ height (mm).

    A box in (r, θ, z) with ``shape = (n_r, n_θ, n_z)`` cells, mapped by x = r cos θ,
    y = r sin θ (orientation-preserving: the map's Jacobian is r > 0). Symmetry planes are
    y = 0 (θ = 0) and x = 0 (θ = π/2), snapped to exactly 0.
    """
    box = fb.box_mesh(shape, size=(b - a, np.pi / 2, height), cell_type=cell_type,
                      origin=(a, 0.0, 0.0))

    def to_xyz(p):
        r, t, z = p.T
        return np.stack([_snap(r * np.cos(t)), _snap(r * np.sin(t)), z], axis=1)

    return mapped_mesh(box, to_xyz)


def _merge_nodes(points: np.ndarray, cells: np.ndarray, decimals: int = 9):
    """Merge coincident nodes (coordinates equal after rounding to ``decimals``)."""
    key = np.round(points, decimals)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return points[first], inverse.ravel()[cells]


def sphere_octant(a: float, b: float, n_r: int, n_t: int, cell_type: str) -> fb.Mesh:
    """Octant x, y, z ≥ 0 of a thick sphere a ≤ r ≤ b (mm), as three mapped boxes.

    The octant of the unit sphere is split like the corner of a cube: patch k is the cube
    face x_k = 1, parametrised by two equi-angular coordinates α, β ∈ [0, π/4]
    (s = tan α, t = tan β) and projected radially; r runs through the wall. Each patch is
    ``fb.box_mesh((n_r, n_t, n_t))`` in (r, α, β); the three are merged by coordinates
    (the Kuhn split's face diagonals agree on the shared faces, so the tet meshes are
    conforming; :func:`check_conforming` verifies it).
    """
    all_pts, all_cells, offset = [], [], 0
    for k in range(3):
        box = fb.box_mesh((n_r, n_t, n_t), size=(b - a, np.pi / 4, np.pi / 4),
                          cell_type=cell_type, origin=(a, 0.0, 0.0))
        r, al, be = box.points.T
        s, t, one = np.tan(al), np.tan(be), np.ones_like(al)
        # cyclic so that (r, s, t) is right-handed on every patch: k=0 (1,s,t), k=1 (t,1,s), k=2 (s,t,1)
        cube = [np.stack([one, s, t], 1), np.stack([t, one, s], 1), np.stack([s, t, one], 1)][k]
        xyz = _snap(r[:, None] * cube / np.linalg.norm(cube, axis=1, keepdims=True))
        all_pts.append(xyz)
        all_cells.append(box.cells + offset)
        offset += len(xyz)
    pts, cells = _merge_nodes(np.concatenate(all_pts), np.concatenate(all_cells))
    return fb.Mesh.create(pts, cells, cell_type)


def check_conforming(mesh: fb.Mesh, on_surface) -> None:
    """Raise AssertionError if a boundary face's centroid is not on a real boundary.

    ``on_surface(points: (n, 3)) -> (n,) bool``. A non-conforming interface between merged
    patches would show up as extra "boundary" faces inside the body.
    """
    faces, _ = fb.mesh.boundary_faces(mesh)
    centroids = mesh.points[faces].mean(axis=1)
    bad = ~np.asarray(on_surface(centroids))
    if bad.any():
        raise AssertionError(f"{int(bad.sum())} boundary faces lie inside the body: the merged "
                             f"mesh is not conforming")


# ------------------------------------------------------------------ error norms
def _gauss01(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def reference_rule(cell_type: str, n: int = 5):
    """A tensor-product quadrature rule on the reference element, ``n`` points per axis.

    Hexahedra: n-point Gauss–Legendre per axis on [−1, 1]³ (exact to degree 2n − 1 per
    variable). Tetrahedra: collapsed (Duffy) Gauss rule on the unit simplex,
    ξ = a(1−b)(1−c), η = b(1−c), ζ = c, weight (1−b)(1−c)² (exact to degree 2n − 3).

    Returns:
        points (n³, 3), weights (n³,) summing to 8 (hex) or 1/6 (tet).
    """
    if element(cell_type).name == "hexahedron":
        x, w = np.polynomial.legendre.leggauss(n)
        P = np.stack(np.meshgrid(x, x, x, indexing="ij"), -1).reshape(-1, 3)
        W = np.einsum("i,j,k->ijk", w, w, w).ravel()
        return P, W
    x, w = _gauss01(n)
    a, b, c = (g.ravel() for g in np.meshgrid(x, x, x, indexing="ij"))
    W = np.einsum("i,j,k->ijk", w, w, w).ravel() * (1 - b) * (1 - c) ** 2
    P = np.stack([a * (1 - b) * (1 - c), b * (1 - c), c], axis=1)
    return P, W


def l2_error(mesh: fb.Mesh, u_h: np.ndarray, exact, n: int = 5) -> tuple[float, float]:
    """(‖u_h − u‖_L2, ‖u‖_L2) over the mesh, in mm·mm^{3/2}.

    The FE field and the geometry are both interpolated with the element's shape functions
    (isoparametric); ``exact(x: (m, 3)) -> (m, 3)`` is evaluated at the mapped points.
    """
    ref = element(mesh.cell_type)
    P, W = reference_rule(mesh.cell_type, n)
    N = np.stack([ref.shape(p) for p in P])  # (nq, nen)
    dN = np.stack([ref.dshape(p) for p in P])  # (nq, nen, 3)
    X = mesh.points[mesh.cells]  # (ne, nen, 3)
    U = np.asarray(u_h)[mesh.cells]
    x = np.einsum("qa,eaj->eqj", N, X)
    J = np.einsum("qai,eaj->eqji", dN, X)
    dV = np.linalg.det(J) * W[None, :]
    ue = exact(x.reshape(-1, 3)).reshape(x.shape)
    uh = np.einsum("qa,eaj->eqj", N, U)
    err = np.sqrt(np.sum(dV * np.sum((uh - ue) ** 2, axis=-1)))
    norm = np.sqrt(np.sum(dV * np.sum(ue ** 2, axis=-1)))
    return float(err), float(norm)


def element_average(mesh: fb.Mesh, field, n: int = 5) -> np.ndarray:
    """(n_elements, ...) volume average over each element of ``field(x: (m, 3)) -> (m, ...)``,
    integrated with :func:`reference_rule` on the isoparametric geometry."""
    ref = element(mesh.cell_type)
    P, W = reference_rule(mesh.cell_type, n)
    N = np.stack([ref.shape(p) for p in P])
    dN = np.stack([ref.dshape(p) for p in P])
    X = mesh.points[mesh.cells]
    x = np.einsum("qa,eaj->eqj", N, X)
    dV = np.linalg.det(np.einsum("qai,eaj->eqji", dN, X)) * W[None, :]
    values = np.asarray(field(x.reshape(-1, 3)))
    values = values.reshape(x.shape[:2] + values.shape[1:])
    w = dV / dV.sum(axis=1, keepdims=True)
    return np.einsum("eq,eq...->e...", w, values)


# ------------------------------------------------------------------ remodelling test bone
#: The scenario TOML lines of the bar's loading: habitual compression of 1 BW, Pistoia fracture
#: load in compression.
BAR_LOADING = """\
[[load_cases]]
case = "compression"
magnitude = "1 BW"
[strength]
cases = ["compression"]
methods = ["pistoia"]
"""


def write_bar_bone(path):
    """A 72-element bar (3 × 3 × 8 hex8, 12 × 12 × 32 mm) written to ``path`` as a bone for
    remodelling runs: density 0.3 g/cm³ on the axis rising to 1.2 at the edges, a
    "femoral_neck" region (the middle third) and a "shaft" region (the rest), and the
    ``face_min``/``face_max`` node masks of the compression load case (:data:`BAR_LOADING`).
    Returns ``path``."""
    from dataclasses import replace

    from febone.mesh.io import write_mesh

    mesh = fb.box_mesh((3, 3, 8), size=(12.0, 12.0, 32.0))
    z = mesh.points[:, 2]
    c = mesh.points[mesh.cells].mean(axis=1)
    neck = ((c[:, 2] > 10) & (c[:, 2] < 22)).astype(np.uint8)
    write_mesh(path, replace(
        mesh, point_data={"face_min": (z == z.min()).astype(np.uint8),
                          "face_max": (z == z.max()).astype(np.uint8)},
        cell_data={"density_g_cm3": 0.3 + 0.9 * np.hypot(c[:, 0] - 6, c[:, 1] - 6) / 8.5,
                   "region_femoral_neck": neck, "region_shaft": 1 - neck}))
    return path


def run_differences(ref: dict, other: dict) -> dict:
    """Two runs' summaries (``ScenarioResult.summary()``) compared:
    {"relative": largest relative difference of the stiffness, fracture loads, vBMD/aBMD,
    markers and mean BV/TV; "change_pct": largest difference of a % change, in points}."""
    rel, points = [0.0], [0.0]

    def walk(a, b, key=""):
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                walk(a[k], b[k], k)
        elif isinstance(a, list):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                walk(x, y, key)
        elif key.endswith("change_pct"):
            points.append(abs(a - b))
        elif key != "t_score":           # T = (aBMD − mean)/SD: aBMD's difference, rescaled
            rel.append(abs(a - b) / abs(a))

    for key in ("regions", "stiffness_N_per_mm", "fracture_load_N", "markers", "mean_bvtv"):
        walk(ref[key], other[key], key)
    return {"relative": max(rel), "change_pct": max(points)}

"""Load-case node sets found from a bone's geometry, or given as boxes.

Meshes without point-data masks get their support and load sets from the geometry, in
febone's standard orientation (mm; see ``meshes/README.md``):

* **proximal femur** (right femur; a left one is found in its mirror image x → −x and
  loaded with the mirrored pose, see ``LoadCase.sided``): shaft along ``+z``
  (proximal up), ``+x`` lateral (greater trochanter), the head at ``−x``, cut across the
  shaft at its lowest z. A sphere is fitted to the femoral head (seeded at the most medial
  surface node of the proximal half); ``head_contact`` is the 35° cap around the direction
  20° medial of ``+z`` (stance hip contact), ``head_medial`` the 30° cap around ``−x``
  (sideways-fall support), both within 1.5 h of the sphere (h: median element edge);
  ``trochanter_lateral`` the surface nodes within max(4 mm, 1.5 h) of the most lateral
  point above the level 1.66 R below the head centre (R: head radius); ``distal_cut`` the
  surface nodes within 0.25 h of the lowest z. These are the definitions the bundled
  femora were generated with (``febone/bones/femur.py``).
* **vertebra**: ``+z`` cranial. Each endplate is the largest smooth patch of the surface
  seen from above (below): on an h-sized grid over x–y the top surface height is flood
  filled between neighbours that differ by at most 1.5 h, which separates the vertebral
  body from the posterior elements; the set is the surface nodes over that patch within
  (patch depth + 0.75 h) of its rim.
* **specimen cube**: ``face_{x,y,z}{min,max}`` are the nodes on the bounding planes
  (within 1e-6 of the extent); ``face_min``/``face_max`` alias the faces along the
  compression axis.

Anything else (another orientation, another bone) is given by the user as masks or boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..mesh.mesh import Mesh
from ..mesh.nodesets import nodes_in_box, node_set
from ..mesh.topology import surface_nodes

__all__ = ["Box", "femur_node_sets", "vertebra_node_sets", "cube_node_sets",
           "GEOMETRIC_SETS", "resolve_node_sets", "case_set_names", "with_case_sets"]

log = __import__("logging").getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the mesh's own frame, mm: nodes with lower ≤ p ≤ upper."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    def __post_init__(self):
        lo, hi = np.asarray(self.lower, float), np.asarray(self.upper, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo <= hi):
            raise ValueError(f"a box needs lower ≤ upper, 3 coordinates each (mm); got "
                             f"{self.lower}..{self.upper}")

    @classmethod
    def parse(cls, text: str) -> "Box":
        """``"x0,y0,z0,x1,y1,z1"`` (mm; ``inf``/``-inf`` leave an axis open)."""
        try:
            v = [float(t) for t in text.split(",")]
        except ValueError:
            v = []
        if len(v) != 6:
            raise ValueError(f"box {text!r}: give six numbers x0,y0,z0,x1,y1,z1 in mm")
        return cls(tuple(v[:3]), tuple(v[3:]))

    def nodes(self, mesh: Mesh) -> np.ndarray:
        return nodes_in_box(mesh, self.lower, self.upper)


def edge_length(mesh: Mesh) -> float:
    """Median length of the element edges 0–1, 1–2, 2–3, 0–3 (edges of tets and hexes), mm."""
    c = mesh.cells
    pairs = ((0, 1), (1, 2), (2, 3), (0, 3))
    lengths = np.concatenate([np.linalg.norm(mesh.points[c[:, a]] - mesh.points[c[:, b]], axis=1)
                              for a, b in pairs])
    return float(np.median(lengths))


def _fit_sphere(p: np.ndarray):
    """Least-squares sphere through (n, 3) points: |p|² = 2 c·p + k."""
    A = np.c_[2.0 * p, np.ones(len(p))]
    sol, *_ = np.linalg.lstsq(A, (p * p).sum(axis=1), rcond=None)
    c = sol[:3]
    return c, float(np.sqrt(max(sol[3] + c @ c, 0.0)))


def _orientation_hint(what: str) -> str:
    return (f"could not find {what} from the geometry; febone expects the standard orientation "
            f"(mm, shaft along +z proximal up, head at −x, greater trochanter at +x; see "
            f"meshes/README.md) or node sets given as point-data masks or boxes (--head, "
            f"--trochanter, --distal NAME or box:x0,y0,z0,x1,y1,z1)")


def femur_node_sets(mesh: Mesh) -> dict[str, np.ndarray]:
    """``head_contact``, ``head_medial``, ``trochanter_lateral``, ``distal_cut`` node ids of a
    proximal femur in the standard orientation (module docstring). A left femur (its proximal
    half reaching ≥ 1.5× further to +x than to −x of the distal cut's centre: the head is at
    +x) is searched in its mirror image x → −x, so its sets face its own medial side.

    Raises ValueError when no spherical head (radius 10–40 mm, rms misfit < 5 % of R + h/2
    for voxel steps) medial of the shaft, or no flat distal cut, is found.
    """
    if not _looks_left(mesh):
        return _right_femur_sets(mesh)
    sets = _right_femur_sets(replace(mesh, points=mesh.points * np.array([-1.0, 1.0, 1.0])),
                             side="left femur, searched in its mirror image")
    log.info("left femur (head at +x): node sets found in its mirror image")
    return sets


def _looks_left(mesh: Mesh) -> bool:
    """The proximal half reaches ≥ 1.5× further to +x than to −x of the lowest plane's centre."""
    p, h = mesh.points, edge_length(mesh)
    z = p[:, 2]
    shaft_x = p[z <= z.min() + 0.25 * h, 0].mean()
    x = p[z > 0.5 * (z.min() + z.max()), 0]
    return bool(x.max() - shaft_x >= 1.5 * (shaft_x - x.min()))


def _right_femur_sets(mesh: Mesh, side: str = "right femur") -> dict[str, np.ndarray]:
    """:func:`femur_node_sets` of a right femur (head at −x); ``side`` for the messages."""
    def hint(what: str) -> str:
        return f"{_orientation_hint(what)} [searched as a {side}]"

    p = mesh.points
    surf = np.zeros(mesh.n_nodes, bool)
    surf[surface_nodes(mesh)] = True
    h = edge_length(mesh)
    z = p[:, 2]
    proximal = surf & (z > 0.5 * (z.min() + z.max()))
    if proximal.sum() < 20:
        raise ValueError(hint("the proximal femur (too few surface nodes)"))
    seed = p[np.flatnonzero(proximal)[np.argmin(p[proximal, 0])]]
    chosen = surf & (np.linalg.norm(p - seed, axis=1) < 15.0)
    c, R = seed, 0.0
    for _ in range(8):
        if chosen.sum() < 10:
            break
        c, R = _fit_sphere(p[chosen])
        r = p - c
        dist = np.linalg.norm(r, axis=1)
        facing = (r @ (seed - c)) >= np.cos(np.deg2rad(110.0)) * dist * np.linalg.norm(seed - c)
        new = surf & facing & (np.abs(dist - R) <= max(1.5 * h, 0.05 * R))
        if np.array_equal(new, chosen):
            break
        chosen = new
    misfit = (float(np.sqrt(np.mean((np.linalg.norm(p[chosen] - c, axis=1) - R) ** 2)))
              if chosen.sum() >= 10 else np.inf)
    if not (10.0 <= R <= 40.0 and misfit < 0.05 * R + 0.5 * h and 0.5 * R < c[0] - seed[0] < 1.5 * R):
        raise ValueError(hint(f"a spherical femoral head (fit: radius {R:.3g} mm, rms misfit "
                              f"{misfit:.3g} mm)"))
    distal = surf & (z <= z.min() + 0.25 * h)
    span = np.ptp(p[distal, :2], axis=0) if distal.any() else np.zeros(2)
    if distal.sum() < 6 or span.min() < 2.0 * h:
        raise ValueError(hint(f"a flat distal cut at the lowest z (found {int(distal.sum())} "
                              f"nodes spanning {span.round(2).tolist()} mm)"))
    # the head sits medial of the shaft (offset ≈ 40 mm in adults); a sphere fitted to the
    # trochanter of a mirrored (left) femur sits on the shaft axis instead
    shaft_x = p[distal, 0].mean()
    if not c[0] < shaft_x - 0.5 * R:
        raise ValueError(hint(f"the femoral head medial of the shaft (the sphere found at "
                              f"x = {c[0]:.1f} mm is not medial of the distal cut at "
                              f"x = {shaft_x:.1f} mm)"))
    r = p - c
    dist = np.linalg.norm(r, axis=1)
    near_head = surf & (np.abs(dist - R) < 1.5 * h)
    cdir = np.array([-np.sin(np.deg2rad(20.0)), 0.0, np.cos(np.deg2rad(20.0))])
    head_contact = near_head & (r @ cdir >= np.cos(np.deg2rad(35.0)) * dist)
    head_medial = near_head & (-r[:, 0] >= np.cos(np.deg2rad(30.0)) * dist)
    gt_zone = surf & (z > c[2] - 1.66 * R) & (p[:, 0] > c[0] + R)
    if not gt_zone.any():
        raise ValueError(hint("the greater trochanter (nothing lateral of the head)"))
    troch = gt_zone & (p[:, 0] >= p[gt_zone, 0].max() - max(4.0, 1.5 * h))
    log.info("femoral head from geometry: centre %s mm, radius %.2f mm (rms misfit %.2f mm)",
             np.round(c, 2).tolist(), R, misfit)
    return {"head_contact": np.flatnonzero(head_contact), "head_medial": np.flatnonzero(head_medial),
            "trochanter_lateral": np.flatnonzero(troch), "distal_cut": np.flatnonzero(distal)}


def _endplate(p: np.ndarray, surf_ids: np.ndarray, h: float, sign: float) -> np.ndarray:
    """Surface nodes of the largest smooth patch seen along sign·z (see module docstring)."""
    q = p[surf_ids]
    height = sign * q[:, 2]
    ij = np.floor((q[:, :2] - q[:, :2].min(axis=0)) / h).astype(np.int64)
    shape = ij.max(axis=0) + 1
    flat = ij[:, 0] * shape[1] + ij[:, 1]
    top = np.full(shape[0] * shape[1], -np.inf)
    np.maximum.at(top, flat, height)
    top = top.reshape(shape)
    label = np.full(shape, -1, np.int64)
    areas = []
    for start in zip(*np.nonzero(np.isfinite(top))):
        if label[start] >= 0:
            continue
        k, stack, n = len(areas), [start], 0
        label[start] = k
        while stack:
            a, b = stack.pop()
            n += 1
            for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                na, nb = a + da, b + db
                if (0 <= na < shape[0] and 0 <= nb < shape[1] and label[na, nb] < 0
                        and np.isfinite(top[na, nb]) and abs(top[na, nb] - top[a, b]) <= 1.5 * h):
                    label[na, nb] = k
                    stack.append((na, nb))
        areas.append(n)
    best = int(np.argmax(areas))
    patch = label == best
    rim, deepest = top[patch].max(), top[patch].min()
    over = patch[ij[:, 0], ij[:, 1]]
    return surf_ids[over & (height >= rim - (rim - deepest) - 0.75 * h)], float(rim - deepest)


def vertebra_node_sets(mesh: Mesh) -> dict[str, np.ndarray]:
    """``endplate_superior``/``endplate_inferior`` node ids of a vertebra with +z cranial."""
    h = edge_length(mesh)
    surf = surface_nodes(mesh)
    sets = {}
    for name, sign in (("endplate_superior", 1.0), ("endplate_inferior", -1.0)):
        ids, depth = _endplate(mesh.points, surf, h, sign)
        span = np.ptp(mesh.points[ids, :2], axis=0) if ids.size else np.zeros(2)
        # an endplate is wide and nearly flat: concave by a few mm over 30–50 mm
        if ids.size < 6 or span.min() < 3.0 * h or depth > 0.2 * span.min():
            raise ValueError(f"{name}: no flat endplate found from the geometry (largest patch "
                             f"seen along {'+' if sign > 0 else '−'}z spans "
                             f"{span.round(2).tolist()} mm, {depth:.3g} mm deep); the vertebra "
                             f"must have +z cranial, or give --superior/--inferior as masks or "
                             f"boxes")
        sets[name] = ids
    return sets


def cube_node_sets(mesh: Mesh, axis: str = "z") -> dict[str, np.ndarray]:
    """``face_{x,y,z}{min,max}`` and ``face_min``/``face_max`` (along ``axis``) node ids."""
    p = mesh.points
    tol = 1e-6 * float(np.ptp(p))
    sets = {}
    for k, ax in enumerate("xyz"):
        sets[f"face_{ax}min"] = np.flatnonzero(p[:, k] <= p[:, k].min() + tol)
        sets[f"face_{ax}max"] = np.flatnonzero(p[:, k] >= p[:, k].max() - tol)
    sets["face_min"], sets["face_max"] = sets[f"face_{axis}min"], sets[f"face_{axis}max"]
    return sets


GEOMETRIC_SETS = {"sideways-fall": femur_node_sets, "stance": femur_node_sets,
                  "vertebral-compression": vertebra_node_sets, "compression": cube_node_sets}


def case_set_names(case) -> list[str]:
    """Names of the node sets a load case uses (loaded set, supports, ``towards``)."""
    names = [case.loaded, *(s.nodes for s in case.supports)]
    if case.towards is not None:
        names.append(case.towards)
    return list(dict.fromkeys(names))


def resolve_node_sets(mesh: Mesh, case, given=None, *, find: str = "auto"):
    """The mesh with a point-data mask for every node set ``case`` uses.

    Precedence per set name: ``given[name]`` (node ids or a :class:`Box`), then the mesh's own
    mask (unless ``find == "geometry"``), then the geometric finder of the case
    (:data:`GEOMETRIC_SETS`, unless ``find == "masks"``).

    Returns:
        (mesh with masks, {name: "given" | "box" | "mask" | "geometry"}).
    """
    if find not in ("auto", "geometry", "masks"):
        raise ValueError(f"find must be 'auto', 'geometry' or 'masks'; got {find!r}")
    given = dict(given or {})
    masks, source, found = {}, {}, None
    for name in case_set_names(case):
        if name in given:
            spec = given[name]
            ids = spec.nodes(mesh) if isinstance(spec, Box) else np.unique(np.asarray(spec, np.int64))
            if ids.size == 0 or ids.min() < 0 or ids.max() >= mesh.n_nodes:
                raise ValueError(f"node set {name!r}: {ids.size} ids, must be nonempty and in "
                                 f"0..{mesh.n_nodes - 1}")
            masks[name], source[name] = ids, "box" if isinstance(spec, Box) else "given"
        elif name in mesh.point_data and find != "geometry":
            masks[name], source[name] = node_set(mesh, name), "mask"
        elif find != "masks" and case.name in GEOMETRIC_SETS:
            if found is None:
                finder = GEOMETRIC_SETS[case.name]
                found = finder(mesh, case.axis) if finder is cube_node_sets else finder(mesh)
            if name not in found:
                raise ValueError(f"node set {name!r} of load case {case.name} is neither a mask "
                                 f"of the mesh nor one the geometry gives ({sorted(found)}); "
                                 f"give it as a mask or a box")
            masks[name], source[name] = found[name], "geometry"
        else:
            node_set(mesh, name)  # raises NodeSetError listing the available masks
    out = {}
    for name, ids in masks.items():
        m = np.zeros(mesh.n_nodes, np.int8)
        m[ids] = 1
        out[name] = m
    return mesh.with_point_data(**out), source


def with_case_sets(mesh: Mesh, cases) -> Mesh:
    """The mesh with a point-data mask for every node set of ``cases`` (names of
    :data:`~febone.strength.loadcases.CASES` with their default options, or LoadCase objects):
    its own masks where present, else found from the geometry (:func:`resolve_node_sets`).
    Write it with :func:`febone.write_mesh` to give a bone without masks to ``febone run``."""
    from .loadcases import CASES

    for case in cases:
        if isinstance(case, str):
            if case not in CASES:
                raise ValueError(f"unknown load case {case!r}; choose from {sorted(CASES)}")
            case = CASES[case]()
        mesh = resolve_node_sets(mesh, case)[0]
    return mesh

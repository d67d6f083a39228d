"""Mesh checks with messages that name the bad nodes/elements and say how to fix them.

Every function takes a :class:`~febone.mesh.Mesh` (read through its fields only, so that
:meth:`Mesh.create <febone.mesh.Mesh.create>` can call :func:`validate_mesh` without an import
cycle).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

__all__ = ["MeshError", "validate_mesh", "jacobian_determinants", "remove_unused_nodes"]

#: Elements whose smallest Jacobian is below this fraction of (longest corner edge)³ are
#: reported as degenerate (flat or collapsed).
DEGENERATE_RATIO = 1e-8

#: Largest coordinate magnitude accepted (any length unit): (1e30)³ element volumes still fit
#: in float64, and no bone comes near it.
MAX_COORDINATE = 1e30


class MeshError(ValueError):
    """An invalid mesh; the message names the offending ids and a fix."""


def _ids(ids, limit: int = 10) -> str:
    ids = np.asarray(ids).ravel()
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def jacobian_determinants(mesh) -> np.ndarray:
    """(n_elements, n_points) det J at the quadrature points and (for tet10) the corners.

    Positive for a correctly oriented element; its sum times the weights is the volume.
    """
    ref = mesh.element
    pts = list(ref.quad_points)
    if ref.n_nodes != ref.n_corners:  # curved elements: also check at the vertices
        pts += [np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])]
    dN = np.stack([ref.dshape(p) for p in pts])  # (np, nn, 3)
    X = mesh.points[mesh.cells]  # (ne, nn, 3)
    J = np.einsum("pai,eaj->epji", dN, X)
    return np.linalg.det(J)


def remove_unused_nodes(mesh):
    """A copy without nodes that no element references (point data is subset too)."""
    used = np.unique(mesh.cells)
    new_id = -np.ones(mesh.n_nodes, dtype=np.int64)
    new_id[used] = np.arange(len(used))
    return replace(mesh, points=mesh.points[used], cells=new_id[mesh.cells],
                   point_data={k: np.asarray(v)[used] for k, v in mesh.point_data.items()},
                   cell_data=dict(mesh.cell_data))


def validate_mesh(mesh) -> None:
    """Check coordinates, connectivity, orientation and data shapes.

    Raises:
        MeshError: naming the bad node or element ids: non-finite or absurdly large
            (> :data:`MAX_COORDINATE`) coordinates,
            out-of-range node ids, unused nodes, inverted or degenerate elements, data arrays
            of the wrong length, NaN cell data.
    """
    pts, cells = mesh.points, mesh.cells
    ref = mesh.element
    if cells.ndim != 2 or cells.shape[1] != ref.n_nodes:
        raise MeshError(f"{mesh.cell_type} cells need {ref.n_nodes} nodes each; got cells of "
                        f"shape {cells.shape}")
    if mesh.n_elements == 0:
        raise MeshError("the mesh has no elements")
    bad = np.flatnonzero(~np.all(np.isfinite(pts), axis=1))
    if bad.size:
        raise MeshError(f"non-finite (NaN/inf) coordinates at nodes {_ids(bad)}; fix or remove "
                        f"these nodes in the mesh file")
    far = np.flatnonzero(np.abs(pts).max(axis=1) > MAX_COORDINATE)
    if far.size:
        raise MeshError(f"coordinates beyond ±{MAX_COORDINATE:g} at nodes {_ids(far)}: larger "
                        f"than any bone in any unit (and their element volumes overflow); the "
                        f"file is corrupt or scaled wrongly: fix these nodes")
    out = np.flatnonzero(np.any((cells < 0) | (cells >= mesh.n_nodes), axis=1))
    if out.size:
        raise MeshError(f"elements {_ids(out)} reference node ids outside 0..{mesh.n_nodes - 1}; "
                        f"the connectivity does not match the point list")
    used = np.zeros(mesh.n_nodes, dtype=bool)
    used[cells.ravel()] = True
    unused = np.flatnonzero(~used)
    if unused.size:
        raise MeshError(f"nodes {_ids(unused)} belong to no element and would make the "
                        f"stiffness matrix singular; drop them with "
                        f"febone.mesh.remove_unused_nodes(mesh)")
    for name, a in mesh.point_data.items():
        if np.shape(a)[0] != mesh.n_nodes:
            raise MeshError(f"point data {name!r} has {np.shape(a)[0]} rows for {mesh.n_nodes} nodes")
    for name, a in mesh.cell_data.items():
        if np.shape(a)[0] != mesh.n_elements:
            raise MeshError(f"cell data {name!r} has {np.shape(a)[0]} rows for "
                            f"{mesh.n_elements} elements")
        if np.issubdtype(np.asarray(a).dtype, np.floating):
            nan = np.flatnonzero(~np.all(np.isfinite(np.reshape(a, (mesh.n_elements, -1))), axis=1))
            if nan.size:
                raise MeshError(f"cell data {name!r} is NaN/inf at elements {_ids(nan)}; fill "
                                f"these values before solving")
    det = jacobian_determinants(mesh)
    corner = pts[cells[:, : ref.n_corners]]
    span = np.linalg.norm(corner[:, :, None, :] - corner[:, None, :, :], axis=-1).max(axis=(1, 2))
    scale = np.maximum(span, np.finfo(float).tiny) ** 3
    dmin = det.min(axis=1)
    inverted = np.flatnonzero(dmin < -DEGENERATE_RATIO * scale)
    if inverted.size:
        raise MeshError(f"inverted elements (negative Jacobian) {_ids(inverted)}: their node "
                        f"order is reversed or the element is tangled; reorder the nodes "
                        f"(VTK order) or remesh")
    degenerate = np.flatnonzero(dmin <= DEGENERATE_RATIO * scale)
    if degenerate.size:
        raise MeshError(f"degenerate elements (zero volume: collapsed or flat) "
                        f"{_ids(degenerate)}; remove or remesh them")

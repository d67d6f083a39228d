"""Node sets: named masks from the mesh file, boxes, planes, predicates, the outer surface.

Every function returns a sorted (n,) int array of node ids and raises
:class:`NodeSetError` when the set would be empty, since an empty support or load set
always means a mistake in the input.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .mesh import Mesh
from .topology import surface_nodes as _surface_nodes

__all__ = ["NodeSetError", "node_set", "nodes_in_box", "nodes_on_plane", "nodes_where",
           "surface_node_set", "named_node_sets"]


class NodeSetError(ValueError):
    """A node set that is missing or empty."""


def _nonempty(ids: np.ndarray, what: str, hint: str) -> np.ndarray:
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if ids.size == 0:
        raise NodeSetError(f"node set {what} is empty; {hint}")
    return ids


def named_node_sets(mesh: Mesh) -> list[str]:
    """Names of the point-data arrays that are node-set masks (one value per node, 0/1)."""
    names = []
    for name, a in mesh.point_data.items():
        a = np.asarray(a)
        if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
            vals = np.unique(a)
            if vals.size <= 2 and np.all(np.isin(vals, [0, 1])):
                names.append(name)
    return names


def node_set(mesh: Mesh, name: str) -> np.ndarray:
    """Nodes whose point-data mask ``name`` is 1 (nonzero)."""
    if name not in mesh.point_data:
        raise NodeSetError(f"the mesh has no point-data mask {name!r}; available node sets: "
                           f"{named_node_sets(mesh) or 'none'}")
    mask = np.asarray(mesh.point_data[name]).reshape(mesh.n_nodes, -1)[:, 0]
    return _nonempty(np.flatnonzero(mask != 0), repr(name),
                     "the mask has no nonzero entry; check the mesh file")


def nodes_in_box(mesh: Mesh, lower, upper) -> np.ndarray:
    """Nodes with lower ≤ x ≤ upper componentwise (mm; use ±inf to leave an axis open)."""
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    inside = np.all((mesh.points >= lo) & (mesh.points <= hi), axis=1)
    return _nonempty(np.flatnonzero(inside), f"box {lo.tolist()}..{hi.tolist()}",
                     f"the mesh spans {mesh.points.min(0).tolist()}..{mesh.points.max(0).tolist()} mm")


def nodes_on_plane(mesh: Mesh, axis: int | str, value: float | str, tol: float | None = None) -> np.ndarray:
    """Nodes with coordinate ``axis`` within ``tol`` of ``value``.

    Args:
        axis: 0/1/2 or ``"x"``/``"y"``/``"z"``.
        value: coordinate in mm, or ``"min"``/``"max"`` for the mesh's extreme planes.
        tol: distance tolerance, mm (default 1e-6 × the mesh's extent).
    """
    ax = "xyz".index(axis) if isinstance(axis, str) else int(axis)
    coord = mesh.points[:, ax]
    if value == "min":
        value = coord.min()
    elif value == "max":
        value = coord.max()
    tol = 1e-6 * float(np.ptp(mesh.points)) if tol is None else tol
    return _nonempty(np.flatnonzero(np.abs(coord - float(value)) <= tol),
                     f"plane {'xyz'[ax]}={value}",
                     f"the mesh spans {coord.min()}..{coord.max()} mm along {'xyz'[ax]}; "
                     f"check the value or raise tol")


def nodes_where(mesh: Mesh, predicate: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Nodes where ``predicate(points: (n_nodes, 3)) -> (n_nodes,) bool`` is true."""
    mask = np.asarray(predicate(mesh.points), dtype=bool)
    if mask.shape != (mesh.n_nodes,):
        raise ValueError(f"the predicate must return a ({mesh.n_nodes},) boolean mask; got {mask.shape}")
    return _nonempty(np.flatnonzero(mask), "from predicate", "the predicate is false everywhere")


def surface_node_set(mesh: Mesh) -> np.ndarray:
    """Nodes on the boundary faces (outer surface and any inner cavities)."""
    return _nonempty(_surface_nodes(mesh), "surface", "the mesh has no boundary faces")

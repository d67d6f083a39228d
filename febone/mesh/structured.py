"""Structured meshes of boxes: hex8 grids and their conforming tet4/tet10 splits."""
from __future__ import annotations

import numpy as np

from .mesh import Mesh

__all__ = ["box_mesh", "grid_points", "hex_cells"]

# Kuhn (Freudenthal) split of the unit cube into 6 positively oriented tetrahedra along the
# main diagonal 0-6 (VTK hex corner numbering). Neighbouring cubes split their shared
# faces the same way, so the tetrahedral mesh is conforming.
_KUHN = np.array([[0, 1, 2, 6], [0, 2, 3, 6], [0, 3, 7, 6], [0, 7, 4, 6], [0, 4, 5, 6], [0, 5, 1, 6]])


def grid_points(shape, size, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(nx+1)(ny+1)(nz+1) × 3 node coordinates of a regular grid, x fastest.

    Args:
        shape: (nx, ny, nz) number of cells per axis.
        size: (Lx, Ly, Lz) box edge lengths, mm.
        origin: coordinates of the minimum corner, mm.
    """
    nx, ny, nz = shape
    axes = [np.linspace(o, o + s, n + 1) for o, s, n in zip(origin, size, shape)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


def hex_cells(shape) -> np.ndarray:
    """(nx·ny·nz, 8) hexahedra of a regular grid in VTK corner order, x fastest."""
    nx, ny, nz = shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    i, j, k = i.ravel(), j.ravel(), k.ravel()

    def node(di, dj, dk):
        return (i + di) + (nx + 1) * ((j + dj) + (ny + 1) * (k + dk))

    return np.stack([node(0, 0, 0), node(1, 0, 0), node(1, 1, 0), node(0, 1, 0),
                     node(0, 0, 1), node(1, 0, 1), node(1, 1, 1), node(0, 1, 1)], axis=1)


def _add_midside_nodes(points: np.ndarray, tets: np.ndarray):
    """Tet4 -> tet10: one shared node at the midpoint of every edge (VTK edge order)."""
    edges = np.array([[0, 1], [1, 2], [2, 0], [0, 3], [1, 3], [2, 3]])
    pairs = np.sort(tets[:, edges].reshape(-1, 2), axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    mid = 0.5 * (points[unique[:, 0]] + points[unique[:, 1]])
    new_ids = len(points) + inverse.reshape(len(tets), 6)
    return np.concatenate([points, mid]), np.concatenate([tets, new_ids], axis=1)


def box_mesh(shape, size=(1.0, 1.0, 1.0), cell_type: str = "hexahedron",
             origin=(0.0, 0.0, 0.0)) -> Mesh:
    """A meshed box [origin, origin + size].

    Args:
        shape: (nx, ny, nz) hexahedral cells per axis (tetrahedral meshes split each into 6).
        size: (Lx, Ly, Lz) edge lengths, mm.
        cell_type: ``hexahedron``/``hex8``, ``tetra``/``tet4`` or ``tetra10``/``tet10``.
        origin: minimum corner, mm.

    Returns:
        A validated :class:`Mesh` with no point or cell data.
    """
    from .elements import ALIASES

    name = ALIASES.get(cell_type, cell_type)
    points = grid_points(shape, size, origin)
    hexes = hex_cells(shape)
    if name == "hexahedron":
        return Mesh.create(points, hexes, name)
    tets = hexes[:, _KUHN].reshape(-1, 4)
    if name == "tetra":
        return Mesh.create(points, tets, name)
    if name == "tetra10":
        points, tets10 = _add_midside_nodes(points, tets)
        return Mesh.create(points, tets10, name)
    raise ValueError(f"box_mesh: unsupported cell type {cell_type!r}; use hex8, tet4 or tet10")

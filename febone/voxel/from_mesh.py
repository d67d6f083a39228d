"""Grid-aligned hex8 meshes as voxel grids: recognise one and map its nodes and elements.

A hex8 mesh is *grid-aligned* when every cell is an axis-aligned box of one size
(dx, dy, dz) whose corners lie on one regular grid, ``origin + (i·dx, j·dy, k·dz)``; the
bundled bones are. Its elements are then exactly the bone voxels of a :class:`VoxelGrid`
(the same trilinear element on the same box, so the same stiffness), and the voxel engine
solves it. :func:`mesh_grid` recognises such a mesh and returns the maps between the mesh's
numbering and the grid's (:class:`MeshGrid`), or raises :class:`NotGridAligned` naming the
first thing that breaks the grid.

Accepted corner orders: VTK's, or any of its 24 rotations (the same box element). Node
coordinates must lie on the grid to :data:`GRID_TOL` × the spacing: the voxel engine uses
the exact grid positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations, product

import jax.numpy as jnp
import numpy as np

from ..fe.bc import BoundaryConditions
from ..mesh.mesh import Mesh
from .grid import CORNERS, VoxelGrid

__all__ = ["MeshGrid", "NotGridAligned", "mesh_grid", "GRID_TOL"]

#: largest distance of a node from its grid position, relative to the spacing along that axis
GRID_TOL = 1e-9


class NotGridAligned(ValueError):
    """A mesh that is not a set of boxes on one regular grid (the voxel engine cannot solve
    it; the unstructured path can)."""


def _proper_rotations() -> np.ndarray:
    """(24, 3, 3) signed permutation matrices with det +1: the rotations of a cube."""
    out = []
    for perm in permutations(range(3)):
        for signs in product((-1, 1), repeat=3):
            R = np.zeros((3, 3))
            R[np.arange(3), perm] = signs
            if np.linalg.det(R) > 0:
                out.append(R)
    return np.array(out)


def _corner_orders() -> np.ndarray:
    """(24, 8, 3) integer corner offsets (x, y, z) of the VTK order turned by each cube
    rotation: the corner layouts of a box element with positive Jacobian."""
    centred = 2 * CORNERS - 1
    return np.array([((centred @ R.T) + 1) // 2 for R in _proper_rotations()], dtype=np.int64)


@dataclass(frozen=True)
class MeshGrid:
    """A grid-aligned hex8 mesh as a voxel grid (host data, NumPy).

    Attributes:
        grid: the :class:`VoxelGrid` (mask (nz, ny, nx), voxel size (dz, dy, dx) mm).
        origin: (3,) coordinates (x, y, z) of grid node (0, 0, 0), mm.
        node_to_grid: (n_mesh_nodes,) compact voxel-node id of each mesh node.
        grid_to_node: (n_grid_nodes,) mesh node id of each compact voxel node.
        element_to_voxel: (n_elements,) voxel id (flat z, y, x order) of each element.
        voxel_to_element: (n_voxels,) element id of each voxel.
    """

    grid: VoxelGrid
    origin: np.ndarray
    node_to_grid: np.ndarray
    grid_to_node: np.ndarray
    element_to_voxel: np.ndarray
    voxel_to_element: np.ndarray

    def voxel_values(self, values):
        """(n_elements, ...) per-element values -> (n_voxels, ...) in voxel order (traceable)."""
        return jnp.asarray(values)[self.voxel_to_element]

    def element_values(self, values):
        """(n_voxels, ...) per-voxel values -> (n_elements, ...) in element order."""
        return jnp.asarray(values)[self.element_to_voxel]

    def grid_nodal(self, values):
        """(n_mesh_nodes, 3) nodal vectors -> (n_grid_nodes, 3) in compact grid order."""
        return jnp.asarray(values)[self.grid_to_node]

    def mesh_nodal(self, values):
        """(n_grid_nodes, 3) nodal vectors -> (n_mesh_nodes, 3) in mesh node order."""
        return jnp.asarray(values)[self.node_to_grid]

    def grid_conditions(self, bcs: BoundaryConditions) -> BoundaryConditions:
        """Boundary conditions over the mesh nodes -> the same over the grid nodes."""
        idx = self.grid_to_node
        return BoundaryConditions(np.asarray(bcs.fixed)[idx], np.asarray(bcs.values)[idx],
                                  np.asarray(bcs.forces)[idx])


def _refuse(why: str) -> NotGridAligned:
    return NotGridAligned(
        f"the mesh is not grid-aligned, so the voxel engine cannot solve it: {why}. Solve it "
        f"on the unstructured path (--solver unstructured, or auto, which falls back by itself)")


def mesh_grid(mesh: Mesh, *, tol: float = GRID_TOL) -> MeshGrid:
    """Recognise a grid-aligned hex8 mesh and map it onto a voxel grid.

    Args:
        mesh: the mesh (any frame; its own x, y, z axes must be the grid's).
        tol: largest distance of a node from its grid position, relative to the spacing.

    Returns:
        :class:`MeshGrid` with the grid (the mesh's bounding box, one voxel per element) and
        the maps between mesh and grid numbering.

    Raises:
        NotGridAligned: not hex8; a cell that is not an axis-aligned box; boxes of different
            sizes; nodes off the grid; two cells on one voxel; coincident or unused nodes.
            The message names the first cell or node at fault.
    """
    if mesh.cell_type != "hexahedron":
        raise _refuse(f"its cells are {mesh.cell_type}, not hex8")
    X = np.asarray(mesh.points, dtype=float)[np.asarray(mesh.cells)]  # (ne, 8, 3)
    low = X.min(axis=1)
    size = X.max(axis=1) - low                                         # (ne, 3)
    h = np.median(size, axis=0)
    if not np.all(h > 0):
        raise _refuse(f"its cells have zero extent along {'xyz'[int(np.argmin(h))]}")
    off_size = np.abs(size - h[None, :]) > tol * h[None, :]
    if off_size.any():
        e = int(np.flatnonzero(off_size.any(axis=1))[0])
        raise _refuse(f"cell {e} measures {size[e].tolist()} mm, not the grid's "
                      f"{h.tolist()} mm (cells of one size, edges along x, y, z)")
    origin = np.asarray(mesh.points, float).min(axis=0)
    pts = (np.asarray(mesh.points, float) - origin) / h
    ijk = np.rint(pts).astype(np.int64)
    off = np.abs(pts - ijk).max(axis=1)
    if off.max() > tol:
        n = int(np.argmax(off))
        raise _refuse(f"node {n} at {np.asarray(mesh.points)[n].tolist()} mm lies "
                      f"{off[n]:.2g} spacings off the grid of spacing {h.tolist()} mm from "
                      f"{origin.tolist()} (rotated or distorted cells)")
    corners = ijk[np.asarray(mesh.cells)]                              # (ne, 8, 3)
    base = corners.min(axis=1)
    rel = corners - base[:, None, :]
    orders = _corner_orders()
    match = (rel[:, None] == orders[None]).all(axis=(2, 3)).any(axis=1)
    if not match.all():
        e = int(np.flatnonzero(~match)[0])
        raise _refuse(f"cell {e} is not an axis-aligned box with its corners in VTK order "
                      f"(or a rotation of it): grid offsets {rel[e].tolist()}")
    nx, ny, nz = (int(s) for s in ijk.max(axis=0))                     # voxels per axis
    flat_voxel = (base[:, 2] * ny + base[:, 1]) * nx + base[:, 0]
    mask = np.zeros(nz * ny * nx, dtype=bool)
    mask[flat_voxel] = True
    if np.count_nonzero(mask) != mesh.n_elements:
        counts = np.bincount(flat_voxel)
        e = int(np.flatnonzero(counts[flat_voxel] > 1)[0])
        raise _refuse(f"cell {e} shares its voxel with another cell (overlapping cells)")
    flat_node = (ijk[:, 2] * (ny + 1) + ijk[:, 1]) * (nx + 1) + ijk[:, 0]
    if np.unique(flat_node).size != mesh.n_nodes:
        _, first, counts = np.unique(flat_node, return_index=True, return_counts=True)
        n = int(first[np.argmax(counts > 1)])
        raise _refuse(f"node {n} coincides with another node (cells joined only through "
                      f"duplicate nodes are disconnected)")
    grid = VoxelGrid.create(mask.reshape(nz, ny, nx), (h[2], h[1], h[0]))
    active = grid.node_flat()                                          # sorted flat ids
    if active.size != mesh.n_nodes:
        raise _refuse(f"{mesh.n_nodes - active.size} nodes belong to no cell")
    node_to_grid = np.searchsorted(active, flat_node)
    voxel_of = np.cumsum(mask) - 1                                     # flat -> voxel id
    element_to_voxel = voxel_of[flat_voxel]
    return MeshGrid(grid, origin, node_to_grid, np.argsort(node_to_grid), element_to_voxel,
                    np.argsort(element_to_voxel))

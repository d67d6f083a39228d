"""Mirror images of meshes (a left bone from a right one and back)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .mesh import Mesh

__all__ = ["mirrored"]

#: Node order of each cell type's mirror image: reflection reverses the orientation, and this
#: permutation restores a positive Jacobian (VTK node order).
_REVERSE = {
    "tetra": [0, 2, 1, 3],
    "tetra10": [0, 2, 1, 3, 6, 5, 4, 7, 9, 8],   # corners 1↔2, edges (0,1)↔(0,2), (1,3)↔(2,3)
    "hexahedron": [1, 0, 3, 2, 5, 4, 7, 6],
}


def mirrored(mesh: Mesh, axis: str = "x") -> Mesh:
    """The mesh reflected in the plane ``axis`` = 0 (coordinate → −coordinate, mm), with the
    element node order reversed so every element keeps a positive Jacobian; point and cell
    data (node-set masks included) go with their nodes and elements unchanged."""
    if axis not in ("x", "y", "z"):
        raise ValueError(f"mirror axis must be 'x', 'y' or 'z'; got {axis!r}")
    flip = np.ones(3)
    flip["xyz".index(axis)] = -1.0
    return replace(mesh, points=np.asarray(mesh.points) * flip,
                   cells=np.asarray(mesh.cells)[:, _REVERSE[mesh.cell_type]])

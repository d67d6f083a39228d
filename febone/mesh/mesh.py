"""The :class:`Mesh` pytree: points, one cell type, cell and point data."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import jax
import numpy as np

from .elements import ALIASES, ELEMENTS, element

__all__ = ["Mesh"]


@dataclass(frozen=True)
class Mesh:
    """A finite-element mesh of a single supported cell type.

    Attributes:
        points: (n_nodes, 3) node coordinates, mm.
        cells: (n_elements, nodes_per_element) node ids, VTK node order.
        cell_type: meshio cell-type name: ``"tetra"``, ``"tetra10"`` or ``"hexahedron"``.
        point_data: name -> (n_nodes, ...) arrays (e.g. node-set masks, nodal moduli).
        cell_data: name -> (n_elements, ...) arrays (e.g. ``E_MPa``, density in g/cm³).

    Build one with :meth:`Mesh.create` (validates) or read one with
    :func:`febone.mesh.read_mesh`. Update by replacement (:meth:`with_cell_data`), never in place.
    """

    points: np.ndarray
    cells: np.ndarray
    cell_type: str
    point_data: Mapping[str, np.ndarray] = field(default_factory=dict)
    cell_data: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def create(cls, points, cells, cell_type: str, point_data=None, cell_data=None,
               *, validate: bool = True) -> "Mesh":
        """Build a mesh from arrays, converting to numpy and checking it.

        Args:
            points: (n_nodes, 3) coordinates in mm (2-D points get z = 0 appended).
            cells: (n_elements, nodes_per_element) integer node ids.
            cell_type: ``tetra``/``tet4``, ``tetra10``/``tet10`` or ``hexahedron``/``hex8``.
            validate: run :func:`febone.mesh.validate_mesh` (recommended).
        """
        name = ALIASES.get(cell_type, cell_type)
        element(name)  # raises for unsupported types
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] not in (2, 3):
            raise ValueError(f"points must have shape (n_nodes, 3); got {points.shape}")
        if points.shape[1] == 2:
            points = np.concatenate([points, np.zeros((len(points), 1))], axis=1)
        cells = np.asarray(cells)
        if not np.issubdtype(cells.dtype, np.integer):
            raise TypeError(f"cells must be integer node ids; got dtype {cells.dtype}")
        cells = cells.astype(np.int64)
        mesh = cls(points, cells, name,
                   {k: np.asarray(v) for k, v in (point_data or {}).items()},
                   {k: np.asarray(v) for k, v in (cell_data or {}).items()})
        if validate:
            from .validate import validate_mesh

            validate_mesh(mesh)
        return mesh

    @property
    def n_nodes(self) -> int:
        return int(self.points.shape[0])

    @property
    def n_elements(self) -> int:
        return int(self.cells.shape[0])

    @property
    def n_dofs(self) -> int:
        """Displacement degrees of freedom, 3 per node."""
        return 3 * self.n_nodes

    @property
    def element(self):
        """The :class:`~febone.mesh.elements.ReferenceElement` of this mesh."""
        return ELEMENTS[self.cell_type]

    def with_cell_data(self, **arrays) -> "Mesh":
        """A copy with cell-data arrays added or replaced (each (n_elements, ...))."""
        for name, a in arrays.items():
            if np.shape(a)[0] != self.n_elements:
                raise ValueError(f"cell data {name!r} has {np.shape(a)[0]} rows; the mesh has "
                                 f"{self.n_elements} elements")
        return replace(self, cell_data={**self.cell_data, **arrays})

    def with_point_data(self, **arrays) -> "Mesh":
        """A copy with point-data arrays added or replaced (each (n_nodes, ...))."""
        for name, a in arrays.items():
            if np.shape(a)[0] != self.n_nodes:
                raise ValueError(f"point data {name!r} has {np.shape(a)[0]} rows; the mesh has "
                                 f"{self.n_nodes} nodes")
        return replace(self, point_data={**self.point_data, **arrays})

    def __repr__(self) -> str:
        return (f"Mesh({self.cell_type}, {self.n_nodes} nodes, {self.n_elements} elements, "
                f"point_data={sorted(self.point_data)}, cell_data={sorted(self.cell_data)})")


jax.tree_util.register_dataclass(
    Mesh, data_fields=["points", "cells", "point_data", "cell_data"], meta_fields=["cell_type"]
)

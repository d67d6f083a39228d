"""Host-side precomputation of element geometry for the matrix-free operator."""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from ..mesh.mesh import Mesh
from ..mesh.validate import MeshError

__all__ = ["FEModel"]


@dataclass(frozen=True)
class FEModel:
    """Element geometry of a mesh, computed once on the host (NumPy, float64).

    Compiled code sees only these arrays, whose shapes never change, so one compilation
    serves every solve on the mesh whatever the moduli.

    Attributes:
        points: (n_nodes, 3) node coordinates, mm.
        cells: (n_elements, n_en) node ids.
        grad_N: (n_elements, n_q, n_en, 3) shape-function gradients ∂N_a/∂x_i at the
            quadrature points, 1/mm.
        weights: (n_elements, n_q) quadrature weight × det J, mm³ (sums to element volume).
        scatter_order: (n_elements·n_en,) permutation sorting ``cells.ravel()`` so that the
            element-to-node accumulation is a sorted segment sum.
        cell_type: meshio cell-type name (static).
        n_nodes: number of nodes (static).
    """

    points: jax.Array
    cells: jax.Array
    grad_N: jax.Array
    weights: jax.Array
    scatter_order: jax.Array
    cell_type: str
    n_nodes: int

    @classmethod
    def from_mesh(cls, mesh: Mesh) -> "FEModel":
        """Precompute gradients and weights; raises :class:`MeshError` on inverted elements."""
        ref = mesh.element
        dN = ref.dshape_at_quadrature()  # (nq, nen, 3)
        X = mesh.points[mesh.cells]  # (ne, nen, 3)
        J = np.einsum("qai,eaj->eqji", dN, X)  # J_ji = dx_j/dxi_i -> (ne, nq, 3, 3) as [j, i]
        det = np.linalg.det(J)
        bad = np.flatnonzero(det.min(axis=1) <= 0)
        if bad.size:
            raise MeshError(f"elements {bad[:10].tolist()} have non-positive Jacobians at "
                            f"quadrature points (inverted or degenerate); fix the mesh")
        Jinv = np.linalg.inv(J)  # (ne, nq, 3, 3): dxi_i/dx_j as [i, j]
        grad_N = np.einsum("qai,eqij->eqaj", dN, Jinv)
        weights = det * ref.quad_weights[None, :]
        order = np.argsort(mesh.cells.ravel(), kind="stable")
        return cls(jnp.asarray(mesh.points), jnp.asarray(mesh.cells), jnp.asarray(grad_N),
                   jnp.asarray(weights), jnp.asarray(order), mesh.cell_type, mesh.n_nodes)

    def astype(self, dtype) -> "FEModel":
        """The same model with its float arrays (points, gradients, weights) in ``dtype``
        (e.g. float32 for the float32 and mixed precision modes)."""
        dtype = jnp.dtype(dtype)
        if self.grad_N.dtype == dtype:
            return self
        return replace(self, points=self.points.astype(dtype), grad_N=self.grad_N.astype(dtype),
                       weights=self.weights.astype(dtype))

    @property
    def n_elements(self) -> int:
        return int(self.cells.shape[0])

    @property
    def n_dofs(self) -> int:
        return 3 * self.n_nodes

    @property
    def volumes(self) -> jax.Array:
        """(n_elements,) element volumes, mm³."""
        return self.weights.sum(axis=1)


jax.tree_util.register_dataclass(
    FEModel, data_fields=["points", "cells", "grad_N", "weights", "scatter_order"],
    meta_fields=["cell_type", "n_nodes"],
)

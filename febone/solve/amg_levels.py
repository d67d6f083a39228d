"""The data of an AMG hierarchy's levels as JAX pytrees: the block-sparse matrix, the matrix-free
fine operator and one level (operator, prolongation, restriction, smoother data).

Shared by :mod:`febone.solve.amg` (the host build with pyamg) and
:mod:`febone.solve.amg_refresh` (the operators recomputed on the device), so that neither has to
import the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..fe.elasticity import internal_force
from ..fe.model import FEModel

__all__ = ["BlockCSR", "AMGLevel"]


# ----------------------------------------------------------------------------- block CSR
@dataclass(frozen=True)
class BlockCSR:
    """Block-sparse matrix for matvecs in JAX: gather, unrolled block products, sorted
    segment sum (no scatter conflicts to resolve, no padding).

    Attributes:
        blocks: (r, c, n_blocks) block entries, component-major (each of the r·c entries
            of all blocks is one contiguous array: the products fuse into one loop).
        rows: (n_blocks,) int32 block-row index, sorted ascending.
        cols: (n_blocks,) int32 block-column index.
        n_rows: number of block rows (static).
    """

    blocks: jax.Array
    rows: jax.Array
    cols: jax.Array
    n_rows: int

    @classmethod
    def from_scipy(cls, M, blocksize: tuple[int, int], dtype) -> "BlockCSR":
        """From any SciPy sparse matrix, stored with ``blocksize`` = (r, c) blocks.

        The leaves are NumPy arrays (host); ``jax.tree_util.tree_map(jnp.asarray, ...)``
        moves them to the device.
        """
        M = M.tobsr(blocksize=blocksize)
        M.sum_duplicates()
        M.sort_indices()
        n_rows = M.shape[0] // blocksize[0]
        rows = np.repeat(np.arange(n_rows), np.diff(M.indptr))
        return cls(np.ascontiguousarray(M.data.transpose(1, 2, 0), dtype=dtype),
                   rows.astype(np.int32), M.indices.astype(np.int32), int(n_rows))

    @property
    def shape(self) -> tuple[int, int]:
        """(r, c) block size."""
        return tuple(self.blocks.shape[:2])

    def __call__(self, x: jax.Array) -> jax.Array:
        """y = M x for x: (n_block_cols, c) -> y: (n_rows, r), in the blocks' dtype."""
        r, c = self.shape
        g = x.astype(self.blocks.dtype)[self.cols]  # (n_blocks, c)
        y = jnp.stack([sum(self.blocks[i, j] * g[:, j] for j in range(c)) for i in range(r)], -1)
        return jax.ops.segment_sum(y, self.rows, num_segments=self.n_rows,
                                   indices_are_sorted=True)


jax.tree_util.register_dataclass(BlockCSR, data_fields=["blocks", "rows", "cols"],
                                 meta_fields=["n_rows"])


# ----------------------------------------------------------------------------- levels
@dataclass(frozen=True)
class _FineOperator:
    """Level-0 operator A x of the constrained problem, matrix-free.

    ``K(E) x`` on the free dofs (``internal_force`` at the build moduli), ``d ⊙ x`` on the
    prescribed ones (decoupled, as in the assembled matrix).
    """

    model: FEModel
    E: jax.Array
    nu: jax.Array
    free: jax.Array  # (n_nodes, 3) bool
    fixed_diag: jax.Array  # (n_nodes, 3) N/mm, 0 on free dofs

    def __call__(self, x):
        f = internal_force(self.model, jnp.where(self.free, x, 0.0), self.E, self.nu)
        return jnp.where(self.free, f, self.fixed_diag * x)


jax.tree_util.register_dataclass(_FineOperator,
                                 data_fields=["model", "E", "nu", "free", "fixed_diag"],
                                 meta_fields=[])


@dataclass(frozen=True)
class AMGLevel:
    """One non-coarsest level of the hierarchy.

    Attributes:
        A: the level operator, x: (n, b) -> (n, b) (:class:`BlockCSR` or matrix-free).
        P: prolongation (n, b) <- (n_coarse, b_coarse), :class:`BlockCSR`.
        R: restriction Pᵀ, :class:`BlockCSR`.
        dinv: (n, b) inverse diagonal of A (0 where the diagonal is 0).
        cheb: (degree, 2) Chebyshev recurrence coefficients (see :func:`_chebyshev`).
    """

    A: object
    P: BlockCSR
    R: BlockCSR
    dinv: jax.Array
    cheb: jax.Array


jax.tree_util.register_dataclass(AMGLevel, data_fields=["A", "P", "R", "dinv", "cheb"],
                                 meta_fields=[])

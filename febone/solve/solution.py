"""Result objects of a linear solve."""
from __future__ import annotations

from dataclasses import dataclass

import jax

__all__ = ["Solution", "SolveStats", "ConvergenceError"]


class ConvergenceError(RuntimeError):
    """The iterative solver did not reach its tolerance."""


@dataclass(frozen=True)
class SolveStats:
    """Solver statistics.

    Attributes:
        iterations: CG iterations taken.
        residual: true relative residual ‖b − A u‖₂ / ‖b‖₂ on the free dofs.
        converged: whether ``residual`` met the tolerance without breakdown.
        breakdown: CG found pᵀAp ≤ 0 (singular/indefinite operator).
        seconds: wall-clock time of the call including compilation on a first call, s
            (NaN when traced inside another transformation).
        device: device the solve ran on.
        dtype: floating-point type of the solve.
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    breakdown: jax.Array
    seconds: float
    device: str
    dtype: str


@dataclass(frozen=True)
class Solution:
    """Displacement solution.

    Attributes:
        u: (n_nodes, 3) nodal displacements, mm.
        stats: :class:`SolveStats`.
    """

    u: jax.Array
    stats: SolveStats


jax.tree_util.register_dataclass(SolveStats, data_fields=["iterations", "residual", "converged",
                                                          "breakdown"],
                                 meta_fields=["seconds", "device", "dtype"])
jax.tree_util.register_dataclass(Solution, data_fields=["u", "stats"], meta_fields=[])

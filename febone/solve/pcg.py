"""Preconditioned conjugate gradients as a compiled ``lax.while_loop``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["PCG", "PCGInfo", "pcg"]


@dataclass(frozen=True)
class PCG:
    """Conjugate-gradient strategy (hashable: a static argument of compiled solves).

    Attributes:
        rtol: stop when ‖r‖₂ ≤ rtol·‖b‖₂ (b: right-hand side on the free dofs).
        atol: absolute floor on ‖r‖₂ (N), for right-hand sides that are zero.
        max_iter: iteration cap; ``None`` means 20 000.
        preconditioner: ``"jacobi"`` (diagonal of K) or ``"none"``.
    """

    rtol: float = 1e-8
    atol: float = 0.0
    max_iter: int | None = None
    preconditioner: str = "jacobi"

    def __post_init__(self):
        if not (0.0 < self.rtol < 1.0):
            raise ValueError(f"PCG rtol must lie in (0, 1); got {self.rtol}")
        if self.atol < 0:
            raise ValueError(f"PCG atol must be ≥ 0; got {self.atol}")
        if self.max_iter is not None and self.max_iter < 1:
            raise ValueError(f"PCG max_iter must be ≥ 1; got {self.max_iter}")
        if self.preconditioner not in ("jacobi", "none"):
            raise ValueError(f"unknown preconditioner {self.preconditioner!r}; use 'jacobi' or 'none'")

    @property
    def iteration_cap(self) -> int:
        return 20_000 if self.max_iter is None else int(self.max_iter)


@dataclass(frozen=True)
class PCGInfo:
    """Convergence record: iterations, true relative residual ‖b − A x‖/‖b‖, flags."""

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    breakdown: jax.Array


jax.tree_util.register_dataclass(PCGInfo, data_fields=["iterations", "residual", "converged",
                                                       "breakdown"], meta_fields=[])


def _dot(a, b):
    return jnp.vdot(a, b).real


def pcg(matvec: Callable, b, precondition: Callable, x0, *, rtol: float, atol: float,
        max_iter: int):
    """Solve A x = b for symmetric positive definite A.

    Args:
        matvec: x -> A x on arrays shaped like ``b``.
        b: right-hand side.
        precondition: r -> M⁻¹ r, symmetric positive definite.
        x0: initial guess (warm start).
        rtol, atol: stopping tolerances on ‖r‖₂ (see :class:`PCG`).
        max_iter: iteration cap.

    Returns:
        x and a :class:`PCGInfo`. ``breakdown`` is set when pᵀAp ≤ 0, i.e. A is singular or
        indefinite on the search space (typically an under-constrained model).
    """
    bnorm = jnp.sqrt(_dot(b, b))
    tol = jnp.maximum(rtol * bnorm, atol)
    r = b - matvec(x0)
    z = precondition(r)
    rz = _dot(r, z)
    state = (x0, r, z, rz, jnp.asarray(0), jnp.sqrt(_dot(r, r)), jnp.asarray(False))

    def cond(s):
        _, _, _, _, k, rnorm, broke = s
        return (rnorm > tol) & (k < max_iter) & ~broke

    def body(s):
        x, r, p, rz, k, _, _ = s
        Ap = matvec(p)
        pAp = _dot(p, Ap)
        broke = ~(pAp > 0)
        alpha = jnp.where(broke, 0.0, rz / jnp.where(broke, 1.0, pAp))
        x = x + alpha * p
        r = r - alpha * Ap
        z = precondition(r)
        rz_new = _dot(r, z)
        beta = rz_new / jnp.where(rz == 0, 1.0, rz)
        p = z + beta * p
        return x, r, p, rz_new, k + 1, jnp.sqrt(_dot(r, r)), broke

    x, _, _, _, k, _, broke = jax.lax.while_loop(cond, body, state)
    true_r = b - matvec(x)
    rnorm = jnp.sqrt(_dot(true_r, true_r))
    # the recursive residual drifts from the true one by round-off; accept within 10 × tol
    converged = (rnorm <= 10.0 * tol) & ~broke
    rel = rnorm / jnp.where(bnorm == 0, 1.0, bnorm)
    return x, PCGInfo(k, rel, converged, broke)

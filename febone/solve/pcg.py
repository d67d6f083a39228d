"""Preconditioned conjugate gradients as a compiled ``lax.while_loop``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from ..precision import CONTRACTION

__all__ = ["PCG", "PCGInfo", "pcg", "refine"]


@dataclass(frozen=True)
class PCG:
    """Conjugate-gradient strategy (hashable: a static argument of compiled solves).

    Attributes:
        rtol: stop when ‖r‖₂ ≤ rtol·‖b‖₂ (b: right-hand side on the free dofs).
        atol: absolute floor on ‖r‖₂ (N), for right-hand sides that are zero.
        max_iter: iteration cap; ``None`` means 20 000.
        preconditioner: ``"jacobi"`` (diagonal of K) or ``"none"``.
        mixed_precision: iterative refinement (:func:`refine`): float32 inner CG inside a
            float64 residual correction; answers stay float64-accurate (the ``"mixed"``
            precision mode, :mod:`febone.precision`).
        inner_rtol: relative tolerance of each inner float32 solve (mixed precision only).
    """

    rtol: float = 1e-8
    atol: float = 0.0
    max_iter: int | None = None
    preconditioner: str = "jacobi"
    mixed_precision: bool = False
    inner_rtol: float = 1e-3

    def __post_init__(self):
        if not (0.0 < self.rtol < 1.0):
            raise ValueError(f"PCG rtol must lie in (0, 1); got {self.rtol}")
        if self.atol < 0:
            raise ValueError(f"PCG atol must be ≥ 0; got {self.atol}")
        if self.max_iter is not None and self.max_iter < 1:
            raise ValueError(f"PCG max_iter must be ≥ 1; got {self.max_iter}")
        if self.preconditioner not in ("jacobi", "none"):
            raise ValueError(f"unknown preconditioner {self.preconditioner!r}; use 'jacobi' or 'none'")
        if not (0.0 < self.inner_rtol < 1.0):
            raise ValueError(f"PCG inner_rtol must lie in (0, 1); got {self.inner_rtol}")

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
    return jnp.vdot(a, b, precision=CONTRACTION).real


def pcg(matvec: Callable, b, precondition: Callable, x0, *, rtol: float, atol: float,
        max_iter: int, flexible: bool = False, dot: Callable | None = None,
        monitor: Callable | None = None):
    """Solve A x = b for symmetric positive definite A.

    Args:
        matvec: x -> A x on arrays shaped like ``b``.
        b: right-hand side.
        precondition: r -> M⁻¹ r, symmetric positive definite.
        x0: initial guess (warm start).
        rtol, atol: stopping tolerances on ‖r‖₂ (see :class:`PCG`).
        max_iter: iteration cap.
        flexible: flexible CG for preconditioners that vary between iterations (nonlinear
            ones such as a multigrid K-cycle): the Polak–Ribière form
            β = zₖ₊₁ᵀ(rₖ₊₁ − rₖ)/zₖᵀrₖ keeps each direction A-conjugate to the previous one
            (Notay 2000, FCG(1)); for a fixed linear preconditioner it equals plain PCG in
            exact arithmetic, at one extra dot product per iteration.
        dot: (a, b) -> scalar inner product (default: the Euclidean one); a distributed
            solve passes one that sums over devices (:mod:`febone.voxel.sharded`).
        monitor: traced ``(k, relative residual) -> None`` called after every iteration k
            (progress display: :func:`febone.solve.progress.throttled` crosses to the host
            only every few iterations); it cannot change the iterates.

    Returns:
        x and a :class:`PCGInfo` with the true relative residual ‖b − A x‖/‖b‖.
        ``breakdown`` is set when pᵀAp ≤ 0, i.e. A is singular or indefinite on the search
        space (typically an under-constrained model). When the recursive residual meets the
        tolerance but the true one does not (round-off drift), CG restarts from the true
        residual, at most 3 times.
    """
    dot = _dot if dot is None else dot
    bnorm = jnp.sqrt(dot(b, b))
    tol = jnp.maximum(rtol * bnorm, atol)

    def cg(x, k0):
        """Plain PCG from x until the recursive residual meets tol; returns x, k, breakdown."""
        r = b - matvec(x)
        z = precondition(r)
        state = (x, r, z, dot(r, z), k0, jnp.sqrt(dot(r, r)), jnp.asarray(False))

        def cond(s):
            _, _, _, _, k, rnorm, broke = s
            return (rnorm > tol) & (k < max_iter) & ~broke

        def body(s):
            x, r, p, rz, k, _, _ = s
            Ap = matvec(p)
            pAp = dot(p, Ap)
            broke = ~(pAp > 0)
            alpha = jnp.where(broke, 0.0, rz / jnp.where(broke, 1.0, pAp))
            x = x + alpha * p
            r_new = r - alpha * Ap
            z = precondition(r_new)
            rz_new = dot(r_new, z)
            num = rz_new - dot(r, z) if flexible else rz_new
            beta = num / jnp.where(rz == 0, 1.0, rz)
            p = z + beta * p
            rnorm = jnp.sqrt(dot(r_new, r_new))
            if monitor is not None:
                monitor(k + 1, rnorm / jnp.where(bnorm == 0, 1.0, bnorm))
            return x, r_new, p, rz_new, k + 1, rnorm, broke

        x, _, _, _, k, _, broke = jax.lax.while_loop(cond, body, state)
        return x, k, broke

    def true_norm(x):
        r = b - matvec(x)
        return jnp.sqrt(dot(r, r))

    # The recursive residual drifts from the true one by round-off; when it has converged
    # but the true residual has not, restart from the true residual (at most 3 restarts).
    def outer_cond(s):
        _, k, broke, rnorm, restarts = s
        return (rnorm > tol) & (k < max_iter) & ~broke & (restarts < 4)

    def outer_body(s):
        x, k, _, _, restarts = s
        x, k, broke = cg(x, k)
        return x, k, broke, true_norm(x), restarts + 1

    init = (x0, jnp.asarray(0), jnp.asarray(False), jnp.asarray(jnp.inf, b.dtype), jnp.asarray(0))
    x, k, broke, rnorm, _ = jax.lax.while_loop(outer_cond, outer_body, init)
    converged = (rnorm <= tol) & ~broke
    rel = rnorm / jnp.where(bnorm == 0, 1.0, bnorm)
    return x, PCGInfo(k, rel, converged, broke)


def refine(matvec: Callable, b, x0, inner: Callable, *, rtol: float, atol: float, max_iter: int,
           inner_dtype=jnp.float32):
    """Iterative refinement: float64-accurate answers from low-precision inner solves.

    Each outer step computes the residual r = b − A x in ``b``'s precision, solves
    A d ≈ r/‖r‖ in ``inner_dtype`` with ``inner`` and adds ‖r‖·d to x, until ‖r‖ ≤
    max(rtol·‖b‖, atol). The inner tolerance only sets how many outer steps are needed.

    Args:
        matvec: x -> A x in the outer precision.
        b: right-hand side (outer precision, e.g. float64).
        x0: initial guess.
        inner: ``rs -> (d, PCGInfo)``, an approximate solve of A d = rs in ``inner_dtype``
            (e.g. :func:`pcg` with a float32 operator and a loose rtol).
        rtol, atol: outer stopping tolerances (see :class:`PCG`).
        max_iter: cap on the inner iterations summed over the outer steps.
        inner_dtype: dtype of the inner residuals.

    Returns:
        x and a :class:`PCGInfo`: iterations summed over the inner solves, the true relative
        residual in the outer precision, and ``breakdown`` of the last inner solve.
    """
    bn = jnp.sqrt(_dot(b, b))
    tol = jnp.maximum(rtol * bn, atol)

    def cond(s):
        _, r, k, broke = s
        return (jnp.sqrt(_dot(r, r)) > tol) & (k < max_iter) & ~broke

    def body(s):
        x, r, k, _ = s
        scale = jnp.sqrt(_dot(r, r))
        d, info = inner((r / scale).astype(inner_dtype))
        x = x + scale * d.astype(b.dtype)
        return x, b - matvec(x), k + info.iterations, info.breakdown

    state = (x0, b - matvec(x0), jnp.asarray(0), jnp.asarray(False))
    x, r, k, broke = jax.lax.while_loop(cond, body, state)
    rn = jnp.sqrt(_dot(r, r))
    rel = rn / jnp.where(bn == 0, 1.0, bn)
    return x, PCGInfo(k, rel, (rn <= tol) & ~broke, broke)

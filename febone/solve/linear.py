"""The linear-elastic solve: one entry point, implicit differentiation, clear failures."""
from __future__ import annotations

import logging
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..device import device_description
from ..fe.bc import BoundaryConditions
from ..fe.elasticity import internal_force, stiffness_diagonal
from ..fe.model import FEModel
from ..material.elastic import LinearElastic, MaterialError
from .constraints import check_constraints
from ..precision import PrecisionMode, resolve_solver
from .pcg import PCG, pcg, refine
from .solution import ConvergenceError, Solution, SolveStats

__all__ = ["solve", "resolve_precision"]

log = logging.getLogger(__name__)


def _is_traced(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for t in trees for leaf in jax.tree_util.tree_leaves(t))


def _posed(model: FEModel, material: LinearElastic, bcs: BoundaryConditions, preconditioner,
           solver: PCG):
    """The constrained system on the free dofs (traceable): ``(operator, rhs, precondition,
    u_d, free)`` with operator x -> K_ff x (identity on fixed dofs), rhs = f − K u_d (zero on
    fixed dofs), precondition r -> M⁻¹ r, u_d the prescribed displacements (n_nodes, 3) mm and
    free the (n_nodes, 3) bool mask."""
    E, nu = material.E, material.nu
    fixed = jnp.asarray(bcs.fixed)
    free = ~fixed
    dtype = model.grad_N.dtype
    u_d = jnp.where(fixed, jnp.asarray(bcs.values, dtype), 0.0)

    def stiffness(v):
        return internal_force(model, v, E, nu)

    def operator(x):  # K restricted to the free dofs, identity on the fixed ones
        return jnp.where(free, stiffness(jnp.where(free, x, 0.0)), x)

    rhs = jnp.where(free, jnp.asarray(bcs.forces, dtype) - stiffness(u_d), 0.0)
    if preconditioner is not None:
        def precondition(r):
            return jnp.where(free, preconditioner(jnp.where(free, r, 0.0)), r).astype(r.dtype)
    elif solver.preconditioner == "jacobi":
        diag = jax.lax.stop_gradient(jnp.where(free, stiffness_diagonal(model, E, nu), 1.0))

        def precondition(r):
            return r / diag
    else:
        def precondition(r):
            return r
    return operator, rhs, precondition, u_d, free


@partial(jax.jit, static_argnames=("solver", "throw"))
def _solve_compiled(model: FEModel, material: LinearElastic, bcs: BoundaryConditions, u0,
                    preconditioner, solver: PCG, throw: bool):
    operator, rhs, precondition, u_d, free = _posed(model, material, bcs, preconditioner, solver)
    x0 = jax.lax.stop_gradient(jnp.where(free, u0 - u_d, 0.0))

    if not solver.mixed_precision:
        def cg(matvec, b):
            return pcg(matvec, b, precondition, x0, rtol=solver.rtol, atol=solver.atol,
                       max_iter=solver.iteration_cap)
    else:  # float32 operator and CG inside a residual correction in the model's precision
        lo = jnp.float32
        model_lo = jax.lax.stop_gradient(model.astype(lo))
        E_lo = jax.lax.stop_gradient(material.E).astype(lo)
        nu_lo = jax.lax.stop_gradient(material.nu).astype(lo)

        def op_lo(x):
            return jnp.where(free, internal_force(model_lo, jnp.where(free, x, 0.0), E_lo, nu_lo),
                             x)

        def precondition_lo(r):
            return precondition(r).astype(lo)

        def cg(matvec, b):
            def inner(rs):
                return pcg(op_lo, rs, precondition_lo, jnp.zeros_like(rs), rtol=solver.inner_rtol,
                           atol=0.0, max_iter=solver.iteration_cap)
            return refine(matvec, b, x0, inner, rtol=solver.rtol, atol=solver.atol,
                          max_iter=solver.iteration_cap, inner_dtype=lo)

    x, info = jax.lax.custom_linear_solve(operator, rhs, cg, symmetric=True, has_aux=True)
    u = x + u_d
    if throw:  # inside a trace we cannot raise: poison a non-converged answer instead
        u = jnp.where(info.converged, u, jnp.nan)
    return u, info


def resolve_precision(solver: PCG | None, precision) -> tuple[PCG, PrecisionMode]:
    """The CG strategy and :class:`febone.precision.PrecisionMode` of a solve.

    ``precision=None`` keeps the solver's choice (``"mixed"`` when ``solver.mixed_precision``,
    else float64 with x64 enabled, float32 without); a named mode sets ``mixed_precision`` to
    match. Without a solver, ``PCG`` with the mode's default rtol (1e-8; 1e-5 in float32).

    Raises:
        ValueError: unknown mode, float64 mode without x64, or rtol below the mode's reach.
    """
    return resolve_solver(solver, precision, PCG)


def solve(model: FEModel, material: LinearElastic, bcs: BoundaryConditions, *,
          solver: PCG | None = None, preconditioner=None, u0=None, throw: bool = True,
          check_supports: bool = True, precision: str | None = None) -> Solution:
    """Solve K(E) u = f for the displacements of a linear-elastic body.

    Matrix-free element-by-element operator, preconditioned CG, and implicit
    differentiation (``jax.lax.custom_linear_solve``): the gradient of any function of
    ``u`` with respect to the moduli, loads or prescribed displacements costs one adjoint
    solve with the same operator, never a differentiation through CG iterations.

    Args:
        model: precomputed geometry (:meth:`FEModel.from_mesh`).
        material: :class:`LinearElastic` with ``E: (n_elements,)`` MPa.
        bcs: :class:`BoundaryConditions` (mm, N).
        solver: :class:`PCG` strategy (default ``PCG(rtol=1e-8, preconditioner="jacobi")``).
        preconditioner: optional pytree callable ``r -> M⁻¹ r`` on (n_nodes, 3) arrays
            (symmetric positive definite on the free dofs; its array leaves are data of the
            compiled solve, e.g. an algebraic-multigrid hierarchy built once on the host).
            Overrides ``solver.preconditioner``; fixed dofs are masked around it.
        u0: (n_nodes, 3) initial guess, mm (warm start, e.g. the previous time step).
        throw: raise :class:`ConvergenceError` if CG does not converge; inside ``jit``/``grad``
            a non-converged displacement is returned as NaN instead.
        check_supports: check on the host that the supports remove all rigid-body modes.
        precision: ``"float64"`` (rtol ≥ 1e-12), ``"mixed"`` (float32 CG inside a float64
            residual correction, float64 answers; rtol ≥ 1e-12) or ``"float32"`` (the model
            and moduli cast to float32; rtol ≥ 1e-5); see :mod:`febone.precision`.
            ``None``: from the solver and JAX's x64 setting.

    Returns:
        :class:`Solution` with ``u: (n_nodes, 3)`` mm (in the mode's dtype) and
        :class:`SolveStats`.

    Raises:
        UnderConstrainedError: a part of the mesh can move rigidly.
        ConvergenceError: CG did not reach ``solver.rtol`` (message says what to try).
        MaterialError: the moduli have the wrong shape.
    """
    solver, mode = resolve_precision(solver, precision)
    if jnp.shape(material.E) != (model.n_elements,):
        raise MaterialError(f"E must have shape ({model.n_elements},) (one modulus per element, "
                            f"MPa); got {jnp.shape(material.E)}")
    traced = _is_traced(model, material, bcs, u0)
    if check_supports and not _is_traced(model, bcs):
        check_constraints(np.asarray(model.points), np.asarray(model.cells), np.asarray(bcs.fixed))
    model = model.astype(mode.dtype)
    dtype = model.grad_N.dtype
    u0 = jnp.zeros((model.n_nodes, 3), dtype) if u0 is None else jnp.asarray(u0, dtype)
    material = LinearElastic(jnp.asarray(material.E, dtype), jnp.asarray(material.nu, dtype))
    start = time.perf_counter()
    u, info = _solve_compiled(model, material, bcs, u0, preconditioner, solver, throw)
    seconds = float("nan")
    if not traced:
        u.block_until_ready()
        seconds = time.perf_counter() - start
        log.info("solve: %d dofs, %d CG iterations, residual %.2e, %.2f s", model.n_dofs,
                 int(info.iterations), float(info.residual), seconds)
        if throw and not bool(info.converged):
            if bool(info.breakdown):
                raise ConvergenceError(
                    f"CG broke down after {int(info.iterations)} iterations (pᵀKp ≤ 0): the "
                    f"stiffness is singular or indefinite; check supports and moduli")
            cap = solver.iteration_cap
            if int(info.iterations) < cap:
                hint = (f"CG stalled before its iteration cap, so rtol {solver.rtol:g} is below "
                        f"the accuracy this {dtype} problem can reach; loosen rtol (e.g. "
                        f"{10 * solver.rtol:g}) or use float64")
            else:
                hint = ("raise PCG(max_iter=...), use a stronger preconditioner (e.g. "
                        "febone.solve.amg.AMG), or check for nearly disconnected regions and "
                        "extreme modulus contrast")
            raise ConvergenceError(
                f"CG did not converge: relative residual {float(info.residual):.3e} > rtol "
                f"{solver.rtol:g} after {int(info.iterations)} iterations; {hint}")
    stats = SolveStats(info.iterations, info.residual, info.converged, info.breakdown, seconds,
                       device_description(), str(dtype))
    return Solution(u, stats)

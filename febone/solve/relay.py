"""Linear solves whose adjoints are warm-started from the adjoint of the next time step.

In a time loop that solves K(Eₖ) uₖ = fₖ every step (the habitual load cases of a remodelling
run), the forward solves start from the previous step's solution and need few CG iterations,
but reverse mode solves every adjoint K(Eₖ) λₖ = ūₖ from zero. Consecutive adjoints differ
little, so :func:`solve_relayed` relays them: it takes an extra input ``relay`` and returns it
unchanged as an extra output; in the reverse pass the cotangent that arrives for that output is
read as the next step's adjoint λₖ₊₁ (this step's adjoint solve starts from its best multiple),
and the cotangent returned for the input is λₖ. Carry ``relay`` through the time loop (zeros at
the start, never read by the forward computation) and each adjoint starts from its successor's.
On the bundled femur this takes the habitual adjoints from ~24 to ~14 CG iterations
(benchmarks/RESULTS_study.md).

The gradients of everything else are exact (the adjoint is solved to the same tolerance as
with :func:`febone.solve.solve`; a starting guess changes only the iteration count); the
"gradient" with respect to ``relay`` is the adjoint itself, not a derivative, so ``relay`` must
not feed anything but these solves. Forward-mode differentiation (``jax.jvp``) is not defined
for this function; use :func:`febone.solve.solve` there.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..fe.bc import BoundaryConditions
from ..fe.elasticity import internal_force
from ..fe.model import FEModel
from ..material.elastic import LinearElastic
from ..precision import CONTRACTION
from .linear import _posed, _solve_compiled
from .pcg import PCG, pcg

__all__ = ["solve_relayed"]


def solve_relayed(model: FEModel, material: LinearElastic, bcs: BoundaryConditions, u0, relay, *,
                  solver: PCG, preconditioner=None):
    """Solve K(E) u = f like :func:`febone.solve.solve`, relaying adjoint warm starts.

    Args:
        model, material, bcs, solver, preconditioner: as for :func:`febone.solve.solve`.
        u0: (n_nodes, 3) starting guess of the forward solve, mm.
        relay: (n_nodes, 3) array carried between time steps (zeros at the start; its value is
            returned unchanged and never used).

    Returns:
        ``(u, converged, relay)``: u (n_nodes, 3) mm; converged a bool scalar; relay the input
        array. A non-converged adjoint makes the gradient NaN.
    """
    # the forward solve is an ordinary (custom_linear_solve) solve outside the custom VJP, so
    # that jax.checkpoint keeps its answer instead of recomputing it in the reverse pass
    u, info = _solve_compiled(model, jax.lax.stop_gradient(material), bcs, u0, preconditioner,
                              solver, False)
    u, relay = _implicit(solver, model, material, bcs, preconditioner, jax.lax.stop_gradient(u),
                         relay)
    return u, info.converged, relay


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _implicit(solver, model, material, bcs, preconditioner, u, relay):
    """Identity on (u, relay), u the solution of the posed system; the VJP is the implicit
    derivative of that solution, its adjoint solve started from relay's cotangent."""
    return u, relay


def _forward(solver, model, material, bcs, preconditioner, u, relay):
    return (u, relay), (model, material, bcs, preconditioner, u)


def _backward(solver, residuals, cts):
    model, material, bcs, preconditioner, u = residuals
    u_bar, lam_next = cts
    operator, _, precondition, _, free = _posed(model, material, bcs, preconditioner, solver)
    b = jnp.where(free, u_bar, 0.0)
    # start from the multiple of the next step's adjoint closest in the energy norm,
    # α = λₖ₊₁ᵀ b / λₖ₊₁ᵀ K λₖ₊₁ (one operator product; adjoints grow or shrink from step to
    # step as the outcome's sensitivity does: 3–4 of ~17 CG iterations fewer on the femur)
    guess = jnp.where(free, lam_next, 0.0)
    den = jnp.vdot(guess, operator(guess), precision=CONTRACTION)
    alpha = jnp.where(den > 0, jnp.vdot(guess, b, precision=CONTRACTION) / jnp.where(den > 0, den, 1.0), 0.0)
    guess = alpha * guess
    lam, info = pcg(operator, b, precondition, guess, rtol=solver.rtol, atol=solver.atol,
                    max_iter=solver.iteration_cap)
    lam = jnp.where(info.converged, jnp.where(free, lam, 0.0), jnp.nan)
    # u = K_ff⁻¹ (f − K u_d) on free dofs, u_d on fixed ones: with the adjoint λ = K_ff⁻¹ ū_f,
    # the moduli and geometry get −λᵀ ∂(K u)/∂(E, ν, model), the forces λ, and the prescribed
    # values ū_d − (K λ)_d
    _, vjp = jax.vjp(lambda m, E, nu: internal_force(m, u, E, nu), model, material.E, material.nu)
    model_bar, E_bar, nu_bar = vjp(-lam)
    K_lam = internal_force(model, lam, material.E, material.nu)
    bcs_bar = BoundaryConditions(_zero_cotangent(bcs.fixed),
                                 jnp.where(free, 0.0, u_bar - K_lam), lam)
    return (model_bar, LinearElastic(E_bar, nu_bar), bcs_bar,
            jax.tree_util.tree_map(_zero_cotangent, preconditioner), jnp.zeros_like(u), lam)


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


_implicit.defvjp(_forward, _backward)

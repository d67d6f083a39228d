"""Matrix-free small-strain isotropic elasticity on an :class:`FEModel`.

The stiffness matrix is never formed: ``K(E) u`` is evaluated element by element as
∫ Bᵀ σ(ε(u)) dV with the precomputed shape-function gradients, then accumulated to the
nodes with a sorted segment sum. Moduli enter as arguments, so the operator is linear in
E and differentiable with respect to it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..precision import CONTRACTION
from .model import FEModel

__all__ = ["lame", "strain", "stress", "internal_force", "stiffness_diagonal", "gather",
           "scatter"]


def lame(E, nu):
    """Lamé parameters (λ, μ) in MPa from Young's modulus E (MPa) and Poisson's ratio ν."""
    lam = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = E / (2.0 * (1.0 + nu))
    return lam, mu


def gather(model: FEModel, u: jax.Array) -> jax.Array:
    """(n_nodes, 3) nodal vectors -> (n_elements, n_en, 3) element vectors."""
    return u[model.cells]


def scatter(model: FEModel, f_e: jax.Array) -> jax.Array:
    """(n_elements, n_en, 3) element vectors -> (n_nodes, 3), summed over shared nodes."""
    flat = f_e.reshape(-1, 3)[model.scatter_order]
    ids = model.cells.reshape(-1)[model.scatter_order]
    return jax.ops.segment_sum(flat, ids, num_segments=model.n_nodes, indices_are_sorted=True)


def strain(model: FEModel, u: jax.Array) -> jax.Array:
    """(n_elements, n_q, 3, 3) small-strain tensor at the quadrature points (u in mm)."""
    grad_u = jnp.einsum("eqai,eaj->eqji", model.grad_N, gather(model, u),
                        precision=CONTRACTION)  # du_j/dx_i as [j,i]
    return 0.5 * (grad_u + jnp.swapaxes(grad_u, -1, -2))


def stress(eps: jax.Array, E, nu) -> jax.Array:
    """Isotropic linear-elastic stress, MPa. ``eps: (n_elements, n_q, 3, 3)``; E, ν per element."""
    lam, mu = lame(jnp.asarray(E), jnp.asarray(nu))
    lam = jnp.broadcast_to(lam, eps.shape[:1])[:, None, None, None]
    mu = jnp.broadcast_to(mu, eps.shape[:1])[:, None, None, None]
    tr = jnp.trace(eps, axis1=-2, axis2=-1)[..., None, None]
    return lam * tr * jnp.eye(3, dtype=eps.dtype) + 2.0 * mu * eps


def internal_force(model: FEModel, u: jax.Array, E, nu) -> jax.Array:
    """K(E) u: (n_nodes, 3) nodal forces in N for displacements u (n_nodes, 3) in mm."""
    sig = stress(strain(model, u), E, nu) * model.weights[..., None, None]
    f_e = jnp.einsum("eqai,eqij->eaj", model.grad_N, sig, precision=CONTRACTION)
    return scatter(model, f_e)


def stiffness_diagonal(model: FEModel, E, nu) -> jax.Array:
    """(n_nodes, 3) diagonal of K(E), N/mm.

    For dof (a, j): ∫ (λ + μ) (∂_j N_a)² + μ |∇N_a|² dV.
    """
    lam, mu = lame(jnp.asarray(E), jnp.asarray(nu))
    lam = jnp.broadcast_to(lam, (model.n_elements,))
    mu = jnp.broadcast_to(mu, (model.n_elements,))
    g2 = model.grad_N ** 2  # (ne, nq, nen, 3)
    w = model.weights[..., None, None]
    d_e = ((lam + mu)[:, None, None, None] * g2
           + mu[:, None, None, None] * g2.sum(-1, keepdims=True)) * w
    return scatter(model, d_e.sum(axis=1))

"""Per-voxel strain, stress, principal values and strain energy density of a voxel solve.

The same volume averages over the 2×2×2 Gauss points as :func:`febone.fe.post.element_fields`
(every voxel shares one set of shape-function gradients, so none is stored), in the model's
frame (:attr:`febone.voxel.VoxelModel.frame`): a voxel model equals the hex8 mesh of its
voxels to round-off.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..fe.elasticity import stress
from ..fe.post import ElementFields, principal_values, von_mises
from ..precision import CONTRACTION
from .grid import VoxelModel
from .operator import gather_corners, quadrature_gradients

__all__ = ["voxel_fields"]


@jax.jit
def voxel_fields(model: VoxelModel, E: jax.Array, nu, u: jax.Array) -> ElementFields:
    """Element fields of every bone voxel for displacements ``u``.

    Args:
        model: the voxel model (its frame gives the axes of ``u`` and of the tensors).
        E: (n_voxels,) moduli, MPa.
        nu: Poisson's ratio.
        u: (n_nodes, 3) displacements, mm.

    Returns:
        :class:`febone.fe.post.ElementFields` with (n_voxels, ...) arrays in voxel order.
    """
    G = jnp.asarray(quadrature_gradients(model.voxel_size, model.frame), u.dtype)  # (q, a, i)
    ue = gather_corners(model.fine, u).reshape(-1, 8, 3)                             # (e, a, j)
    grad_u = jnp.einsum("qai,eaj->eqji", G, ue, precision=CONTRACTION)
    eps_q = 0.5 * (grad_u + jnp.swapaxes(grad_u, -1, -2))
    sig_q = stress(eps_q, E, nu)
    eps = eps_q.mean(axis=1)
    sig = sig_q.mean(axis=1)
    sed = 0.5 * jnp.einsum("eqij,eqij->e", sig_q, eps_q, precision=CONTRACTION) / 8.0
    return ElementFields(eps, sig, von_mises(sig), *principal_values(eps, sig), sed)

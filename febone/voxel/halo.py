"""Communication of a slab-split voxel model, inside ``jax.shard_map`` over :data:`AXIS`.

Nodal vectors of a sharded level are *consistent*: a node on the interface between slabs d
and d+1 is stored by both, with the same value. A local matrix-free product (the slab's own
voxels only) gives *partial* sums on the interface; :func:`assemble` adds the neighbours'
partial sums of the one shared node layer (``ppermute`` up and down), which makes them
consistent again. :func:`dot` sums each node once (its owner) and ``psum``s over devices.
The replicated coarsest level is reached by :func:`to_coarse` (scatter into the global
coarse numbering, ``psum``: a small all-reduce) and left by :func:`from_coarse` (a gather
of the device's own nodes). No collective here moves a whole fine field.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from .slabs import SlabHalo

__all__ = ["AXIS", "assemble", "dot", "to_coarse", "from_coarse"]

#: name of the device axis of the slab mesh.
AXIS = "slabs"


def assemble(halo: SlabHalo, x: jax.Array) -> jax.Array:
    """Partial sums -> consistent values on the interface layers.

    Args:
        halo: the level's halo maps (this device's slice).
        x: (n_nodes, ...) local partial sums (e.g. the slab's K u).

    Returns:
        (n_nodes, ...) with the neighbours' contributions to the shared node layers added.
    """
    n = lax.axis_size(AXIS)
    top = x.at[halo.top].get(mode="fill", fill_value=0)
    bottom = x.at[halo.bottom].get(mode="fill", fill_value=0)
    from_below = lax.ppermute(top, AXIS, [(i, i + 1) for i in range(n - 1)])
    from_above = lax.ppermute(bottom, AXIS, [(i + 1, i) for i in range(n - 1)])
    x = x.at[halo.bottom].add(from_below, mode="drop")
    return x.at[halo.top].add(from_above, mode="drop")


def dot(halo: SlabHalo, a: jax.Array, b: jax.Array) -> jax.Array:
    """Σ aᵢbᵢ over the global nodes of two consistent (n_nodes, ...) vectors (each node
    counted once, on its owner), the same on every device."""
    w = halo.own.astype(a.dtype).reshape((-1,) + (1,) * (a.ndim - 1))
    return lax.psum(jnp.sum(w * a * b), AXIS)


def to_coarse(halo: SlabHalo, x: jax.Array, n_coarse: int) -> jax.Array:
    """(n_nodes, ...) local partial sums on the slab's part of the coarsest level ->
    (n_coarse, ...) global vector, summed over devices (replicated)."""
    out = jnp.zeros((n_coarse,) + x.shape[1:], x.dtype).at[halo.ids].add(x, mode="drop")
    return lax.psum(out, AXIS)


def from_coarse(halo: SlabHalo, xg: jax.Array) -> jax.Array:
    """(n_coarse, ...) replicated global vector -> this slab's (n_nodes, ...) part."""
    return xg.at[halo.ids].get(mode="fill", fill_value=0)

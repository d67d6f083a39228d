"""Structured, matrix-free hex8 stiffness on a voxel grid.

One reference element stiffness ``Ke(ν)`` (24 × 24, unit Young's modulus, for the voxel
size of the level) is scaled by each voxel's modulus. ``K(E) u`` gathers the 8 corner
displacements of every non-void voxel, multiplies by ``Ke`` and scatter-adds the element
forces. Corners are found by index arithmetic: the compact ids of corners (x, y, z) =
(0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1) are one int32 lookup of the flat corner index
plus a fixed offset, and each corner's x-neighbour is the next compact node, so the
gather and scatter move windows of 2 nodes × 3 components. No connectivity and no matrix
are stored.

Element vectors use *grid order*: corner a = 4·dz + 2·dy + dx (:data:`GRID_CORNERS`),
dof 3·a + component (x, y, z).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..device import device_memory_bytes, device_platform
from ..mesh.elements import element
from ..precision import CONTRACTION
from .grid import GRID_TO_VTK, VoxelLevel

__all__ = ["reference_stiffness", "element_stiffness", "corner_starts", "gather_corners",
           "scatter_corners", "corner_nodes", "apply_stiffness", "stiffness_diagonal", "element_energy",
           "center_gradient", "quadrature_gradients", "lame_unit", "chunk_size", "CHUNK"]

# dof permutation VTK order -> grid order
_PERM = np.array([3 * a + i for a in GRID_TO_VTK for i in range(3)])


def _grad_at(voxel_size, points) -> tuple[np.ndarray, float]:
    """Shape-function gradients (n_points, 8, 3) in grid corner order w.r.t. (x, y, z),
    1/mm, and det J (mm³)."""
    ref = element("hexahedron")
    dz, dy, dx = voxel_size
    half = np.array([dx, dy, dz]) / 2.0
    dN = np.stack([ref.dshape(p) for p in points])[:, GRID_TO_VTK]  # (n, 8, 3) w.r.t. ξ
    return dN / half[None, None, :], float(np.prod(half))


def reference_stiffness(voxel_size) -> tuple[np.ndarray, np.ndarray]:
    """The λ- and μ-parts of a hex8 voxel stiffness, 2×2×2 Gauss (the rule of
    :class:`febone.FEModel`), so that ``Ke = λ·K_lam + μ·K_mu``.

    Args:
        voxel_size: (dz, dy, dx) mm.

    Returns:
        Two (24, 24) float64 arrays, mm (N/mm per MPa); dofs in grid order.
    """
    ref = element("hexahedron")
    G, detJ = _grad_at(voxel_size, ref.quad_points)
    k_lam = np.zeros((8, 3, 8, 3))
    k_mu = np.zeros((8, 3, 8, 3))
    eye = np.eye(3)
    for g, w in zip(G, ref.quad_weights):
        k_lam += w * detJ * np.einsum("ai,bj->aibj", g, g)
        k_mu += w * detJ * (np.einsum("aj,bi->aibj", g, g) + np.einsum("ij,ak,bk->aibj", eye, g, g))
    return k_lam.reshape(24, 24), k_mu.reshape(24, 24)


def lame_unit(nu):
    """(λ, μ) for unit Young's modulus and Poisson's ratio ν."""
    return nu / ((1.0 + nu) * (1.0 - 2.0 * nu)), 0.5 / (1.0 + nu)


def element_stiffness(voxel_size, nu, dtype=None, frame=None) -> jax.Array:
    """(24, 24) stiffness of one voxel of unit modulus, N/mm per MPa (traceable in ν),
    dofs in grid order.

    ``frame``: optional 3×3 rotation R (nested tuple or array) whose rows are the axes the
    displacement components refer to, in grid coordinates (u_frame = R u_grid at every node);
    the stiffness is then Q Ke Qᵀ with Q = blockdiag(R, ..., R). ``None``: the grid axes.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    k_lam, k_mu = reference_stiffness(voxel_size)
    if frame is not None:
        Q = np.kron(np.eye(8), np.asarray(frame, dtype=float))
        k_lam, k_mu = Q @ k_lam @ Q.T, Q @ k_mu @ Q.T
    lam, mu = lame_unit(nu)
    return (lam * jnp.asarray(k_lam, dtype) + mu * jnp.asarray(k_mu, dtype)).astype(dtype)


def corner_starts(level: VoxelLevel) -> jax.Array:
    """(n_voxels, 4) compact ids of grid corners 0, 2, 4, 6 (x = 0 of each x-edge); the
    corner at x = 1 is the next compact node."""
    Ny, Nx = level.node_shape[1], level.node_shape[2]
    off = np.array([(cz * Ny + cy) * Nx for cz in (0, 1) for cy in (0, 1)], dtype=np.int32)
    flat = level.vox_base[:, None] + jnp.asarray(off)[None, :]
    return level.node_index.at[flat].get(mode="promise_in_bounds")


_GATHER = lax.GatherDimensionNumbers(offset_dims=(2,), collapsed_slice_dims=(),
                                     start_index_map=(0,), operand_batching_dims=(),
                                     start_indices_batching_dims=())
_SCATTER = lax.ScatterDimensionNumbers(update_window_dims=(2,), inserted_window_dims=(),
                                       scatter_dims_to_operand_dims=(0,),
                                       operand_batching_dims=(), scatter_indices_batching_dims=())


def gather_corners(level: VoxelLevel, u: jax.Array, starts=None) -> jax.Array:
    """(n_nodes, 3) nodal vectors -> (n_voxels, 24) element vectors (grid order)."""
    starts = corner_starts(level) if starts is None else starts
    ue = lax.gather(u.reshape(-1), (3 * starts)[..., None], _GATHER, slice_sizes=(6,),
                    mode="promise_in_bounds")
    return ue.reshape(-1, 24)


def corner_nodes(level: VoxelLevel, starts=None) -> jax.Array:
    """(n_voxels, 8) compact node ids of the voxel corners in grid order."""
    starts = corner_starts(level) if starts is None else starts
    return jnp.stack([starts, starts + 1], axis=-1).reshape(-1, 8)


def scatter_corners(level: VoxelLevel, fe: jax.Array, starts=None) -> jax.Array:
    """(n_voxels, 24) element vectors -> (n_nodes, 3), summed over shared nodes."""
    starts = corner_starts(level) if starts is None else starts
    out = lax.scatter_add(jnp.zeros((3 * level.n_nodes,), fe.dtype), (3 * starts)[..., None],
                          fe.reshape(-1, 4, 6), _SCATTER, mode="promise_in_bounds")
    return out.reshape(-1, 3)


#: voxels per chunk of the matrix-free product on CPUs: bounds its (chunk, 24) temporaries to a
#: few MB, so they stay in cache and the solver's memory stays a few nodal vectors. Measured on
#: the 39 µm LHDL grid (194k voxels, 2-core x86_64): float64 product 10 ms chunked against
#: 81 ms in one piece, float32 6 ms against 36 ms.
CHUNK = 16384

#: share of the device memory the product's temporaries may take in one piece on a GPU
MEMORY_SHARE = 0.25


def chunk_size(n_voxels: int, bytes_per_voxel: int, *, platform: str | None = None,
               memory_bytes: int | None = None) -> int:
    """Voxels per pass of the matrix-free product, chosen per backend.

    On a CPU the product loops over :data:`CHUNK`-voxel chunks (cache-sized temporaries;
    6-8× faster than one piece there). On a GPU (or TPU) each sequential pass is a kernel
    launch and a loop step, so the product runs in one piece unless its temporaries,
    ``n_voxels × bytes_per_voxel``, would exceed :data:`MEMORY_SHARE` (25 %) of the device
    memory; then in the largest multiple of ``CHUNK`` that fits that share.

    Args:
        n_voxels: voxels of the level.
        bytes_per_voxel: bytes of the product's temporaries per voxel (gathered element
            vectors, element forces, corner ids).
        platform: ``"cpu"``, ``"gpu"``, ``"tpu"``...; default: JAX's default backend.
        memory_bytes: device memory, bytes; default: the first device's ``bytes_limit``
            (:func:`febone.device.device_memory_bytes`); unknown on a GPU means one piece.

    Returns:
        The chunk length, 1 ≤ chunk ≤ max(n_voxels, 1) (``n_voxels``: one piece).
    """
    n = max(int(n_voxels), 1)
    platform = device_platform() if platform is None else platform
    if platform == "cpu":
        return min(CHUNK, n)
    if memory_bytes is None:
        memory_bytes = device_memory_bytes()
    if memory_bytes is None:
        return n
    budget = MEMORY_SHARE * float(memory_bytes)
    if n * bytes_per_voxel <= budget:
        return n
    fits = int(budget // max(bytes_per_voxel, 1))
    return int(min(n, max(CHUNK, fits // CHUNK * CHUNK)))


def _chunked(level: VoxelLevel, E: jax.Array, u: jax.Array, element_forces, width: int = 48):
    """Σ over voxel chunks of scatter(element_forces(gather(u), E_chunk)), in a fori_loop
    (one piece for grids of at most :func:`chunk_size` voxels). ``width``: floats of
    temporaries per voxel (24 gathered + 24 forces, more for wider products)."""
    n = level.n_voxels
    dtype = u.dtype
    chunk = chunk_size(n, (width + 1) * jnp.dtype(dtype).itemsize + 16)
    if n <= chunk:
        starts = corner_starts(level)
        return scatter_corners(level, element_forces(gather_corners(level, u, starts),
                                                     E.astype(dtype)), starts)
    n_chunks = -(-n // chunk)
    Ny, Nx = level.node_shape[1], level.node_shape[2]
    off = jnp.asarray([(cz * Ny + cy) * Nx for cz in (0, 1) for cy in (0, 1)], jnp.int32)
    E = E.astype(dtype)
    uf = u.reshape(-1)

    def body(c, out):
        # the last chunk is shifted back to end at voxel n; the voxels it shares with the
        # previous chunk get zero moduli (zero forces), so nothing is padded or copied
        start = jnp.minimum(c * chunk, n - chunk)
        b = lax.dynamic_slice_in_dim(level.vox_base, start, chunk)
        e = lax.dynamic_slice_in_dim(E, start, chunk)
        new = (start + jnp.arange(chunk)) >= c * chunk
        e = jnp.where(new.reshape((chunk,) + (1,) * (e.ndim - 1)), e, 0)
        starts = 3 * level.node_index.at[b[:, None] + off[None, :]].get(mode="promise_in_bounds")
        ue = lax.gather(uf, starts[..., None], _GATHER, slice_sizes=(6,),
                        mode="promise_in_bounds").reshape(-1, 24)
        fe = element_forces(ue, e)
        return lax.scatter_add(out, starts[..., None], fe.reshape(-1, 4, 6), _SCATTER,
                               mode="promise_in_bounds")

    out = lax.fori_loop(0, n_chunks, body, jnp.zeros_like(uf))
    return out.reshape(-1, 3)


def apply_stiffness(level: VoxelLevel, Ke: jax.Array, E: jax.Array, u: jax.Array) -> jax.Array:
    """K(E) u on one level.

    Args:
        level: index data.
        Ke: (24, 24) unit-modulus voxel stiffness of this level (grid order), N/mm per MPa.
        E: (n_voxels,) voxel moduli, MPa (0 allowed: contributes nothing).
        u: (n_nodes, 3) displacements, mm.

    Returns:
        (n_nodes, 3) nodal forces, N.
    """
    K = Ke.astype(u.dtype)
    return _chunked(level, E, u, lambda ue, e: jnp.matmul(ue, K, precision=CONTRACTION) * e[:, None])


def stiffness_diagonal(level: VoxelLevel, Ke: jax.Array, E: jax.Array) -> jax.Array:
    """(n_nodes, 3) diagonal of K(E), N/mm."""
    de = E[:, None].astype(Ke.dtype) * jnp.diagonal(Ke)[None, :]
    return scatter_corners(level, de)


def element_energy(level: VoxelLevel, Ke: jax.Array, u: jax.Array) -> jax.Array:
    """(n_voxels,) uᵉᵀ Ke uᵉ per voxel for unit modulus, N·mm (= 2 × strain energy / E)."""
    ue = gather_corners(level, u)
    return jnp.einsum("ei,ij,ej->e", ue, Ke.astype(u.dtype), ue, precision=CONTRACTION)


def quadrature_gradients(voxel_size, frame=None) -> np.ndarray:
    """(8, 8, 3) shape-function gradients [Gauss point, corner (grid order), axis] of a voxel
    at the 2×2×2 Gauss points (the rule of :class:`febone.FEModel`), 1/mm, with respect to the
    axes of ``frame`` (rows of a 3×3 rotation, see :func:`element_stiffness`; ``None``: the
    grid's x, y, z)."""
    G, _ = _grad_at(voxel_size, element("hexahedron").quad_points)
    return G if frame is None else G @ np.asarray(frame, dtype=float).T


def center_gradient(voxel_size) -> np.ndarray:
    """(8, 3) shape-function gradients at the voxel centre (grid corner order), 1/mm: the
    voxel-average displacement gradient ∂u_i/∂x_j is ``Σ_a u[a, i] g[a, j]`` (exact for
    trilinear fields on a brick)."""
    G, _ = _grad_at(voxel_size, np.zeros((1, 3)))
    return G[0]

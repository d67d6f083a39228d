"""Geometric multigrid on the voxel grid, used as the CG preconditioner.

* Coarsening ×2 per axis (odd sizes padded with void). Transfers: trilinear prolongation
  P (a fine node interpolates the corners of its coarse cell) and restriction Pᵀ (its
  exact transpose), applied separably on dense node arrays (compact vectors are
  scattered to the dense grid and gathered back; far cheaper than per-node gathers). A coarse dof is held fixed when any fine dof it interpolates to is
  fixed; free coarse dofs then only reach free fine dofs, so the Galerkin product of the
  unconstrained operator, masked, equals the Galerkin product of the constrained one.
* Coarse operators (``Multigrid.coarse``):

  - ``"galerkin"`` (default): Aₗ₊₁ = Pᵀ Aₗ P assembled element by element. A coarse voxel's
    stiffness is Σ_c P_cᵀ K_child(c) P_c over its 8 children (P_c: the fixed 24×24
    interpolation of a child's corners from the parent's), so level 1 needs only the 8
    child moduli per coarse voxel (applied matrix-free), and levels ≥ 2 hold one 24×24
    matrix per coarse voxel (1/64 of the fine voxel count and less).
  - ``"average"``: re-discretisation, the hex8 stiffness on the coarse voxel with the
    2×2×2 average modulus (void = 0); cheapest, but on trabecular bone it bridges gaps
    between trabeculae and needs 2–3× more CG iterations.
* Smoother: Chebyshev polynomial in D⁻¹A on [λ_max/ratio, λ_max], the same before and
  after the coarse correction (symmetric); D is the nodal 3×3 block diagonal (default) or
  the point diagonal. λ_max on the fine level is the element bound λ_max(De⁻¹Ke)
  (rigorous for any moduli); on Galerkin levels a Lanczos estimate times a safety factor.
  Degree grows by ``growth`` per level (coarse levels are cheap).
* Cycle: ``"v"`` (a fixed linear SPD operator: plain CG applies) or ``"k"`` (K-cycle:
  each coarse correction below level 1 is two steps of flexible CG preconditioned by the
  next cycle, Notay & Vassilevski 2008; the outer Krylov method must then be flexible).
* Coarsest level: dense inverse (via Cholesky) of the assembled matrix (≤ a few
  thousand dofs); one member at a time under ``vmap`` (:func:`coarse_inverse`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..precision import CONTRACTION
from . import pieces
from .grid import GRID_CORNERS, VoxelLevel, VoxelModel
from .operator import (_chunked, apply_stiffness, corner_nodes, element_stiffness,
                       gather_corners, scatter_corners)

__all__ = ["Multigrid", "MultigridData", "child_prolongations", "prolong", "restrict",
           "setup_multigrid", "vcycle", "kcycle_steps", "chebyshev_upper_bound",
           "working_dtype"]


@dataclass(frozen=True)
class Multigrid:
    """Geometric multigrid preconditioner options (hashable: static in compiled solves).

    Attributes:
        coarse: ``"galerkin"`` (Pᵀ A P, robust on bone/void) or ``"average"``
            (re-discretised with 2×2×2-averaged moduli; cheaper, weaker).
        cycle: ``"k"`` (K-cycle on every level: fewest iterations), ``"k1"`` (K-cycle on
            level 1 only, V-cycles below) or ``"v"``; both K variants are nonlinear and
            use flexible CG.
        degree: Chebyshev smoothing steps before and after the coarse correction, level 0.
        growth: degree multiplier per coarser level (capped at 16; 1 = same degree).
        ratio: smoothing interval [λ_max/ratio, λ_max] of D⁻¹A.
        max_coarse_nodes: coarsen until a level has at most this many active nodes.
        max_levels: optional cap on the number of levels.
        dtype: precision of the cycle, ``"float32"`` (default) or ``"float64"``. The CG
            iterates, residuals and operator stay in the solve precision (float64 on the
            CPU), so the answer's accuracy does not depend on it; a float32 cycle moves half
            the bytes and its GEMMs run 2–4× faster on CPUs.
        lanczos_steps: Jacobi-CG (Lanczos) steps of the λ_max estimate on each level.
        safety: factor applied to that estimate.
        level1: Galerkin level 1 as ``"children"`` (default: 8 child moduli per coarse
            voxel, applied matrix-free: least memory, and as fast on CPUs) or ``"matrices"``
            (one stored 24×24 matrix per coarse voxel: 2.3 kB each in float32).
        fine_bound: λ_max of the fine level: ``"element"`` (default: the rigorous element
            bound; with block Jacobi it lies within 10 % of λ_max on the 39 µm LHDL sample)
            or ``"lanczos"`` (the Lanczos estimate × ``safety``, capped by the element
            bound: with point Jacobi the element bound is 20 % high and an estimate saved
            7 % of the iterations, 118 → 110; with block Jacobi it changes nothing).
        jacobi: the smoother's diagonal D: ``"block"`` (default: each node's 3×3 block, the
            coupling of its 3 displacement components; 15 % fewer CG iterations on the 39 µm
            LHDL sample than ``"point"`` at the same cost per iteration) or ``"point"``.
        coarse_space: the coarse levels of a model built from these options
            (:func:`febone.voxel.pieces.voxel_model` ``coarse_space=``, as :func:`febone.voxel.compress`
            does): ``"pieces"`` (default: coarse unknowns per connected piece of bone inside
            each coarse cell, :mod:`febone.voxel.pieces`; on the LHDL trabecular sample 29 / 36
            / 28 CG iterations at 156 / 78 / 39 µm against 53 / 75 / 102) or ``"trilinear"``
            (one unknown per coarse grid point). Like ``max_coarse_nodes`` it shapes the
            model, not the set-up: :func:`setup_multigrid` follows whatever levels the model
            it is given holds. With ``coarse="average"`` models are trilinear
            (:attr:`model_coarse_space`): copies have no re-discretised stiffness. Models
            split over devices (:mod:`febone.voxel.sharded`) are trilinear too.
    """

    coarse: str = "galerkin"
    cycle: str = "k"
    degree: int = 2
    growth: float = 1.0
    ratio: float = 20.0
    max_coarse_nodes: int = 700
    max_levels: int | None = None
    dtype: str = "float32"
    lanczos_steps: int = 15
    safety: float = 1.1
    level1: str = "children"
    fine_bound: str = "element"
    jacobi: str = "block"
    coarse_space: str = "pieces"

    def __post_init__(self):
        if self.coarse not in ("galerkin", "average"):
            raise ValueError(f"Multigrid coarse must be 'galerkin' or 'average'; got {self.coarse!r}")
        if self.cycle not in ("k", "k1", "v"):
            raise ValueError(f"Multigrid cycle must be 'k', 'k1' or 'v'; got {self.cycle!r}")
        if int(self.degree) < 1:
            raise ValueError(f"Multigrid degree must be ≥ 1; got {self.degree}")
        if not self.growth >= 1.0:
            raise ValueError(f"Multigrid growth must be ≥ 1; got {self.growth}")
        if not self.ratio > 1.0:
            raise ValueError(f"Multigrid ratio must exceed 1; got {self.ratio}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"Multigrid dtype must be 'float64' or 'float32'; got {self.dtype!r}")
        if self.max_levels is not None and self.max_levels < 1:
            raise ValueError(f"Multigrid max_levels must be ≥ 1; got {self.max_levels}")
        if self.max_coarse_nodes < 8:
            raise ValueError(f"Multigrid max_coarse_nodes must be ≥ 8; got {self.max_coarse_nodes}")
        if self.level1 not in ("matrices", "children"):
            raise ValueError(f"Multigrid level1 must be 'matrices' or 'children'; got {self.level1!r}")
        if self.jacobi not in ("point", "block"):
            raise ValueError(f"Multigrid jacobi must be 'point' or 'block'; got {self.jacobi!r}")
        if self.fine_bound not in ("element", "lanczos"):
            raise ValueError(f"Multigrid fine_bound must be 'element' or 'lanczos'; got "
                             f"{self.fine_bound!r}")
        if self.coarse_space not in pieces.COARSE_SPACES:
            raise ValueError(f"Multigrid coarse_space must be one of {pieces.COARSE_SPACES}; got "
                             f"{self.coarse_space!r}")
        if int(self.lanczos_steps) < 1 or not self.safety >= 1.0:
            raise ValueError("Multigrid lanczos_steps must be ≥ 1 and safety ≥ 1")

    @property
    def model_coarse_space(self) -> str:
        """The ``coarse_space`` a model built for these options gets."""
        return self.coarse_space if self.coarse == "galerkin" else "trilinear"

    def degree_at(self, level: int) -> int:
        return int(min(16, round(self.degree * self.growth ** level)))

    @property
    def flexible(self) -> bool:
        """Whether the preconditioner is nonlinear (the outer CG must be flexible)."""
        return self.cycle != "v"


@dataclass(frozen=True)
class MultigridData:
    """Per-solve multigrid arrays, built inside the compiled solve from the moduli.

    Attributes:
        Ke: per level, (24, 24) unit-modulus voxel stiffness (level 0 and ``"average"``
            levels), (8, 24, 24) child stiffnesses P_cᵀ Ke P_c (Galerkin level 1), or
            (n_voxels, 24, 24) element matrices (Galerkin levels ≥ 2).
        E: per level, (n_voxels,) moduli MPa, or (n_voxels, 8) child moduli (Galerkin
            level 1), or a (0,) placeholder where ``Ke`` holds whole element matrices.
        free: per level, (n_nodes, 3) 1.0 on free dofs, 0.0 on fixed ones.
        inv_diag: per level, D⁻¹ of the smoother: (n_nodes, 3) point inverses 1/diag(A),
            or (n_nodes, 3, 3) inverses of the nodal diagonal blocks; zero on fixed dofs.
        upper: per level, λ_max bound of D⁻¹A used by the Chebyshev smoother.
        chol: inverse of the coarsest level's matrix (from its Cholesky factor; dense
            matvecs are much faster than triangular solves on CPUs and GPUs).
    """

    Ke: tuple
    E: tuple
    free: tuple
    inv_diag: tuple
    upper: tuple
    chol: jax.Array


jax.tree_util.register_dataclass(MultigridData,
                                 data_fields=["Ke", "E", "free", "inv_diag", "upper", "chol"],
                                 meta_fields=[])


def working_dtype(name: str):
    """float32, or float64 when requested and x64 is enabled (the library never enables it)."""
    return jnp.result_type(float) if name == "float64" else jnp.dtype(jnp.float32)


def chebyshev_upper_bound(voxel_size, nu, jacobi: str = "point", dtype=None, *, frame=None):
    """Largest eigenvalue of De⁻¹Ke for one voxel (traceable in ν): an upper bound of
    λ_max(D⁻¹K) for any assembly of scaled copies of Ke, since
    xᵀKx = Σ_e xᵀKe x ≤ λ Σ_e xᵀDe x = λ xᵀDx. ``jacobi="block"``: De is the element's
    nodal 3×3 block diagonal (the same argument holds). ``dtype``: of the computation
    (default float64 when x64 is enabled); ``frame``: the components' axes
    (:func:`~febone.voxel.operator.element_stiffness`)."""
    ke = element_stiffness(voxel_size, nu, jnp.result_type(float) if dtype is None else dtype,
                           frame)
    if jacobi == "point":
        d = 1.0 / jnp.sqrt(jnp.diagonal(ke))
        return jnp.linalg.eigvalsh(d[:, None] * ke * d[None, :]).max()
    # batched over the 8 corners (few compiled kernels): eigenvalues of W Ke Wᵀ with
    # W = blockdiag(L_a⁻¹), L_a L_aᵀ the corner blocks of De
    k4 = ke.reshape(8, 3, 8, 3)
    Linv = jnp.linalg.inv(jnp.linalg.cholesky(jnp.einsum("aiaj->aij", k4, precision=CONTRACTION)))
    return jnp.linalg.eigvalsh(jnp.einsum("aik,akbl,bjl->aibj", Linv, k4, Linv, precision=CONTRACTION)
                               .reshape(24, 24)).max()


def apply_inverse_diagonal(inv: jax.Array, r: jax.Array) -> jax.Array:
    """Jacobi step D⁻¹ r: ``inv`` is (n_nodes, 3) point or (n_nodes, 3, 3) block inverses."""
    if inv.ndim == 2:
        return inv * r
    return jnp.einsum("nij,nj->ni", inv, r, precision=CONTRACTION)


def child_prolongations() -> np.ndarray:
    """(8, 24, 24): P_c maps a coarse voxel's corner dofs to child c's corner dofs
    (trilinear; children and corners in grid order; dof = 3·corner + component)."""
    out = np.zeros((8, 24, 24))
    for c, pos in enumerate(GRID_CORNERS):
        w = np.zeros((8, 8))
        for a, corner in enumerate(GRID_CORNERS):
            x = (pos + corner) / 2.0  # child corner in parent units, each in {0, ½, 1}
            for b, cb in enumerate(GRID_CORNERS):
                w[a, b] = np.prod(1.0 - np.abs(x - cb))
        out[c] = np.kron(w, np.eye(3))
    return out


def _to_dense(level: VoxelLevel, x: jax.Array) -> jax.Array:
    """(n_nodes, 3) compact -> (Nz, Ny, Nx, 3) dense node array (zero at inactive nodes)."""
    dense = jnp.zeros((int(np.prod(level.node_shape)), 3), x.dtype)
    dense = dense.at[level.node_flat].set(x, mode="promise_in_bounds", unique_indices=True,
                                          indices_are_sorted=True)
    return dense.reshape(*level.node_shape, 3)


def _to_compact(level: VoxelLevel, dense: jax.Array) -> jax.Array:
    return dense.reshape(-1, 3).at[level.node_flat].get(mode="promise_in_bounds",
                                                        unique_indices=True,
                                                        indices_are_sorted=True)


def _upsample(a: jax.Array, axis: int, n_fine: int) -> jax.Array:
    """Linear interpolation along one axis: out[2c] = a[c], out[2c+1] = (a[c] + a[c+1])/2."""
    nc = a.shape[axis]
    lo = lax.slice_in_dim(a, 0, nc - 1, axis=axis)
    hi = lax.slice_in_dim(a, 1, nc, axis=axis)
    pairs = jnp.stack([lo, 0.5 * (lo + hi)], axis=axis + 1)
    shape = list(a.shape)
    shape[axis] = 2 * (nc - 1)
    out = jnp.concatenate([pairs.reshape(shape), lax.slice_in_dim(a, nc - 1, nc, axis=axis)],
                          axis=axis)
    return lax.slice_in_dim(out, 0, n_fine, axis=axis)


def _downsample(y: jax.Array, axis: int, n_coarse: int) -> jax.Array:
    """Transpose of :func:`_upsample`: out[c] = y[2c] + (y[2c−1] + y[2c+1])/2."""
    pad = [(0, 0)] * y.ndim
    pad[axis] = (0, 2 * n_coarse - y.shape[axis])
    shape = list(y.shape)
    shape[axis] = n_coarse
    shape.insert(axis + 1, 2)
    yp = jnp.pad(y, pad).reshape(shape)
    even = lax.index_in_dim(yp, 0, axis + 1, keepdims=False)
    odd = lax.index_in_dim(yp, 1, axis + 1, keepdims=False)
    odd_prev = jnp.concatenate([jnp.zeros_like(lax.slice_in_dim(odd, 0, 1, axis=axis)),
                                lax.slice_in_dim(odd, 0, n_coarse - 1, axis=axis)], axis=axis)
    return even + 0.5 * (odd + odd_prev)


def prolong(fine: VoxelLevel, coarse: VoxelLevel, xc: jax.Array) -> jax.Array:
    """Trilinear interpolation (n_coarse, 3) -> (n_fine, 3), separable on the dense grid
    (on each cell copy of a :class:`~febone.voxel.pieces.PieceLevel`)."""
    if isinstance(coarse, pieces.PieceLevel):
        return pieces.prolong(coarse, xc)
    d = _to_dense(coarse, xc)
    for axis in range(3):
        d = _upsample(d, axis, fine.node_shape[axis])
    return _to_compact(fine, d)


def restrict(fine: VoxelLevel, coarse: VoxelLevel, r: jax.Array) -> jax.Array:
    """Pᵀ r: (n_fine, 3) -> (n_coarse, 3), the exact transpose of :func:`prolong`."""
    if isinstance(coarse, pieces.PieceLevel):
        return pieces.restrict(coarse, r)
    d = _to_dense(fine, r)
    for axis in range(3):
        d = _downsample(d, axis, coarse.node_shape[axis])
    return _to_compact(coarse, d)


def _scatter(level: VoxelLevel, fe: jax.Array) -> jax.Array:
    """(n_voxels, 24) element vectors -> (n_nodes, 3), summed over shared nodes."""
    if isinstance(level, pieces.PieceLevel):
        return pieces.scatter(level, fe)
    return scatter_corners(level, fe)


def _form(options: Multigrid, l: int) -> str:
    if l == 0 or options.coarse == "average":
        return "scaled"
    return "children" if l == 1 and options.level1 == "children" else "matrices"


def _apply_level(level: VoxelLevel, form: str, Ke, E, x):
    """Unconstrained level operator K_l x."""
    if form == "scaled":
        return apply_stiffness(level, Ke, E, x)
    if form == "children" and isinstance(level, pieces.PieceLevel):
        return pieces.apply_children(level, Ke, E, x)
    if form == "children":  # Σ_c E_c (P_cᵀ Ke P_c) uᵉ, matrix-free
        # one (chunk, 24) @ (24, 8·24) GEMM, then the E-weighted sum over the 8 children:
        # 1.7× faster than 8 separate (24, 24) products (39 µm LHDL, level 1, float32)
        K_all = Ke.transpose(1, 0, 2).reshape(24, 192)

        def forces(ue, e):
            return jnp.einsum("nc,ncj->nj", e, jnp.matmul(ue, K_all, precision=CONTRACTION)
                              .reshape(-1, 8, 24), precision=CONTRACTION)
        return _chunked(level, E, x, forces, width=24 + 192 + 24)
    ue = pieces.gather(level, x) if isinstance(level, pieces.PieceLevel) \
        else gather_corners(level, x)
    return _scatter(level, jnp.einsum("eij,ej->ei", Ke, ue, precision=CONTRACTION))


def _element_diagonal(form: str, Ke, E):
    if form == "scaled":
        return E[:, None] * jnp.diagonal(Ke)[None, :]
    if form == "children":
        return jnp.matmul(E, jnp.diagonal(Ke, axis1=1, axis2=2), precision=CONTRACTION)
    return jnp.diagonal(Ke, axis1=1, axis2=2)


def _block_columns(form: str, Ke, E, j: int):
    """(n_voxels, 24): column ``j`` of each corner's nodal 3×3 diagonal block of a level's
    element matrices, entry 3·a + i = block_a[i, j] (corner a in grid order)."""
    rows = np.arange(24)
    cols = 3 * (rows // 3) + j
    if form == "scaled":
        return E[:, None] * Ke[rows, cols][None, :]
    if form == "children":
        return jnp.matmul(E, Ke[:, rows, cols], precision=CONTRACTION)
    return Ke[:, rows, cols]


def _block_inverse(level: VoxelLevel, form: str, Ke, E, free) -> jax.Array:
    """(n_nodes, 3, 3) inverses of the assembled nodal 3×3 diagonal blocks, restricted to
    the free dofs (identity on fixed ones). Assembled one block column at a time with the
    operator's corner scatter: three scatters per level, so few compiled kernels, and
    (n_voxels, 24) temporaries."""
    B = jnp.stack([_scatter(level, _block_columns(form, Ke, E, j).astype(free.dtype))
                   for j in range(3)], axis=-1)  # B[n, i, j]
    mask = free[:, :, None] * free[:, None, :]
    B = B * mask + jnp.eye(3, dtype=B.dtype)[None] * (1.0 - free)[:, None, :]
    return _inverse3(B)


def _inverse3(B: jax.Array) -> jax.Array:
    """(n, 3, 3) inverses by the adjugate (batched LAPACK is far slower for 3×3 blocks)."""
    a = [[B[:, i, j] for j in range(3)] for i in range(3)]
    cof = [[a[(j + 1) % 3][(i + 1) % 3] * a[(j + 2) % 3][(i + 2) % 3]
            - a[(j + 1) % 3][(i + 2) % 3] * a[(j + 2) % 3][(i + 1) % 3] for j in range(3)]
           for i in range(3)]
    adj = jnp.stack([jnp.stack(row, axis=-1) for row in cof], axis=-2)  # adj[i, j] = cof_ji
    det = a[0][0] * cof[0][0] + a[0][1] * cof[1][0] + a[0][2] * cof[2][0]
    return adj / det[:, None, None]


def _element_matrices(form: str, Ke, E):
    """(n_voxels, 24, 24) explicit element matrices of a level."""
    if form == "scaled":
        return E[:, None, None] * Ke[None]
    if form == "children":
        return jnp.matmul(E, Ke.reshape(8, 576), precision=CONTRACTION).reshape(-1, 24, 24)
    return Ke


def _galerkin_matrices(level: VoxelLevel, prev_form: str, prev_Ke, prev_E, P) -> jax.Array:
    """Element matrices Σ_c P_cᵀ K_child(c) P_c of a level from the finer level's operator."""
    n = level.n_voxels
    if isinstance(level, pieces.PieceLevel) and not level.positional:
        return pieces.galerkin_listed(level, _element_matrices(prev_form, prev_Ke, prev_E), P)
    if prev_form == "children":  # level 2 straight from the fine moduli: (n, 64) @ (64, 576)
        Epad = jnp.concatenate([prev_E, jnp.zeros((1, 8), prev_E.dtype)])
        E64 = Epad[level.children].reshape(n, 64)  # [c2, c1]
        M = jnp.einsum("cai,dab,cbj->cdij", P, prev_Ke, P, precision=CONTRACTION).reshape(64, 576)
        return jnp.matmul(E64, M.astype(E64.dtype), precision=CONTRACTION).reshape(n, 24, 24)
    child = _element_matrices(prev_form, prev_Ke, prev_E)
    child = jnp.concatenate([child, jnp.zeros((1, 24, 24), child.dtype)])
    P = P.astype(child.dtype)

    def add_child(c, out):  # a loop, not 8 unrolled copies: fewer compiled kernels
        Pc = lax.dynamic_index_in_dim(P, c, keepdims=False)
        rows = lax.dynamic_index_in_dim(level.children, c, axis=1, keepdims=False)
        return out + jnp.einsum("ai,eab,bj->eij", Pc, child[rows], Pc, precision=CONTRACTION)
    return lax.fori_loop(0, 8, add_child, jnp.zeros((n, 24, 24), child.dtype))


def _coarse_matrix(level: VoxelLevel, Kel, free) -> jax.Array:
    """Dense assembled matrix with identity rows/cols on fixed dofs."""
    n = 3 * level.n_nodes
    corners = level.corners if isinstance(level, pieces.PieceLevel) else corner_nodes(level)
    dof = (3 * corners[:, :, None] + jnp.arange(3)[None, None, :]).reshape(-1, 24)
    K = jnp.zeros((n, n), Kel.dtype).at[dof[:, :, None], dof[:, None, :]].add(Kel)
    f = free.reshape(-1)
    return K * f[:, None] * f[None, :] + jnp.diag(1.0 - f)


def _coarse_inverse_one(A: jax.Array) -> jax.Array:
    L = jnp.linalg.cholesky(A)
    inv = jax.scipy.linalg.cho_solve((L, True), jnp.eye(A.shape[0], dtype=A.dtype))
    return 0.5 * (inv + inv.T)


@jax.custom_batching.custom_vmap
def coarse_inverse(A: jax.Array) -> jax.Array:
    """Symmetrised inverse of the coarsest matrix, A: (m, m) SPD -> (m, m), by Cholesky.

    Under ``vmap`` the members are factorised one after another (``lax.map``), never as one
    batched LAPACK call. Why: each member's coarse matrix holds its own moduli, so no factor
    can be computed once outside the ``vmap``; and on the CPU a batched potrf (batch ≥ 2) runs
    its batch on XLA's small intra-op thread pool, which deadlocks when the threads of the
    other devices already wait in a collective (with the batch axis sharded, the all-reduce
    of a vmapped CG loop's condition): the hang of issue 18. The matrix is small
    (≤ 3·max_coarse_nodes unknowns) and factorised once per solve, not per iteration, so
    serialising the members costs little; the cycle applies the result as a matmul. With the
    batch sharded by ``jit`` alone, XLA may gather the (small) coarse matrices to run the map;
    :func:`febone.parallel.map_batch` keeps each device's members local.
    """
    return _coarse_inverse_one(A)


@coarse_inverse.def_vmap
def _coarse_inverse_vmap(axis_size, in_batched, A):
    if not in_batched[0]:
        return coarse_inverse(A), False
    return lax.map(coarse_inverse, A), True


def _lanczos_bound(A, inv_diag, n_nodes: int, dtype, steps: int, safety: float, *,
                   dot=None, ids=None):
    """safety × the largest Ritz value of D⁻¹A after ``steps`` Jacobi-preconditioned CG
    steps (the Lanczos tridiagonal from the CG coefficients; Ritz values lie inside the
    spectrum and the largest converges to λ_max much faster than power iteration).

    ``n_nodes`` counts the level's nodes; a model split over devices
    (:mod:`febone.voxel.sharded`) passes its ``dot`` (sums over devices) and the (rows,)
    global ``ids`` of its rows, which give every device count the same start vector."""
    k = int(min(steps, max(2, 3 * n_nodes // 2)))
    if ids is None:
        b = jnp.cos(jnp.arange(3 * n_nodes, dtype=dtype) * 0.7548776662).reshape(-1, 3) + 1.5
    else:  # the same values: 3·id + component, exact integers in either dtype
        row = 3 * ids.astype(dtype)[:, None] + jnp.arange(3, dtype=dtype)[None, :]
        b = jnp.cos(row * 0.7548776662) + 1.5
    vdot = _vdot if dot is None else dot
    z = apply_inverse_diagonal(inv_diag, b)

    def body(j, s):
        r, z, p, rz, alphas, betas = s
        Ap = A(p)
        alpha = _safe_div(rz, vdot(p, Ap))
        r = r - alpha * Ap
        z = apply_inverse_diagonal(inv_diag, r)
        rz_new = vdot(r, z)
        beta = _safe_div(rz_new, rz)
        return r, z, z + beta * p, rz_new, alphas.at[j].set(alpha), betas.at[j].set(beta)

    zeros = jnp.zeros((k,), dtype)
    *_, alphas, betas = jax.lax.fori_loop(0, k, body, (b, z, z, vdot(b, z), zeros, zeros))
    inv_a = _safe_div(1.0, alphas)
    diag = inv_a + jnp.concatenate([jnp.zeros((1,), dtype), betas[:-1] * inv_a[:-1]])
    off = jnp.sqrt(jnp.maximum(betas[:-1], 0.0)) * inv_a[:-1]
    T = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return safety * jnp.linalg.eigvalsh(T)[-1]


def setup_multigrid(model: VoxelModel, E: jax.Array, nu, fixed: jax.Array,
                    options: Multigrid, *, setup_dtype=None) -> MultigridData:
    """Build the per-solve multigrid data from the fine moduli and the fixed-dof mask.

    Args:
        model: index data of all levels.
        E: (n_voxels,) fine moduli, MPa (no gradient flows through the preconditioner).
        nu: Poisson's ratio.
        fixed: (n_nodes, 3) bool, fine dofs with prescribed displacement.
        options: :class:`Multigrid`.
        setup_dtype: precision of the setup (element stiffness, smoother bound, coarsest
            inverse); default float64 when x64 is enabled. The float32 precision mode passes
            float32, so that nothing of its solve runs in float64.
    """
    dtype = working_dtype(options.dtype)
    wide = jnp.result_type(float) if setup_dtype is None else jnp.dtype(setup_dtype)
    if options.coarse != "galerkin" and any(isinstance(lev, pieces.PieceLevel)
                                            for lev in model.levels):
        raise ValueError("a model with connectivity-following coarse levels (coarse_space="
                         "'pieces') needs Galerkin coarse operators: use "
                         "Multigrid(coarse='galerkin'), or build the model with "
                         "VoxelModel.create for coarse='average'")
    E = jax.lax.stop_gradient(E).astype(dtype)
    nu = jax.lax.stop_gradient(nu)
    ke0 = element_stiffness(model.voxel_size, nu, wide, model.frame)
    P = jnp.asarray(child_prolongations(), dtype)
    levels = model.levels
    forms = [_form(options, l) for l in range(len(levels))]
    Kes, Es = [ke0.astype(dtype)], [E]
    for l in range(1, len(levels)):
        lev = levels[l]
        if forms[l] == "scaled":
            Epad = jnp.concatenate([Es[-1], jnp.zeros((1,), dtype)])
            Es.append(Epad[lev.children].sum(axis=1) / 8.0)
            Kes.append((lev.scale * ke0).astype(dtype))
        elif l == 1:  # Galerkin level 1 from the 8 child moduli of each coarse voxel
            Epad = jnp.concatenate([Es[-1], jnp.zeros((1,), dtype)])
            Ec = Epad[lev.children]
            Kc = jnp.einsum("cai,ab,cbj->cij", P, Kes[0], P, precision=CONTRACTION)
            if forms[l] == "children":
                Es.append(Ec)
                Kes.append(Kc)
            else:
                Es.append(Ec)  # kept for level 2, which is built from the fine moduli
                Kes.append(_element_matrices("children", Kc, Ec))
        else:
            prev_form = "children" if l == 2 else "matrices"
            prev_Ke = jnp.einsum("cai,ab,cbj->cij", P, Kes[0], P, precision=CONTRACTION) if l == 2 else Kes[-1]
            Kes.append(_galerkin_matrices(lev, prev_form, prev_Ke, Es[-1], P))
            Es.append(jnp.zeros((0,), dtype))
    free = [jnp.where(fixed, 0.0, 1.0).astype(dtype)]
    for fine, coarse in zip(levels[:-1], levels[1:]):
        touched = restrict(fine, coarse, 1.0 - free[-1])  # > 0 where a fixed fine dof is reached
        free.append(jnp.where(touched > 0, 0.0, 1.0).astype(dtype))
    inv_diag, upper = [], []
    rigorous = chebyshev_upper_bound(model.voxel_size, nu, options.jacobi, wide,
                                     frame=model.frame).astype(dtype)
    for l, lev in enumerate(levels):
        if options.jacobi == "point":
            d = _scatter(lev, _element_diagonal(forms[l], Kes[l], Es[l]))
            inv = jnp.where(free[l] > 0, 1.0 / jnp.where(d > 0, d, 1.0), 1.0).astype(dtype)
        else:
            inv = _block_inverse(lev, forms[l], Kes[l], Es[l], free[l])
        inv_diag.append(inv)
        if (forms[l] == "scaled" and not (l == 0 and options.fine_bound == "lanczos")) \
                or l == len(levels) - 1:
            upper.append(rigorous)
        else:
            def A(v, l=l, lev=lev):
                return free[l] * _apply_level(lev, forms[l], Kes[l], Es[l], free[l] * v) \
                    + (1.0 - free[l]) * v
            estimate = _lanczos_bound(A, inv, lev.n_nodes, dtype, int(options.lanczos_steps),
                                    float(options.safety))
            # on scaled levels the element bound is rigorous: never exceed it
            upper.append(jnp.minimum(estimate, rigorous) if forms[l] == "scaled" else estimate)
    # The smoother multiplies residuals by inv_diag; zero on fixed dofs keeps corrections
    # there at zero, so the cycle can apply the unmasked operator (its fixed rows are
    # never read: restriction and prolongation are masked).
    inv_diag = [inv * (f if inv.ndim == 2 else f[:, :, None]) for inv, f in zip(inv_diag, free)]
    last = len(levels) - 1
    A = _coarse_matrix(levels[last], _element_matrices(forms[last], Kes[last], Es[last]).astype(wide),
                       free[last].astype(wide))
    chol = coarse_inverse(A).astype(dtype)  # explicit inverse: one matvec per coarse solve
    return MultigridData(tuple(Kes), tuple(Es), tuple(free), tuple(inv_diag), tuple(upper), chol)


def _chebyshev(A, inv_diag, x, r, degree: int, lo, hi, want_residual: bool = True):
    """``degree`` Chebyshev steps for A x = b from x with residual r = b − A x.

    Returns the new x and its residual (``None`` unless ``want_residual``); one operator
    application per step (one fewer without the residual), in a ``fori_loop`` so the
    operator is compiled once whatever the degree."""
    theta, delta = 0.5 * (hi + lo), 0.5 * (hi - lo)
    sigma = theta / delta
    d = apply_inverse_diagonal(inv_diag, r) / theta

    def step(_, s):
        x, r, d, rho = s
        x = x + d
        r = r - A(d)
        rho_new = 1.0 / (2.0 * sigma - rho)
        d = rho_new * rho * d + (2.0 * rho_new / delta) * apply_inverse_diagonal(inv_diag, r)
        return x, r, d, rho_new

    if want_residual:
        x, r, _, _ = jax.lax.fori_loop(0, degree, step, (x, r, d, 1.0 / sigma))
        return x, r
    # the last step's residual update is not needed: degree − 1 operator applications
    x, r, d, _ = jax.lax.fori_loop(0, degree - 1, step, (x, r, d, 1.0 / sigma))
    return x + d, None


def _vdot(a, b):
    return jnp.vdot(a, b, precision=CONTRACTION)


def _safe_div(a, b):
    return jnp.where(b != 0, a / jnp.where(b != 0, b, 1.0), 0.0)


def vcycle(model: VoxelModel, mg: MultigridData, r: jax.Array, options: Multigrid) -> jax.Array:
    """One multigrid cycle approximating A⁻¹ r on the fine level.

    Args:
        r: (n_nodes, 3) residual, zero on fixed dofs.

    Returns:
        (n_nodes, 3) correction in ``r``'s dtype (zero on fixed dofs).
    """
    out_dtype = r.dtype
    dtype = working_dtype(options.dtype)
    n_levels = len(model.levels)
    forms = [_form(options, l) for l in range(n_levels)]

    def op(l):
        """Unmasked level operator: exact on free rows for vectors zero on fixed dofs;
        its fixed rows hold values no later step reads."""
        lev = model.levels[l]

        def A(v):
            return _apply_level(lev, forms[l], mg.Ke[l], mg.E[l], v)
        return A

    def cycle(l, b):
        if l == n_levels - 1:
            return jnp.matmul(mg.chol, (mg.free[l] * b).reshape(-1),
                              precision=CONTRACTION).reshape(b.shape)
        lev, A = model.levels[l], op(l)
        hi = mg.upper[l]
        lo = hi / float(options.ratio)
        deg = options.degree_at(l)
        x, res = _chebyshev(A, mg.inv_diag[l], jnp.zeros_like(b), b, deg, lo, hi, True)
        coarse = model.levels[l + 1]
        bc = mg.free[l + 1] * restrict(lev, coarse, mg.free[l] * res)
        krylov_below = options.cycle == "k" or (options.cycle == "k1" and l == 0)
        if krylov_below and l + 1 < n_levels - 1:
            xc = kstep(l + 1, bc)
        else:
            xc = cycle(l + 1, bc)
        x = x + mg.free[l] * prolong(lev, coarse, xc)
        x, _ = _chebyshev(A, mg.inv_diag[l], x, b - A(x), deg, lo, hi, False)
        return x

    def kstep(l, b):
        return kcycle_steps(op(l), partial(cycle, l), _vdot, mg.free[l] * b)

    return cycle(0, r.astype(dtype)).astype(out_dtype)


def kcycle_steps(A, precondition, vdot, b):
    """The K-cycle's coarse correction: two flexible-CG steps for A x = b from x = 0,
    preconditioned by ``precondition`` (the cycle below), with inner product ``vdot``."""
    def step(_, s):
        x, res, p_prev, Ap_prev, d_prev = s
        z = precondition(res)
        Az = A(z)
        beta = _safe_div(vdot(z, Ap_prev), d_prev)
        p, Ap = z - beta * p_prev, Az - beta * Ap_prev
        d = vdot(p, Ap)
        alpha = _safe_div(vdot(p, res), d)
        return x + alpha * p, res - alpha * Ap, p, Ap, d

    zero = jnp.zeros_like(b)
    init = (zero, b, zero, zero, jnp.zeros((), b.dtype))
    return jax.lax.fori_loop(0, 2, step, init)[0]

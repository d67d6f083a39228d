"""The AMG hierarchy refreshed on the device when the moduli change.

:class:`~febone.solve.amg.AMG` keeps pyamg's smoothed aggregation (the prolongators P, built
once on the host from the baseline moduli); everything that depends on the moduli is
recomputed in JAX by :func:`refresh_on_device`, a pure, jittable function whose output has the
input's shapes (nothing recompiles):

* the fine matrix A₀(E), assembled from the element matrices of ``model`` (λ, μ of every
  element times Σ_q w ∇N ⊗ ∇N) into the fixed node-block pattern, supports decoupled as in
  :func:`~febone.solve.amg.assemble_stiffness`;
* the Galerkin products A_{l+1} = Pᵀ A_l P, two sparse products with index lists computed once
  on the host (:class:`RefreshPlan`);
* every level's inverse diagonal and Chebyshev interval (ρ(D⁻¹A) from a fixed number of
  Lanczos steps, times the build's safety factor);
* the coarsest level's dense inverse (scaled Cholesky, or the pseudo-inverse that drops null
  modes, as :func:`~febone.solve.amg._coarse_inverse`).

A hierarchy built with ``AMG.build(..., refreshable=True)`` carries its plan and stores every
level operator in the symbolic pattern of the products (a superset of pyamg's, which drops
exact zeros), so the baseline and every refreshed hierarchy have the same shapes. The host
loop of :func:`febone.remodel.remodel` refreshes its habitual cases' hierarchies with it at
every output, with no host transfer.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import jax
import jax.numpy as jnp
import numpy as np

from .amg_levels import AMGLevel, BlockCSR, _FineOperator

__all__ = ["RefreshPlan", "GalerkinPlan", "refresh_plan", "refresh_on_device", "refresh",
           "assemble_blocks", "galerkin_product"]


@dataclass(frozen=True)
class GalerkinPlan:
    """Index lists of C = Pᵀ A P for fixed patterns (host-built, int32).

    Stage 1, AP = A P: term t adds ``A[ap_a[t]] @ P[ap_p[t]]`` to block ``ap_out[t]`` (sorted).
    Stage 2, C = Pᵀ AP: term t adds ``P[c_p[t]]ᵀ @ AP[c_ap[t]]`` to block ``c_out[t]`` (sorted).

    Attributes:
        ap_a, ap_p, ap_out: (n_terms_1,) int32.
        c_p, c_ap, c_out: (n_terms_2,) int32.
        rows, cols: (n_blocks_C,) int32 block pattern of C, sorted by (row, col).
        n_ap: number of blocks of AP (static).
        n_rows: block rows of C (static).
    """

    ap_a: jax.Array
    ap_p: jax.Array
    ap_out: jax.Array
    c_p: jax.Array
    c_ap: jax.Array
    c_out: jax.Array
    rows: jax.Array
    cols: jax.Array
    n_ap: int = field(metadata=dict(static=True))
    n_rows: int = field(metadata=dict(static=True))


@dataclass(frozen=True)
class RefreshPlan:
    """What :func:`refresh_on_device` needs beyond the hierarchy (host-built once).

    Attributes:
        order: (n_elements·n_en²,) int32 permutation sorting the element-matrix blocks by
            their fine block index.
        block_ids: (n_elements·n_en²,) int32 sorted fine block index of each sorted term.
        rows, cols: (n_blocks_0,) int32 fine block pattern (node pairs sharing an element),
            sorted by (row, col).
        galerkin: one :class:`GalerkinPlan` per non-coarsest level.
        interval: the smoother damps [ρ/interval, ρ] (static).
        safety: factor on the Lanczos estimate of ρ(D⁻¹A) (static).
        lanczos_steps: Lanczos steps per level (static).
        rcond: scaled coarse pivots below this count as null (static).
    """

    order: jax.Array
    block_ids: jax.Array
    rows: jax.Array
    cols: jax.Array
    galerkin: tuple
    interval: float = field(metadata=dict(static=True))
    safety: float = field(metadata=dict(static=True))
    lanczos_steps: int = field(metadata=dict(static=True))
    rcond: float = field(default=1e-10, metadata=dict(static=True))


for _cls in (GalerkinPlan, RefreshPlan):
    _static = [f.name for f in fields(_cls) if f.metadata.get("static")]
    jax.tree_util.register_dataclass(
        _cls, data_fields=[f.name for f in fields(_cls) if f.name not in _static],
        meta_fields=_static)


# ----------------------------------------------------------------------------- host: the plan
def _expand(indptr: np.ndarray, which: np.ndarray):
    """For every entry of ``which`` (a row index), all positions of that row in a CSR
    ``indptr``: returns (entry index, position), both (Σ row lengths,) int64."""
    counts = indptr[which + 1] - indptr[which]
    entry = np.repeat(np.arange(which.size), counts)
    first = np.repeat(indptr[which] - (np.cumsum(counts) - counts), counts)
    return entry, first + np.arange(entry.size)


def _i32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.int32)


def _indptr(rows: np.ndarray, n_rows: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)


def _pattern(keys: np.ndarray, n_cols: int):
    """Sorted unique (row, col) keys -> (rows, cols, inverse of every key)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq // n_cols, uniq % n_cols, inverse


def _galerkin_plan(rows_a, cols_a, rows_p, cols_p, n_rows: int, n_coarse: int) -> GalerkinPlan:
    """Index lists of Pᵀ A P for A with pattern (rows_a, cols_a) over ``n_rows`` block rows and
    P (rows_p sorted, cols_p) of ``n_coarse`` block columns."""
    ptr_p = _indptr(rows_p, n_rows)
    a, p = _expand(ptr_p, cols_a.astype(np.int64))            # A[k, l] · P[l, J]
    r_ap, c_ap, out1 = _pattern(rows_a[a].astype(np.int64) * n_coarse + cols_p[p], n_coarse)
    s1 = np.argsort(out1, kind="stable")
    m, q = _expand(ptr_p, r_ap)                               # P[k, I]ᵀ · AP[k, J]
    rows_c, cols_c, out2 = _pattern(cols_p[q].astype(np.int64) * n_coarse + c_ap[m], n_coarse)
    s2 = np.argsort(out2, kind="stable")
    return GalerkinPlan(_i32(a[s1]), _i32(p[s1]), _i32(out1[s1]), _i32(q[s2]), _i32(m[s2]),
                        _i32(out2[s2]), _i32(rows_c), _i32(cols_c), int(r_ap.size),
                        int(n_coarse))


def refresh_plan(cells, n_nodes: int, levels, *, interval: float, safety: float,
                 lanczos_steps: int, rcond: float = 1e-10) -> RefreshPlan:
    """The host-side plan of a hierarchy (NumPy leaves; once per hierarchy).

    Args:
        cells: (n_elements, n_en) connectivity of the fine mesh.
        n_nodes: number of fine nodes.
        levels: the hierarchy's non-coarsest :class:`~febone.solve.amg.AMGLevel` s (their P,
            rows sorted, and R = Pᵀ, whose ``n_rows`` is the coarse size).
        interval, safety, lanczos_steps: the smoother options the hierarchy was built with.
        rcond: coarse null-pivot threshold (as :func:`~febone.solve.amg._coarse_inverse`).
    """
    cells = np.asarray(cells, dtype=np.int64)
    nen = cells.shape[1]
    keys = (np.repeat(cells, nen, axis=1) * n_nodes + np.tile(cells, (1, nen))).ravel()
    rows0, cols0, inverse = _pattern(keys, n_nodes)
    order = np.argsort(inverse, kind="stable")
    plans, rows, cols, n = [], rows0, cols0, n_nodes
    for lvl in levels:
        n_coarse = int(lvl.R.n_rows)
        plan = _galerkin_plan(rows, cols, np.asarray(lvl.P.rows, np.int64),
                              np.asarray(lvl.P.cols, np.int64), n, n_coarse)
        plans.append(plan)
        rows, cols, n = np.asarray(plan.rows, np.int64), np.asarray(plan.cols, np.int64), n_coarse
    return RefreshPlan(_i32(order), _i32(inverse[order]), _i32(rows0), _i32(cols0), tuple(plans),
                       float(interval), float(safety), int(lanczos_steps), float(rcond))


# ----------------------------------------------------------------------------- device
def assemble_blocks(model, E, nu, plan: RefreshPlan, fixed=None):
    """Fine stiffness K(E) in the plan's node-block pattern (traceable).

    Args:
        model: :class:`~febone.fe.model.FEModel` (grad_N, weights).
        E: (n_elements,) Young's moduli, MPa; nu: Poisson's ratio (scalar or per element).
        plan: :class:`RefreshPlan`.
        fixed: (n_nodes, 3) bool prescribed dofs, decoupled (rows and columns zeroed, the
            diagonal kept) as :func:`~febone.solve.amg.assemble_stiffness` does; or None.

    Returns:
        (3, 3, n_blocks) component-major blocks, N/mm.
    """
    from ..fe.elasticity import lame

    G, w = model.grad_N, model.weights                          # (ne, nq, nen, 3), (ne, nq)
    ne, _, nen, _ = G.shape
    lam, mu = lame(jnp.broadcast_to(jnp.asarray(E), (ne,)), jnp.broadcast_to(jnp.asarray(nu), (ne,)))
    H = jnp.einsum("eq,eqai,eqbj->ijeab", w, G, G)               # Σ_q w ∂_i N_a ∂_j N_b
    trace = mu[:, None, None] * (H[0, 0] + H[1, 1] + H[2, 2])
    K = lam[None, None, :, None, None] * H + mu[None, None, :, None, None] * jnp.swapaxes(H, 0, 1)
    K = K + jnp.eye(3, dtype=K.dtype)[:, :, None, None, None] * trace[None, None]
    terms = K.reshape(3, 3, ne * nen * nen)[:, :, plan.order]
    n_blocks = plan.rows.shape[0]
    blocks = jax.ops.segment_sum(jnp.moveaxis(terms, -1, 0), plan.block_ids,
                                 num_segments=n_blocks, indices_are_sorted=True)
    blocks = jnp.moveaxis(blocks, 0, -1)                        # (3, 3, n_blocks)
    if fixed is None:
        return blocks
    keep = ~jnp.asarray(fixed, bool)                            # (n_nodes, 3)
    diag = plan.rows == plan.cols
    kr, kc = keep[plan.rows].T, keep[plan.cols].T               # (3, n_blocks)
    d = jnp.diagonal(blocks, axis1=0, axis2=1).T                # (3, n_blocks)
    blocks = blocks * kr[:, None, :] * kc[None, :, :]
    add = jnp.where(diag[None, :] & ~kr, d, 0.0)                # fixed dofs keep their diagonal
    return blocks + jnp.eye(3, dtype=blocks.dtype)[:, :, None] * add[None, :, :]


def galerkin_product(A_blocks, P_blocks, plan: GalerkinPlan):
    """Pᵀ A P in the plan's pattern: (b, b, n_A) and (b, c, n_P) blocks -> (c, c, n_C)."""
    prod = jnp.einsum("ijt,jmt->tim", A_blocks[:, :, plan.ap_a], P_blocks[:, :, plan.ap_p])
    AP = jax.ops.segment_sum(prod, plan.ap_out, num_segments=plan.n_ap, indices_are_sorted=True)
    prod = jnp.einsum("itc,tim->tcm", jnp.moveaxis(P_blocks[:, :, plan.c_p], -1, 1),
                      AP[plan.c_ap])
    C = jax.ops.segment_sum(prod, plan.c_out, num_segments=plan.rows.shape[0],
                            indices_are_sorted=True)
    return jnp.moveaxis(C, 0, -1)


def _block_diagonal(blocks, rows, cols, n_rows: int):
    """(n_rows, b) diagonal of a block matrix (0 where a row has no diagonal block)."""
    d = jnp.diagonal(blocks, axis1=0, axis2=1)                  # (n_blocks, b)
    return jax.ops.segment_sum(jnp.where((rows == cols)[:, None], d, 0.0), rows,
                               num_segments=n_rows, indices_are_sorted=True)


def _lanczos_radius(A, dinv, steps: int, seed: int):
    """Largest Ritz value of D^-½ A D^-½ after ``steps`` Lanczos steps (a lower bound of
    ρ(D⁻¹A) that converges fast for the top of the spectrum; see
    :func:`~febone.solve.amg._spectral_radius`). A breakdown (invariant subspace found) ends
    the recurrence: later steps add only zero rows to the tridiagonal matrix."""
    s = jnp.sqrt(dinv)
    v = jax.random.uniform(jax.random.PRNGKey(seed), dinv.shape, dinv.dtype) * (s > 0)
    v = v / jnp.maximum(jnp.sqrt(jnp.sum(v * v)), 1e-300)

    def body(j, carry):
        v, v_prev, b_prev, alpha, beta, done = carry
        w = s * A(s * v) - b_prev * v_prev
        a = jnp.sum(v * w)
        w = w - a * v
        b = jnp.sqrt(jnp.sum(w * w))
        stop = done | (b <= 1e-12 * jnp.maximum(jnp.abs(a), 1e-300))
        alpha = alpha.at[j].set(jnp.where(done, 0.0, a))
        beta = beta.at[j].set(jnp.where(stop, 0.0, b))
        v_new = jnp.where(stop, 0.0, w / jnp.where(stop, 1.0, b))
        return v_new, v, jnp.where(stop, 0.0, b), alpha, beta, stop

    z = jnp.zeros(steps, dinv.dtype)
    init = (v, jnp.zeros_like(v), jnp.asarray(0.0, dinv.dtype), z, z, jnp.asarray(False))
    _, _, _, alpha, beta, _ = jax.lax.fori_loop(0, steps, body, init)
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    return jnp.linalg.eigvalsh(T)[-1]


def _chebyshev(hi, lo, degree: int):
    """:func:`~febone.solve.amg._chebyshev` with traced interval ends: (degree, 2)."""
    theta, delta = (hi + lo) / 2.0, (hi - lo) / 2.0
    sigma = theta / delta
    rho = 1.0 / sigma
    coef = [jnp.stack([jnp.zeros_like(theta), 1.0 / theta])]
    for _ in range(1, degree):
        rho_new = 1.0 / (2.0 * sigma - rho)
        coef.append(jnp.stack([rho_new * rho, 2.0 * rho_new / delta]))
        rho = rho_new
    return jnp.stack(coef)


def _dense(blocks, rows, cols, n_rows: int):
    b = blocks.shape[0]
    M = jnp.zeros((n_rows, n_rows, b, b), blocks.dtype).at[rows, cols].add(
        jnp.moveaxis(blocks, -1, 0))
    return M.transpose(0, 2, 1, 3).reshape(n_rows * b, n_rows * b)


def _coarse_inverse(Ac, scale, rcond: float):
    """Device twin of :func:`~febone.solve.amg._coarse_inverse`: Cholesky of the scaled
    operator when no pivot² is below ``rcond``, else the eigen-decomposition pseudo-inverse
    that drops the null modes; unknowns of scale 0 (zero columns of P) get 0."""
    live = scale > 0
    s = jnp.where(live, 1.0 / jnp.sqrt(jnp.where(live, scale, 1.0)), 0.0)
    both = live[:, None] & live[None, :]
    As = jnp.where(both, 0.5 * (Ac + Ac.T) * s[:, None] * s[None, :], 0.0)
    As = As + jnp.diag(jnp.where(live, 0.0, 1.0))              # dead unknowns decoupled
    L = jnp.linalg.cholesky(As)
    ok = jnp.all(jnp.isfinite(L)) & (jnp.min(jnp.diagonal(L)) ** 2 > rcond)
    eye = jnp.eye(As.shape[0], dtype=As.dtype)

    def by_cholesky(_):
        return jax.scipy.linalg.cho_solve((L, True), eye)

    def by_eigh(_):
        w, V = jnp.linalg.eigh(As)
        keep = w > rcond
        return (V * jnp.where(keep, 1.0 / jnp.where(keep, w, 1.0), 0.0)) @ V.T

    inv_s = jax.lax.cond(ok, by_cholesky, by_eigh, None)
    inv = jnp.where(both, inv_s * s[:, None] * s[None, :], 0.0)
    return 0.5 * (inv + inv.T)


def refresh_on_device(hierarchy, model, material, bcs=None):
    """``hierarchy`` recomputed for the moduli of ``material`` (pure, jittable; same shapes).

    The aggregation (every level's P and R = Pᵀ) is kept; the level operators, inverse
    diagonals, Chebyshev coefficients and the coarse inverse are recomputed in JAX.

    Args:
        hierarchy: :class:`~febone.solve.amg.AMG` built with ``refreshable=True``.
        model: the :class:`~febone.fe.model.FEModel` it was built for.
        material: :class:`~febone.material.elastic.LinearElastic`, E (n_elements,) MPa.
        bcs: the :class:`~febone.fe.bc.BoundaryConditions` it was built with (or None).

    Returns:
        :class:`~febone.solve.amg.AMG` with the same tree structure, shapes and dtypes.

    Raises:
        ValueError: the hierarchy carries no refresh plan.
    """

    plan = getattr(hierarchy, "refresh", None)
    if plan is None:
        raise ValueError("this AMG hierarchy cannot be refreshed on the device: build it with "
                         "AMG.build(..., refreshable=True)")
    dtype = hierarchy.coarse.dtype
    E = jnp.asarray(material.E)
    work = jnp.result_type(E.dtype, model.grad_N.dtype)
    fixed = None if bcs is None else bcs.fixed
    blocks = assemble_blocks(model, E.astype(work), jnp.asarray(material.nu, work), plan, fixed)
    rows, cols, n = plan.rows, plan.cols, int(hierarchy.n_nodes)
    levels = []
    for i, (lvl, gp) in enumerate(zip(hierarchy.levels, plan.galerkin)):
        A = BlockCSR(blocks, rows, cols, n)
        diag = _block_diagonal(blocks, rows, cols, n)
        dinv = jnp.where(diag > 0, 1.0 / jnp.where(diag > 0, diag, 1.0), 0.0)
        steps = int(min(plan.lanczos_steps, diag.size))
        hi = plan.safety * _lanczos_radius(A, dinv, steps, seed=i)
        cheb = _chebyshev(hi, hi / plan.interval, lvl.cheb.shape[0])
        if isinstance(lvl.A, _FineOperator):
            free = lvl.A.free
            op = replace(lvl.A, E=jnp.broadcast_to(E, lvl.A.E.shape).astype(lvl.A.E.dtype),
                         fixed_diag=jnp.where(free, 0.0, diag).astype(lvl.A.fixed_diag.dtype))
        else:
            op = BlockCSR(blocks.astype(dtype), rows, cols, n)
        levels.append(AMGLevel(op, lvl.P, lvl.R, dinv.astype(dtype), cheb.astype(dtype)))
        P = lvl.P.blocks.astype(work)
        blocks = galerkin_product(blocks, P, gp)
        # the coarse unknowns' natural scale diag(Pᵀ D P), D the diagonal of this level
        scale = jax.ops.segment_sum(jnp.sum(P ** 2 * diag[lvl.P.rows].T[:, None, :], axis=0).T,
                                    lvl.P.cols, num_segments=gp.n_rows)
        rows, cols, n = gp.rows, gp.cols, gp.n_rows
    dense = _dense(blocks, rows, cols, n)
    if not hierarchy.levels:
        scale = jnp.diagonal(dense).reshape(n, -1)
    coarse = _coarse_inverse(dense, scale.reshape(-1), plan.rcond)
    return replace(hierarchy, levels=tuple(levels), coarse=coarse.astype(dtype))


_refresh_compiled = jax.jit(refresh_on_device)


def refresh(hierarchy, model, material, bcs=None):
    """:func:`refresh_on_device`, compiled once per hierarchy shape (E broadcast to
    (n_elements,) and ν cast to the model's float type, so every call hits one cache entry).
    The build of a refreshable hierarchy and the remodelling loop's refresh share it."""
    from ..material.elastic import LinearElastic

    dt = model.grad_N.dtype
    E = jnp.broadcast_to(jnp.asarray(material.E, dt), (model.n_elements,))
    return _refresh_compiled(hierarchy, model, LinearElastic(E, jnp.asarray(material.nu, dt)),
                             bcs)

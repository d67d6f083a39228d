"""Smoothed-aggregation algebraic multigrid preconditioner for unstructured meshes.

Built once on the host, applied on the device (design decision 4): the stiffness matrix
is assembled with NumPy/SciPy from element matrices that this module computes from the
node coordinates and the reference element, pyamg builds a smoothed-aggregation
hierarchy with the six rigid-body modes as near-null space and 3×3 node blocks (one
aggregate = whole nodes), and the result is a frozen pytree whose ``__call__`` applies
one symmetric V-cycle entirely in JAX:

* every level: Chebyshev smoothing (Jacobi-preconditioned, degree 2 by default, the same
  polynomial before and after the coarse correction) with the level matrix stored
  block-sparse (3×3 node blocks on the fine level, 6×6 aggregate blocks below); the fine
  level can instead use the matrix-free operator (``fine="matrix-free"``);
* transfers: smoothed prolongation P and R = Pᵀ, block-sparse;
* coarsest level (at most ``6·max_coarse`` unknowns): dense inverse (Cholesky).

The same polynomial before and after, and R = Pᵀ, make the cycle symmetric; a smoother
interval that covers the spectrum of D⁻¹A makes it positive definite, so it is a valid
preconditioner for CG. Pass it as ``fb.solve(model, mat, bcs, preconditioner=amg)``. Its
arrays are data of the compiled solve: build it once and reuse it for many solves whose
moduli change (it stays symmetric positive definite, only less sharp).

pyamg and SciPy are optional dependencies (``pip install febone[amg]``), imported by
:meth:`AMG.build` only. ``AMG.build(..., refreshable=True)`` keeps only pyamg's aggregation and
computes the rest in JAX, so that the remodelling loop recomputes it for new moduli on the
device (:mod:`febone.solve.amg_refresh`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..fe.bc import BoundaryConditions
from ..mesh.elements import element
from ..fe.model import FEModel
from ..material.elastic import LinearElastic, MaterialError
from .amg_levels import AMGLevel, BlockCSR, _FineOperator

__all__ = ["AMG", "BlockCSR", "assemble_stiffness", "element_stiffness", "rigid_body_modes",
           "make_preconditioner", "PRECONDITIONERS"]

log = logging.getLogger(__name__)

_FINE = ("assembled", "matrix-free")
_CHUNK_ENTRIES = 4_000_000  # element-matrix entries per component per assembly chunk


def _require_scipy_pyamg():
    try:
        import pyamg  # noqa: F401
        import scipy.sparse  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"the algebraic-multigrid preconditioner needs pyamg and scipy ({err}); install "
            f"them with `pip install febone[amg]` (or `pip install pyamg scipy`), or solve "
            f"with the default Jacobi preconditioner") from err
    import pyamg
    import scipy.sparse as sp
    return pyamg, sp


# ----------------------------------------------------------------------------- assembly
def element_stiffness(points, cells, cell_type: str, E, nu) -> np.ndarray:
    """Element stiffness matrices of isotropic linear elasticity, on the host (NumPy).

    Computed from the coordinates and the reference element (shape-function derivatives
    and quadrature rule of :mod:`febone.mesh.elements`), independently of :class:`FEModel`:
    K[i, j, e, a, b] = Σ_q w_q (λ ∂_i N_a ∂_j N_b + μ ∂_j N_a ∂_i N_b + μ δ_ij ∇N_a·∇N_b),
    the force component i at node a per unit displacement component j at node b.

    Args:
        points: (n_nodes, 3) coordinates, mm.
        cells: (n_elements, n_en) connectivity.
        cell_type: ``"tetra"``, ``"tetra10"`` or ``"hexahedron"`` (or an alias).
        E: (n_elements,) or scalar Young's modulus, MPa.
        nu: (n_elements,) or scalar Poisson's ratio.

    Returns:
        (3, 3, n_elements, n_en, n_en) float64, N/mm (component-major, so that each of the
        nine components is contiguous for assembly).
    """
    ref = element(cell_type)
    points = np.asarray(points, dtype=np.float64)
    cells = np.asarray(cells)
    ne, nen = cells.shape
    dN = ref.dshape_at_quadrature()  # (nq, nen, 3)
    J = np.einsum("qai,eaj->eqji", dN, points[cells])  # [j, i] = dx_j/dξ_i
    w = np.linalg.det(J) * ref.quad_weights[None, :]  # (ne, nq), mm³
    G = np.matmul(dN[None], np.linalg.inv(J))  # (ne, nq, nen, 3): ∂N_a/∂x_j
    Gc = np.ascontiguousarray(G.transpose(3, 0, 1, 2))  # (3, ne, nq, nen)
    H = np.einsum("ieqa,jeqb->ijeab", Gc * w[None, :, :, None], Gc)  # Σ_q w ∂_i N_a ∂_j N_b
    E = np.broadcast_to(np.asarray(E, dtype=np.float64), (ne,))[:, None, None]
    nu = np.broadcast_to(np.asarray(nu, dtype=np.float64), (ne,))[:, None, None]
    lam = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = E / (2.0 * (1.0 + nu))
    trace = mu * (H[0, 0] + H[1, 1] + H[2, 2])
    K = np.empty_like(H)
    for i in range(3):
        for j in range(3):
            K[i, j] = lam * H[i, j] + mu * H[j, i]
        K[i, i] += trace
    return K


def _unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` by one argsort (several times faster)."""
    order = np.argsort(keys)
    ks = keys[order]
    new = np.empty(ks.size, dtype=bool)
    new[:1] = True
    np.not_equal(ks[1:], ks[:-1], out=new[1:])
    inverse = np.empty(ks.size, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ks[new], inverse


def assemble_stiffness(model: FEModel, material: LinearElastic, bcs: BoundaryConditions | None = None):
    """Assembled global stiffness matrix K(E) as a SciPy BSR matrix with 3×3 node blocks.

    Dof ordering is node-major (3·node + component), the layout of a flattened
    (n_nodes, 3) displacement array. With ``bcs``, the rows and columns of prescribed
    dofs are decoupled (zeroed, diagonal kept), the matrix of the constrained problem.

    Args:
        model: :class:`FEModel` (its points, cells and cell type are used).
        material: :class:`LinearElastic` (E MPa, per element or scalar; ν).
        bcs: optional :class:`BoundaryConditions`.

    Returns:
        ``scipy.sparse.bsr_matrix`` (3·n_nodes, 3·n_nodes), N/mm, symmetric.
    """
    _, sp = _require_scipy_pyamg()
    points = np.asarray(model.points)
    cells = np.asarray(model.cells)
    n = int(model.n_nodes)
    ne, nen = cells.shape
    E = np.broadcast_to(np.asarray(material.E, dtype=np.float64), (ne,))
    nu = np.broadcast_to(np.asarray(material.nu, dtype=np.float64), (ne,))
    rows = np.repeat(cells, nen, axis=1).ravel().astype(np.int64)
    cols = np.tile(cells, (1, nen)).ravel().astype(np.int64)
    keys, inverse = _unique_inverse(rows * n + cols)
    del rows, cols
    blocks = np.zeros((keys.size, 3, 3))
    chunk = max(1, _CHUNK_ENTRIES // (nen * nen))  # bounds the element-matrix memory
    for start in range(0, ne, chunk):
        stop = min(start + chunk, ne)
        K = element_stiffness(points, cells[start:stop], model.cell_type, E[start:stop],
                              nu[start:stop])
        inv = inverse[start * nen * nen:stop * nen * nen]
        for i in range(3):
            for j in range(3):
                blocks[:, i, j] += np.bincount(inv, weights=K[i, j].ravel(), minlength=keys.size)
    brow, bcol = keys // n, keys % n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(brow, minlength=n))])
    if bcs is not None:
        keep = ~np.asarray(bcs.fixed, dtype=bool)  # (n, 3)
        diag = brow == bcol
        d = np.where(keep, 0.0, np.diagonal(blocks[diag], axis1=1, axis2=2))  # (n, 3)
        blocks *= keep[brow][:, :, None] * keep[bcol][:, None, :]
        blocks[diag] += d[:, :, None] * np.eye(3)
    return sp.bsr_matrix((blocks, bcol.astype(np.int32), indptr.astype(np.int32)),
                         shape=(3 * n, 3 * n))


def rigid_body_modes(points) -> np.ndarray:
    """(3·n_nodes, 6) rigid-body displacement fields (3 translations, 3 rotations), node-major.

    Coordinates are centred and scaled to unit size so all six columns have similar norms.
    """
    c = np.asarray(points, dtype=np.float64)
    c = c - c.mean(axis=0)
    c = c / max(float(np.abs(c).max()), 1e-300)
    x, y, z = c.T
    B = np.zeros((len(c), 3, 6))
    B[:, 0, 0] = B[:, 1, 1] = B[:, 2, 2] = 1.0
    B[:, 1, 3], B[:, 2, 3] = -z, y
    B[:, 0, 4], B[:, 2, 4] = z, -x
    B[:, 0, 5], B[:, 1, 5] = -y, x
    return B.reshape(-1, 6)


def _chebyshev(hi: float, lo: float, degree: int) -> np.ndarray:
    """Coefficients of the Chebyshev smoother on [lo, hi] (Saad, Alg. 12.1).

    With r_0 = b − A x_0: d_0 = c[0,1] D⁻¹ r_0; for k ≥ 1, r_k = r_{k−1} − A d_{k−1},
    d_k = c[k,0] d_{k−1} + c[k,1] D⁻¹ r_k; x = x_0 + Σ d_k.
    """
    theta, delta = (hi + lo) / 2.0, (hi - lo) / 2.0
    sigma = theta / delta
    rho = 1.0 / sigma
    coef = [(0.0, 1.0 / theta)]
    for _ in range(1, degree):
        rho_new = 1.0 / (2.0 * sigma - rho)
        coef.append((rho_new * rho, 2.0 * rho_new / delta))
        rho = rho_new
    return np.asarray(coef)


def _smooth(level: AMGLevel, r, x):
    """Chebyshev smoothing of A x = r from x (``None`` = zero initial guess)."""
    res = r if x is None else r - level.A(x)
    d = level.cheb[0, 1] * level.dinv * res
    x = d if x is None else x + d
    for k in range(1, level.cheb.shape[0]):
        res = res - level.A(d)
        d = level.cheb[k, 0] * d + level.cheb[k, 1] * level.dinv * res
        x = x + d
    return x


def _spectral_radius(A, dinv: np.ndarray, steps: int, seed: int = 0) -> float:
    """Lanczos estimate of ρ(D⁻¹A) on the host: the largest Ritz value of the symmetric
    D^-½ A D^-½ (same spectrum) after ``steps`` matvecs. A lower bound that converges fast
    for the top of the spectrum (on the femur, 15 steps give ρ to 3 digits where 20 power
    iterations are still 10 % low)."""
    def dot(x, y):  # not BLAS ddot: its threads stall on a busy machine
        return float(np.sum(x * y))

    s = np.sqrt(dinv)
    v = np.random.default_rng(seed).random(A.shape[0]) * (s > 0)
    v /= max(np.sqrt(dot(v, v)), 1e-300)
    v_prev = np.zeros_like(v)
    alpha, beta, b = [], [], 0.0
    for _ in range(min(steps, A.shape[0])):
        w = s * (A @ (s * v)) - b * v_prev
        a = dot(v, w)
        w -= a * v
        alpha.append(a)
        b = np.sqrt(dot(w, w))
        if b <= 1e-12 * max(abs(a), 1e-300):
            break
        beta.append(b)
        v_prev, v = v, w / b
    m = len(alpha)
    T = np.diag(alpha) + np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
    return float(np.linalg.eigvalsh(T).max())


def _coarse_inverse(Ac: np.ndarray, scale: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """Inverse of the (small, dense, symmetric positive semi-definite) coarsest operator.

    Args:
        Ac: (m, m) coarsest operator.
        scale: (m,) natural magnitude of each coarse unknown's diagonal, diag(Pᵀ D P) with
            D the diagonal of the level above (0 for the zero columns that rank-deficient
            aggregates leave). In this scaling the non-null spectrum of Ac is O(1) at most
            and a null mode (rigid motion of a hierarchy built without supports) is O(ε).
        rcond: scaled eigenvalues (pivots) below this count as null.

    Cholesky of the scaled operator when no pivot is below ``rcond``; otherwise the
    eigen-decomposition pseudo-inverse that drops the null modes, so the result stays
    positive semi-definite instead of amplifying round-off by 1/ε.
    """
    import scipy.linalg as sla

    live = np.flatnonzero(scale > 0)
    s = 1.0 / np.sqrt(scale[live])
    As = 0.5 * (Ac + Ac.T)[np.ix_(live, live)] * s[:, None] * s[None, :]
    try:
        c, low = sla.cho_factor(As, lower=True, check_finite=False)
        if live.size and np.diag(c).min() ** 2 <= rcond:
            raise np.linalg.LinAlgError("numerically singular coarse operator")
        inv_s = sla.cho_solve((c, low), np.eye(live.size), check_finite=False)
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(As)
        keep = w > rcond
        inv_s = (V[:, keep] / w[keep]) @ V[:, keep].T
    inv = np.zeros_like(Ac)
    inv[np.ix_(live, live)] = inv_s * s[:, None] * s[None, :]
    return 0.5 * (inv + inv.T)


# ----------------------------------------------------------------------------- the preconditioner
@dataclass(frozen=True)
class AMG:
    """Smoothed-aggregation AMG V-cycle: ``amg(r) ≈ K⁻¹ r`` for r: (n_nodes, 3) N -> mm.

    Build with :meth:`build`; pass as ``fb.solve(..., preconditioner=amg)``::

        amg = AMG.build(model, mat, bcs)              # host: assembly + pyamg, once
        sol = fb.solve(model, mat, bcs, preconditioner=amg)
        for E in moduli_over_time:                    # same hierarchy, no recompilation
            sol = fb.solve(model, fb.LinearElastic(E, 0.3), bcs, preconditioner=amg, u0=sol.u)

    On the 77,610-dof CT femur (tet10) it needs 28 CG iterations where Jacobi needs
    ~1,400 (benchmarks/RESULTS_femur.md).

    Attributes:
        levels: tuple of :class:`AMGLevel`, finest first.
        coarse: (m, m) dense inverse of the coarsest operator.
        n_nodes: number of mesh nodes (static).
        info: human-readable summary of the hierarchy (static).
        refresh: :class:`~febone.solve.amg_refresh.RefreshPlan` of a hierarchy built with
            ``refreshable=True`` (recomputed for new moduli on the device by
            :func:`~febone.solve.amg_refresh.refresh_on_device`), else None.
    """

    levels: tuple
    coarse: jax.Array
    n_nodes: int
    info: str
    refresh: object = None

    @classmethod
    def build(cls, model: FEModel, material: LinearElastic, bcs: BoundaryConditions | None = None,
              *, fine: str = "assembled", degree: int = 2, interval: float = 10.0,
              max_coarse: int = 300, max_levels: int = 10, lanczos_steps: int = 20,
              safety: float = 1.1, dtype=None, refreshable: bool = False) -> "AMG":
        """Build the hierarchy on the host (NumPy, SciPy, pyamg) and move it to the device.

        Args:
            model: :class:`FEModel` of the mesh.
            material: :class:`LinearElastic` whose moduli (MPa) define the hierarchy (it
                remains a valid preconditioner for other moduli, only less sharp).
            bcs: the supports; their prescribed dofs are decoupled from the hierarchy.
                ``None`` keeps all dofs (still a valid preconditioner for any supports).
            fine: level-0 operator of the smoother: ``"assembled"`` (block-sparse matrix,
                72 bytes per 3×3 block in float64: 50 MB for the 77,610-dof tet10 femur) or
                ``"matrix-free"`` (``internal_force`` at the build moduli, no stored
                matrix; its speed is that of the solve's own operator).
            degree: Chebyshev smoothing degree (pre and post), ≥ 1.
            interval: the smoother damps eigenvalues of D⁻¹A in [ρ/interval, ρ].
            max_coarse: stop coarsening at this many block rows (dense coarse solve).
            max_levels: maximum number of levels.
            lanczos_steps: Lanczos steps estimating ρ(D⁻¹A) per level (host matvecs).
            safety: factor applied to the estimate (≥ 1; Lanczos estimates ρ from below,
                and the smoother must not amplify the top of the spectrum: the Chebyshev
                polynomial on [h/interval, h] is non-expanding up to (1 + 1/interval)·h,
                so the defaults tolerate an estimate 17 % low).
            dtype: floating type of the hierarchy and the V-cycle arithmetic; ``None``
                is JAX's default float (float64 with x64 enabled). ``"float32"`` halves
                the memory traffic of each cycle; the preconditioner is then symmetric
                only to float32 round-off, which CG tolerates (its own residuals and
                iterates stay in the solve's precision, so the answer is as accurate).
            refreshable: keep pyamg's aggregation only and compute everything that depends
                on the moduli (level operators by Galerkin products, smoother bounds, coarse
                inverse) in JAX, so that :func:`~febone.solve.amg_refresh.refresh_on_device`
                can recompute it for new moduli on the device, in the same shapes.

        Returns:
            :class:`AMG`.

        Raises:
            ImportError: pyamg or SciPy is missing (``pip install febone[amg]``).
            ValueError: bad options or material shape.
        """
        pyamg, _ = _require_scipy_pyamg()
        if fine not in _FINE:
            raise ValueError(f"unknown fine={fine!r}; use one of {_FINE}")
        if not (isinstance(degree, int) and degree >= 1):
            raise ValueError(f"degree must be an integer ≥ 1; got {degree!r}")
        if not interval > 1.0:
            raise ValueError(f"interval must be > 1 (ratio of the smoothing interval ends); got {interval}")
        if not safety >= 1.0:
            raise ValueError(f"safety must be ≥ 1; got {safety}")
        if max_coarse < 1 or max_levels < 1 or lanczos_steps < 1:
            raise ValueError("max_coarse, max_levels and lanczos_steps must be ≥ 1")
        E = np.asarray(material.E, dtype=np.float64)
        if E.ndim and E.shape != (model.n_elements,):
            raise MaterialError(f"E must be a scalar or have shape ({model.n_elements},) MPa; "
                                f"got {E.shape}")
        if bcs is not None and np.shape(bcs.fixed) != (model.n_nodes, 3):
            raise ValueError(f"bcs are for {np.shape(bcs.fixed)[0]} nodes, the model has "
                             f"{model.n_nodes}; build them for this mesh")
        dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
        if dtype not in (jnp.dtype("float32"), jnp.dtype("float64")):
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        t0 = time.perf_counter()
        n = int(model.n_nodes)
        A = assemble_stiffness(model, material, bcs)
        t_asm = time.perf_counter() - t0
        ml = pyamg.smoothed_aggregation_solver(
            A, B=rigid_body_modes(model.points), strength="symmetric",
            smooth=("jacobi", {"omega": 4.0 / 3.0, "weighting": "local"}),
            improve_candidates=None, max_coarse=max_coarse, max_levels=max_levels, keep=False)
        t_amg = time.perf_counter() - t0 - t_asm
        # all host numerics first (NumPy leaves), then one transfer of every leaf to the device
        fdt = np.dtype(dtype.name)
        levels = []
        for i, lvl in enumerate(ml.levels[:-1]):
            Ai = lvl.A.tobsr()
            b = Ai.blocksize[0]
            diag = Ai.diagonal()
            dinv = np.where(diag > 0, 1.0 / np.where(diag > 0, diag, 1.0), 0.0)
            hi = safety * _spectral_radius(Ai, dinv, lanczos_steps, seed=i)
            cheb = _chebyshev(hi, hi / interval, degree)
            P = lvl.P.tobsr()
            bc = P.blocksize[1]
            if i == 0 and fine == "matrix-free":
                free = np.ones((n, 3), bool) if bcs is None else ~np.asarray(bcs.fixed, bool)
                op = _FineOperator(model, np.broadcast_to(E, (model.n_elements,)).astype(fdt),
                                   np.asarray(material.nu, fdt), free,
                                   np.where(free, 0.0, diag.reshape(n, 3)).astype(fdt))
            else:
                op = BlockCSR.from_scipy(Ai, (b, b), fdt)
            levels.append(AMGLevel(op, BlockCSR.from_scipy(P, (b, bc), fdt),
                                   BlockCSR.from_scipy(P.T.tobsr(), (bc, b), fdt),
                                   dinv.reshape(-1, b).astype(fdt), cheb.astype(fdt)))
        t_lev = time.perf_counter() - t0 - t_asm - t_amg
        if len(ml.levels) > 1:  # diag(Pᵀ D P): the coarse unknowns' natural scale
            above = ml.levels[-2]
            scale = np.asarray(above.P.tocsr().power(2).T @ above.A.diagonal()).ravel()
        else:
            scale = ml.levels[-1].A.diagonal()
        coarse = _coarse_inverse(ml.levels[-1].A.toarray(), scale).astype(fdt)
        t_coarse = time.perf_counter() - t0 - t_asm - t_amg - t_lev
        sizes = [lvl.A.shape[0] for lvl in ml.levels]
        info = (f"SA-AMG {len(sizes)} levels {sizes} dofs, operator complexity "
                f"{ml.operator_complexity():.3f}, Chebyshev degree {degree}, fine {fine}, {fdt.name}")

        def to_device(a):
            a = jnp.asarray(a)
            return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

        if refreshable:
            amg = _refreshable(cls(tuple(levels), coarse, n, info + ", refreshable"), model,
                               material, bcs, interval=interval, safety=safety,
                               lanczos_steps=lanczos_steps, to_device=to_device)
        else:
            amg = jax.tree_util.tree_map(to_device, cls(tuple(levels), coarse, n, info))
        log.info("AMG: %s; assembly %.2f s, pyamg %.2f s, levels %.2f s, coarse inverse "
                 "%.2f s, total %.2f s", info, t_asm, t_amg, t_lev, t_coarse,
                 time.perf_counter() - t0)
        return amg

    def _cycle(self, r, i: int):
        if i == len(self.levels):
            return (self.coarse @ r.reshape(-1)).reshape(r.shape)
        lvl = self.levels[i]
        x = _smooth(lvl, r, None)
        rc = lvl.R(r - lvl.A(x))
        x = x + lvl.P(self._cycle(rc, i + 1))
        return _smooth(lvl, r, x)

    def __call__(self, r: jax.Array) -> jax.Array:
        """One symmetric V-cycle: r (n_nodes, 3) N -> approximately K⁻¹ r (n_nodes, 3) mm."""
        if r.shape != (self.n_nodes, 3):
            raise ValueError(f"AMG expects a residual of shape ({self.n_nodes}, 3); got {r.shape}")
        dtype = self.coarse.dtype
        return self._cycle(r.astype(dtype), 0).astype(r.dtype)


jax.tree_util.register_dataclass(AMG, data_fields=["levels", "coarse", "refresh"],
                                 meta_fields=["n_nodes", "info"])


def _refreshable(amg: AMG, model, material, bcs, *, interval, safety, lanczos_steps,
                 to_device) -> AMG:
    """``amg`` (NumPy leaves, pyamg's values) with a refresh plan, its operators recomputed in
    JAX (:func:`~febone.solve.amg_refresh.refresh_on_device`) in the plan's patterns."""
    from .amg_refresh import refresh, refresh_plan

    plan = refresh_plan(np.asarray(model.cells), amg.n_nodes, amg.levels, interval=interval,
                        safety=safety, lanczos_steps=lanczos_steps)
    rows, cols, n = plan.rows, plan.cols, amg.n_nodes
    levels = []
    for lvl, gp in zip(amg.levels, plan.galerkin):   # level operators in the plan's patterns
        A = lvl.A
        if isinstance(A, BlockCSR):
            b = A.blocks.shape[0]
            A = BlockCSR(np.zeros((b, b, rows.size), A.blocks.dtype), rows, cols, n)
        levels.append(AMGLevel(A, lvl.P, lvl.R, lvl.dinv, lvl.cheb))
        rows, cols, n = gp.rows, gp.cols, gp.n_rows
    amg = jax.tree_util.tree_map(to_device, AMG(tuple(levels), amg.coarse, amg.n_nodes,
                                                amg.info, plan))
    return refresh(amg, model, material, bcs)


PRECONDITIONERS = ("auto", "amg", "jacobi")


def make_preconditioner(kind: str, model: FEModel, material: LinearElastic,
                        bcs: BoundaryConditions | None = None, *, refreshable: bool = False):
    """The ``preconditioner`` argument of :func:`febone.solve` for a named choice.

    Args:
        kind: ``"amg"`` (smoothed aggregation, needs pyamg), ``"jacobi"`` (``None``: the
            solver's diagonal), or ``"auto"``: AMG when pyamg is installed, else Jacobi.
        model, material, bcs: the problem the hierarchy is built for (reuse it while the
            moduli change: it stays a valid, slightly less sharp preconditioner).
        refreshable: an AMG hierarchy that can be recomputed for new moduli on the device
            (``AMG.build(..., refreshable=True)``).
    """
    if kind not in PRECONDITIONERS:
        raise ValueError(f"unknown preconditioner {kind!r}; choose one of {list(PRECONDITIONERS)}")
    if kind == "jacobi":
        return None
    if kind == "auto":
        try:
            import pyamg  # noqa: F401
        except ImportError:
            log.info("pyamg not installed: using the Jacobi preconditioner")
            return None
    return AMG.build(model, material, bcs, refreshable=refreshable)

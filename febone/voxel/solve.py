"""The voxel linear-elastic solve: matrix-free hex8 operator, multigrid-preconditioned CG,
implicit differentiation with respect to the voxel moduli.

One compilation serves every call on the same model: moduli, Poisson's ratio, boundary
values and loads are arguments, so remodelling loops and ``jax.grad`` reuse it.
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..device import device_description
from ..fe.bc import BoundaryConditions
from ..precision import CONTRACTION, PrecisionMode, resolve_solver
from ..solve.constraints import check_constraints
from ..solve.pcg import pcg, refine
from ..solve.progress import throttled
from ..solve.solution import ConvergenceError, Solution, SolveStats
from .grid import VoxelGrid, VoxelModel
from .multigrid import Multigrid, setup_multigrid, vcycle
from .operator import apply_stiffness, element_stiffness, stiffness_diagonal

__all__ = ["VoxelPCG", "solve_voxel", "voxel_reactions", "compile_voxel_solve", "resolve_precision",
           "voxel_hierarchy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoxelPCG:
    """CG strategy for voxel models (hashable: a static argument of the compiled solve).

    Attributes:
        rtol: stop when ‖r‖₂ ≤ rtol·‖b‖₂ on the free dofs (float64 residual).
        atol: absolute floor on ‖r‖₂, N.
        max_iter: CG iteration cap (``None``: 10 000).
        preconditioner: ``"multigrid"`` (geometric multigrid, default), ``"jacobi"`` or ``"none"``.
        multigrid: :class:`Multigrid` options.
        mixed_precision: iterative refinement: float32 inner CG (operator and cycle) inside
            a float64 residual correction loop, for GPUs; answers stay float64-accurate.
        inner_rtol: relative tolerance of each inner float32 solve (mixed precision only).
        progress: print the CG residual to stderr while solving (a host callback every
            ``PROGRESS_EVERY`` = 10 CG iterations, :mod:`febone.solve.progress`).
    """

    rtol: float = 1e-8
    atol: float = 0.0
    max_iter: int | None = None
    preconditioner: str = "multigrid"
    multigrid: Multigrid = field(default_factory=Multigrid)
    mixed_precision: bool = False
    inner_rtol: float = 1e-3
    progress: bool = False

    def __post_init__(self):
        if not (0.0 < self.rtol < 1.0):
            raise ValueError(f"VoxelPCG rtol must lie in (0, 1); got {self.rtol}")
        if self.atol < 0:
            raise ValueError(f"VoxelPCG atol must be ≥ 0; got {self.atol}")
        if self.max_iter is not None and self.max_iter < 1:
            raise ValueError(f"VoxelPCG max_iter must be ≥ 1; got {self.max_iter}")
        if self.preconditioner not in ("multigrid", "jacobi", "none"):
            raise ValueError(f"unknown preconditioner {self.preconditioner!r}; use 'multigrid', "
                             f"'jacobi' or 'none'")
        if not isinstance(self.multigrid, Multigrid):
            raise TypeError("VoxelPCG.multigrid must be a febone.voxel.Multigrid")
        if not (0.0 < self.inner_rtol < 1.0):
            raise ValueError(f"VoxelPCG inner_rtol must lie in (0, 1); got {self.inner_rtol}")

    @property
    def flexible(self) -> bool:
        """Flexible CG is used when the preconditioner is nonlinear (K-cycle)."""
        return self.preconditioner == "multigrid" and self.multigrid.flexible

    @property
    def iteration_cap(self) -> int:
        return 10_000 if self.max_iter is None else int(self.max_iter)


class _Progress:
    """Throttled one-line CG progress on stderr (called from the compiled loop)."""

    def __init__(self, every: float = 0.5):
        self.every, self.count, self.last, self.start = every, 0, 0.0, time.perf_counter()

    def __call__(self, k, rel):
        self.count = int(k)
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            sys.stderr.write(f"\r  CG iteration {self.count:5d}  relative residual "
                             f"{float(rel):.2e}  {now - self.start:6.1f} s")
            sys.stderr.flush()

    def close(self):
        if self.count:
            sys.stderr.write("\n")
            sys.stderr.flush()


_PROGRESS: list = []  # the active progress printer (host side), if any


@contextmanager
def _progress_display(enabled: bool):
    """Show the CG progress line on stderr while the block runs (when enabled)."""
    progress = _Progress() if enabled else None
    if progress:
        _PROGRESS.append(progress)
    try:
        yield
    finally:
        if progress:
            _PROGRESS.remove(progress)
            progress.close()


def _progress_callback(k, rel):
    if _PROGRESS:
        _PROGRESS[-1](k, rel)


def _multigrid_options(solver: VoxelPCG, dtype) -> Multigrid:
    """The solver's multigrid options at the preconditioner's working precision ``dtype``."""
    mg_opts = solver.multigrid
    if mg_opts.dtype != "float32" and dtype == jnp.float32:
        mg_opts = replace(mg_opts, dtype="float32")
    return mg_opts


def voxel_hierarchy(model: VoxelModel, E, nu, fixed, solver: VoxelPCG, dtype):
    """The multigrid data (:class:`~febone.voxel.multigrid.MultigridData`) that a solve with
    ``solver`` sets up for the moduli ``E``, for passing to later solves as ``hierarchy=``
    (traceable; runs on the device). ``None`` when the solver does not precondition with
    multigrid.

    Args:
        model: :class:`VoxelModel`.
        E: (n_voxels,) moduli, MPa.
        nu: Poisson's ratio.
        fixed: (n_nodes, 3) bool, the prescribed dofs (``bcs.fixed``).
        solver: :class:`VoxelPCG` of the later solves.
        dtype: the solves' precision (float64, or float32 in the float32 mode).
    """
    if solver.preconditioner != "multigrid":
        return None
    fixed = jnp.asarray(fixed)
    if solver.mixed_precision:                     # the float32 inner iterations' hierarchy
        return setup_multigrid(model, jax.lax.stop_gradient(E).astype(jnp.float32), nu, fixed,
                               _multigrid_options(solver, jnp.float32), setup_dtype=dtype)
    return setup_multigrid(model, jnp.asarray(E, dtype), nu, fixed,
                           _multigrid_options(solver, dtype), setup_dtype=dtype)


def _preconditioner(model, E, nu, fixed, solver: VoxelPCG, dtype, Ke, setup_dtype,
                    hierarchy=None):
    free = ~fixed
    if solver.preconditioner == "multigrid":
        mg_opts = _multigrid_options(solver, dtype)
        mg = (setup_multigrid(model, E, nu, fixed, mg_opts, setup_dtype=setup_dtype)
              if hierarchy is None else hierarchy)

        def apply(r):
            z = vcycle(model, mg, jnp.where(free, r, 0.0), mg_opts)
            return jnp.where(free, z.astype(r.dtype), r)
        return apply
    if solver.preconditioner == "jacobi":
        d = stiffness_diagonal(model.fine, Ke, jax.lax.stop_gradient(E).astype(dtype))
        inv = jnp.where(free & (d > 0), 1.0 / jnp.where(d > 0, d, 1.0), 1.0)
        return lambda r: r * inv.astype(r.dtype)
    return lambda r: r


def _solve_impl(model: VoxelModel, E, nu, fixed, values, forces, u0, solver: VoxelPCG,
                throw: bool, hierarchy=None):
    dtype = u0.dtype  # the precision mode's (float64, or float32 in float32 mode)
    fixed = jnp.asarray(fixed)
    free = ~fixed
    fine = model.fine
    Ke = element_stiffness(model.voxel_size, nu, dtype, model.frame)
    u_d = jnp.where(fixed, jnp.asarray(values, dtype), 0.0)

    def stiffness(v):
        return apply_stiffness(fine, Ke, E, v)

    def operator(x):  # K on the free dofs, identity on the fixed ones
        return jnp.where(free, stiffness(jnp.where(free, x, 0.0)), x)

    rhs = jnp.where(free, jnp.asarray(forces, dtype) - stiffness(u_d), 0.0)
    x0 = jax.lax.stop_gradient(jnp.where(free, u0 - u_d, 0.0))
    cap = solver.iteration_cap

    # progress: a host callback every PROGRESS_EVERY CG iterations (febone.solve.progress)
    monitor = throttled(_progress_callback) if solver.progress else None
    krylov = partial(pcg, flexible=solver.flexible, monitor=monitor)
    if not solver.mixed_precision:
        precondition = _preconditioner(model, E, nu, fixed, solver, dtype, Ke, dtype,
                                       hierarchy)

        def cg(matvec, b):
            return krylov(matvec, b, precondition, x0, rtol=solver.rtol, atol=solver.atol,
                          max_iter=cap)
    else:
        lo = jnp.float32
        E_lo = jax.lax.stop_gradient(E).astype(lo)
        Ke_lo = element_stiffness(model.voxel_size, jax.lax.stop_gradient(nu), lo, model.frame)
        precondition = _preconditioner(model, E_lo, nu, fixed, solver, lo, Ke_lo,
                                       dtype, hierarchy)

        def op_lo(x):
            return jnp.where(free, apply_stiffness(fine, Ke_lo, E_lo, jnp.where(free, x, 0.0)), x)

        def cg(matvec, b):
            def inner(rs):
                return krylov(op_lo, rs, precondition, jnp.zeros_like(rs),
                              rtol=solver.inner_rtol, atol=0.0, max_iter=cap)
            return refine(matvec, b, x0, inner, rtol=solver.rtol, atol=solver.atol,
                          max_iter=cap, inner_dtype=lo)

    x, info = jax.lax.custom_linear_solve(operator, rhs, cg, symmetric=True, has_aux=True)
    u = x + u_d
    if throw:
        u = jnp.where(info.converged, u, jnp.nan)
    return u, info


_solve_compiled = jax.jit(_solve_impl, static_argnames=("solver", "throw"))


@jax.jit
def _count_bad(E):
    return jnp.sum(~(jnp.isfinite(E) & (E > 0)))


def _n_bad_moduli(E) -> int:
    """Number of non-positive or non-finite moduli: a device array is checked on the device
    (one scalar comes back, not the (n_voxels,) moduli), anything else on the host."""
    if isinstance(E, jax.Array):
        return int(_count_bad(E))
    e = np.asarray(E, dtype=float)
    return int(np.count_nonzero(~(np.isfinite(e) & (e > 0))))


def _check_inputs(model: VoxelModel, E, nu, bcs: BoundaryConditions):
    if not isinstance(model, VoxelModel):
        raise TypeError(f"expected a VoxelModel (febone.voxel.VoxelModel.create(grid)); got "
                        f"{type(model).__name__}")
    if jnp.shape(E) != (model.n_voxels,):
        raise ValueError(f"E must hold one modulus per bone voxel, shape ({model.n_voxels},) MPa; "
                         f"got {jnp.shape(E)}. For an image-shaped field use E_image[grid.mask]")
    if not isinstance(bcs, BoundaryConditions):
        raise TypeError("bcs must be a febone.BoundaryConditions over the active voxel nodes "
                        "(BoundaryConditions.empty(model.n_nodes))")
    if bcs.n_nodes != model.n_nodes:
        raise ValueError(f"bcs cover {bcs.n_nodes} nodes but the voxel model has {model.n_nodes} "
                         f"active nodes; build them with BoundaryConditions.empty(model.n_nodes)")
    if not isinstance(E, jax.core.Tracer) and _n_bad_moduli(E):
        e = np.asarray(E)                      # the error path only: name the voxels
        bad = np.flatnonzero(~(np.isfinite(e) & (e > 0)))
        raise ValueError(f"voxel moduli must be positive and finite (MPa); bad at voxels "
                         f"{bad[:10].tolist()} ({bad.size} in all). Remove void voxels from "
                         f"the mask instead of giving them E = 0")
    if not isinstance(nu, jax.core.Tracer):
        if not (0.0 < float(nu) < 0.5):
            raise ValueError(f"Poisson's ratio must lie in (0, 0.5); got {nu} (0.3 is typical)")


def _traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for t in trees for x in jax.tree_util.tree_leaves(t))


def check_voxel_supports(grid: VoxelGrid, bcs: BoundaryConditions) -> None:
    """Host check that every connected bone part is held against rigid-body motion.

    Raises:
        febone.UnderConstrainedError: naming the free motion; for images, keep only the
            largest connected component (``segment(..., keep_largest=True)``).
    """
    check_constraints(grid.node_points(), grid.voxel_nodes(), np.asarray(bcs.fixed))


def resolve_precision(solver: VoxelPCG | None, precision) -> tuple[VoxelPCG, PrecisionMode]:
    """The solver and :class:`febone.precision.PrecisionMode` of a voxel solve.

    ``precision=None`` keeps the solver's choice: ``"mixed"`` when
    ``solver.mixed_precision``, else float64 with x64 enabled and float32 without. A named
    mode sets ``mixed_precision`` to match. Without a solver the mode's default rtol is used.

    Raises:
        ValueError: an unknown mode, a float64 mode without x64, or an rtol below what the
            mode reaches (:func:`febone.precision.check_rtol`).
    """
    return resolve_solver(solver, precision, VoxelPCG)


def solve_voxel(model: VoxelModel, E, bcs: BoundaryConditions, *, nu=0.3,
                solver: VoxelPCG | None = None, u0=None, throw: bool = True,
                grid: VoxelGrid | None = None, precision: str | None = None,
                hierarchy=None) -> Solution:
    """Solve K(E) u = f on a voxel model.

    Args:
        model: :class:`VoxelModel` (index data of the grid and its multigrid levels).
        E: (n_voxels,) Young's modulus of each bone voxel, MPa (flat z, y, x order, i.e.
            ``E_image[grid.mask]``). Differentiable (implicit adjoint).
        bcs: :class:`febone.BoundaryConditions` over the ``model.n_nodes`` active nodes
            (compact ids, see :meth:`VoxelGrid.plane_nodes`), mm and N.
        nu: Poisson's ratio (scalar).
        solver: :class:`VoxelPCG` (default: multigrid-preconditioned CG at the precision
            mode's default rtol: 1e-8, or 1e-5 in float32).
        u0: (n_nodes, 3) initial guess, mm.
        throw: raise :class:`febone.ConvergenceError` if CG fails; inside ``jit``/``grad``
            a non-converged answer is returned as NaN instead.
        grid: the :class:`VoxelGrid`; when given, check on the host that the supports
            remove all rigid-body motions of every connected part.
        precision: ``"float64"`` (rtol ≥ 1e-12), ``"mixed"`` (float32 iterations, float64
            answers; rtol ≥ 1e-12) or ``"float32"`` (rtol ≥ 1e-5); see
            :mod:`febone.precision`. ``None``: from the solver and JAX's x64 setting.
        hierarchy: multigrid data set up earlier (:func:`voxel_hierarchy`, e.g. for the
            moduli of a while ago) instead of setting it up from ``E`` inside the solve: the
            preconditioner only, so the answer is the same to the CG tolerance.

    Returns:
        :class:`febone.Solution` with ``u: (n_nodes, 3)`` mm (components x, y, z), in the
        mode's dtype (float32 only in the float32 mode).
    """
    solver, mode = resolve_precision(solver, precision)
    _check_inputs(model, E, nu, bcs)
    if grid is not None and not _traced(bcs):
        check_voxel_supports(grid, bcs)
    dtype = mode.dtype
    u0 = jnp.zeros((model.n_nodes, 3), dtype) if u0 is None else jnp.asarray(u0, dtype)
    E = jnp.asarray(E, dtype)
    traced = _traced(E, nu, bcs, u0)
    start = time.perf_counter()
    with _progress_display(solver.progress and not traced):
        u, info = _solve_compiled(model, E, jnp.asarray(nu, dtype), bcs.fixed, bcs.values,
                                  bcs.forces, u0, solver=solver, throw=throw,
                                  hierarchy=hierarchy)
        if not traced:
            u.block_until_ready()
    return _finish(u, info, solver, throw, traced, start, dtype, model)


def _finish(u, info, solver, throw, traced, start, dtype, model) -> Solution:
    seconds = float("nan")
    if not traced:
        seconds = time.perf_counter() - start
        log.info("voxel solve: %d dofs, %d CG iterations, residual %.2e, %.2f s", model.n_dofs,
                 int(info.iterations), float(info.residual), seconds)
        if throw and not bool(info.converged):
            if bool(info.breakdown):
                raise ConvergenceError(
                    f"CG broke down after {int(info.iterations)} iterations (pᵀKp ≤ 0): the "
                    f"voxel stiffness is singular; check supports (disconnected islands?) and "
                    f"moduli")
            raise ConvergenceError(
                f"CG did not converge: relative residual {float(info.residual):.3e} > rtol "
                f"{solver.rtol:g} after {int(info.iterations)} iterations; raise "
                f"VoxelPCG(max_iter=...), use preconditioner='multigrid', or remove weakly "
                f"connected islands from the mask")
    stats = SolveStats(info.iterations, info.residual, info.converged, info.breakdown, seconds,
                       device_description(), str(jnp.dtype(dtype)))
    return Solution(u, stats)


def compiled_memory_bytes(compiled) -> int | None:
    """XLA's buffer estimate of a compiled program, bytes: arguments + outputs + temporaries
    − aliased (per device for a ``shard_map`` program), or ``None`` where the backend gives
    none."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if ma is None:
        return None
    return int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
               - getattr(ma, "alias_size_in_bytes", 0))


def compile_voxel_solve(model: VoxelModel, E, bcs: BoundaryConditions, *, nu=0.3,
                        solver: VoxelPCG | None = None, throw: bool = True,
                        precision: str | None = None):
    """Ahead-of-time compile the solve for these shapes.

    Returns:
        ``(run, memory_bytes)``: ``run(E, bcs, nu=..., u0=None) -> Solution`` calls the
        compiled executable; ``memory_bytes`` is XLA's buffer estimate (arguments + outputs
        + temporaries, bytes) for one solve, or ``None`` if the backend gives none.
        ``precision`` as in :func:`solve_voxel`.
    """
    solver, mode = resolve_precision(solver, precision)
    _check_inputs(model, E, nu, bcs)
    dtype = mode.dtype
    u0 = jnp.zeros((model.n_nodes, 3), dtype)
    args = (model, jnp.asarray(E, dtype), jnp.asarray(nu, dtype), bcs.fixed, bcs.values,
            bcs.forces, u0)
    compiled = _solve_compiled.lower(*args, solver=solver, throw=throw).compile()
    memory = compiled_memory_bytes(compiled)

    def run(E, bcs, *, nu=nu, u0=None) -> Solution:
        _check_inputs(model, E, nu, bcs)
        u0_ = jnp.zeros((model.n_nodes, 3), dtype) if u0 is None else jnp.asarray(u0, dtype)
        start = time.perf_counter()
        with _progress_display(solver.progress):
            u, info = compiled(model, jnp.asarray(E, dtype), jnp.asarray(nu, dtype), bcs.fixed,
                               bcs.values, bcs.forces, u0_)
            u.block_until_ready()
        return _finish(u, info, solver, throw, False, start, dtype, model)

    return run, memory


@partial(jax.jit, static_argnames=())
def _reactions(model, E, nu, u, forces):
    Ke = element_stiffness(model.voxel_size, nu, u.dtype, model.frame)
    return apply_stiffness(model.fine, Ke, E, u) - forces


def voxel_reactions(model: VoxelModel, E, bcs: BoundaryConditions, u, *, nu=0.3) -> jax.Array:
    """(n_nodes, 3) reaction forces K u − f_ext, N (nonzero on prescribed dofs). Sum the
    rows of a node set for its total reaction."""
    dtype = jnp.asarray(u).dtype
    return _reactions(model, jnp.asarray(E, dtype), jnp.asarray(nu, dtype), jnp.asarray(u),
                      jnp.asarray(bcs.forces, dtype))

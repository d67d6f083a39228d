"""One voxel model solved over several devices: z-slabs under ``jax.shard_map``.

Each device holds its slab (:mod:`febone.voxel.slabs`) of moduli, nodes and fine multigrid
levels and runs the one-device kernels on it: the matrix-free product of
:mod:`febone.voxel.operator` on its own voxels, then one node layer of halo exchange
(``ppermute``, :func:`febone.voxel.halo.assemble`); CG dot products are ``psum``s. The
multigrid preconditioner is the one of :mod:`febone.voxel.multigrid` (same coarse
operators, smoothers, bounds and K-cycle): levels 0 … m−1 split into slabs, levels m … L
(``split_slabs(..., split_levels=m)``, 3 by default) replicated: level m's element matrices
are summed over the devices once per solve, the vectors crossing between levels m−1 and m
are summed (all-reduces of level-m size), and every device runs the coarse levels and the
dense coarsest solve redundantly. No collective of the compiled solve moves a fine field:
the moduli and displacements stay in their slabs (checked in
``tests/test_voxel_sharded.py`` on the compiled HLO).

In exact arithmetic the split solve is the one-device solve: the same operator, the same
preconditioner and the same Krylov iterates; only the order of floating-point sums differs.

Limits: float64 solves only (not the mixed-precision or float32 modes); no gradient with
respect to the moduli (use the one-device solve); the slabs lie along z.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..device import device_description
from ..fe.bc import BoundaryConditions
from ..solve.pcg import pcg
from ..solve.solution import ConvergenceError, Solution, SolveStats
from .grid import VoxelModel
from .halo import AXIS, assemble, dot, from_coarse, to_coarse
from .multigrid import (MultigridData, _apply_level, _block_columns, _chebyshev, _coarse_matrix,
                        _downsample, _element_diagonal, _element_matrices, _form,
                        _galerkin_matrices, _inverse3, _lanczos_bound, _upsample, _vdot,
                        chebyshev_upper_bound, child_prolongations, coarse_inverse,
                        kcycle_steps, prolong, restrict, setup_multigrid, working_dtype)
from .operator import (apply_stiffness, element_energy, element_stiffness,
                       scatter_corners, stiffness_diagonal)
from .slabs import SlabModel, Slabs, split_slabs
from .solve import VoxelPCG, compiled_memory_bytes

__all__ = ["slab_mesh", "solve_voxel_sharded", "compile_sharded_solve", "sharded_reactions",
           "sharded_effective_strain", "compress_on_slabs", "setup_sharded_multigrid",
           "sharded_cycle"]

log = logging.getLogger(__name__)


def slab_mesh(n_devices: int, devices=None) -> Mesh:
    """A 1-D device mesh over :data:`AXIS` with the first ``n_devices`` devices.

    Raises:
        ValueError: fewer devices than slabs, naming how to get more.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < n_devices:
        raise ValueError(f"the model is split over {n_devices} devices but JAX sees "
                         f"{len(devices)} ({devices[0].platform}); use --devices "
                         f"{len(devices)} or fewer, or on a CPU start Python with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={n_devices} "
                         f"(febone compress --devices sets it itself)")
    return Mesh(np.array(devices[:n_devices]), (AXIS,))


# -- level transfers on padded slabs (padded nodes lie outside the dense grid) --------------

def _dense(level, x):
    d = jnp.zeros((int(np.prod(level.node_shape)), 3), x.dtype)
    return d.at[level.node_flat].set(x, mode="drop").reshape(*level.node_shape, 3)


def _compact(level, d):
    return d.reshape(-1, 3).at[level.node_flat].get(mode="fill", fill_value=0)


def _restrict(fine, coarse, r):
    """Pᵀ r of the slab's own part: partial sums on the coarse interface layer."""
    d = _dense(fine, r)
    for axis in range(3):
        d = _downsample(d, axis, coarse.node_shape[axis])
    return _compact(coarse, d)


def _prolong(fine, coarse, xc):
    """P xc: consistent in, consistent out (a slab's fine nodes interpolate its own coarse
    nodes only)."""
    d = _dense(coarse, xc)
    for axis in range(3):
        d = _upsample(d, axis, fine.node_shape[axis])
    return _compact(fine, d)


def _real(level, dtype):
    """(n_nodes, 1) 1 on the slab's nodes, 0 on padding."""
    return (level.node_flat < int(np.prod(level.node_shape))).astype(dtype)[:, None]


class _Levels:
    """The split model's levels seen from one device: 0 … m−1 split (this slab, halo sums),
    m … L replicated (the whole level, as on one device). Transfers between levels m−1 and
    m go through the global numbering of level m (a small all-reduce)."""

    def __init__(self, model: SlabModel):
        self.model = model
        self.m = model.split_levels
        self.L = self.m + len(model.coarse) - 1

    def level(self, l):
        return self.model.levels[l] if l < self.m else self.model.coarse[l - self.m]

    def assemble(self, l, x):
        return assemble(self.model.halos[l], x) if l < self.m else x

    def dot(self, l):
        return partial(dot, self.model.halos[l]) if l < self.m else _vdot

    def restrict(self, l, r):
        """Pᵀ r from level l to level l + 1."""
        m, levels, halos = self.m, self.model.levels, self.model.halos
        if l >= m:
            return restrict(self.level(l), self.level(l + 1), r)
        part = _restrict(levels[l], levels[l + 1], halos[l].own.astype(r.dtype)[:, None] * r)
        if l + 1 < m:
            return assemble(halos[l + 1], part)
        return to_coarse(halos[m], part, self.model.level_nodes[m])

    def prolong(self, l, xc):
        """P xc from level l + 1 to level l."""
        m, levels, halos = self.m, self.model.levels, self.model.halos
        if l >= m:
            return prolong(self.level(l), self.level(l + 1), xc)
        if l + 1 == m:
            xc = from_coarse(halos[m], xc)
        return _prolong(levels[l], levels[l + 1], xc)


def setup_sharded_multigrid(model: SlabModel, E, nu, fixed, options) -> MultigridData:
    """Per-device multigrid data (inside ``shard_map``; ``model`` is this device's slice).

    Levels 0 … m−1 hold the slab's arrays, levels m … L the whole level (replicated). The
    element data of the split levels are per voxel, hence the one-device
    :func:`setup_multigrid` on the slab's levels 0 … m gives them (what it builds across slab
    borders, XLA drops: it is rebuilt here with halo sums); level m's element matrices are
    summed over the devices into the global numbering, and the replicated levels below are
    their Galerkin products, as on one device.
    """
    dtype = working_dtype(options.dtype)
    wide = jnp.result_type(float)
    lv = _Levels(model)
    m, L = lv.m, lv.L
    slab = setup_multigrid(VoxelModel(model.levels, model.voxel_size), E, nu, fixed, options)
    forms = [_form(options, l) for l in range(m)] + ["matrices"] * (L + 1 - m)
    Kel = _element_matrices(_form(options, m), slab.Ke[m], slab.E[m])
    Kg = jnp.zeros((model.coarse[0].n_voxels, 24, 24), Kel.dtype)
    Kes = list(slab.Ke[:m]) + [jax.lax.psum(Kg.at[model.halos[m].voxels].add(Kel, mode="drop"),
                                            AXIS)]
    P = jnp.asarray(child_prolongations(), dtype)
    for l in range(m + 1, L + 1):
        Kes.append(_galerkin_matrices(lv.level(l), "matrices", Kes[-1], None, P))
    Es = list(slab.E[:m]) + [jnp.zeros((0,), dtype)] * (L + 1 - m)
    nu = jax.lax.stop_gradient(nu)
    free = [jnp.where(fixed, 0.0, 1.0).astype(dtype) * _real(model.levels[0], dtype)]
    for l in range(L):
        touched = lv.restrict(l, 1.0 - free[-1])
        f = jnp.where(touched > 0, 0.0, 1.0).astype(dtype)
        free.append(f * _real(model.levels[l + 1], dtype) if l + 1 < m else f)
    rigorous = chebyshev_upper_bound(model.voxel_size, nu, options.jacobi).astype(dtype)
    inv_diag, upper = [], []
    for l in range(L):
        lev, f = lv.level(l), free[l]
        if options.jacobi == "point":
            d = lv.assemble(l, scatter_corners(lev, _element_diagonal(forms[l], Kes[l], Es[l])))
            inv = jnp.where(f > 0, 1.0 / jnp.where(d > 0, d, 1.0), 1.0).astype(dtype)
        else:
            B = jnp.stack([scatter_corners(lev, _block_columns(forms[l], Kes[l], Es[l], j)
                                           .astype(dtype)) for j in range(3)], axis=-1)
            B = lv.assemble(l, B)
            B = B * (f[:, :, None] * f[:, None, :]) + jnp.eye(3, dtype=dtype)[None] \
                * (1.0 - f)[:, None, :]
            inv = _inverse3(B)
        if forms[l] == "scaled" and not (l == 0 and options.fine_bound == "lanczos"):
            upper.append(rigorous)
        else:
            def A(v, l=l, lev=lev, f=f):
                return f * lv.assemble(l, _apply_level(lev, forms[l], Kes[l], Es[l], f * v)) \
                    + (1.0 - f) * v
            split = l < m
            estimate = _lanczos_bound(A, inv, model.level_nodes[l], dtype,
                                      int(options.lanczos_steps), float(options.safety),
                                      dot=lv.dot(l) if split else None,
                                      ids=model.halos[l].ids if split else None)
            upper.append(jnp.minimum(estimate, rigorous) if forms[l] == "scaled" else estimate)
        inv_diag.append(inv * (f if inv.ndim == 2 else f[:, :, None]))
    upper.append(rigorous)
    A = _coarse_matrix(lv.level(L), Kes[L].astype(wide), free[L].astype(wide))
    chol = coarse_inverse(A).astype(dtype)
    return MultigridData(tuple(Kes), tuple(Es), tuple(free), tuple(inv_diag), tuple(upper), chol)


def sharded_cycle(model: SlabModel, mg: MultigridData, r, options):
    """One multigrid cycle (the cycle of :func:`febone.voxel.multigrid.vcycle`) on the
    device's slab: (n_nodes, 3) consistent residual, zero on fixed dofs -> correction."""
    out_dtype = r.dtype
    dtype = working_dtype(options.dtype)
    lv = _Levels(model)
    m, L = lv.m, lv.L
    forms = [_form(options, l) for l in range(m)] + ["matrices"] * (L + 1 - m)

    def op(l):
        def A(v):
            return lv.assemble(l, _apply_level(lv.level(l), forms[l], mg.Ke[l], mg.E[l], v))
        return A

    def cycle(l, b):
        if l == L:  # the coarsest level, replicated: one dense matvec
            return (mg.chol @ (mg.free[l] * b).reshape(-1)).reshape(b.shape)
        A = op(l)
        hi = mg.upper[l]
        lo = hi / float(options.ratio)
        deg = options.degree_at(l)
        x, res = _chebyshev(A, mg.inv_diag[l], jnp.zeros_like(b), b, deg, lo, hi, True)
        bc = mg.free[l + 1] * lv.restrict(l, mg.free[l] * res)
        krylov_below = options.cycle == "k" or (options.cycle == "k1" and l == 0)
        xc = kstep(l + 1, bc) if krylov_below and l + 1 < L else cycle(l + 1, bc)
        x = x + mg.free[l] * lv.prolong(l, xc)
        x, _ = _chebyshev(A, mg.inv_diag[l], x, b - A(x), deg, lo, hi, False)
        return x

    def kstep(l, b):
        return kcycle_steps(op(l), partial(cycle, l), lv.dot(l), b)

    return cycle(0, r.astype(dtype)).astype(out_dtype)


def _first(model: SlabModel, *arrays):
    """Drop the leading device axis of this device's block (shard_map keeps it as 1) from the
    split arrays; the replicated levels are whole."""
    def first(tree):
        return jax.tree_util.tree_map(lambda a: a[0], tree)
    return (replace(model, levels=first(model.levels), halos=first(model.halos)),
            *first(arrays))


def _model_spec(model: SlabModel) -> SlabModel:
    """The model's partition: split levels over :data:`AXIS`, replicated levels whole."""
    return replace(model, levels=P(AXIS), halos=P(AXIS), coarse=P())


def _solve_local(model, E, nu, fixed, values, forces, u0, *, solver, throw):
    model, E, fixed, values, forces, u0 = _first(model, E, fixed, values, forces, u0)
    dtype = u0.dtype
    free = ~fixed
    fine, h0 = model.levels[0], model.halos[0]
    Ke = element_stiffness(model.voxel_size, nu, dtype)
    u_d = jnp.where(fixed, values.astype(dtype), 0.0)

    def stiffness(v):
        return assemble(h0, apply_stiffness(fine, Ke, E, v))

    def operator(x):
        return jnp.where(free, stiffness(jnp.where(free, x, 0.0)), x)

    rhs = jnp.where(free, forces.astype(dtype) - stiffness(u_d), 0.0)
    x0 = jnp.where(free, u0 - u_d, 0.0)
    if solver.preconditioner == "multigrid":
        opts = solver.multigrid
        mg = setup_sharded_multigrid(model, jax.lax.stop_gradient(E), nu, fixed, opts)

        def precondition(r):
            z = sharded_cycle(model, mg, jnp.where(free, r, 0.0), opts)
            return jnp.where(free, z.astype(r.dtype), r)
    elif solver.preconditioner == "jacobi":
        d = assemble(h0, stiffness_diagonal(fine, Ke, E.astype(dtype)))
        inv = jnp.where(free & (d > 0), 1.0 / jnp.where(d > 0, d, 1.0), 1.0)

        def precondition(r):
            return r * inv.astype(r.dtype)
    else:
        def precondition(r):
            return r
    x, info = pcg(operator, rhs, precondition, x0, rtol=solver.rtol, atol=solver.atol,
                  max_iter=solver.iteration_cap, flexible=solver.flexible,
                  dot=partial(dot, h0))
    u = x + u_d
    if throw:
        u = jnp.where(info.converged, u, jnp.nan)
    return u[None], info


def _reactions_local(model, E, nu, u, forces):
    model, E, u, forces = _first(model, E, u, forces)
    Ke = element_stiffness(model.voxel_size, nu, u.dtype)
    f = assemble(model.halos[0], apply_stiffness(model.levels[0], Ke, E, u))
    return (f - forces.astype(u.dtype))[None]


def _strain_local(model, nu, u):
    model, u = _first(model, u)
    Ke = element_stiffness(model.voxel_size, nu, u.dtype)
    volume = float(np.prod(model.voxel_size))
    return jnp.sqrt(jnp.maximum(element_energy(model.levels[0], Ke, u), 0.0) / volume)[None]


@lru_cache(maxsize=16)
def _programs(mesh: Mesh, model_spec: SlabModel, solver, throw: bool):
    spec = P(AXIS)
    solve = jax.jit(jax.shard_map(partial(_solve_local, solver=solver, throw=throw), mesh=mesh,
                                  in_specs=(model_spec, spec, P(), spec, spec, spec, spec),
                                  out_specs=(spec, P()), check_vma=False))
    reactions = jax.jit(jax.shard_map(_reactions_local, mesh=mesh,
                                      in_specs=(model_spec, spec, P(), spec, spec),
                                      out_specs=spec, check_vma=False))
    strain = jax.jit(jax.shard_map(_strain_local, mesh=mesh, in_specs=(model_spec, P(), spec),
                                   out_specs=spec, check_vma=False))
    return solve, reactions, strain


@dataclass(frozen=True)
class _Placed:
    """A split model and its per-device inputs on the mesh."""

    slabs: Slabs
    mesh: Mesh
    model: SlabModel

    def put(self, host):
        return jax.device_put(host, NamedSharding(self.mesh, P(AXIS)))

    def inputs(self, E, bcs: BoundaryConditions, u0, dtype):
        s = self.slabs
        E_loc = self.put(s.split_voxels(np.asarray(E, dtype)))
        fixed = self.put(s.split_nodes(np.asarray(bcs.fixed), fill=True))
        values = self.put(s.split_nodes(np.asarray(bcs.values, dtype)))
        forces = self.put(s.split_nodes(np.asarray(bcs.forces, dtype)))
        u0 = np.zeros((s.n_nodes, 3), dtype) if u0 is None else np.asarray(u0, dtype)
        return E_loc, fixed, values, forces, self.put(s.split_nodes(u0))


def _place(slabs: Slabs, devices) -> _Placed:
    mesh = slab_mesh(slabs.n_devices, devices)
    split, whole = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
    m = slabs.model
    model = replace(m, levels=jax.device_put(m.levels, split),
                    halos=jax.device_put(m.halos, split), coarse=jax.device_put(m.coarse, whole))
    return _Placed(slabs, mesh, model)


def _check(slabs: Slabs, E, nu, bcs, solver):
    if not isinstance(slabs, Slabs):
        raise TypeError(f"expected febone.voxel.slabs.Slabs (split_slabs(grid, n_devices)); got "
                        f"{type(slabs).__name__}")
    if np.shape(E) != (slabs.n_voxels,):
        raise ValueError(f"E must hold one modulus per bone voxel, shape ({slabs.n_voxels},) "
                         f"MPa; got {np.shape(E)}")
    if not isinstance(bcs, BoundaryConditions) or bcs.n_nodes != slabs.n_nodes:
        raise ValueError(f"bcs must be BoundaryConditions over the {slabs.n_nodes} active nodes "
                         f"(BoundaryConditions.empty(n_nodes))")
    e = np.asarray(E)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError("voxel moduli must be positive and finite (MPa); remove void voxels "
                         "from the mask instead of giving them E = 0")
    if not (0.0 < float(nu) < 0.5):
        raise ValueError(f"Poisson's ratio must lie in (0, 0.5); got {nu}")
    if solver.mixed_precision:
        raise ValueError("the mixed-precision refinement is not available on a model split "
                         "over devices; solve in float64 (mixed_precision=False) or on one "
                         "device")


def compile_sharded_solve(slabs: Slabs, E, bcs: BoundaryConditions, *, nu=0.3, solver=None,
                          throw: bool = True, devices=None):
    """Ahead-of-time compile the split solve.

    Args:
        slabs: :func:`febone.voxel.slabs.split_slabs` of the model.
        E: (n_voxels,) global moduli, MPa (host arrays; each device receives its slab).
        bcs: global boundary conditions over the active nodes.
        devices: the devices (default: the first ``slabs.n_devices`` of ``jax.devices()``).

    Returns:
        ``(run, per_device_bytes, compiled)``: ``run(E, bcs, nu=..., u0=None) -> Solution``
        (``u``: (n_nodes, 3) mm, joined on the host); ``per_device_bytes`` is XLA's buffer
        estimate of one device (arguments + outputs + temporaries − aliased), or ``None``;
        ``compiled`` the executable (its ``as_text()`` is the per-device program).
    """
    solver = solver or VoxelPCG()
    _check(slabs, E, nu, bcs, solver)
    dtype = np.dtype(jnp.result_type(float))
    placed = _place(slabs, devices)
    solve, _, _ = _programs(placed.mesh, _model_spec(placed.model), solver, throw)
    args = placed.inputs(E, bcs, None, dtype)
    compiled = solve.lower(placed.model, args[0], jnp.asarray(nu, dtype), *args[1:]).compile()
    memory = compiled_memory_bytes(compiled)

    def run(E, bcs, *, nu=nu, u0=None) -> Solution:
        _check(slabs, E, nu, bcs, solver)
        E_loc, fixed, values, forces, u0_ = placed.inputs(E, bcs, u0, dtype)
        start = time.perf_counter()
        u, info = compiled(placed.model, E_loc, jnp.asarray(nu, dtype), fixed, values, forces, u0_)
        u.block_until_ready()
        seconds = time.perf_counter() - start
        if throw and not bool(info.converged):
            raise ConvergenceError(
                f"CG on {slabs.n_devices} devices did not converge: relative residual "
                f"{float(info.residual):.3e} after {int(info.iterations)} iterations "
                f"(breakdown: {bool(info.breakdown)}); raise max_iter or check the supports")
        stats = SolveStats(info.iterations, info.residual, info.converged, info.breakdown,
                           seconds, f"{slabs.n_devices} × {device_description()}", str(dtype))
        return Solution(slabs.join_nodes(u), stats)

    run.placed = placed
    return run, memory, compiled


def solve_voxel_sharded(slabs: Slabs, E, bcs: BoundaryConditions, *, nu=0.3, solver=None,
                        u0=None, throw: bool = True, devices=None) -> Solution:
    """Solve K(E) u = f of one voxel model split over devices (see
    :func:`compile_sharded_solve`); returns the global (n_nodes, 3) displacement, mm."""
    run, _, _ = compile_sharded_solve(slabs, E, bcs, nu=nu, solver=solver, throw=throw,
                                      devices=devices)
    return run(E, bcs, nu=nu, u0=u0)


def sharded_reactions(placed: _Placed, E, bcs: BoundaryConditions, u, *, nu=0.3) -> np.ndarray:
    """(n_nodes, 3) reactions K u − f_ext, N, computed slab by slab (joined on the host)."""
    dtype = np.dtype(jnp.result_type(float))
    _, reactions, _ = _programs(placed.mesh, _model_spec(placed.model), None, False)
    s = placed.slabs
    out = reactions(placed.model, placed.put(s.split_voxels(np.asarray(E, dtype))),
                    jnp.asarray(nu, dtype), placed.put(s.split_nodes(np.asarray(u, dtype))),
                    placed.put(s.split_nodes(np.asarray(bcs.forces, dtype))))
    return s.join_nodes(out)


def sharded_effective_strain(placed: _Placed, u, *, nu=0.3) -> np.ndarray:
    """(n_voxels,) effective strain √(2·SED/E) per bone voxel, slab by slab."""
    dtype = np.dtype(jnp.result_type(float))
    _, _, strain = _programs(placed.mesh, _model_spec(placed.model), None, False)
    s = placed.slabs
    u_loc = placed.put(s.split_nodes(np.asarray(u, dtype)))
    out = strain(placed.model, jnp.asarray(nu, dtype), u_loc)
    return s.join_voxels(out)


def compress_on_slabs(grid, E_vox, bcs: BoundaryConditions, *, nu, solver, n_devices: int,
                      devices=None):
    """The solve and post-processing of :func:`febone.voxel.compress_mask` on z-slabs.

    Returns:
        ``(solution, reactions, effective_strain, per_device_bytes, compile_seconds)``: the
        global (n_nodes, 3) displacement (in the :class:`Solution`) and reactions (N), the
        (n_voxels,) effective strain, XLA's per-device buffer estimate and the compile time.
    """
    mg = solver.multigrid
    slabs = split_slabs(grid, n_devices, max_coarse_nodes=mg.max_coarse_nodes,
                        max_levels=mg.max_levels)
    log.info("compress on %d devices: %d bone voxels, slabs of %d voxel layers, %d levels "
             "(%d split, the others replicated)", n_devices, grid.n_voxels, slabs.slab_voxels,
             slabs.n_levels, slabs.model.split_levels)
    t0 = time.perf_counter()
    run, per_device, _ = compile_sharded_solve(slabs, E_vox, bcs, nu=nu, solver=solver,
                                               devices=devices)
    compile_seconds = time.perf_counter() - t0
    sol = run(E_vox, bcs, nu=nu)
    reactions = sharded_reactions(run.placed, E_vox, bcs, sol.u, nu=nu)
    eff = sharded_effective_strain(run.placed, sol.u, nu=nu)
    return sol, reactions, eff, per_device, compile_seconds

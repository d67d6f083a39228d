"""The host out of the hot loops (issue 18, item 2).

* a remodelling run's mechanical steps and its on-device AMG refreshes move nothing between host
  and device (``jax.transfer_guard("disallow")`` around every compiled step and refresh of a
  whole run), and the refreshed run agrees with a run that never refreshes within the CG
  tolerance;
* the voxel solve's progress callback fires at most every ``PROGRESS_EVERY`` CG iterations, and
  the answer is bit-identical to the solve without progress;
* the compiled voxel solve needs no host transfer, and moduli on the device are checked there
  (a bad modulus still raises the error that names the voxels).
"""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb
from febone.remodel import Drives
from febone.remodel.mechanics import HabitualLoad
from febone.remodel.settings import RemodelSettings, step_schedule

pytest.importorskip("pyamg", reason="pyamg is not installed (pip install febone[amg])")


def _bar():
    """A 4 × 4 × 24 mm hex8 bar (625 nodes: a two-level AMG hierarchy), densities graded along
    its axis, clamped at z = 0 and compressed at z = 24 mm."""
    mesh = fb.box_mesh((4, 4, 24), size=(4.0, 4.0, 24.0))
    z = mesh.points[:, 2]
    pd = {"face_min": (z == z.min()).astype(np.uint8), "face_max": (z == z.max()).astype(np.uint8)}
    zc = mesh.points[mesh.cells].mean(axis=1)[:, 2]
    return replace(mesh, point_data=pd, cell_data={"density_g_cm3": 0.3 + 0.04 * zc})


@pytest.mark.slow
def test_remodel_steps_and_refreshes_move_nothing_between_host_and_device(monkeypatch):
    from febone.remodel import simulation
    from febone.solve import amg_refresh

    mesh = _bar()
    days = int(step_schedule(0.5, 12)[-1])
    inputs = SimpleNamespace(drives=Drives(P_RANKL=np.full(days, 150.0)),
                             load_factor=np.full(days, 0.8))           # disuse: bone is lost
    settings = RemodelSettings(habitual=(HabitualLoad("compression", 1.0, 0.05),), nu=0.3,
                               strength_cases=("compression",), strength_methods=("pistoia",),
                               preconditioner="amg", output_interval_years=0.25)
    calls = {"step": 0, "refresh": 0}

    def guarded(fn, name):
        def run(*args, **kw):
            calls[name] += 1
            with jax.transfer_guard("disallow"):
                return fn(*args, **kw)
        return run

    cache = {}
    plain = simulation.remodel(mesh, inputs, years=0.5, settings=settings, cache=cache,
                               refresh=False)
    monkeypatch.setattr(simulation, "_step_donating", guarded(simulation._step_donating, "step"))
    monkeypatch.setattr(amg_refresh, "refresh", guarded(amg_refresh.refresh, "refresh"))
    fresh = simulation.remodel(mesh, inputs, years=0.5, settings=settings, cache=cache)
    assert calls == {"step": 6, "refresh": 2}       # every step; the refresh at every output
    bvtv = lambda res: np.array([r["mean_bvtv"] for r in res.records])  # noqa: E731
    assert bvtv(fresh)[-1] < 0.99 * bvtv(fresh)[0]  # the bone changed: the refresh had work
    # the refreshed hierarchy changes only the CG iterates: answers within the tolerance
    # (rtol 1e-8 per solve; 1e-6 leaves room for the feedback through the cell model)
    np.testing.assert_allclose(bvtv(fresh), bvtv(plain), rtol=1e-6)
    np.testing.assert_allclose(fresh.density, plain.density, rtol=1e-6)
    k = lambda res: [r["stiffness_N_per_mm"]["compression"] for r in res.records]  # noqa: E731
    np.testing.assert_allclose(k(fresh), k(plain), rtol=1e-6)

    # a step's checks are read one step late, yet a failure names its own day and the
    # progress reports only the steps before it
    from febone.remodel.cells import CellModelError

    dispatched, reported, step = [], [], simulation._step_donating

    def failing(*args, **kw):
        new, code = step(*args, **kw)
        dispatched.append(1)
        return new, (jnp.full_like(code, simulation._OUTSIDE) if len(dispatched) == 4 else code)

    monkeypatch.setattr(simulation, "_step_donating", failing)
    with pytest.raises(CellModelError, match=r"BV/TV left \(0, 1\] at day 122 "):
        simulation.remodel(mesh, inputs, years=0.5, settings=settings, cache=cache,
                           progress=lambda k, n, rec: reported.append(k))
    assert reported == [1, 2, 3]          # step 4 (days 91–121) failed
    assert len(dispatched) == 5           # step 5 was running while step 4's code was read
    # before the first refresh (output 1) the two runs are the same computation
    np.testing.assert_array_equal(fresh.density[:2], plain.density[:2])


def _voxel_block(seed: int = 0):
    """A 6 × 6 × 8 voxel block with log-uniform moduli 100…10,000 MPa, compressed along z."""
    from febone.voxel import VoxelGrid, VoxelModel

    grid = VoxelGrid.create(np.ones((8, 6, 6), bool), 0.1)
    model = VoxelModel.create(grid, max_coarse_nodes=30)
    E = 10.0 ** np.random.default_rng(seed).uniform(2.0, 4.0, grid.n_voxels)
    bcs = (fb.BoundaryConditions.empty(model.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
           .displace(grid.plane_nodes("z", "max"), z=-0.01))
    return grid, model, E, bcs


@pytest.mark.slow
def test_voxel_progress_calls_the_host_every_K_iterations_and_changes_no_bit(monkeypatch):
    from febone.solve.progress import PROGRESS_EVERY
    from febone.voxel import VoxelPCG, solve, solve_voxel

    seen = []

    class Recorder:                        # stands in for the stderr progress line
        def __call__(self, k, rel):
            seen.append((int(k), float(rel)))

        def close(self):
            pass

    monkeypatch.setattr(solve, "_Progress", Recorder)
    _, model, E, bcs = _voxel_block()
    quiet = solve_voxel(model, E, bcs, solver=VoxelPCG(rtol=1e-10, preconditioner="jacobi"))
    shown = solve_voxel(model, E, bcs, solver=VoxelPCG(rtol=1e-10, preconditioner="jacobi",
                                                       progress=True))
    n = int(shown.stats.iterations)
    assert n >= 3 * PROGRESS_EVERY, n      # Jacobi: enough iterations for several callbacks
    assert len(seen) <= n / PROGRESS_EVERY + 1
    assert sorted(k for k, _ in seen) == list(range(PROGRESS_EVERY, n + 1, PROGRESS_EVERY))
    assert all(0.0 < rel < 1.0 for _, rel in seen)
    # the callback only reads the residual: the same iterates, bit for bit
    assert int(quiet.stats.iterations) == n
    np.testing.assert_array_equal(np.asarray(shown.u), np.asarray(quiet.u))


def test_compiled_voxel_solve_needs_no_host_transfer_and_device_moduli_are_checked_there():
    from febone.voxel import VoxelPCG, solve, solve_voxel

    _, model, E, bcs = _voxel_block(1)
    solver = VoxelPCG(rtol=1e-8, preconditioner="jacobi")
    args = jax.device_put((model, jnp.asarray(E), jnp.asarray(0.3), bcs.fixed, bcs.values,
                           bcs.forces, jnp.zeros((model.n_nodes, 3))))
    ref = solve._solve_compiled(*args, solver=solver, throw=False)   # compile outside the guard
    with jax.transfer_guard("disallow"):
        u, info = solve._solve_compiled(*args, solver=solver, throw=False)
    np.testing.assert_array_equal(np.asarray(u), np.asarray(ref[0]))
    assert bool(info.converged)
    bad = jnp.asarray(E).at[17].set(0.0).at[40].set(jnp.nan)         # on the device
    with pytest.raises(ValueError, match=r"bad at voxels \[17, 40\] \(2 in all\)"):
        solve_voxel(model, bad, bcs, solver=solver)

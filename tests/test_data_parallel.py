"""Data parallelism (febone.parallel, study.batch(devices=), febone sensitivity --devices): a
batch axis spread over devices equals the same batch on one device.

XLA_FLAGS must be set before JAX initialises, and this test process has one CPU device, so the
multi-device checks run in a subprocess with ``--xla_force_host_platform_device_count=4`` that
prints its results as JSON; the comparisons are made here. Every reference is the same batch
``vmap``-ped on one device, computed in the same child. The members differ from one another
far beyond the tolerance, so a member dropped, repeated or put out of order would fail.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from febone.parallel import batch_devices, initialize_distributed, map_batch

#: Relative agreement of a sharded batch with one device: both are the same vmapped program on
#: a different number of members per device, so only the vectorised reductions' round-off
#: differs (measured 1e-12 relative on the study, after CG at rtol 1e-8 / 1e-10).
RTOL = 1e-10


def _child(code: str, *, devices: int = 4, timeout: float = 240, env=None) -> dict:
    """Run ``code`` in a fresh Python with ``devices`` forced CPU devices; its last stdout line
    is JSON."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


_VOXEL_SETUP = """
import json
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import febone as fb
from febone.voxel import VoxelGrid, VoxelModel, VoxelPCG, solve_voxel

grid = VoxelGrid.create(np.ones((8, 6, 6), bool), 0.1)
model = VoxelModel.create(grid, max_coarse_nodes=30)          # 2 multigrid levels
bcs = (fb.BoundaryConditions.empty(model.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
       .displace(grid.plane_nodes("z", "max"), z=-0.006))
E = 1000.0 + 2000.0 * np.random.default_rng(0).random((8, grid.n_voxels))   # MPa, 8 members
SOLVER = VoxelPCG(rtol=1e-10)                                  # multigrid-preconditioned CG


def displacement(shared, e):
    model, bcs = shared
    return solve_voxel(model, e, bcs, solver=SOLVER, throw=False).u
"""


@pytest.mark.slow
def test_voxel_multigrid_batch_over_four_devices():
    """Eight multigrid voxel solves over four devices (two per device). (1) jit with the batch
    merely sharded: this hung in the batched coarse Cholesky before coarse_inverse (XLA aborts
    such a hang at its rendezvous timeout, so the child would fail, not stall); (2) map_batch:
    the output sharded over the four devices and no all-gather or all-reduce in the compiled
    program; (3) six members, padded to eight. All equal one device to RTOL."""
    out = _child(_VOXEL_SETUP + """
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from febone.parallel import _sharded, map_batch

shared = (model, bcs)
one = np.asarray(jax.jit(jax.vmap(lambda e: displacement(shared, e)))(jnp.asarray(E)))
mesh = Mesh(np.array(jax.devices()), ("batch",))
E_sharded = jax.device_put(jnp.asarray(E), NamedSharding(mesh, P("batch")))
by_jit = jax.jit(jax.vmap(lambda e: displacement(shared, e)))(E_sharded)
u = map_batch(displacement, shared, E, devices=4)
text = _sharded(displacement, mesh).lower(
    jax.device_put(shared, NamedSharding(mesh, P())), E_sharded).compile().as_text()
padded = map_batch(displacement, shared, E[:6], devices=4)
print(json.dumps({
    "levels": len(model.levels), "one": one.tolist(), "by_jit": np.asarray(by_jit).tolist(),
    "map": np.asarray(u).tolist(), "padded": np.asarray(padded).tolist(),
    "map_devices": len(u.sharding.device_set), "padded_shape": list(padded.shape),
    "collectives": {k: text.count(k) for k in ("all-gather", "all-reduce", "all-to-all",
                                               "collective-permute")}}))
""")
    assert out["levels"] >= 2
    one = np.asarray(out["one"])
    scale = np.abs(one).max()
    assert np.abs(one - one[:1]).max() > 1e-3 * scale          # the members really differ
    for key in ("by_jit", "map"):
        np.testing.assert_allclose(out[key], one, rtol=0, atol=RTOL * scale, err_msg=key)
    assert out["padded_shape"] == [6] + list(one.shape[1:])
    np.testing.assert_allclose(out["padded"], one[:6], rtol=0, atol=RTOL * scale)
    assert out["map_devices"] == 4
    assert out["collectives"] == {"all-gather": 0, "all-reduce": 0, "all-to-all": 0,
                                  "collective-permute": 0}


@pytest.mark.slow
def test_study_batch_and_finite_differences_over_devices():
    """Parameter sets of a study on the 12-element specimen (one month): batch(devices=2) with
    two sets per device, three sets padded to four, and finite_difference(devices=2) equal the
    one-device batch (the central differences recomputed here from its rows)."""
    out = _child("""
import json
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from febone.remodel import Patient, Treatment
from febone.study import batch, fd_step, finite_difference
from febone.study.scenario import specimen_study

study = specimen_study(Patient.create(age_years=62.0),
                       (Treatment.create("anastrozole", 1.0, "mg", 1),
                        Treatment.create("exercise-resistance", 0.1, "fraction", 1)),
                       years=30 / 365.25)
base = {"dose:anastrozole": 1.0, "exercise": 0.1}
h = {n: fd_step(n, v) for n, v in base.items()}
dose = [1.0 + h["dose:anastrozole"], 1.0 - h["dose:anastrozole"], 1.0, 1.0]
exercise = [0.1, 0.1, 0.1 + h["exercise"], 0.1 - h["exercise"]]
p = {"dose:anastrozole": jnp.array(dose), "exercise": jnp.array(exercise)}
fields = ("fracture_load", "stiffness", "bmd_trajectory", "pistoia_load")
one = batch(study, p)
many = batch(study, p, devices=2)
padded = batch(study, {k: v[:3] for k, v in p.items()}, devices=2)
fd = finite_difference(study, base, list(base), devices=2)
print(json.dumps({
    "h": h, "fd": fd, "devices": len(many.fracture_load.sharding.device_set),
    "one": {f: np.asarray(getattr(one, f)).tolist() for f in fields},
    "many": {f: np.asarray(getattr(many, f)).tolist() for f in fields},
    "padded": {f: np.asarray(getattr(padded, f)).tolist() for f in fields},
    "converged": bool(jnp.all(many.converged))}))
""")
    assert out["converged"] and out["devices"] == 2
    for f, ref in out["one"].items():
        ref = np.asarray(ref)
        np.testing.assert_allclose(out["many"][f], ref, rtol=RTOL, err_msg=f)
        np.testing.assert_allclose(out["padded"][f], ref[:3], rtol=RTOL, err_msg=f)
    load = np.asarray(out["one"]["fracture_load"])
    # the four sets differ (by ~1e-6 relative, steps of 1e-3) 1000× beyond the tolerance
    assert np.ptp(load) > 1e3 * RTOL * abs(load).max()
    h = out["h"]
    expected = {"dose:anastrozole": (load[0] - load[1]) / (2 * h["dose:anastrozole"]),
                "exercise": (load[2] - load[3]) / (2 * h["exercise"])}
    for n, v in expected.items():
        # the rows agree to RTOL: their difference, over 2h, to RTOL·|load|/h
        np.testing.assert_allclose(out["fd"][n], v, rtol=0,
                                   atol=2 * RTOL * abs(load).max() / h[n], err_msg=n)


@pytest.mark.slow
def test_two_processes_with_jax_distributed():
    """Two processes of two CPU devices each, joined by jax.distributed through febone's
    initialize_distributed (the environment of `febone --distributed`): a batch of six over
    the four devices (padded to eight), all six back on every process, equal to NumPy. The
    solver itself over several devices is the voxel test's; this checks the plumbing."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    code = textwrap.dedent("""
        import json
        from febone.parallel import initialize_distributed, map_batch
        initialize_distributed()
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)

        def member(shared, x):      # a 3×3 SPD solve per member
            A = shared + jnp.diag(x)
            return jnp.linalg.solve(A, jnp.arange(1.0, 4.0))

        x = 1.0 + np.arange(18.0).reshape(6, 3)
        shared = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
        u = np.asarray(map_batch(member, shared, x, devices=4))
        ref = np.stack([np.linalg.solve(shared + np.diag(r), np.arange(1.0, 4.0)) for r in x])
        print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                          "local": jax.local_device_count(), "shape": list(u.shape),
                          "err": float(np.abs(u - ref).max()), "scale": float(np.abs(ref).max()),
                          "spread": float(np.ptp(ref[:, 0]))}))
        """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "FEBONE_COORDINATOR_ADDRESS": f"localhost:{port}",
           "FEBONE_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", code],
                              env={**env, "FEBONE_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert sorted(o["process"] for o in outs) == [0, 1]
    for o in outs:
        assert o["devices"] == 4 and o["local"] == 2 and o["shape"] == [6, 3]
        assert o["err"] <= 1e-14 * o["scale"] and o["spread"] > 1e-3 * o["scale"]


def test_more_devices_than_exist_names_the_count_and_the_fix():
    n = jax.device_count()
    with pytest.raises(ValueError, match=rf"jax.device_count\(\) = {n}") as err:
        batch_devices(n + 1)
    assert f"XLA_FLAGS=--xla_force_host_platform_device_count={n + 1}" in str(err.value)
    for bad in (0, -2, 1.5, True, "2", [], [jax.devices()[0]] * 2):
        with pytest.raises(ValueError, match="devices"):
            batch_devices(bad)
    assert batch_devices(1) == tuple(jax.devices()[:1])
    assert batch_devices(jax.devices()[:1]) == tuple(jax.devices()[:1])


def test_map_batch_on_one_device_equals_vmap_and_checks_sizes():
    def f(shared, x):
        return {"y": shared["a"] * jnp.sin(x["t"]) + jnp.sum(x["v"])}

    shared = {"a": jnp.asarray(2.0)}
    x = {"t": jnp.arange(5.0), "v": jnp.arange(15.0).reshape(5, 3)}
    out = map_batch(f, shared, x, devices=1)
    np.testing.assert_array_equal(out["y"], 2.0 * np.sin(np.arange(5.0))
                                  + np.arange(15.0).reshape(5, 3).sum(axis=1))
    with pytest.raises(ValueError, match="one common leading"):
        map_batch(f, shared, {"t": jnp.arange(5.0), "v": jnp.ones((4, 3))}, devices=1)


def test_cli_devices_messages(capsys):
    from febone.cli import main

    n = jax.device_count()
    assert main(["sensitivity", "--check", "--devices", str(n + 1)]) == 1
    err = capsys.readouterr().err
    assert f"jax.device_count() = {n}" in err and "xla_force_host_platform_device_count" in err
    assert main(["sensitivity", "--devices", "1"]) == 1
    assert "add --check" in capsys.readouterr().err


def test_distributed_environment_is_checked():
    with pytest.raises(ValueError, match="FEBONE_NUM_PROCESSES must be a whole number"):
        initialize_distributed({"FEBONE_NUM_PROCESSES": "two"})

"""One voxel model split over several devices (z-slabs, one node layer of halo).

The rest of the suite runs in one process with one CPU device, and the device count is fixed
when JAX starts, so the split solves run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` that prints JSON; the parent compares.
The split solve is the one-device algorithm with sums in another order (its float32 multigrid
cycle rounds differently), so the two agree to the accuracy of the solves: with CG at rtol
1e-11 they are compared at 1e-10. (At the default rtol 1e-8 they differ by up to 4e-9 in u on
the 837k-dof LHDL model, both within the solve's own error; benchmarks/RESULTS_sharded.md.)
"""
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage

from febone.voxel import VoxelGrid, VoxelModel
from febone.voxel.slabs import split_slabs

def porous(shape, seed=0):
    """A porous block: smoothed noise thresholded at its median; pieces that miss z = 0
    dropped (unsupported), the first and last layers solid (load path)."""
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5
    mask[0] = True
    mask[-1] = True
    lab, _ = ndimage.label(mask)
    first = np.unique(lab[0])
    return np.isin(lab, first[first > 0])


def collectives(text):
    """(op, element count of each result array) of every collective of an HLO module."""
    out = []
    for line in text.splitlines():
        m = re.search(r"= (.*?) (all-gather|all-reduce|collective-permute|all-to-all|"
                      r"reduce-scatter)(-start)?\(", line)
        if m:
            sizes = [int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
                     for dims in re.findall(r"\[([0-9,]*)\]", m.group(1))]
            out.append((m.group(2), sizes))
    return out


#: what every subprocess starts with: float64 and the two helpers above
PRELUDE = ("import json, re\nimport jax\njax.config.update('jax_enable_x64', True)\n"
           "import numpy as np\nfrom scipy import ndimage\n"
           + inspect.getsource(porous) + inspect.getsource(collectives))


def run_on_devices(body: str, *, devices: int = 4, timeout: float = 600) -> dict:
    """Run ``PRELUDE + body`` in a fresh Python with ``devices`` forced CPU devices; the last
    stdout line is JSON."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_split_maps_cover_every_node_and_voxel_once():
    """Host decomposition (no devices needed): slab thickness a multiple of 2^L, each global
    node owned by exactly one slab, interface nodes stored twice, the maps round-trip."""
    grid = VoxelGrid.create(porous((38, 12, 12)), 0.05)  # 38 layers: not a multiple of 4
    slabs = split_slabs(grid, 4, max_coarse_nodes=200)
    model = VoxelModel.create(grid, max_coarse_nodes=200)
    assert slabs.n_levels == len(model.levels) >= 2
    assert slabs.slab_voxels % 2 ** (slabs.n_levels - 1) == 0
    assert 4 * slabs.slab_voxels >= 38
    assert slabs.model.level_nodes == tuple(lev.n_nodes for lev in model.levels)
    owned = slabs.node_ids[slabs.owner]
    assert np.array_equal(np.sort(owned), np.arange(model.n_nodes))
    stored = slabs.node_ids[slabs.node_ids >= 0]
    assert stored.size > model.n_nodes  # interface layers are held by both neighbours
    assert np.array_equal(np.sort(slabs.voxel_ids[slabs.voxel_ids >= 0]),
                          np.arange(grid.n_voxels))
    x = np.random.default_rng(1).random((model.n_nodes, 3))
    assert np.array_equal(slabs.join_nodes(slabs.split_nodes(x)), x)
    e = np.random.default_rng(2).random(grid.n_voxels)
    assert np.array_equal(slabs.join_voxels(slabs.split_voxels(e)), e)


def test_split_refuses_what_it_cannot_split():
    grid = VoxelGrid.create(porous((6, 12, 12)), 0.05)
    with pytest.raises(ValueError, match="at least 2 devices"):
        split_slabs(grid, 1)
    with pytest.raises(ValueError, match="at most 3 devices"):
        split_slabs(grid, 4)
    small = VoxelGrid.create(np.ones((8, 2, 2), bool), 0.05)
    with pytest.raises(ValueError, match="single multigrid level"):
        split_slabs(small, 2)


@pytest.mark.slow
def test_split_solve_equals_one_device_and_moves_no_fine_field():
    """24×24×38 porous block (38 z-layers: 4 slabs of 12 with 10 void layers padded on top),
    random moduli, compression, CG at rtol 1e-11: the 4-device solve equals the one-device
    solve (u, reaction, strain energy per voxel) to 1e-10 in as many iterations (±1: the
    stopping test sees round-off); its compiled program
    has no all-gather, its collective-permutes move at most one node layer and its
    all-reduces only scalars and data of the first replicated level."""
    out = run_on_devices("""
        import febone as fb
        from febone.voxel import (VoxelGrid, VoxelModel, VoxelPCG, effective_strain,
                                  solve_voxel, voxel_reactions)
        from febone.voxel.sharded import (compile_sharded_solve, sharded_effective_strain,
                                          sharded_reactions)
        from febone.voxel.slabs import split_slabs

        grid = VoxelGrid.create(porous((38, 24, 24)), 0.05)
        model = VoxelModel.create(grid)
        top = grid.plane_nodes("z", "max")
        bcs = (fb.BoundaryConditions.empty(model.n_nodes)
               .fix(grid.plane_nodes("z", "min"), "xyz").displace(top, z=-0.01))
        E = 18000.0 * (0.5 + np.random.default_rng(3).random(grid.n_voxels))
        solver = VoxelPCG(rtol=1e-11)  # float32 K-cycle, as by default
        one = solve_voxel(model, E, bcs, solver=solver)
        F1 = -float(np.asarray(voxel_reactions(model, E, bcs, one.u))[top, 2].sum())
        e1 = np.asarray(effective_strain(model, one.u))
        slabs = split_slabs(grid, 4)
        run, per_device, compiled = compile_sharded_solve(slabs, E, bcs, solver=solver)
        four = run(E, bcs)
        F4 = -float(sharded_reactions(run.placed, E, bcs, four.u)[top, 2].sum())
        e4 = sharded_effective_strain(run.placed, four.u)
        u1, u4 = np.asarray(one.u), np.asarray(four.u)
        print(json.dumps(dict(
            u=float(np.abs(u1 - u4).max() / np.abs(u1).max()), F=abs(F4 - F1) / abs(F1),
            sed=float(np.abs(e1**2 - e4**2).max() / (e1**2).max()),
            its=[int(one.stats.iterations), int(four.stats.iterations)],
            conv=bool(four.stats.converged), collectives=collectives(compiled.as_text()),
            n_nodes=model.n_nodes, n_voxels=grid.n_voxels, layer=25 * 25, slab=slabs.slab_voxels,
            m=slabs.model.split_levels, n_m=slabs.model.level_nodes[slabs.model.split_levels],
            voxels_m=slabs.model.coarse[0].n_voxels)))
    """)
    assert out["slab"] == 12  # 38 layers over 4 slabs of a multiple of 2^2 = 4: padded to 48
    assert out["conv"] and abs(out["its"][0] - out["its"][1]) <= 1, out["its"]
    assert out["u"] < 1e-10 and out["F"] < 1e-10 and out["sed"] < 1e-10, out
    ops = out["collectives"]
    assert ops, "a split solve must communicate"
    assert not [o for o in ops if o[0] in ("all-gather", "all-to-all", "reduce-scatter")], ops
    layer = 9 * out["layer"]  # one node layer of 3×3 diagonal blocks: the largest halo message
    # level m (here 2, the coarsest) is replicated: its vectors and element matrices are summed
    coarse = {1, 3 * out["n_m"], 576 * out["voxels_m"]}
    for op, sizes in ops:
        if op == "collective-permute":
            assert max(sizes) <= layer, (op, sizes)
        else:  # all-reduce: dot products, level-m vectors, level m's matrices once
            assert set(sizes) <= coarse, (op, sizes)
    # no collective carries a fine field (n_nodes × 3 values or one per voxel)
    assert all(max(s) < min(out["n_voxels"], 3 * out["n_nodes"]) or max(s) in coarse
               for _, s in ops)


@pytest.mark.slow
def test_split_solve_memory_per_device_is_a_quarter():
    """XLA's buffer estimate (arguments + outputs + temporaries) of one device of the 4-device
    solve against the one-device solve, on a 128×32×32 porous block (about 100k nodes, 65k
    voxels; 5 levels, the coarsest ≤ 100 nodes; 4 slabs of 32 layers, no padding). Ideal is
    1/4; the bound 0.4 allows the duplicated interface layer (1/32 of a slab), the largest
    slab's excess over the mean, the per-device halo buffers and the chunk-sized temporaries
    of the product that do not shrink with the slab, and the replicated levels 3 and 4
    (measured 0.38); a gathered fine field would add a whole one-device nodal vector to every
    device."""
    out = run_on_devices("""
        import febone as fb
        from febone.voxel import Multigrid, VoxelGrid, VoxelModel, VoxelPCG, compile_voxel_solve
        from febone.voxel.sharded import compile_sharded_solve
        from febone.voxel.slabs import split_slabs

        grid = VoxelGrid.create(porous((128, 32, 32)), 0.05)
        solver = VoxelPCG(multigrid=Multigrid(max_coarse_nodes=100))
        model = VoxelModel.create(grid, max_coarse_nodes=100)
        bcs = (fb.BoundaryConditions.empty(model.n_nodes)
               .fix(grid.plane_nodes("z", "min"), "xyz")
               .displace(grid.plane_nodes("z", "max"), z=-0.01))
        E = np.full(grid.n_voxels, 18000.0)
        _, one = compile_voxel_solve(model, E, bcs, solver=solver)
        slabs = split_slabs(grid, 4, max_coarse_nodes=100)
        _, four, _ = compile_sharded_solve(slabs, E, bcs, solver=solver)
        print(json.dumps(dict(one=one, four=four, slab=slabs.slab_voxels,
                              n_nodes=model.n_nodes)))
    """)
    assert out["slab"] == 32 and out["n_nodes"] > 80_000
    ratio = out["four"] / out["one"]
    assert 0.25 <= ratio <= 0.4, out


@pytest.mark.shared_data
@pytest.mark.slow
def test_cli_devices_on_micro_ct_crop_equals_one_device(shared_data, tmp_path):
    """`febone compress --devices 4` on a crop of the LHDL micro-CT (128×96×96 voxels at
    19.5 µm, smoothed, ×2 coarsened to 64×48×48, Otsu) in a fresh process that sets up its
    own host devices (CG at rtol 1e-11): stiffness, modulus, Pistoia load and its strain equal
    the one-device run to 1e-10, in as many iterations (±1); the JSON reports the devices and
    the per-device memory."""
    image = np.load(shared_data / "trabecular_lhdl3155_19p5um.npz")["image"][:128, 40:136, 40:136]
    np.save(tmp_path / "crop.npy", image)
    args = [str(tmp_path / "crop.npy"), "--voxel-size", "0.0195", "--sigma", "1",
            "--resample", "2", "--strain", "0.01", "--rtol", "1e-11", "--quiet"]
    code = textwrap.dedent(f"""
        import json
        from febone.cli import main
        args = {args!r}
        four = ["--devices", "4", "--json", {str(tmp_path / "4.json")!r}]
        assert main(["compress", *args, *four]) == 0
        # slabs split the trilinear hierarchy: the one-device run uses the same coarse space
        assert main(["compress", *args, "--coarse-space", "trilinear",
                     "--json", {str(tmp_path / "1.json")!r}]) == 0
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    four = json.loads((tmp_path / "4.json").read_text())
    one = json.loads((tmp_path / "1.json").read_text())
    for key in ("reaction_force_N", "apparent_modulus_MPa", "failure_load_N",
                "effective_strain_2pct"):
        assert four[key] == pytest.approx(one[key], rel=1e-10), key
    assert abs(four["iterations"] - one["iterations"]) <= 1 and four["n_dofs"] == one["n_dofs"]
    assert (four["devices"], one["devices"]) == (4, 1)
    assert four["peak_memory_bytes"] == 4 * four["per_device_peak_memory_bytes"]
    assert one["per_device_peak_memory_bytes"] == one["peak_memory_bytes"]
    # smaller, though far from 1/4 on a model this small: the replicated coarsest
    # level (a dense inverse of ≤ 2,100 dofs, set up in float64) is most of it
    assert four["per_device_peak_memory_bytes"] < one["per_device_peak_memory_bytes"]

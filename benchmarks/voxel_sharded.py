"""One voxel model over several devices: per-device memory, equality and time against one device.

Runs ``febone.voxel.compress`` on the LHDL trabecular sample (``../shared/data``), smoothed
(σ = 1) and block-averaged by ``--resample``, Otsu threshold, on one device and split over each
``--devices`` count (z-slabs, :mod:`febone.voxel.sharded`), and prints one JSON line per run:
XLA's per-device buffer estimate, its ratio to one device, iterations, compile and solve
seconds and the largest relative difference of u and of the reaction force to one device.

On a CPU the devices are forced host devices (``XLA_FLAGS`` is set here, before JAX starts),
which share the machine's cores: the times say nothing about speed-up, the memory figures
are those of XLA's per-device program. Usage (from the repository root)::

    python benchmarks/voxel_sharded.py --resample 2 --devices 2 4
    python benchmarks/voxel_sharded.py --resample 2 --devices 4 --rtol 1e-11 --max-coarse-nodes 100
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "trabecular_lhdl3155_19p5um.npz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resample", type=int, default=2)
    parser.add_argument("--devices", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--image", default=str(DATA))
    parser.add_argument("--rtol", type=float, default=1e-8, help="CG tolerance (1e-8)")
    parser.add_argument("--max-coarse-nodes", type=int, default=700,
                        help="size of the replicated coarsest level (Multigrid default 700)")
    parser.add_argument("--reference-rtol", type=float, default=None,
                        help="also solve on one device at this tolerance: how far the "
                             "one-device answer itself moves (its own accuracy)")
    args = parser.parse_args()
    n = max(args.devices)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={n}").strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from febone.voxel import Multigrid, VoxelPCG, compress

    solver = VoxelPCG(rtol=args.rtol, multigrid=Multigrid(max_coarse_nodes=args.max_coarse_nodes))
    kw = dict(sigma=1.0, resample=args.resample, strain=0.01, E=18000.0, nu=0.3, solver=solver)
    one = compress(args.image, **kw)
    u1 = np.asarray(one.u)
    rows = [dict(devices=1, shape=list(one.shape), n_dofs=one.n_dofs,
                 per_device_bytes=one.per_device_peak_memory_bytes, ratio=1.0,
                 iterations=one.iterations, compile_s=round(one.compile_seconds, 1),
                 solve_s=round(one.solve_seconds, 1), force_N=one.reaction_force_N)]

    def diffs(u):
        d = np.asarray(u) - u1
        return dict(u_rel_diff=float(np.abs(d).max() / np.abs(u1).max()),
                    u_rel_diff_l2=float(np.linalg.norm(d) / np.linalg.norm(u1)))

    if args.reference_rtol is not None:
        ref_solver = VoxelPCG(rtol=args.reference_rtol, multigrid=solver.multigrid)
        ref = compress(args.image, **{**kw, "solver": ref_solver})
        rows.append(dict(devices=1, rtol=args.reference_rtol, iterations=ref.iterations,
                         force_rel_diff=abs(ref.reaction_force_N - one.reaction_force_N)
                         / abs(one.reaction_force_N), **diffs(ref.u)))
    for d in args.devices:
        r = compress(args.image, devices=d, **kw)
        rows.append(dict(devices=d, per_device_bytes=r.per_device_peak_memory_bytes,
                         ratio=round(r.per_device_peak_memory_bytes
                                     / one.per_device_peak_memory_bytes, 3),
                         iterations=r.iterations, compile_s=round(r.compile_seconds, 1),
                         solve_s=round(r.solve_seconds, 1), force_N=r.reaction_force_N,
                         **diffs(r.u), force_rel_diff=abs(r.reaction_force_N - one.reaction_force_N)
                         / abs(one.reaction_force_N)))
    meta = dict(machine=platform.machine(), cpus=os.cpu_count(), jax=jax.__version__,
                backend=jax.default_backend(), resample=args.resample, rtol=args.rtol,
                max_coarse_nodes=args.max_coarse_nodes)
    print(json.dumps(meta))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())

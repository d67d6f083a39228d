"""Voxel micro-FE compression: febone (multigrid CG, Jacobi CG) vs torch-fem 0.14 (CG with
its pyamg smoothed-aggregation preconditioner), side by side on the same mesh, boundary
conditions and tolerance.

Specimen: LHDL trabecular sample (../shared/data/trabecular_lhdl3155_19p5um.npz), Gaussian
smoothing σ = 1 voxel, block-average downsampling (×2: 39 µm, ×4: 78 µm), Otsu threshold,
largest 6-connected component. Hex8 voxels, E = 18 GPa, ν = 0.3; bottom face clamped, top
face displaced by 1 % of the height along z. All solvers stop at ‖r‖ ≤ rtol·‖b‖ (rtol 1e-8).

Each solver runs in a fresh subprocess (so peak memory is its own). Wall time counts
everything after segmentation: model/operator set-up, assembly and AMG set-up for
torch-fem, compilation for febone, the solve and the reaction force.

    python benchmarks/voxel_vs_torchfem.py --resolutions 78 39 \\
        --solvers febone-mg febone-jacobi torchfem --blas-threads 1 --timeout 1800

``febone-mg`` uses the default coarse levels of ``febone compress`` (one coarse unknown per
connected piece of bone in each coarse cell, :mod:`febone.voxel.pieces`),
``febone-mg-trilinear`` the structured trilinear ones; ``--rtol`` sets the febone rows'
tolerance (1e-12 compares the two hierarchies' converged answers).

``--solvers febone-mg-warm`` adds a row with JAX's persistent compilation cache warm (an
unrecorded first run fills a fresh cache directory); the cold ``febone-mg`` row is the
headline. ``--blas-threads N`` sets OPENBLAS_NUM_THREADS for NumPy/SciPy (pyamg's set-up, dense
coarse solves) in every child, as in ``femur_vs_torchfem.py``; torch (MKL) keeps its own
threads (all cores). ``--timeout S`` caps each child run; a run that hits it is reported
as such, with no numbers. Each row records the 1-minute load average before and after it
(the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / \
    "trabecular_lhdl3155_19p5um.npz"
FACTORS = {39: 2, 78: 4, 156: 8}
E_TISSUE, NU, STRAIN, RTOL = 18000.0, 0.3, 0.01, 1e-8


def specimen(resolution_um: int):
    from febone.voxel import load_image, segment

    seg = segment(load_image(DATA), sigma=1.0, resample=FACTORS[resolution_um])
    return seg


def rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_febone(seg, preconditioner: str, cache: str | None = None,
               coarse_space: str = "pieces", rtol: float = RTOL) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    if cache:  # JAX's persistent compilation cache (the warm-cache row only)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    import numpy as np

    import febone as fb
    from febone.voxel.pieces import voxel_model
    from febone.voxel import (Multigrid, VoxelGrid, VoxelPCG, compile_voxel_solve,
                              voxel_reactions)

    base = rss()
    start = time.perf_counter()
    grid = VoxelGrid.create(seg.mask, seg.voxel_size)
    solver = VoxelPCG(rtol=rtol, preconditioner=preconditioner, max_iter=50_000,
                      multigrid=Multigrid(coarse_space=coarse_space))
    t0 = time.perf_counter()
    model = voxel_model(grid, max_coarse_nodes=solver.multigrid.max_coarse_nodes,
                        coarse_space=solver.multigrid.model_coarse_space)
    model_s = time.perf_counter() - t0  # index maps; the piece labelling of coarse_space='pieces'
    top, bottom = grid.plane_nodes("z", "max"), grid.plane_nodes("z", "min")
    delta = STRAIN * grid.shape[0] * grid.voxel_size[0]
    bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(bottom, "xyz").displace(top, z=-delta)
    E = np.full(grid.n_voxels, E_TISSUE)
    t0 = time.perf_counter()
    run, memory = compile_voxel_solve(model, E, bcs, nu=NU, solver=solver)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = run(E, bcs, nu=NU)
    solve_s = time.perf_counter() - t0
    force = -float(np.asarray(voxel_reactions(model, E, bcs, sol.u, nu=NU))[top, 2].sum())
    wall = time.perf_counter() - start
    return {"reaction_force_N": force, "iterations": int(sol.stats.iterations),
            "residual": float(sol.stats.residual), "wall_seconds": wall,
            "solve_seconds": solve_s, "compile_seconds": compile_s, "model_seconds": model_s,
            "solver_memory_bytes": memory, "peak_rss_bytes": rss(),
            "rss_growth_bytes": rss() - base, "n_dofs": model.n_dofs,
            "levels": [lev.n_nodes for lev in model.levels]}


def run_torchfem(seg) -> dict:
    import numpy as np
    import torch

    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(os.cpu_count() or 1)
    import torchfem.sparse as tsp
    from torchfem import Solid
    from torchfem.materials import IsotropicElasticity3D

    from febone.voxel import VoxelGrid

    iterations = []
    krylov = tsp._krylov

    def counting(A, b, method, stol, M):  # record torch-fem's own CG iteration count
        x, i = krylov(A, b, method, stol, M)
        iterations.append(int(i))
        return x, i

    tsp._krylov = counting
    grid = VoxelGrid.create(seg.mask, seg.voxel_size)
    nodes_np, cells_np = grid.node_points(), grid.voxel_nodes()  # VTK = torch-fem Hexa1 order
    top, bottom = grid.plane_nodes("z", "max"), grid.plane_nodes("z", "min")
    delta = STRAIN * grid.shape[0] * grid.voxel_size[0]
    base = rss()
    start = time.perf_counter()
    nodes = torch.tensor(nodes_np)
    model = Solid(nodes, torch.tensor(cells_np),
                  IsotropicElasticity3D(torch.full((grid.n_voxels,), E_TISSUE), NU))
    model.constraints[bottom, :] = True
    model.constraints[top, 2] = True
    disp = torch.zeros_like(nodes)
    disp[top, 2] = -delta
    model.displacements = disp
    # Newton tolerance 100x looser than the CG one: exactly one CG solve, as for febone
    u, f, *_ = model.solve(method="cg", preconditioner="amg", stol=RTOL, rtol=100 * RTOL)
    force = -float(f.reshape(-1, 3)[top, 2].sum())
    wall = time.perf_counter() - start
    return {"reaction_force_N": force, "iterations": int(sum(iterations)),
            "wall_seconds": wall, "solve_seconds": wall, "peak_rss_bytes": rss(),
            "rss_growth_bytes": rss() - base, "n_dofs": 3 * len(nodes_np),
            "torch_threads": torch.get_num_threads()}


def child(args) -> None:
    seg = specimen(args.resolution)
    if args.solver == "torchfem":
        out = run_torchfem(seg)
    else:
        out = run_febone(seg, "jacobi" if args.solver == "febone-jacobi" else "multigrid",
                         cache=args.cache, rtol=args.rtol,
                         coarse_space="trilinear" if "trilinear" in args.solver else "pieces")
    out.update(solver=args.solver, resolution_um=args.resolution, bone_voxels=int(seg.mask.sum()),
               bv_tv=float(seg.mask.mean()), threshold=seg.threshold)
    print("RESULT " + json.dumps(out), flush=True)


def machine() -> dict:
    import jax

    info = {"platform": platform.platform(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__}
    try:
        import torch
        info["torch"] = torch.__version__
        from importlib.metadata import version
        info["torch_fem"] = version("torch-fem")
        info["pyamg"] = version("pyamg")
    except Exception:  # noqa: BLE001
        pass
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                 open("/proc/cpuinfo") if line.startswith("model name"))
        info["load_average_at_start"] = os.getloadavg()
    except Exception:  # noqa: BLE001
        pass
    return info


def table(rows: list[dict]) -> str:
    lines = ["| resolution | solver | DOF | iterations | wall s | solve s | compile s | model s | "
             "F (N) | rel. diff vs torch-fem | solver memory B/DOF | peak RSS MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = {(r["resolution_um"]): r["reaction_force_N"] for r in rows if r["solver"] == "torchfem"}
    for r in rows:
        f_ref = ref.get(r["resolution_um"])
        diff = "" if f_ref is None else f"{abs(r['reaction_force_N'] - f_ref) / abs(f_ref):.1e}"
        mem = r.get("solver_memory_bytes")
        per_dof = "" if mem is None else f"{mem / r['n_dofs']:.0f}"
        lines.append(
            f"| {r['resolution_um']} µm | {r['solver']} | {r['n_dofs']:,} | {r['iterations']} | "
            f"{r['wall_seconds']:.1f} | {r['solve_seconds']:.1f} | "
            f"{r.get('compile_seconds', float('nan')):.1f} | "
            f"{r.get('model_seconds', float('nan')):.2f} | {r['reaction_force_N']:.9f} | {diff} | "
            f"{per_dof} | "
            f"{r['peak_rss_bytes'] / 2**20:.0f} | "
            f"{r.get('load_before', float('nan')):.1f}→{r.get('load_after', float('nan')):.1f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--resolutions", type=int, nargs="+", default=[78, 39], choices=sorted(FACTORS))
    p.add_argument("--solvers", nargs="+", default=["torchfem", "febone-mg", "febone-jacobi"],
                   choices=["torchfem", "febone-mg", "febone-jacobi", "febone-mg-warm",
                            "febone-mg-trilinear", "febone-mg-trilinear-warm"],
                   help="febone-mg: coarse levels per connected piece of bone (the default "
                        "of febone compress); febone-mg-trilinear: the structured trilinear "
                        "coarse levels; *-warm: with JAX's persistent compilation cache, "
                        "filled by an unrecorded first run in a fresh cache directory")
    p.add_argument("--rtol", type=float, default=RTOL,
                   help="CG tolerance of the febone rows (torch-fem keeps 1e-8)")
    p.add_argument("--json", type=Path, help="write all results and the machine here")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OPENBLAS_NUM_THREADS for NumPy/SciPy in the children")
    p.add_argument("--timeout", type=float, default=None, help="cap on each child run, s")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--solver", help=argparse.SUPPRESS)
    p.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    if not DATA.exists():
        print(f"missing {DATA}", file=sys.stderr)
        return 1
    rows, timeouts = [], []
    for res in args.resolutions:
        for solver in args.solvers:
            cmd = [sys.executable, __file__, "--child", "--solver", solver, "--resolution", str(res),
                   "--rtol", str(args.rtol)]
            env = dict(os.environ)
            if args.blas_threads is not None:
                env["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
            if solver.endswith("-warm"):
                cmd += ["--cache", tempfile.mkdtemp(prefix="febone-jax-cache-")]
                print(f"filling the compilation cache for {res} µm ...", file=sys.stderr,
                      flush=True)
                subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            print(f"running {solver} at {res} µm ...", file=sys.stderr, flush=True)
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                      timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"{solver} at {res} µm: stopped after the {args.timeout:g} s timeout",
                      file=sys.stderr, flush=True)
                timeouts.append({"solver": solver, "resolution_um": res,
                                 "timeout_seconds": args.timeout,
                                 "load_before": load_before, "load_after": os.getloadavg()[0]})
                continue
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                continue
            rows.append(json.loads(line[len("RESULT "):]))
            rows[-1].update(load_before=load_before, load_after=os.getloadavg()[0],
                            child_seconds=time.perf_counter() - t0)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    info = machine()
    print(table(rows))
    for t in timeouts:
        print(f"\n{t['solver']} at {t['resolution_um']} µm: no result within "
              f"{t['timeout_seconds']:g} s (load {t['load_before']:.1f} -> {t['load_after']:.1f})")
    print("\nmachine: " + json.dumps(info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": rows, "timeouts": timeouts},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

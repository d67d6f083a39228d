"""Strength of the bundled femurs on the voxel engine against the unstructured path.

Each (mesh, engine) runs in a fresh subprocess: ``febone.strength.strength`` twice on the same
bone (the first call compiles: *cold*; the second reuses the compiled programs and, on the
unstructured path, builds its AMG hierarchy again: *warm*), at the default tolerance
(rtol 1e-8), then once more at rtol 1e-12 for the equality check. Prints one markdown row per
run and the relative differences between the engines at rtol 1e-12.

    nice -n 19 python benchmarks/strength_voxel.py [--meshes femur_coarse_hex8 femur_fine_hex8]
        [--case sideways-fall] [--methods pistoia,strain-limit]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: a child that runs longer than this is killed and reported (with its Python stack, dumped by
#: faulthandler a minute earlier). Before febone.fe.post.principal_values, three of four voxel
#: children hung here under a load average of 6-9: two batched eigvalsh of the per-voxel
#: fields ran side by side and filled XLA's 2-thread intra-op pool, each waiting for the other
TIMEOUT_S = 900


def child(mesh_name: str, engine: str, case_name: str, methods: tuple) -> dict:
    import faulthandler

    faulthandler.dump_traceback_later(TIMEOUT_S - 60)
    from febone.precision import configure

    configure("float64")
    import numpy as np

    import febone as fb
    from febone.strength import CASES, strength
    from febone.voxel import VoxelPCG

    mesh = fb.read_mesh(ROOT / "meshes" / f"{mesh_name}.vtu")
    E = np.asarray(mesh.cell_data["E_MPa"], float).reshape(-1)
    case = CASES[case_name]()
    out = {"mesh": mesh_name, "engine": engine, "dofs": mesh.n_dofs}
    for label in ("cold", "warm"):
        t = time.perf_counter()
        r = strength(mesh, case, E, solver=engine, methods=methods)
        out[f"{label}_s"] = time.perf_counter() - t
        out[f"{label}_solve_s"] = r.solve_seconds
        out["iterations"] = r.iterations
        out["solver"] = r.solver
    tight = fb.PCG(rtol=1e-12) if engine == "unstructured" else VoxelPCG(rtol=1e-12)
    t = time.perf_counter()
    r = strength(mesh, case, E, solver=tight, methods=methods)
    out["tight_s"] = time.perf_counter() - t
    out["tight_iterations"] = r.iterations
    out["stiffness"] = r.stiffness_N_per_mm
    out["loads"] = r.fracture_load_N
    np.save(f"/tmp/strength_voxel_{mesh_name}_{engine}_u.npy", np.asarray(r.u))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meshes", nargs="+", default=["femur_coarse_hex8", "femur_fine_hex8"])
    p.add_argument("--case", default="sideways-fall")
    p.add_argument("--methods", default="pistoia,strain-limit")
    p.add_argument("--child", nargs=2, metavar=("MESH", "ENGINE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    methods = tuple(args.methods.split(","))
    if args.child:
        print(json.dumps(child(*args.child, args.case, methods)))
        return 0
    import numpy as np

    print("| mesh | DOF | engine | CG it. | cold s | warm s | warm solve s | rtol 1e-12: s, it. "
          "| load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for mesh in args.meshes:
        for engine in ("unstructured", "voxel"):
            load0 = os.getloadavg()[0]
            try:
                proc = subprocess.run([sys.executable, __file__, "--child", mesh, engine,
                                       "--case", args.case, "--methods", args.methods],
                                      capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired as err:
                print(f"| {mesh} | | {engine} | hung: killed after {TIMEOUT_S} s | | | | | |")
                print((err.stderr or b"")[-3000:], file=sys.stderr)
                return 1
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[mesh, engine] = r
            print(f"| {mesh} | {r['dofs']:,} | {r['solver']} | {r['iterations']} | "
                  f"{r['cold_s']:.1f} | {r['warm_s']:.2f} | {r['warm_solve_s']:.2f} | "
                  f"{r['tight_s']:.1f}, {r['tight_iterations']} | "
                  f"{load0:.1f} → {os.getloadavg()[0]:.1f} |", flush=True)
    for mesh in args.meshes:
        u, v = rows[mesh, "unstructured"], rows[mesh, "voxel"]
        uu = np.load(f"/tmp/strength_voxel_{mesh}_unstructured_u.npy")
        uv = np.load(f"/tmp/strength_voxel_{mesh}_voxel_u.npy")
        diffs = {"u": float(np.abs(uv - uu).max() / np.abs(uu).max()),
                 "stiffness": v["stiffness"] / u["stiffness"] - 1.0}
        diffs.update({k: v["loads"][k] / u["loads"][k] - 1.0 for k in u["loads"]})
        print(f"{mesh}: voxel vs unstructured at rtol 1e-12 (relative): "
              + ", ".join(f"{k} {d:+.1e}" for k, d in diffs.items())
              + f"; stiffness {u['stiffness']:.2f} N/mm, loads "
              + ", ".join(f"{k} {x:.1f} N" for k, x in u["loads"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

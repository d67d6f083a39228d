"""CT femur, sideways fall: febone (JAX) side by side with torch-fem (PyTorch) on the CPU.

Model (../shared/data/mitkgem_proximal_femur_tet10.vtu, 17,150 tet10, 77,610 dofs):
E per element from cell data ``E_MPa``, ν = 0.3; u_z = 0 on ``bc_distal_uz0``, u_x = 0 on
``bc_head_ux0``, u_x = −1 mm and u_y = 0 on ``bc_trochanter_ux_minus1_uy0``. Stiffness =
trochanter reaction force / 1 mm (≈ 9,799 N/mm).

Rows (each run twice in this process: *cold* = first call, includes JAX compilation and
torch's first-use costs; *warm* = second call, everything rebuilt from the mesh arrays):

* febone + AMG: ``FEModel.from_mesh`` + ``AMG.build`` (host assembly, pyamg smoothed
  aggregation), then ``fb.solve(..., preconditioner=amg)`` and the reaction forces.
* febone + AMG float32: the same with the hierarchy and V-cycle in float32.
* febone re-solve: ``fb.solve`` only, with a hierarchy built earlier (the remodelling
  loop, where the moduli change every step and the hierarchy is reused).
* febone + Jacobi: the default ``fb.solve`` (diagonal preconditioner).
* torch-fem 0.14: ``Solid`` + ``solve(method="cg", preconditioner="amg", stol=rtol)`` — its
  own assembly, pyamg smoothed aggregation and a Chebyshev V-cycle in torch.
* scipy + pyamg: ``scipy.sparse.linalg.cg`` with pyamg's V-cycle on the matrix assembled by
  ``febone.solve.amg.assemble_stiffness`` (reference when torch-fem is absent).

All CG solves stop at ‖r‖₂ ≤ rtol·‖b‖₂ on the free dofs (b = −K u_prescribed), rtol 1e-8
by default. torch-fem wraps its linear solve in a Newton loop; its Newton tolerance is set
100× looser than the CG tolerance so that exactly one CG solve runs, as for the others.

Usage (from the repository root)::

    python benchmarks/femur_vs_torchfem.py [--rtol 1e-8] [--no-jacobi] [--no-torchfem]
                                           [--markdown] [--blas-threads N]

``--blas-threads N`` sets OPENBLAS_NUM_THREADS for NumPy/SciPy's OpenBLAS before they load
(torch uses MKL and keeps its own threads). It matters for the dense Cholesky of the AMG
coarse level (1,614 unknowns): on an oversubscribed machine threaded OpenBLAS LAPACK can
run ~10× slower than one thread.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

if __name__ == "__main__" and "--blas-threads" in sys.argv:  # before NumPy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--blas-threads") + 1]

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import febone as fb  # noqa: E402
from febone.solve.amg import AMG, assemble_stiffness, rigid_body_modes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mitkgem_proximal_femur_tet10.vtu"
SETS = {"distal": "bc_distal_uz0", "head": "bc_head_ux0", "troch": "bc_trochanter_ux_minus1_uy0"}
NU = 0.3
_reactions = jax.jit(fb.reaction_forces)  # one compiled kernel instead of eager op-by-op


@dataclass
class Row:
    method: str
    call: str
    setup: float
    solve: float
    iterations: int
    fx: float
    note: str = ""

    @property
    def total(self) -> float:
        return self.setup + self.solve


# ----------------------------------------------------------------------------- machine
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or platform.machine()
    info = {"cpu": cpu, "logical cores": os.cpu_count(),
            "usable cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "jax device": fb.device_description(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "unset")}
    for pkg in ("numpy", "scipy", "pyamg", "torch", "torch-fem"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "absent"
    return info


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------- febone
def febone_model(mesh, E, ids):
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(E, NU, n_elements=mesh.n_elements)
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes).fix(ids["distal"], "z").fix(ids["head"], "x")
           .displace(ids["troch"], x=-1.0, y=0.0))
    return model, mat, bcs


def run_febone(mesh, E, ids, rtol, *, amg_options=None, call="cold") -> tuple[Row, object]:
    t0 = time.perf_counter()
    model, mat, bcs = febone_model(mesh, E, ids)
    t_model = time.perf_counter() - t0
    amg = None if amg_options is None else AMG.build(model, mat, bcs, **amg_options)
    t1 = time.perf_counter()
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=rtol), preconditioner=amg)
    fx = float(_reactions(model, mat, bcs, sol.u)[ids["troch"], 0].sum())
    t2 = time.perf_counter()
    if amg is None:
        name, note = "febone + Jacobi", f"FEModel {t_model:.2f} s"
    else:
        dt = amg_options.get("dtype") or "float64"
        name = "febone + AMG" + ("" if dt == "float64" else f" {dt}")
        note = f"FEModel {t_model:.2f} s + AMG.build {t1 - t0 - t_model:.2f} s; {amg.info}"
    return Row(name, call, t1 - t0, t2 - t1, int(sol.stats.iterations), fx, note), (model, mat, bcs, amg)


def run_febone_resolve(state, ids, rtol) -> Row:
    model, mat, bcs, amg = state
    t1 = time.perf_counter()
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=rtol), preconditioner=amg)
    fx = float(_reactions(model, mat, bcs, sol.u)[ids["troch"], 0].sum())
    return Row("febone re-solve, AMG reused", "warm", 0.0, time.perf_counter() - t1,
               int(sol.stats.iterations), fx, "hierarchy built by the previous row")


# ----------------------------------------------------------------------------- torch-fem
def torchfem_available() -> bool:
    try:
        import torch  # noqa: F401
        import torchfem  # noqa: F401
    except ImportError:
        return False
    return True


def run_torchfem(mesh, E, ids, rtol, *, call="cold") -> Row:
    import torch
    import torchfem.sparse as tsp
    from torchfem import Solid
    from torchfem.materials import IsotropicElasticity3D

    torch.set_default_dtype(torch.float64)
    # instrumentation only: time torch-fem's AMG setup and CG, record its iteration count
    record = {"amg": 0.0, "cg": 0.0, "iterations": 0}
    multigrid, krylov = tsp._multigrid, tsp._krylov

    def timed_multigrid(*a, **k):
        t = time.perf_counter()
        out = multigrid(*a, **k)
        record["amg"] += time.perf_counter() - t
        return out

    def timed_krylov(*a, **k):
        t = time.perf_counter()
        x, it = krylov(*a, **k)
        record["cg"] += time.perf_counter() - t
        record["iterations"] += it
        return x, it

    tsp._multigrid, tsp._krylov = timed_multigrid, timed_krylov
    try:
        t0 = time.perf_counter()
        material = IsotropicElasticity3D(E=torch.tensor(E), nu=torch.full((len(E),), NU))
        model = Solid(torch.tensor(mesh.points), torch.tensor(mesh.cells, dtype=torch.int64), material)
        con, dis = model.constraints, model.displacements
        con[torch.as_tensor(ids["distal"]), 2] = True
        con[torch.as_tensor(ids["head"]), 0] = True
        tr = torch.as_tensor(ids["troch"])
        con[tr, 0] = True
        con[tr, 1] = True
        dis[tr, 0] = -1.0
        model.constraints, model.displacements = con, dis
        t1 = time.perf_counter()
        _, f, *_ = model.solve(method="cg", preconditioner="amg", stol=rtol, rtol=100 * rtol)
        fx = float(f[tr, 0].sum())
        t2 = time.perf_counter()
    finally:
        tsp._multigrid, tsp._krylov = multigrid, krylov
    rest = (t2 - t1) - record["amg"] - record["cg"]
    note = (f"solve = integration+assembly+BCs {rest:.2f} s + pyamg/AMG setup {record['amg']:.2f} s "
            f"+ CG {record['cg']:.2f} s; torch threads {torch.get_num_threads()}")
    return Row("torch-fem CG + pyamg", call, t1 - t0, t2 - t1, record["iterations"], fx, note)


# ----------------------------------------------------------------------------- scipy + pyamg
def run_scipy(mesh, E, ids, rtol, *, call="cold") -> Row:
    import pyamg
    import scipy.sparse.linalg as spla

    t0 = time.perf_counter()
    model, mat, bcs = febone_model(mesh, E, ids)
    fixed = np.asarray(bcs.fixed).ravel()
    u_d = np.where(fixed, np.asarray(bcs.values).ravel(), 0.0)
    K = assemble_stiffness(model, mat).tocsr()
    A = assemble_stiffness(model, mat, bcs).tocsr()
    b = np.where(fixed, 0.0, -(K @ u_d))
    t_asm = time.perf_counter() - t0
    # torch-fem's pyamg settings, pyamg's own symmetric Gauss-Seidel V-cycle
    ml = pyamg.smoothed_aggregation_solver(A, B=rigid_body_modes(model.points), strength=None,
                                           smooth="jacobi", improve_candidates=None, max_coarse=333)
    t1 = time.perf_counter()
    count = [0]
    x, info = spla.cg(A, b, rtol=rtol, atol=0.0, M=ml.aspreconditioner(cycle="V"), maxiter=10_000,
                      callback=lambda _: count.__setitem__(0, count[0] + 1))
    if info != 0:
        print(f"warning: scipy CG returned info={info}", file=sys.stderr)
    u = x + u_d
    fx = float((K @ u).reshape(-1, 3)[ids["troch"], 0].sum())
    t2 = time.perf_counter()
    return Row("scipy CG + pyamg", call, t1 - t0, t2 - t1, count[0], fx,
               f"assembly {t_asm:.2f} s + pyamg setup {t1 - t0 - t_asm:.2f} s (single-threaded)")


# ----------------------------------------------------------------------------- report
def table(rows: list[Row], ref: float, ref_name: str, markdown: bool) -> str:
    head = ["method", "call", "setup s", "solve s", "total s", "CG it", "trochanter Fx N",
            f"rel. diff vs {ref_name}"]
    body = [[r.method, r.call, f"{r.setup:.2f}", f"{r.solve:.2f}", f"{r.total:.2f}",
             str(r.iterations), f"{r.fx:.4f}", f"{(r.fx - ref) / ref:+.1e}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), "  ".join("-" * w for w in widths)]
                     + [fmt.format(*b) for b in body])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="femur .vtu (default: %(default)s)")
    p.add_argument("--rtol", type=float, default=1e-8, help="CG relative tolerance (all methods)")
    p.add_argument("--no-jacobi", action="store_true", help="skip febone + Jacobi (~1,300 iterations)")
    p.add_argument("--no-torchfem", action="store_true", help="behave as if torch-fem were absent")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OPENBLAS_NUM_THREADS for NumPy/SciPy (default: leave unset)")
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"femur mesh not found at {args.data}; pass --data PATH", file=sys.stderr)
        return 2

    logging.basicConfig(format="    [%(name)s] %(message)s")
    logging.getLogger("febone.solve.amg").setLevel(logging.INFO)
    import pyamg  # noqa: F401  (imported up front, like torch-fem's, so no row pays for it)
    import scipy.sparse  # noqa: F401

    info = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print(f"load average at start: {loadavg()}")
    t = time.perf_counter()
    mesh = fb.read_mesh(args.data)
    E = np.asarray(mesh.cell_data["E_MPa"], dtype=np.float64)
    ids = {k: fb.node_set(mesh, v) for k, v in SETS.items()}
    print(f"mesh: {mesh.n_elements} {mesh.cell_type}, {mesh.n_nodes} nodes, {3 * mesh.n_nodes} dofs; "
          f"read in {time.perf_counter() - t:.2f} s (common to all rows, not counted); rtol {args.rtol:g}")

    rows: list[Row] = []

    def add(row: Row):
        rows.append(row)
        print(f"  {row.method} ({row.call}): setup {row.setup:.2f} s, solve {row.solve:.2f} s, "
              f"{row.iterations} it, Fx {row.fx:.4f} N  [{row.note}]", flush=True)

    for dtype in ("float64", "float32"):
        opts = {"dtype": dtype}
        add(run_febone(mesh, E, ids, args.rtol, amg_options=opts, call="cold")[0])
        row, state = run_febone(mesh, E, ids, args.rtol, amg_options=opts, call="warm")
        add(row)
        if dtype == "float64":
            add(run_febone_resolve(state, ids, args.rtol))
        del state
    have_tf = torchfem_available() and not args.no_torchfem
    if have_tf:
        for call in ("cold", "warm"):
            add(run_torchfem(mesh, E, ids, args.rtol, call=call))
    else:
        print("torch-fem is not installed (or --no-torchfem): comparing with scipy CG + pyamg "
              "on the same assembled matrix instead")
    for call in ("cold", "warm"):
        add(run_scipy(mesh, E, ids, args.rtol, call=call))
    if not args.no_jacobi:
        for call in ("cold", "warm"):
            add(run_febone(mesh, E, ids, args.rtol, call=call)[0])

    ref_rows = [r for r in rows if r.method.startswith("torch-fem")] or \
        [r for r in rows if r.method.startswith("scipy")]
    ref = ref_rows[-1].fx
    print(f"\nload average at end: {loadavg()}")
    print(f"stiffness (trochanter reaction / 1 mm): {abs(ref):.2f} N/mm ({ref_rows[-1].method})\n")
    print(table(rows, ref, "torch-fem" if have_tf else "scipy+pyamg", args.markdown))
    for r in rows:
        if r.note:
            print(f"- {r.method} ({r.call}): {r.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

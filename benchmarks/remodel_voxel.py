"""Remodelling on the matrix-free multigrid voxel engine against the unstructured path.

    python benchmarks/remodel_voxel.py                                   # fine femur, 10 y
    python benchmarks/remodel_voxel.py --unstructured-years 1            # peer scaled from 1 y
    python benchmarks/remodel_voxel.py --build-h 0.6 --solvers voxel --years 10 \
        --out /tmp/femur06                                               # 0.6 mm femur (~2 M dofs)

The run of ``benchmarks/remodel_femur.py`` (protocol ``untreated-menopause``, monthly
mechanical steps, habitual stance at 2.5 BW, yearly outputs: densitometry and the Pistoia
fracture loads of stance and sideways fall; cell model adaptive Rosenbrock rtol 1e-4; FE rtol
1e-8, outputs 1e-10), once with ``solver="voxel"`` (habitual and strength solves on the
matrix-free voxel engine, its geometric multigrid set up from the current moduli inside every
compiled solve) and once with ``solver="unstructured"`` (element-by-element operator, pyamg
hierarchy built on the host, refreshed on the device at each output). Each engine runs in its
own process, so the peak resident memory (``ru_maxrss``) is that run's; it is printed per dof
(the process's whole footprint: Python, XLA, the mesh, the cell state, the solver).

``--build-h H`` builds the femur at voxel size H mm at run time (``mesh_bone(femur(), H,
"hexahedron")``, the generator of the bundled femurs: 1.25 mm is ``femur_fine_hex8``) instead
of reading a bundled file. ``--unstructured-years N`` runs the peer for N years only and scales
its time to ``--years`` (set-up + N-year steps and outputs × years/N). With ``--out`` each
run writes its jsonl as it goes (a long run that is stopped keeps its finished years), and the
progress of every output is printed (years, seconds, femoral-neck aBMD change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _machine() -> str:
    return (f"{platform.machine()} {os.cpu_count()} cores, load {_load():.1f}, "
            f"Python {platform.python_version()}")


def _mesh(bone: str, build_h: float | None):
    import febone as fb
    from febone.bones import bundled_path

    if build_h is None:
        return fb.read_mesh(bundled_path(bone))
    from febone.bones.femur import femur
    from febone.bones.meshing import mesh_bone

    return mesh_bone(femur(), float(build_h), "hexahedron")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(bone: str, solver: str, years: float, protocol: str, build_h, out,
            queue_days=None, cache=None) -> dict:
    """One remodelling run in this process; the figures as a dict. ``cache``: the persistent
    compilation cache folder ("off": none), as ``febone run`` uses it by default."""
    import jax

    jax.config.update("jax_enable_x64", True)
    cache_entries = None
    if cache != "off":
        from febone.compile_cache import enable_compilation_cache

        folder = enable_compilation_cache(cache)
        cache_entries = (sum(1 for _ in folder.iterdir()) if folder is not None and folder.exists()
                         else None)
    from febone.remodel.coupling import FE_COUPLING
    from febone.remodel.model import daily_table
    from febone.remodel.settings import settings_for, step_schedule
    from febone.remodel.simulation import remodel
    from febone.scenario import protocol as make_protocol, with_duration

    t0 = time.perf_counter()
    mesh = _mesh(bone, build_h)
    t_mesh = time.perf_counter() - t0
    sc = with_duration(make_protocol(protocol), years)
    settings = settings_for(sc, solver=solver)
    if queue_days:              # the mineral age queue: (queue_days, n_elements) floats
        from dataclasses import replace

        settings = replace(settings, mineral_params=replace(settings.mineral_params,
                                                            queue_days=int(queue_days)))
    days = int(step_schedule(years, settings.steps_per_year)[-1])
    inputs = daily_table(sc.patient, sc.treatments, FE_COUPLING, days)
    start = time.perf_counter()

    def progress(k, n, rec):
        if rec is None and n > 0:               # a step: its cost, for runs that stop early
            print(f"#     step {k}/{n}  {time.perf_counter() - start:8.1f} s  (cpu "
                  f"{_cpu():8.1f} s)", file=sys.stderr, flush=True)
        if rec is not None:
            fn = rec["regions"].get("femoral_neck", {}).get("change_pct", float("nan"))
            print(f"#   {solver} {rec['time_years']:5.2f} y  {time.perf_counter() - start:8.1f} s"
                  f"  (cpu {_cpu():8.1f} s)  FN aBMD {fn:+.4f} %  load {_load():.1f}  peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
                  file=sys.stderr, flush=True)

    label = f"{bone}-{solver}"
    res = remodel(mesh, inputs, years=years, settings=settings, label=label, out_dir=out,
                  progress=progress)
    t = res.description["timing"]
    n_out = len(res.records) - 1
    fn = [r["regions"].get("femoral_neck", {}).get("change_pct", float("nan"))
          for r in res.records]
    return {"bone": bone, "solver": solver, "elements": mesh.n_elements, "dofs": mesh.n_dofs,
            "years": years, "mesh_s": t_mesh, "setup_s": t["setup_seconds"],
            "steps_s": t["step_seconds"], "step_s": t["step_seconds"] / t["steps"],
            "outputs_s": t["output_seconds"],
            "output_s": t["output_seconds"] / max(n_out, 1), "total_s": res.wall_seconds,
            "fn_change_pct": fn, "cpu_s": _cpu(), "queue_days": settings.mineral_params.queue_days,
            "cache_entries_before": cache_entries,
            "peak_rss_MB": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024.0, "load_end": _load()}


def _child(args, solver: str, years: float) -> dict:
    cmd = [sys.executable, __file__, "--one", solver, "--bones", args.bones,
           "--years", repr(years), "--protocol", args.protocol]
    if args.build_h is not None:
        cmd += ["--build-h", repr(args.build_h)]
    if args.out:
        cmd += ["--out", args.out]
    if args.queue_days:
        cmd += ["--queue-days", str(args.queue_days)]
    if args.compilation_cache:
        cmd += ["--compilation-cache", args.compilation_cache]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {solver} run failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bones", default="femur_fine_hex8",
                    help="bundled bone (a label only with --build-h)")
    ap.add_argument("--build-h", type=float, default=None,
                    help="build the femur at this voxel size, mm, at run time")
    ap.add_argument("--years", type=float, default=10.0)
    ap.add_argument("--unstructured-years", type=float, default=None,
                    help="run the unstructured peer this long and scale it to --years")
    ap.add_argument("--solvers", default="voxel,unstructured")
    ap.add_argument("--protocol", default="untreated-menopause")
    ap.add_argument("--out", default=None, help="folder for the runs' jsonl and checkpoints")
    ap.add_argument("--queue-days", type=int, default=None,
                    help="mineral age queue length, days (default 1000: 8 kB per element; "
                         "shorter for large meshes)")
    ap.add_argument("--compilation-cache", default=None,
                    help="persistent compilation cache folder, as febone run uses one (default: "
                         "febone's user cache folder; 'off': none). A run on a cache that "
                         "already holds the run's programs skips their compilation")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build_h is not None and args.bones == "femur_fine_hex8":
        args.bones = f"femur_{args.build_h:g}mm_hex8"
    if args.one:
        r = run_one(args.bones, args.one, args.years, args.protocol, args.build_h, args.out,
                    args.queue_days, args.compilation_cache)
        print(json.dumps(r), flush=True)
        return 0

    import jax

    print(f"# machine: {_machine()}; jax {jax.__version__}; float64; "
          f"protocol {args.protocol}; {args.years:g} years", flush=True)
    rows = []
    for solver in args.solvers.split(","):
        years = args.years
        if solver == "unstructured" and args.unstructured_years:
            years = args.unstructured_years
        r = _child(args, solver, years)
        scale = args.years / years
        r["total_10y_s"] = r["setup_s"] + r["mesh_s"] + scale * (r["steps_s"] + r["outputs_s"])
        r["scaled_from_years"] = years if scale != 1 else None
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n| solver | bone | elements | dofs | years run | set-up (s) | step (s) | "
          f"output (s) | total for {args.years:g} y (s) | CPU (s) | peak RSS (MB) | bytes/dof | "
          f"FN aBMD change (%) | load at end | compilation cache entries before |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        scaled = (f" (scaled from {r['scaled_from_years']:g} y)"
                  if r["scaled_from_years"] else "")
        print(f"| {r['solver']} | {r['bone']} | {r['elements']:,} | {r['dofs']:,} | "
              f"{r['years']:g} | {r['setup_s'] + r['mesh_s']:.1f} | {r['step_s']:.3f} | "
              f"{r['output_s']:.2f} | {r['total_10y_s']:.1f}{scaled} | {r['cpu_s']:.0f} | "
              f"{r['peak_rss_MB']:.0f} | "
              f"{1024 ** 2 * r['peak_rss_MB'] / r['dofs']:.0f} | "
              f"{r['fn_change_pct'][-1]:+.3f} | {r['load_end']:.1f} | "
              f"{'off' if r['cache_entries_before'] is None else r['cache_entries_before']} |")
    if len(rows) == 2:
        a, b = rows
        print(f"\n# {a['solver']} / {b['solver']}: {b['total_10y_s'] / a['total_10y_s']:.1f}x "
              f"faster ({a['total_10y_s']:.0f} s against {b['total_10y_s']:.0f} s for "
              f"{args.years:g} years); FN aBMD change at the end differs by "
              f"{abs(a['fn_change_pct'][-1] - b['fn_change_pct'][-1]) if a['years'] == b['years'] else float('nan'):.2e} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Remodelling run time: a 10-year FE-coupled run with monthly mechanical steps on the bundled
femurs, and the cell model side by side with the reference implementation ``bone-models``.

    python benchmarks/remodel_femur.py                          # coarse and fine femur, 10 y
    python benchmarks/remodel_femur.py --bones femur_coarse_hex8 --years 2 --markdown

For each bone it prints the set-up time (steady state, posed models, AMG hierarchies, the
baseline measurement), the FE time per mechanical step (habitual-load solves), the cell-model
time per simulated day and per element-day (adaptive Rosenbrock + mineral ageing), the output
time per output (densitometry, two strength analyses), and the femoral-neck aBMD change.

Peer: bone-models 0.1.0 (MIT, pure Python, ``scipy.integrate.solve_ivp`` on one element) on the
Pivonka 2008 PTH case (200 days), against febone's vectorised cell model on the same case for
1 element and for as many elements as the coarse femur has: the figure to compare is the cost
per element-day.
"""
from __future__ import annotations

import argparse
import os
import platform
import time


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()} {os.cpu_count()} cores, load {load:.1f}, "
            f"{platform.python_version()}")


def run_bone(bone: str, years: float, protocol: str):
    import febone as fb
    from febone.bones import bundled_path
    from febone.remodel.coupling import FE_COUPLING
    from febone.remodel.model import daily_table
    from febone.remodel.settings import settings_for, step_schedule
    from febone.remodel.simulation import remodel
    from febone.scenario import protocol as make_protocol, with_duration

    sc = with_duration(make_protocol(protocol), years)
    mesh = fb.read_mesh(bundled_path(bone))
    settings = settings_for(sc)
    days = int(step_schedule(years, settings.steps_per_year)[-1])
    inputs = daily_table(sc.patient, sc.treatments, FE_COUPLING, days)
    res = remodel(mesh, inputs, years=years, settings=settings, label=bone)
    t = res.description["timing"]
    n_out = len(res.records) - 1
    fn = res.records[-1]["regions"].get("femoral_neck", {}).get("change_pct", float("nan"))
    return {"bone": bone, "elements": mesh.n_elements, "dofs": mesh.n_dofs, "years": years,
            "setup_s": t["setup_seconds"], "step_s": t["step_seconds"] / t["steps"],
            "step_per_day_ms": 1e3 * t["step_seconds"] / t["days"],
            "output_per_output_s": t["output_seconds"] / max(n_out, 1),
            "total_s": res.wall_seconds, "fn_change_pct": fn}


def cell_model_peer(n_elements: int, days: int = 200):
    """bone-models' Pivonka PTH case on one element vs febone's on 1 and n elements."""
    import jax.numpy as jnp
    import numpy as np
    from febone.remodel import Drives, PIVONKA_2008, simulate, steady_state

    out = {}
    try:
        from scipy.integrate import solve_ivp
        from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1
        from bone_models.models.pivonka_model import Pivonka_Model

        m = Pivonka_Model(Pivonka_Load_Case_1())
        x0 = m.calculate_steady_state()
        t0 = time.perf_counter()
        solve_ivp(lambda t, x: m.bone_cell_population_model(x, t), [0, days], x0,
                  rtol=1e-8, atol=1e-8)
        out["bone-models (1 element)"] = (1, time.perf_counter() - t0)
    except ImportError:
        out["bone-models (not installed)"] = (1, float("nan"))

    def drives(t, s, m):
        return Drives(P_PTH=jnp.where(t <= 100.0, 1000.0, 0.0))

    for n in (1, n_elements):
        s0 = steady_state(PIVONKA_2008, f_bm=np.full(n, 0.15))
        simulate(PIVONKA_2008, s0, drives, days=days, rtol=1e-5).final.f_bm.block_until_ready()
        t0 = time.perf_counter()
        simulate(PIVONKA_2008, s0, drives, days=days, rtol=1e-5).final.f_bm.block_until_ready()
        out[f"febone ({n} elements, warm)"] = (n, time.perf_counter() - t0)
    return {k: (n, s, 1e6 * s / (n * days)) for k, (n, s) in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bones", default="femur_coarse_hex8,femur_fine_hex8")
    ap.add_argument("--years", type=float, default=10.0)
    ap.add_argument("--protocol", default="untreated-menopause")
    ap.add_argument("--markdown", action="store_true", help="print markdown table rows")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import febone as fb

    print(f"# machine: {_machine()}; jax {jax.__version__}; {fb.device_description()}; float64")
    if args.markdown:
        print("| bone | elements | years | set-up (s) | step: cells + FE (s) | per day (ms) | "
              "output (s) | total (s) | FN aBMD change (%) |")
        print("|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for b in args.bones.split(","):
        r = run_bone(b.strip(), args.years, args.protocol)
        rows.append(r)
        if args.markdown:
            print(f"| {r['bone']} | {r['elements']:,} | {r['years']:g} | {r['setup_s']:.1f} | "
                  f"{r['step_s']:.3f} | {r['step_per_day_ms']:.1f} | "
                  f"{r['output_per_output_s']:.2f} | "
                  f"{r['total_s']:.1f} | {r['fn_change_pct']:+.1f} |", flush=True)
        else:
            print(r, flush=True)
    n = rows[0]["elements"]
    print(f"# cell model, Pivonka 2008 PTH case, 200 days ({_machine()}):")
    for name, (k, s, per) in cell_model_peer(n).items():
        print(f"  {name:32s} {s:8.3f} s   {per:10.3f} µs per element-day")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

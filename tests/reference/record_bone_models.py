"""Record reference curves from ``bone-models`` (PyPI, MIT; Modiz et al.) for the cell-model tests.

Run once and commit the output (it drives bone-models' own pure-Python solvers: ~9 min for the
three cases and ~45 min for the --tight pair on a loaded 2-core x86_64 CPU)::

    pip install bone-models==0.1.0
    python tests/reference/record_bone_models.py          # -> tests/reference/bone_models_*.npz
    python tests/reference/record_bone_models.py --tight --cases pmo,denosumab

Cases (bone-models 0.1.0 code, unmodified equations and load cases):

* ``pivonka2008_pth``: ``Pivonka_Model`` with ``Pivonka_Load_Case_1`` (PTH injection
  I_P = 1000 pM/day for 0 ≤ t ≤ 100 days), solved over 0..200 days with bone-models' own tolerances
  (rtol = atol = 1e-8), sampled daily; BV change by bone-models' trapezoid rule on a 0.05-day grid.
* ``martinez_reina2019_pmo``: ``Martinez_Reina_Model`` with ``Martinez_Reina_Load_Case`` but the
  first denosumab dose moved past the end (postmenopausal osteoporosis only).
* ``martinez_reina2019_denosumab``: the load case as shipped (PMO from day 0, 60 mg denosumab every
  183 days from day 365).

The Martínez-Reina cases run bone-models' day-by-day loop (``solve_ivp`` per day, ageing queue
updated at the end of each day). bone-models calls ``solve_ivp`` there with scipy's default
tolerances (rtol 1e-3, atol 1e-6 on concentrations of ~1e-4 pM); ``--tight`` re-runs the same code
with rtol = 1e-9, atol = 1e-14 to measure how much of any difference is the reference's own error.
Stored every ``--every`` days (default 2; float32 curves, which is ample for 1 % comparisons):
t, OBp, OBa, OCa (pM), BV/TV (%), and the mean mineral content v_m after that day's queue update;
the denosumab cases also store bone-models' PK table (ng/mL, float64). Pivonka: daily, float64.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def record_pivonka(days: int = 200) -> dict:
    from scipy.integrate import solve_ivp
    from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1
    from bone_models.models.pivonka_model import Pivonka_Model

    m = Pivonka_Model(Pivonka_Load_Case_1())
    x0 = m.calculate_steady_state()
    fine = np.linspace(0.0, days, 20 * days + 1)
    # the same call as Base_Model.solve_bone_cell_population_model, plus an output grid
    sol = solve_ivp(lambda t, x: m.bone_cell_population_model(x, t), [0, days], x0,
                    rtol=1e-8, atol=1e-8, t_eval=fine)
    bv = np.asarray(m.calculate_bone_volume_fraction_change(sol.t, sol.y, x0, 100.0))
    daily = slice(None, None, 20)
    return dict(t=sol.t[daily], OBp=sol.y[0][daily], OBa=sol.y[1][daily], OCa=sol.y[2][daily],
                bv_percent=bv[daily], k_res=m.parameters.bone_volume.resorption_rate,
                steady_state=np.asarray(x0))


def record_martinez_reina(days: int, denosumab: bool, tight: bool) -> dict:
    import bone_models.models.martinez_reina_model as mrm
    from bone_models.load_cases.martinez_reina_load_cases import Martinez_Reina_Load_Case

    if tight:
        original = mrm.solve_ivp

        def solve_ivp(*args, **kwargs):
            kwargs.setdefault("rtol", 1e-9)
            kwargs.setdefault("atol", 1e-14)
            return original(*args, **kwargs)

        mrm.solve_ivp = solve_ivp
    try:
        lc = Martinez_Reina_Load_Case()
        if not denosumab:
            lc.start_denosumab_treatment = lc.end_denosumab_treatment
        m = mrm.Martinez_Reina_Model(lc)
        vm = []
        update = m.update_ageing_queue

        def recording_update(OBa, OCa, f):    # initialise_ageing_queue calls it too: trimmed below
            update(OBa, OCa, f)
            vm.append(m.calculate_average_mineral_content(None, None, 100.0 * f, None))

        m.update_ageing_queue = recording_update
        res = m.solve_bone_cell_population_model([0, days])
    finally:
        if tight:
            mrm.solve_ivp = original
    t, OBp, OBa, OCa, _, bv = (np.asarray(r) for r in res)
    # keep the last sample of every whole day (the loop appends every solver point)
    keep = np.flatnonzero(np.isclose(t, np.round(t), atol=1e-12, rtol=0.0))
    keep = keep[np.r_[np.diff(t[keep]) != 0, True]]
    n_init = m.parameters.mineralisation.length_of_queue
    vm = np.asarray(vm[n_init:])                 # one per day of the loop, day 0 first
    out = dict(t=t[keep], OBp=OBp[keep], OBa=OBa[keep], OCa=OCa[keep], bv_percent=bv[keep],
               v_m=vm[: keep.size], tissue_density=np.asarray(m.bone_material_density)[: keep.size],
               proliferation_OBp=m.parameters.proliferation_rate.OBp,
               sed_steady_state=m.parameters.mechanics.strain_energy_density_steady_state)
    if denosumab:
        out["pk_t"] = np.asarray(m.time_for_denosumab)
        out["pk_c_ng_ml"] = np.asarray(m.denosumab_concentration_over_time)
    return out


CURVES = ("t", "OBp", "OBa", "OCa", "bv_percent", "v_m", "tissue_density")


def compact(data: dict, every: int) -> dict:
    """Keep every ``every``-th day of the daily curves, as float32 (the committed files)."""
    out = dict(data)
    for k in CURVES:
        if k in out:
            out[k] = np.asarray(out[k])[::every].astype(np.float32)
    out["t"] = np.asarray(data["t"])[::every]            # exact days
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=4000, help="Martínez-Reina horizon (days)")
    ap.add_argument("--tight", action="store_true", help="tight solve_ivp tolerances (check run)")
    ap.add_argument("--cases", default="pivonka,pmo,denosumab")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--every", type=int, default=2, help="Martínez-Reina sampling interval (days)")
    args = ap.parse_args()
    suffix = "_tight" if args.tight else ""
    for case in args.cases.split(","):
        t0 = time.perf_counter()
        if case == "pivonka":
            data, name = record_pivonka(), "pivonka2008_pth"
        elif case in ("pmo", "denosumab"):
            data = compact(record_martinez_reina(args.days, case == "denosumab", args.tight),
                           args.every)
            name = f"martinez_reina2019_{case}"
        else:
            raise SystemExit(f"unknown case {case!r}; choose from pivonka, pmo, denosumab")
        path = args.out / f"bone_models_{name}{suffix}.npz"
        np.savez_compressed(path, **data)
        print(f"{name}: {time.perf_counter() - t0:.1f} s -> {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

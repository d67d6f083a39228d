"""FE-level correction of the coupling: the menopausal targets with the finite elements in the loop.

The coupling constants (:data:`~febone.remodel.coupling.DEFAULT_COUPLING`) are fitted FE-free
(:mod:`febone.calibration.site`): every element of a site carries a fixed share of the force,
so as it loses bone its strain energy rises and the cell model's mechanical feedback brakes the
loss. In the FE model the load redistributes: trabecular elements that lose density beside the
stiffer cortex keep their strain, so their strain energy density *falls* with their modulus,
the feedback reads disuse, and the same constants lost 15.3 % femoral-neck aBMD over the SWAN
window (−10.9 % FE-free, −9.1 ± 2.5 % published).

Two changes brought the FE model to the targets then:

* the stimulus the cells sense became SED/E (= ε_eff²/2, :class:`~.mechanics.MechanicalStimulus`
  ``quantity="strain"``), which an element keeps when it softens at unchanged deformation, so a
  heterogeneous bone is stable at homeostasis even without a dead band
  (tests/test_remodel_loop.py) and the loss of the whole neck still raises it; a narrow band
  (``lazy_zone=0.02``) remains, against overshoot of the disuse term at homeostasis;
* one constant refitted with FE runs: the RANKL production per unit of oestrogen deficiency,
  ``P_RANKL_E2`` ×:data:`FE_RANKL_E2_SCALE` (1.5 under SED/E).

Since 648dad1 the stimulus is the effective strain ε_eff = √(2·SED/E): stable in the same way,
and under a fixed force its feedback is that of the FE-free closure, where SED/E doubled it and
braked late-postmenopausal loss (docs/calibration_fe.md, last section). The FE-free constants
then carry over (:data:`FE_RANKL_E2_SCALE` = 1); this module still evaluates and refits the
scale for any stimulus (``--stimulus``).

The FE runs are the SWAN window (a woman of 46 whose final menstrual period is at 51,
untreated): the bundled coarse femur (femoral-neck aBMD, 10 years) and the bundled coarse
vertebra (whole-vertebra vBMD as the lumbar spine, 12 years, for the Michigan rates up to
FMP + 7). Both start premenopausal at the FE model's steady state, as the calibration's runs do
after their premenopausal spin-up. The fit minimises ½Σ((model − target)/band)² over the six
menopausal targets these two runs give, by a parabola through the costs at three scales of
``P_RANKL_E2`` and one run at its minimum. ``python -m febone.calibration.fe`` redoes
it; the evaluations and the table are in docs/calibration_fe.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from .site import TARGETS
from ..remodel.coupling import DEFAULT_COUPLING, CouplingParameters

__all__ = ["FE_TARGET_NAMES", "evaluate", "fit"]

log = logging.getLogger(__name__)


#: The science.md §8 targets the two FE runs give, and (bone, years from the run start).
_FE_WINDOWS = {
    "SWAN FN, FMP −5 → +5 y": ("femur_coarse_hex8", "femoral_neck", 0.0, 10.0, 1.0),
    "SWAN LS, FMP −5 → +5 y": ("vertebra_coarse_hex8", None, 0.0, 10.0, 1.0),
    "SWAN LS, FMP −1 → +2 y": ("vertebra_coarse_hex8", None, 4.0, 7.0, 1.0),
    "Michigan LS rate, FMP −2 → 0 y": ("vertebra_coarse_hex8", None, 3.0, 5.0, 2.0),
    "Michigan LS rate, FMP 0 → +2 y": ("vertebra_coarse_hex8", None, 5.0, 7.0, 2.0),
    "Michigan LS rate, FMP +2 → +7 y": ("vertebra_coarse_hex8", None, 7.0, 12.0, 5.0),
}
FE_TARGET_NAMES = tuple(_FE_WINDOWS)
_YEARS = {"femur_coarse_hex8": 10.0, "vertebra_coarse_hex8": 12.0}


def _swan_scenario(bone: str, years: float):
    from ..scenario import load_scenario

    return load_scenario(f"""
name = "swan-window"
description = "SWAN window: a woman of 46, final menstrual period at 51, untreated"
[patient]
sex = "female"
age = "46 years"
menopause_age = "51 years"
[bone]
mesh = "{bone}"
[simulation]
duration = "{years:g} years"
output_interval = "1 year"
""")


@dataclass(frozen=True)
class FEEvaluation:
    """FE values of the menopausal targets for one coupling.

    Attributes:
        values: {target name: model value (% or %/y)}.
        measure: {bone: (n_out,) the site's measure (:func:`_site_density`)}; times: {bone:
            (n_out,) years}.
        seconds: wall time of the runs, s.
    """

    values: dict
    measure: dict
    times: dict
    seconds: float


def _site_density(result, mesh, region: str | None):
    """(n_out,) the site's measure over the outputs: the femoral neck's DXA-like aBMD (g/cm²),
    or (``region`` None) the whole-vertebra vBMD (mg/cm³), the regions' vBMD weighted by their
    volumes: the vertebra's outputs have no AP projection, and this is the measure of the lumbar
    spine in the FE-free calibration (mean mineral density of the whole vertebra)."""
    from ..fe.model import FEModel

    regions = result.summary()["regions"]
    if region is not None:
        return np.asarray(regions[region]["abmd_g_cm2"], dtype=float)
    vol = np.asarray(FEModel.from_mesh(mesh).volumes)
    total = num = 0.0
    for name, r in regions.items():
        v = float(vol[np.asarray(mesh.cell_data[f"region_{name}"], dtype=bool)].sum())
        num = num + v * np.asarray(r["vbmd_mg_cm3"], dtype=float)
        total += v
    return num / total


def evaluate(coupling: CouplingParameters = DEFAULT_COUPLING, *, progress=None,
             **settings_overrides) -> FEEvaluation:
    """Run the two SWAN-window FE runs with ``coupling`` (and :class:`RemodelSettings`
    overrides, e.g. ``lazy_zone=0.02``) and return the six target values."""
    from ..mesh.io import read_mesh
    from ..remodel.runner import run_scenario

    start = time.perf_counter()
    measure, times = {}, {}
    for bone, years in _YEARS.items():
        scenario = _swan_scenario(bone, years)
        res = run_scenario(scenario, coupling=coupling, progress=progress, **settings_overrides)
        (arm,) = res.arms.values()
        region = next((w[1] for w in _FE_WINDOWS.values() if w[0] == bone))
        measure[bone] = _site_density(arm, read_mesh(scenario.bone.path()), region)
        times[bone] = np.asarray(arm.time_years, dtype=float)
    return FEEvaluation(_window_values(times, measure), measure, times,
                        time.perf_counter() - start)


def _window_values(times: dict, measure: dict) -> dict:
    """{target: % change (or %/y) of the bone's measure between the window's years}."""
    values = {}
    for name, (bone, _, t0, t1, per) in _FE_WINDOWS.items():
        a = np.interp([t0, t1], times[bone], measure[bone])
        values[name] = 100.0 * (a[1] / a[0] - 1.0) / per
    return values


def _cost(values: dict) -> float:
    targets = {t.name: t for t in TARGETS}
    return 0.5 * sum(((v - targets[n].value) / targets[n].band) ** 2 for n, v in values.items())


def fit(scales=(1.0, 1.5, 2.0), *, progress=None, **settings_overrides):
    """Fit the scale of ``P_RANKL_E2``: FE evaluations at ``scales``, and with three or more, a
    parabola in log(scale) through the costs and one evaluation at its minimum (clipped to the
    scanned range). Returns (best scale, {scale: FEEvaluation})."""
    evals = {}
    for s in scales:
        evals[s] = evaluate(_scaled(s), progress=progress, **settings_overrides)
        log.info("scale %.3f: cost %.3f %s", s, _cost(evals[s].values), evals[s].values)
    if len(scales) >= 3:
        x = np.log(np.asarray(scales))
        y = np.asarray([_cost(evals[s].values) for s in scales])
        a, b, _ = np.polyfit(x, y, 2)
        best = float(np.exp(np.clip(-b / (2 * a), x.min(), x.max()))) if a > 0 else \
            float(scales[int(np.argmin(y))])
        best = round(best, 3)
        if best not in evals:
            evals[best] = evaluate(_scaled(best), progress=progress, **settings_overrides)
    best = min(evals, key=lambda s: _cost(evals[s].values))
    return best, evals


def _scaled(scale: float) -> CouplingParameters:
    return replace(DEFAULT_COUPLING, P_RANKL_E2=DEFAULT_COUPLING.P_RANKL_E2 * scale)


def _table(best, evals) -> str:
    """Markdown table of FE evaluations ({label: FEEvaluation or {target: value}}), with the
    band check of ``best``."""
    targets = {t.name: t for t in TARGETS}
    vals = {k: (e.values if isinstance(e, FEEvaluation) else e) for k, e in evals.items()}
    labels = list(vals)
    head = ("| target | published | band | " + " | ".join(str(k) for k in labels)
            + f" | inside ({best}) |")
    lines = [head, "|" + "---|" * (4 + len(labels))]
    for n in FE_TARGET_NAMES:
        t = targets[n]
        row = [n, f"{t.value:+.1f} {t.unit}", f"±{t.band:g}"]
        row += [f"{vals[k][n]:+.2f}" for k in labels]
        row.append("yes" if abs(vals[best][n] - t.value) <= t.band else "**no**")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| cost ½Σ((model − target)/band)² | | | "
                 + " | ".join(f"{_cost(vals[k]):.3f}" for k in labels) + " | |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0],
                    help="scales of P_RANKL_E2 to evaluate (a parabola fit adds its minimum)")
    ap.add_argument("--stimulus", default=None, help="RemodelSettings.stimulus override")
    ap.add_argument("--lazy-zone", type=float, default=None, help="RemodelSettings.lazy_zone")
    ap.add_argument("--json", help="append every evaluation (one JSON line each) to this file")
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)      # an entry point: float64 like the CLI
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    overrides = {k: v for k, v in (("stimulus", args.stimulus), ("lazy_zone", args.lazy_zone))
                 if v is not None}
    start = time.perf_counter()
    best, evals = fit(tuple(args.scales), **overrides)
    wall = time.perf_counter() - start
    print(f"best scale of P_RANKL_E2: {best:g} (P_RANKL_E2 = "
          f"{DEFAULT_COUPLING.P_RANKL_E2 * best:.4g}); {len(evals)} evaluations, {wall:.0f} s")
    print(_table(best, {s: e for s, e in evals.items()}))
    if args.json:
        with open(args.json, "a") as fh:
            for s, e in evals.items():
                fh.write(json.dumps({"scale": s, **overrides, "values": e.values,
                                     "cost": _cost(e.values), "seconds": e.seconds,
                                     "measure": {b: a.tolist() for b, a in e.measure.items()},
                                     "times": {b: t.tolist() for b, t in e.times.items()}})
                         + "\n")


if __name__ == "__main__":
    main()

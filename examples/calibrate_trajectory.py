"""Calibration: fit the E2-deficit RANKL coupling to a postmenopausal BMD trajectory (Adam on
reverse-mode gradients through the FE-coupled run).

Target: the Michigan cohort's lumbar-spine loss rate in the two years after the final period,
−3.3 %/year (science.md §8), i.e. −1.65 % at 6 months ... −6.6 % at 2 years, band ±1 %/year.
Fitted: ``coupling:P_RANKL_E2`` (RANKL production at full E2 deficit, pM/day) and
``coupling:adapt_E2`` (adaptation of the response), log-parametrised. The FE-free fit of all
coupling constants against every published target is :mod:`febone.calibration.site`; this is
the same question asked of a whole bone with its mechanical feedback.

    python examples/calibrate_trajectory.py             # vertebra, 2 years (long)
    python examples/calibrate_trajectory.py --small     # small specimen, 6 months
"""
import argparse

import jax
import numpy as np

RATE_PCT_PER_YEAR = -3.3
BAND_PCT_PER_YEAR = 1.0


def main(small: bool = False, out=None, steps: int | None = None):
    import febone as fb
    from febone.bones import bundled_path
    from febone.remodel.patient import Patient
    from febone.remodel.settings import RemodelSettings
    from febone.remodel.mechanics import HabitualLoad
    from febone.study import StudySettings, build_study
    from febone.study.calibrate import Adam, fit_trajectory
    from febone.study.scenario import specimen_study

    woman = Patient.create(age_years=51.0, menopause_age_years=51.0)
    if small:
        study = specimen_study(woman, years=0.5)
        region, times, steps = "all", np.array([0.25, study.years]), steps or 6
    else:
        mesh = fb.read_mesh(bundled_path("vertebra_coarse_hex8"))
        rs = RemodelSettings(habitual=(HabitualLoad("vertebral-compression", 1.0, 1.0),),
                             law="morgan-vertebra", cell_rtol=None)   # a study's fixed steps
        study = build_study(mesh, woman, years=2.0,
                            settings=StudySettings(remodel=rs,
                                                   strength_case="vertebral-compression"))
        region, times, steps = "vertebral_body", np.array([0.5, 1.0, 1.5, study.years]), steps or 20
    target = RATE_PCT_PER_YEAR * times
    band = BAND_PCT_PER_YEAR * times
    fit = fit_trajectory(study, ["coupling:P_RANKL_E2", "coupling:adapt_E2"], times, target,
                         band, region=region, steps=steps, opt=Adam(lr=0.1))
    print(f"{'t (y)':>6} {'target %':>9} {'start %':>9} {'fitted %':>9}")
    for t, y, a, b in zip(times, target, fit.model_start, fit.model):
        print(f"{t:6.2f} {y:9.2f} {a:9.2f} {b:9.2f}")
    print(f"loss {fit.loss_start:.3g} → {fit.loss:.3g}; {fit.start} → {fit.fitted} "
          f"({fit.seconds:.0f} s)")
    return {"times": times.tolist(), "target": target.tolist(),
            "model_start": fit.model_start.tolist(), "model": fit.model.tolist(),
            "loss_start": fit.loss_start, "loss": fit.loss, "start": fit.start,
            "fitted": fit.fitted, "history": fit.history}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    import logging

    # progress: one line per Adam step (loss and parameter values) from febone.study.calibrate
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("febone.study.calibrate").setLevel(logging.INFO)
    main(small=a.small)

"""One remodelling model, two drivers: ``febone run``'s host loop (febone.remodel.remodel) and
the differentiable study's ``lax.scan`` (febone.study.forward) step the same pure function on
the same days, so the same scenario gives the same trajectories through both.

The only differences are named in febone.remodel.settings (fixed daily cell steps in a study;
the smooth fracture-load surrogate): with the host loop set to fixed daily steps too, the two
agree to the solvers' round-off. The host loop runs without its preconditioner refresh at the
outputs (a host-only speed-up that changes the CG iterates), so that on the bundled femur (the
voxel engine) both set the multigrid hierarchy up inside every solve.
"""
import json
from dataclasses import replace

import numpy as np
import pytest

from febone.remodel import run_scenario
from febone.remodel.settings import STUDY_DIFFERENCES, step_schedule
from febone.scenario import protocol
from febone.scenario.builders import with_duration
from febone.study import forward
from febone.study.scenario import study_from_scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def six_months():
    """A hypogonadal man on testosterone + anastrozole (the issue's example), bundled coarse
    femur: half a year of his history replayed (two quarterly steps), then six monthly steps (30
    and 31 days), an output after every step."""
    sc = with_duration(protocol("trt-anastrozole"), 0.5)
    sc = replace(sc, output_interval_years=1 / 12, spinup_years=0.5,
                 strength=replace(sc.strength, cases=("sideways-fall",), methods=("pistoia",)))
    study_kw = {k: v for k, (v, _) in STUDY_DIFFERENCES.items()}
    run = run_scenario(sc, refresh=False, **study_kw)
    (arm,) = run.arms.values()
    study = study_from_scenario(sc, stiffness_trajectory=True)
    out = forward(study, {})
    return sc, arm, study, out


def test_same_days(six_months):
    sc, arm, study, _ = six_months
    days = [r["day"] for r in arm.records]
    assert days == list(study.output_days) == list(step_schedule(0.5, 12))
    assert study.history_steps == 2 and study.days[2] == 183
    assert sorted(set(np.diff(days))) == [30, 31]          # both step lengths are exercised
    assert study.years == pytest.approx(arm.records[-1]["time_years"], abs=1e-12)


def test_regional_vbmd_and_stiffness_trajectories_agree(six_months):
    """Every region's vBMD after every step, and the sideways-fall stiffness, to 1e-8
    relative: the same step function, the outcome solves at CG rtol 1e-10. The changes
    themselves are far larger than that (the comparison is not of two constants)."""
    _, arm, study, out = six_months
    recs = arm.records
    for i, region in enumerate(study.regions):
        name, _, comp = region.partition("/")          # regions, then their compartments
        key = f"{comp}_vbmd_mg_cm3" if comp else "vbmd_mg_cm3"
        v_run = np.array([r["regions"][name][key] for r in recs])
        v_study = v_run[0] * (1.0 + np.asarray(out.bmd_trajectory)[:, i] / 100.0)
        np.testing.assert_allclose(v_study, v_run[1:], rtol=1e-8, err_msg=region)
        assert np.max(np.abs(v_run[1:] / v_run[0] - 1.0)) > 1e-4, region
    k_run = np.array([r["stiffness_N_per_mm"]["sideways-fall"] for r in recs])
    np.testing.assert_allclose(float(out.baseline_stiffness), k_run[0], rtol=1e-8)
    np.testing.assert_allclose(np.asarray(out.stiffness_trajectory), k_run[1:], rtol=1e-8)
    assert abs(k_run[-1] / k_run[0] - 1.0) > 1e-4


def test_fracture_loads_agree(six_months):
    """The study's exact Pistoia load equals the host loop's (same solve, same quantile) to
    1e-8; its smooth surrogate (soft quantile of width tau = 2 %) within 2 %."""
    _, arm, _, out = six_months
    f_run = np.array([arm.records[k]["fracture_load_N"]["sideways-fall"]["pistoia"]
                      for k in (0, -1)])
    np.testing.assert_allclose(np.asarray(out.pistoia_load), f_run, rtol=1e-8)
    np.testing.assert_allclose([float(out.baseline_fracture_load), float(out.fracture_load)],
                               f_run, rtol=0.02)


@pytest.mark.heavy
def test_sensitivity_reports_the_run_baseline_and_duration(tmp_path):
    """``febone sensitivity SCENARIO.toml`` and ``febone run SCENARIO.toml``: the same duration
    and the same baseline sideways-fall fracture load (exact Pistoia) and stiffness."""
    from febone.cli import main

    toml = tmp_path / "trt.toml"
    toml.write_text('name = "trt, one month"\nprotocols = ["trt"]\n[simulation]\n'
                    'duration = "1 month"\noutput_interval = "1 month"\nspinup = "3 months"\n'
                    '[strength]\ncases = ["sideways-fall"]\nmethods = ["pistoia"]\n')
    run_json, sens_json = tmp_path / "run.json", tmp_path / "sens.json"
    assert main(["run", str(toml), "--json", str(run_json), "--no-pictures",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["sensitivity", str(toml), "--param", "density_scale",
                 "--json", str(sens_json)]) == 0
    run, sens = json.loads(run_json.read_text()), json.loads(sens_json.read_text())
    # the baseline follows three months of replayed history, integrated adaptively (rtol 1e-4)
    # by febone run and in fixed daily steps by the study (STUDY_DIFFERENCES): measured 1.1e-6
    # apart; without a history they are the same solve (1e-8)
    assert sens["years"] == pytest.approx(run["time_years"][-1], abs=1e-12)
    assert sens["days"] == 30
    base = sens["baseline"]
    np.testing.assert_allclose(base["pistoia_load_N"],
                               run["fracture_load_N"]["sideways-fall"]["pistoia"][0], rtol=1e-5)
    np.testing.assert_allclose(base["stiffness_N_per_mm"],
                               run["stiffness_N_per_mm"]["sideways-fall"][0], rtol=1e-5)

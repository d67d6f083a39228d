"""The patient's history replayed before time 0 (febone.remodel.history) in the FE loop."""
from dataclasses import replace

import numpy as np
import pytest

import febone as fb
from febone.remodel.coupling import FE_COUPLING
from febone.remodel.history import replayed, spinup_years
from febone.remodel.mechanics import HabitualLoad
from febone.remodel.model import daily_table
from febone.remodel.patient import Patient
from febone.remodel.settings import RemodelSettings, calendar
from febone.remodel.simulation import remodel
from febone.remodel.treatments import Treatment


def _specimen():
    """A 10 × 10 × 15 mm trabecular specimen (12 hex8, 0.3–0.5 g/cm³), the whole as a region."""
    mesh = fb.box_mesh((2, 2, 3), (10.0, 10.0, 15.0))
    rho = 0.3 + 0.2 * np.random.default_rng(7).random(mesh.n_elements)
    whole = np.ones(mesh.n_elements, np.uint8)      # a femoral-neck mask too: it has a DXA
    return replace(mesh, cell_data={"density_g_cm3": rho, "region_all": whole,
                                    "region_femoral_neck": whole})


SETTINGS = RemodelSettings(habitual=(HabitualLoad("compression", 1.0, 0.5),),
                           preconditioner="jacobi", law="morgan-vertebra",
                           strength_cases=("compression",))


def _run(patient, treatments, years, history):
    n_days = int(calendar(years, SETTINGS, history)[0][-1])
    inputs = daily_table(*replayed(patient, treatments, history), FE_COUPLING, n_days)
    return remodel(_specimen(), inputs, years=years, settings=SETTINGS, history_years=history)


def _vbmd(res):
    return np.array([r["regions"]["all"]["vbmd_mg_cm3"] for r in res.records])


def test_history_lengths():
    """Women from five years before the final period, men and GH deficiency fifteen years,
    never before 30, back to the earliest past treatment; whole quarterly steps."""
    woman = Patient.create(age_years=64.0, menopause_age_years=51.0)
    assert spinup_years(woman) == 18.0
    assert spinup_years(replace(woman, age_years=40.0)) == 0.0
    assert spinup_years(Patient.create(sex="male", age_years=60.0)) == 15.0
    assert spinup_years(Patient.create(sex="male", age_years=35.0)) == 5.0
    past = Treatment.create("alendronate", 70.0, "mg", 7, start_years=-20.3, stop_years=-15.0)
    assert spinup_years(woman, (past,)) == 20.5
    # a history shorter than a past treatment is refused with the fix
    from types import SimpleNamespace
    from febone.remodel.runner import arm_history_years

    arm = SimpleNamespace(patient=woman, treatments=(past,), spinup_years=10.0)
    with pytest.raises(ValueError, match="replay at least 20.3 years"):
        arm_history_years(arm, SETTINGS)
    assert arm_history_years(replace_ns(arm, spinup_years=None), SETTINGS) == 20.5


def replace_ns(ns, **kw):
    from types import SimpleNamespace

    return SimpleNamespace(**{**vars(ns), **kw})


@pytest.mark.slow
def test_started_at_64_equals_a_run_from_46_continued():
    """A woman of 64, thirteen years past her final period, started with her history replayed
    (eighteen years of quarterly steps) loses the same bone over her next year as the same woman
    run monthly from 46 and continued, to 0.5 points of vBMD change (the coarser mechanical
    steps of the history change the stimulus by at most a quarter's loss, ~0.3 %); an AI
    started at 64 likewise. Without the history she would start at a young homeostasis and
    lose several times as much."""
    woman = Patient.create(age_years=64.0, menopause_age_years=51.0)
    ai = (Treatment.create("anastrozole", 1.0, "mg", 1),)
    changes = {}
    for treatments in ((), ai):
        started = _vbmd(_run(woman, treatments, 1.0, spinup_years(woman)))
        young = replace(woman, age_years=46.0)
        shifted = tuple(replace(t, start_years=18.0) for t in treatments)
        whole = _vbmd(_run(young, shifted, 19.0, 0.0))
        change_started = 100 * (started[-1] / started[0] - 1)
        change_whole = 100 * (whole[-1] / whole[-2] - 1)
        assert abs(change_started - change_whole) < 0.5, (treatments, change_started,
                                                          change_whole)
        # the bone at 64 is the bone the long run reached (18 years of loss), not the mesh's
        assert started[0] == pytest.approx(whole[-2], rel=0.01)
        assert whole[-2] < 0.9 * whole[0]
        changes[bool(treatments)] = change_started
    assert changes[True] < changes[False] < 0          # the AI adds to the untreated loss
    fresh = _vbmd(_run(woman, (), 1.0, 0.0))
    assert 100 * (fresh[-1] / fresh[0] - 1) < 2 * changes[False]


def test_baseline_dxa_scales_the_bone_to_the_measured_abmd():
    """A measured aBMD at time 0 (here 80 % of what the bundled specimen would show after the
    replayed history of a woman of 60): the density is scaled uniformly before the history, so
    the model's aBMD at time 0 equals the measurement (to the fit's 0.1 %) and the scale is
    about 0.8 (aBMD is nearly proportional to the density)."""
    woman = Patient.create(age_years=60.0, menopause_age_years=51.0)
    history = 2.0
    n_days = int(calendar(0.25, SETTINGS, history)[0][-1])
    inputs = daily_table(*replayed(woman, (), history), FE_COUPLING, n_days)
    base = remodel(_specimen(), inputs, years=0.25, settings=SETTINGS, history_years=history)
    a0 = base.records[0]["regions"]["femoral_neck"]
    target = 0.8 * a0["abmd_g_cm2"]
    res = remodel(_specimen(), inputs, years=0.25, settings=SETTINGS, history_years=history,
                  baseline_abmd={"femoral_neck": target})
    a1 = res.records[0]["regions"]["femoral_neck"]
    assert a1["abmd_g_cm2"] == pytest.approx(target, rel=1e-3)
    assert res.description["density_scale"] == pytest.approx(0.8, rel=0.03)
    assert a1["vbmd_mg_cm3"] == pytest.approx(0.8 * a0["vbmd_mg_cm3"], rel=0.03)
    with pytest.raises(ValueError, match="no such region"):
        remodel(_specimen(), inputs, years=0.25, settings=SETTINGS, history_years=history,
                baseline_abmd={"total_hip": 0.7})


def test_baseline_dxa_scenario_keys(tmp_path):
    """``[bone] femoral_neck_t_score`` converts through the young-adult reference (NHANES III:
    0.858 ± 0.120 g/cm²); an aBMD is taken as given; both for one site, a spine value on a femur
    or an implausible number are errors naming the key."""
    from febone.scenario import load_scenario
    from febone.scenario.units import ScenarioError

    def load(extra):
        p = tmp_path / "s.toml"
        p.write_text('protocols = ["untreated-menopause"]\n[bone]\nmesh = "femur_coarse_hex8"\n'
                     + extra)
        return load_scenario(p)

    sc = load("femoral_neck_t_score = -2.5\ntotal_hip_abmd = 0.75\n")
    assert dict(sc.bone.baseline_abmd) == pytest.approx({"femoral_neck": 0.858 - 2.5 * 0.120,
                                                         "total_hip": 0.75})
    for extra, key in (("femoral_neck_t_score = -2\nfemoral_neck_abmd = 0.7\n", "femoral_neck"),
                       ("lumbar_spine_abmd = 0.9\n", "bone"),
                       ("total_hip_abmd = 7.5\n", "total_hip_abmd")):
        with pytest.raises(ScenarioError, match=key):
            load(extra)

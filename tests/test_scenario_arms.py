"""Several arms in one scenario file ([[arms]], issue 16): each arm is the file's shared tables
plus its own treatments, patient keys, lifestyle and protocols; Scenario.runs() yields one
scenario per arm so febone run runs them unchanged."""
import json

import pytest

from febone.scenario import ScenarioError, build_scenario, load_scenario, with_duration

TRIAL = """\
name = "freedom-like"

[patient]
age = "72 years"
menopause_age = "50 years"

[[treatments]]
drug = "calcium"
dose = "1000 mg/day"

[simulation]
duration = "3 years"

[[arms]]
name = "placebo"

[[arms]]
name = "denosumab"
description = "Prolia every 6 months"
[[arms.treatments]]
drug = "denosumab"
dose = "60 mg"
interval = "every 6 months"
[arms.patient]
body_mass = "60 kg"
"""


def _drugs(s):
    return [t.drug for t in s.treatments]


def test_two_arms_share_the_file_and_add_their_own():
    s = load_scenario(TRIAL)
    placebo, dmab = s.runs()
    assert [a.name for a in s.runs()] == ["placebo", "denosumab"]
    assert _drugs(placebo) == ["calcium"] and _drugs(dmab) == ["calcium", "denosumab"]
    d = dmab.treatments[1]
    assert (d.dose, d.unit, d.interval_days) == (60.0, "mg", pytest.approx(365.25 / 2))
    # patient override only in its own arm; the rest of the patient is the file's
    assert placebo.patient.body_mass_kg == 70.0 and dmab.patient.body_mass_kg == 60.0
    assert dmab.patient.age_years == placebo.patient.age_years == 72.0
    assert dmab.description == "Prolia every 6 months"
    for arm in s.runs():
        assert arm.duration_years == 3.0 and arm.bone == s.bone and arm.runs() == (arm,)
    # the top-level scenario holds the shared treatments only
    assert _drugs(s) == ["calcium"]


def test_arms_round_trip_and_change_duration():
    s = load_scenario(TRIAL)
    again = load_scenario(s.to_toml())
    assert again == s and again.digest == s.digest
    assert [a.name for a in again.runs()] == ["placebo", "denosumab"]
    longer = with_duration(s, 5)
    assert [a.duration_years for a in longer.runs()] == [5.0, 5.0]
    assert len(s.to_dict()["arms"]) == 2
    # a different arm treatment is a different run
    other = load_scenario(TRIAL.replace('dose = "60 mg"', 'dose = "30 mg"'))
    assert other.digest != s.digest


def test_arm_lifestyle_and_protocols():
    s = load_scenario("""
[patient]
age = "60 years"
[lifestyle]
exercise = "weight-bearing"
[simulation]
duration = "2 years"
[[arms]]
name = "control"
[[arms]]
name = "training"
[arms.lifestyle]
exercise = "high-impact"
[[arms]]
name = "cal-d"
protocols = ["calcium-vitamin-d"]
""")
    control, training, cald = s.runs()
    assert _drugs(control) == ["exercise-weight-bearing"]
    assert _drugs(training) == ["exercise-high-impact"]   # an arm's lifestyle key replaces the file's
    assert sorted(_drugs(cald)) == ["calcium", "exercise-weight-bearing", "vitamin-d"]
    assert cald.protocols == ("calcium-vitamin-d",) and control.protocols == ()


def test_compare_and_arms_together():
    s = load_scenario("""
[patient]
age = "60 years"
[simulation]
duration = "1 year"
compare = ["untreated-menopause"]
[[arms]]
name = "alendronate"
[[arms.treatments]]
drug = "alendronate"
dose = "70 mg"
""")
    assert [a.name for a in s.runs()] == ["untreated-menopause", "alendronate"]


def _err(text):
    with pytest.raises(ScenarioError) as e:
        load_scenario(text)
    return str(e.value)


def test_unknown_key_in_an_arm_names_it_the_line_and_the_closest_key():
    msg = _err(TRIAL.replace('name = "denosumab"', 'name = "denosumab"\ntreatment = 1'))
    assert "arms[1].treatment" in msg and "did you mean 'treatments'" in msg
    assert "line 19" in msg


def test_unknown_key_in_an_arm_treatment():
    msg = _err(TRIAL.replace('interval = "every 6 months"', 'intervall = "every 6 months"'))
    assert "arms[1].treatments[0].intervall" in msg and "interval" in msg
    assert "line 23" in msg


def test_bad_dose_in_an_arm_points_at_its_line():
    msg = _err(TRIAL.replace('dose = "60 mg"', 'dose = "60 g"'))
    assert "arm 'denosumab'" in msg and "arms[1].treatments[0].dose" in msg
    assert "line 22" in msg and "check the unit" in msg


def test_duplicate_arm_names():
    msg = _err(TRIAL.replace('name = "denosumab"', 'name = "placebo"'))
    assert "arms[1].name" in msg and "two arms are called 'placebo'" in msg


def test_arm_named_like_a_compared_protocol():
    msg = _err("""
[simulation]
compare = ["early-hrt"]
[[arms]]
name = "early-hrt"
""")
    assert "two arms are called 'early-hrt'" in msg


def test_empty_arms_and_arms_without_names():
    assert "is empty" in _err("arms = []\n")
    msg = _err("[[arms]]\n[[arms.treatments]]\ndrug = \"alendronate\"\ndose = \"70 mg\"\n")
    assert "arms[0].name" in msg and "missing" in msg
    assert "array of tables" in _err('arms = "placebo"\n')
    assert "array of tables" in _err('arms = ["placebo"]\n')


def test_arm_patient_and_protocol_errors():
    assert "arms[0].patient.agee" in _err('[[arms]]\nname = "a"\n[arms.patient]\nagee = 60\n')
    assert "arms[0].protocols[0]" in _err('[[arms]]\nname = "a"\nprotocols = ["nope"]\n')
    assert "arms[0].lifestyle.sport" in _err('[[arms]]\nname = "a"\n[arms.lifestyle]\nsport = 1\n')


def test_an_arm_that_repeats_a_shared_treatment_is_refused():
    msg = _err(TRIAL.replace('drug = "denosumab"\ndose = "60 mg"\ninterval = "every 6 months"',
                             'drug = "calcium"\ndose = "500 mg/day"'))
    assert "arm 'denosumab'" in msg and "arms[1].treatments[0]" in msg and "treatments[0]" in msg


def test_validation_table_is_accepted_and_checked():
    s = load_scenario("[validation]\ncitation = \"x\"\n")
    assert s.runs() == (s,)
    assert "must be a table" in _err('validation = "x"\n')


def test_build_scenario_document_with_arms():
    doc = json.loads(load_scenario(TRIAL).document)
    s = build_scenario(doc, source="t")
    assert [a.name for a in s.runs()] == ["placebo", "denosumab"]


@pytest.mark.slow
def test_two_arm_run_gives_one_result_per_arm():
    """febone's runner runs the arms unchanged: one result each, the drug arm differs."""
    from febone.remodel.runner import run_scenario

    # spinup = 0: the arms start from the bundled bone (the history has its own tests)
    s = load_scenario(TRIAL.replace('duration = "3 years"', 'duration = "2 months"\n'
                                    'output_interval = "2 months"\nspinup = 0')
                      + "\n[strength]\ncases = []\n")
    res = run_scenario(s)
    assert list(res.arms) == ["placebo", "denosumab"]
    summary = res.summary()
    assert set(summary["protocols"]) == {"placebo", "denosumab"}
    ctx = {n: summary["protocols"][n]["markers"]["ctx_rel"][-1] for n in ("placebo", "denosumab")}
    assert ctx["denosumab"] < ctx["placebo"]   # the antiresorptive lowers resorption markers

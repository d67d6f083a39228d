"""Bad scenario files: one test per kind of mistake, each checking the key path, line and fix."""
import pytest

from febone.scenario import ScenarioError, load_scenario


def _err(text, key=None, match=None, line=None):
    with pytest.raises(ScenarioError) as e:
        load_scenario(text)
    err = e.value
    assert isinstance(err, ValueError)
    if key is not None:
        assert err.key == key, str(err)
    if match is not None:
        assert match in str(err), str(err)
    if line is not None:
        assert err.line == line, str(err)
    return err


def test_unknown_key_suggests_the_closest():
    _err('[patient]\nsex = "female"\nmenopase_age = 50\n', "patient.menopase_age",
         "did you mean 'menopause_age'?", line=3)
    _err('[patient]\nage_years = 50\n', "patient.age_years", "did you mean 'age'?", line=2)
    _err('[simualtion]\nduration = 5\n', "simualtion", "did you mean 'simulation'?", line=None)
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nintervall = "183 days"\n',
         "treatments[0].intervall", "did you mean 'interval'?", line=4)
    _err('[[load_cases]]\ncase = "stance"\nangle = 20\n', "load_cases[0].angle",
         "did you mean 'angle_deg'?")


def test_wrong_types():
    _err('[patient]\ngh_deficient = "yes"\n', "patient.gh_deficient", "true or false")
    _err('[patient]\nage = true\n', "patient.age", "expected a number")
    _err('patient = 5\n', "patient", "must be a table")
    _err('[[load_cases]]\ncase = "stance"\nweight = "half"\n', "load_cases[0].weight")
    _err('[bone]\nnu = 0.5\n', "bone.nu", "(0, 0.5)")
    _err('treatments = ["denosumab"]\n', "treatments", "array of tables")


def test_wrong_units_list_the_accepted_ones():
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\n\n[[treatments]]\n'
         'drug = "alendronate"\ndose = 70\nunit = "IU"\n', "treatments[1].unit",
         "use one of mg, g, ug", line=8)
    _err('[[treatments]]\ndrug = "estradiol-transdermal"\ndose = "50 ug"\n', "treatments[0].dose",
         "ug/day")  # a patch dose is a rate
    _err('[simulation]\nduration = "10 decades"\n', "simulation.duration", "accepted: day, days")
    _err('[patient]\nbody_mass = "70 stone"\n', "patient.body_mass", "accepted: kg, g, lb")
    _err('[[load_cases]]\ncase = "stance"\nmagnitude = "3 g"\n', "load_cases[0].magnitude",
         "BW, N, kN")
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nunit = "ug"\n', "treatments[0].unit",
         "give the unit once")
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\ninterval = "fortnightly-ish"\n',
         "treatments[0].interval", "'twice weekly'")


def test_malformed_toml_names_the_line():
    err = _err('name = "x"\n[patient\nsex = "female"\n', "", "not valid TOML")
    assert "line 2" in str(err)


def test_male_patient_with_a_menopause_protocol_or_key():
    _err('protocols = ["untreated-menopause"]\n[patient]\nsex = "male"\n', "patient.sex",
         "protocol 'untreated-menopause' is for a female patient", line=3)
    _err('[patient]\nsex = "male"\nmenopause_age = 50\n', "patient.menopause_age",
         "no menopause")
    _err('[patient]\nsex = "male"\n[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\n'
         'start_after_menopause = 1\n', "treatments[0].start_after_menopause", "use start")


def test_stop_before_start_and_conflicting_times():
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nstart = "3 years"\nstop = 2\n',
         "treatments[0].stop", "stop must come after start", line=5)
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nstop = 2\nduration = 2\n',
         "treatments[0].duration", "not both")
    _err('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nstart = 1\nstart_after_menopause = 1\n',
         "treatments[0].start_after_menopause", "not both")


def test_treatment_starting_after_the_run_ends():
    _err('[simulation]\nduration = "5 years"\n[[treatments]]\ndrug = "denosumab"\n'
         'dose = "60 mg"\nstart = "6 years"\n', "treatments[0].start",
         "denosumab starts at 6 years, when the run (5 years) is over; start it earlier or "
         "run longer than 6 years (febone run --years, or [simulation] duration", line=6)


def test_start_after_menopause_before_the_run():
    _err('protocols = ["early-hrt"]\n[patient]\nage = 56\n',
         "protocol early-hrt: treatments[0].start_after_menopause", "4 years before")


def test_load_case_weights_must_sum_to_one():
    _err('[[load_cases]]\ncase = "stance"\nweight = 0.7\n[[load_cases]]\ncase = "sideways-fall"\n'
         'weight = 0.2\nmagnitude = "1 BW"\n', "load_cases", "sum to 0.9")
    _err('[[load_cases]]\ncase = "stance"\n[[load_cases]]\nname = "b"\ncase = "stance"\n',
         "load_cases[0].weight", "give each a weight")
    _err('[[load_cases]]\ncase = "stance"\nweight = 0.5\n[[load_cases]]\ncase = "stance"\n'
         'weight = 0.5\n', "load_cases[1].name", "distinct name")
    _err('[[load_cases]]\ncase = "sideways-fall"\n', "load_cases[0].magnitude", "no default")


def test_one_drug_twice_with_different_regimens():
    _err('protocols = ["trt-anastrozole"]\n[[treatments]]\ndrug = "anastrozole"\n'
         'dose = "0.5 mg"\ninterval = "daily"\n', "treatments[0]",
         "interval_days 3.5 vs 1.0")
    _err('[[treatments]]\ndrug = "estradiol-oral"\ndose = "1 mg"\n[[treatments]]\n'
         'drug = "estradiol-oral"\ndose = "2 mg"\n', "treatments[1]", "dose 1.0 vs 2.0")
    _err('[[treatments]]\ndrug = "alendronate"\ndose = "70 mg"\n[[treatments]]\n'
         'drug = "alendronate"\ndose = "70 mg"\n', "treatments[1]", "doses would add")
    # the same drug in two courses that do not overlap is fine
    s = load_scenario('[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nstop = 3\n'
                      '[[treatments]]\ndrug = "denosumab"\ndose = "60 mg"\nstart = 5\n')
    assert [t.start_years for t in s.treatments] == [0.0, 5.0]
    _err('[lifestyle]\ncalcium = "500 mg"\n[[treatments]]\ndrug = "calcium"\ndose = "1000 mg"\n',
         "lifestyle.calcium", "calcium is also given by treatments[0]")


def test_unknown_names():
    _err('[[treatments]]\ndrug = "estradiol"\ndose = "1 mg"\n', "treatments[0].drug",
         "did you mean 'estradiol-oral'?")
    _err('[[treatments]]\ndrug = "denosumab"\n', "treatments[0].dose", 'dose = "60 mg"')
    _err('protocols = ["trt-anastrazole"]\n', "protocols[0]", "did you mean 'trt-anastrozole'?",
         line=1)
    _err('[bone]\nmesh = "femur_coarse_hex"\n', "bone.mesh", "did you mean 'femur_coarse_hex8'?")
    _err('[bone]\nlaw = "morgan-femur"\n', "bone.law", "unknown density law")
    _err('[strength]\nmethods = ["pistoia", "pistola"]\n', "strength.methods[1]",
         "did you mean 'pistoia'?")
    _err('[lifestyle]\nexercise = ["swimming"]\n', "lifestyle.exercise[0].programme",
         "weight-bearing, resistance, high-impact")


def test_bone_and_case_mismatch_and_missing_files(tmp_path):
    _err('[bone]\nmesh = "vertebra_coarse_hex8"\n[[load_cases]]\ncase = "stance"\n',
         "load_cases[0].case", "no node sets for 'stance'")
    _err('[bone]\nmesh = "vertebra_coarse_hex8"\n[strength]\ncases = ["sideways-fall"]\n',
         "strength.cases[0]", "vertebral-compression")
    _err('[bone]\nmesh = "trabecular_080um_hex8"\n', "bone.law", "power:A,B")
    _err(f'[bone]\nmesh = "{tmp_path}/nope.vtu"\n', "bone.mesh", "not found")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(str(tmp_path / "missing.toml"))


def test_run_settings():
    _err('[simulation]\nduration = 2\noutput_interval = 3\n', "simulation.output_interval",
         "at most the duration")
    _err('[simulation]\noutput_interval = "1 month"\nmechanical_step = "60 days"\n',
         "simulation.mechanical_step", "longer than the output interval")
    _err('[simulation]\nduration = 0\n', "simulation.duration", "(0, 100]")
    _err('[simulation]\ncompare = ["trt", "trt"]\n', "simulation.compare", "listed twice")


def test_compared_arms_are_validated_at_load_time():
    _err('[simulation]\nduration = 10\ncompare = ["untreated-menopause", "late-hrt"]\n',
         "simulation.compare[1] (late-hrt): protocol late-hrt: treatments[0].start",
         "when the run (10 years) is over", line=3)
    _err('[patient]\nsex = "female"\n[simulation]\ncompare = ["untreated-menopause", "trt"]\n',
         "simulation.compare[1] (trt): patient.sex", "is for a male patient")

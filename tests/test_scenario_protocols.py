"""Built-in protocols against science.md §4 and combining them.

The expected doses are the published regimens quoted in science.md §4 ("Protocols users will
ask for" and the denosumab row): they are inputs from the literature, not outputs of ours.
"""
import pytest

from febone.remodel.treatments import DRUGS, canonical_dose
from febone.scenario import (DEFAULT_STUDY, PROTOCOLS, ScenarioError, combine, default_study,
                             protocol, study)

BRIEF = ("untreated-menopause", "early-hrt", "late-hrt", "oral-hrt", "trt", "trt-anastrozole",
         "trt-gonadorelin", "enclomiphene", "anastrozole", "gh-peptides", "rhgh", "tesamorelin",
         "glucocorticoid", "denosumab", "alendronate", "teriparatide", "exercise-weight-bearing",
         "exercise-resistance", "exercise-high-impact", "calcium-vitamin-d",
         "untreated-hypogonadism")


def _by_drug(s):
    out = {}
    for t in s.treatments:
        assert t.drug not in out, f"{t.drug} twice"
        out[t.drug] = t
    return out


def test_the_protocol_library_is_complete_and_documented():
    assert set(BRIEF) <= set(PROTOCOLS)
    for name, p in PROTOCOLS.items():
        assert p.name == name and p.description and p.source, name
        s = protocol(name)  # every protocol builds a valid scenario
        assert s.protocols == (name,) and s.name == name
        for t in s.treatments:
            assert float(canonical_dose(t)) > 0 and t.start_years < s.duration_years


def test_hrt_protocols():
    early = protocol("early-hrt")
    d = _by_drug(early)
    e2, prog = d["estradiol-transdermal"], d["progesterone"]
    assert canonical_dose(e2) == pytest.approx(50.0)   # µg/day patch (KEEPS)
    assert canonical_dose(prog) == pytest.approx(100.0) and prog.interval_days == 1.0  # mg/day
    p = early.patient
    years_after_fmp = p.age_years + e2.start_years - p.menopause_age_years
    assert p.sex == "female" and 0 < years_after_fmp <= 3  # started ≤ 3 y after the final period
    assert prog.start_years == e2.start_years
    late = _by_drug(protocol("late-hrt"))["estradiol-transdermal"]
    assert p.age_years + late.start_years - p.menopause_age_years > 3  # outside the early window
    oral = _by_drug(protocol("oral-hrt"))
    assert "estradiol-oral" in oral and canonical_dose(oral["progesterone"]) == pytest.approx(100.0)
    assert protocol("untreated-menopause").treatments == ()
    assert protocol("untreated-menopause").patient == p  # compared arms share the woman


def test_mens_protocols():
    trt = protocol("trt")
    (t,) = trt.treatments
    assert t.drug == "testosterone-cypionate" and 100 <= canonical_dose(t) <= 200  # mg/week IM
    assert t.interval_days == 7.0
    man = trt.patient
    assert man.sex == "male" and man.testosterone_ng_dL < 300  # hypogonadal
    ai = _by_drug(protocol("trt-anastrozole"))
    assert ai["testosterone-cypionate"] == t
    assert canonical_dose(ai["anastrozole"]) == pytest.approx(0.5)  # mg, twice weekly
    assert ai["anastrozole"].interval_days == pytest.approx(3.5)
    g = _by_drug(protocol("trt-gonadorelin"))["gonadorelin"]
    assert 50 <= canonical_dose(g) <= 100 and g.interval_days == pytest.approx(3.5)  # µg
    (e,) = protocol("enclomiphene").treatments
    assert 12.5 <= canonical_dose(e) <= 25 and 7 / 3 <= e.interval_days <= 7 / 2  # mg, 2–3×/week
    assert protocol("untreated-hypogonadism").treatments == ()
    assert protocol("untreated-hypogonadism").patient == man


def test_anastrozole_in_a_postmenopausal_woman():
    s = protocol("anastrozole")
    (t,) = s.treatments
    assert canonical_dose(t) == pytest.approx(1.0) and t.interval_days == 1.0  # 1 mg/day
    assert t.stop_years - t.start_years == pytest.approx(5.0)                  # 5 years
    assert s.patient.sex == "female" and s.patient.age_years > s.patient.menopause_age_years


@pytest.mark.parametrize("name,drug,dose,interval", [
    ("denosumab", "denosumab", 60.0, 183.0),      # mg every 183 d (science.md §4 PK row)
    ("alendronate", "alendronate", 70.0, 7.0),    # mg weekly
    ("teriparatide", "teriparatide", 20.0, 1.0),  # µg daily
])
def test_bone_drugs(name, drug, dose, interval):
    (t,) = protocol(name).treatments
    assert (t.drug, t.interval_days) == (drug, interval)
    assert canonical_dose(t) == pytest.approx(dose)


def test_other_protocols():
    d = _by_drug(protocol("calcium-vitamin-d"))
    assert canonical_dose(d["calcium"]) == pytest.approx(1200.0) and d["calcium"].interval_days == 1
    assert 800 <= canonical_dose(d["vitamin-d"]) <= 1000 and d["vitamin-d"].interval_days == 1
    for name in ("exercise-weight-bearing", "exercise-resistance", "exercise-high-impact"):
        (t,) = protocol(name).treatments
        assert t.drug == name and canonical_dose(t) == DRUGS[name].typical_dose
    assert [t.drug for t in protocol("gh-peptides").treatments] == ["cjc1295-ipamorelin"]
    assert [t.drug for t in protocol("tesamorelin").treatments] == ["tesamorelin"]
    assert [t.drug for t in protocol("glucocorticoid").treatments] == ["glucocorticoid"]
    assert protocol("rhgh").patient.gh_deficient


def test_combining_pools_treatments_and_keeps_the_fixed_patient():
    s = combine(["early-hrt", "calcium-vitamin-d"])
    assert s.treatments == protocol("early-hrt").treatments + protocol("calcium-vitamin-d").treatments
    assert s.patient == protocol("early-hrt").patient  # not calcium-vitamin-d's example woman
    assert protocol("early-hrt+calcium-vitamin-d") == s
    # exact repeats are kept once: trt's injection is part of trt-anastrozole
    assert combine(["trt", "trt-anastrozole"]).treatments == protocol("trt-anastrozole").treatments
    both = combine(["trt", "enclomiphene"])
    assert {t.drug for t in both.treatments} == {"testosterone-cypionate", "enclomiphene"}
    gh = combine(["untreated-menopause", "rhgh"]).patient
    assert gh.sex == "female" and gh.gh_deficient and gh.age_years == 50.0
    assert combine(["denosumab", "alendronate"]).patient == protocol("denosumab").patient
    assert combine(["teriparatide", "denosumab"]).duration_years == 10.0  # the longest default


def test_incompatible_patients_cannot_be_combined():
    with pytest.raises(ScenarioError, match="sex: 'male' vs 'female'.*compare them") as e:
        combine(["trt", "anastrozole"])
    assert e.value.key == "protocols"
    with pytest.raises(ScenarioError, match="age_years"):
        combine(["untreated-menopause", "anastrozole"])
    with pytest.raises(ScenarioError, match="did you mean 'trt-anastrozole'"):
        protocol("trt-anastrazole")


def test_default_study():
    s = default_study()
    assert tuple(a.name for a in s.runs()) == DEFAULT_STUDY == ("untreated-menopause", "early-hrt")
    assert s.bone.mesh == "femur_coarse_hex8" and s.duration_years == 10.0
    for arm in s.runs():
        assert arm.treatments == protocol(arm.name).treatments
        assert arm.patient == protocol(arm.name).patient
    assert study(["trt", "untreated-hypogonadism"]).runs()[0].patient.sex == "male"

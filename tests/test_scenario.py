"""Scenario files: units, documented defaults, the docs' examples, round trips, digests.

Every expected number here is either a unit definition (1 y = 365.25 d, 1 nmol/L T = 28.84
ng/dL, 1 ng/mL 25(OH)D = 2.496 nmol/L, g = 9.81 m/s²) or a value read from docs/scenarios.md,
so a test fails when the code and the documentation disagree.
"""
import json
import re
from pathlib import Path

import pytest

from febone.remodel.patient import Patient
from febone.remodel.treatments import DRUGS
from febone.scenario import (PROTOCOLS, ScenarioError, default_study, load_scenario, protocol,
                             study, with_duration)
from febone.scenario.parse import KEYS
from febone.scenario.units import parse_dose, parse_duration_years, parse_force, \
    parse_interval_days, parse_scalar

DOCS = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
TEXT = DOCS.read_text(encoding="utf-8")


def _toml_blocks():
    return re.findall(r"```toml\n(.*?)```", TEXT, re.S)


def _treatment_tuple(t):
    return (t.drug, t.dose, t.unit, t.interval_days, t.start_years, t.stop_years)


# --- units ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,days", [
    ("daily", 1.0), ("once daily", 1.0), ("twice daily", 0.5), ("weekly", 7.0),
    ("twice weekly", 3.5), ("3 times weekly", 7 / 3), ("three times a week", 7 / 3),
    ("5 times per week", 7 / 5), ("every other day", 2.0), ("every 2 weeks", 14.0),
    ("every 6 months", 6 * 365.25 / 12), ("monthly", 365.25 / 12), ("183 days", 183.0),
    ("3.5 days", 3.5), (7, 7.0), (3.5, 3.5)])
def test_intervals_follow_the_unit_definitions(text, days):
    # 1 week = 7 d, 1 month = 365.25/12 d, "k times weekly" = 7/k d
    assert parse_interval_days(text, "t", "k") == pytest.approx(days, rel=1e-14)


@pytest.mark.parametrize("text,years", [
    ("6 months", 0.5), ("18 months", 1.5), ("730.5 days", 2.0), ("26 weeks", 26 * 7 / 365.25),
    ("10 years", 10.0), ("1 year", 1.0), (10, 10.0), (2.5, 2.5)])
def test_durations_in_years(text, years):
    assert parse_duration_years(text, "t", "k") == pytest.approx(years, rel=1e-14)


def test_other_quantities():
    assert parse_force("1750 N", "t", "k", 700.0) == pytest.approx((2.5, 1750.0))
    assert parse_force("2 kN", "t", "k", 800.0) == pytest.approx((2.5, 2000.0))
    assert parse_force(2.5, "t", "k", 700.0) == pytest.approx((2.5, 1750.0))
    assert parse_scalar("10 nmol/L", "testosterone_ng_dL", "t", "k") == pytest.approx(288.4)
    assert parse_scalar("74.88 nmol/L", "vitamin_d_ng_mL", "t", "k") == pytest.approx(30.0)
    assert parse_scalar("154.3 lb", "mass_kg", "t", "k") == pytest.approx(154.3 * 0.45359237)
    assert parse_dose("50 µg per day", "t", "k") == (50.0, "ug/day")
    assert parse_dose("15 %", "t", "k") == (15.0, "%")


@pytest.mark.parametrize("spelling", ["20 µg", "20 μg", "20 mcg", "20 ug", "0.02 mg"])
def test_microgram_spellings_give_the_same_exposure(spelling):
    from febone.remodel.treatments import canonical_dose

    s = load_scenario(f'[[treatments]]\ndrug = "teriparatide"\ndose = "{spelling}"\n')
    assert canonical_dose(s.treatments[0]) == pytest.approx(20.0)  # µg, canonical unit


def test_spellings_of_one_scenario_are_equal_and_share_a_digest():
    a = load_scenario('[patient]\nage = 50\nbody_mass = 70\n[[treatments]]\ndrug = "alendronate"\n'
                      'dose = 70\nunit = "mg"\ninterval = 7\n[simulation]\nduration = 10\n')
    b = load_scenario('# comment\n[simulation]\nduration = "120 months"\n[[treatments]]\n'
                      'drug = "alendronate"\ndose = "70 mg"\ninterval = "weekly"\n'
                      '[patient]\nbody_mass = "70 kg"\nage = "50 years"\n')
    assert a == b and a.digest == b.digest
    c = load_scenario('[[treatments]]\ndrug = "alendronate"\ndose = "35 mg"\ninterval = "weekly"\n')
    assert c.digest != a.digest


# --- documented keys and defaults ---------------------------------------------------------------

_SECTIONS = {"Top level": "", "`[patient]`": "patient", "`[bone]`": "bone",
             "`[[load_cases]]`": "load_cases", "`[strength]`": "strength",
             "`[[treatments]]`": "treatments", "`[lifestyle]`": "lifestyle",
             "`[simulation]`": "simulation", "`[[arms]]`": "arms"}


def _doc_rows():
    """{table: [(key, default cell)]} from the key tables of docs/scenarios.md."""
    rows, table, in_keys = {}, None, False
    for line in TEXT.splitlines():
        if line.startswith("### "):
            title = line[4:]
            table = next((t for head, t in _SECTIONS.items() if title.startswith(head)), None)
            continue
        in_keys = line.startswith("| key |") or (in_keys and line.startswith("|"))
        m = re.match(r"^\| `(\w+)` \| [^|]* \| ([^|]*) \|", line)
        if table is not None and in_keys and m:
            rows.setdefault(table, []).append((m.group(1), m.group(2).strip()))
    return rows


def test_every_key_is_documented_and_every_documented_key_exists():
    rows = _doc_rows()
    assert set(rows) == set(_SECTIONS.values())
    for table, entries in rows.items():
        expected = set(KEYS[table]) - (set(_SECTIONS.values()) if table == "" else set())
        assert {k for k, _ in entries} == expected, table  # top level: the tables have sections


def test_documented_drug_table_is_the_registry():
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| `([^`]+)` \| (.*) \|$", TEXT, re.M)
    documented = {name: (unit, tuple(re.findall(r"`([^`]+)`", accepted)))
                  for name, unit, accepted in rows}
    assert documented == {n: (d.unit, tuple(d.accepted_units)) for n, d in DRUGS.items()}


_BASE_ENTRY = {"treatments": 'drug = "denosumab"\ndose = "60 mg"\n', "load_cases": 'case = "stance"\n'}


def _doc(table, line=""):
    if table == "":
        return line + "\n"
    if table in _BASE_ENTRY:
        return f"[[{table}]]\n{_BASE_ENTRY[table]}{line}\n"
    return f"[{table}]\n{line}\n"


def test_every_literal_documented_default_is_the_default():
    checked = 0
    for table, entries in _doc_rows().items():
        for key, default in entries:
            m = re.fullmatch(r"`([^`]+)`", default)
            if not m:
                continue
            omitted = load_scenario(_doc(table))
            explicit = load_scenario(_doc(table, f"{key} = {m.group(1)}"))
            assert explicit == omitted, (table, key, default)
            checked += 1
    assert checked >= 15  # the literal defaults of the tables (guards against a parse that finds none)


def test_worded_defaults():
    s = load_scenario("")
    assert s.patient == Patient()  # [patient] defaults are the Patient class defaults
    assert s.patient.fat_mass == pytest.approx(0.38 * 70)  # "38 % of the body mass for women"
    assert s.bone.law == "morgan-femoral-neck"
    assert s.strength.cases == ("stance", "sideways-fall")
    (lc,) = s.load_cases
    assert (lc.case, lc.name, lc.weight, lc.magnitude_bw) == ("stance", "stance", 1.0, 2.5)
    assert lc.magnitude_N == pytest.approx(2.5 * 70 * 9.81)
    v = load_scenario('[bone]\nmesh = "vertebra_coarse_hex8"\n')
    assert v.bone.law == "morgan-vertebra" and v.strength.cases == ("vertebral-compression",)
    assert [(c.case, c.magnitude_bw) for c in v.load_cases] == [("vertebral-compression", 1.0)]
    for drug in ("denosumab", "estradiol-transdermal", "gonadorelin"):  # unit, interval from DRUGS
        dose = DRUGS[drug].typical_dose  # a bare number: the canonical unit
        t = load_scenario(f'[[treatments]]\ndrug = "{drug}"\ndose = {dose}\n').treatments[0]
        assert (t.unit, t.interval_days) == (DRUGS[drug].unit, DRUGS[drug].typical_interval_days)
    ex = load_scenario('[lifestyle]\nexercise = "resistance"\n').treatments[0]
    assert ex.dose == DRUGS["exercise-resistance"].typical_dose
    late = load_scenario('protocols = ["late-hrt"]\n')  # the longest protocol default
    assert late.duration_years == PROTOCOLS["late-hrt"].duration_years


def test_output_times():
    s = load_scenario('[simulation]\nduration = 10\noutput_interval = "9 months"\n')
    t = s.output_times_years()
    # floor(10 / 0.75) = 13 intervals, then the end of the run
    assert len(t) == 15 and t[-1] == 10.0 and t[13] == pytest.approx(9.75)
    assert s.duration_days == 3652


# --- the docs' examples, round trips -------------------------------------------------------------

def test_complete_example_reads_as_documented():
    full, comparing, _ = _toml_blocks()
    s = load_scenario(full)
    p = s.patient
    assert (p.sex, p.age_years, p.menopause_age_years, p.body_mass_kg, p.fat_mass_kg) == \
        ("female", 52.0, 51.0, 65.0, 22.0)
    assert (p.vitamin_D_ng_mL, p.calcium_mg_day) == (24.0, 800.0)
    walking, stairs = s.load_cases
    assert walking.magnitude_N == pytest.approx(2.4 * 65 * 9.81)
    assert dict(stairs.options) == {"angle_deg": 15.0}
    assert [_treatment_tuple(t) for t in s.treatments] == [
        ("estradiol-transdermal", 50.0, "ug/day", 3.5, 0.0, 5.0),
        ("progesterone", 100.0, "mg", 1.0, 0.0, 5.0),   # 1 y after the final period at 51 = age 52
        ("exercise-resistance", 15.0, "%", 1.0, 0.5, None),
        ("calcium", 500.0, "mg", 1.0, 0.0, None),
        ("vitamin-d", 1000.0, "IU", 1.0, 0.0, None)]
    assert (s.duration_years, s.output_interval_years, s.mechanical_step_days) == (10.0, 0.5, 30)
    c = load_scenario(comparing)
    assert [a.name for a in c.runs()] == ["untreated-menopause", "early-hrt",
                                          "early-hrt+exercise-high-impact"]
    assert c.arms[2].treatments == protocol("early-hrt+exercise-high-impact").treatments


def test_arms_example_reads_as_documented():
    s = load_scenario(_toml_blocks()[2])
    placebo, dmab = s.runs()
    assert [t.drug for t in placebo.treatments] == ["calcium"]
    assert [t.drug for t in dmab.treatments] == ["calcium", "denosumab"]
    assert dmab.patient.body_mass_kg == 60.0 and placebo.patient.body_mass_kg == 70.0


@pytest.mark.parametrize("which", [0, 1, 2])
def test_round_trip_through_toml_and_json(which, tmp_path):
    s = load_scenario(_toml_blocks()[which])
    again = load_scenario(s.to_toml())
    assert again == s and again.digest == s.digest
    path = tmp_path / "s.toml"
    path.write_text(s.to_toml(), encoding="utf-8")
    from_file = load_scenario(path)
    assert from_file == s
    d = json.loads(json.dumps(s.to_dict()))
    assert d["digest"] == s.digest and len(d["arms"]) == len(s.arms)
    assert d["treatments"] == [dict(zip(("drug", "dose", "unit", "interval_days", "start_years",
                                         "stop_years"), _treatment_tuple(t))) for t in s.treatments]


def test_mesh_file_paths_resolve_against_the_scenario_folder(tmp_path):
    (tmp_path / "bones").mkdir()
    mesh = tmp_path / "bones" / "my_femur.vtu"
    mesh.write_text("")  # only its existence is checked here
    path = tmp_path / "s.toml"
    path.write_text('[bone]\nmesh = "bones/my_femur.vtu"\n')
    s = load_scenario(path)
    assert not s.bone.bundled and Path(s.bone.mesh) == mesh.resolve()
    assert load_scenario(s.to_toml()) == s  # written back with the absolute path
    assert s.name == "s"  # the file stem


def test_with_duration_revalidates():
    s = with_duration(default_study(), "3 years")
    assert [a.duration_years for a in s.runs()] == [3.0, 3.0]
    hrt = protocol("early-hrt")  # starts 1 y after the final period at 51: t = 2 y
    assert with_duration(hrt, 2.5).treatments == hrt.treatments
    with pytest.raises(ScenarioError, match="starts at 2 years"):
        with_duration(hrt, 1.5)


def test_study_arms_share_the_run_settings():
    s = study(["untreated-menopause", "late-hrt"])
    assert [a.duration_years for a in s.runs()] == [15.0, 15.0]  # late-hrt's default
    assert s.runs()[1].treatments == protocol("late-hrt").treatments
    assert s.runs()[0].patient == protocol("late-hrt").patient

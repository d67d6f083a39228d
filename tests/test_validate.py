"""febone validate: the trial files shipped in the package, the band arithmetic, the table
machinery (with a stand-in runner) and, end to end, the quick CI subset through the CLI."""
import json
import math

import pytest

from febone.cli import main
from febone.commands import validate as v

TRIALS = [v.load_trial(p) for p in v.trial_files()]


# --- the shipped trial files ----------------------------------------------------------------------

def test_every_trial_file_loads_and_the_set_covers_the_issue():
    outcomes = [o for t in TRIALS for o in t.outcomes]
    assert len(outcomes) >= 15
    assert {t.group for t in TRIALS} == {"hormone", "drug", "lifestyle"}
    assert {s for t in TRIALS for s in t.sexes} == {"female", "male"}
    for t in TRIALS:
        assert t.citation and t.doi and t.population
        for o in t.outcomes:
            assert o.key.startswith("regions.") and o.key.endswith("change_pct")  # or a compartment's
            region = o.key.split(".")[1]
            bone = o.bone or t.scenario.bone.mesh
            # lumbar-spine outcomes are read on the vertebra, hip outcomes on the femur
            assert ("vertebra" in bone) == (region == "vertebral_body"), (t.name, o.label)
    assert [t.name for t in v.select(TRIALS, quick=True)] == ["t-trials"]


def test_trial_files_are_package_data():
    import tomllib
    from pathlib import Path

    root = Path(v.__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["febone.data"]
    assert "validation/*.toml" in patterns
    assert v.TRIALS_DIR == root / "febone" / "data" / "validation"


# --- the band ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("trial,half", [(9.2, 4.6), (-7.24, 3.62), (2.0, 1.5), (-1.2, 1.5),
                                        (3.0, 1.5), (0.0, 1.5), (6.0, 3.0)])
def test_band_is_max_of_1_5_points_and_half_the_change(trial, half):
    assert v.band(trial) == pytest.approx(half, abs=1e-12)


@pytest.mark.parametrize("model,trial,ok", [
    (5.0, 9.2, True),      # |−4.2| ≤ 4.6
    (4.5, 9.2, False),     # 4.7 > 4.6
    (13.8, 9.2, True),     # edge: exactly 4.6
    (-0.4, 1.0, True),     # floor 1.5: |−1.4| ≤ 1.5
    (-0.6, 1.0, False),
    (-3.7, -7.38, True),   # |3.68| ≤ 3.69
    (-3.6, -7.38, False),
    (float("nan"), 1.0, False)])
def test_inside_the_band(model, trial, ok):
    assert v.inside(model, trial) is ok


# --- the table with a stand-in runner ------------------------------------------------------------

def _fake_runner(values):
    """runner(scenario) -> {arm: summary} with change_pct of every region = values[arm]."""
    def runner(sc):
        out = {}
        for arm in sc.runs():
            times = list(sc.output_times_years())
            series = [0.0] + [values[arm.name]] * (len(times) - 1)
            regions = {r: {"change_pct": series} for r in
                       ("femoral_neck", "total_hip", "vertebral_body")}
            out[arm.name] = {"time_years": times, "regions": regions}
        return out
    return runner


def _trial(name):
    return next(t for t in TRIALS if t.name == name)


def test_run_trial_differences_and_bones():
    rows = v.run_trial(_trial("freedom"), runner=_fake_runner({"placebo": -1.0,
                                                                "denosumab": 4.0}))
    assert [r.bone for r in rows] == ["vertebra_coarse_hex8", "femur_coarse_hex8"]
    spine, hip = rows
    assert spine.model_value == pytest.approx(5.0) and spine.trial_value == 9.2
    assert spine.band == pytest.approx(4.6) and spine.inside          # |5 − 9.2| = 4.2
    assert hip.model_value == pytest.approx(5.0) and hip.band == pytest.approx(3.0) and hip.inside
    rows = v.run_trial(_trial("freedom"), runner=_fake_runner({"placebo": 0.0,
                                                                "denosumab": 2.0}))
    assert [r.inside for r in rows] == [False, False]                # 7.2 > 4.6, 4.0 > 3.0


def test_markdown_and_json_output(tmp_path):
    trials = [_trial("freedom"), _trial("swan")]
    res = v.validate(trials, runner=_fake_runner({"placebo": -1.0, "denosumab": 4.0,
                                                  "swan": -6.0}))
    assert res["total"] == 4 and res["inside"] == 4
    md = v.markdown_table(res, trials)
    assert "**4 of 4 outcomes inside the band.**" in md
    assert "| freedom | drug | female | lumbar spine BMD, 36 months | denosumab − placebo | " \
           "vertebra_coarse_hex8 | +9.2 | +5.0 | 4.6 | in |" in md
    assert "| swan | hormone | female | femoral neck aBMD, transmenopause (3 y) | swan | " \
           "femur_coarse_hex8 | -5.8 | -6.0 | 2.9 | in |" in md
    assert "Cummings SR" in md and "doi:10.1056/NEJMoa0809493" in md and "Greendale GA" in md
    j = json.loads(json.dumps(v.result_json(res)))
    assert j["band"] == {"floor_points": 1.5, "fraction": 0.5}
    assert [r["model_value"] for r in j["rows"]] == pytest.approx([5.0, 5.0, -6.0, -6.0])
    text = v.text_table(res)
    assert "4 of 4 inside the band" in text and "OUT" not in text


def test_missing_key_is_named():
    def runner(sc):
        return {a.name: {"time_years": [0.0, 3.0], "regions": {"head": {}}} for a in sc.runs()}
    with pytest.raises(ValueError, match="no 'vertebral_body'.*there: head"):
        v.run_trial(_trial("swan"), runner=runner)


# --- bad trial files ----------------------------------------------------------------------------------

GOOD = (v.TRIALS_DIR / "freedom.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("change,message", [
    (lambda t: t.replace("[validation]\n", "[validation]\nsource = 1\n"), "unknown key 'source'"),
    (lambda t: t.replace('group = "drug"', 'group = "pill"'), "not one of hormone"),
    (lambda t: t.replace('citation = "Cummings', 'cite = "Cummings'), "unknown key 'cite'"),
    (lambda t: t.replace('arm = "denosumab"', 'arm = "prolia"', 1), "no arm 'prolia'"),
    (lambda t: t.replace('minus = "placebo"', 'minus = "denosumab"', 1), "minus itself"),
    (lambda t: t.replace('time = "3 years"', 'time = "2 years"', 1), "not an output time"),
    (lambda t: t.replace("trial = 9.2", 'trial = "9.2 %"'), "must be a number"),
    (lambda t: t.replace("trial = 9.2\n", ""), "trial: missing"),
    (lambda t: t[:t.index("[validation]")], r"needs a \[validation\] table"),
])
def test_bad_trial_files(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(change(GOOD), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as e:
        v.load_trial(path)
    assert "bad.toml" in str(e.value)


def test_unknown_subset_names_the_trials():
    with pytest.raises(ValueError, match="no trial \\['nope'\\].*freedom"):
        v.select(TRIALS, ["nope"])


def test_cli_list(capsys):
    assert main(["validate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "freedom" in out and "denosumab − placebo" in out and "+9.2 %" in out


def test_cli_unknown_subset_is_one_error_line(capsys):
    assert main(["validate", "--subset", "nope", "--out", "x.md"]) == 1
    assert "no trial ['nope']" in capsys.readouterr().err


# --- end to end: the CI subset --------------------------------------------------------------------

@pytest.mark.slow
def test_quick_subset_end_to_end(tmp_path, capsys):
    """The quick subset through the CLI with the real FE runs, on a 2-year history (--spinup 2)
    instead of the men's own 15 years, to keep CI short (the full table is a benchmark,
    benchmarks/validation_table.py). Checks the band arithmetic, the table and its note, and
    the model's sign: testosterone for low-T men gains against placebo (T-Trials +6.8 points;
    the model's T effect is anabolic, so a non-positive difference is a broken model)."""
    out, js = tmp_path / "validation.md", tmp_path / "validation.json"
    assert main(["validate", "--quick", "--spinup", "2", "--out", str(out),
                 "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    j = json.loads(js.read_text())
    assert j["total"] == 2 and len(j["rows"]) == 2 and j["spinup_years"] == 2.0
    for r in j["rows"]:
        assert math.isfinite(r["model_value"])
        assert r["inside"] == (abs(r["model_value"] - r["trial_value"]) <= r["band"])
    by_arm = {r["arm"]: r for r in j["rows"]}
    assert by_arm["testosterone"]["band"] == pytest.approx(3.75)
    assert by_arm["placebo"]["band"] == pytest.approx(1.5)
    assert by_arm["testosterone"]["model_value"] > by_arm["placebo"]["model_value"] + 1.0
    md = out.read_text()
    assert f"**{j['inside']} of 2 outcomes inside the band.**" in md and "Snyder PJ" in md
    assert f"{by_arm['testosterone']['model_value']:+.1f}" in md
    assert "replays 2 years before time 0" in md and "replays 2 years" in printed
    assert "t-trials" in printed and "inside the band" in printed


def test_each_trial_releases_its_compiled_programs():
    """A table run in one process must not keep every trial's executables: XLA:CPU maps each
    one's code, and six trials' worth exceeded Linux's vm.max_map_count (65,530)."""
    import jax
    import jax.numpy as jnp

    traces = []

    @jax.jit
    def program(x):
        traces.append(1)                       # runs once per compilation (trace)
        return 2.0 * x

    def runner(scenario):                      # a trial that compiles a program
        program(jnp.ones(3)).block_until_ready()
        return _fake_runner({"placebo": -1.0, "denosumab": 4.0})(scenario)

    v.validate([_trial("freedom"), _trial("freedom"), _trial("freedom")], runner=runner)
    assert len(traces) == 3                    # compiled afresh in each trial, reused within one
    assert program._cache_size() == 0          # and nothing is kept after the table

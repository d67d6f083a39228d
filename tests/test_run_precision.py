"""Remodelling in the precision modes (febone.precision): ``run_scenario(precision=...)`` /
``febone run --precision`` and a study's ``StudySettings(precision=...)`` / ``febone
sensitivity --precision`` against float64, to the tolerances documented in
:data:`febone.precision.RUN_TOLERANCES` (the measured differences are in the module's table).

A 72-element bar (as tests/test_run_devices.py: a "femoral_neck" and a "shaft" region, vBMD,
DXA-like aBMD and T-score, compression stiffness and Pistoia fracture load, CTX/P1NP) remodels
for one year after menopause, an output every half year. float32 needs JAX's x64 mode off for
the whole process, so that run is made in a subprocess and printed as JSON.

Measured here (CPU, jax 0.10.2): mixed 3.9e-11 relative and 1.1e-9 points of BMD change from
float64, float32 1.7e-6 and 1.6e-5 points; on the coarse femur, 5 years after a 5-year
history, 8.3e-8 / 1.0e-6 (mixed) and 2.1e-4 / 2.0e-3 (float32), which the documented
tolerances (mixed 1e-6 / 1e-5: the solves' rtol 1e-8 and 1e-10 met in float64 residuals, with
a margin; float32 1e-3 / 0.01: the solves' rtol 1e-5 and the float32 cell model, with a margin
for longer runs) cover. Mixed solves stopped at rtol 1e-3 (as a refinement that stopped
after its first float32 inner solve) were measured 2.4e-4 / 7.0e-5 points from float64 here:
far outside mixed's tolerance. float32's tolerance is coarser than that; its test fails when
the float32 run drifts beyond it, fails, or did not run in float32.
"""
import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from febone.cli import main
from febone.precision import RUN_TOLERANCES
from febone.remodel import run_scenario
from febone.remodel.model import OUTCOME_SOLVER
from febone.remodel.simulation import _with_precision, run_precision
from febone.scenario import load_scenario
from meshes_for_tests import BAR_LOADING, run_differences as _differences, write_bar_bone

SCENARIO = """\
name = "bar"
[bone]
mesh = "BAR"
[patient]
age = "51 years"
menopause_age = "50 years"
[simulation]
duration = "1 year"
output_interval = "0.5 years"
spinup = 0
""" + BAR_LOADING


def _write_bar(tmp):
    path = write_bar_bone(tmp / "bar.vtu")
    (tmp / "bar.toml").write_text(SCENARIO.replace("BAR", str(path)))
    return tmp / "bar.toml"


_FLOAT32_CHILD = """
import json, sys
from febone.precision import configure
configure("float32")
from febone.remodel import run_scenario
from febone.scenario import load_scenario
res = run_scenario(load_scenario(sys.argv[1]), precision="float32")
arm = next(iter(res.arms.values()))
print(json.dumps({"summary": res.summary(), "dtype": str(arm.density.dtype)}))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precision")
    path = _write_bar(tmp)
    sc = load_scenario(path)
    out = {"path": path, "float64": run_scenario(sc).summary(),
           "mixed": run_scenario(sc, precision="mixed").summary()}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_FLOAT32_CHILD), str(path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    out["float32"], out["float32_dtype"] = child["summary"], child["dtype"]
    return out


@pytest.mark.heavy
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mixed", "float32"])
def test_run_in_each_mode_equals_float64_to_its_tolerance(runs, mode):
    """Every output (two outputs after the baseline) within the mode's documented tolerance of
    float64, and the mode really ran (the answers are not float64's bit for bit; float32's
    fields are float32) and is recorded in the summary."""
    ref, got = runs["float64"], runs[mode]
    assert ref["precision"] == "float64" and got["precision"] == mode
    assert got["time_years"] == ref["time_years"] == [0.0, 0.5, 1.0]
    diff = _differences(ref, got)
    tol = RUN_TOLERANCES[mode]
    assert diff["relative"] < tol["relative"], diff
    assert diff["change_pct"] < tol["change_pct"], diff
    assert diff["relative"] > 0.0       # not float64 run twice
    # the run is not trivially inside the tolerance: the bar loses bone far beyond it
    assert ref["regions"]["femoral_neck"]["change_pct"][-1] < -1.0
    if mode == "float32":
        assert runs["float32_dtype"] == "float32"


def test_default_precision_is_float64_unchanged():
    """``precision=None`` is float64 (x64 on), and float64 leaves the model and the outcome
    solver as they were (the same objects: the run's answers are bit for bit those before the
    option existed)."""
    assert run_precision(None).name == run_precision("float64").name == "float64"
    model = object()
    assert _with_precision(model, run_precision("float64")) == (model, OUTCOME_SOLVER)


def test_float32_run_refused_with_x64_on_and_unknown_modes():
    """float32 with x64 on would leave the cell model float64: refused, naming the fix and the
    modes that work; an unknown mode names the modes."""
    assert jax.config.jax_enable_x64
    with pytest.raises(ValueError, match="configure\\('float32'\\).*'float64' or 'mixed'"):
        run_precision("float32")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        run_precision("half")


@pytest.mark.slow
def test_cli_run_records_the_precision(runs, tmp_path):
    """`febone run --precision mixed --json`: the JSON says so, and its numbers are the API's."""
    out = tmp_path / "run.json"
    assert main(["run", str(runs["path"]), "--precision", "mixed", "--no-pictures",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["precision"] == "mixed"
    assert r["stiffness_N_per_mm"] == runs["mixed"]["stiffness_N_per_mm"]
    assert r["regions"] == runs["mixed"]["regions"]


# --------------------------------------------------------------------------------------------
# studies (febone sensitivity)
# --------------------------------------------------------------------------------------------
def test_study_refuses_float32():
    """float32 outcomes carry 1e-5 to 1e-4 relative noise (measured in runs): against the 1e-3
    relative step of the finite differences that check a gradient, that is 1 to 10 % of the
    derivative. Refused, naming the modes that work."""
    from febone.study import StudySettings

    with pytest.raises(ValueError, match=r"\['float64', 'mixed'\]"):
        StudySettings(precision="float32")


def test_cli_sensitivity_refuses_float32(capsys):
    try:
        assert main(["sensitivity", "--precision", "float32", "--years", "0.1"]) == 1
    finally:
        jax.config.update("jax_enable_x64", True)      # main() switched it off for float32
    err = capsys.readouterr().err
    assert "float64" in err and "mixed" in err and "finite differences" in err


@pytest.mark.slow
def test_mixed_study_forward_equals_float64():
    """A study's outcomes (fracture load, stiffness, vBMD trajectory) with mixed habitual
    solves against float64, to RUN_TOLERANCES["mixed"]; the habitual solver is mixed, the
    summary of sensitivity records the mode."""
    from febone.remodel import Patient, Treatment
    from febone.study import forward
    from febone.study.scenario import specimen_study

    years = 30 / 365.25
    tr = (Treatment.create("anastrozole", 1.0, "mg", 1),)
    patient = Patient.create(age_years=62.0)
    ref = specimen_study(patient, tr, years=years)
    mixed = specimen_study(patient, tr, precision="mixed", years=years)
    assert mixed.stim.solver.mixed_precision and not ref.stim.solver.mixed_precision
    fwd = jax.jit(forward)
    a, b = fwd(ref), fwd(mixed)
    tol = RUN_TOLERANCES["mixed"]
    for name in ("fracture_load", "stiffness", "pistoia_load"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.max(np.abs(x - y) / np.abs(x)) < tol["relative"], name
    assert np.max(np.abs(np.asarray(a.bmd_trajectory) - np.asarray(b.bmd_trajectory))) < \
        tol["change_pct"]
    assert bool(b.converged)

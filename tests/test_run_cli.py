"""`febone run` on the bundled femur: the baseline against published ranges, a remodelling run
end to end, bad arguments."""
import json

import numpy as np
import pytest

from febone.bones import REFERENCE_POPULATIONS, load_bundled
from febone.cli import main
from febone.material.laws import density_law
from febone.strength import sideways_fall, strength


@pytest.fixture(scope="module")
def run_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    # --spinup 0: time 0 is the bundled young-adult femur itself (the replayed history has its
    # own tests, tests/test_history.py)
    argv = ["run", "--protocol", "untreated-menopause", "--years", "2", "--spinup", "0",
            "--no-pictures", "--json", str(out / "run.json"), "--out", str(out / "results")]
    assert main(argv) == 0
    return json.loads((out / "run.json").read_text()), out


@pytest.mark.slow
def test_run_baseline_densitometry_and_strength(run_json):
    """Year 0 of a run is the bundled young-adult femur measured as before remodelling."""
    r, out = run_json
    assert r["time_years"][0] == 0.0 and r["time_years"][-1] == pytest.approx(2.0, abs=1e-3)
    for site in ("femoral_neck", "total_hip"):
        entry = r["regions"][site]
        mean, sd, _ = REFERENCE_POPULATIONS[site]
        t = np.array(entry["t_score"])
        np.testing.assert_allclose(t, (np.array(entry["abmd_g_cm2"]) - mean) / sd, rtol=1e-12)
        # the default bone is calibrated as a young adult: T-score within ±1 SD of 0
        assert abs(t[0]) < 1.0
        assert entry["change_pct"][0] == 0.0
    side = r["fracture_load_N"]["sideways-fall"]["pistoia"][0]
    stance = r["fracture_load_N"]["stance"]["pistoia"][0]
    # Eckstein 2004, elderly femora in a side-impact set-up: 3951 ± 1659 N; a young-adult
    # femur must fall inside mean ± 2 SD
    assert 3951 - 2 * 1659 < side < 3951 + 2 * 1659
    # stance is the habitual load direction: the femur is several times stronger there
    assert 1.5 < stance / side < 6
    # the baseline equals a direct strength analysis of the mesh (same law, same case)
    mesh = load_bundled("femur_coarse_hex8")
    E = np.asarray(density_law("morgan-femoral-neck").modulus(mesh.cell_data["density_g_cm3"]))
    direct = strength(mesh, sideways_fall(), E, methods=("pistoia",))
    assert side == pytest.approx(direct.fracture_load_N["pistoia"], rel=1e-6)


@pytest.mark.slow
def test_run_menopause_loses_bone_with_high_turnover(run_json):
    r, out = run_json
    fn = r["regions"]["femoral_neck"]
    assert fn["change_pct"][-1] < -0.5                      # bone lost across menopause
    assert fn["t_score"][-1] < fn["t_score"][0]
    assert r["markers"]["ctx_rel"][-1] > 1.05               # resorption up ...
    assert r["markers"]["p1np_rel"][-1] > 1.0               # ... and formation follows (coupling)
    assert r["fracture_load_N"]["sideways-fall"]["pistoia"][-1] < \
        r["fracture_load_N"]["sideways-fall"]["pistoia"][0]
    assert r["scenario"]["name"] == "untreated-menopause"
    res = out / "results"
    lines = (res / "untreated-menopause.jsonl").read_text().splitlines()
    assert [json.loads(x)["time_years"] for x in lines] == r["time_years"]
    assert (res / "results.json").exists() and (res / "scenario.toml").exists()
    assert (res / "untreated-menopause.pvd").exists()


def test_run_bad_arguments(capsys):
    assert main(["run", "--protocol", "no-such-protocol"]) == 1
    assert "no-such-protocol" in capsys.readouterr().err
    assert main(["run", "--resume"]) == 1
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_uniform_density_loss_scales_linear_failure_load():
    """10 % density loss everywhere: E ∝ ρ^1.49 (Morgan femoral neck), strains under the
    same displacement are unchanged, so stiffness and the linear fracture loads scale by
    0.9^1.49 exactly (a check of linearity and of the law, not of a number we produced)."""
    mesh = load_bundled("femur_coarse_hex8")
    rho = mesh.cell_data["density_g_cm3"]
    law = density_law("morgan-femoral-neck")
    case = sideways_fall()
    base = strength(mesh, case, np.asarray(law.modulus(rho)), methods=("pistoia",))
    lost = strength(mesh, case, np.asarray(law.modulus(0.9 * rho)), methods=("pistoia",))
    # the density clip at 0.01 g/cm³ is below every element's density (min 0.04), so the
    # factor is exact up to the CG tolerance (1e-8)
    factor = 0.9 ** law.b
    assert lost.stiffness_N_per_mm / base.stiffness_N_per_mm == pytest.approx(factor, rel=1e-6)
    assert lost.fracture_load_N["pistoia"] / base.fracture_load_N["pistoia"] == pytest.approx(factor, rel=1e-6)

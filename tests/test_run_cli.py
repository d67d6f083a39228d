"""`febone run` on the bundled femur: densitometry and strength against published ranges."""
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
    assert main(["run", "--json", str(out / "run.json"), "--out", str(out / "fields")]) == 0
    return json.loads((out / "run.json").read_text()), out


@pytest.mark.slow
def test_run_densitometry_and_strength(run_json):
    r, out = run_json
    for site, entry in r["regions"].items():
        mean, sd, _ = REFERENCE_POPULATIONS[site]
        assert entry["t_score"] == pytest.approx((entry["abmd_g_cm2"] - mean) / sd)
        # the default bone is calibrated as a young adult: T-score within ±1 SD of 0
        assert abs(entry["t_score"]) < 1.0
    side = r["cases"]["sideways-fall"]["fracture_load_N"]["pistoia"]
    stance = r["cases"]["stance"]["fracture_load_N"]["pistoia"]
    # Eckstein 2004, elderly femora in a side-impact set-up: 3951 ± 1659 N; a young-adult
    # femur must fall inside mean ± 2 SD
    assert 3951 - 2 * 1659 < side < 3951 + 2 * 1659
    # stance is the habitual load direction: the femur is several times stronger there
    assert 1.5 < stance / side < 6
    for case in ("stance", "sideways-fall"):
        assert (out / "fields" / case / "strength.vtu").exists()


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

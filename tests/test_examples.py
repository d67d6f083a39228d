"""The example scripts, run small, give the physically right answers."""

import numpy as np
import pytest

from conftest import load_example as _load


def test_cube_compression(tmp_path):
    ex = _load("cube_compression")
    res = ex.main(small=True, out=tmp_path)
    # frictionless platens: uniform uniaxial stress, exact in any mesh; CG at rtol 1e-10
    np.testing.assert_allclose(res["frictionless"]["apparent_modulus_MPa"], ex.E, rtol=1e-8)
    # bonded platens restrain the Poisson expansion: stiffer than E, softer than the
    # fully constrained (oedometric) modulus M
    bonded = res["bonded"]["apparent_modulus_MPa"]
    assert ex.E * 1.01 < bonded < res["constrained_modulus_MPa"]
    assert (tmp_path / "cube_bonded.vtu").exists() and (tmp_path / "cube_frictionless.vtu").exists()


@pytest.mark.shared_data
@pytest.mark.slow
def test_solve_femur_small(shared_data, tmp_path):
    ex = _load("solve_femur")
    res = ex.main(small=True, out=tmp_path, path=shared_data / ex.FILE)
    assert res["cell_type"] == "tetra"
    k = res["stiffness_N_per_mm"]
    assert k > 0
    r = res["reactions_N"]
    # x is held only at the head and trochanter: they balance up to the CG tolerance (1e-8)
    np.testing.assert_allclose(r[ex.HEAD][0], -r[ex.TROCH][0], rtol=1e-6)
    # total reaction over all nodes vanishes (translations are in K's null space)
    np.testing.assert_allclose(res["total_reaction_N"], 0.0, atol=1e-10 * k)
    assert (tmp_path / "femur_tetra.vtu").exists()

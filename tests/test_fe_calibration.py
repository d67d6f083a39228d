"""The measures and windows of the FE-level calibration (febone.calibration.fe); the FE
runs themselves take minutes and are recorded in docs/calibration_fe.md."""
from types import SimpleNamespace

import numpy as np
import pytest

from febone.bones import bundled_path
from febone.bones.densitometry import volumetric_bmd
from febone.mesh.io import read_mesh
from febone.calibration import fe as fc
from febone.calibration.site import TARGETS


def test_fe_windows_are_calibration_targets():
    names = {t.name for t in TARGETS}
    assert set(fc.FE_TARGET_NAMES) <= names
    from febone.remodel.coupling import DEFAULT_COUPLING, FE_COUPLING, FE_RANKL_E2_SCALE

    assert FE_COUPLING.P_RANKL_E2 == pytest.approx(
        DEFAULT_COUPLING.P_RANKL_E2 * FE_RANKL_E2_SCALE, rel=1e-15)


def test_whole_vertebra_measure_is_the_volume_weighted_region_vbmd():
    """The lumbar-spine measure combines the regions' vBMD by their volumes; for any density
    field it must equal the vBMD of the whole mesh measured directly (1e-12: the same sums)."""
    mesh = read_mesh(bundled_path("vertebra_coarse_hex8"))
    rng = np.random.default_rng(1)
    series = [rng.uniform(0.1, 1.8, mesh.n_elements) for _ in range(3)]
    regions = sorted(k[len("region_"):] for k in mesh.cell_data if k.startswith("region_"))
    summary = {"regions": {r: {"vbmd_mg_cm3": [volumetric_bmd(mesh, r, density=d)
                                               for d in series]} for r in regions}}
    # the regions must tile the vertebra for the combination to be the whole bone
    masks = np.stack([np.asarray(mesh.cell_data[f"region_{r}"], bool) for r in regions])
    assert np.all(masks.sum(axis=0) == 1)
    got = fc._site_density(SimpleNamespace(summary=lambda: summary), mesh, None)
    want = [volumetric_bmd(mesh, None, density=d) for d in series]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_window_values_and_cost_by_hand():
    """The windows on a made-up decline of 1 % of the start per year at both sites."""
    t = np.arange(13.0)
    series = {b: 1.0 - 0.01 * t for b in ("femur_coarse_hex8", "vertebra_coarse_hex8")}
    v = fc._window_values({b: t for b in series}, series)
    assert v["SWAN FN, FMP −5 → +5 y"] == pytest.approx(-10.0, rel=1e-12)       # 0.90/1.00
    assert v["SWAN LS, FMP −1 → +2 y"] == pytest.approx(100 * (0.93 / 0.96 - 1), rel=1e-12)
    assert v["Michigan LS rate, FMP −2 → 0 y"] == pytest.approx(50 * (0.95 / 0.97 - 1), rel=1e-12)
    assert v["Michigan LS rate, FMP +2 → +7 y"] == pytest.approx(20 * (0.88 / 0.93 - 1),
                                                                  rel=1e-12)
    targets = {t.name: t for t in TARGETS}
    on_target = {n: targets[n].value for n in fc.FE_TARGET_NAMES}
    assert fc._cost(on_target) == 0.0
    one_band_off = dict(on_target)
    n = fc.FE_TARGET_NAMES[0]
    one_band_off[n] += targets[n].band
    assert fc._cost(one_band_off) == pytest.approx(0.5, rel=1e-12)

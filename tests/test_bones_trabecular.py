"""The synthetic trabecular cube: BV/TV against the closed-form threshold, anisotropy
against the stretch of the field, determinism, node sets."""
import math

import numpy as np
import pytest

from febone.bones import mesh_bone, trabecular_cube
from febone.bones.meshing import sample_mask
from febone.bones.trabecular import threshold_for_bv_tv
from febone.mesh import validate_mesh


def test_threshold_is_the_gaussian_quantile():
    # P(|g| < 1) = 0.682689 for g ~ N(0, 1) (the one-sigma rule), P(|g| < 1.959964) = 0.95
    assert threshold_for_bv_tv(0.6826894921370859) == pytest.approx(1.0, abs=1e-9)
    assert threshold_for_bv_tv(0.95) == pytest.approx(1.959963984540054, abs=1e-9)


def mil(mask, axis):
    """Mean intercept length (voxels) along an axis: 2·bone voxels / bone–marrow changes."""
    m = np.moveaxis(mask, axis, 0)
    return 2.0 * mask.sum() / max(1, int(np.sum(m[1:] != m[:-1])))


@pytest.fixture(scope="module")
def cube():
    return trabecular_cube(size_mm=3.0)


def test_bv_tv_and_mesh(cube):
    h = 0.08
    mesh = mesh_bone(cube, h, "hex8")
    validate_mesh(mesh)
    bv_tv = mesh.n_elements * h**3 / 3.0**3
    # the continuous field has BV/TV = erf(c/√2) = 0.18 exactly for a Gaussian field; 256
    # random waves, 0.08 mm voxels on 0.15 mm plates and dropping small islands move it by
    # about ±0.01 (observed 0.178 on the 4 mm cube)
    assert bv_tv == pytest.approx(0.18, abs=0.02)
    assert np.all(mesh.cell_data["E_MPa"] == 18000.0)
    assert np.all(mesh.cell_data["density_g_cm3"] == 2.0)
    # 3 mm is not a multiple of 0.08 mm: the top layer is the last grid plane below 3 mm
    for face, axis, value in (("face_zmin", 2, 0.0), ("face_zmax", 2, 37 * h)):
        pts = mesh.points[mesh.point_data[face] == 1]
        assert len(pts) > 50
        np.testing.assert_allclose(pts[:, axis], value, atol=1e-12)


@pytest.mark.parametrize("anisotropy", [1.0, 1.6])
def test_anisotropy_sets_the_intercept_ratio(anisotropy):
    # stretching the field along z by a factor a stretches every intercept along z by a:
    # MIL_z / MIL_x = a in expectation; a finite cube of ~4 sheet spacings per side and a
    # 75 µm grid scatter it by ~10%, hence 20% tolerance (the two cases differ by 60%)
    b = trabecular_cube(size_mm=3.0, anisotropy=anisotropy)
    mask, _ = sample_mask(b, 0.075)
    ratio = mil(mask, 0) / (0.5 * (mil(mask, 1) + mil(mask, 2)))  # mask axes (z, y, x)
    assert ratio == pytest.approx(anisotropy, rel=0.2)


def test_deterministic(cube):
    a = mesh_bone(cube, 0.1, "hex8")
    b = mesh_bone(trabecular_cube(size_mm=3.0), 0.1, "hex8")
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.cells, b.cells)


def test_bad_parameters():
    with pytest.raises(ValueError, match="bv_tv"):
        trabecular_cube(bv_tv=0.9)
    with pytest.raises(ValueError, match="anisotropy"):
        trabecular_cube(anisotropy=10.0)
    assert math.isfinite(threshold_for_bv_tv(0.5))

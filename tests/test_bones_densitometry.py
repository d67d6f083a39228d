"""DXA-like aBMD, vBMD and T-scores against closed-form values on simple solids."""
import numpy as np
import pytest

import febone as fb
from febone.bones import areal_bmd, t_score, volumetric_bmd
from febone.bones.densitometry import element_density, project_columns


def box(shape, size, cell_type, rho=1.0, origin=(0.0, 0.0, 0.0)):
    m = fb.box_mesh(shape, size=size, cell_type=cell_type, origin=origin)
    return m.with_cell_data(density_g_cm3=np.full(m.n_elements, rho))


@pytest.mark.parametrize("cell_type", ["hex8", "tet4", "tet10"])
def test_uniform_box(cell_type):
    # a 10 × 20 × 8 mm box of ρ_app = 1.5 g/cm³ seen along y: every ray crosses 20 mm of
    # bone, aBMD = 0.6 · 1.5 g/cm³ · 2.0 cm = 1.8 g/cm² exactly (chords are exact per tet;
    # the pixel grid (0.5 mm) divides the 10 × 8 mm face, so the area is exact as well)
    mesh = box((2, 3, 2), (10.0, 20.0, 8.0), cell_type, rho=1.5)
    r = areal_bmd(mesh)
    assert r.abmd_g_cm2 == pytest.approx(1.8, rel=1e-9)
    assert r.area_cm2 == pytest.approx(0.8, rel=1e-9)
    assert r.bmc_g == pytest.approx(0.6 * 1.5 * 1.6, rel=1e-9)  # mineral mass, g
    assert r.vbmd_mg_cm3 == pytest.approx(900.0, rel=1e-9)
    assert volumetric_bmd(mesh) == pytest.approx(900.0, rel=1e-12)


def test_rotation_changes_the_projection_depth():
    # rotating the box by 90° about z turns the 10 mm x edge into the projection depth
    mesh = box((2, 2, 2), (10.0, 20.0, 8.0), "tet4", rho=1.0)
    assert areal_bmd(mesh, rotation_deg=90.0).abmd_g_cm2 == pytest.approx(0.6, rel=1e-9)
    # at 30° the mineral mass is conserved, BMC = 0.6 g/cm³ · 1.6 cm³, and the projected
    # area is the rotated footprint (10 cos30° + 20 sin30°) × 8 mm; 0.1 mm pixels blur the
    # outline by half a pixel: ≤ 1%
    r = areal_bmd(mesh, rotation_deg=30.0, pixel_mm=0.1)
    assert r.bmc_g == pytest.approx(0.96, rel=0.01)
    width = 10 * np.cos(np.deg2rad(30)) + 20 * np.sin(np.deg2rad(30))
    assert r.area_cm2 == pytest.approx(width * 8 / 100, rel=0.01)


def test_region_roi_is_two_dimensional():
    # three 10 mm slabs stacked along y (ρ = 1, 0.5, 0.25 g/cm³). DXA regions are areas on
    # the detector: a pixel is in the region when most of the bone its ray crosses belongs to
    # the region, and then all the mineral along the ray counts
    mesh = box((1, 3, 1), (10.0, 30.0, 10.0), "hex8")
    rho = np.array([1.0, 0.5, 0.25])
    everything = 0.6 * (1.0 + 0.5 + 0.25) * 1.0  # g/cm²: 1 cm of each slab
    for region in (np.array([True, True, True]), np.array([True, True, False])):
        r = areal_bmd(mesh, region, density=rho)
        assert r.abmd_g_cm2 == pytest.approx(everything, rel=1e-9)
        assert r.area_cm2 == pytest.approx(1.0, rel=1e-9)
    # one slab of three is a minority of every ray: the region has no DXA area
    with pytest.raises(ValueError, match="no bone"):
        areal_bmd(mesh, np.array([True, False, False]), density=rho)
    with pytest.raises(ValueError, match="selects no element"):
        areal_bmd(mesh, np.array([False, False, False]), density=rho)


def test_project_columns_matches_chord_lengths():
    # a single unit tetrahedron (0,0,0),(1,0,0),(0,1,0),(0,0,1) scaled by 10 mm: the chord
    # along y at (x, z) is 10·(1 − x/10 − z/10) for x, z ≥ 0, x + z ≤ 10
    pts = 10.0 * np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    mesh = fb.Mesh.create(pts, np.array([[0, 1, 2, 3]]), "tetra")
    (vals,), length, origin = project_columns(mesh, [0], np.ones((1, 1)), spacing=0.5)
    nz, nx = length.shape
    xc = origin[0] + (np.arange(nx) + 0.5) * 0.5
    zc = origin[1] + (np.arange(nz) + 0.5) * 0.5
    X, Z = np.meshgrid(xc, zc)
    expected = np.clip(10.0 - X - Z, 0, None) * (X >= 0) * (Z >= 0)
    # rays run 1.4e-7 and 1.7e-7 pixel off the centres (tie-breaking): ≤ 2e-7 mm of chord
    np.testing.assert_allclose(length, expected, atol=1e-6)
    np.testing.assert_allclose(vals, expected, atol=1e-6)


def test_t_score():
    # T = (aBMD − 0.858) / 0.120 for the femoral neck (NHANES III women 20–29)
    assert t_score(0.858) == pytest.approx(0.0)
    assert t_score(0.558) == pytest.approx(-2.5)  # the osteoporosis threshold
    with pytest.raises(ValueError, match="no reference population"):
        t_score(0.8, "wrist")


def test_bad_inputs():
    mesh = box((1, 1, 1), (10.0, 10.0, 10.0), "hex8")
    with pytest.raises(ValueError, match="mg/cm³"):
        areal_bmd(mesh, density=np.array([1200.0]))
    with pytest.raises(ValueError, match="region_femoral_neck"):
        areal_bmd(mesh, "femoral_neck")
    with pytest.raises(ValueError, match="density_g_cm3"):
        areal_bmd(fb.box_mesh((1, 1, 1)))


def test_element_density_reads_a_field_or_an_array_and_checks_it():
    mesh = box((2, 1, 1), (10.0, 10.0, 10.0), "hex8", rho=0.8)
    np.testing.assert_array_equal(element_density(mesh), [0.8, 0.8])
    np.testing.assert_array_equal(element_density(mesh, np.array([0.5, 1.0])), [0.5, 1.0])
    with pytest.raises(ValueError, match="mg/cm³"):
        element_density(mesh, np.array([0.5, 1200.0]))
    with pytest.raises(ValueError, match="shape"):
        element_density(mesh, np.ones(3))
    with pytest.raises(ValueError, match="no cell data 'rho'"):
        element_density(mesh, "rho")

"""3-D pictures (febone.viz.plot_field), rendered offscreen: pixel statistics of what was drawn.

Colours are read back through a grey colour map, where brightness rises monotonically with the
value; lighting scales the brightness of a flat face uniformly, so the *order* of brightness
along the picture is the order of the field, whatever the lights. Geometry checks use the
bundled coarse femur (5,157 hex8) and small boxes so that each picture takes well under a second.
"""
from pathlib import Path

import numpy as np
import pytest

import febone as fb

pytest.importorskip("pyvista")
viz = pytest.importorskip("febone.viz")

FEMUR = Path(__file__).resolve().parents[1] / "meshes" / "femur_coarse_hex8.vtu"
WHITE = np.array(viz.render.BACKGROUND)


def _bone(img):
    """Mask of pixels that differ from the white background, above the scalar bar (the bar,
    its labels and title take the bottom 11 % of the picture; the bone ends at 17 %)."""
    img = img[..., :3].astype(int)
    mask = np.any(np.abs(img - WHITE) > 10, axis=2)
    mask[int(0.86 * img.shape[0]):] = False
    return mask


def _grey(img):
    return img[..., :3].astype(float).mean(axis=2)


def _centroids(mesh):
    return np.asarray(mesh.points)[np.asarray(mesh.cells)].mean(axis=1)


def _rank_corr(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def _steps(prof, n):
    """Mean of ``prof`` over n equal chunks (one per element layer), leaving out 3 pixels at
    each end (the dark outline) and 2 pixels either side of each seam between layers."""
    prof = np.asarray(prof)[3:-3]
    edges = np.linspace(0, prof.size, n + 1).astype(int)
    return np.array([prof[a + 2:b - 2].mean() for a, b in zip(edges[:-1], edges[1:])])


@pytest.fixture(scope="module")
def femur():
    return fb.read_mesh(FEMUR)


@pytest.fixture(scope="module")
def box():
    return fb.box_mesh((10, 3, 4), size=(40.0, 12.0, 16.0))


def _column_profile(img):
    """Mean brightness of bone pixels per image column (NaN where no bone)."""
    bone, g = _bone(img), _grey(img)
    counts = bone.sum(axis=0)
    prof = np.where(counts > 0, (g * bone).sum(axis=0) / np.maximum(counts, 1), np.nan)
    return prof, counts


def test_known_gradient_appears_along_the_expected_axis(box, tmp_path):
    # field = x of the element centre; seen from -y with z up, +x runs to the right of the
    # picture, so brightness (grey map) must rise from left to right and not from top to bottom
    x = _centroids(box)[:, 0]
    img = viz.plot_field(box, x, name="x_mm", cmap="gray", path=tmp_path / "gx.png",
                         camera={"view_from": (0, -1, 0), "up": (0, 0, 1)})
    assert (tmp_path / "gx.png").is_file()
    prof, counts = _column_profile(img)
    cols = np.flatnonzero(counts > 20)
    # 10 element layers across: a staircase rising left to right, one step per layer
    steps = _steps(prof[cols], 10)
    assert np.all(np.diff(steps) > 5), steps
    assert steps[-1] - steps[0] > 100                    # near black -> near white
    bone, g = _bone(img), _grey(img)
    rows = np.flatnonzero(bone.sum(axis=1) > 20)
    row_prof = (g * bone).sum(axis=1)[rows] / bone.sum(axis=1)[rows]
    assert np.ptp(_steps(row_prof, 4)) < 10              # no gradient along z (up the picture)


def test_gradient_along_z_goes_up_the_picture(box):
    z = _centroids(box)[:, 2]
    img = viz.plot_field(box, z, name="z_mm", cmap="gray",
                         camera={"view_from": (0, -1, 0), "up": (0, 0, 1)})
    bone, g = _bone(img), _grey(img)
    rows = np.flatnonzero(bone.sum(axis=1) > 20)
    prof = (g * bone).sum(axis=1)[rows] / bone.sum(axis=1)[rows]
    steps = _steps(prof, 4)                    # 4 element layers along z
    assert np.all(np.diff(steps) < -5), steps  # image rows count downwards, z upwards


def test_femur_picture_shows_the_bone_and_a_scalar_bar(femur, tmp_path):
    path = tmp_path / "rho.png"
    img = viz.plot_field(femur, "density", path=path)
    import imageio.v3 as iio

    again = iio.imread(path)
    np.testing.assert_array_equal(again[..., :3], img[..., :3])   # the PNG is the picture
    bone = _bone(img)
    frac = bone.mean()
    # the proximal femur seen from the front fills its bounding box about half (head, neck,
    # shaft); fitted to 80 % of the height it covers between 10 % and 60 % of the picture
    assert 0.10 < frac < 0.60, frac
    rows, cols = np.nonzero(bone)
    assert rows.max() - rows.min() > 0.7 * img.shape[0]    # tall bone, fitted to the height
    colours = img[..., :3][bone].astype(float)
    assert colours.std(axis=0).max() > 20                   # density varies: not one colour
    # scalar bar: a horizontal strip along the bottom (94-98 % of the height) whose colours
    # run through viridis from dark purple (left) to yellow (right)
    h, w = img.shape[:2]
    strip = img[int(0.95 * h):int(0.975 * h), int(0.22 * w):int(0.78 * w), :3].astype(float)
    band = strip.mean(axis=0)
    assert band[:5].mean(axis=0)[2] > band[:5].mean(axis=0)[1]         # viridis start: blue > green
    assert band[-5:].mean(axis=0)[0] > 200 and band[-5:].mean(axis=0)[1] > 200   # yellow end
    # tick labels and title: dark text pixels just above the bar
    text = img[int(0.87 * h):int(0.94 * h), :, :3].astype(int).sum(axis=2) < 200
    assert text.sum() > 200


def test_anterior_view_puts_the_femoral_head_on_the_viewers_right(femur):
    # meshes/README.md: +x lateral, head at -x, +y anterior. From the front of a right femur,
    # medial (the head, -x) is on the viewer's right: brightness of x falls left to right.
    x = _centroids(femur)[:, 0]
    img = viz.plot_field(femur, x, name="x_mm", cmap="gray", camera="anterior")
    prof, counts = _column_profile(img)
    cols = np.flatnonzero(counts > 10)
    assert _rank_corr(cols, prof[cols]) < -0.8
    # and the head (region_head) sits in the upper right quarter
    head = np.asarray(femur.cell_data["region_head"], float)
    img = viz.plot_field(femur, head, name="head", cmap="gray", clim=(0, 1))
    bright = _bone(img) & (_grey(img) > 150)
    rows, cols = np.nonzero(bright)
    assert cols.mean() > 0.5 * img.shape[1] and rows.mean() < 0.4 * img.shape[0]


def test_clip_shows_the_low_density_inside(femur):
    # the cut face exposes trabecular bone and the marrow canal (ρ ≈ 0.04-0.5 g/cm³) that the
    # cortical surface (ρ up to 1.8) hides: mean brightness of a grey density map drops
    rho = np.asarray(femur.cell_data["density_g_cm3"])
    clim = (float(rho.min()), float(rho.max()))
    outside = viz.plot_field(femur, "density", cmap="gray", clim=clim)
    inside = viz.plot_field(femur, "density", cmap="gray", clim=clim, clip=True)
    g_out = _grey(outside)[_bone(outside)].mean()
    g_in = _grey(inside)[_bone(inside)].mean()
    assert g_in < g_out - 30, (g_in, g_out)


def test_slice_and_result_objects(femur):
    # a result with .mesh and .fields (like a StrengthResult with its mesh): named lookup
    class Result:
        mesh = femur
        fields = {"von_mises_MPa": np.linspace(0.0, 50.0, femur.n_elements)}

    img = viz.plot_field(Result(), "von_mises", slice="z")
    assert 0.01 < _bone(img).mean() < 0.6
    sf = viz.resolve_field(femur, "von_mises", extra=Result())
    assert sf.title == "von Mises stress (MPa)" and sf.clim() == (0.0, 50.0)


def test_field_specs_units_and_colour_ranges(femur):
    strain = np.zeros((femur.n_elements, 3))
    strain[:, 0], strain[:, 2] = 1e-3, -2e-3
    mn = viz.resolve_field(femur, "principal_strain_min", extra={"principal_strain": strain})
    np.testing.assert_allclose(mn.values, -2000.0)             # strain -> microstrain
    assert mn.spec.diverging and mn.clim() == (-2000.0, 2000.0)  # centred at 0
    change = viz.resolve_field(femur, np.linspace(-3, 1, femur.n_elements),
                               name="density_change_pct")
    assert change.clim() == (-3.0, 3.0) and change.spec.cmap == "RdBu"
    u = viz.resolve_field(femur, np.ones((femur.n_nodes, 3)), name="displacement_mm")
    assert u.location == "point"
    np.testing.assert_allclose(u.values, np.sqrt(3.0))          # vectors -> magnitudes


def test_bad_input_is_named(femur):
    with pytest.raises(ValueError, match="no field 'vonmises'"):
        viz.plot_field(femur, "vonmises")
    with pytest.raises(ValueError, match="n_elements = 5157"):
        viz.plot_field(femur, np.ones(7), name="x")
    with pytest.raises(ValueError, match="needs name="):
        viz.plot_field(femur, np.ones(femur.n_elements))
    with pytest.raises(ValueError, match="unknown camera 'front'"):
        viz.plot_field(femur, "density", camera="front")
    with pytest.raises(ValueError, match="removed the whole mesh"):
        viz.plot_field(femur, "density", clip={"normal": "z", "origin": (0, 0, -500)})
    with pytest.raises(ValueError, match="does not cut the mesh"):
        viz.plot_field(femur, "density", slice={"normal": "z", "origin": (0, 0, 500)})


def test_blank_images_raise_instead_of_being_written():
    from febone.viz.backend import RenderingError, check_image

    with pytest.raises(RenderingError, match="blank"):
        check_image(np.full((60, 80, 3), 255, np.uint8), WHITE, "test")
    with pytest.raises(RenderingError, match="blank"):
        check_image(np.zeros((60, 80, 3), np.uint8), WHITE, "test")   # black = failed context
    ok = np.full((60, 80, 3), 255, np.uint8)
    ok[20:40, 30:50] = (200, 30, 30)
    assert check_image(ok, WHITE, "test") is ok


def test_missing_offscreen_opengl_gives_a_clear_error(monkeypatch):
    from febone.viz import backend

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("VTK_DEFAULT_OPENGL_WINDOW", raising=False)
    monkeypatch.setattr(backend.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(backend.RenderingError, match="libegl1"):
        backend.import_pyvista()

"""Importers: closed surfaces and label maps to volume meshes, checked against closed-form
volumes; every bad input (open, non-manifold, inside-out, wrong units, empty labels) gives
a clear error or a documented repair; the shared OpenSim and VerSe data import."""
from pathlib import Path

import numpy as np
import pytest

import febone as fb
from febone.bones import SurfaceError, mask_to_mesh, read_surface, surface_to_mesh
from febone.bones.surface import clean_surface
from febone.mesh import validate_mesh
from test_bones_femur import element_volumes, surface_topology


def icosphere(radius=20.0, level=3):
    """Closed, outward triangle sphere (independent of febone): subdivided icosahedron."""
    t = (1 + 5**0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                  [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                  [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                  [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                  [8, 6, 7], [9, 8, 1]])
    v = list(v / np.linalg.norm(v, axis=1)[:, None])
    for _ in range(level):
        cache, nf = {}, []

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                cache[key] = len(v) - 1
            return cache[key]

        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = np.array(nf)
    return radius * np.array(v), f


def write_stl(path, points, tris):
    import meshio

    meshio.write(path, meshio.Mesh(points, [("triangle", tris)]), binary=True)
    return path


def sphere_volume_of(points, tris):
    a, b, c = (points[tris[:, i]] for i in range(3))
    return np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0


def test_stl_roundtrip(tmp_path):
    p, f = icosphere()
    s = read_surface(write_stl(tmp_path / "ball.stl", p, f))
    assert len(s.points) == len(p) and len(s.triangles) == len(f)
    # STL stores float32 coordinates: volume to ~1e-7
    assert s.volume_mm3 == pytest.approx(sphere_volume_of(p, f), rel=1e-6)


def test_triangle_soup_is_welded():
    # a "triangle soup" (every triangle with private vertex copies, as STL files store
    # them) is welded back into a closed surface: a documented repair
    p, f = icosphere(level=2)
    soup = p[f].reshape(-1, 3)
    s = clean_surface(soup, np.arange(len(soup)).reshape(-1, 3))
    assert len(s.points) == len(p)
    assert any(f"merged {len(soup) - len(p)} duplicate vertices" in r for r in s.repairs)
    assert s.volume_mm3 == pytest.approx(sphere_volume_of(p, f), rel=1e-12)
    with pytest.raises(SurfaceError, match="repair=True"):
        clean_surface(soup, np.arange(len(soup)).reshape(-1, 3), repair=False)


@pytest.mark.parametrize("cell_type", ["hex8", "tet4"])
def test_sphere_volume_mesh(cell_type):
    p, f = icosphere(20.0, level=3)  # 1280 triangles; polyhedron volume ≈ 0.99 × 4/3 π R³
    s = clean_surface(p, f)
    h = 2.5
    shell = cell_type == "hex8"  # the shell field costs time: check it once
    mesh = surface_to_mesh(s, h, cell_type=cell_type, density="shell" if shell else "uniform",
                           cortical_thickness_mm=2.0, rho_cortical=1.8, rho_trabecular=0.3)
    validate_mesh(mesh)
    counts, chi, _ = surface_topology(mesh)
    assert np.all(counts == 2) and chi == 2  # closed sphere-like surface
    vol = element_volumes(mesh).sum()
    # hex8: voxel centres inside, O(h) staircase errors that mostly cancel (≤ 2.5% at
    # R/h = 8); tet4: the surface nodes are moved onto the polyhedron (≤ 1%)
    assert vol == pytest.approx(s.volume_mm3, rel=0.025 if cell_type == "hex8" else 0.01)
    if shell:
        # mass-weighted mean ρ = ρ_t + (ρ_c − ρ_t)·(1 − ((R − t)/R)³) for a ball of radius
        # R = 20 with a t = 2 mm shell (symmetric 0.5 mm blend: first-order exact); 2.5 mm
        # voxels average the step, the staircase moves the shell: 6%
        rho = mesh.cell_data["density_g_cm3"]
        expected = 0.3 + 1.5 * (1 - (18.0 / 20.0) ** 3)
        assert np.sum(rho * element_volumes(mesh)) / vol == pytest.approx(expected, rel=0.06)
    else:
        on = fb.node_set(mesh, "surface")
        r = np.linalg.norm(mesh.points[on], axis=1)
        # unsnapped voxel corners lie up to h·√3/2 = 2.2 mm off the surface (median ≈ 0.6 mm
        # for a voxelised ball); snapped ones on the polyhedron (facets ≤ 0.1 mm inside the
        # sphere) except where the quality guard stopped them short: median < 0.1 h
        assert np.abs(r - 20.0).max() < 0.5 * h
        assert np.median(np.abs(r - 20.0)) < 0.1 * h
    assert np.all(mesh.cell_data["E_MPa"] > 0)


def test_uniform_density():
    p, f = icosphere(15.0, level=2)
    mesh = surface_to_mesh(clean_surface(p, f), 2.0, density="uniform", rho=0.8,
                           law="power:1000,2")
    np.testing.assert_allclose(mesh.cell_data["density_g_cm3"], 0.8)
    np.testing.assert_allclose(mesh.cell_data["E_MPa"], 1000 * 0.8**2)


def test_open_surface_is_an_error():
    p, f = icosphere(level=1)
    with pytest.raises(SurfaceError, match="open: .* boundary edges"):
        clean_surface(p, f[1:])


def test_non_manifold_surface_is_an_error():
    p, f = icosphere(level=1)
    # a fin: an extra triangle on an existing edge (three triangles share that edge)
    extra = np.vstack([p, [[50.0, 50.0, 50.0]]])
    fin = np.array([[f[0, 0], f[0, 1], len(p)]])
    with pytest.raises(SurfaceError, match="non-manifold"):
        clean_surface(extra, np.vstack([f, fin]))


def test_inside_out_and_inconsistent_orientation_are_repaired():
    p, f = icosphere(level=2)
    v = sphere_volume_of(p, f)
    s = clean_surface(p, f[:, ::-1])  # every triangle reversed: inside out
    assert s.volume_mm3 == pytest.approx(v, rel=1e-12) and any("outward" in r for r in s.repairs)
    g = f.copy()
    g[::7] = g[::7, ::-1]  # some triangles flipped: inconsistent
    s = clean_surface(p, g)
    assert s.volume_mm3 == pytest.approx(v, rel=1e-12)
    assert any("re-oriented" in r for r in s.repairs)


def test_units(tmp_path):
    p, f = icosphere(0.02)  # a 40 mm ball written in metres
    path = write_stl(tmp_path / "m.stl", p, f)
    with pytest.raises(SurfaceError, match="units='m'"):
        read_surface(path)  # read as mm it would be 0.07 mm across
    assert read_surface(path, units="m").volume_mm3 == pytest.approx(
        sphere_volume_of(p, f) * 1e9, rel=1e-6)
    assert read_surface(path, units="auto").volume_mm3 == pytest.approx(
        sphere_volume_of(p, f) * 1e9, rel=1e-6)
    with pytest.raises(ValueError, match="units must be"):
        read_surface(path, units="inch")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_surface(tmp_path / "missing.stl")
    bad = tmp_path / "bad.obj"
    bad.write_text("this is not an obj file\n")
    with pytest.raises(SurfaceError):
        read_surface(bad)


# ----------------------------------------------------------------------- label maps
def test_mask_per_label_with_oblique_mirrored_affine():
    lab = np.zeros((12, 10, 8), dtype=np.int16)
    lab[1:6, 1:5, 1:4] = 3          # 5 × 4 × 3 = 60 voxels
    lab[7:11, 5:9, 3:7] = 7         # 4 × 4 × 4 = 64 voxels
    lab[0, 9, 7] = 7                # a stray voxel, dropped by keep_largest
    c, s = np.cos(0.3), np.sin(0.3)
    A = np.eye(4)
    # rotated 0.3 rad about z, x mirrored, 1 × 1 × 2 mm voxels, shifted
    A[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-1.0, 1.0, 2.0])
    A[:3, 3] = [5.0, 3.0, -1.0]
    assert np.linalg.det(A[:3, :3]) == pytest.approx(-2.0)
    meshes = mask_to_mesh(lab, affine=A)
    assert sorted(meshes) == [3, 7]
    vox = abs(np.linalg.det(A[:3, :3]))  # 2 mm³
    for label, n in ((3, 60), (7, 64)):
        m = meshes[label]
        validate_mesh(m)  # no inverted hexahedra despite the mirrored affine
        assert np.all(m.cell_data["label"] == label)
        assert element_volumes(m).sum() == pytest.approx(n * vox, rel=1e-12)
    # the voxel centres land where the affine puts them
    centre = meshes[3].points[meshes[3].cells].mean(1).mean(0)
    np.testing.assert_allclose(centre, A[:3, :3] @ [3.0, 2.5, 2.0] + A[:3, 3], atol=1e-12)


def test_mask_shell_density():
    # a 10 mm cube of 1 mm voxels with a 2 mm shell: the two outer voxel layers (centres
    # 0.5 and 1.5 mm deep) are cortical, the 6³ core (2.5 mm and deeper, beyond the 0.5 mm
    # blend) trabecular: mean = (784·1.8 + 216·0.3)/1000 exactly
    lab = np.zeros((12, 12, 12), dtype=np.int8)
    lab[1:11, 1:11, 1:11] = 1
    m = mask_to_mesh(lab, density="shell", cortical_thickness_mm=2.0, rho_cortical=1.8,
                     rho_trabecular=0.3)[1]
    assert m.cell_data["density_g_cm3"].mean() == pytest.approx((784 * 1.8 + 216 * 0.3) / 1000)


def test_mask_errors():
    lab = np.zeros((4, 4, 4), dtype=np.int32)
    with pytest.raises(ValueError, match="no labelled voxel"):
        mask_to_mesh(lab)
    lab[1, 1, 1] = 2
    with pytest.raises(ValueError, match=r"label\(s\) \[5\]; labels present: \[2\]"):
        mask_to_mesh(lab, labels=[5])
    with pytest.raises(ValueError, match="3-D integer"):
        mask_to_mesh(lab.astype(float))


def test_nifti_units(tmp_path):
    nib = pytest.importorskip("nibabel")
    lab = np.zeros((6, 6, 6), dtype=np.int16)
    lab[1:4, 1:4, 1:4] = 1
    img = nib.Nifti1Image(lab, np.diag([0.001, 0.001, 0.001, 1.0]))
    img.header.set_xyzt_units("meter")
    nib.save(img, tmp_path / "m.nii.gz")
    m = mask_to_mesh(tmp_path / "m.nii.gz")[1]  # the header says metres: 1 mm voxels
    # NIfTI stores the affine in float32: 0.001 to ~5e-8 relative, the volume to ~2e-7
    assert element_volumes(m).sum() == pytest.approx(27.0, rel=1e-6)
    img.header.set_xyzt_units("unknown")  # same numbers, unit lost: 1 µm voxels "in mm"
    nib.save(img, tmp_path / "u.nii.gz")
    with pytest.raises(ValueError, match="units"):
        mask_to_mesh(tmp_path / "u.nii.gz")
    m = mask_to_mesh(tmp_path / "u.nii.gz", units="m")[1]
    assert element_volumes(m).sum() == pytest.approx(27.0, rel=1e-6)
    img = nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4)).astype(np.float32), np.eye(4))
    nib.save(img, tmp_path / "img.nii.gz")
    with pytest.raises(ValueError, match="not a label map"):
        mask_to_mesh(tmp_path / "img.nii.gz")


# ----------------------------------------------------------------------- shared data
@pytest.mark.shared_data
def test_opensim_femur_in_metres(shared_data):
    path = shared_data / "opensim_femur_r.obj"
    with pytest.raises(SurfaceError, match="units='m'"):
        read_surface(path)  # metres read as mm: half a millimetre long
    s = read_surface(path, units="m")
    # a whole adult femur: 43–46 cm long (here along y, OpenSim's long axis)
    length = (s.upper - s.lower).max()
    assert 400.0 < length < 500.0
    mesh = surface_to_mesh(s, 6.0, density="uniform", rho=1.0)
    validate_mesh(mesh)
    counts, chi, _ = surface_topology(mesh)
    assert np.all(counts == 2) and chi == 2
    # 6 mm voxels of a bone 25–30 mm thick: a few % of the enclosed volume
    assert element_volumes(mesh).sum() == pytest.approx(s.volume_mm3, rel=0.05)


@pytest.mark.shared_data
def test_opensim_lumbar_vertebra_tets(shared_data):
    s = read_surface(shared_data / "opensim_lumbar3.obj", units="m")
    mesh = surface_to_mesh(s, 2.5, cell_type="tet4", cortical_thickness_mm=1.0,
                           law="morgan-vertebra")
    validate_mesh(mesh)
    # surface-fitted tets: the enclosed volume within 2% at 2.5 mm
    assert element_volumes(mesh).sum() == pytest.approx(s.volume_mm3, rel=0.02)
    assert 20e3 < s.volume_mm3 < 120e3  # a lumbar vertebra: 20–120 cm³ with its processes


@pytest.mark.shared_data
def test_verse_mask(shared_data):
    nib = pytest.importorskip("nibabel")
    path = shared_data / "verse004_vertebrae_mask.nii.gz"
    img = nib.load(str(path))
    data = np.asarray(img.dataobj).astype(int)
    vox = abs(np.linalg.det(img.affine[:3, :3]))  # ≈ 1 × 1 × 2 mm³
    meshes = mask_to_mesh(path, labels=[16, 20, 24])
    for label, mesh in meshes.items():
        validate_mesh(mesh)
        assert np.all(mesh.cell_data["label"] == label)
        n = mesh.n_elements
        # keep_largest may drop stray voxels, never more than 1% of a vertebra
        assert 0.99 * np.sum(data == label) <= n <= np.sum(data == label)
        assert element_volumes(mesh).sum() == pytest.approx(n * vox, rel=1e-9)
    with pytest.raises(ValueError, match="labels present: \\[16, 17"):
        mask_to_mesh(path, labels=[3])


@pytest.mark.shared_data
@pytest.mark.slow
def test_example_runs_small(shared_data, tmp_path):
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["import_shared_data.py", "--out", str(tmp_path), "--h", "6.0", "--labels", "20"]
    example = Path(__file__).resolve().parents[1] / "examples" / "import_shared_data.py"
    try:
        runpy.run_path(str(example), run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        sys.argv = argv
    written = sorted(p.name for p in tmp_path.glob("*.vtu"))
    assert written == ["opensim_femur_r_tet4.vtu", "opensim_lumbar3_hex8.vtu",
                       "verse004_label20.vtu"]
    m = fb.read_mesh(tmp_path / "opensim_femur_r_tet4.vtu")
    assert m.n_elements > 0 and "density_g_cm3" in m.cell_data

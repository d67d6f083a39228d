"""The clinical CT route (febone.voxel.ct): reading NIfTI / DICOM / TIFF in world axes, the
calibration, resampling, bone voxels, the mesh it gives, its faults, the CLI and scenarios;
and the check against the mesh route on a synthetic CT of the bundled coarse femur."""
import json
import re

import numpy as np
import pytest

from febone.voxel.ct import (CTCalibration, ct_bone, read_ct, save_nifti, synthetic_ct,
                             ASH_TO_APPARENT, QCT_TO_ASH)
from febone.voxel.image import VoxelImage

pytest.importorskip("nibabel")   # NIfTI: the CT route's main format

A, B = -0.005, 0.0008          # ρ = A + B·HU, g/cm³ (a plausible QCT phantom calibration)
H = (1.5, 1.0, 0.5)            # (dz, dy, dx) mm: anisotropic, so axis mix-ups show
SHAPE = (6, 7, 8)              # (nz, ny, nx)
ORIGIN = (10.0, -20.0, 30.0)   # world (x, y, z) mm of voxel [0, 0, 0]'s centre


def phantom_hu():
    """(z, y, x) HU: soft tissue (40 HU) around an L-shaped bone of distinct densities and a
    one-voxel island."""
    hu = np.full(SHAPE, 40, dtype=np.int16)
    hu[1:5, 2:5, 1:7] = 600 + 10 * np.arange(6)[None, None, :]   # a bar along x
    hu[1:3, 2:6, 1:3] = 1200                                      # a foot along y
    hu[5, 6, 7] = 900                                             # island
    return hu


def write_nifti(path, hu_zyx, h=H, origin=ORIGIN, flip_x=False):
    """NIfTI of a (z, y, x) volume in RAS+ world mm; ``flip_x`` stores x reversed (an LAS
    file) with the affine that puts every voxel at the same place."""
    return save_nifti(VoxelImage(hu_zyx, tuple(h), "", tuple(origin)), path, flip_x=flip_x)


def test_calibration_kinds_round_trip_and_refuse_bad_slopes():
    rho = np.array([0.1, 0.5, 1.2])
    assert np.array_equal(CTCalibration(A, B).apparent(rho), rho)
    np.testing.assert_allclose(CTCalibration(A, B, "ash").apparent(rho), rho / 0.6)
    np.testing.assert_allclose(CTCalibration(A, B, "qct").apparent(rho),
                               (0.0789 + 0.877 * rho) / 0.6)
    assert ASH_TO_APPARENT == 0.6 and QCT_TO_ASH == (0.0789, 0.877)
    for kind in ("apparent", "ash", "qct"):
        cal = CTCalibration(A, B, kind)
        np.testing.assert_allclose(cal.apparent(cal.calibrated(rho)), rho)
        np.testing.assert_allclose(cal.density(cal.hu(rho)), rho)
    with pytest.raises(ValueError, match="slope B must be positive"):
        CTCalibration(0.0, -0.0008)
    with pytest.raises(ValueError, match="slope B must be positive"):
        CTCalibration(0.0, 0.0)
    with pytest.raises(ValueError, match="kind"):
        CTCalibration(A, B, "wet")


def test_nifti_is_read_in_world_axes_and_the_mesh_sits_where_the_bone_is(tmp_path):
    hu = phantom_hu()
    plain = read_ct(write_nifti(tmp_path / "a.nii.gz", hu))
    flipped = read_ct(write_nifti(tmp_path / "b.nii.gz", hu, flip_x=True))
    for img in (plain, flipped):
        np.testing.assert_array_equal(img.data, hu)
        assert img.voxel_size == pytest.approx(H)
        assert img.origin == pytest.approx(ORIGIN)
    bone = ct_bone(flipped, CTCalibration(A, B), threshold=0.3)
    # the island is dropped, the L kept: 4·3·6 + 2·1·2 voxels (the foot overlaps the bar)
    assert bone.n_components == 2 and bone.removed_voxels == 1
    assert bone.mesh.n_elements == 4 * 3 * 6 + 2 * 1 * 2
    dz, dy, dx = H
    lo = np.array(ORIGIN) - np.array([dx, dy, dz]) / 2      # world corner of voxel [0, 0, 0]
    np.testing.assert_allclose(bone.mesh.points.min(axis=0), lo + [1 * dx, 2 * dy, 1 * dz])
    np.testing.assert_allclose(bone.mesh.points.max(axis=0), lo + [7 * dx, 6 * dy, 5 * dz])
    # each element's density is A + B·HU of the voxel it covers
    c = bone.mesh.points[bone.mesh.cells].mean(axis=1)
    ijk = np.rint((c - np.array(ORIGIN)) / [dx, dy, dz]).astype(int)
    np.testing.assert_allclose(bone.mesh.cell_data["density_g_cm3"],
                               A + B * hu[ijk[:, 2], ijk[:, 1], ijk[:, 0]])


def test_resampling_averages_density_over_blocks_and_conserves_mass(tmp_path):
    hu = np.full((4, 4, 6), -100, dtype=np.int16)
    rng = np.random.default_rng(1)
    hu[:, :, :4] = rng.integers(200, 1500, size=(4, 4, 4))   # bone fills 2×2×2 whole blocks
    img = read_ct(write_nifti(tmp_path / "r.nii.gz", hu, h=(0.5, 0.5, 0.5), origin=(0, 0, 0)))
    cal = CTCalibration(A, B)
    fine = ct_bone(img, cal, threshold=0.1)
    coarse = ct_bone(img, cal, threshold=0.1, resample=2)
    assert coarse.voxel_size == (1.0, 1.0, 1.0) and coarse.mesh.n_elements == 2 * 2 * 2
    rho = A + B * hu[:, :, :4].astype(float)
    blocks = rho.reshape(2, 2, 2, 2, 2, 2).mean(axis=(1, 3, 5)).ravel()      # (z, y, x) order
    np.testing.assert_allclose(coarse.mesh.cell_data["density_g_cm3"], blocks)
    mass = [float(np.sum(b.mesh.cell_data["density_g_cm3"]) * np.prod(b.voxel_size))
            for b in (fine, coarse)]
    assert mass[1] == pytest.approx(mass[0], rel=1e-12)
    # the coarse mesh covers the fine one's box
    np.testing.assert_allclose(coarse.mesh.points.min(0), fine.mesh.points.min(0))
    np.testing.assert_allclose(coarse.mesh.points.max(0), fine.mesh.points.max(0))


def _same_model(a, b, shift=(0.0, 0.0, 0.0)):
    np.testing.assert_array_equal(a.mesh.cells, b.mesh.cells)
    np.testing.assert_allclose(a.mesh.points, b.mesh.points + np.asarray(shift), atol=1e-9)
    np.testing.assert_allclose(a.mesh.cell_data["density_g_cm3"],
                               b.mesh.cell_data["density_g_cm3"], rtol=1e-12)


def test_dicom_series_gives_the_nifti_model(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    hu = phantom_hu()
    dz, dy, dx = H
    slope, intercept = 0.5, -1024.0            # stored = (HU − intercept) / slope, uint16
    series = tmp_path / "series"
    series.mkdir()
    uid = generate_uid()
    order = [3, 0, 5, 1, 4, 2]                 # files named against the slice order
    for n, k in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"   # CT image
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, \
            ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", uid, n + 1
        # LPS+: rows run along +x_LPS (= −x RAS), so the file is mirrored in x against RAS;
        # the columns along +y_LPS (posterior): mirrored in y too
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        x0 = -(ORIGIN[0] + (SHAPE[2] - 1) * dx)      # LPS x of the first column
        y0 = -(ORIGIN[1] + (SHAPE[1] - 1) * dy)
        ds.ImagePositionPatient = [x0, y0, ORIGIN[2] + k * dz]
        ds.PixelSpacing = [dy, dx]                  # between rows, between columns
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        stored = ((hu[k, ::-1, ::-1].astype(float) - intercept) / slope).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(series / f"IM{n:04d}.dcm", enforce_file_format=True)
    (series / "notes.txt").write_text("not a DICOM file")
    img = read_ct(series)
    np.testing.assert_array_equal(img.data, hu)
    assert img.voxel_size == pytest.approx(H) and img.origin == pytest.approx(ORIGIN)
    cal = CTCalibration(A, B)
    _same_model(ct_bone(img, cal, threshold=0.3),
                ct_bone(read_ct(write_nifti(tmp_path / "v.nii.gz", hu)), cal, threshold=0.3))
    # a missing slice leaves an uneven gap
    (series / f"IM{order.index(2):04d}.dcm").unlink()
    with pytest.raises(ValueError, match="slice is missing"):
        read_ct(series)


def test_tiff_stack_with_its_voxel_size_gives_the_nifti_model(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    hu = phantom_hu()
    tifffile.imwrite(tmp_path / "s.tif", hu, photometric="minisblack")
    with pytest.raises(ValueError, match="no voxel size"):
        read_ct(tmp_path / "s.tif")
    cal = CTCalibration(A, B)
    tif = ct_bone(read_ct(tmp_path / "s.tif", voxel_size=H), cal, threshold=0.3)
    nii = ct_bone(read_ct(write_nifti(tmp_path / "v.nii.gz", hu)), cal, threshold=0.3)
    # a TIFF has no position: its first voxel's corner is the world origin
    dz, dy, dx = H
    _same_model(nii, tif, shift=np.array(ORIGIN) - np.array([dx, dy, dz]) / 2)
    with pytest.raises(ValueError, match="header gives the voxel size"):
        read_ct(tmp_path / "v.nii.gz", voxel_size=1.0)


def test_bad_input_names_the_fault(tmp_path):
    hu = phantom_hu()
    img = read_ct(write_nifti(tmp_path / "v.nii.gz", hu))
    cal = CTCalibration(A, B)
    with pytest.raises(ValueError, match="no voxel's density exceeds the threshold 5"):
        ct_bone(img, cal, threshold=5.0)
    with pytest.raises(ValueError, match="negative densities in"):
        ct_bone(img, CTCalibration(-0.5, B), mask=hu > 100)
    with pytest.raises(ValueError, match="mask is empty"):
        ct_bone(img, cal, mask=np.zeros(SHAPE))
    with pytest.raises(ValueError, match="differs from the CT"):
        ct_bone(img, cal, mask=np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="positive integer"):
        ct_bone(img, cal, resample=1.5)
    (tmp_path / "scan.raw").write_bytes(b"0" * 64)
    with pytest.raises(ValueError, match="not a CT image"):
        read_ct(tmp_path / "scan.raw")
    with pytest.raises(ValueError, match="no DICOM slice"):
        (tmp_path / "empty").mkdir()
        read_ct(tmp_path / "empty")
    # a given mask replaces the threshold: here all bone above 100 HU, island dropped
    bone = ct_bone(img, cal, mask=hu > 100)
    assert bone.threshold is None and bone.mesh.n_elements == 4 * 3 * 6 + 2 * 1 * 2
    mask_file = write_nifti(tmp_path / "m.nii.gz", (hu > 100).astype(np.uint8), flip_x=True)
    _same_model(ct_bone(img, cal, mask=mask_file), bone)
    moved = write_nifti(tmp_path / "n.nii.gz", (hu > 100).astype(np.uint8), origin=(0, 0, 0))
    with pytest.raises(ValueError, match="give a mask on the CT's grid"):
        ct_bone(img, cal, mask=moved)
    with pytest.raises(ValueError, match="a boolean image is a mask"):
        np.save(tmp_path / "b.npy", hu > 100)
        read_ct(tmp_path / "b.npy", voxel_size=1.0)


def test_cli_refuses_mixed_inputs(tmp_path, capsys):
    from febone.cli import main

    path = str(write_nifti(tmp_path / "v.nii.gz", phantom_hu()))
    base = ["strength", path, "--case", "sideways-fall"]
    cases = [(base + ["--law", "morgan-femoral-neck"], "give its calibration"),
             (base + ["--calibration", "0", "0.0008"], "needs --law"),
             (base + ["--calibration", "0", "0.0008", "--law", "morgan-femoral-neck", "--E",
                      "1000"], "--E belong to mesh files"),
             (["strength", "femur_coarse_hex8.vtu", "--case", "stance", "--calibration", "0",
               "0.001", "--E", "1"], "belong to a CT image"),
             (base + ["--calibration", "0", "0.0008", "--law", "morgan-femoral-neck",
                      "--threshold", "9"], "no voxel's density exceeds"),
             (base + ["--calibration", "0", "0.0008", "--law", "morgan-femoral-neck",
                      "--threshold", "0.3", "--mask", path], "not both")]
    for argv, message in cases:
        assert main(argv) != 0
        assert message in capsys.readouterr().err


def test_scenario_bone_from_a_ct(tmp_path, monkeypatch):
    from febone.mesh.io import read_mesh
    from febone.scenario import load_scenario
    from febone.scenario.units import ScenarioError

    monkeypatch.setenv("FEBONE_CACHE", str(tmp_path / "cache"))
    write_nifti(tmp_path / "hip.nii.gz", phantom_hu())
    head = "[patient]\nage = 55\n[simulation]\nduration = 1\n[strength]\ncases = []\n" \
           "[[load_cases]]\ncase = \"compression\"\nmagnitude = \"500 N\"\n[bone]\n" \
           "image = \"hip.nii.gz\"\n"
    (tmp_path / "s.toml").write_text(head + "calibration = [\"-5 mg/cm3\", \"0.8 mg/cm3/HU\"]\n"
                                            "threshold = \"300 mg/cm3\"\n")
    sc = load_scenario(tmp_path / "s.toml")
    mesh = read_mesh(sc.bone.path())
    direct = ct_bone(read_ct(tmp_path / "hip.nii.gz"), CTCalibration(-5e-3, 8e-4), threshold=0.3)
    np.testing.assert_allclose(mesh.points, direct.mesh.points)
    np.testing.assert_allclose(np.asarray(mesh.cell_data["density_g_cm3"]).ravel(),
                               direct.mesh.cell_data["density_g_cm3"])
    assert sc.bone.law == "morgan-femoral-neck" and sc.bone.density_field == "density_g_cm3"
    assert load_scenario(tmp_path / "s.toml").bone.mesh == sc.bone.mesh     # cached
    bad = [("calibration = [0, 0.0008]\nthreshold = \"0.3 kg/l\"\n", "unknown density unit"),
           ("calibration = [0, \"0.8 mg/cm3\"]\n", "must end in /HU"),
           ("calibration = [0.0008]\n", "must be [A, B]"),
           ("calibration = [0, -0.0008]\n", "slope B must be positive"),
           ("threshold = 0.3\n", "needs calibration"),
           ("calibration = [0, 0.0008]\ndensity_kind = \"wet\"\n", "density_kind"),
           ("calibration = [0, 0.0008]\nmesh = \"femur_coarse_hex8\"\n", "remove mesh"),
           ("calibration = [0, 0.0008]\nresample = 0\n", "positive integer"),
           ("calibration = [0, 0.0008]\nthreshold = 9\n", "exceeds the threshold"),
           ("calibration = [0, 0.0008]\nslope = 1\n", "slope")]
    for extra, message in bad:
        (tmp_path / "bad.toml").write_text(head + extra)
        with pytest.raises(ScenarioError, match=re.escape(message)):
            load_scenario(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text(head.replace("image = \"hip.nii.gz\"\n", "") +
                                       "threshold = 0.3\n")
    with pytest.raises(ScenarioError, match="belongs to a CT bone"):
        load_scenario(tmp_path / "bad.toml")


@pytest.mark.slow
def test_synthetic_ct_of_the_coarse_femur_matches_the_mesh_route(tmp_path):
    """A CT written from femur_coarse_hex8's density field (int16 HU at a known calibration,
    soft tissue around, stored mirrored in x) through ``febone strength CT ...`` gives the
    mesh route's stiffness and Pistoia load with the same (geometric) node sets: measured
    1.5e-5 and 8e-5 apart, from the 1-HU rounding of the stored densities (±0.0004 g/cm³)."""
    import febone as fb
    from febone.bones import bundled_path
    from febone.cli import main
    from febone.material.laws import density_law
    from febone.strength import sideways_fall, strength

    mesh = fb.read_mesh(bundled_path("femur_coarse_hex8"))
    cal = CTCalibration(A, B)
    save_nifti(synthetic_ct(mesh, cal), tmp_path / "femur.nii.gz", flip_x=True)
    out = tmp_path / "ct.json"
    assert main(["strength", str(tmp_path / "femur.nii.gz"), "--calibration", str(A), str(B),
                 "--threshold", "0.035", "--case", "sideways-fall", "--law",
                 "morgan-femoral-neck", "--method", "pistoia", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["ct"]["voxels"] == mesh.n_elements and got["solver"] == "voxel"
    rho = np.asarray(mesh.cell_data["density_g_cm3"], float).ravel()
    ref = strength(mesh, sideways_fall(), density_law("morgan-femoral-neck").modulus(rho),
                   methods=("pistoia",), find_sets="geometry")
    assert got["node_sets"] == ref.node_sets
    k = got["stiffness_N_per_mm"] / ref.stiffness_N_per_mm - 1
    f = got["fracture_load_N"]["pistoia"] / ref.fracture_load_N["pistoia"] - 1
    assert abs(k) < 1e-3 and abs(f) < 1e-3, (k, f)       # the issue asks 1 %


def test_a_femur_ct_is_a_scenario_bone_the_runner_takes(tmp_path, monkeypatch):
    """The bone model of a femur CT carries the node-set masks the scenario's load cases need
    (found from the geometry), so ``febone run``'s file checks pass and its densities are the
    CT's: the mesh the remodelling runner reads."""
    import febone as fb
    from febone.bones import bundled_path
    from febone.commands._bone import check_bone_files
    from febone.scenario import load_scenario

    monkeypatch.setenv("FEBONE_CACHE", str(tmp_path / "cache"))
    mesh = fb.read_mesh(bundled_path("femur_coarse_hex8"))
    save_nifti(synthetic_ct(mesh, CTCalibration(A, B)), tmp_path / "hip.nii.gz")
    (tmp_path / "s.toml").write_text(
        f"[patient]\nage = 60\n[bone]\nimage = \"hip.nii.gz\"\ncalibration = [{A}, {B}]\n"
        f"threshold = 0.035\n")
    sc = load_scenario(tmp_path / "s.toml")
    check_bone_files(sc)                    # raises when a load case's node set is missing
    bone = fb.read_mesh(sc.bone.path())
    assert {"head_contact", "head_medial", "trochanter_lateral", "distal_cut"} <= set(bone.point_data)
    assert bone.n_elements == mesh.n_elements
    rho = np.sort(np.asarray(bone.cell_data["density_g_cm3"]).ravel())
    ref = np.sort(np.asarray(mesh.cell_data["density_g_cm3"]).ravel())
    assert np.abs(rho - ref).max() <= 0.5 * B + 1e-12      # int16 HU: half a step

"""Image loading (axis order, voxel size), segmentation steps and bad images."""
import numpy as np
import pytest

from febone.voxel import (VoxelGrid, compress, compress_mask, largest_component, load_image,
                          otsu_threshold, segment)
from febone.voxel.image import VoxelImage

SHAPE = (3, 4, 5)  # distinct (z, y, x) lengths expose transposition mistakes


def volume():
    return np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)


def test_numpy_formats_keep_zyx_and_voxel_size(tmp_path):
    np.save(tmp_path / "a.npy", volume())
    img = load_image(tmp_path / "a.npy")
    np.testing.assert_array_equal(img.data, volume())
    assert img.voxel_size is None
    np.savez(tmp_path / "b.npz", image=volume(), voxel_size_mm=np.array([0.03, 0.02, 0.01]))
    img = load_image(tmp_path / "b.npz")
    np.testing.assert_array_equal(img.data, volume())
    assert img.voxel_size == (0.03, 0.02, 0.01)
    np.savez(tmp_path / "c.npz", first=volume(), second=volume())
    with pytest.raises(ValueError, match="key"):
        load_image(tmp_path / "c.npz")
    np.testing.assert_array_equal(load_image(tmp_path / "c.npz", key="second").data, volume())


def test_tiff_stack_is_read_as_zyx(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "s.tif", volume(), photometric="minisblack")  # z pages
    np.testing.assert_array_equal(load_image(tmp_path / "s.tif").data, volume())


def test_nifti_is_transposed_to_zyx_with_its_zooms(tmp_path):
    nib = pytest.importorskip("nibabel")
    xyz = np.transpose(volume(), (2, 1, 0))  # NIfTI stores (x, y, z)
    img = nib.Nifti1Image(xyz, np.diag([0.01, 0.02, 0.03, 1.0]))
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp_path / "v.nii.gz")
    out = load_image(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(out.data, volume())
    assert out.voxel_size == pytest.approx((0.03, 0.02, 0.01))


def test_otsu_separates_two_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(40, 5, 5000), rng.normal(160, 10, 2000)])
    t = otsu_threshold(values)
    # the between-class variance is flat across the empty gap; any point there separates
    assert 40 < t < 160
    assert np.mean(values[:5000] > t) < 1e-3 and np.mean(values[5000:] > t) > 0.999


def test_largest_component_drops_islands_and_reports_them():
    mask = np.zeros((6, 6, 6), bool)
    mask[:, 1:3, 1:3] = True  # column of 24 voxels
    mask[2, 5, 5] = True  # island
    mask[0, 4, 4] = mask[1, 4, 4] = True  # two-voxel island
    mask[3, 3, 3] = True  # corner-touching voxel: not face-connected, so an island
    kept, n, removed = largest_component(mask)
    assert (n, removed) == (4, 4)
    assert kept.sum() == 24 and kept[:, 1:3, 1:3].all()


def test_segment_pipeline_on_synthetic_grey_image():
    rng = np.random.default_rng(1)
    truth = np.zeros((16, 16, 16), bool)
    truth[:, 4:12, 4:12] = True
    grey = np.where(truth, 180.0, 30.0) + rng.normal(0, 5, truth.shape)
    grey[1, 0, 0] = 200  # a one-voxel bright island
    seg = segment(grey.astype(np.float32), 0.01, sigma=0.5, resample=2, threshold="otsu")
    assert seg.voxel_size == (0.02, 0.02, 0.02)
    assert seg.mask.shape == (8, 8, 8)
    expected = truth.reshape(8, 2, 8, 2, 8, 2).all(axis=(1, 3, 5))
    np.testing.assert_array_equal(seg.mask, expected)
    assert seg.bv_tv == pytest.approx(expected.mean())
    # HU calibration: threshold in g/cm³
    seg = segment(grey, 0.01, calibration=(0.0, 0.01), threshold=1.0)
    assert seg.threshold == 1.0 and seg.mask[:, 4:12, 4:12].mean() > 0.99


def test_bad_images_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="3-D"):
        segment(np.ones((4, 4)), 0.1)
    with pytest.raises(ValueError, match="voxel size"):
        segment(np.ones((4, 4, 4)), None)
    with pytest.raises(ValueError, match="no bone voxels"):
        segment(np.zeros((4, 4, 4)) + np.arange(4)[:, None, None], 0.1, threshold=10.0)
    with pytest.raises(ValueError, match="empty"):
        VoxelGrid.create(np.zeros((3, 3, 3), bool), 0.1)
    with pytest.raises(ValueError, match="constant"):
        otsu_threshold(np.full(10, 7.0))
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="unsupported"):
        (tmp_path / "x.png").write_bytes(b"")
        load_image(tmp_path / "x.png")


def test_void_load_path_and_islands_are_reported():
    mask = np.zeros((6, 4, 4), bool)
    mask[:4, 1:3, 1:3] = True  # bone stops short of the top face
    with pytest.raises(ValueError, match="load path"):
        compress_mask(mask, 0.1, strain=0.01)
    mask = np.zeros((6, 4, 4), bool)
    mask[:, 0, 0] = True
    mask[1:, 3, 3] = True  # a column that misses the fixed plane
    with pytest.raises(ValueError, match="face-connected pieces, 1 of which"):
        compress_mask(mask, 0.1, strain=0.01)
    with pytest.raises(ValueError, match="do not touch the fixed first z-plane"):
        compress(VoxelImage(mask, (0.1, 0.1, 0.1)), keep_islands=True, strain=0.01)
    with pytest.raises(ValueError, match="exactly one"):
        compress_mask(np.ones((3, 3, 3), bool), 0.1)

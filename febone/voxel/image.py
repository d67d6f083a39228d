"""CT images: loading (NumPy, TIFF stacks, NIfTI, DICOM series) and segmentation into a mask.

Axis order is (z, y, x) for every array returned here; voxel sizes are (dz, dy, dx) in mm.
NIfTI volumes, stored (x, y, z), are transposed on loading.

With ``canonical=True`` (the clinical CT route, :mod:`febone.voxel.ct`) NIfTI volumes and
DICOM series are first turned to the closest RAS+ orientation (nibabel's
``as_closest_canonical``: axes permuted and flipped, never resampled), so the array's
x, y, z run along the patient's Right, Anterior and Superior, and the image carries the
world position of its first voxel (:attr:`VoxelImage.origin`). In that frame a right femur
lies in febone's standard orientation (shaft along +z, greater trochanter at +x). A
residual rotation of an oblique scan is not resampled away: it is logged as a warning and
the bone is taken in the scanner's axes.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VoxelImage", "Segmentation", "load_image", "segment", "otsu_threshold",
           "largest_component", "is_image_path", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

_SIZE_KEYS = ("voxel_size_mm", "voxel_size", "spacing_mm", "spacing")
_IMAGE_KEYS = ("image", "data", "volume", "mask", "arr_0")


@dataclass(frozen=True)
class VoxelImage:
    """A 3-D image with its voxel size.

    Attributes:
        data: (nz, ny, nx) array: boolean mask, grey values or Hounsfield units.
        voxel_size: (dz, dy, dx) mm, or ``None`` when the file does not say.
        source: where it came from (for messages).
        origin: (x, y, z) mm world (RAS+) position of the centre of voxel ``[0, 0, 0]``, for
            images read with ``canonical=True`` from a file with a position (NIfTI, DICOM);
            ``None`` otherwise.
    """

    data: np.ndarray
    voxel_size: tuple | None
    source: str = ""
    origin: tuple | None = None


def _check_3d(data: np.ndarray, source: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim == 4 and 1 in data.shape:
        data = data.reshape([s for s in data.shape if s != 1] or [1])
    if data.ndim != 3:
        raise ValueError(f"{source}: expected a 3-D image (z, y, x); got shape {data.shape}. "
                         f"Give a stack of slices (a 3-D array, multi-page TIFF or NIfTI volume)")
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{source}: image dtype {data.dtype} is not boolean or numeric")
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{source}: {int(bad.sum())} voxels are NaN or inf (the first at "
                             f"(z, y, x) = {first}); replace them with a background value "
                             f"(e.g. numpy.nan_to_num(image, nan=image[numpy.isfinite(image)]"
                             f".min())) or crop them away before segmenting")
    return data


def _size_tuple(v) -> tuple | None:
    if v is None:
        return None
    v = np.asarray(v, dtype=float).ravel()
    if v.size == 1:
        v = np.repeat(v, 3)
    if v.size != 3:
        return None
    return tuple(float(x) for x in v)


@contextmanager
def _reading(source: str, what: str):
    """Turn a parser's failure on a damaged file (numpy, zipfile, zlib, tifffile, nibabel, gzip
    raise what they like) into one ValueError naming the file; file-system faults (an OSError
    with an errno: permissions, a folder) pass unchanged."""
    try:
        yield
    except Exception as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise ValueError(f"{source}: could not read it as {what} ({type(err).__name__}: {err}); "
                         f"the file is damaged, truncated or of another format: check it or "
                         f"export it again") from None


#: every image file suffix :func:`load_image` reads (a folder is a DICOM series)
IMAGE_SUFFIXES = (".npy", ".npz", ".tif", ".tiff", ".nii", ".nii.gz")

#: largest angle, degrees, between an image's axes and the world axes taken as aligned
OBLIQUE_TOL_DEG = 0.5


def is_image_path(path) -> bool:
    """True for a file :func:`load_image` reads by its suffix, or a folder (a DICOM series)."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(IMAGE_SUFFIXES)


def _oriented(img, source: str, canonical: bool, scale: float) -> VoxelImage:
    """A nibabel image as (z, y, x) data; with ``canonical`` in RAS+ axes with its origin."""
    import nibabel

    data = _check_3d(np.asanyarray(img.dataobj), source)
    if not canonical:
        zooms = [float(x) * scale for x in img.header.get_zooms()[:3]]
        return VoxelImage(np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
                          tuple(zooms[::-1]), source)
    img = nibabel.as_closest_canonical(nibabel.Nifti1Image(data, img.affine))
    data = np.asanyarray(img.dataobj)
    A = np.asarray(img.affine, float)[:3, :3] * scale
    size = np.linalg.norm(A, axis=0)                                # (dx, dy, dz) mm
    if not np.all(size > 0):
        raise ValueError(f"{source}: the header's affine has a zero voxel size {size.tolist()} "
                         f"mm; fix the header (e.g. nibabel's set_sform/set_qform)")
    cosines = np.clip(np.diag(A / size), -1.0, 1.0)
    tilt = float(np.degrees(np.arccos(cosines.min())))
    if tilt > OBLIQUE_TOL_DEG:
        log.warning("%s: the image axes are %.1f° off the world axes (an oblique scan); the bone "
                    "is taken in the scanner's axes, not resampled to the world's", source, tilt)
    origin = tuple(float(v) * scale for v in np.asarray(img.affine, float)[:3, 3])
    return VoxelImage(np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
                      tuple(float(v) for v in size[::-1]), source, origin)


def load_image(path, *, key: str | None = None, canonical: bool = False) -> VoxelImage:
    """Read a 3-D image.

    Supported: ``.npy`` (one array), ``.npz`` (array ``key``, else ``image``/``data``/
    ``volume``/``mask`` or the only array; voxel size from ``voxel_size_mm``/``voxel_size``/
    ``spacing`` when present), ``.tif``/``.tiff`` multi-page stacks (tifffile), ``.nii``/
    ``.nii.gz`` (nibabel; transposed from (x, y, z) to (z, y, x), voxel size from the header;
    stored values scaled by the header's scl_slope/scl_inter), and a folder holding one DICOM
    series (pydicom, extra ``dicom``; slices sorted along the slice normal by
    ImagePositionPatient, values ``RescaleSlope · stored + RescaleIntercept``, i.e. HU for
    CT; :mod:`febone.voxel.dicom`).

    Args:
        path: the file, or the DICOM series' folder.
        key: the array of an ``.npz`` archive.
        canonical: NIfTI and DICOM: turn the axes to the closest RAS+ orientation and set
            :attr:`VoxelImage.origin` (see the module docstring). Other formats have no
            orientation and are read as they are.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unknown extension, missing key, not 3-D, NaN/inf voxels, or a file its
            reader cannot parse (damaged, truncated, another format).
        TypeError: not a numeric or boolean image.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    name = path.name.lower()
    source = str(path)
    if path.is_dir():
        from .dicom import read_series

        return _oriented(read_series(path), source, canonical, 1.0)
    if name.endswith(".npy"):
        with _reading(source, "a NumPy .npy array"):
            data = np.load(path)
        return VoxelImage(_check_3d(data, source), None, source)
    if name.endswith(".npz"):
        with _reading(source, "a NumPy .npz archive"), np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        keys = list(arrays)
        if key is not None:
            if key not in keys:
                raise ValueError(f"{source}: no array {key!r}; it holds {keys}")
            chosen = key
        else:
            found = [k for k in _IMAGE_KEYS if k in keys]
            arrays3d = [k for k in keys if np.ndim(arrays[k]) >= 3]
            if found:
                chosen = found[0]
            elif len(arrays3d) == 1:
                chosen = arrays3d[0]
            else:
                raise ValueError(f"{source}: cannot tell which array is the image among "
                                 f"{keys}; name it with key=... (CLI: --key)")
        size = next((_size_tuple(arrays[k]) for k in _SIZE_KEYS if k in keys), None)
        return VoxelImage(_check_3d(arrays[chosen], source), size, source)
    if name.endswith((".tif", ".tiff")):
        import tifffile

        with _reading(source, "a TIFF stack"):
            data = tifffile.imread(path)
        return VoxelImage(_check_3d(data, source), None, source)
    if name.endswith((".nii", ".nii.gz")):
        import nibabel

        with _reading(source, "a NIfTI volume"):
            img = nibabel.load(path)
            img = nibabel.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
            unit = img.header.get_xyzt_units()[0]
        scale = {"meter": 1000.0, "micron": 1e-3}.get(unit, 1.0)
        return _oriented(img, source, canonical, scale)
    raise ValueError(f"{source}: unsupported image format; use .npy, .npz, .tif/.tiff, "
                     f".nii/.nii.gz or a folder holding one DICOM series")


@dataclass(frozen=True)
class Segmentation:
    """A bone mask ready for voxel FE.

    Attributes:
        mask: (nz, ny, nx) bool bone voxels (largest 6-connected component if requested).
        voxel_size: (dz, dy, dx) mm after resampling.
        threshold: global threshold used (image units after calibration; None for masks).
        bv_tv: bone volume fraction of the image box, after island removal.
        n_components: 6-connected bone components before island removal.
        removed_voxels: bone voxels dropped with the smaller components.
        grey: (nz, ny, nx) float32 image after calibration, smoothing and resampling (for
            grey-value moduli), or None for boolean input.
    """

    mask: np.ndarray
    voxel_size: tuple
    threshold: float | None
    bv_tv: float
    n_components: int
    removed_voxels: int
    grey: np.ndarray | None = None


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's global threshold (maximal between-class variance) of a grey-value array."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        raise ValueError("the image is constant: no threshold separates bone from background; "
                         "check the file or give --threshold")
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centers = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


def largest_component(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Keep the largest 6-connected (face-connected) component.

    Returns:
        (mask, number of components, voxels removed).
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask)  # default structure: 6-connectivity in 3-D
    if n <= 1:
        return mask.copy(), int(n), 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = labels == int(np.argmax(sizes))
    return keep, int(n), int(mask.sum() - keep.sum())


def _block_mean(data: np.ndarray, factor: int, dtype=np.float32) -> np.ndarray:
    """Average over factor³ blocks (the image is cropped to a multiple of factor), in ``dtype``."""
    nz, ny, nx = (s // factor * factor for s in data.shape)
    if min(nz, ny, nx) == 0:
        raise ValueError(f"resample factor {factor} exceeds the image size {data.shape}")
    d = data[:nz, :ny, :nx].astype(dtype)
    return d.reshape(nz // factor, factor, ny // factor, factor, nx // factor, factor).mean(
        axis=(1, 3, 5))


def segment(image, voxel_size=None, *, sigma: float = 0.0, resample: int = 1,
            threshold: float | str | None = "otsu", calibration: tuple | None = None,
            keep_largest: bool = True) -> Segmentation:
    """Segment a micro-CT image into a bone mask.

    Steps, in order: HU calibration ρ = a + b·HU (g/cm³, optional), Gaussian smoothing,
    block-average resampling by an integer factor, a global threshold, and the largest
    6-connected component.

    Args:
        image: (nz, ny, nx) array or :class:`VoxelImage`. Boolean arrays are masks: no
            smoothing or threshold unless ``resample`` > 1 (then re-thresholded at 0.5).
        voxel_size: (dz, dy, dx) or scalar mm (taken from a :class:`VoxelImage` if None).
        sigma: Gaussian smoothing σ in voxels of the input (0: none).
        resample: integer coarsening factor (2 doubles the voxel size); the image is
            cropped to a multiple of it.
        threshold: grey value (after calibration) above which a voxel is bone, or
            ``"otsu"`` for Otsu's threshold.
        calibration: (a, b) of ρ = a + b·HU, for HU images; thresholds are then g/cm³.
        keep_largest: keep only the largest face-connected component (islands would be
            unsupported rigid bodies in a compression test).

    Raises:
        ValueError: not 3-D, no voxel size, empty mask, bad options.
    """
    if isinstance(image, VoxelImage):
        voxel_size = image.voxel_size if voxel_size is None else voxel_size
        source = image.source or "image"
        image = image.data
    else:
        source = "image"
    data = _check_3d(np.asarray(image), source)
    if voxel_size is None:
        raise ValueError(f"{source}: the voxel size is unknown; give it in mm (CLI: "
                         f"--voxel-size 0.0195)")
    from .grid import _as_voxel_size

    size = np.asarray(_as_voxel_size(voxel_size))
    if int(resample) != resample or resample < 1:
        raise ValueError(f"resample must be a positive integer factor; got {resample}")
    resample = int(resample)
    if sigma < 0:
        raise ValueError(f"sigma must be ≥ 0 voxels; got {sigma}")
    is_mask = data.dtype == bool
    grey = None
    used = None
    if is_mask:
        if resample > 1:
            mask = _block_mean(data, resample) >= 0.5
        else:
            mask = data.copy()
    else:
        g = data.astype(np.float32)
        if calibration is not None:
            a, b = (float(x) for x in calibration)
            if not b > 0:
                raise ValueError(f"CT calibration slope b must be positive (g/cm³ per HU); got {b}")
            g = np.maximum(a + b * g, 0.0).astype(np.float32)
        if sigma > 0:
            from scipy import ndimage

            g = ndimage.gaussian_filter(g, float(sigma))
        if resample > 1:
            g = _block_mean(g, resample)
        if threshold is None or (isinstance(threshold, str) and threshold.lower() == "otsu"):
            used = otsu_threshold(g)
        elif isinstance(threshold, str):
            raise ValueError(f"threshold must be a number or 'otsu'; got {threshold!r}")
        else:
            used = float(threshold)
        mask = g > used
        grey = g
    size = size * resample
    if not mask.any():
        what = f"above the threshold {used:g}" if used is not None else "in the mask"
        raise ValueError(f"{source}: no bone voxels {what}; lower the threshold (values span "
                         f"{float(grey.min()):g}..{float(grey.max()):g})" if grey is not None
                         else f"{source}: the mask is empty (no True voxels)")
    n_comp, removed = 1, 0
    if keep_largest:
        mask, n_comp, removed = largest_component(mask)
        if removed:
            log.info("segment: kept the largest of %d components, removed %d island voxels",
                     n_comp, removed)
    return Segmentation(mask, tuple(float(s) for s in size), used, float(mask.mean()), n_comp,
                        removed, grey)

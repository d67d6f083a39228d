"""A DICOM series (a folder of slices) as one oriented volume.

Every file of the folder that pydicom reads as DICOM with pixel data is a slice; files that
are not DICOM (a DICOMDIR, notes) are skipped. The slices must belong to one series
(SeriesInstanceUID), share their orientation (ImageOrientationPatient), size and pixel
spacing, and be evenly spaced along the slice normal: they are sorted by the projection of
ImagePositionPatient onto that normal (not by file name or InstanceNumber, which scanners
number either way). Stored values become ``RescaleSlope · stored + RescaleIntercept`` (HU
for CT; slope 1 and intercept 0 when absent).

DICOM's patient frame is LPS+ (x to the patient's left, y posterior, z superior); the volume
is returned with a RAS+ affine (x, y negated), the convention of NIfTI and of
:func:`febone.voxel.image.load_image`'s ``canonical``.

pydicom is an optional dependency (``pip install febone[dicom]``): pure Python, needed only
for DICOM input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_series", "SPACING_TOL"]

#: largest relative deviation of one slice gap from the mean gap (a missing or doubled slice
#: breaks it)
SPACING_TOL = 0.01


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError("reading a DICOM series needs pydicom: pip install 'febone[dicom]' "
                          "(or pip install pydicom), or convert the series to NIfTI "
                          "(e.g. dcm2niix) and give the .nii.gz") from None
    return pydicom


def _slices(folder: Path, source: str) -> list:
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    out = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError):
            continue
        if "PixelData" in ds:
            out.append((path, ds))
    if not out:
        raise ValueError(f"{source}: the folder holds no DICOM slice with pixel data; give the "
                         f"folder of one CT series (or a .nii.gz / TIFF stack)")
    series = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in out})
    if len(series) > 1:
        raise ValueError(f"{source}: the folder mixes {len(series)} DICOM series "
                         f"(SeriesInstanceUID {', '.join(series[:3])}...); move each series "
                         f"into a folder of its own and give that folder")
    return out


def _same(out: list, key: str, source: str, default=None):
    """The value of ``key`` common to all slices (ValueError naming the first that differs)."""
    first = out[0][1].get(key, default)
    if first is None:
        raise ValueError(f"{source}: slice {out[0][0].name} has no {key}; the series cannot be "
                         f"placed in space: export it with its geometry, or convert it to NIfTI")
    ref = np.asarray(first, float)
    for path, ds in out[1:]:
        v = ds.get(key, default)
        if v is None or np.asarray(v, float).shape != ref.shape or \
                not np.allclose(np.asarray(v, float), ref, atol=1e-4):
            raise ValueError(f"{source}: slice {path.name} has {key} {v} where "
                             f"{out[0][0].name} has {first}; the folder holds slices of "
                             f"different geometry: keep one series of one geometry")
    return ref


def read_series(folder) -> "nibabel.Nifti1Image":  # noqa: F821
    """The series in ``folder`` as a nibabel image, data (columns, rows, slices) = (x, y, z)
    in HU (float32), with its RAS+ affine (mm).

    Raises:
        ImportError: pydicom missing (the message says how to install it).
        ValueError: no slices, several series, slices of different geometry, no position or
            orientation, one slice only, two slices at one position, uneven slice gaps, or
            pixel data pydicom cannot decode (compressed transfer syntaxes need its plugins).
    """
    import nibabel

    folder = Path(folder)
    source = str(folder)
    out = _slices(folder, source)
    if len(out) < 2:
        raise ValueError(f"{source}: one DICOM slice is no volume; give the folder of the whole "
                         f"series")
    iop = _same(out, "ImageOrientationPatient", source)
    spacing = _same(out, "PixelSpacing", source)               # (between rows, between columns)
    _same(out, "Rows", source)
    _same(out, "Columns", source)
    row_dir, col_dir = iop[:3], iop[3:]                        # along a row (columns), a column
    normal = np.cross(row_dir, col_dir)
    pos = []
    for path, ds in out:
        p = ds.get("ImagePositionPatient")
        if p is None:
            raise ValueError(f"{source}: slice {path.name} has no ImagePositionPatient; the "
                             f"slices cannot be ordered: export the series with its geometry")
        pos.append(np.asarray(p, float))
    pos = np.array(pos)
    height = pos @ normal
    order = np.argsort(height, kind="stable")
    gaps = np.diff(height[order])
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise ValueError(f"{source}: slices {out[order[k]][0].name} and "
                         f"{out[order[k + 1]][0].name} lie at the same position; the folder "
                         f"holds a slice twice or two acquisitions: keep one")
    dz = float(gaps.mean())
    if np.any(np.abs(gaps - dz) > SPACING_TOL * dz):
        k = int(np.argmax(np.abs(gaps - dz)))
        raise ValueError(f"{source}: uneven slice gaps ({gaps.min():.4g}–{gaps.max():.4g} mm; "
                         f"the gap after {out[order[k]][0].name} is {gaps[k]:.4g} mm against a "
                         f"mean {dz:.4g} mm): a slice is missing; give the complete series")
    planes = []
    for i in order:
        path, ds = out[i]
        try:
            stored = ds.pixel_array
        except Exception as err:    # pydicom raises what its decoders raise
            raise ValueError(f"{source}: cannot decode the pixels of {path.name} "
                             f"({type(err).__name__}: {err}); compressed series need pydicom's "
                             f"decoder plugins (e.g. pip install pylibjpeg), or convert the "
                             f"series to NIfTI") from None
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        planes.append(np.asarray(stored, np.float32) * np.float32(slope) + np.float32(intercept))
    vol = np.stack(planes, axis=0)                             # (slices, rows, columns)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * float(spacing[1])            # column index i
    affine_lps[:3, 1] = col_dir * float(spacing[0])            # row index j
    affine_lps[:3, 2] = normal * dz                            # slice index k
    affine_lps[:3, 3] = pos[order[0]]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps      # LPS+ -> RAS+
    return nibabel.Nifti1Image(np.transpose(vol, (2, 1, 0)), affine)

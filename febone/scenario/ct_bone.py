"""A scenario's ``[bone]`` given as a clinical CT: its keys, their units, and the mesh built.

::

    [bone]
    image = "hip.nii.gz"              # NIfTI, a DICOM series folder or a TIFF stack (HU)
    calibration = [-0.005, 0.0008]    # ρ = A + B·HU: A g/cm³, B g/cm³ per HU
    density_kind = "apparent"         # or "ash", "qct" (febone.voxel.ct)
    threshold = "0.1 g/cm3"           # bone: largest component above it (default 0.1 g/cm³)
    resample = 2                      # average ρ over 2×2×2 blocks (default 1)
    mask = "hip_mask.nii.gz"          # instead of the threshold (optional)
    voxel_size_mm = [0.6, 0.5, 0.5]   # TIFF stacks only: dz, dy, dx
    law = "morgan-femoral-neck"

The bone model (:func:`febone.voxel.ct.ct_bone_file`: hex8 voxels with their apparent
density in ``density_g_cm3``, and the node-set masks of the femur's load cases, else of the
vertebra's, found from the geometry as for meshes without masks) is built once and kept in febone's cache folder; the scenario's
bone is that mesh file, so the remodelling runner, studies and the checks take it as they
take any mesh file. Relative paths start at the scenario file's folder.
"""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CT_KEYS", "ct_bone_mesh"]

#: the [bone] keys of a CT bone (besides law, nu and the DXA keys of any bone)
CT_KEYS = ("image", "calibration", "density_kind", "threshold", "resample", "mask",
           "voxel_size_mm")

_DENSITY_UNITS = {"g/cm3": 1.0, "g/cm³": 1.0, "g/cc": 1.0, "mg/cm3": 1e-3, "mg/cm³": 1e-3,
                  "mg/cc": 1e-3, "kg/m3": 1e-3, "kg/m³": 1e-3}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _density(v, ctx, key: str, per_hu: bool = False) -> float:
    """A density (g/cm³), or with ``per_hu`` a density per HU: a number or '<number> <unit>'."""
    unit_doc = "g/cm³ per HU" if per_hu else "g/cm³"
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ctx.err(key, f"expected a number ({unit_doc}) or a string with a unit; got "
                           f"{type(v).__name__} {v!r}")
    if not isinstance(v, str):
        x = float(v)
    else:
        m = _QUANTITY.match(v)
        if not m:
            raise ctx.err(key, f"cannot read {v!r} as '<number> <unit>' (for example "
                               f"{'0.0008 g/cm3/HU' if per_hu else '0.1 g/cm3'!r})")
        x, unit = float(m.group(1)), m.group(2)
        if per_hu:
            if unit and not unit.endswith("/HU"):
                raise ctx.err(key, f"the slope's unit must end in /HU (e.g. 'g/cm3/HU', "
                                   f"'mg/cm3/HU'); got {unit!r}")
            unit = unit[:-3] if unit else unit
        if unit:
            if unit not in _DENSITY_UNITS:
                raise ctx.err(key, f"unknown density unit {unit!r}; accepted: "
                                   f"{', '.join(_DENSITY_UNITS)}{' (per HU)' if per_hu else ''}")
            x *= _DENSITY_UNITS[unit]
    if not x == x or x in (float("inf"), float("-inf")):
        raise ctx.err(key, f"must be finite; got {v!r}")
    return x


def _path(v, ctx, key: str, base_dir: Path) -> Path:
    if not isinstance(v, str) or not v.strip():
        raise ctx.err(key, f"must be a path (a non-empty string); got {v!r}")
    p = Path(v.strip()).expanduser()
    p = p if p.is_absolute() else base_dir / p
    if not p.exists():
        raise ctx.err(key, f"{str(p)!r} not found; give an existing file or DICOM folder "
                           f"(relative paths start at the scenario file's folder)")
    return p.resolve()


def _with_standard_sets(mesh):
    """The mesh with the node-set masks of the femur's cases (stance, sideways fall), else of
    the vertebra's, as the geometry finds them (``febone.strength.geometry``); unchanged when
    the geometry finds neither (the scenario's check then names what is missing)."""
    import logging

    from ..strength.geometry import with_case_sets

    for cases in (("stance", "sideways-fall"), ("vertebral-compression",)):
        try:
            return with_case_sets(mesh, cases)
        except ValueError as err:
            logging.getLogger(__name__).info("CT bone: no %s node sets (%s)", cases, err)
    return mesh


def ct_bone_mesh(t: dict, ctx, base_dir: Path) -> tuple[str, dict]:
    """The mesh file of a ``[bone]`` table with ``image``, and the table with its paths
    resolved (for the scenario's document).

    Raises:
        ScenarioError (via ``ctx.err``): a missing or malformed key, an unknown unit or
            density kind, ``mesh`` or ``density_field`` beside ``image``, and the CT route's
            own faults (no bone above the threshold, negative densities, ...), keyed
            ``bone.<key>``.
    """
    from ..voxel.ct import DEFAULT_THRESHOLD, DENSITY_KINDS, CTCalibration, ct_bone_file
    from ..voxel.image import is_image_path

    for wrong in ("mesh", "density_field"):
        if wrong in t:
            raise ctx.err(f"bone.{wrong}", f"a CT bone ([bone] image) has no {wrong}: its "
                                           f"density comes from the image and calibration; "
                                           f"remove {wrong}")
    image = _path(t["image"], ctx, "bone.image", base_dir)
    if not is_image_path(image):
        raise ctx.err("bone.image", f"{image.name} is not a CT image; give a .nii/.nii.gz file, "
                                    f"a folder holding one DICOM series or a .tif/.tiff stack")
    if "calibration" not in t:
        raise ctx.err("bone", "a CT bone needs calibration = [A, B] (ρ = A + B·HU: A in g/cm³, "
                              "B in g/cm³ per HU, from the phantom scanned with the patient)")
    cal = t["calibration"]
    if not isinstance(cal, list) or len(cal) != 2:
        raise ctx.err("bone.calibration", f"must be [A, B] (ρ = A + B·HU: A in g/cm³, B in "
                                          f"g/cm³ per HU); got {cal!r}")
    a = _density(cal[0], ctx, "bone.calibration[0]")
    b = _density(cal[1], ctx, "bone.calibration[1]", per_hu=True)
    kind = t.get("density_kind", "apparent")
    if kind not in DENSITY_KINDS:
        raise ctx.err("bone.density_kind", f"must be one of {list(DENSITY_KINDS)} (what "
                                           f"A + B·HU is); got {kind!r}")
    try:
        calibration = CTCalibration(a, b, kind)
    except ValueError as e:
        raise ctx.err("bone.calibration", str(e)) from None
    threshold = _density(t.get("threshold", DEFAULT_THRESHOLD), ctx, "bone.threshold")
    resample = t.get("resample", 1)
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
        raise ctx.err("bone.resample", f"must be a positive integer factor (2 doubles the voxel "
                                       f"size); got {resample!r}")
    mask = None if "mask" not in t else _path(t["mask"], ctx, "bone.mask", base_dir)
    if mask is not None and "threshold" in t:
        raise ctx.err("bone.threshold", "give threshold or mask, not both: a mask replaces the "
                                        "threshold")
    size = t.get("voxel_size_mm")
    if size is not None:
        ok = isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0
        ok = ok or (isinstance(size, list) and len(size) == 3 and all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in size))
        if not ok:
            raise ctx.err("bone.voxel_size_mm", f"must be a positive number or [dz, dy, dx], "
                                                f"mm; got {size!r}")
    try:
        path = ct_bone_file(image, calibration, threshold=threshold, resample=resample,
                            mask=mask, voxel_size=size, finish=_with_standard_sets,
                            finish_tag="standard node sets")
    except ImportError as e:
        raise ctx.err("bone.image", str(e)) from None
    except ValueError as e:
        key = next((f"bone.{k}" for k in ("threshold", "mask", "calibration", "voxel_size_mm")
                    if k.split("_")[0] in str(e).lower()), "bone.image")
        raise ctx.err(key, str(e)) from None
    resolved = {**t, "image": str(image)}
    if mask is not None:
        resolved["mask"] = str(mask)
    return str(path), resolved

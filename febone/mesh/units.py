"""Length units of mesh coordinates: is a bone's size plausible in mm, and conversion to mm.

febone computes in mm, N and MPa. A mesh written in metres (a femur 0.45 long) solves without
complaint and answers reactions 1000× too small and a fracture load of 0 N, so the command line
checks the size of every bone it reads (:func:`check_bone_size`) and converts on request
(:func:`to_mm`, ``--units m|cm|mm|um``).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from .mesh import Mesh

__all__ = ["UNITS_MM", "PLAUSIBLE_EXTENT_MM", "extent_mm", "to_mm", "check_bone_size"]

log = logging.getLogger(__name__)

#: Millimetres per unit of the coordinates.
UNITS_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0, "um": 1e-3}

#: Plausible largest bounding-box side of a bone or bone specimen, mm: from a ~1 mm micro-CT
#: biopsy (0.5 mm leaves a margin) to a whole adult femur (~0.5 m; 1000 mm leaves a margin).
PLAUSIBLE_EXTENT_MM = (0.5, 1000.0)


def extent_mm(points) -> float:
    """Largest side of the bounding box of (n, 3) ``points``, in the coordinates' own unit."""
    p = np.asarray(points, dtype=np.float64)
    return float(np.ptp(p, axis=0).max()) if p.size else 0.0


def to_mm(mesh: Mesh, units: str) -> Mesh:
    """The mesh with coordinates converted from ``units`` (``m``, ``cm``, ``mm``, ``um``) to mm."""
    if units not in UNITS_MM:
        raise ValueError(f"unknown length unit {units!r}; use one of {', '.join(UNITS_MM)}")
    if units == "mm":
        return mesh
    return replace(mesh, points=np.asarray(mesh.points) * UNITS_MM[units])


def _plausible(extent: float) -> bool:
    lo, hi = PLAUSIBLE_EXTENT_MM
    return lo <= extent <= hi


def check_bone_size(mesh: Mesh, source: str, *, units: str | None = None,
                    option: str | None = "--units", path=None) -> None:
    """Refuse a bone whose size is implausible in mm, naming the measured extent and the fix.

    Args:
        mesh: the bone, coordinates already converted to mm.
        source: what to call it in the message (e.g. the file name).
        units: the unit the user declared (``option`` given explicitly): an implausible size
            is then only logged as a warning, since the user vouched for it.
        option: the command-line option that converts, for the message; ``None`` where there
            is none: the message then shows how to write a converted copy of ``path``.
        path: the mesh file, for that message.

    Raises:
        ValueError: largest bounding-box side outside :data:`PLAUSIBLE_EXTENT_MM` (mm) and no
            unit declared; the message suggests the units that would make it plausible.
    """
    extent = extent_mm(mesh.points)
    if _plausible(extent):
        return
    lo, hi = PLAUSIBLE_EXTENT_MM
    said = f"after {option} {units} it spans" if units else "it spans"
    what = (f"{source}: {said} {extent:.4g} mm along its largest side, implausible for a bone "
            f"or bone specimen ({lo:g}–{hi:g} mm)")
    if units is not None:
        log.warning("%s; continuing, as %s %s was given", what, option, units)
        return
    fits = [u for u in UNITS_MM if u != "mm" and _plausible(extent * UNITS_MM[u])]
    if not fits:
        raise ValueError(f"{what}. febone computes in mm, and no unit among "
                         f"{', '.join(UNITS_MM)} makes this size plausible: check the "
                         f"coordinates (scaled or corrupted?)")
    sizes = ", ".join(f"in {u} it would span {extent * UNITS_MM[u]:.4g} mm" for u in fits)
    if option is not None:
        fix = f"pass {option} {fits[0]} (or {option} mm to keep the size as it is)"
    else:
        src = str(path)
        dst = str(Path(src).with_name(Path(src).stem + "_mm.vtu"))
        fix = (f"write a copy in mm and use that: python -c \"import febone as fb; from "
               f"febone.mesh.units import to_mm; fb.write_mesh({dst!r}, "
               f"to_mm(fb.read_mesh({src!r}), {fits[0]!r}))\"")
    raise ValueError(f"{what}. febone computes in mm ({sizes}): {fix}")

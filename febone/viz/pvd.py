"""ParaView time series: one VTU per output time plus a PVD collection (:func:`write_pvd`).

Each VTU is written by :func:`febone.write_mesh` (the mesh's own data plus that time's fields),
so meshio and ParaView read it; the ``.pvd`` file lists them with their times, which ParaView
shows as an animation. Field names carry their units (``displacement_mm``, ``von_mises_MPa``,
``density_g_cm3``), as in :func:`febone.io_fields.solution_fields`.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Mapping, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from ..files import atomic_write_text
from .fields import locate

__all__ = ["write_pvd", "split_fields"]

log = logging.getLogger(__name__)


def split_fields(mesh, fields: Mapping) -> tuple[dict, dict]:
    """``(point_data, cell_data)`` from a flat ``{name: array}`` dict, each array placed by its
    first axis (n_nodes -> point, n_elements -> cell; known names such as ``displacement_mm``
    decide when the two counts are equal). A dict with exactly the keys ``point_data`` and/or
    ``cell_data`` is taken as already split.

    Raises:
        ValueError: an array fits neither count, or both and its name does not decide.
    """
    if not isinstance(fields, Mapping):
        raise TypeError(f"fields must be a dict {{name: array}}; got {type(fields).__name__}")
    if fields and set(fields) <= {"point_data", "cell_data"}:
        return dict(fields.get("point_data", {})), dict(fields.get("cell_data", {}))
    point, cell = {}, {}
    for name, a in fields.items():
        a = np.asarray(a)
        where = locate(mesh, name, a)
        (point if where == "point" else cell)[name] = a
    return point, cell


def write_pvd(path, mesh, times: Sequence[float], fields: Sequence[Mapping], *,
              time_unit: str = "years") -> Path:
    """Write ``path`` (``.pvd``) and one VTU per time beside it, ``<stem>_0000.vtu``, ...

    Args:
        path: the PVD file; the VTUs go into the same folder.
        mesh: the :class:`~febone.Mesh` (geometry constant over time; its own point/cell data
            are written into every VTU, overridden by same-named fields).
        times: (n_times,) output times, increasing, in ``time_unit``.
        fields: n_times dicts ``{name: array}``: arrays (n_nodes, ...) are point data,
            (n_elements, ...) cell data (or ``{"point_data": {...}, "cell_data": {...}}``),
            e.g. ``displacement_mm`` (n_nodes, 3), ``von_mises_MPa`` and ``density_g_cm3``
            (n_elements,).
        time_unit: unit of ``times``, recorded in the PVD file as a comment.

    Returns:
        The PVD path.

    Raises:
        ValueError: lengths differ, times not finite and increasing, misplaced arrays.
    """
    from ..mesh.io import write_mesh

    path = Path(path)
    if path.suffix.lower() != ".pvd":
        raise ValueError(f"write_pvd writes a .pvd collection; got {path.name!r} (use e.g. "
                         f"{path.with_suffix('.pvd').name!r})")
    times = [float(t) for t in times]
    if isinstance(fields, Mapping):
        raise TypeError("fields must be a sequence with one dict per time, not one dict")
    fields = list(fields)
    if len(times) != len(fields) or not times:
        raise ValueError(f"give one field dict per time: {len(times)} times, {len(fields)} dicts")
    if not all(math.isfinite(t) for t in times) or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError(f"times must be finite and strictly increasing ({time_unit}); got {times}")
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (t, f) in enumerate(zip(times, fields)):
        point, cell = split_fields(mesh, f)
        vtu = path.with_name(f"{path.stem}_{k:04d}.vtu")
        write_mesh(vtu, mesh, point_data=point, cell_data=cell)
        entries.append(f'    <DataSet timestep="{t!r}" group="" part="0" '
                       f'file={quoteattr(vtu.name)}/>')
    text = "\n".join(['<?xml version="1.0"?>',
                      f"<!-- febone time series: timestep in {time_unit}; one VTU per time -->",
                      '<VTKFile type="Collection" version="0.1" byte_order="LittleEndian">',
                      "  <Collection>", *entries, "  </Collection>", "</VTKFile>", ""])
    atomic_write_text(path, text)
    log.info("wrote %s (%d times)", path, len(times))
    return path

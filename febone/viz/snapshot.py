"""Pictures of a solved model for the CLI commands' ``--out`` folders (:func:`snapshot`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from .pvd import split_fields

__all__ = ["snapshot", "SNAPSHOT_FIELDS"]

log = logging.getLogger(__name__)

# (field, picture file stem, plot_field options): drawn when the field is present
SNAPSHOT_FIELDS = (
    ("von_mises_MPa", "von_mises", {}),
    ("principal_strain_max", "principal_strain_max", {}),
    ("principal_strain_min", "principal_strain_min", {}),
    ("sed_MPa", "sed", {}),
    ("effective_strain", "effective_strain", {}),
    ("damage", "damage", {"clip": True}),
    ("density_change_pct", "density_change_pct", {"clip": True}),
    ("density_change_g_cm3", "density_change", {"clip": True}),
    ("density_g_cm3", "density_section", {"clip": True}),
    ("displacement_mm", "displacement", {}),
)


def _present(name: str, available) -> bool:
    if name in available:
        return True
    return name.startswith("principal_strain_") and "principal_strain" in available


def snapshot(mesh, fields: Mapping, out_dir, *, bone: str | None = None,
             window_size=(1024, 768)) -> list[Path]:
    """Write a PNG per known field of a solved model into ``out_dir``; returns their paths.

    Drawn when present in ``fields`` (or, for the density, in the mesh's cell data), each with
    the bone's default camera (femur: anterior) and the section view for density, density
    change and damage: ``von_mises.png``, ``principal_strain_max.png``/``_min.png`` (microstrain),
    ``sed.png``, ``effective_strain.png``, ``damage.png``, ``density_change_pct.png``,
    ``density_change.png``, ``density_section.png``, ``displacement.png``. The VTU itself is
    written by the caller (``write_solution``/``write_mesh``), not here.

    Args:
        mesh: the :class:`~febone.Mesh` that was solved.
        fields: ``{name: array}`` as written to the VTU (cell arrays (n_elements, ...), point
            arrays (n_nodes, ...); e.g. ``{**point_data, **cell_data}`` of
            :func:`febone.io_fields.solution_fields`), or ``{"point_data": ..., "cell_data": ...}``.
        out_dir: folder (created).
        bone: bundled bone name or file stem for the camera presets (default: from the mesh).
        window_size: (width, height) pixels.

    Raises:
        ImportError: pyvista/imageio missing (``pip install 'febone[viz]'``).
        RenderingError: VTK cannot draw on this machine.
        ValueError: misplaced arrays; no known field to draw (lists what was given).
    """
    from .render import plot_field

    point, cell = split_fields(mesh, fields)
    flat = {**point, **cell}
    available = set(flat) | ({"density_g_cm3"} & set(mesh.cell_data))
    todo = [(f, stem, opts) for f, stem, opts in SNAPSHOT_FIELDS if _present(f, available)]
    if not todo:
        raise ValueError(f"snapshot found no field it knows how to draw in {sorted(flat)}; known: "
                         f"{[f for f, _, _ in SNAPSHOT_FIELDS]}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, stem, opts in todo:
        path = out_dir / f"{stem}.png"
        plot_field(mesh, name, fields=flat, path=path, bone=bone, window_size=window_size,
                   show=False, **opts)
        written.append(path)
    log.info("snapshot: %d pictures in %s", len(written), out_dir)
    return written

"""Pictures for the ``--out`` folders of the commands (febone.viz.snapshot, headless)."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_pictures(mesh, fields: dict, out, bone: str | None = None) -> list[Path]:
    """PNGs of the known fields in ``fields`` ({"point_data": ..., "cell_data": ...}) into
    ``out``; none, with a warning, without pyvista or offscreen OpenGL."""
    try:
        from ..viz import RenderingError, snapshot
    except ImportError as err:
        log.warning("no pictures (pip install febone[viz]): %s", err)
        return []
    try:
        return snapshot(mesh, fields, Path(out), bone=bone)
    except (ImportError, RenderingError) as err:
        log.warning("no pictures: %s", err)
        return []

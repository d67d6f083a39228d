"""Pictures, animations, trajectory plots, ParaView output and reports (the ``viz`` extra).

- :func:`plot_field`: 3-D picture of a cell or point field (von Mises, principal strains, SED,
  damage, density, density change...) with camera presets per bundled bone, clipping, slicing.
- :func:`animate_density`: GIF of the density (change) over a remodelling run.
- :func:`plot_trajectories`: BMD, T-score (WHO bands), fracture load, stiffness and turnover
  markers over time, several protocols on one figure (matplotlib, no display needed).
- :func:`write_pvd`: a VTU per output time plus a PVD time series for ParaView / meshio.
- :func:`write_report`: Markdown + HTML report with results tables and pictures.
- :func:`snapshot`: the pictures a CLI command writes into its ``--out`` folder.

Importing this package is cheap: pyvista, matplotlib and imageio are imported by the functions
that use them. Without a display pictures are rendered offscreen (EGL or OSMesa, see
:mod:`febone.viz.backend`); a picture VTK failed to draw raises :class:`RenderingError`.
"""
from .animation import animate_density
from .backend import RenderingError
from .cameras import CAMERAS, SECTIONS, CameraSpec, bone_kind
from .fields import FIELDS, FieldSpec, ScalarField, resolve_field
from .pvd import write_pvd
from .render import plot_field, to_pyvista
from .report import write_report
from .snapshot import snapshot
from .trajectories import plot_trajectories

__all__ = ["plot_field", "animate_density", "plot_trajectories", "write_pvd", "write_report",
           "snapshot", "to_pyvista", "RenderingError", "CAMERAS", "SECTIONS", "CameraSpec",
           "bone_kind", "FIELDS", "FieldSpec", "ScalarField", "resolve_field"]

"""3-D pictures of mesh fields with pyvista: :func:`plot_field`, :func:`to_pyvista`.

A picture shows one scalar field (per cell or per point) on the bone's surface, on the inside
of a clipped bone (``clip=``) or on a section plane (``slice=``, with the bone's outline
translucent for context), seen from a camera preset of the bone (:mod:`febone.viz.cameras`),
with a scalar bar titled ``label (unit)``. Without a display it renders offscreen
(:mod:`febone.viz.backend`); an image VTK failed to draw raises :class:`RenderingError`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .backend import check_image, has_display, import_pyvista
from .cameras import CameraSpec, bone_kind, camera_spec, plane
from .fields import ScalarField, resolve_field

__all__ = ["plot_field", "to_pyvista", "Scene", "BACKGROUND"]

log = logging.getLogger(__name__)

BACKGROUND = (255, 255, 255)
_VTK_TYPES = {"tetra": 10, "tetra10": 24, "hexahedron": 12}
_CONTEXT_GREY = (0.75, 0.75, 0.75)
_OUTLINE = (0.3, 0.3, 0.3)


def to_pyvista(mesh):
    """A ``pyvista.UnstructuredGrid`` of a :class:`~febone.Mesh` (points in mm, VTK node order)
    with two id arrays, ``_cell_id`` (cells) and ``_point_id`` (points), that survive clipping."""
    pv = import_pyvista()
    grid = pv.UnstructuredGrid({_VTK_TYPES[mesh.cell_type]: np.asarray(mesh.cells, np.int64)},
                               np.asarray(mesh.points, np.float64))
    grid.cell_data["_cell_id"] = np.arange(mesh.n_elements, dtype=np.int64)
    grid.point_data["_point_id"] = np.arange(mesh.n_nodes, dtype=np.int64)
    return grid


def _centre(mesh) -> np.ndarray:
    lo, hi = mesh.points.min(axis=0), mesh.points.max(axis=0)
    return 0.5 * (lo + hi)


def _frame(p, spec, datasets, window_size) -> None:
    """Point the camera along ``spec`` and fit the shown datasets tightly (parallel projection):
    the bone fills the picture width up to 95 % and its height between 17 % (above the scalar
    bar, its labels and title) and 97 %."""
    d = np.asarray(spec.view_from, float)
    d /= np.linalg.norm(d)
    up = np.asarray(spec.up, float)
    up = up - (up @ d) * d
    up /= np.linalg.norm(up)
    right = np.cross(-d, up)
    pts = np.concatenate([np.asarray(ds.points) for ds in datasets if ds.n_points])
    c = pts.mean(axis=0)
    x, y, z = (pts - c) @ right, (pts - c) @ up, (pts - c) @ d
    aspect = window_size[0] / window_size[1]
    ps = max((y.max() - y.min()) / 1.60, (x.max() - x.min()) / (1.9 * aspect), 1e-9) / spec.zoom
    # centre of the bone at 57 % of the height (midway between 17 % and 97 %)
    focal = c + 0.5 * (x.max() + x.min()) * right + (0.5 * (y.max() + y.min()) - 0.14 * ps) * up
    dist = 4.0 * max(np.ptp(x), np.ptp(y), np.ptp(z), 1e-9)
    cam = p.camera
    cam.focal_point = tuple(focal)
    cam.position = tuple(focal + dist * d)
    cam.up = tuple(up)
    cam.parallel_scale = ps
    p.renderer.ResetCameraClippingRange()


class Scene:
    """One pyvista plotter showing one field; values can be replaced (animation frames).

    Args:
        mesh: :class:`~febone.Mesh`.
        field: the :class:`ScalarField` to draw.
        kind: bone kind for camera and section presets (:func:`bone_kind`).
        clip, slice, camera: see :func:`plot_field`.
        clim: colour range in displayed units (default: the field's own).
        cmap: colour-map name (default: the field's).
        title: text in the top-left corner.
        window_size: (width, height) pixels.
        off_screen: render offscreen (True) or in a window.
    """

    def __init__(self, mesh, field: ScalarField, *, kind: str, clip=None, slice=None,
                 camera=None, clim=None, cmap=None, title=None, window_size=(1024, 768),
                 off_screen=True):
        pv = import_pyvista()
        self.field, self.mesh = field, mesh
        spec = camera_spec(kind, camera)
        grid = to_pyvista(mesh)
        data = grid.cell_data if field.location == "cell" else grid.point_data
        data["_field"] = field.values
        centre = _centre(mesh)
        coloured, context = [], None
        body = grid
        if clip is not None and clip is not False:
            n, o = plane(clip, kind, centre, "clip")
            body = grid.clip(normal=n, origin=o, crinkle=True)
            if body.n_cells == 0:
                raise ValueError(f"clip={clip!r} removed the whole mesh; move the plane "
                                 f"(origin {o.tolist()} mm, normal {n.tolist()})")
        if slice is not None and slice is not False:
            n, o = plane(slice, kind, centre, "slice")
            if camera is None:   # look at the section face-on, keeping +z (else +y) up
                up = (0.0, 0.0, 1.0) if abs(n[2]) < 0.9 else (0.0, 1.0, 0.0)
                spec = CameraSpec(tuple(n), up)
            cut = body.slice(normal=n, origin=o)
            if cut.n_cells == 0:
                raise ValueError(f"slice={slice!r} does not cut the mesh (origin {o.tolist()} mm, "
                                 f"normal {n.tolist()}); mesh bounds {grid.bounds}")
            coloured.append(cut)
            # context: the bone behind the plane (the side away from the normal), translucent
            # (its cut face set back by 1 % of the bone's size so it cannot z-fight the slice)
            gap = 0.01 * float(np.linalg.norm(np.ptp(np.asarray(mesh.points), axis=0)))
            behind = body.clip(normal=n, origin=o - gap * n)
            context = (behind if behind.n_cells else body).extract_surface(algorithm=None)
        else:
            coloured.append(body)
        self._datasets = coloured
        self.clim = tuple(map(float, clim)) if clim is not None else field.clim()
        p = pv.Plotter(off_screen=off_screen, window_size=list(window_size))
        p.set_background([c / 255 for c in BACKGROUND])
        bar = dict(title=field.title, color="black", vertical=False, position_x=0.2,
                   position_y=0.015, width=0.6, height=0.11, n_labels=5, fmt="%.4g",
                   title_font_size=20, label_font_size=16, shadow=False)
        for k, ds in enumerate(coloured):
            p.add_mesh(ds, scalars="_field", preference=field.location,
                       cmap=cmap or field.spec.cmap, clim=self.clim,
                       show_scalar_bar=(k == 0), scalar_bar_args=bar, copy_mesh=False)
        if context is not None:
            p.add_mesh(context, color=_CONTEXT_GREY, opacity=0.18, show_scalar_bar=False)
        else:   # outline, so that near-background colours (no change, white) still show the bone
            p.add_silhouette(body.extract_surface(algorithm=None), color=_OUTLINE, line_width=1.5)
        if title:
            p.add_text(title, position="upper_left", font_size=12, color="black", name="title")
        p.enable_parallel_projection()
        _frame(p, spec, [*coloured, context] if context is not None else coloured,
               window_size)
        self.plotter = p

    def set_values(self, values, title: str | None = None) -> None:
        """Replace the cell field's values ((n_elements,), displayed units) and the caption."""
        if self.field.location != "cell":
            raise ValueError("only cell fields can be replaced frame by frame; re-plot point fields")
        values = np.asarray(values, np.float64)
        if values.shape != (self.mesh.n_elements,):
            raise ValueError(f"values must have shape ({self.mesh.n_elements},) (one per element); "
                             f"got {values.shape}")
        for ds in self._datasets:
            ids = np.asarray(ds.cell_data["_cell_id"]).astype(np.int64)
            ds.cell_data["_field"] = values[ids]
        if title is not None:   # same actor name: replaces the previous caption
            self.plotter.add_text(title, position="upper_left", font_size=12, color="black",
                                  name="title")

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 picture, checked not blank."""
        img = self.plotter.screenshot(None, return_img=True)
        return check_image(img, BACKGROUND, f"picture of {self.field.name}")

    def close(self) -> None:
        self.plotter.close()


def plot_field(mesh, field, *, name: str | None = None, fields=None, path=None, clip=None,
               slice=None, camera=None, bone: str | None = None, location: str | None = None,
               clim=None, cmap: str | None = None, title: str | None = None,
               window_size=(1024, 768), show: bool | None = None) -> np.ndarray:
    """Draw one field of a mesh in 3-D; write a PNG and/or open a window.

    Args:
        mesh: a :class:`~febone.Mesh`, or a result object with ``.mesh`` (its ``.fields`` and
            ``.u`` are searched for named fields).
        field: a field name (``"von_mises"``, ``"principal_strain_min"``, ``"sed"``,
            ``"damage"``, ``"density"``, ``"density_change_pct"``, any cell/point-data name of the
            mesh), an array ``(n_elements,)`` (cell field) or ``(n_nodes,)`` (point field;
            ``(n, 3)`` vectors are shown as magnitudes), or a dict/result object holding the
            field called ``name`` (e.g. a ``StrengthResult`` or ``ElementFields``).
        name: field name when ``field`` is an array or a container; picks label, unit
            (microstrain for strains), colour map (sequential for magnitudes, diverging
            centred at 0 for changes and signed strains).
        fields: optional ``{name: array}`` dict or result object searched for a named field
            before the mesh's own cell and point data.
        path: write the picture here (PNG).
        clip: cut the bone open: ``True`` (the bone's section: coronal for the femur, sagittal
            for the vertebra), an axis ``"x"``/``"-y"``..., a normal, or
            ``{"normal": ..., "origin": (x, y, z) mm}``; whole cells on the side the normal
            points to are removed.
        slice: show the field on a plane through the bone (same forms as ``clip``); without
            ``camera`` the plane is seen face-on.
        camera: preset name (``"anterior"``, ``"lateral"``, ``"medial"``, ``"posterior"``,
            ``"superior"``, ``"iso"``...), a :class:`~febone.viz.cameras.CameraSpec` or
            ``{"view_from": (x, y, z), "up": (x, y, z), "zoom": 1.0}``; default per bone
            (femur: anterior).
        bone: bundled bone name or file stem (``"femur_coarse_hex8"``) for the presets; default
            guessed from the mesh's region data.
        location: ``"cell"``/``"point"`` when n_nodes == n_elements makes it ambiguous.
        clim: (lo, hi) colour range in displayed units; cmap: colour-map name.
        title: caption in the picture; window_size: (width, height) pixels.
        show: open an interactive window; default: only when ``path`` is None and a display
            exists.

    Returns:
        The (H, W, 3) uint8 picture.

    Raises:
        ValueError/TypeError: unknown field, bad shapes, bad presets (see the messages).
        ImportError: pyvista missing. RenderingError: VTK cannot draw on this machine.
    """
    extra = fields
    if hasattr(mesh, "mesh") and not hasattr(mesh, "cells"):
        if extra is None:
            extra = mesh
        mesh = mesh.mesh
    if not (hasattr(mesh, "cells") and hasattr(mesh, "points") and hasattr(mesh, "cell_type")):
        raise TypeError(f"mesh must be a febone Mesh (or a result with .mesh); got "
                        f"{type(mesh).__name__}")
    sf = resolve_field(mesh, field, name=name, extra=extra, location=location)
    kind = bone_kind(mesh, bone)
    interactive = show if show is not None else (path is None and has_display())
    if interactive and not has_display():
        raise ValueError("show=True needs a display (DISPLAY or WAYLAND_DISPLAY); pass path= to "
                         "write a PNG instead")
    scene = Scene(mesh, sf, kind=kind, clip=clip, slice=slice, camera=camera, clim=clim,
                  cmap=cmap, title=title, window_size=window_size, off_screen=not interactive)
    try:
        if interactive:
            img = np.asarray(scene.plotter.show(return_img=True, auto_close=False))
        else:
            img = scene.image()
    finally:
        scene.close()
    if path is not None:
        import imageio.v3 as iio

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, img[..., :3])
        log.info("wrote %s (%s, %dx%d)", path, sf.name, img.shape[1], img.shape[0])
    return img

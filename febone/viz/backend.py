"""Offscreen rendering with pyvista/VTK: choosing a window that works without a screen.

VTK's PyPI wheels (9.4 and newer) carry X11, EGL and OSMesa render windows and pick one at run
time. Without a display they would first try X11 (and log "bad X server connection"); we name
the headless window instead, through VTK's own switch ``VTK_DEFAULT_OPENGL_WINDOW``, set only
when there is no display and the user has not set it: EGL when ``libEGL`` is present (Debian/
Ubuntu ``libegl1``; Mesa's llvmpipe renders on the CPU), else OSMesa (``libosmesa6``).
Every picture is checked afterwards: a blank or single-colour image raises
:class:`RenderingError` instead of being written.
"""
from __future__ import annotations

import ctypes.util
import logging
import os

import numpy as np

__all__ = ["RenderingError", "has_display", "import_pyvista", "check_image"]

log = logging.getLogger(__name__)

_FIX = ("install the system OpenGL libraries VTK draws with, e.g. on Debian/Ubuntu "
        "`apt-get install libegl1 libegl-mesa0` (EGL, CPU rendering through Mesa llvmpipe) or "
        "`apt-get install libosmesa6` (OSMesa), or run under a display (X11, or Xvfb)")


class RenderingError(RuntimeError):
    """VTK could not draw a picture on this machine (no display and no offscreen OpenGL)."""


def has_display() -> bool:
    """True when an X11 or Wayland display is available for interactive windows."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _headless_window() -> str | None:
    if ctypes.util.find_library("EGL"):
        return "vtkEGLRenderWindow"
    if ctypes.util.find_library("OSMesa"):
        return "vtkOSOpenGLRenderWindow"
    return None


def import_pyvista():
    """Import pyvista, configured for offscreen rendering when there is no display.

    Raises:
        ImportError: pyvista (the ``viz`` extra) is not installed.
        RenderingError: no display and neither EGL nor OSMesa is installed.
    """
    try:
        import pyvista as pv
    except ImportError as err:
        raise ImportError("3-D pictures need pyvista: pip install 'febone[viz]'") from err
    if not has_display():
        if "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ:
            window = _headless_window()
            if window is None:
                raise RenderingError(f"no display and no offscreen OpenGL library (libEGL or "
                                     f"libOSMesa) found, so VTK cannot draw: {_FIX}")
            os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = window
            log.debug("no display: rendering offscreen with %s", window)
    return pv


def check_image(img: np.ndarray, background, what: str) -> np.ndarray:
    """Return ``img`` (H, W, 3|4) uint8 after checking it shows something.

    Raises:
        RenderingError: every pixel has one colour, or fewer than 0.2 % differ from the
            background (VTK drew nothing: a broken offscreen context).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] < 3 or img.size == 0:
        raise RenderingError(f"{what}: VTK returned no image (shape {img.shape}): {_FIX}")
    rgb = img[..., :3].astype(np.int16)
    bg = np.asarray(background, dtype=np.int16)[:3]
    drawn = np.any(np.abs(rgb - bg) > 3, axis=2).mean()
    if rgb.reshape(-1, 3).std(axis=0).max() == 0 or drawn < 0.002:
        raise RenderingError(f"{what}: the rendered image is blank ({100 * drawn:.2f} % of pixels "
                             f"differ from the background): VTK's OpenGL context does not draw "
                             f"here; {_FIX}")
    return img

"""Animated GIF of the element density over a remodelling run (:func:`animate_density`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .cameras import bone_kind
from .fields import field_spec, ScalarField

__all__ = ["animate_density"]

log = logging.getLogger(__name__)

_MODES = {"percent": "density_change_pct", "absolute": "density_change_g_cm3",
          "density": "density_g_cm3"}


def animate_density(mesh, frames, times_years, path, *, mode: str = "percent", clip=True,
                    camera=None, bone: str | None = None, fps: float = 4.0,
                    window_size=(800, 600)) -> Path:
    """Write a GIF of the density (change) per element over time.

    Args:
        mesh: the :class:`~febone.Mesh`.
        frames: (n_times, n_elements) apparent density per element, g/cm³; row 0 is the
            baseline for the changes.
        times_years: (n_times,) output times, years (shown in each frame's caption).
        path: output ``.gif``.
        mode: ``"percent"`` (change from row 0, %), ``"absolute"`` (change, g/cm³) or
            ``"density"`` (the density itself); changes use a diverging map centred at 0 with
            one colour range for all frames.
        clip, camera, bone: as in :func:`febone.viz.plot_field` (default: the bone's section,
            where trabecular loss shows).
        fps: frames per second; window_size: (width, height) pixels.

    Returns:
        The GIF path.

    Raises:
        ValueError: shapes, non-positive baseline density (for ``percent``), bad mode or suffix.
    """
    import imageio.v3 as iio

    from .render import Scene

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animate_density writes a GIF; got {path.name!r} (use a .gif name)")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}; got {mode!r}")
    frames = np.asarray(frames, np.float64)
    times = np.asarray(times_years, np.float64).reshape(-1)
    if frames.ndim != 2 or frames.shape[1] != mesh.n_elements:
        raise ValueError(f"frames must have shape (n_times, n_elements = {mesh.n_elements}) "
                         f"g/cm³; got {frames.shape}")
    if frames.shape[0] != times.size or times.size < 2:
        raise ValueError(f"give at least 2 frames and one time per frame: {frames.shape[0]} "
                         f"frames, {times.size} times")
    if not np.isfinite(frames).all():
        raise ValueError("frames contain NaN or infinite densities")
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}")
    if mode == "percent":
        if not (frames[0] > 0).all():
            raise ValueError("percent change needs a positive baseline density in every element "
                             "(frames[0]); use mode='absolute'")
        shown = 100.0 * (frames / frames[0] - 1.0)
    elif mode == "absolute":
        shown = frames - frames[0]
    else:
        shown = frames
    name = _MODES[mode]
    spec = field_spec(name)
    if spec.diverging:
        m = float(np.abs(shown).max()) or 1.0
        clim = (-m, m)
    else:
        lo, hi = float(shown.min()), float(shown.max())
        clim = (lo, hi) if hi > lo else (lo - 1e-3, hi + 1e-3)
    field = ScalarField(name, shown[0], "cell", spec)
    scene = Scene(mesh, field, kind=bone_kind(mesh, bone), clip=clip, camera=camera, clim=clim,
                  title=f"t = {times[0]:.2f} years", window_size=window_size)
    images = []
    try:
        for t, values in zip(times, shown):
            scene.set_values(values, title=f"t = {t:.2f} years")
            images.append(scene.image()[..., :3])
    finally:
        scene.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(images), extension=".gif", duration=1000.0 / fps, loop=0)
    log.info("wrote %s (%d frames)", path, len(images))
    return path

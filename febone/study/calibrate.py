"""Gradient-based calibration of study parameters to target BMD trajectories.

:func:`fit_trajectory` minimises

    L(θ) = Σ_i ((ΔBMD_region(t_i; θ) − target_i) / band_i)²

over positive parameters θ = exp(x) (log-parametrised) with Adam (Kingma & Ba 2015) on the
reverse-mode gradient of the FE-coupled run (:func:`febone.study.forward`; the trajectory is
the vBMD change after every mechanical step, linearly interpolated at the target times). A
small Adam of our own: the fits here have a handful of parameters and tens of iterations, so
optax would add a dependency for ~20 lines.

The FE-free calibration of the coupling constants against the published outcomes
(:mod:`febone.calibration.site`, trust-region least squares with a forward-mode Jacobian)
stays the reference for :data:`~febone.remodel.coupling.DEFAULT_COUPLING`; this module fits
the same kind of constants on a whole bone, where the mechanics acts through FE solves.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .model import Study, forward
from .parameters import base_values

__all__ = ["Adam", "adam", "FitResult", "fit_trajectory", "trajectory"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adam:
    """Adam settings: step ``lr`` (in log-parameter units), moments β1, β2, ε."""

    lr: float = 0.05
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


def adam(value_and_grad, x0, *, steps: int, opt: Adam = Adam(), callback=None):
    """Minimise with Adam; returns (best x, history [(loss, x)]).

    Args:
        value_and_grad: x (n,) → (loss, gradient (n,)).
        x0: (n,) start.
        steps: iterations.
    """
    x = np.asarray(x0, float)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    hist, best = [], (np.inf, x.copy())
    for k in range(1, steps + 1):
        loss, g = value_and_grad(x)
        loss, g = float(loss), np.asarray(g, float)
        hist.append((loss, x.copy()))
        if loss < best[0]:
            best = (loss, x.copy())
        if callback is not None:
            callback(k, loss, x)
        m = opt.b1 * m + (1 - opt.b1) * g
        v = opt.b2 * v + (1 - opt.b2) * g * g
        x = x - opt.lr * (m / (1 - opt.b1 ** k)) / (np.sqrt(v / (1 - opt.b2 ** k)) + opt.eps)
    return best[1], hist


def trajectory(study: Study, params: dict, region: str, times_years):
    """vBMD change (%) of ``region`` at ``times_years`` (linear interpolation between steps;
    0 at t = 0), traceable."""
    if region not in study.regions:
        raise ValueError(f"unknown region {region!r}; the study has {list(study.regions)}")
    out = forward(study, params)
    i = study.regions.index(region)
    t = jnp.asarray(study.output_days, out.bmd_trajectory.dtype) / 365.25
    y = jnp.concatenate([jnp.zeros(1, out.bmd_trajectory.dtype), out.bmd_trajectory[:, i]])
    return jnp.interp(jnp.asarray(times_years, y.dtype), t, y)


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit_trajectory`.

    Attributes:
        names: fitted parameters; start, fitted: their values.
        loss_start, loss: objective at the start and at the fit.
        model_start, model: (n_targets,) vBMD changes at the target times, %.
        history: [(loss, {name: value})] per iteration; seconds: wall time.
    """

    names: tuple
    start: dict
    fitted: dict
    loss_start: float
    loss: float
    model_start: np.ndarray
    model: np.ndarray
    history: list
    seconds: float


def fit_trajectory(study: Study, names, times_years, target_pct, band_pct, *,
                   region: str, steps: int = 20, opt: Adam = Adam(),
                   fixed: dict | None = None) -> FitResult:
    """Fit positive parameters ``names`` so the region's vBMD change follows a target trajectory.

    Args:
        study: :class:`Study`.
        names: parameter names (values must be positive: fitted in log space).
        times_years: (n_targets,) times of the targets, years (≤ the study's length).
        target_pct: (n_targets,) target vBMD change, %.
        band_pct: (n_targets,) accepted deviation (residual scale), %.
        region: ``region_*`` name of the study (``"all"`` for a mesh without regions).
        steps: Adam iterations (each one forward + reverse run).
        fixed: other parameter values held fixed.
    """
    names = tuple(names)
    times = jnp.asarray(times_years, float)
    target = jnp.asarray(target_pct, float)
    band = jnp.asarray(band_pct, float)
    if not (times.shape == target.shape == band.shape and times.ndim == 1 and times.size):
        raise ValueError("times_years, target_pct and band_pct must be 1-D of one length")
    if float(times.max()) > study.years + 1e-9 or float(times.min()) < 0:
        raise ValueError(f"target times must lie in [0, {study.years:.3g}] years (the study's "
                         f"length); got {np.asarray(times).tolist()}")
    if not bool(jnp.all(band > 0)):
        raise ValueError("band_pct must be positive (the residual scale, %)")
    x0 = base_values(study, names)
    bad = [n for n in names if not x0[n] > 0]
    if bad:
        raise ValueError(f"parameters {bad} are not positive; fit_trajectory fits log values")
    fixed = dict(fixed or {})

    def loss(study, x):
        p = {**fixed, **{n: jnp.exp(x[i]) for i, n in enumerate(names)}}
        model = trajectory(study, p, region, times)
        return jnp.sum(((model - target) / band) ** 2), model

    vg = jax.jit(jax.value_and_grad(loss, argnums=1, has_aux=True))

    def fn(x):
        (val, _), g = vg(study, jnp.asarray(x))
        return val, g

    t0 = time.perf_counter()
    xs0 = np.log(np.array([x0[n] for n in names]))
    (l0, m0), _ = vg(study, jnp.asarray(xs0))
    cb = lambda k, l, x: log.info("fit %d: loss %.4g %s", k, l, dict(zip(names, np.exp(x))))
    x_best, hist = adam(fn, xs0, steps=steps, opt=opt, callback=cb)
    (l1, m1), _ = vg(study, jnp.asarray(x_best))
    return FitResult(names, {n: float(x0[n]) for n in names},
                     {n: float(v) for n, v in zip(names, np.exp(x_best))}, float(l0), float(l1),
                     np.asarray(m0), np.asarray(m1),
                     [(l, dict(zip(names, np.exp(x).tolist()))) for l, x in hist],
                     time.perf_counter() - t0)

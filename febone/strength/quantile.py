"""Volume-weighted upper quantiles: the value exceeded by a given fraction of the tissue.

``exceedance_quantile`` is the exact (step-function) version used by the linear criteria;
``soft_exceedance_quantile`` replaces the step by a logistic in log-space so that the
result is smooth in the field values and weights, with its gradient given by the implicit
function theorem (one Newton step on a bisection root whose value is held fixed).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["exceedance_quantile", "soft_exceedance_quantile"]


def exceedance_quantile(values, weights, fraction: float):
    """Smallest q such that the weight of elements with value > q is at most ``fraction``.

    Args:
        values: (n,) field values (e.g. effective strain).
        weights: (n,) non-negative weights (e.g. tissue volume, mm³).
        fraction: in (0, 1), e.g. 0.02 for Pistoia's 2 %.

    Returns:
        Scalar q: the value at which the cumulative weight of the largest values, sorted
        downwards, first reaches ``fraction`` of the total weight.
    """
    order = jnp.argsort(-values)
    v, w = values[order], weights[order]
    cum = jnp.cumsum(w)
    k = jnp.searchsorted(cum, fraction * cum[-1], side="left")
    return v[jnp.clip(k, 0, v.shape[0] - 1)]


def _soft_excess(log_q, log_v, weights, fraction, tau):
    return jnp.sum(weights * jax.nn.sigmoid((log_v - log_q) / tau)) - fraction * jnp.sum(weights)


def soft_exceedance_quantile(values, weights, fraction: float, tau: float = 0.02,
                             iterations: int = 60):
    """Smooth version of :func:`exceedance_quantile` for positive values.

    Solves Σ wᵢ σ((log vᵢ − log q)/τ) = fraction · Σ wᵢ for q (σ: logistic), so each element
    counts as "exceeding" through a ramp of relative width ~τ around q. The result is
    differentiable in ``values`` and ``weights``; the gradient is exact for the smooth
    equation (implicit function theorem).

    Args:
        values: (n,) positive field values.
        weights: (n,) non-negative weights.
        fraction: in (0, 1).
        tau: relative smoothing width (0.02: a ±2 % band in the value).
        iterations: bisection steps on log q (60 resolves it to round-off).
    """
    log_v = jnp.log(jnp.maximum(values, jnp.finfo(values.dtype).tiny))
    lv, w = jax.lax.stop_gradient(log_v), jax.lax.stop_gradient(weights)
    lo, hi = lv.min() - 40.0 * tau, lv.max() + 40.0 * tau

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        too_low = _soft_excess(mid, lv, w, fraction, tau) > 0  # too much weight above mid
        return jnp.where(too_low, mid, lo), jnp.where(too_low, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, bisect, (lo, hi))
    root = jax.lax.stop_gradient(0.5 * (lo + hi))
    # one Newton step: no change in value (residual ≈ 0), exact implicit gradient
    g = _soft_excess(root, log_v, weights, fraction, tau)
    dg = jax.grad(_soft_excess)(root, lv, w, fraction, tau)
    return jnp.exp(root - g / dg)

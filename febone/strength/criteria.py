"""Linear failure criteria: the load at which a critical volume of tissue fails.

Strains in a linear model scale with the applied load, so a criterion evaluated once at a
reference load F gives the failure load F_fail = F · (critical value / the value reached
by the critical volume).

References:
    Pistoia W. et al. (2002) Bone 30:842–848: failure when 2 % of the bone tissue exceeds
    an effective strain of 0.7 %; effective strain √(2·SED/E).
    Schileo E. et al. (2008) J Biomech 41:356–367: principal-strain limits for the
    proximal femur, 0.73 % in tension and 1.04 % in compression.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from .quantile import exceedance_quantile, soft_exceedance_quantile

__all__ = ["Pistoia", "StrainLimits", "effective_strain", "strain_limit_ratio",
           "failure_load"]


@dataclass(frozen=True)
class Pistoia:
    """Pistoia criterion: ``fraction`` of the tissue volume beyond ``critical_strain``.

    Attributes:
        critical_strain: effective strain at failure (0.007).
        fraction: critical tissue-volume fraction (0.02).
    """

    critical_strain: float = 0.007
    fraction: float = 0.02

    def __post_init__(self):
        _check(self.critical_strain, self.fraction)


@dataclass(frozen=True)
class StrainLimits:
    """Principal-strain limits: failure where ε₁ > tension or −ε₃ > compression.

    Attributes:
        tension: tensile principal-strain limit (0.0073).
        compression: compressive principal-strain limit, positive (0.0104).
        fraction: critical volume fraction of the tissue that must exceed a limit (0.01:
            a small region rather than one element, so the result is mesh-independent).
    """

    tension: float = 0.0073
    compression: float = 0.0104
    fraction: float = 0.01

    def __post_init__(self):
        _check(self.tension, self.fraction)
        _check(self.compression, self.fraction)


def _check(strain, fraction):
    if not (0 < strain < 1):
        raise ValueError(f"critical strain must lie in (0, 1), e.g. 0.007; got {strain}")
    if not (0 < fraction < 1):
        raise ValueError(f"critical volume fraction must lie in (0, 1), e.g. 0.02; got {fraction}")


def effective_strain(sed, E):
    """√(2·SED/E) per element (dimensionless); SED and E in MPa."""
    return jnp.sqrt(2.0 * jnp.maximum(sed, 0.0) / E)


def strain_limit_ratio(principal_strain, limits: StrainLimits):
    """(n,) max(ε₁/ε_t, −ε₃/ε_c): ≥ 1 where an element exceeds a limit.

    ``principal_strain``: (n, 3) principal strains, largest first.
    """
    return jnp.maximum(jnp.maximum(principal_strain[:, 0], 0.0) / limits.tension,
                       jnp.maximum(-principal_strain[:, 2], 0.0) / limits.compression)


def failure_load(applied_load, measure, tissue_volume, critical_value: float, fraction: float,
                 *, smooth: bool = False, tau: float = 0.02):
    """Load at which ``fraction`` of the tissue volume reaches ``critical_value``.

    Args:
        applied_load: reference load of the linear solve, N (any sign; magnitude is used).
        measure: (n,) per-element failure measure at that load (e.g. effective strain).
        tissue_volume: (n,) bone tissue volume per element, mm³.
        critical_value: value of the measure at failure.
        fraction: critical tissue-volume fraction.
        smooth: use the differentiable soft quantile (agrees with the exact one within about
            ``tau`` relative on smooth fields; see tests).
    """
    if smooth:
        q = soft_exceedance_quantile(measure, tissue_volume, fraction, tau=tau)
    else:
        q = exceedance_quantile(measure, tissue_volume, fraction)
    return jnp.abs(applied_load) * critical_value / q

"""Density → modulus laws and CT calibration.

Densities are apparent densities ρ_app in g/cm³; moduli in MPa.

References:
    Morgan, Bayraktar & Keaveny (2003) J Biomech 36:897–904, Table 2 (E = a ρ^b, ρ_app):
    vertebra 4730ρ^1.56, proximal tibia 15490ρ^1.93, greater trochanter 15010ρ^2.18,
    femoral neck 6850ρ^1.49; pooled 8920ρ^1.83.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PowerLaw", "MORGAN_2003", "density_law", "hu_to_density", "LAW_NAMES"]


@dataclass(frozen=True)
class PowerLaw:
    """E = a · ρ^b (E in MPa, ρ in g/cm³), with ρ clipped below at ``rho_min``.

    A pytree (``a``, ``b``, ``rho_min`` are data, so they may be traced: ``jax.grad`` with respect
    to the law's constants; ``source`` is static). Checked on construction when concrete.

    Attributes:
        a: coefficient, MPa/(g/cm³)^b.
        b: exponent.
        rho_min: lower clip of the density, g/cm³ (keeps void elements positive-definite).
        source: citation.
    """

    a: float
    b: float
    rho_min: float = 0.01
    source: str = field(default="user", metadata=dict(static=True))

    def __post_init__(self):
        if any(isinstance(v, jax.core.Tracer) for v in (self.a, self.b, self.rho_min)):
            return
        if not (self.a > 0 and np.isfinite(self.a)):
            raise ValueError(f"power-law coefficient a must be positive (MPa); got {self.a}")
        if not (self.b > 0 and np.isfinite(self.b)):
            raise ValueError(f"power-law exponent b must be positive; got {self.b}")
        if not self.rho_min > 0:
            raise ValueError(f"rho_min must be positive (g/cm³); got {self.rho_min}")

    def modulus(self, rho):
        """E (MPa) for apparent density ρ (g/cm³), any shape; differentiable in ρ."""
        return self.a * jnp.maximum(jnp.asarray(rho), self.rho_min) ** self.b

    def density(self, E):
        """Inverse law: ρ (g/cm³) for E (MPa)."""
        return (jnp.asarray(E) / self.a) ** (1.0 / self.b)


jax.tree_util.register_dataclass(PowerLaw, data_fields=["a", "b", "rho_min"],
                                 meta_fields=["source"])


_MORGAN = "Morgan, Bayraktar & Keaveny 2003, J Biomech 36:897"
MORGAN_2003: dict[str, PowerLaw] = {
    "morgan-vertebra": PowerLaw(4730.0, 1.56, source=_MORGAN),
    "morgan-tibia": PowerLaw(15490.0, 1.93, source=_MORGAN),
    "morgan-trochanter": PowerLaw(15010.0, 2.18, source=_MORGAN),
    "morgan-femoral-neck": PowerLaw(6850.0, 1.49, source=_MORGAN),
    "morgan-pooled": PowerLaw(8920.0, 1.83, source=_MORGAN),
}
LAW_NAMES = sorted(MORGAN_2003)


def density_law(name: str) -> PowerLaw:
    """A named law (``morgan-femoral-neck``, ``morgan-pooled``, ...) or ``"power:a,b"``."""
    if name in MORGAN_2003:
        return MORGAN_2003[name]
    if name.startswith("power:"):
        try:
            a, b = (float(v) for v in name[len("power:"):].split(","))
        except ValueError as err:
            raise ValueError(f"user power law must read 'power:A,B' (E = A·ρ^B, MPa, g/cm³); "
                             f"got {name!r}") from err
        return PowerLaw(a, b)
    raise ValueError(f"unknown density law {name!r}; choose one of {LAW_NAMES} or 'power:A,B'")


def hu_to_density(hu, a: float, b: float, rho_min: float = 0.0):
    """Linear CT calibration ρ = a + b·HU (g/cm³), from a phantom scanned with the bone.

    Args:
        hu: Hounsfield units, any shape.
        a: intercept, g/cm³.
        b: slope, g/cm³ per HU (positive).
        rho_min: lower clip, g/cm³ (air and fat give negative values otherwise).
    """
    if not b > 0:
        raise ValueError(f"CT calibration slope b must be positive (g/cm³ per HU); got {b}")
    return jnp.maximum(a + b * jnp.asarray(hu), rho_min)

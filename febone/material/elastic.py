"""Isotropic linear elasticity with a Young's modulus per element."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LinearElastic", "MaterialError"]


class MaterialError(ValueError):
    """Invalid material parameters."""


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


@dataclass(frozen=True)
class LinearElastic:
    """Isotropic linear-elastic material.

    Attributes:
        E: (n_elements,) Young's modulus, MPa (a scalar is broadcast by :meth:`create`).
        nu: Poisson's ratio, scalar or (n_elements,), in (0, 0.5).
    """

    E: jax.Array
    nu: jax.Array

    @classmethod
    def create(cls, E, nu=0.3, n_elements: int | None = None) -> "LinearElastic":
        """Validated material. ``E`` in MPa (scalar or per element), ``nu`` dimensionless.

        Raises:
            MaterialError: E not finite and positive, ν outside (0, 0.5), wrong length.
        """
        if n_elements is not None and jnp.ndim(E) == 0:
            E = jnp.full((n_elements,), E, dtype=jnp.result_type(float))
        E = jnp.asarray(E, dtype=jnp.result_type(float))
        nu = jnp.asarray(nu, dtype=E.dtype)
        if n_elements is not None and E.shape != (n_elements,):
            raise MaterialError(f"E must have one value per element ({n_elements}); got shape {E.shape}")
        if _concrete(E):
            e = np.asarray(E)
            bad = np.flatnonzero(~np.isfinite(e.ravel()))
            if bad.size:
                raise MaterialError(f"Young's modulus is NaN/inf at elements {bad[:10].tolist()} "
                                    f"({bad.size} in all); fill the modulus or density field")
            bad = np.flatnonzero(e.ravel() <= 0)
            if bad.size:
                raise MaterialError(
                    f"Young's modulus must be positive (MPa); E ≤ 0 at elements "
                    f"{bad[:10].tolist()} ({bad.size} in all, min {e.min():g}); give void "
                    f"elements a small positive modulus or remove them")
        if _concrete(nu):
            n = np.asarray(nu)
            if not np.all(np.isfinite(n)) or np.any(n <= 0) or np.any(n >= 0.5):
                raise MaterialError(f"Poisson's ratio must lie in (0, 0.5); got {n.min():g}..{n.max():g}"
                                    f" (0.3 is typical for bone)")
        return cls(E, nu)


jax.tree_util.register_dataclass(LinearElastic, data_fields=["E", "nu"], meta_fields=[])

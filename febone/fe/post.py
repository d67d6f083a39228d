"""Post-processing: element strain/stress measures and nodal reaction forces."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..material.elastic import LinearElastic
from ..precision import CONTRACTION
from .bc import BoundaryConditions
from .elasticity import internal_force, strain, stress
from .model import FEModel

__all__ = ["ElementFields", "element_fields", "reaction_forces", "von_mises", "principal_values"]


@dataclass(frozen=True)
class ElementFields:
    """Per-element fields, volume averages over each element's quadrature points.

    Attributes:
        strain: (n_elements, 3, 3) small strain, dimensionless.
        stress: (n_elements, 3, 3) Cauchy stress, MPa.
        von_mises: (n_elements,) von Mises stress of the averaged stress, MPa.
        principal_strain: (n_elements, 3) principal strains, largest first.
        principal_stress: (n_elements, 3) principal stresses, MPa, largest first.
        sed: (n_elements,) strain energy density ½ σ:ε, MPa (= mJ/mm³).
    """

    strain: jax.Array
    stress: jax.Array
    von_mises: jax.Array
    principal_strain: jax.Array
    principal_stress: jax.Array
    sed: jax.Array

    def as_cell_data(self) -> dict:
        """Flat arrays for VTU output: tensors in Voigt order (xx, yy, zz, yz, xz, xy)."""
        import numpy as np

        def voigt(t):
            t = np.asarray(t)
            return np.stack([t[:, 0, 0], t[:, 1, 1], t[:, 2, 2], t[:, 1, 2], t[:, 0, 2], t[:, 0, 1]], 1)

        return {"strain": voigt(self.strain), "stress_MPa": voigt(self.stress),
                "von_mises_MPa": np.asarray(self.von_mises),
                "principal_strain": np.asarray(self.principal_strain),
                "principal_stress_MPa": np.asarray(self.principal_stress),
                "sed_MPa": np.asarray(self.sed)}


jax.tree_util.register_dataclass(
    ElementFields,
    data_fields=["strain", "stress", "von_mises", "principal_strain", "principal_stress", "sed"],
    meta_fields=[])


def von_mises(sig: jax.Array) -> jax.Array:
    """von Mises equivalent stress of (..., 3, 3) stress tensors."""
    dev = sig - jnp.trace(sig, axis1=-2, axis2=-1)[..., None, None] / 3.0 * jnp.eye(3, dtype=sig.dtype)
    return jnp.sqrt(1.5 * jnp.sum(dev * dev, axis=(-2, -1)))


def principal_values(strain: jax.Array, stress: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Principal strains and stresses, largest first: (n, 3) each from (n, 3, 3) tensors.

    One batched ``eigvalsh`` over both (the same values as two calls). On the CPU a batched
    eigendecomposition spreads its batch over XLA's intra-op thread pool and waits for it:
    two of them running side by side in one program filled both threads of a 2-core pool,
    each waiting for work only the other could run, and hung (seen in the voxel fields of
    a strength run under load; the batched Cholesky of issue 18 hung the same way)."""
    n = strain.shape[0]
    vals = jnp.linalg.eigvalsh(jnp.concatenate([strain, stress.astype(strain.dtype)]))[:, ::-1]
    return vals[:n], vals[n:]


@jax.jit
def element_fields(model: FEModel, material: LinearElastic, u: jax.Array) -> ElementFields:
    """Strain, stress, von Mises, principal values and SED per element for displacements u (mm)."""
    eps_q = strain(model, u)
    sig_q = stress(eps_q, material.E, material.nu)
    w = model.weights / model.weights.sum(axis=1, keepdims=True)
    eps = jnp.einsum("eq,eqij->eij", w, eps_q, precision=CONTRACTION)
    sig = jnp.einsum("eq,eqij->eij", w, sig_q, precision=CONTRACTION)
    sed = 0.5 * jnp.einsum("eq,eqij,eqij->e", w, sig_q, eps_q, precision=CONTRACTION)
    return ElementFields(eps, sig, von_mises(sig), *principal_values(eps, sig), sed)


@jax.jit
def reaction_forces(model: FEModel, material: LinearElastic, bcs: BoundaryConditions,
                    u: jax.Array) -> jax.Array:
    """(n_nodes, 3) reaction forces K u − f_ext, N (nonzero only where displacement is
    prescribed, up to the solver tolerance). Sum rows of a node set for its total reaction."""
    return internal_force(model, u, material.E, material.nu) - bcs.forces

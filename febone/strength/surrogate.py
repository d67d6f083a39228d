"""Differentiable fracture-load surrogates: the linear criteria with a soft quantile.

``jax.grad`` of these functions with respect to the element moduli (or anything the moduli
depend on: densities, law constants) goes through one linear solve (implicit adjoint) and
the soft quantile (implicit function theorem).
"""
from __future__ import annotations

import jax.numpy as jnp

from ..fe.bc import BoundaryConditions
from ..fe.model import FEModel
from ..fe.post import element_fields, reaction_forces
from ..material.elastic import LinearElastic
from ..solve.linear import solve
from ..solve.pcg import PCG
from .criteria import Pistoia, StrainLimits, effective_strain, failure_load, strain_limit_ratio

__all__ = ["fracture_load_surrogate"]


def fracture_load_surrogate(model: FEModel, E, nu, bcs: BoundaryConditions, loaded_nodes,
                            axis: int, sign: float, *, criterion: Pistoia | StrainLimits = Pistoia(),
                            tissue_volume=None, tau: float = 0.02, solver: PCG | None = None,
                            preconditioner=None):
    """Smooth fracture load, N, of a linear analysis; differentiable in ``E`` (n_elements,) MPa.

    Args:
        model, bcs: posed geometry and boundary conditions of the load case.
        loaded_nodes: ids of the loaded node set; ``axis``/``sign``: load direction.
        criterion: :class:`Pistoia` or :class:`StrainLimits`.
        tissue_volume: (n_elements,) mm³ weights (default: element volumes).
        tau: relative width of the soft quantile (see :func:`soft_exceedance_quantile`).
    """
    mat = LinearElastic(jnp.asarray(E), jnp.asarray(nu))
    sol = solve(model, mat, bcs, solver=solver or PCG(rtol=1e-10), preconditioner=preconditioner)
    force = reaction_forces(model, mat, bcs, sol.u)[loaded_nodes, axis].sum() * sign
    fields = element_fields(model, mat, sol.u)
    weights = model.volumes if tissue_volume is None else tissue_volume
    if isinstance(criterion, Pistoia):
        measure = effective_strain(fields.sed, mat.E)
        return failure_load(force, measure, weights, criterion.critical_strain, criterion.fraction,
                            smooth=True, tau=tau)
    measure = strain_limit_ratio(fields.principal_strain, criterion)
    return failure_load(force, measure, weights, 1.0, criterion.fraction, smooth=True, tau=tau)

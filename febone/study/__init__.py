"""Differentiable parameter studies: gradients through years of remodelling, batches, fits.

* :mod:`.model` — :func:`build_study` (host set-up once) and :func:`forward` (pure, traced: a
  checkpointed ``lax.scan`` over mechanical steps; FE solves with implicit derivatives).
* :mod:`.parameters` — the named parameters (doses, exercise, coupling, cell, mineral, patient,
  material law, densities).
* :mod:`.analysis` — :func:`outcome`, :func:`value_and_grad`, :func:`finite_difference`,
  :func:`sensitivity`, :func:`batch` (``vmap`` over parameter sets in one compiled call).
* :mod:`.calibrate` — gradient-based fits of parameters to BMD trajectories (Adam).
"""
from .model import OUTCOMES, Outcomes, Study, StudySettings, build_study, forward
from .parameters import apply, base_values, parameter_names
from .analysis import (SensitivityResult, batch, fd_step, finite_difference, loop, outcome,
                       sensitivity, value_and_grad)

__all__ = ["OUTCOMES", "Outcomes", "Study", "StudySettings", "build_study", "forward", "apply",
           "base_values", "parameter_names", "SensitivityResult", "batch", "fd_step",
           "finite_difference", "loop", "outcome", "sensitivity", "value_and_grad"]

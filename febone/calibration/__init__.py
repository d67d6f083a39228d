"""How the coupling constants were fitted, and how to refit them (tooling, not physics).

* :mod:`.site` — the FE-free fit of :data:`~febone.remodel.coupling.DEFAULT_COUPLING` to the
  published outcomes of science.md §8 (``python -m febone.calibration.site``; report
  docs/calibration.md), with the targets table :data:`~.site.TARGETS`.
* :mod:`.fe` — the FE-level correction :data:`~febone.remodel.coupling.FE_RANKL_E2_SCALE`
  from FE runs of the menopausal targets (``python -m febone.calibration.fe``; report
  docs/calibration_fe.md).

The fitted values live where they are used (:mod:`febone.remodel.coupling`); nothing in the
library imports this package.
"""

"""Bone remodelling: the per-element bone cell population model and its inputs.

* :mod:`.parameters` — frozen parameter sets with citations (Pivonka 2008; Scheiner 2013 /
  Martínez-Reina 2019; mineralisation; denosumab PK; PMO load).
* :mod:`.cells` — states, drives (hormone/drug/mechanics hooks), signals, right-hand side,
  per-element steady state, Rosenbrock time stepping (:func:`simulate`).
* :mod:`.mineral` — mineralisation age queue, ash fraction, tissue density, modulus.
* :mod:`.denosumab` — denosumab pharmacokinetics as a drive.
"""
from .cells import (CellModelError, CellState, CellTrajectory, Drives, Signals,
                    pmo_rankl_production, rhs, signals, simulate, specific_surface, steady_state,
                    step, turnover)
from .denosumab import DenosumabPK, concentration_pM, denosumab_pk, dose_days
from .mineral import (MineralState, apparent_density, ash_fraction, init_mineral,
                      mean_mineral_content, mineral_law, tissue_density, update_mineral,
                      youngs_modulus_gpa)
from .parameters import (DENOSUMAB_MARTINEZ_REINA_2019, MARTINEZ_REINA_2019,
                         MINERAL_MARTINEZ_REINA_2019, PIVONKA_2008, PMO_MARTINEZ_REINA_2019,
                         CellParameters, DenosumabParameters, MineralParameters, PMOParameters)

__all__ = ["CellModelError", "CellState", "CellTrajectory", "Drives", "Signals",
           "pmo_rankl_production", "rhs", "signals", "simulate", "specific_surface",
           "steady_state", "step", "turnover", "DenosumabPK", "concentration_pM", "denosumab_pk",
           "dose_days", "MineralState", "apparent_density", "ash_fraction", "init_mineral",
           "mean_mineral_content", "mineral_law", "tissue_density", "update_mineral",
           "youngs_modulus_gpa", "CellParameters", "DenosumabParameters", "MineralParameters",
           "PMOParameters", "PIVONKA_2008", "MARTINEZ_REINA_2019", "MINERAL_MARTINEZ_REINA_2019",
           "DENOSUMAB_MARTINEZ_REINA_2019", "PMO_MARTINEZ_REINA_2019"]

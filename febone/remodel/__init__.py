"""Bone remodelling: the per-element bone cell population model and its inputs.

* :mod:`.parameters` — frozen parameter sets with citations (Pivonka 2008; Scheiner 2013 /
  Martínez-Reina 2019; mineralisation; denosumab PK; PMO load).
* :mod:`.cell_model` — states, drives (hormone/drug/mechanics hooks), signals, right-hand side
  and its closed-form Jacobian; :mod:`.homeostasis` — the per-element steady state.
* :mod:`.cells` — the cell model in time (:func:`simulate`, :func:`step`), and the one place to
  import the cell model from; :mod:`.rosenbrock` — the generic Rosenbrock stepper it uses.
* :mod:`.mineral` — mineralisation age queue (and its day form for runs), ash fraction, tissue
  density, modulus.
* :mod:`.denosumab` — denosumab pharmacokinetics as a drive.
* :mod:`.patient`, :mod:`.treatments` — the patient and the treatment schedule (``DRUGS``).
* :mod:`.hormones` — daily hormone, drug and lifestyle levels (physiology + PK/PD).
* :mod:`.coupling` — levels → cell-model drives (``DEFAULT_COUPLING``, calibrated).
* :mod:`.site` — FE-free remodelling of a site (force-controlled mechanical closure).
* :mod:`.mechanics` — habitual loading → strain energy density per element (FE solves).
* :mod:`.settings` — :class:`RemodelSettings`, the scenario → settings translation and the
  calendar of mechanical steps, shared by ``febone run`` and :mod:`febone.study`.
* :mod:`.model` — the one FE-coupled remodelling model: host builder, initial state and the
  pure step both drivers run.
* :mod:`.simulation` — its host driver (:func:`remodel`): outputs, checkpoints, resume.
* :mod:`.runner` — a scenario, arm by arm (:func:`run_scenario`, behind ``febone run``).
* :mod:`.sed_law` — the classic SED/lazy-zone law (Huiskes/Weinans) as a simpler alternative.
"""
from .cells import (CellModelError, CellState, CellTrajectory, Drives, Signals,
                    pmo_rankl_production, rhs, signals, simulate, specific_surface, steady_state,
                    step, turnover)
from .denosumab import DenosumabPK, concentration_pM, denosumab_pk, dose_days
from .mineral import (MineralState, apparent_density, ash_fraction, init_mineral,
                      mean_mineral_content, mineral_law, tissue_density, update_mineral,
                      youngs_modulus_gpa)
from .patient import Patient
from .treatments import DRUGS, DrugSpec, Treatment
from .hormones import HormoneSeries, hormone_series
from .coupling import DEFAULT_COUPLING, CouplingParameters, DailyInputs, daily_inputs
from .site import SITE_CELL_PARAMETERS, SiteResult, simulate_site
from .mechanics import DEFAULT_HABITUAL, HabitualLoad
from .settings import RemodelSettings
from .simulation import RemodelResult, remodel
from .runner import ScenarioResult, run_scenario
from .sed_law import SEDLaw, sed_remodel
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
           "DENOSUMAB_MARTINEZ_REINA_2019", "PMO_MARTINEZ_REINA_2019", "Patient", "DRUGS",
           "DrugSpec", "Treatment", "HormoneSeries", "hormone_series", "DEFAULT_COUPLING",
           "CouplingParameters", "DailyInputs", "daily_inputs", "SITE_CELL_PARAMETERS",
           "SiteResult", "simulate_site", "HabitualLoad", "DEFAULT_HABITUAL", "RemodelSettings",
           "RemodelResult", "remodel", "ScenarioResult", "run_scenario", "SEDLaw", "sed_remodel"]

"""The patient's history before time 0: how long to replay it, and its inputs.

A bone at the start of a scenario is not a young adult's at homeostasis: a woman of 64 has lived
13 years past her final period, a hypogonadal man years with low testosterone. Both drivers of
the remodelling model (``febone run`` and :mod:`febone.study`) therefore replay the patient's
history first (the *spin-up*): the same FE-coupled step, from every element's homeostatic steady
state at the start of the history under the patient's own hormone levels and past treatments, on
coarser mechanical steps (:attr:`~.settings.RemodelSettings.spinup_steps_per_year`), up to time
0, where the outputs are re-based. Cells, mineral queue, densities and the mechanical reference
Ψ̆ (that of the young bone at the start of the history) then describe the bone as it is.

The history starts (:func:`spinup_years`) at the youngest age from which the patient's levels
may differ from a young eugonadal adult's: five years before the final period for a woman (the
menopausal transition, Greendale 2012), and fifteen years before the start for a man or a growth
hormone deficient patient (age-related and hypogonadal decline; the FE-free calibration replays
the same fifteen years), never before age 30 (peak bone mass), and before the earliest past
treatment.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

__all__ = ["spinup_years", "replayed", "PEAK_BONE_MASS_AGE", "MALE_HISTORY_YEARS",
           "TRANSITION_YEARS"]

#: No history is replayed before this age, years (peak bone mass: a young adult at homeostasis).
PEAK_BONE_MASS_AGE = 30.0
#: Years of the menopausal transition before the final period replayed for women (SWAN:
#: bone loss starts about a year before the FMP; hormone changes earlier; Greendale 2012).
TRANSITION_YEARS = 5.0
#: Years of history replayed for men and GH-deficient patients (as the FE-free calibration's
#: spin-up of the T-Trials and GH targets, :mod:`febone.calibration.site`).
MALE_HISTORY_YEARS = 15.0


def spinup_years(patient, treatments=(), *, quantum: float = 0.25) -> float:
    """Years of the patient's history to replay before time 0 (a multiple of ``quantum``, the
    spin-up step in years), by the rule of the module docstring.

    Args:
        patient: :class:`~.patient.Patient` at time 0 (concrete ages).
        treatments: the scenario's treatments; one that starts before time 0 (negative
            ``start_years``) extends the history to its start.
        quantum: round up to whole spin-up steps, years.
    """
    age = float(patient.age_years)
    start = age
    if patient.sex == "female":
        start = min(start, float(patient.menopause_age_years) - TRANSITION_YEARS)
    else:
        start = min(start, age - MALE_HISTORY_YEARS)
    if patient.gh_deficient:
        start = min(start, age - MALE_HISTORY_YEARS)
    start = max(start, min(age, PEAK_BONE_MASS_AGE))
    past = [-float(t.start_years) for t in treatments if float(t.start_years) < 0]
    years = max([age - start] + past)
    return float(np.ceil(years / quantum - 1e-9) * quantum)


def replayed(patient, treatments, years: float):
    """``(patient, treatments)`` of a run that starts ``years`` earlier: the patient younger by
    ``years``, every treatment shifted later by ``years`` (so one given before time 0 falls
    inside the history)."""
    if years == 0:
        return patient, tuple(treatments)
    shifted = tuple(replace(t, start_years=t.start_years + years,
                            stop_years=None if t.stop_years is None else t.stop_years + years)
                    for t in treatments)
    return replace(patient, age_years=patient.age_years - years), shifted

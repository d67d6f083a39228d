"""A :class:`~febone.study.model.Study` from a :class:`~febone.scenario.Scenario`, and the
default study of ``febone sensitivity``."""
from __future__ import annotations

from dataclasses import replace

from ..remodel.mechanics import HabitualLoad
from ..mesh.io import read_mesh
from ..remodel.runner import arm_history_years
from ..remodel.simulation import scaled_density
from ..remodel.settings import STUDY_DIFFERENCES, RemodelSettings, settings_for
from .model import StudySettings, build_study

__all__ = ["study_from_scenario", "default_sensitivity_study", "specimen_study", "DEFAULT_PARAMETERS",
           "DEFAULT_PROTOCOL", "DEFAULT_YEARS"]

#: ``febone sensitivity`` without a scenario: TRT + anastrozole in a hypogonadal man, with a
#: resistance-training programme, on the bundled coarse femur; hip fracture load (sideways fall).
DEFAULT_PROTOCOL = "trt-anastrozole+exercise-resistance"
DEFAULT_PARAMETERS = ("dose:testosterone-cypionate", "dose:anastrozole", "exercise",
                      "coupling:k_load")
DEFAULT_YEARS = 1.0


def study_from_scenario(scenario, *, years: float | None = None, step_days: int | None = None,
                        strength_case: str | None = None, preconditioner: str = "auto",
                        treatments=None, history_years: float | None = None,
                        solver: str = "auto", **settings):
    """Build the study of a scenario (one arm): the bone, habitual loading, patient, treatments,
    duration and mechanical steps of the scenario, translated into settings exactly as
    ``febone run`` translates them (:func:`febone.remodel.settings.settings_for`), with the
    study's differences (:data:`~febone.remodel.settings.STUDY_DIFFERENCES`).

    Args:
        scenario: :class:`febone.scenario.Scenario` without ``compare`` arms.
        years: override of the duration, years.
        step_days: override of the mechanical step, days (as the scenario's
            ``mechanical_step``: steps per year = round(365.25 / step_days)).
        strength_case: load case of the fracture-load outcome (default ``sideways-fall`` when the
            scenario's strength cases have it, else their first).
        preconditioner: CG preconditioner of the unstructured path (``auto``/``amg``/``jacobi``).
        solver: FE engine (``auto``/``voxel``/``unstructured``; :attr:`RemodelSettings.solver`):
            auto solves a grid-aligned hex8 bone on the matrix-free multigrid voxel engine.
        treatments: override of the scenario's treatments (e.g. ``()`` for the untreated arm).
        history_years: override of the replayed history, years (default the scenario's
            ``spinup``, else :func:`febone.remodel.history.spinup_years`, as ``febone run``).
        settings: further :class:`StudySettings` fields (e.g. ``precision="mixed"``).
    """
    from ..scenario import Scenario

    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a febone Scenario (febone.scenario.load_scenario); got "
                        f"{type(scenario).__name__}")
    if scenario.arms:
        raise ValueError(f"scenario {scenario.name!r} compares {len(scenario.arms)} arms; a "
                         f"sensitivity study needs one: run it per arm (scenario.arms[i])")
    if history_years is not None:
        scenario = replace(scenario, spinup_years=float(history_years))
    if step_days is not None:
        if not (isinstance(step_days, int) and step_days >= 1):
            raise ValueError(f"step_days must be a positive whole number of days; got "
                             f"{step_days!r}")
        scenario = replace(scenario, mechanical_step_days=step_days)
    cases = tuple(scenario.strength.cases)
    if strength_case is None:
        if not cases:
            raise ValueError("the scenario has no [strength] cases; give strength_case")
        strength_case = "sideways-fall" if "sideways-fall" in cases else cases[0]
    rs = settings_for(scenario, preconditioner=preconditioner, solver=solver,
                      **{k: v for k, (v, _) in STUDY_DIFFERENCES.items()})
    st = StudySettings(remodel=rs, strength_case=strength_case, **settings)
    tr = scenario.treatments if treatments is None else tuple(treatments)
    history = arm_history_years(replace(scenario, treatments=tr), rs)
    study = build_study(read_mesh(scenario.bone.path()), scenario.patient, tr,
                        years=years or scenario.duration_years, settings=st,
                        history_years=history)
    if scenario.bone.baseline_abmd:
        scale = starting_density_scale(replace(scenario, treatments=tr), rs, history)
        study = replace(study, model=replace(study.model,
                                             rho0=scaled_density(study.model.rho0, scale)))
    return study


def starting_density_scale(scenario, settings, history_years: float) -> float:
    """The uniform density scale that gives the scenario's measured baseline DXA at time 0 after
    its replayed history, found exactly as ``febone run`` finds it (its host driver, one
    mechanical step after time 0)."""
    from ..remodel.coupling import FE_COUPLING
    from ..remodel.history import replayed
    from ..remodel.model import daily_table
    from ..remodel.settings import calendar
    from ..remodel.simulation import remodel

    one_step = 1.0 / settings.steps_per_year
    n_days = int(calendar(one_step, settings, history_years)[0][-1])
    inputs = daily_table(*replayed(scenario.patient, scenario.treatments, history_years),
                         FE_COUPLING, n_days)
    probe = remodel(read_mesh(scenario.bone.path()), inputs, years=one_step,
                    settings=replace(settings, strength_cases=(), output_interval_years=one_step),
                    history_years=history_years, baseline_abmd=dict(scenario.bone.baseline_abmd))
    return probe.description["density_scale"]


def default_sensitivity_study(*, years: float = DEFAULT_YEARS, **kw):
    """The default study of ``febone sensitivity`` (:data:`DEFAULT_PROTOCOL` on the bundled
    coarse femur for :data:`DEFAULT_YEARS` year)."""
    from ..scenario import protocol

    return study_from_scenario(protocol(DEFAULT_PROTOCOL), years=years, **kw)


def specimen_study(patient, treatments=(), *, years: float, shape=(2, 2, 3), seed: int = 7,
                   history_years: float | None = 0.0, **settings):
    """A small study for examples and tests: a 10 × 10 × 5·nz mm trabecular specimen (hex8,
    density 0.3–0.5 g/cm³ at random, Morgan vertebral law) under habitual uniaxial compression
    of 0.5 body weights, fracture load in compression, Jacobi-preconditioned solves; no replayed
    history unless ``history_years`` (None: the patient's, :mod:`febone.remodel.history`)."""
    import numpy as np
    from ..mesh.structured import box_mesh

    mesh = box_mesh(shape, (10.0, 10.0, 5.0 * shape[2]))
    rho = 0.3 + 0.2 * np.random.default_rng(seed).random(mesh.n_elements)
    mesh = replace(mesh, cell_data={"density_g_cm3": rho})
    rs = RemodelSettings(habitual=(HabitualLoad("compression", 1.0, 0.5),),
                         preconditioner="jacobi", law="morgan-vertebra",
                         **{k: v for k, (v, _) in STUDY_DIFFERENCES.items()})
    st = StudySettings(remodel=rs, strength_case="compression", **settings)
    return build_study(mesh, patient, treatments, years=years, settings=st,
                       history_years=history_years)

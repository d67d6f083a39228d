"""How an FE-coupled remodelling run is computed: the settings both drivers share.

:class:`RemodelSettings` is read by the one remodelling model (:mod:`.model`), whichever driver
runs it: the host loop of :func:`febone.remodel.remodel` (``febone run``: outputs, checkpoints,
progress) or the ``lax.scan`` of :func:`febone.study.forward` (``febone sensitivity``,
``batch``, calibration: gradients). :func:`settings_for` is the one translation of a scenario
arm into settings, and :func:`step_schedule` the one calendar of mechanical steps, so both
drivers step on the same days.

What differs between the drivers, all of it (:data:`STUDY_DIFFERENCES` and
:class:`febone.study.StudySettings`):

* ``cell_rtol``: the host loop integrates the cell model adaptively (rtol 1e-4); a study takes
  fixed daily Rosenbrock steps, because adaptive step control is piecewise constant in the
  parameters (noisy finite differences; both branches taken under ``vmap``).
* the fracture-load outcome: the host loop reports the exact Pistoia load
  (:func:`febone.strength.strength`); a study's is the smooth soft-quantile surrogate
  (``StudySettings.tau``), within about ``tau`` (2 %) of it.
* outputs: the host loop measures at every output time (regional vBMD, DXA aBMD and T-score,
  markers, stiffness and fracture loads); a study returns its outcomes at the end and the
  regional vBMD trajectory after every step.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .hormones import YEAR_DAYS
from .mechanics import DEFAULT_HABITUAL, ENGINES, HabitualLoad
from .parameters import (CellParameters, MINERAL_MARTINEZ_REINA_2019, MineralParameters,
                         SITE_CELL_PARAMETERS)

__all__ = ["RemodelSettings", "settings_for", "step_schedule", "calendar", "STUDY_DIFFERENCES",
           "DAYS_PER_YEAR"]

DAYS_PER_YEAR = YEAR_DAYS


@dataclass(frozen=True)
class RemodelSettings:
    """How a remodelling run is computed (all optional; defaults are the documented study).

    Attributes:
        habitual: habitual daily loading, a tuple of :class:`~.mechanics.HabitualLoad`
            (default single-leg stance at 2.5 body weights).
        body_mass_kg: body mass for the habitual forces, kg.
        law: density → modulus law name (:func:`febone.material.density_law`).
        nu: Poisson's ratio.
        density_field: cell data of the mesh with the baseline apparent density, g/cm³.
        steps_per_year: mechanical (FE) updates per year (12: monthly; steps of 30 or 31 whole
            days, :func:`step_schedule`).
        spinup_steps_per_year: mechanical updates per year while the patient's history before
            time 0 is replayed (:mod:`.history`; 4: quarterly steps of 91 or 92 days).
        output_interval_years: time between outputs of the host loop, years (a multiple of the
            mechanical step); the end of the run is always an output.
        strength_cases: load cases whose stiffness and fracture load the host loop reports.
        strength_methods: fracture-load methods (``pistoia``, ``strain-limit``, ...).
        cell_params: :class:`CellParameters` (default :data:`SITE_CELL_PARAMETERS`: Scheiner
            2013 / Martínez-Reina 2019 with turnover ∝ specific surface and κ = 1e4 pM/day, the
            set the coupling was calibrated with).
        mineral_params: :class:`MineralParameters`, or ``None`` to skip mineralisation
            (then ρ_t is that of fully mineralised bone and BMD follows BV/TV alone). Its
            secondary rate is scaled by the run-mean mineralisation factor of the patient's
            calcium and vitamin D (:func:`febone.remodel.model.physics`).
        cell_rtol: adaptive step tolerance of the cell model, or ``None`` for fixed daily
            Rosenbrock steps (:data:`STUDY_DIFFERENCES`).
        smoothing: element → node → element average of the stimulus (anti-checkerboard).
        lazy_zone: half-width of the dead band of the mechanical stimulus ratio Ψ/Ψ̆
            (:func:`~.mechanics.lazy_zone`; fraction, 0 = none). The default ±2 % keeps the
            cell model's disuse term, κ·(1 − Ψ/Ψ̆) with κ = 1e4 pM/day below homeostasis, from
            making the monthly steps overshoot around Ψ/Ψ̆ = 1.
        stimulus: what the cells sense (:class:`~.mechanics.MechanicalStimulus`):
            ``"effective-strain"`` (default; ε_eff = √(2·SED/E), whose feedback under a fixed
            force is that of the FE-free calibration's closure), ``"strain"`` (SED/E = ε_eff²/2,
            twice that feedback) or ``"sed"``.
        preconditioner: CG preconditioner of the unstructured FE solves (``auto`` = AMG with
            pyamg).
        solver: the FE engine of the habitual and strength solves
            (:func:`~.mechanics.resolve_engine`): ``"auto"`` (default: the matrix-free
            multigrid voxel engine for a grid-aligned hex8 bone, as the bundled bones are, when
            no unstructured ``preconditioner`` is named; else the unstructured path),
            ``"voxel"`` or ``"unstructured"``. Both give the same answers to the CG tolerance.
    """

    habitual: tuple = DEFAULT_HABITUAL
    body_mass_kg: float = 70.0
    law: str = "morgan-femoral-neck"
    nu: float = 0.3
    density_field: str = "density_g_cm3"
    steps_per_year: int = 12
    spinup_steps_per_year: int = 4
    output_interval_years: float = 1.0
    strength_cases: tuple = ("stance", "sideways-fall")
    strength_methods: tuple = ("pistoia",)
    cell_params: CellParameters = SITE_CELL_PARAMETERS
    mineral_params: MineralParameters | None = MINERAL_MARTINEZ_REINA_2019
    cell_rtol: float | None = 1e-4
    smoothing: bool = True
    lazy_zone: float = 0.02
    stimulus: str = "effective-strain"
    preconditioner: str = "auto"
    solver: str = "auto"

    def __post_init__(self):
        if self.solver not in ENGINES:
            raise ValueError(f"unknown solver {self.solver!r}; use one of "
                             f"{', '.join(map(repr, ENGINES))} (the FE engine of the loop)")
        if not (np.isfinite(self.lazy_zone) and 0 <= self.lazy_zone < 1):
            raise ValueError(f"lazy_zone must be a fraction in [0, 1); got {self.lazy_zone}")
        for name in ("steps_per_year", "spinup_steps_per_year"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v <= 365):
                raise ValueError(f"{name} must be an integer in 1..365 (12 = monthly FE "
                                 f"updates); got {v!r}")
        k = self.output_interval_years * self.steps_per_year
        if not (np.isfinite(k) and k >= 1 - 1e-9 and abs(k - round(k)) < 1e-6):
            raise ValueError(f"output_interval_years ({self.output_interval_years}) must be a "
                             f"positive multiple of the mechanical step (1/{self.steps_per_year} "
                             f"year)")
        if not 0.0 < self.nu < 0.5:
            raise ValueError(f"Poisson's ratio must lie in (0, 0.5); got {self.nu}")
        if self.cell_rtol is not None and not (isinstance(self.cell_rtol, float)
                                               and 0 < self.cell_rtol < 1):
            raise ValueError(f"cell_rtol must be a float in (0, 1) or None (fixed daily steps); "
                             f"got {self.cell_rtol!r}")
        for h in self.habitual:
            if not isinstance(h, HabitualLoad):
                raise TypeError(f"habitual loads must be HabitualLoad objects; got "
                                f"{type(h).__name__}")

    def describe(self) -> dict:
        """JSON-ready description (what was run)."""
        return {"habitual": [vars(h) for h in self.habitual], "body_mass_kg": self.body_mass_kg,
                "law": self.law, "nu": self.nu, "density_field": self.density_field,
                "steps_per_year": self.steps_per_year,
                "spinup_steps_per_year": self.spinup_steps_per_year,
                "output_interval_years": self.output_interval_years,
                "strength_cases": list(self.strength_cases),
                "strength_methods": list(self.strength_methods),
                "cell_params": self.cell_params.name,
                "mineralisation": self.mineral_params is not None,
                "cell_rtol": self.cell_rtol, "smoothing": self.smoothing,
                "lazy_zone": self.lazy_zone, "stimulus": self.stimulus,
                "preconditioner": self.preconditioner, "solver": self.solver}


#: The settings a differentiable study changes (``RemodelSettings`` field: (value, why)); the
#: only other differences are the outcomes (module docstring).
STUDY_DIFFERENCES = {
    "cell_rtol": (None, "fixed daily Rosenbrock steps: adaptive step control is piecewise "
                        "constant in the parameters"),
}


def settings_for(scenario, **overrides) -> RemodelSettings:
    """:class:`RemodelSettings` of one scenario arm (bone, loading, outputs, step): the one
    translation of a :class:`febone.scenario.Scenario` used by ``febone run`` and
    ``febone sensitivity``.

    Args:
        scenario: a scenario arm (no ``compare`` arms left: ``scenario.runs()[i]``).
        overrides: :class:`RemodelSettings` fields to replace.
    """
    steps = max(1, int(round(DAYS_PER_YEAR / scenario.mechanical_step_days)))
    habitual = tuple(HabitualLoad(lc.case, lc.weight, lc.magnitude_bw, tuple(lc.options))
                     for lc in scenario.load_cases)
    kw = dict(habitual=habitual, body_mass_kg=float(scenario.patient.body_mass_kg),
              law=scenario.bone.law, nu=scenario.bone.nu,
              density_field=scenario.bone.density_field, steps_per_year=steps,
              output_interval_years=scenario.output_interval_years,
              strength_cases=tuple(scenario.strength.cases),
              strength_methods=tuple(scenario.strength.methods))
    kw.update(overrides)
    return replace(RemodelSettings(), **kw)


def step_schedule(years: float, steps_per_year: int) -> np.ndarray:
    """Day boundaries of the mechanical steps: round(k · 365.25 / steps_per_year), k = 0..n.

    Steps are whole days (the mineral queue advances daily) of two lengths at most, and every
    year ends within half a day of k · 365.25.

    Returns:
        (n_steps + 1,) int64 days, starting at 0.
    """
    n = years * steps_per_year
    if not (np.isfinite(n) and n >= 1 - 1e-9 and abs(n - round(n)) < 1e-6):
        raise ValueError(f"years ({years}) must be a positive multiple of the mechanical step "
                         f"1/{steps_per_year} year")
    k = np.arange(int(round(n)) + 1)
    return np.round(k * DAYS_PER_YEAR / steps_per_year).astype(np.int64)


def calendar(years: float, settings: RemodelSettings, history_years: float = 0.0):
    """Day boundaries of every mechanical step of a run with a replayed history: the history's
    coarse steps (``spinup_steps_per_year``) from day 0, then the run's
    (``steps_per_year``) from the end of the history (time 0).

    Returns:
        ``(bounds, n_history_steps)``: (n_steps + 1,) int64 days from the start of the history,
        and how many of the steps are history (time 0 is ``bounds[n_history_steps]``).
    """
    hist = (step_schedule(history_years, settings.spinup_steps_per_year) if history_years > 0
            else np.zeros(1, np.int64))
    run = hist[-1] + step_schedule(years, settings.steps_per_year)
    return np.concatenate([hist[:-1], run]), len(hist) - 1

"""``run_scenario``: a scenario (patient + treatments + bone), simulated arm by arm.

A :class:`~febone.scenario.Scenario` says who (patient), what (treatments and lifestyle), on
which bone and for how long; this module turns each arm into daily hormone levels
(:func:`~febone.remodel.hormones.hormone_series`), cell-model drives
(:func:`~febone.remodel.coupling.daily_inputs`) and an FE-coupled remodelling run
(:func:`~febone.remodel.simulation.remodel`), and collects the results.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..device import device_description
from .mechanics import HabitualLoad
from .simulation import DAYS_PER_YEAR, RemodelResult, RemodelSettings, remodel

__all__ = ["ScenarioResult", "run_scenario", "settings_for"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenarioResult:
    """Results of every arm of a scenario.

    Attributes:
        scenario: the :class:`~febone.scenario.Scenario` that was run.
        arms: {arm name: :class:`RemodelResult`}, in the scenario's order.
        wall_seconds: the whole call, s.
        device: where it ran.
    """

    scenario: object
    arms: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    device: str = ""

    def summary(self) -> dict:
        """JSON-ready (the keys of ``febone run --json``): one arm's keys at the top level, or
        the same keys per arm under ``protocols`` when several are compared."""
        base = {"wall_seconds": self.wall_seconds, "device": self.device,
                "scenario": self.scenario.to_dict()}
        if len(self.arms) == 1:
            (res,) = self.arms.values()
            return {**res.summary(), **base}
        return {"protocols": {name: res.summary() for name, res in self.arms.items()}, **base}


def settings_for(scenario, **overrides) -> RemodelSettings:
    """:class:`RemodelSettings` of one scenario arm (bone, loading, outputs, step)."""
    from .site import SITE_CELL_PARAMETERS

    steps = max(1, int(round(DAYS_PER_YEAR / scenario.mechanical_step_days)))
    habitual = tuple(HabitualLoad(lc.case, lc.weight, lc.magnitude_bw, tuple(lc.options))
                     for lc in scenario.load_cases)
    kw = dict(habitual=habitual, body_mass_kg=float(scenario.patient.body_mass_kg),
              law=scenario.bone.law, nu=scenario.bone.nu,
              density_field=scenario.bone.density_field, steps_per_year=steps,
              output_interval_years=scenario.output_interval_years,
              strength_cases=tuple(scenario.strength.cases),
              strength_methods=tuple(scenario.strength.methods),
              cell_params=SITE_CELL_PARAMETERS)
    kw.update(overrides)
    return RemodelSettings(**kw)


def run_scenario(scenario, *, out_dir=None, resume: bool = False, progress=None,
                 coupling=None, **settings_overrides) -> ScenarioResult:
    """Simulate every arm of ``scenario`` on its bone.

    Args:
        scenario: a :class:`~febone.scenario.Scenario` (``load_scenario``, ``protocol``,
            ``study``, ``default_study``).
        out_dir: folder for each arm's ``<arm>.jsonl`` (written as produced) and checkpoint.
        resume: continue interrupted arms from their checkpoints (finished arms are re-read).
        progress: callable(arm_name, step, n_steps, record_or_None).
        coupling: :class:`~febone.remodel.coupling.CouplingParameters` (default
            :data:`~febone.remodel.fe_calibration.FE_COUPLING`: the FE-free fit with the
            FE-level correction of the menopausal RANKL gain).
        settings_overrides: fields of :class:`RemodelSettings` to override (e.g.
            ``preconditioner="jacobi"``).

    Returns:
        :class:`ScenarioResult`.
    """
    from ..mesh.io import read_mesh
    from .coupling import daily_inputs
    from .fe_calibration import FE_COUPLING
    from .hormones import hormone_series

    start = time.perf_counter()
    coupling = FE_COUPLING if coupling is None else coupling
    meshes: dict[Path, object] = {}
    arms: dict[str, RemodelResult] = {}
    cache: dict = {}
    for arm in scenario.runs():
        path = arm.bone.path()
        if path not in meshes:
            meshes[path] = read_mesh(path)
        settings = settings_for(arm, **settings_overrides)
        years = arm.duration_years
        days = int(round(years * DAYS_PER_YEAR)) + 1
        inputs = daily_inputs(hormone_series(arm.patient, arm.treatments, days=days), coupling)
        if settings.mineral_params is not None:
            # calcium / vitamin D: the run-mean mineralisation factor scales the secondary
            # mineralisation rate, exactly as in the calibration (febone.remodel.site)
            mp = settings.mineral_params
            settings = replace(settings, mineral_params=replace(
                mp, rate=float(mp.rate * np.mean(np.asarray(inputs.mineralisation_factor)))))
        cb = None if progress is None else (lambda k, n, rec, _a=arm.name: progress(_a, k, n, rec))
        arms[arm.name] = remodel(meshes[path], inputs, years=years, settings=settings,
                                 label=_file_label(arm.name), out_dir=out_dir, resume=resume,
                                 progress=cb, description={"arm": arm.name, "bone": str(path)},
                                 cache=cache)
    return ScenarioResult(scenario, arms, time.perf_counter() - start, device_description())


def _file_label(name: str) -> str:
    """A file-name-safe label of an arm name (``trt+anastrozole`` → ``trt+anastrozole``)."""
    return "".join(c if c.isalnum() or c in "+-_." else "_" for c in name) or "run"

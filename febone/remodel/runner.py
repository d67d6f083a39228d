"""``run_scenario``: a scenario (patient + treatments + bone), simulated arm by arm.

A :class:`~febone.scenario.Scenario` says who (patient), what (treatments and lifestyle), on
which bone and for how long; this module turns each arm into settings
(:func:`~febone.remodel.settings.settings_for`, the translation ``febone sensitivity`` uses
too), daily cell-model inputs (:func:`~febone.remodel.model.daily_table`) and an FE-coupled
remodelling run (:func:`~febone.remodel.simulation.remodel`), and collects the results.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax

from ..device import device_description
from ..parallel import batch_devices
from .batched import remodel_batch
from .coupling import FE_COUPLING
from .history import replayed, spinup_years
from .model import daily_table
from .settings import calendar, settings_for
from .simulation import RemodelResult, remodel, run_precision

__all__ = ["ScenarioResult", "run_scenario", "arm_history_years"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenarioResult:
    """Results of every arm of a scenario.

    Attributes:
        scenario: the :class:`~febone.scenario.Scenario` that was run.
        arms: {arm name: :class:`RemodelResult`}, in the scenario's order.
        wall_seconds: the whole call, s.
        device: where it ran.
        precision: the precision mode of the run (:func:`run_scenario`).
    """

    scenario: object
    arms: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    device: str = ""
    precision: str = "float64"

    def summary(self) -> dict:
        """JSON-ready (the keys of ``febone run --json``): one arm's keys at the top level, or
        the same keys per arm under ``protocols`` when several are compared."""
        base = {"wall_seconds": self.wall_seconds, "device": self.device,
                "precision": self.precision, "scenario": self.scenario.to_dict()}
        if len(self.arms) == 1:
            (res,) = self.arms.values()
            return {**res.summary(), **base}
        return {"protocols": {name: res.summary() for name, res in self.arms.items()}, **base}


def run_scenario(scenario, *, out_dir=None, resume: bool = False, progress=None,
                 coupling=None, devices=None, precision: str | None = None,
                 refresh: bool = True, **settings_overrides) -> ScenarioResult:
    """Simulate every arm of ``scenario`` on its bone.

    Args:
        scenario: a :class:`~febone.scenario.Scenario` (``load_scenario``, ``protocol``,
            ``study``, ``default_study``).
        out_dir: folder for each arm's ``<arm>.jsonl`` (written as produced) and checkpoint.
        resume: continue interrupted arms from their checkpoints (finished arms are re-read).
        progress: callable(arm_name, step, n_steps, record_or_None).
        coupling: :class:`~febone.remodel.coupling.CouplingParameters` (default
            :data:`~febone.remodel.coupling.FE_COUPLING`: the FE-free fit with the FE-level
            correction of the menopausal RANKL gain).
        devices: None (default): the arms one after another on the default device. A number
            N (or a sequence of devices, :func:`febone.parallel.batch_devices`): the arms that
            share the bone, the settings, the duration and the history are stepped as one batch
            spread over N devices (:func:`~.batched.remodel_batch`), each arm's answers equal
            to its lone run to round-off; an arm that shares them with no other runs alone.
            Under ``jax.distributed`` (:func:`febone.parallel.initialize_distributed`) the N
            devices may be on several hosts: every process calls ``run_scenario`` alike and
            gets every arm's results; process 0 alone writes ``out_dir`` (shared, to resume)
            and calls ``progress`` (so a ``progress`` that raises stops process 0 only).
        precision: ``"float64"`` (default; ``None`` too), ``"mixed"`` (the habitual and
            strength FE solves as float32 CG inside a float64 residual correction; the cell
            model, outputs and everything else float64) or ``"float32"`` (everything float32:
            JAX's x64 mode must be off, :func:`febone.precision.configure`); the tolerances
            each reaches, measured, in :mod:`febone.precision`
            (:data:`~febone.precision.RUN_TOLERANCES`). Recorded in the summary
            (``"precision"``).
        refresh: refresh the habitual cases' preconditioners for the current moduli at every
            output (:func:`~.simulation.remodel`; changes the CG iterates only). ``False``:
            the AMG hierarchies of the baseline moduli throughout, and voxel multigrid set up
            inside every solve, as the differentiable study does.
        settings_overrides: fields of :class:`RemodelSettings` to override (e.g.
            ``preconditioner="jacobi"``).

    Returns:
        :class:`ScenarioResult`.
    """
    from ..mesh.io import read_mesh

    start = time.perf_counter()
    mode = run_precision(precision)      # fail before the set-up
    if devices is not None:
        batch_devices(devices)           # fail before the set-up: N ≤ jax.device_count()
    coupling = FE_COUPLING if coupling is None else coupling
    if jax.process_index() != 0:     # under jax.distributed process 0 alone reports progress
        progress = None
    meshes: dict[Path, object] = {}
    arms: dict[str, RemodelResult] = {}
    cache: dict = {}
    groups: dict = {}
    for arm in scenario.runs():
        path = arm.bone.path()
        if path not in meshes:
            meshes[path] = read_mesh(path)
        settings = settings_for(arm, **settings_overrides)
        years = arm.duration_years
        history = arm_history_years(arm, settings)
        n_days = int(calendar(years, settings, history)[0][-1])
        inputs = daily_table(*replayed(arm.patient, arm.treatments, history), coupling, n_days)
        cb = None if progress is None else (lambda k, n, rec, _a=arm.name: progress(_a, k, n, rec))
        run = dict(inputs=inputs, years=years, settings=settings, label=_file_label(arm.name),
                   out_dir=out_dir, resume=resume, progress=cb,
                   description={"arm": arm.name, "bone": str(path)}, history_years=history,
                   baseline_abmd=dict(getattr(arm.bone, "baseline_abmd", ())),
                   precision=mode.name, refresh=refresh)
        if devices is None:
            arms[arm.name] = remodel(meshes[path], cache=cache, **run)
        else:       # arms that can share one batch: the same bone, settings and calendar
            key = (path, years, history, repr(settings.describe()))
            groups.setdefault(key, []).append((arm.name, run))
    for (path, *_), group in groups.items():
        if len(group) == 1:
            ((name, run),) = group
            arms[name] = remodel(meshes[path], cache=cache, **run)
            continue
        log.info("arms %s: one batch over %s device(s)", [name for name, _ in group], devices)
        results = remodel_batch(meshes[path], [run for _, run in group], devices=devices,
                                cache=cache)
        arms.update((name, res) for (name, _), res in zip(group, results))
    if groups:                                   # in the scenario's order
        arms = {arm.name: arms[arm.name] for arm in scenario.runs()}
    return ScenarioResult(scenario, arms, time.perf_counter() - start, device_description(),
                          mode.name)


def arm_history_years(arm, settings) -> float:
    """Years of the arm's history replayed before time 0: the scenario's ``spinup`` when it
    gives one, else :func:`~.history.spinup_years` of its patient and treatments; whole
    spin-up steps."""
    given = getattr(arm, "spinup_years", None)
    quantum = 1.0 / settings.spinup_steps_per_year
    if given is None:
        return spinup_years(arm.patient, arm.treatments, quantum=quantum)
    history = float(round(given / quantum) * quantum)
    past = [t for t in arm.treatments if t.start_years < -history]
    if past:
        raise ValueError(f"{past[0].drug} starts {-past[0].start_years:g} years before time 0 but "
                         f"only {history:g} years of history are replayed (spinup); replay at "
                         f"least {-min(t.start_years for t in past):g} years, or leave spinup "
                         f"out (automatic)")
    return history


def _file_label(name: str) -> str:
    """A file-name-safe label of an arm name (``trt+anastrozole`` → ``trt+anastrozole``)."""
    return "".join(c if c.isalnum() or c in "+-_." else "_" for c in name) or "run"

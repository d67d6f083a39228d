"""The remodelling model as one differentiable function of a parameter dictionary.

:func:`forward` drives the one remodelling model (:mod:`febone.remodel.model`, the same
:func:`~febone.remodel.model.initial_state` and :func:`~febone.remodel.model.step` that
``febone run`` drives with its host loop) under ``lax.scan``, so ``jax.grad``, ``jax.vmap`` and
``jax.jvp`` (with ``StudySettings(relay_adjoints=False)``) apply to a whole run:

    parameters ─> daily_table ─> initial_state (implicit derivative of the steady start)
              ─> lax.scan over the replayed history before time 0 (quarterly steps,
                 :mod:`febone.remodel.history`; blocks of ⌈√n⌉ checkpointed steps)
              ─> lax.scan over the mechanical steps of step_schedule (the days ``febone run``
                 steps on; a ``lax.switch`` over the step lengths, 30 and 31 days for monthly):
                     step: cell model over the step's days ─> moduli ─> habitual solves
              ─> outcomes at the end: fracture load (soft-quantile Pistoia surrogate, and the
                 exact one), stiffness, regional vBMD change; the vBMD trajectory after every step.

Reverse-mode memory is bounded by checkpointing: by default every mechanical step is
``jax.checkpoint``-ed (``block=1``), so the reverse pass stores one carry per step (the
:class:`~febone.remodel.model.BoneState`: cells, mineral queue, mean mineral content, the
habitual solutions and stimuli, plus one relayed adjoint per habitual case,
:mod:`febone.solve.relay`) and the working set of one step (each Rosenbrock step is checkpointed
too, ``cell_checkpoint``). For long runs ``block=None`` groups the steps in checkpointed blocks
of ⌈√n_steps⌉ (two levels). A step's FE solutions are saved (a checkpoint policy on
``custom_linear_solve``), so the recomputation of the reverse pass repeats no CG solve. Padding
steps beyond ``n_steps`` (to fill the last block) are skipped with ``lax.cond``.

What differs from ``febone run`` is listed in :mod:`febone.remodel.settings`: fixed daily cell
steps (``STUDY_DIFFERENCES``) and the smooth fracture-load surrogate.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields, replace

import jax
import jax.numpy as jnp
import numpy as np

from ..mesh.mesh import Mesh
from ..precision import precision_mode
from ..remodel.coupling import FE_COUPLING, CouplingParameters
from ..remodel.mechanics import PosedCase, case_volumes, pose_case, resolve_engine
from ..remodel.voxel_case import pose_voxel_case
from ..remodel.model import (CellIntegration, RemodelModel, build_model, daily_table,
                             initial_state, moduli, physics, regional_vbmd, step,
                             strength_response)
from ..remodel.patient import Patient
from ..remodel.history import replayed, spinup_years
from ..remodel.settings import DAYS_PER_YEAR, STUDY_DIFFERENCES, RemodelSettings, calendar
from ..remodel.treatments import Treatment

__all__ = ["StudySettings", "Study", "Outcomes", "build_study", "forward", "OUTCOMES",
           "STUDY_PRECISIONS"]

log = logging.getLogger(__name__)

#: Scalar outcomes of :func:`forward` (``bmd_change:<region>`` for every region of the study).
OUTCOMES = ("fracture_load", "stiffness", "mean_bvtv_change")

#: The precision modes of a study (:attr:`StudySettings.precision`).
STUDY_PRECISIONS = ("float64", "mixed")


@dataclass(frozen=True)
class StudySettings:
    """How the differentiable run is discretised and what it reports.

    Attributes:
        remodel: the physics and calendar (:class:`febone.remodel.RemodelSettings`: habitual
            loading, body mass, density law, ν, density field, cell and mineral parameters,
            steps per year, cell-model tolerance, smoothing, preconditioner); default the
            host loop's with :data:`~febone.remodel.settings.STUDY_DIFFERENCES` (fixed daily
            cell steps). ``output_interval_years``/``strength_*`` are not used.
        block: steps per checkpoint block: 1 (default) a checkpoint per step; None ⌈√n_steps⌉
            (two levels: ~2√n_steps carries, one more forward recomputation: for long runs).
        checkpoint: False stores every intermediate of every step in reverse mode (for
            memory comparisons only).
        cell_dt: (largest) cell-model step, days (a divisor of one day).
        cell_method: Rosenbrock method of the cell model (``rodas3``, ``ros2``, ``euler``).
        cell_checkpoint: checkpoint every cell-model step inside a mechanical step (default
            True): the working set of one step keeps each day's input state instead of its
            Rosenbrock residuals (~250 floats per element and day).
        relay_adjoints: in reverse mode, start each step's adjoint FE solves from the next
            step's adjoints (:mod:`febone.solve.relay`) instead of from zero: the same gradient
            in fewer CG iterations. Forward mode (``jax.jvp``) needs False.
        strength_case: load case of the fracture-load and stiffness outcomes (default
            ``sideways-fall``: hip fracture in a fall).
        critical_strain, fraction: Pistoia criterion (effective strain 0.7 %, 2 % of the tissue).
        tau: relative width of the soft quantile of the fracture-load surrogate.
        regions: ``region_*`` cell masks whose vBMD change is reported (default: all).
        stiffness_trajectory: also solve the strength case after every step (warm-started) and
            report its stiffness trajectory (one more FE solve per step).
        precision: ``"float64"`` (default) or ``"mixed"``: the habitual forward solves as
            float32 CG inside a float64 residual correction (:mod:`febone.precision`; their
            adjoints, the strength solves and the cell model stay float64). ``"float32"`` is
            refused (:data:`STUDY_PRECISIONS`): gradients checked against finite differences
            need float64 outcomes.
    """

    remodel: RemodelSettings = replace(RemodelSettings(), **{k: v for k, (v, _) in
                                                              STUDY_DIFFERENCES.items()})
    block: int | None = 1
    checkpoint: bool = True
    cell_dt: float = 1.0
    cell_method: str = "rodas3"
    cell_checkpoint: bool = True
    relay_adjoints: bool = True
    strength_case: str = "sideways-fall"
    critical_strain: float = 0.007
    fraction: float = 0.02
    tau: float = 0.02
    regions: tuple | None = None
    stiffness_trajectory: bool = False
    precision: str = "float64"

    def __post_init__(self):
        if not isinstance(self.remodel, RemodelSettings):
            raise TypeError(f"remodel must be a RemodelSettings; got {type(self.remodel).__name__}")
        if self.block is not None and not (isinstance(self.block, int) and self.block >= 1):
            raise ValueError(f"block must be a positive integer (steps per checkpoint) or None; "
                             f"got {self.block!r}")
        if not (0 < self.fraction < 1 and self.critical_strain > 0 and self.tau > 0):
            raise ValueError("Pistoia criterion needs critical_strain > 0, 0 < fraction < 1 and "
                             "tau > 0")
        if self.precision not in STUDY_PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not available for a study; use "
                             f"one of {list(STUDY_PRECISIONS)} (its gradients are checked "
                             f"against finite differences, which need float64 outcomes)")


@dataclass(frozen=True)
class Study:
    """Everything :func:`forward` needs, built once on the host by :func:`build_study`.

    Attributes:
        model: the bone (:class:`~febone.remodel.model.RemodelModel`).
        strength: the strength case posed on the bone (:class:`~febone.remodel.mechanics.PosedCase`).
        patient: :class:`Patient` at the start; treatments: tuple of :class:`Treatment`.
        coupling: :class:`CouplingParameters`.
        days: day boundaries of the mechanical steps from the start of the replayed history
            (static; :func:`~febone.remodel.settings.calendar`).
        history_steps: how many of the steps replay the patient's history before time 0
            (static); history_years: its length, years (static; :mod:`febone.remodel.history`).
        settings: :class:`StudySettings` (static).
    """

    model: RemodelModel
    strength: PosedCase
    patient: Patient
    treatments: tuple
    coupling: CouplingParameters
    days: tuple = field(metadata=dict(static=True))
    history_steps: int = field(metadata=dict(static=True))
    history_years: float = field(metadata=dict(static=True))
    settings: StudySettings = field(metadata=dict(static=True))

    @property
    def n_steps(self) -> int:
        """Mechanical steps from time 0 (the replayed history not counted)."""
        return len(self.days) - 1 - self.history_steps

    @property
    def n_days(self) -> int:
        """Simulated days from time 0."""
        return self.days[-1] - self.days[self.history_steps]

    @property
    def output_days(self) -> tuple:
        """Days from time 0 of the start and of every step's end, (n_steps + 1,)."""
        d0 = self.days[self.history_steps]
        return tuple(d - d0 for d in self.days[self.history_steps:])

    @property
    def years(self) -> float:
        """Simulated years, n_steps / steps_per_year (the nominal time ``febone run`` reports)."""
        return self.n_steps / self.settings.remodel.steps_per_year

    @property
    def rho0(self) -> jax.Array:
        """(n_elements,) baseline apparent density, g/cm³."""
        return self.model.rho0

    @property
    def regions(self) -> tuple:
        """Names of the reported regions."""
        return self.model.regions

    @property
    def stim(self):
        """The habitual loading (:class:`~febone.remodel.mechanics.MechanicalStimulus`)."""
        return self.model.stim

    @property
    def outcome_names(self) -> tuple:
        """Names accepted by :func:`febone.study.outcome`."""
        return OUTCOMES + tuple(f"bmd_change:{r}" for r in self.regions)


@dataclass(frozen=True)
class Outcomes:
    """Result of :func:`forward` (jax arrays; a leading batch axis under ``vmap``).

    Attributes:
        fracture_load: N, soft-quantile Pistoia load of the strength case at the end.
        stiffness: N/mm, of the strength case at the end.
        bmd_change: (n_regions,) % change of regional vBMD at the end.
        bmd_trajectory: (n_steps, n_regions) % change of regional vBMD after every step.
        stiffness_trajectory: (n_steps,) N/mm, stiffness of the strength case after every step
            (``StudySettings.stiffness_trajectory``; else None).
        mean_bvtv_change: % change of the volume-weighted mean BV/TV at the end.
        baseline_fracture_load: N, at the start (same surrogate).
        baseline_stiffness: N/mm, at the start.
        pistoia_load: (2,) N, the exact Pistoia load (as ``febone run`` reports it) at the start
            and at the end (piecewise smooth in the parameters: report it, differentiate the
            surrogate).
        converged: bool, every FE solve converged and resisted its load.
    """

    fracture_load: jax.Array
    stiffness: jax.Array
    bmd_change: jax.Array
    bmd_trajectory: jax.Array
    stiffness_trajectory: jax.Array | None
    mean_bvtv_change: jax.Array
    baseline_fracture_load: jax.Array
    baseline_stiffness: jax.Array
    pistoia_load: jax.Array
    converged: jax.Array


for _cls in (Study, Outcomes):
    _static = [f.name for f in fields(_cls) if f.metadata.get("static")]
    jax.tree_util.register_dataclass(
        _cls, data_fields=[f.name for f in fields(_cls) if f.name not in _static],
        meta_fields=_static)


def build_study(mesh: Mesh, patient: Patient, treatments=(), *, years: float,
                settings: StudySettings = StudySettings(),
                coupling: CouplingParameters = FE_COUPLING,
                history_years: float | None = None) -> Study:
    """Host-side set-up (once): the remodelling model of the bone and its strength case.

    Args:
        mesh: the bone (mm) with an apparent-density cell field (g/cm³); node sets of the
            habitual and strength cases as point-data masks or findable from its geometry
            (:func:`febone.strength.geometry.resolve_node_sets`); optional ``region_*`` masks.
        patient: :class:`Patient` at the start.
        treatments: sequence of :class:`Treatment` (times from the start).
        years: simulated time, years; rounded to whole mechanical steps
            (``settings.remodel.steps_per_year``), the calendar of ``febone run``.
        settings: :class:`StudySettings`.
        coupling: :class:`CouplingParameters`.
        history_years: the patient's history replayed before time 0, years (default
            :func:`febone.remodel.history.spinup_years`, as ``febone run``; 0 = none).

    Raises:
        TypeError / ValueError: bad inputs (messages name the problem and the fix).
    """
    from ..strength import CASES
    from ..strength.geometry import resolve_node_sets

    if not isinstance(patient, Patient):
        raise TypeError(f"patient must be a Patient (Patient.create(...)); got "
                        f"{type(patient).__name__}")
    treatments = tuple(treatments)
    for t in treatments:
        if not isinstance(t, Treatment):
            raise TypeError(f"treatments must be Treatment objects (Treatment.create); got "
                            f"{type(t).__name__}")
    if not isinstance(settings, StudySettings):
        raise TypeError(f"settings must be StudySettings; got {type(settings).__name__}")
    if isinstance(years, bool) or not isinstance(years, (int, float)) or not years > 0:
        raise ValueError(f"years must be a positive number of years; got {years!r}")
    if settings.strength_case not in CASES:
        raise ValueError(f"unknown strength case {settings.strength_case!r}; choose from "
                         f"{sorted(CASES)}")
    s = settings.remodel
    n_steps = max(1, int(round(years * s.steps_per_year)))
    quantum = 1.0 / s.spinup_steps_per_year
    history = (spinup_years(patient, treatments, quantum=quantum) if history_years is None
               else float(round(history_years / quantum) * quantum))
    bounds, n_hist = calendar(n_steps / s.steps_per_year, s, history)
    days = tuple(int(d) for d in bounds)
    integration = CellIntegration(rtol=s.cell_rtol, dt=settings.cell_dt,
                                  method=settings.cell_method,
                                  checkpoint=settings.cell_checkpoint)
    if isinstance(mesh, Mesh):
        mesh, _ = resolve_node_sets(mesh, CASES[settings.strength_case]())
    model = build_model(mesh, s, regions=settings.regions, integration=integration)
    if settings.precision == "mixed":
        precision_mode("mixed")                      # raises without x64, naming the fix
        model = replace(model, stim=replace(model.stim, solver=replace(model.stim.solver,
                                                                       mixed_precision=True)))
    E0 = np.asarray(physics(s).law.modulus(model.rho0))
    _, layout = resolve_engine(s.solver, mesh, s.preconditioner)
    if layout is not None:          # the strength outcome on the habitual cases' engine
        strength = pose_voxel_case(mesh, layout, CASES[settings.strength_case]())
    else:
        strength = pose_case(mesh, CASES[settings.strength_case](), E0, nu=s.nu,
                             preconditioner=s.preconditioner)
    log.info("study: %d elements, %d steps (%d days, %.2f years) after %.2f years of history",
             mesh.n_elements, n_steps, days[-1] - days[n_hist],
             (days[-1] - days[n_hist]) / DAYS_PER_YEAR, history)
    return Study(model, strength, patient, treatments, coupling, days, n_hist, history, settings)


# --------------------------------------------------------------------------------------------
# the traced run
# --------------------------------------------------------------------------------------------
def _strength_outcome(study: Study, E, nu):
    """(smooth Pistoia load N, exact Pistoia load N, stiffness N/mm, converged)."""
    from ..strength.criteria import failure_load

    st = study.settings
    k, eff, _, ok = strength_response(study.strength, E, nu)
    vol = case_volumes(study.strength)
    load = lambda smooth: failure_load(k, eff, vol, st.critical_strain, st.fraction,
                                       smooth=smooth, tau=st.tau)
    return load(True), load(False), k, ok


def _save_solves(prim, *_, **__) -> bool:
    """Checkpoint policy: keep the outputs of the linear solves (the reverse pass's
    recomputation of a step then repeats no CG iterations), recompute everything else."""
    return prim.name == "custom_linear_solve"


def _block_size(n_steps: int, block: int | None) -> int:
    if block is not None:
        return min(block, n_steps)
    return max(1, math.ceil(math.sqrt(n_steps)))


def forward(study: Study, params: dict | None = None) -> Outcomes:
    """Run the study for one parameter set (pure; jit, grad and vmap it).

    Args:
        study: :class:`Study` from :func:`build_study`.
        params: {name: value} overrides of :func:`febone.study.parameters.apply` names
            (``dose:<drug>``, ``exercise``, ``coupling:<field>``, ``cell:<field>``,
            ``mineral:<field>``, ``patient:<field>``, ``law:a``, ``law:b``, ``density_scale``,
            ``density``); missing names keep the study's values.

    Returns:
        :class:`Outcomes`.
    """
    from .parameters import apply

    r = apply(study, params or {})
    st, model = study.settings, study.model
    bounds = np.asarray(study.days)
    n_hist, n_days = study.history_steps, int(bounds[-1])
    dtype = r.rho0.dtype
    inputs = daily_table(*replayed(r.patient, r.treatments, study.history_years), r.coupling,
                         n_days, dtype=dtype)
    day0 = int(bounds[n_hist])
    phys = physics(st.remodel, jnp.mean(inputs.mineralisation_factor[day0:]), law=r.law,
                   cell=r.cell_params, mineral=r.mineral_params)
    state0, ok0 = initial_state(model, phys, r.rho0)
    relay_on = st.relay_adjoints

    def segment(carry, lo, hi, emit, block_steps):
        """Steps lo..hi−1 of the calendar under ``lax.scan`` (checkpointed, in blocks of
        ``block_steps``, padded); ``emit(carry) -> (carry, outputs)`` after each step."""
        n = hi - lo
        b = bounds[lo:hi + 1]
        lengths = np.diff(b)
        kinds = tuple(sorted(set(int(x) for x in lengths)))
        day_index = np.minimum(b[:-1, None] + np.arange(kinds[-1])[None, :], n_days - 1)
        tables = jax.tree_util.tree_map(lambda a: a[day_index], inputs.drives)
        lf = inputs.load_factor[day_index]

        def mech_step(carry, x):
            state, relay, u_s, ok = carry
            dtab, lf_k, t0, kind = x
            branches = [lambda s_, r_, d, l, t, n=n: step(model, phys, s_, d, l, t, n_days=n,
                                                            relay=r_ if relay_on else None)
                        for n in kinds]
            if len(branches) == 1:
                new, info, relay_new = branches[0](state, relay, dtab, lf_k, t0)
            else:
                new, info, relay_new = jax.lax.switch(kind, branches, state, relay, dtab, lf_k,
                                                      t0)
            relay = relay_new if relay_on else relay
            return emit((new, relay, u_s, ok & info.ok))

        step_ckpt = jax.checkpoint(mech_step, policy=_save_solves) if st.checkpoint else mech_step
        block = _block_size(n, block_steps)
        n_blocks = -(-n // block)
        pad = n_blocks * block - n

        def padded(a):
            a = jnp.asarray(a)
            if pad == 0:
                return a
            return jnp.concatenate([a, jnp.broadcast_to(a[-1:], (pad,) + a.shape[1:])])

        xs = (tables, lf, jnp.asarray(b[:-1], dtype),
              jnp.asarray(np.searchsorted(kinds, lengths), jnp.int32))
        xs = jax.tree_util.tree_map(
            lambda a: padded(a).reshape((n_blocks, block) + jnp.shape(a)[1:]), xs)
        active = jnp.arange(n_blocks * block).reshape(n_blocks, block) < n

        def guarded(carry, x):
            x, live = x
            if pad == 0:
                return step_ckpt(carry, x)
            idle = jax.tree_util.tree_map(jnp.zeros_like, jax.eval_shape(step_ckpt, carry, x)[1])
            return jax.lax.cond(live, step_ckpt, lambda c, _: (c, idle), carry, x)

        def block_fn(carry, xb):
            return jax.lax.scan(guarded, carry, xb)

        if st.checkpoint and block > 1:
            block_fn = jax.checkpoint(block_fn)
        carry, out = jax.lax.scan(block_fn, carry, (xs, active))
        return carry, jax.tree_util.tree_map(
            lambda a: a.reshape((n_blocks * block,) + a.shape[2:])[:n], out)

    relay0 = tuple(jnp.zeros_like(a) for a in state0.u)
    u_s0 = jnp.zeros((study.strength.model.n_nodes, 3), dtype)
    carry = (state0, relay0, u_s0, ok0)
    if n_hist:                                  # the patient's history before time 0
        # blocks of ⌈√n⌉ steps: a long history costs ~2√n carries of reverse-mode memory
        carry, _ = segment(carry, 0, n_hist, lambda c: (c, ()), None)
    state_t0 = carry[0]
    load0, pistoia0, k0, ok_s0 = _strength_outcome(study, moduli(state_t0, phys), phys.nu)
    vbmd0 = regional_vbmd(model, state_t0, phys.mineral)
    vol = model.volumes
    f_mean0 = jnp.sum(vol * state_t0.cells.f_bm) / jnp.sum(vol)

    def outputs(c):
        new, relay, u_s, ok = c
        out = (100.0 * (regional_vbmd(model, new, phys.mineral) / vbmd0 - 1.0),)
        if st.stiffness_trajectory:
            k, _, u_s, ok_k = strength_response(study.strength, moduli(new, phys), phys.nu, u_s)
            ok, out = ok & ok_k, out + (k,)
        return (new, relay, u_s, ok), out

    carry = carry[:3] + (carry[3] & ok_s0,)
    (state, _, _, ok), traj = segment(carry, n_hist, len(bounds) - 1, outputs, st.block)
    bmd = traj[0]
    stiffness_traj = traj[1] if st.stiffness_trajectory else None
    load, pistoia, k, ok_s = _strength_outcome(study, moduli(state, phys), phys.nu)
    f_mean = jnp.sum(vol * state.cells.f_bm) / jnp.sum(vol)
    return Outcomes(load, k, bmd[-1], bmd, stiffness_traj, 100.0 * (f_mean / f_mean0 - 1.0),
                    load0, k0, jnp.stack([pistoia0, pistoia]), ok & ok_s)

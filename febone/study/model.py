"""The remodelling model as one differentiable function of a parameter dictionary.

:func:`forward` drives the one remodelling model (:mod:`febone.remodel.model`, the same
:func:`~febone.remodel.model.initial_state` and :func:`~febone.remodel.model.step` that
``febone run`` drives with its host loop) under ``lax.scan``, so ``jax.grad``, ``jax.vmap`` and
``jax.jvp`` (with ``StudySettings(relay_adjoints=False)``) apply to a whole run:

    parameters ─> daily_table ─> initial_state (implicit derivative of the steady start)
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
from ..remodel.coupling import FE_COUPLING, CouplingParameters
from ..remodel.mechanics import PosedCase, pose_case
from ..remodel.model import (CellIntegration, RemodelModel, build_model, daily_table,
                             initial_state, moduli, physics, regional_vbmd, step,
                             strength_response)
from ..remodel.patient import Patient
from ..remodel.settings import (DAYS_PER_YEAR, STUDY_DIFFERENCES, RemodelSettings,
                                step_schedule)
from ..remodel.treatments import Treatment

__all__ = ["StudySettings", "Study", "Outcomes", "build_study", "forward", "OUTCOMES"]

log = logging.getLogger(__name__)

#: Scalar outcomes of :func:`forward` (``bmd_change:<region>`` for every region of the study).
OUTCOMES = ("fracture_load", "stiffness", "mean_bvtv_change")


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

    def __post_init__(self):
        if not isinstance(self.remodel, RemodelSettings):
            raise TypeError(f"remodel must be a RemodelSettings; got {type(self.remodel).__name__}")
        if self.block is not None and not (isinstance(self.block, int) and self.block >= 1):
            raise ValueError(f"block must be a positive integer (steps per checkpoint) or None; "
                             f"got {self.block!r}")
        if not (0 < self.fraction < 1 and self.critical_strain > 0 and self.tau > 0):
            raise ValueError("Pistoia criterion needs critical_strain > 0, 0 < fraction < 1 and "
                             "tau > 0")


@dataclass(frozen=True)
class Study:
    """Everything :func:`forward` needs, built once on the host by :func:`build_study`.

    Attributes:
        model: the bone (:class:`~febone.remodel.model.RemodelModel`).
        strength: the strength case posed on the bone (:class:`~febone.remodel.mechanics.PosedCase`).
        patient: :class:`Patient` at the start; treatments: tuple of :class:`Treatment`.
        coupling: :class:`CouplingParameters`.
        days: day boundaries of the mechanical steps (static; :func:`step_schedule`).
        settings: :class:`StudySettings` (static).
    """

    model: RemodelModel
    strength: PosedCase
    patient: Patient
    treatments: tuple
    coupling: CouplingParameters
    days: tuple = field(metadata=dict(static=True))
    settings: StudySettings = field(metadata=dict(static=True))

    @property
    def n_steps(self) -> int:
        """Mechanical steps."""
        return len(self.days) - 1

    @property
    def n_days(self) -> int:
        """Simulated days."""
        return self.days[-1]

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
                coupling: CouplingParameters = FE_COUPLING) -> Study:
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
    days = tuple(int(d) for d in step_schedule(n_steps / s.steps_per_year, s.steps_per_year))
    integration = CellIntegration(rtol=s.cell_rtol, dt=settings.cell_dt,
                                  method=settings.cell_method,
                                  checkpoint=settings.cell_checkpoint)
    if isinstance(mesh, Mesh):
        mesh, _ = resolve_node_sets(mesh, CASES[settings.strength_case]())
    model = build_model(mesh, s, regions=settings.regions, integration=integration)
    E0 = np.asarray(physics(s).law.modulus(model.rho0))
    strength = pose_case(mesh, CASES[settings.strength_case](), E0, nu=s.nu,
                         preconditioner=s.preconditioner)
    log.info("study: %d elements, %d steps (%d days, %.2f years)", mesh.n_elements, n_steps,
             days[-1], days[-1] / DAYS_PER_YEAR)
    return Study(model, strength, patient, treatments, coupling, days, settings)


# --------------------------------------------------------------------------------------------
# the traced run
# --------------------------------------------------------------------------------------------
def _strength_outcome(study: Study, E, nu):
    """(smooth Pistoia load N, exact Pistoia load N, stiffness N/mm, converged)."""
    from ..strength.criteria import failure_load

    st = study.settings
    k, eff, _, ok = strength_response(study.strength, E, nu)
    vol = study.strength.model.volumes
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
    n_steps, n_days = study.n_steps, int(bounds[-1])
    dtype = r.rho0.dtype
    inputs = daily_table(r.patient, r.treatments, r.coupling, n_days, dtype=dtype)
    phys = physics(st.remodel, jnp.mean(inputs.mineralisation_factor), law=r.law,
                   cell=r.cell_params, mineral=r.mineral_params)
    state0, ok0 = initial_state(model, phys, r.rho0)
    load0, pistoia0, k0, ok_s0 = _strength_outcome(study, moduli(state0, phys), phys.nu)
    vbmd0 = regional_vbmd(model, state0, phys.mineral)
    vol = model.volumes
    f_mean0 = jnp.sum(vol * state0.cells.f_bm) / jnp.sum(vol)

    # the step's daily inputs, padded to the longest step: (n_steps, longest)
    lengths = np.diff(bounds)
    kinds = tuple(sorted(set(int(n) for n in lengths)))
    longest = kinds[-1]
    day_index = np.minimum(bounds[:-1, None] + np.arange(longest)[None, :], n_days - 1)
    tables = jax.tree_util.tree_map(lambda a: a[day_index], inputs.drives)
    lf = inputs.load_factor[day_index]
    kind = np.searchsorted(kinds, lengths)
    relay_on = st.relay_adjoints

    def one_step(state, relay, dtab, lf_k, t0, n):
        return step(model, phys, state, dtab, lf_k, t0, n_days=n, relay=relay if relay_on else None)

    def mech_step(carry, x):
        state, relay, u_s, ok = carry
        dtab, lf_k, t0, b = x
        branches = [lambda s, r_, d, l, t, n=n: one_step(s, r_, d, l, t, n) for n in kinds]
        if len(branches) == 1:
            new, info, relay_new = branches[0](state, relay, dtab, lf_k, t0)
        else:
            new, info, relay_new = jax.lax.switch(b, branches, state, relay, dtab, lf_k, t0)
        relay = relay_new if relay_on else relay
        out = (100.0 * (regional_vbmd(model, new, phys.mineral) / vbmd0 - 1.0),)
        if st.stiffness_trajectory:
            k, _, u_s, ok_k = strength_response(study.strength, moduli(new, phys), phys.nu, u_s)
            ok, out = ok & ok_k, out + (k,)
        return (new, relay, u_s, ok & info.ok), out

    step_ckpt = jax.checkpoint(mech_step, policy=_save_solves) if st.checkpoint else mech_step
    block = _block_size(n_steps, st.block)
    n_blocks = -(-n_steps // block)
    pad = n_blocks * block - n_steps

    def padded(a):
        a = jnp.asarray(a)
        if pad == 0:
            return a
        return jnp.concatenate([a, jnp.broadcast_to(a[-1:], (pad,) + a.shape[1:])])

    xs = (tables, lf, jnp.asarray(bounds[:-1], dtype), jnp.asarray(kind, jnp.int32))
    xs = jax.tree_util.tree_map(padded, xs)
    xs = jax.tree_util.tree_map(lambda a: a.reshape((n_blocks, block) + a.shape[1:]), xs)
    active = jnp.arange(n_blocks * block).reshape(n_blocks, block) < n_steps

    def guarded(carry, x):
        x, live = x
        if pad == 0:
            return step_ckpt(carry, x)
        idle = (jnp.zeros(vbmd0.shape, dtype),) + ((jnp.zeros((), dtype),)
                                                   if st.stiffness_trajectory else ())
        return jax.lax.cond(live, step_ckpt, lambda c, _: (c, idle), carry, x)

    def block_fn(carry, xb):
        return jax.lax.scan(guarded, carry, xb)

    if st.checkpoint and block > 1:
        block_fn = jax.checkpoint(block_fn)

    relay0 = tuple(jnp.zeros_like(a) for a in state0.u)
    u_s0 = jnp.zeros((study.strength.model.n_nodes, 3), dtype)
    carry0 = (state0, relay0, u_s0, ok0 & ok_s0)
    (state, _, _, ok), traj = jax.lax.scan(block_fn, carry0, (xs, active))
    traj = jax.tree_util.tree_map(lambda a: a.reshape((n_blocks * block,) + a.shape[2:])[:n_steps],
                                  traj)
    bmd = traj[0]
    stiffness_traj = traj[1] if st.stiffness_trajectory else None
    load, pistoia, k, ok_s = _strength_outcome(study, moduli(state, phys), phys.nu)
    f_mean = jnp.sum(vol * state.cells.f_bm) / jnp.sum(vol)
    return Outcomes(load, k, bmd[-1], bmd, stiffness_traj, 100.0 * (f_mean / f_mean0 - 1.0),
                    load0, k0, jnp.stack([pistoia0, pistoia]), ok & ok_s)

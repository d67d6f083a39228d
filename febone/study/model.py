"""A pure, differentiable forward model of an FE-coupled remodelling run.

:func:`forward` is the FE-coupled loop of :func:`febone.remodel.remodel` written as one traced
function of a parameter dictionary, so ``jax.grad``, ``jax.vmap`` and ``jax.jvp`` (with
``StudySettings(relay_adjoints=False)``) apply to a whole run:

    parameters ─> hormone_series ─> daily_inputs ─> steady start (implicit derivative)
              ─> lax.scan over mechanical steps of ``step_days`` days:
                     moduli E(ρ_app) ─> habitual SED (implicit-diff FE solves, warm starts)
                     ─> cell model over the step's days (fixed daily RODAS3 steps by default)
              ─> outcomes at the end: fracture load (soft-quantile Pistoia surrogate), stiffness,
                 regional vBMD change; the vBMD trajectory at every step.

Reverse-mode memory is bounded by checkpointing: by default every mechanical step is
``jax.checkpoint``-ed (``block=1``), so the reverse pass stores one carry per step (cells
5 × n_elements and their mean mineral content, the mineral queue queue_days × n_elements, per
habitual case one (n_nodes, 3) displacement and one relayed adjoint, :mod:`febone.solve.relay`)
plus the working set of one step (its days of cell-model inputs; each Rosenbrock step is
checkpointed too, ``cell_checkpoint``), instead of every intermediate of every step.
For long runs ``block=None`` groups the steps in checkpointed blocks of ⌈√n_steps⌉ (two levels:
(n_blocks + block) carries, one more forward recomputation). A step's FE solutions are saved (a
checkpoint policy on ``custom_linear_solve``), so the recomputation of the reverse pass does not
repeat the CG solves. Padding steps beyond ``n_steps`` (to fill the last block) are skipped with
``lax.cond``.

Differences from :func:`febone.remodel.remodel`: steps have a fixed whole number of days (the
run covers ``n_steps · step_days`` days), outputs are at the end (and the trajectory of vBMD),
BMD is volumetric (mineral mass over volume of a region, with the same mineral scaling), and
the cell model defaults to fixed daily steps (``cell_rtol=None``): adaptive step-size control
is piecewise constant in the parameters, which makes finite-difference checks noisy and turns
into always-taken branches under ``vmap``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..mesh.mesh import Mesh
from ..remodel.cells import Drives, simulate, steady_state
from ..remodel.coupling import CouplingParameters, daily_inputs
from ..remodel.fe_calibration import FE_COUPLING
from ..remodel.hormones import hormone_series
from ..remodel.mechanics import build_stimulus, habitual_sed, habitual_sed_relayed, lazy_zone
from ..remodel.mineral import init_mineral, mean_mineral_content, tissue_density
from ..remodel.parameters import MINERAL_MARTINEZ_REINA_2019
from ..remodel.patient import Patient
from ..remodel.simulation import DAYS_PER_YEAR, RemodelSettings
from ..remodel.treatments import Treatment

__all__ = ["StudySettings", "Study", "Outcomes", "build_study", "forward", "OUTCOMES"]

log = logging.getLogger(__name__)

#: Scalar outcomes of :func:`forward` (``bmd_change:<region>`` for every region of the study).
OUTCOMES = ("fracture_load", "stiffness", "mean_bvtv_change")


@dataclass(frozen=True)
class StudySettings:
    """How the differentiable run is discretised and what it reports.

    Attributes:
        remodel: the physics (:class:`febone.remodel.RemodelSettings`: habitual loading, body
            mass, density law, ν, density field, cell and mineral parameters, smoothing,
            preconditioner). ``steps_per_year``/``output_every``/``strength_*`` are not used.
        step_days: days per mechanical (FE) step (whole days; 30 ≈ monthly).
        block: steps per checkpoint block: 1 (default) a checkpoint per step, one carry
            per step stored (41 MB on the coarse femur); None ⌈√n_steps⌉ (two levels:
            ~2√n_steps carries, one more forward recomputation: for runs of many years).
        checkpoint: False stores every intermediate of every step in reverse mode (for
            memory comparisons only).
        cell_rtol: adaptive tolerance of the cell model, or None (default) for fixed steps of
            ``cell_dt`` days.
        cell_dt: fixed cell-model step, days (a divisor of one day).
        cell_method: Rosenbrock method of the cell model (``rodas3``, ``ros2``, ``euler``).
        cell_checkpoint: also checkpoint every cell-model step inside a mechanical step
            (:func:`febone.remodel.cells.simulate` ``checkpoint_steps``, default True): the
            working set of one step keeps each day's input state instead of its Rosenbrock
            residuals (~250 floats per element and day); on the coarse femur recomputing them
            is faster than storing them (benchmarks/RESULTS_study.md).
        relay_adjoints: in reverse mode, start each step's adjoint FE solves from the next
            step's adjoints (:mod:`febone.solve.relay`) instead of from zero: the same gradient
            in fewer CG iterations. Forward mode (``jax.jvp``) needs False.
        strength_case: load case of the fracture-load and stiffness outcomes (default
            ``sideways-fall``: hip fracture in a fall).
        critical_strain, fraction: Pistoia criterion (effective strain 0.7 %, 2 % of the tissue).
        tau: relative width of the soft quantile of the fracture-load surrogate.
        regions: ``region_*`` cell masks whose vBMD change is reported (default: all).
    """

    remodel: RemodelSettings = RemodelSettings()
    step_days: int = 30
    block: int | None = 1
    checkpoint: bool = True
    cell_rtol: float | None = None
    cell_dt: float = 1.0
    cell_method: str = "rodas3"
    cell_checkpoint: bool = True
    relay_adjoints: bool = True
    strength_case: str = "sideways-fall"
    critical_strain: float = 0.007
    fraction: float = 0.02
    tau: float = 0.02
    regions: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.remodel, RemodelSettings):
            raise TypeError(f"remodel must be a RemodelSettings; got {type(self.remodel).__name__}")
        if not (isinstance(self.step_days, int) and self.step_days >= 1):
            raise ValueError(f"step_days must be a positive whole number of days (30 ≈ monthly); "
                             f"got {self.step_days!r}")
        if self.block is not None and not (isinstance(self.block, int) and self.block >= 1):
            raise ValueError(f"block must be a positive integer (steps per checkpoint) or None; "
                             f"got {self.block!r}")
        if not (0 < self.fraction < 1 and self.critical_strain > 0 and self.tau > 0):
            raise ValueError("Pistoia criterion needs critical_strain > 0, 0 < fraction < 1 and "
                             "tau > 0")


@dataclass(frozen=True)
class _StrengthData:
    model: object
    bcs: object
    preconditioner: object
    loaded: jax.Array
    axis: int = field(metadata=dict(static=True))
    sign: float = field(metadata=dict(static=True))


@dataclass(frozen=True)
class Study:
    """Everything :func:`forward` needs, built once on the host by :func:`build_study`.

    Attributes:
        stim: :class:`~febone.remodel.mechanics.MechanicalStimulus` of the habitual loading.
        strength: posed model, BCs (unit displacement), preconditioner and loaded set of the
            strength case.
        rho0: (n_elements,) baseline apparent density, g/cm³.
        region_masks: (n_regions, n_elements) 0/1 weights of the reported regions.
        patient: :class:`Patient` at the start; treatments: tuple of :class:`Treatment`.
        coupling: :class:`CouplingParameters`.
        regions: region names (static); n_steps: mechanical steps (static);
        settings: :class:`StudySettings` (static).
    """

    stim: object
    strength: _StrengthData
    rho0: jax.Array
    region_masks: jax.Array
    patient: Patient
    treatments: tuple
    coupling: CouplingParameters
    regions: tuple = field(metadata=dict(static=True))
    n_steps: int = field(metadata=dict(static=True))
    settings: StudySettings = field(metadata=dict(static=True))

    @property
    def n_days(self) -> int:
        """Simulated days, n_steps · step_days."""
        return self.n_steps * self.settings.step_days

    @property
    def years(self) -> float:
        """Simulated years, n_days / 365.25."""
        return self.n_days / DAYS_PER_YEAR

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
        mean_bvtv_change: % change of the volume-weighted mean BV/TV at the end.
        baseline_fracture_load: N, at the start (same surrogate).
        converged: bool, every FE solve converged and resisted its load.
    """

    fracture_load: jax.Array
    stiffness: jax.Array
    bmd_change: jax.Array
    bmd_trajectory: jax.Array
    mean_bvtv_change: jax.Array
    baseline_fracture_load: jax.Array
    converged: jax.Array


for _cls in (_StrengthData, Study, Outcomes):
    _static = [f.name for f in fields(_cls) if f.metadata.get("static")]
    jax.tree_util.register_dataclass(
        _cls, data_fields=[f.name for f in fields(_cls) if f.name not in _static],
        meta_fields=_static)


def build_study(mesh: Mesh, patient: Patient, treatments=(), *, years: float,
                settings: StudySettings = StudySettings(),
                coupling: CouplingParameters = FE_COUPLING) -> Study:
    """Host-side set-up (once): stimulus, strength case, baseline density, region masks.

    Args:
        mesh: the bone (mm) with an apparent-density cell field (g/cm³); node sets of the
            habitual and strength cases as point-data masks or findable from its geometry
            (:func:`febone.strength.geometry.resolve_node_sets`); optional ``region_*`` masks.
        patient: :class:`Patient` at the start.
        treatments: sequence of :class:`Treatment` (times from the start).
        years: simulated time, years; rounded to whole steps of ``settings.step_days``.
        settings: :class:`StudySettings`.
        coupling: :class:`CouplingParameters`.

    Raises:
        TypeError / ValueError: bad inputs (messages name the problem and the fix).
    """
    from ..bones.densitometry import _density
    from ..fe.model import FEModel
    from ..material.elastic import LinearElastic
    from ..material.laws import density_law
    from ..mesh.nodesets import node_set
    from ..solve.amg import make_preconditioner
    from ..strength import CASES
    from ..strength.geometry import resolve_node_sets

    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a febone Mesh (febone.read_mesh); got {type(mesh).__name__}")
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
    n_steps = max(1, int(round(years * DAYS_PER_YEAR / settings.step_days)))
    s = settings.remodel
    if settings.strength_case not in CASES:
        raise ValueError(f"unknown strength case {settings.strength_case!r}; choose from "
                         f"{sorted(CASES)}")
    for case_name in {h.case for h in s.habitual} | {settings.strength_case}:
        mesh, _ = resolve_node_sets(mesh, CASES[case_name]())
    rho0 = _density(mesh, s.density_field)
    if np.any(rho0 <= 0):
        raise ValueError(f"density field {s.density_field!r} has non-positive values; "
                         f"remodelling needs bone (ρ > 0) in every element")
    rho_t = float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max))
    if np.any(rho0 >= rho_t):
        raise ValueError(f"densities up to {rho0.max():.3g} g/cm³ reach the tissue density "
                         f"({rho_t:.3g}: BV/TV ≥ 1); check the density field's units (g/cm³)")
    law = density_law(s.law)
    E0 = np.asarray(law.modulus(rho0))
    stim = build_stimulus(mesh, E0, nu=s.nu, habitual=s.habitual, body_mass_kg=s.body_mass_kg,
                          smoothing=s.smoothing, preconditioner=s.preconditioner,
                          quantity=s.stimulus)
    case = CASES[settings.strength_case]()
    posed = case.posed(mesh)
    model = FEModel.from_mesh(posed)
    bcs = case.boundary_conditions(posed)
    pre = make_preconditioner(s.preconditioner, model, LinearElastic.create(E0, s.nu,
                                                                           mesh.n_elements), bcs)
    strength = _StrengthData(model, bcs, pre, jnp.asarray(node_set(posed, case.loaded)),
                             "xyz".index(case.axis), case.load_sign(posed))
    available = sorted(k[len("region_"):] for k in mesh.cell_data if k.startswith("region_"))
    regions = tuple(available) if settings.regions is None else tuple(settings.regions)
    missing = [r for r in regions if r not in available]
    if missing:
        raise ValueError(f"regions {missing} are not region_* cell masks of the mesh; "
                         f"available: {available}")
    if regions:
        masks = np.stack([np.asarray(mesh.cell_data[f"region_{r}"], float).reshape(-1) > 0
                          for r in regions]).astype(float)
    else:                                  # a specimen without regions: the whole bone
        regions, masks = ("all",), np.ones((1, mesh.n_elements))
    if np.any(masks.sum(axis=1) == 0):
        raise ValueError(f"a region selects no element: {dict(zip(regions, masks.sum(1)))}")
    log.info("study: %d elements, %d steps of %d days (%.2f years)", mesh.n_elements, n_steps,
             settings.step_days, n_steps * settings.step_days / DAYS_PER_YEAR)
    return Study(stim, strength, jnp.asarray(rho0), jnp.asarray(masks), patient, treatments,
                 coupling, regions, n_steps, settings)


# --------------------------------------------------------------------------------------------
# the traced model
# --------------------------------------------------------------------------------------------
def _modulus(rho, law):
    a, b, rho_min = law
    return a * jnp.maximum(rho, rho_min) ** b


def _apparent(cells, v_m, mp):
    """(ρ_app g/cm³, mineral volume per element volume) of every element, from the cells and
    the mean mineral content v_m (None without mineralisation)."""
    f = cells.f_bm
    if mp is None:
        return float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max)) * f, f
    return tissue_density(v_m, mp) * f, v_m * f


def _content(cells, mineral, mp):
    """Mean mineral content (n_elements,) of a queue, or None without mineralisation."""
    return None if mp is None else mean_mineral_content(mineral, cells.f_bm, mp)


def _initial_state(params, mp, baseline: Drives, rho0):
    """Steady state whose apparent density is ρ0 (fixed point in BV/TV, as remodel() does)."""
    rho_t = float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max))
    f = jnp.minimum(rho0 / rho_t, 1.0)
    cells = steady_state(params, baseline, f_bm=f)
    mineral = None
    if mp is not None:
        for _ in range(4):
            mineral = init_mineral(cells, params, mp)
            v_m = mean_mineral_content(mineral, cells.f_bm, mp)
            f = jnp.minimum(rho0 / tissue_density(v_m, mp), 1.0)
            cells = steady_state(params, baseline, f_bm=f)
        mineral = init_mineral(cells, params, mp)
    return cells, mineral


def _strength_outcome(study: Study, E, nu, u0=None):
    """(smooth Pistoia fracture load N, stiffness N/mm, converged) of the strength case."""
    from ..fe.post import element_fields, reaction_forces
    from ..material.elastic import LinearElastic
    from ..solve.linear import solve
    from ..solve.pcg import PCG
    from ..strength.criteria import effective_strain, failure_load

    c, st = study.strength, study.settings
    mat = LinearElastic(E, jnp.asarray(nu, E.dtype))
    sol = solve(c.model, mat, c.bcs, solver=PCG(rtol=1e-10), preconditioner=c.preconditioner,
                u0=u0, throw=False, check_supports=False)
    force = c.sign * reaction_forces(c.model, mat, c.bcs, sol.u)[c.loaded, c.axis].sum()
    measure = effective_strain(element_fields(c.model, mat, sol.u).sed, E)
    load = failure_load(force, measure, c.model.volumes, st.critical_strain, st.fraction,
                        smooth=True, tau=st.tau)
    return load, force, sol.stats.converged & (force > 0)


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
    st = study.settings
    s = st.remodel
    n_steps, step_days = study.n_steps, st.step_days
    dtype = r.rho0.dtype
    series = hormone_series(r.patient, r.treatments, days=n_steps * step_days, dtype=dtype)
    inputs = daily_inputs(series, r.coupling)
    table = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_steps * step_days,)),
                                   inputs.drives)
    baseline = replace(jax.tree_util.tree_map(lambda a: a[0], table), psi_ratio=1.0)
    cp, mp = r.cell_params, r.mineral_params
    cells0, mineral0 = _initial_state(cp, mp, baseline, r.rho0)
    v_m0 = _content(cells0, mineral0, mp)
    rho, mvol0 = _apparent(cells0, v_m0, mp)
    nu = s.nu
    u_zero = tuple(jnp.zeros((c.model.n_nodes, 3), dtype)
                   for c in study.stim.cases)
    psi0, u0, _, ok0 = habitual_sed(study.stim, _modulus(rho, r.law), nu, u_zero)
    psi0 = jnp.maximum(psi0, 1e-12 * jnp.mean(psi0))
    load0, _, ok_s0 = _strength_outcome(study, _modulus(rho, r.law), nu)

    vol = study.stim.volumes
    w_reg = study.region_masks * (vol * r.rho0)[None, :]         # (n_regions, n) mg-ish weights
    denom = w_reg @ jnp.ones_like(vol)
    f_mean0 = jnp.sum(vol * cells0.f_bm) / jnp.sum(vol)

    def bmd_change(mvol):
        return 100.0 * ((w_reg @ (mvol / mvol0)) / denom - 1.0)

    # daily tables per step: (n_steps, step_days)
    per_step = lambda a: a.reshape(n_steps, step_days)
    tables = jax.tree_util.tree_map(per_step, table)
    lf = per_step(jnp.broadcast_to(inputs.load_factor, (n_steps * step_days,)))
    cell_kw = dict(dt=st.cell_dt, rtol=st.cell_rtol, method=st.cell_method,
                   checkpoint_steps=st.cell_checkpoint)

    def mech_step(carry, x):
        cells, mineral, v_m, u, relay, ok = carry
        dtab, lf_k, k = x
        rho, _ = _apparent(cells, v_m, mp)
        E_k = _modulus(rho, r.law)
        if st.relay_adjoints:
            psi, u_new, _, ok_k, relay = habitual_sed_relayed(study.stim, E_k, nu, u, relay)
        else:
            psi, u_new, _, ok_k = habitual_sed(study.stim, E_k, nu, u)
        ratio = psi / psi0
        t0 = (k * step_days).astype(dtype)

        def drives_fn(t, s_, v_):
            i = jnp.clip(jnp.floor(t - t0).astype(jnp.int32), 0, step_days - 1)
            d = jax.tree_util.tree_map(lambda a: a[i], dtab)
            return replace(d, psi_ratio=lazy_zone(ratio * lf_k[i] ** 2, s.lazy_zone))

        kw = {} if mp is None else {"mineral": mineral, "mineral_params": mp}
        traj = simulate(cp, cells, drives_fn, days=step_days, t0=t0, save_every=step_days,
                        **cell_kw, **kw)
        cells_new, mineral_new = traj.final, traj.mineral
        v_m_new = None if mp is None else traj.v_m[-1]
        _, mvol = _apparent(cells_new, v_m_new, mp)
        return (cells_new, mineral_new, v_m_new, u_new, relay, ok & ok_k), bmd_change(mvol)

    step_ckpt = jax.checkpoint(mech_step, policy=_save_solves) if st.checkpoint else mech_step
    block = _block_size(n_steps, st.block)
    n_blocks = -(-n_steps // block)
    pad = n_blocks * block - n_steps

    def padded(a):
        if pad == 0:
            return a
        return jnp.concatenate([a, jnp.broadcast_to(a[-1:], (pad,) + a.shape[1:])])

    ks = jnp.arange(n_blocks * block)
    xs = (jax.tree_util.tree_map(padded, tables), padded(lf), ks)
    xs = jax.tree_util.tree_map(lambda a: a.reshape((n_blocks, block) + a.shape[1:]), xs)

    def guarded(carry, x):
        if pad == 0:
            return step_ckpt(carry, x)
        n_reg = study.region_masks.shape[0]
        return jax.lax.cond(x[2] < n_steps, step_ckpt,
                            lambda c, _: (c, jnp.zeros((n_reg,), dtype)), carry, x)

    def block_fn(carry, xb):
        return jax.lax.scan(guarded, carry, xb)

    if st.checkpoint and block > 1:
        block_fn = jax.checkpoint(block_fn)

    relay0 = tuple(jnp.zeros_like(a) for a in u0)
    carry0 = (cells0, mineral0, v_m0, u0, relay0, ok0 & ok_s0)
    (cells, mineral, v_m, u, _, ok), traj = jax.lax.scan(block_fn, carry0, xs)
    traj = traj.reshape((n_blocks * block, -1))[:n_steps]
    rho, mvol = _apparent(cells, v_m, mp)
    load, stiffness, ok_s = _strength_outcome(study, _modulus(rho, r.law), nu)
    f_mean = jnp.sum(vol * cells.f_bm) / jnp.sum(vol)
    return Outcomes(load, stiffness, bmd_change(mvol), traj, 100.0 * (f_mean / f_mean0 - 1.0),
                    load0, ok & ok_s)

"""The one FE-coupled remodelling model: a host-side builder and a pure step.

Both drivers run exactly this code: the host loop of :func:`febone.remodel.remodel`
(``febone run``: outputs, checkpoints, resume, progress) and the ``lax.scan`` of
:func:`febone.study.forward` (``febone sensitivity``, batches, calibration: ``jax.grad``,
``jax.vmap``). What differs between them is listed in :mod:`febone.remodel.settings`.

    mesh + RemodelSettings ─ build_model (host, once) ─> RemodelModel (posed cases, AMG, regions)
    RemodelSettings + run-mean mineralisation ─ physics ─> Physics (traceable constants)
    patient + treatments + coupling ─ daily_inputs ─> daily drives and load factor
    initial_state(model, physics) ─> BoneState (every element at its steady state, its density
                                                the mesh's; habitual solves; Ψ̆)
    step(model, physics, state, the step's daily drives) ─> BoneState, StepInfo

One mechanical step of ``n_days`` whole days:

1. the cell model (:func:`febone.remodel.cells.simulate`, with the daily mineral queue) over the
   step's days with the day's hormone/drug drives and the mechanical ratio
   ``Ψ/Ψ̆ · load_factor(day)²`` (exercise scales the habitual force) through the lazy zone,
   Ψ the habitual stimulus of the state at the start of the step;
2. moduli of the new state: ρ_app = ρ_t(v_m)·f_bm (Martínez-Reina 2019 tissue density, v_m the
   element's mean mineral content) and E = law(ρ_app);
3. habitual stimulus Ψ of the new moduli from warm-started FE solves of the habitual load cases
   at their target forces (:mod:`.mechanics`), stored in the state for the next step and for the
   outputs (displacements, stresses).

Every element starts at its own steady state under neutral drives (eugonadal, premenopausal
homeostasis) with BV/TV such that its apparent density is the mesh's; hormone levels that differ
from neutral at day 0 act from day 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import jax
import jax.numpy as jnp
import numpy as np

from ..bones.densitometry import ASH_FRACTION
from ..material.laws import PowerLaw, density_law
from ..mesh.mesh import Mesh
from ..solve.pcg import PCG
from .cells import CellState, Drives, simulate, specific_surface, steady_state
from .coupling import CouplingParameters, DailyInputs, daily_inputs
from .hormones import hormone_series
from .mechanics import (MechanicalStimulus, build_stimulus, case_stiffness,
                        habitual_sed, habitual_sed_relayed, lazy_zone)
from .mineral import MineralState, init_mineral, mean_mineral_content, tissue_density
from .parameters import CellParameters, MINERAL_MARTINEZ_REINA_2019, MineralParameters
from .settings import RemodelSettings

__all__ = ["RemodelModel", "Physics", "BoneState", "StepInfo", "CellIntegration",
           "build_model", "physics", "daily_table", "initial_state", "step", "apparent_density",
           "moduli", "regional_vbmd", "markers", "strength_response", "baseline_density",
           "OUTCOME_SOLVER", "COMPARTMENTS"]

#: Solver of the outcome (strength-case) solves of both drivers: tight, so that the stiffness
#: a study differentiates and the one ``febone run`` reports agree to 1e-8.
OUTCOME_SOLVER = PCG(rtol=1e-10)


@dataclass(frozen=True)
class CellIntegration:
    """How the cell model is integrated within a step (static).

    Attributes:
        rtol: adaptive tolerance, or None for fixed steps of ``dt`` days.
        dt: (largest) step, days (a divisor of one day).
        method: Rosenbrock method (``rodas3``, ``ros2``, ``euler``).
        checkpoint: reverse mode recomputes each Rosenbrock step's stages (memory O(n)).
    """

    rtol: float | None = 1e-4
    dt: float = 1.0
    method: str = "rodas3"
    checkpoint: bool = True


@dataclass(frozen=True)
class RemodelModel:
    """One bone ready for the step (built once on the host by :func:`build_model`; a pytree).

    Attributes:
        stim: :class:`~.mechanics.MechanicalStimulus` of the habitual loading.
        rho0: (n_elements,) baseline apparent density of the mesh, g/cm³.
        region_masks: (n_regions, n_elements) 0/1 masks of the reported regions.
        regions: region names (static; ``("all",)`` for a bone without ``region_*`` masks),
            then each region's compartments ``<region>/cortical`` and ``<region>/trabecular``
            (:data:`COMPARTMENTS`).
        integration: :class:`CellIntegration` (static).
    """

    stim: MechanicalStimulus
    rho0: jax.Array
    region_masks: jax.Array
    regions: tuple = field(metadata=dict(static=True))
    integration: CellIntegration = field(metadata=dict(static=True))

    @property
    def volumes(self) -> jax.Array:
        """(n_elements,) element volumes, mm³."""
        return self.stim.volumes


@dataclass(frozen=True)
class Physics:
    """The continuous constants of a step (a pytree: every leaf may be traced).

    Attributes:
        cell: :class:`CellParameters`.
        mineral: :class:`MineralParameters` (rate already scaled by calcium/vitamin D), or None.
        law: density → modulus :class:`~febone.material.laws.PowerLaw`.
        nu: Poisson's ratio.
        lazy_zone: half-width of the stimulus dead band (fraction).
    """

    cell: CellParameters
    mineral: MineralParameters | None
    law: PowerLaw
    nu: jax.Array
    lazy_zone: jax.Array


@dataclass(frozen=True)
class BoneState:
    """The state of a bone between mechanical steps (a pytree).

    Attributes:
        cells: :class:`CellState`, fields (n_elements,).
        mineral: :class:`MineralState` (the age queue of every element) or None.
        v_m: (n_elements,) mean mineral volume fraction of the bone matrix, or None.
        u: tuple of (n_nodes, 3) unit-displacement solutions of the habitual cases at the
            state's moduli, mm.
        u_prev: ``u`` of the step before (at the start: ``u``); the next solves start from the
            linear extrapolation 2·u − u_prev (the moduli drift smoothly from month to month:
            about half the CG iterations of a start from ``u``).
        psi: (n_elements,) habitual stimulus Ψ at the state's moduli (MPa for ``"sed"``,
            dimensionless for ``"strain"``).
        stiffness: (n_cases,) habitual cases' force per mm of displacement, N/mm.
        psi_ref: (n_elements,) homeostatic stimulus Ψ̆ (of the start).
        mineral_ref: (n_elements,) mineral volume per element volume at the start (BMD baseline).
        rho0: (n_elements,) apparent density at the start, g/cm³.
    """

    cells: CellState
    mineral: MineralState | None
    v_m: jax.Array | None
    u: tuple
    u_prev: tuple
    psi: jax.Array
    stiffness: jax.Array
    psi_ref: jax.Array
    mineral_ref: jax.Array
    rho0: jax.Array


@dataclass(frozen=True)
class StepInfo:
    """Diagnostics of one step (scalars): ``ok`` every habitual solve converged and resisted its
    load; ``n_rejected`` rejected adaptive cell-model steps."""

    ok: jax.Array
    n_rejected: jax.Array


for _cls in (RemodelModel, Physics, BoneState, StepInfo):
    _static = [f.name for f in fields(_cls) if f.metadata.get("static")]
    jax.tree_util.register_dataclass(
        _cls, data_fields=[f.name for f in fields(_cls) if f.name not in _static],
        meta_fields=_static)


# --------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------
def baseline_density(mesh: Mesh, settings: RemodelSettings) -> np.ndarray:
    """(n_elements,) baseline apparent density of ``mesh``, g/cm³, checked for remodelling:
    bone (ρ > 0) in every element and below the tissue density (BV/TV < 1)."""
    from ..bones.densitometry import element_density

    rho0 = element_density(mesh, settings.density_field)
    if np.any(rho0 <= 0):
        raise ValueError(f"density field {settings.density_field!r} has non-positive values "
                         f"(elements {np.flatnonzero(rho0 <= 0)[:10].tolist()}); remodelling "
                         f"needs bone (ρ > 0) in every element")
    rho_t = float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max))
    if np.any(rho0 >= rho_t):
        raise ValueError(f"densities up to {rho0.max():.3g} g/cm³ reach the tissue density "
                         f"({rho_t:.3g}: BV/TV ≥ 1); check the density field's units (g/cm³)")
    return rho0


def build_model(mesh: Mesh, settings: RemodelSettings, *, regions=None,
                integration: CellIntegration | None = None) -> RemodelModel:
    """Pose the bone for its habitual loading and collect what the step needs (host, once).

    Args:
        mesh: the bone (mm) with an apparent-density cell field (``settings.density_field``,
            g/cm³); node sets of the habitual cases as point-data masks or findable from its
            geometry (:func:`febone.strength.geometry.resolve_node_sets`); optional ``region_*``
            cell masks.
        settings: :class:`RemodelSettings`.
        regions: names of the ``region_*`` masks to report (default all; a bone without masks
            reports ``"all"``).
        integration: :class:`CellIntegration` (default: adaptive at ``settings.cell_rtol``).

    Raises:
        TypeError / ValueError: bad inputs (the messages name the problem and the fix).
    """
    from ..strength import CASES
    from ..strength.geometry import resolve_node_sets

    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a febone Mesh (febone.read_mesh); got {type(mesh).__name__}")
    if not isinstance(settings, RemodelSettings):
        raise TypeError(f"settings must be RemodelSettings; got {type(settings).__name__}")
    for name in {h.case for h in settings.habitual}:
        mesh, _ = resolve_node_sets(mesh, CASES[name]())
    rho0 = baseline_density(mesh, settings)
    law = density_law(settings.law)
    stim = build_stimulus(mesh, np.asarray(law.modulus(rho0)), nu=settings.nu,
                          habitual=settings.habitual, body_mass_kg=settings.body_mass_kg,
                          smoothing=settings.smoothing, preconditioner=settings.preconditioner,
                          quantity=settings.stimulus, engine=settings.solver)
    available = sorted(k[len("region_"):] for k in mesh.cell_data if k.startswith("region_"))
    names = tuple(available) if regions is None else tuple(regions)
    missing = [r for r in names if r not in available]
    if missing:
        raise ValueError(f"regions {missing} are not region_* cell masks of the mesh; "
                         f"available: {available}")
    if names:
        masks = np.stack([np.asarray(mesh.cell_data[f"region_{r}"], float).reshape(-1) > 0
                          for r in names]).astype(float)
    else:                                  # a specimen without regions: the whole bone
        names, masks = ("all",), np.ones((1, mesh.n_elements))
    if np.any(masks.sum(axis=1) == 0):
        raise ValueError(f"a region selects no element: {dict(zip(names, masks.sum(1)))}")
    names, masks = _with_compartments(names, masks, rho0)
    integration = integration or CellIntegration(rtol=settings.cell_rtol)
    return RemodelModel(stim, jnp.asarray(rho0), jnp.asarray(masks), names, integration)


#: Apparent-density bounds of the compartments, g/cm³, from the mesh's baseline density (as the
#: FE-free calibration's cortical and trabecular sites, :mod:`febone.calibration.site`): cortical
#: ρ ≥ 1.2 (cortical bone 1.5–1.9 g/cm³ apparent; shells thinner than an element mix in
#: marrow), trabecular ρ ≤ 0.8; elements in between (transitional) belong to neither.
COMPARTMENTS = {"cortical": (1.2, np.inf), "trabecular": (0.0, 0.8)}


def _with_compartments(names, masks, rho0):
    """Every region's cortical and trabecular compartment (``<region>/cortical``,
    ``<region>/trabecular``: QCT/HR-pQCT-like vBMD) appended to the region masks, where it
    holds at least one element."""
    names, rows = list(names), list(masks)
    for name, mask in zip(tuple(names), masks):
        for comp, (lo, hi) in COMPARTMENTS.items():
            sub = mask * ((rho0 >= lo) & (rho0 <= hi))
            if sub.sum() > 0:
                names.append(f"{name}/{comp}")
                rows.append(sub)
    return tuple(names), np.stack(rows)


def physics(settings: RemodelSettings, mineralisation_factor=1.0, *, law: PowerLaw | None = None,
            cell: CellParameters | None = None, mineral: MineralParameters | None = None
            ) -> Physics:
    """The step's constants from ``settings`` (or the given replacements).

    Args:
        settings: :class:`RemodelSettings`.
        mineralisation_factor: run-mean mineralisation relative to normal (calcium and vitamin
            D, :attr:`~.coupling.DailyInputs.mineralisation_factor`); scales the secondary
            mineralisation rate, as the FE-free calibration does (:mod:`.site`). May be traced.
        law, cell, mineral: replacements of the settings' law and parameter sets (traced values
            of a study).
    """
    law = density_law(settings.law) if law is None else law
    cell = settings.cell_params if cell is None else cell
    mineral = settings.mineral_params if mineral is None else mineral
    if mineral is not None:
        mineral = replace(mineral, rate=mineral.rate * mineralisation_factor)
    return Physics(cell, mineral, law, jnp.asarray(settings.nu), jnp.asarray(settings.lazy_zone))


def daily_table(patient, treatments, coupling: CouplingParameters, n_days: int,
                dtype=None) -> DailyInputs:
    """Daily cell-model inputs of ``patient`` under ``treatments`` for days 0 .. n_days − 1
    (hormone levels, :func:`~.hormones.hormone_series`, mapped by
    :func:`~.coupling.daily_inputs`); every field (n_days,). Traceable in doses and constants."""
    series = hormone_series(patient, tuple(treatments), days=int(n_days), dtype=dtype)
    inputs = daily_inputs(series, coupling)
    full = lambda a: jnp.broadcast_to(a, (int(n_days),))
    return DailyInputs(jax.tree_util.tree_map(full, inputs.drives), full(inputs.load_factor),
                       full(inputs.mineralisation_factor))


# --------------------------------------------------------------------------------------------
# the traced model
# --------------------------------------------------------------------------------------------
def apparent_density(cells: CellState, v_m, mp: MineralParameters | None):
    """(ρ_app g/cm³, mineral volume per element volume v_m·f_bm) of every element, from BV/TV
    and the mean mineral content ``v_m`` (None without mineralisation: fully mineralised)."""
    f = cells.f_bm
    if mp is None:
        return tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max) * f, f
    return tissue_density(v_m, mp) * f, v_m * f


def moduli(state: BoneState, phys: Physics):
    """(n_elements,) Young's moduli of ``state``, MPa (E = law(ρ_app))."""
    return phys.law.modulus(apparent_density(state.cells, state.v_m, phys.mineral)[0])


def _stimulus(model: RemodelModel, E, nu, u, relay=None):
    if relay is None:
        psi, u, k, ok = habitual_sed(model.stim, E, nu, u)
        return psi, u, k, ok, None
    return habitual_sed_relayed(model.stim, E, nu, u, relay)


def initial_state(model: RemodelModel, phys: Physics, rho0=None):
    """Every element at its own steady state under neutral drives, with BV/TV such that its
    apparent density is ``rho0`` (a fixed point: the mineral content depends weakly on BV/TV
    through turnover), and the habitual solves of those moduli (Ψ̆ = Ψ). Traceable.

    Args:
        model: :class:`RemodelModel`.
        phys: :class:`Physics`.
        rho0: (n_elements,) apparent densities, g/cm³ (default the mesh's).

    Returns:
        ``(state, ok)``: :class:`BoneState` and whether the habitual solves converged.
    """
    rho0 = model.rho0 if rho0 is None else rho0
    cp, mp = phys.cell, phys.mineral
    neutral = Drives()
    f = jnp.minimum(rho0 / tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max), 1.0)
    cells = steady_state(cp, neutral, f_bm=f)
    mineral = v_m = None
    if mp is not None:
        for _ in range(4):
            mineral = init_mineral(cells, cp, mp)
            v_m = mean_mineral_content(mineral, cells.f_bm, mp)
            f = jnp.minimum(rho0 / tissue_density(v_m, mp), 1.0)
            cells = steady_state(cp, neutral, f_bm=f)
        mineral = init_mineral(cells, cp, mp)
        v_m = mean_mineral_content(mineral, cells.f_bm, mp)
    rho, mineral_vol = apparent_density(cells, v_m, mp)
    u_zero = tuple(jnp.zeros((c.model.n_nodes, 3), rho0.dtype) for c in model.stim.cases)
    psi, u, k, ok, _ = _stimulus(model, phys.law.modulus(rho), phys.nu, u_zero)
    psi_ref = jnp.maximum(psi, 1e-12 * jnp.mean(psi))
    return BoneState(cells, mineral, v_m, u, u, psi, k, psi_ref, mineral_vol, rho0), ok


def step(model: RemodelModel, phys: Physics, state: BoneState, drives: Drives, load_factor,
         t0, *, n_days: int, relay=None):
    """One mechanical step of ``n_days`` whole days (pure; jit it with ``n_days`` static).

    Args:
        model: :class:`RemodelModel`.
        phys: :class:`Physics`.
        state: :class:`BoneState` at day ``t0``.
        drives: :class:`Drives` whose fields are the step's daily values, (n_days,) or longer
            (only the first ``n_days`` are read); ``psi_ratio`` is ignored.
        load_factor: (n_days,) habitual-force multiplier of each day.
        t0: first day of the step (scalar).
        n_days: length of the step, days (static).
        relay: reverse-mode adjoint relay of the habitual solves (:mod:`febone.solve.relay`):
            a tuple of (n_nodes, 3) arrays carried from step to step, or None.

    Returns:
        ``(state, info, relay)``: the :class:`BoneState` at day t0 + n_days, :class:`StepInfo`,
        and the relay (None when none was given).
    """
    ig = model.integration
    ratio = state.psi / state.psi_ref
    dtype = state.psi.dtype
    t0 = jnp.asarray(t0, dtype)

    def drives_fn(t, s, v):
        i = jnp.clip(jnp.floor(t - t0).astype(jnp.int32), 0, n_days - 1)
        d = jax.tree_util.tree_map(lambda a: a[i], drives)
        return replace(d, psi_ratio=lazy_zone(ratio * load_factor[i] ** 2, phys.lazy_zone))

    kw = {} if phys.mineral is None else {"mineral": state.mineral,
                                          "mineral_params": phys.mineral}
    traj = simulate(phys.cell, state.cells, drives_fn, days=n_days, t0=t0, save_every=n_days,
                    dt=ig.dt, rtol=ig.rtol, method=ig.method, checkpoint_steps=ig.checkpoint,
                    **kw)
    cells = traj.final
    v_m = None if phys.mineral is None else traj.v_m[-1]
    rho, _ = apparent_density(cells, v_m, phys.mineral)
    u_start = tuple(2.0 * a - b for a, b in zip(state.u, state.u_prev))
    psi, u, k, ok, relay = _stimulus(model, phys.law.modulus(rho), phys.nu, u_start, relay)
    new = replace(state, cells=cells, mineral=traj.mineral, v_m=v_m, u=u, u_prev=state.u,
                  psi=psi, stiffness=k)
    return new, StepInfo(ok, traj.n_rejected), relay


def regional_vbmd(model: RemodelModel, state: BoneState, mp: MineralParameters | None):
    """(n_regions,) volumetric BMD of the model's regions, mg/cm³: mineral mass over region
    volume, the baseline apparent density scaled by each element's mineral volume relative to
    the start (ash fraction 0.6, as :func:`febone.bones.densitometry.volumetric_bmd`)."""
    _, mineral_vol = apparent_density(state.cells, state.v_m, mp)
    w = model.region_masks * model.volumes[None, :]
    density = state.rho0 * mineral_vol / state.mineral_ref
    return 1000.0 * ASH_FRACTION * (w @ density) / jnp.sum(w, axis=1)


def markers(model: RemodelModel, state: BoneState, cp: CellParameters):
    """(CTX-like, P1NP-like): bone resorbed and formed per day over the bone, k_res·OCa and
    k_form·OBa weighted by element volume and relative specific surface (un-normalised)."""
    c = state.cells
    s = (specific_surface(c.f_bm) / specific_surface(cp.sv_reference_bvtv)
         if cp.specific_surface else jnp.ones_like(c.f_bm))
    w = model.volumes * s
    return jnp.sum(w * cp.k_res * c.OCa), jnp.sum(w * cp.k_form * c.OBa)


def strength_response(case, E, nu, u0=None, solver=OUTCOME_SOLVER):
    """Solve the strength case (a :class:`~.mechanics.PosedCase`, or a
    :class:`~.voxel_case.VoxelCase` on the voxel engine) at its unit displacement
    (:data:`OUTCOME_SOLVER`, or ``solver``).

    Returns:
        ``(stiffness N/mm, effective strain (n_elements,) per mm of displacement, u, ok)``.
    """
    from ..material.elastic import LinearElastic
    from ..strength.criteria import effective_strain
    from .mechanics import case_sed, case_solve

    mat = LinearElastic(E, jnp.asarray(nu, E.dtype))
    if u0 is None:
        u0 = jnp.zeros((case.bcs.n_nodes, 3), E.dtype)
    u, converged = case_solve(case, mat, u0, solver)
    k = case_stiffness(case, mat, u)
    eff = effective_strain(case_sed(case, mat, u), E)
    return k, eff, u, converged & (k > 0)


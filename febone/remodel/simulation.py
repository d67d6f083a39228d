"""The FE-coupled remodelling loop: cell model per element ⇄ habitual strain energy density.

Per mechanical step (default 12 per year, 30 or 31 days each so that output times fall on
whole years):

1. moduli from the current state: ρ_app = ρ_t(v_m)·f_bm (Martínez-Reina 2019 tissue density,
   v_m the element's mean mineral content) and E = law(ρ_app) (the bone's density law);
2. habitual SED Ψ_e from warm-started FE solves of the habitual load cases at their target
   forces (:mod:`.mechanics`), Ψ/Ψ̆ relative to the element's own homeostatic start;
3. the cell model (:func:`febone.remodel.cells.simulate`, adaptive Rosenbrock, daily mineral
   queue) over the step's days with the day's hormone/drug drives from a table and the
   mechanical ratio ``psi_ratio = Ψ/Ψ̆ · load_factor(day)²`` (exercise scales the habitual force).

Each element starts at its own steady state under neutral drives (eugonadal, premenopausal
homeostasis, as in the calibration of :mod:`.coupling` with :func:`.site.simulate_site`), its
BV/TV from the mesh density, f_bm = ρ_app/ρ_t(v_m), so an untreated homeostatic run stays where
it started; hormone levels that differ from neutral at day 0 act from day 0. One compilation serves every step (moduli are arguments of the compiled solve).

Outputs (every ``output_every`` steps) are measured the way a clinic would: regional vBMD and a
DXA-like aBMD with T-score (:mod:`febone.bones.densitometry`, mineral mass scaled from the mesh
baseline by the element's mineral content v_m·f_bm), CTX- and P1NP-like markers (bone resorbed
and formed per day over the bone, relative to baseline), and stiffness and fracture load of the
strength load cases (:func:`febone.strength.strength`). Results and a checkpoint of the full
state are written after every output, so an interrupted run resumes (``resume=True``) to the
same numbers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..device import device_description
from ..mesh.mesh import Mesh
from .hormones import YEAR_DAYS
from .cells import CellModelError, CellState, Drives, simulate, specific_surface, steady_state
from .mechanics import DEFAULT_HABITUAL, build_stimulus, habitual_sed, lazy_zone
from .mineral import MineralState, init_mineral, mean_mineral_content, tissue_density
from .parameters import (CellParameters, MARTINEZ_REINA_2019, MINERAL_MARTINEZ_REINA_2019,
                         MineralParameters)

__all__ = ["RemodelSettings", "BoneState", "RemodelResult", "remodel", "step_schedule",
           "DAYS_PER_YEAR"]

log = logging.getLogger(__name__)

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
        steps_per_year: mechanical (FE) updates per year (12: monthly).
        output_interval_years: time between outputs, years (a multiple of the mechanical step);
            the end of the run is always an output.
        strength_cases: load cases whose stiffness and fracture load are reported.
        strength_methods: fracture-load methods (``pistoia``, ``strain-limit``, ...).
        cell_params: :class:`CellParameters` (Martínez-Reina 2019 by default).
        mineral_params: :class:`MineralParameters`, or ``None`` to skip mineralisation
            (then ρ_t is that of fully mineralised bone and BMD follows BV/TV alone).
        cell_rtol: adaptive step tolerance of the cell model.
        smoothing: element → node → element average of the stimulus (anti-checkerboard).
        lazy_zone: half-width of the dead band of the mechanical stimulus ratio Ψ/Ψ̆
            (:func:`~.mechanics.lazy_zone`; fraction, 0 = none). The default ±2 % keeps the
            cell model's disuse term, κ·(1 − Ψ/Ψ̆) with κ = 1e4 pM/day below homeostasis, from
            making the monthly steps overshoot around Ψ/Ψ̆ = 1 (a dose–response of the small
            specimen turned non-monotonic without it).
        stimulus: what the cells sense (:class:`~.mechanics.MechanicalStimulus`): ``"strain"``
            (default; SED/E, the squared effective strain) or ``"sed"`` (strain energy density,
            which falls when an element softens beside stiffer ones at unchanged strain, so it
            needs ``lazy_zone`` ≈ 0.1 to keep a heterogeneous bone at homeostasis).
        preconditioner: CG preconditioner of the FE solves (``auto`` = AMG with pyamg).
    """

    habitual: tuple = DEFAULT_HABITUAL
    body_mass_kg: float = 70.0
    law: str = "morgan-femoral-neck"
    nu: float = 0.3
    density_field: str = "density_g_cm3"
    steps_per_year: int = 12
    output_interval_years: float = 1.0
    strength_cases: tuple = ("stance", "sideways-fall")
    strength_methods: tuple = ("pistoia",)
    cell_params: CellParameters = MARTINEZ_REINA_2019
    mineral_params: MineralParameters | None = MINERAL_MARTINEZ_REINA_2019
    cell_rtol: float = 1e-4
    smoothing: bool = True
    lazy_zone: float = 0.02
    stimulus: str = "strain"
    preconditioner: str = "auto"

    def __post_init__(self):
        if not (np.isfinite(self.lazy_zone) and 0 <= self.lazy_zone < 1):
            raise ValueError(f"lazy_zone must be a fraction in [0, 1); got {self.lazy_zone}")
        if not (isinstance(self.steps_per_year, int) and 1 <= self.steps_per_year <= 365):
            raise ValueError(f"steps_per_year must be an integer in 1..365 (12 = monthly FE "
                             f"updates); got {self.steps_per_year!r}")
        k = self.output_interval_years * self.steps_per_year
        if not (np.isfinite(k) and k >= 1 - 1e-9 and abs(k - round(k)) < 1e-6):
            raise ValueError(f"output_interval_years ({self.output_interval_years}) must be a "
                             f"positive multiple of the mechanical step (1/{self.steps_per_year} "
                             f"year)")
        if not 0.0 < self.nu < 0.5:
            raise ValueError(f"Poisson's ratio must lie in (0, 0.5); got {self.nu}")

    def describe(self) -> dict:
        """JSON-ready description (what was run)."""
        return {"habitual": [vars(h) for h in self.habitual], "body_mass_kg": self.body_mass_kg,
                "law": self.law, "nu": self.nu, "density_field": self.density_field,
                "steps_per_year": self.steps_per_year,
                "output_interval_years": self.output_interval_years,
                "strength_cases": list(self.strength_cases),
                "strength_methods": list(self.strength_methods),
                "cell_params": self.cell_params.name,
                "mineralisation": self.mineral_params is not None,
                "cell_rtol": self.cell_rtol, "smoothing": self.smoothing,
                "lazy_zone": self.lazy_zone, "stimulus": self.stimulus,
                "preconditioner": self.preconditioner}


@dataclass(frozen=True)
class BoneState:
    """Full state of a remodelling run between mechanical steps (a pytree).

    Attributes:
        cells: :class:`CellState`, fields (n_elements,).
        mineral: :class:`MineralState` ((queue_days, n_elements) bins) or ``None``.
        u: tuple of (n_nodes, 3) unit-load displacements of the habitual cases (warm starts), mm.
    """

    cells: CellState
    mineral: MineralState | None
    u: tuple


jax.tree_util.register_dataclass(BoneState, data_fields=["cells", "mineral", "u"],
                                 meta_fields=[])


@dataclass(frozen=True)
class RemodelResult:
    """A remodelling run, one entry per output time.

    Attributes:
        label: protocol or scenario name.
        records: list of per-output dicts (``time_years``: nominal time k/steps_per_year,
            ``day``: simulated days, ``regions``, ``stiffness_N_per_mm``, ``fracture_load_N``,
            ``markers``, ``mean_bvtv``).
        density: (n_outputs, n_elements) apparent density, g/cm³.
        bvtv: (n_outputs, n_elements) BV/TV.
        displacement: (n_outputs, n_nodes, 3) displacement under the first habitual load case
            at its target force, mm (mesh frame).
        von_mises: (n_outputs, n_elements) von Mises stress under that load, MPa.
        wall_seconds: time of this call, s.
        device: where it ran.
        description: what was run (settings, inputs summary).
    """

    label: str
    records: list
    density: np.ndarray
    bvtv: np.ndarray
    displacement: np.ndarray
    von_mises: np.ndarray
    wall_seconds: float
    device: str
    description: dict = field(default_factory=dict)

    @property
    def time_years(self) -> np.ndarray:
        return np.array([r["time_years"] for r in self.records])

    def summary(self) -> dict:
        """JSON-ready: every output quantity as a list over the output times."""
        recs = self.records
        regions = {name: {k: [r["regions"][name].get(k) for r in recs]
                          for k in recs[0]["regions"][name]} for name in recs[0]["regions"]}
        stiff = {c: [r["stiffness_N_per_mm"][c] for r in recs] for c in recs[0]["stiffness_N_per_mm"]}
        loads = {c: {m: [r["fracture_load_N"][c][m] for r in recs]
                     for m in recs[0]["fracture_load_N"][c]} for c in recs[0]["fracture_load_N"]}
        markers = {k: [r["markers"][k] for r in recs] for k in ("ctx_rel", "p1np_rel")}
        return {"time_years": [r["time_years"] for r in recs], "regions": regions,
                "stiffness_N_per_mm": stiff, "fracture_load_N": loads, "markers": markers,
                "mean_bvtv": [r["mean_bvtv"] for r in recs], "wall_seconds": self.wall_seconds,
                "device": self.device, "scenario": self.description}


def step_schedule(years: float, steps_per_year: int) -> np.ndarray:
    """Day boundaries of the mechanical steps: round(k · 365.25 / steps_per_year), k = 0..n.

    Steps are whole days (the mineral queue advances daily) of two lengths at most, and every
    year ends within half a day of k · 365.25.
    """
    n = years * steps_per_year
    if not (np.isfinite(n) and n >= 1 and abs(n - round(n)) < 1e-6):
        raise ValueError(f"years ({years}) must be a positive multiple of the mechanical step "
                         f"1/{steps_per_year} year")
    k = np.arange(int(round(n)) + 1)
    return np.round(k * DAYS_PER_YEAR / steps_per_year).astype(np.int64)


# --------------------------------------------------------------------------------------------
# compiled pieces
# --------------------------------------------------------------------------------------------
def _apparent_density(state: BoneState, mp):
    """(ρ_app g/cm³, mineral volume per element volume v_m·f_bm) of every element; without
    mineralisation the tissue is fully mineralised bone."""
    f = state.cells.f_bm
    if mp is None:
        return float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max)) * f, f
    v_m = mean_mineral_content(state.mineral, f, mp)
    return tissue_density(v_m, mp) * f, v_m * f


@partial(jax.jit, static_argnames=("law",))
def _stimulus_step(stim, state: BoneState, nu, mp, *, law):
    rho, _ = _apparent_density(state, mp)
    E = law.modulus(rho)
    psi, u, forces, ok = habitual_sed(stim, E, nu, state.u)
    return psi, u, forces, ok


@partial(jax.jit, static_argnames=("n_days", "rtol"))
def _cell_step(params, mp, cells, mineral, drives_table, load_factor, ratio, t0, lazy, *, n_days,
               rtol):
    """Integrate the cells over ``n_days`` from day t0 with daily drives (tables (n_days,))."""

    def drives_fn(t, s, v_m):
        k = jnp.clip(jnp.floor(t - t0).astype(jnp.int32), 0, n_days - 1)
        d = jax.tree_util.tree_map(lambda a: a[k], drives_table)
        return replace(d, psi_ratio=lazy_zone(ratio * load_factor[k] ** 2, lazy))

    kw = {} if mp is None else {"mineral": mineral, "mineral_params": mp}
    traj = simulate(params, cells, drives_fn, days=n_days, t0=t0, save_every=n_days,
                    rtol=rtol, **kw)
    return traj.final, traj.mineral, traj.n_rejected


# --------------------------------------------------------------------------------------------
# host side: set-up, outputs, checkpoints
# --------------------------------------------------------------------------------------------
def _check_inputs(inputs, n_days: int):
    drives = getattr(inputs, "drives", None)
    load_factor = getattr(inputs, "load_factor", None)
    if not isinstance(drives, Drives) or load_factor is None:
        raise TypeError("inputs must carry .drives (a Drives with (n_days,) fields) and "
                        ".load_factor ((n_days,)); build them with "
                        "febone.remodel.coupling.daily_inputs(hormone_series(...))")
    table = {}
    for f in fields(Drives):
        a = np.asarray(getattr(drives, f.name), dtype=np.float64)
        if a.ndim == 0:
            a = np.full(n_days, float(a))
        if a.shape[0] < n_days:
            raise ValueError(f"daily input {f.name!r} covers {a.shape[0]} days; the run needs "
                             f"{n_days}: build the hormone series for the whole duration")
        if not np.all(np.isfinite(a[:n_days])):
            raise ValueError(f"daily input {f.name!r} has NaN/inf values")
        table[f.name] = a[:n_days]
    lf = np.asarray(load_factor, dtype=np.float64)
    lf = np.full(n_days, float(lf)) if lf.ndim == 0 else lf
    if lf.shape[0] < n_days or not np.all(np.isfinite(lf[:n_days])) or np.any(lf[:n_days] <= 0):
        raise ValueError(f"load_factor must be positive and finite for all {n_days} days")
    return table, lf[:n_days]


class _Run:
    """Host-side set-up of one bone: baseline state, stimulus, outputs."""

    def __init__(self, mesh: Mesh, settings: RemodelSettings, baseline_drives: Drives,
                 cache: dict | None = None):
        from ..material.laws import density_law
        from ..bones.densitometry import _density

        self.mesh, self.settings = mesh, settings
        s = settings
        self.law = density_law(s.law)
        self.mp = s.mineral_params
        self.rho0 = _density(mesh, s.density_field)
        if np.any(self.rho0 <= 0):
            raise ValueError(f"density field {s.density_field!r} has non-positive values "
                             f"(elements {np.flatnonzero(self.rho0 <= 0)[:10].tolist()}); "
                             f"remodelling needs bone (ρ > 0) in every element")
        params = s.cell_params
        # BV/TV such that ρ_t(v_m(f)) f = ρ0: fixed point (v_m depends weakly on f via turnover)
        rho_t = float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max))
        f = np.minimum(self.rho0 / rho_t, 1.0)
        cells = mineral = None
        for _ in range(4):
            cells = steady_state(params, baseline_drives, f_bm=jnp.asarray(f))
            if self.mp is None:
                break
            mineral = init_mineral(cells, params, self.mp)
            v_m = np.asarray(mean_mineral_content(mineral, cells.f_bm, self.mp))
            f_new = np.minimum(self.rho0 / np.asarray(tissue_density(v_m, self.mp)), 1.0)
            if np.max(np.abs(f_new - f)) < 1e-12:
                break
            f = f_new
        if np.any(f >= 1.0):
            raise ValueError(f"densities up to {self.rho0.max():.3g} g/cm³ exceed the tissue "
                             f"density (BV/TV ≥ 1); check the density field's units")
        cells = steady_state(params, baseline_drives, f_bm=jnp.asarray(f))
        mineral = None if self.mp is None else init_mineral(cells, params, self.mp)
        self.E0 = np.asarray(self.law.modulus(self.rho0))
        # solver set-up (posed models, AMG hierarchies) depends only on the bone and settings:
        # runs sharing ``cache`` (the arms of a study) build it once
        cache = {} if cache is None else cache
        key = (id(mesh), json.dumps(s.describe(), sort_keys=True, default=str))
        if key not in cache:
            cache[key] = (build_stimulus(mesh, self.E0, nu=s.nu, habitual=s.habitual,
                                         body_mass_kg=s.body_mass_kg, smoothing=s.smoothing,
                                         quantity=s.stimulus,
                                         preconditioner=s.preconditioner), {}, {})
        self.stim, self._strength, self._dxa = cache[key]
        self.strength_warm = {}       # {strength case: last solution}: next output's warm start
        from ..strength.loadcases import CASES

        h0 = s.habitual[0]
        self.pose0 = np.asarray(CASES[h0.case](**dict(h0.options)).pose)   # posed = R·x
        u0 = tuple(jnp.zeros((mesh.n_nodes, 3)) for _ in self.stim.cases)
        self.state0 = BoneState(cells, mineral, u0)
        psi, u, _, ok = _stimulus_step(self.stim, self.state0, s.nu, self.mp, law=self.law)
        if not bool(ok):
            raise ValueError("the baseline habitual-load solves did not converge or the bone "
                             "does not resist the load; check the node sets of the load cases")
        self.psi0 = np.maximum(np.asarray(psi), 1e-12 * float(np.mean(psi)))
        self.state0 = replace(self.state0, u=u)
        _, self.mineral_vol0 = (np.asarray(a) for a in _apparent_density(self.state0, self.mp))
        self.regions = sorted(k[len("region_"):] for k in mesh.cell_data if k.startswith("region_"))
        self.baseline = None
        self.baseline = self.measure(self.state0, 0.0)

    # ---------------------------------------------------------------- outputs
    def series(self, state: BoneState):
        """Fields of one output time: density and BV/TV (n_elements,), and displacement
        (n_nodes, 3) mm and von Mises stress (n_elements,) MPa of the first habitual case at
        its target force (mesh frame), from the habitual solves at the current moduli. Returns
        ``(fields, stimulus)``; ``stimulus`` is that solve's ``_stimulus_step`` output, which the
        next mechanical step reuses."""
        from ..fe.post import element_fields
        from ..material.elastic import LinearElastic

        rho, _ = _apparent_density(state, self.mp)
        E = self.law.modulus(rho)
        stimulus = _stimulus_step(self.stim, state, self.settings.nu, self.mp, law=self.law)
        _, u, forces, _ = stimulus
        c = self.stim.cases[0]
        u_case = u[0] * (c.force_N / forces[0])
        vm = element_fields(c.model, LinearElastic(E, jnp.asarray(self.settings.nu)), u_case)
        return {"density": np.asarray(rho), "bvtv": np.asarray(state.cells.f_bm),
                "displacement": np.asarray(u_case) @ self.pose0,
                "von_mises": np.asarray(vm.von_mises)}, stimulus

    def _markers(self, state: BoneState):
        p = self.settings.cell_params
        c = state.cells
        vol = np.asarray(self.stim.volumes)
        s = np.asarray(specific_surface(c.f_bm) / specific_surface(p.sv_reference_bvtv)
                       if p.specific_surface else jnp.ones_like(c.f_bm))
        ctx = float(np.sum(vol * s * np.asarray(p.k_res * c.OCa)))
        p1np = float(np.sum(vol * s * np.asarray(p.k_form * c.OBa)))
        return ctx, p1np

    def _dxa_scan(self, region: str):
        """The DXA geometry of ``region``, projected once per run (hip scans rotated)."""
        if region not in self._dxa:
            from ..bones import dxa_rotation_deg
            from ..bones.densitometry import dxa_scan

            rot = dxa_rotation_deg() if "femoral_neck" in self.regions else 0.0
            self._dxa[region] = dxa_scan(self.mesh, region, rotation_deg=rot)
        return self._dxa[region]

    def _strength_case(self, name):
        if name not in self._strength:
            from ..fe.model import FEModel
            from ..material.elastic import LinearElastic
            from ..solve.amg import make_preconditioner
            from ..strength import CASES

            case = CASES[name]()
            posed = case.posed(self.mesh)
            pre = make_preconditioner(self.settings.preconditioner, FEModel.from_mesh(posed),
                                      LinearElastic.create(self.E0, self.settings.nu,
                                                           self.mesh.n_elements),
                                      case.boundary_conditions(posed))
            self._strength[name] = (case, pre)
        return self._strength[name]

    def refresh_preconditioners(self, state: BoneState) -> None:
        """Rebuild the habitual cases' AMG hierarchies for the current moduli (host, ~0.35 s
        each on the coarse femur). As low-density elements resorb, a hierarchy built for the
        baseline moduli degrades (after 10 years of menopause: 38 CG iterations instead of 12);
        refreshing at every output cut the FE time of the default study from 29 to 18 s per
        arm. A new hierarchy is used only when its arrays have the old shapes, so nothing
        recompiles; the refreshed ones are this run's own (arms sharing a cache start from the
        baseline ones). The strength solves of the outputs keep the baseline hierarchy
        (refreshing them cost more than it saved: 20 instead of 13 s of outputs per arm)."""
        if self.settings.preconditioner == "jacobi":
            return
        from ..material.elastic import LinearElastic

        rho, _ = _apparent_density(state, self.mp)
        mat = LinearElastic.create(np.asarray(self.law.modulus(rho)), self.settings.nu,
                                   self.mesh.n_elements)
        cases = tuple(replace(c, preconditioner=_rebuilt(c.preconditioner, c.model, mat, c.bcs))
                      for c in self.stim.cases)
        self.stim = replace(self.stim, cases=cases)

    def measure(self, state: BoneState, t_years: float, day: int = 0) -> dict:
        """The output record of ``state`` at nominal time ``t_years`` (simulated ``day``)."""
        from ..bones.densitometry import REFERENCE_POPULATIONS, volumetric_bmd
        from ..strength import strength

        s = self.settings
        rho, mineral_vol = (np.asarray(a) for a in _apparent_density(state, self.mp))
        dxa_density = self.rho0 * mineral_vol / self.mineral_vol0
        regions = {}
        volumes = np.asarray(self.stim.volumes)
        for name in self.regions:
            entry = {"vbmd_mg_cm3": volumetric_bmd(self.mesh, name, density=dxa_density,
                                                   volumes=volumes)}
            if name in REFERENCE_POPULATIONS:
                a = self._dxa_scan(name).measure(dxa_density).abmd_g_cm2
                mean, sd, _ = REFERENCE_POPULATIONS[name]
                entry.update(abmd_g_cm2=a, t_score=(a - mean) / sd)
            regions[name] = entry
        E = np.asarray(self.law.modulus(rho))
        stiffness, loads = {}, {}
        for name in s.strength_cases:
            case, pre = self._strength_case(name)
            res = strength(self.mesh, case, E, nu=s.nu, methods=tuple(s.strength_methods),
                           density=rho, preconditioner=pre, u0=self.strength_warm.get(name))
            self.strength_warm[name] = jnp.asarray(res.u)
            stiffness[name] = res.stiffness_N_per_mm
            loads[name] = dict(res.fracture_load_N)
        ctx, p1np = self._markers(state)
        rec = {"time_years": float(t_years), "day": int(day), "regions": regions,
               "stiffness_N_per_mm": stiffness,
               "fracture_load_N": loads, "markers": {"ctx": ctx, "p1np": p1np},
               "mean_bvtv": float(np.average(np.asarray(state.cells.f_bm),
                                             weights=np.asarray(self.stim.volumes)))}
        b = self.baseline or rec          # the baseline record is measured against itself
        for name, entry in regions.items():
            key = "abmd_g_cm2" if "abmd_g_cm2" in entry else "vbmd_mg_cm3"
            entry["change_pct"] = 100.0 * (entry[key] / b["regions"][name][key] - 1.0)
        rec["markers"].update(ctx_rel=ctx / b["markers"]["ctx"],
                              p1np_rel=p1np / b["markers"]["p1np"])
        return rec


def _rebuilt(pre, model, material, bcs):
    """An AMG ``pre`` rebuilt for ``material`` when the new hierarchy has the same array shapes
    (so compiled solves are reused), else ``pre`` itself; other preconditioners unchanged."""
    from ..solve.amg import AMG

    if not isinstance(pre, AMG):
        return pre
    new = AMG.build(model, material, bcs)
    old_leaves, new_leaves = jax.tree_util.tree_leaves(pre), jax.tree_util.tree_leaves(new)
    same = (jax.tree_util.tree_structure(replace(new, info=pre.info))
            == jax.tree_util.tree_structure(pre)
            and all(a.shape == b.shape and a.dtype == b.dtype
                    for a, b in zip(old_leaves, new_leaves)))
    if not same:
        log.info("AMG refresh skipped: the new hierarchy has other shapes (would recompile)")
        return pre
    return replace(new, info=pre.info)


def _fingerprint(mesh: Mesh, table: dict, lf: np.ndarray, settings: RemodelSettings,
                 years: float) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.points).tobytes())
    h.update(np.ascontiguousarray(mesh.cells).tobytes())
    for k in sorted(table):
        h.update(k.encode())
        h.update(np.ascontiguousarray(table[k]).tobytes())
    h.update(lf.tobytes())
    h.update(json.dumps(settings.describe(), sort_keys=True, default=str).encode())
    h.update(repr(float(years)).encode())
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, state: BoneState, step: int, fingerprint: str, records: list,
                     series: dict, warm: dict) -> None:
    """``warm``: {strength case: (n_nodes, 3) last solution} (the next output's warm starts)."""
    leaves = jax.tree_util.tree_leaves(state)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, step=step, fingerprint=fingerprint, records=json.dumps(records),
             **{f"series_{k}": np.asarray(v) for k, v in series.items()},
             **{f"warm_{k}": np.asarray(v) for k, v in warm.items()},
             **{f"leaf{i}": np.asarray(a) for i, a in enumerate(leaves)})
    os.replace(tmp, path)


def _load_checkpoint(path: Path, template: BoneState, fingerprint: str):
    with np.load(path) as z:
        if str(z["fingerprint"]) != fingerprint:
            raise ValueError(f"{path} belongs to a different run (bone, inputs, settings or "
                             f"duration changed); delete it or use another --out folder")
        template_leaves, treedef = jax.tree_util.tree_flatten(template)
        leaves = [z[f"leaf{i}"] if f"leaf{i}" in z.files else None
                  for i in range(len(template_leaves))]
        if any(a is None or a.shape != jnp.shape(t) for a, t in zip(leaves, template_leaves)):
            raise ValueError(f"{path} holds a state of another layout (written by another febone "
                             f"version); delete it, or use another --out folder, to start afresh")
        state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])
        series = {k[len("series_"):]: list(z[k]) for k in z.files if k.startswith("series_")}
        warm = {k[len("warm_"):]: jnp.asarray(z[k]) for k in z.files if k.startswith("warm_")}
        return state, int(z["step"]), json.loads(str(z["records"])), series, warm


def remodel(mesh: Mesh, inputs, *, years: float, settings: RemodelSettings = RemodelSettings(),
            label: str = "run", out_dir=None, resume: bool = False, progress=None,
            description: dict | None = None, cache: dict | None = None) -> RemodelResult:
    """Remodel a bone for ``years`` under daily hormone/drug inputs, coupled to the FE solution.

    Args:
        mesh: the bone (mm) with an apparent-density cell field (``settings.density_field``,
            g/cm³), the habitual and strength load cases' node sets, and optionally
            ``region_*`` cell masks for the regional outputs.
        inputs: daily inputs: ``.drives`` a :class:`~febone.remodel.cells.Drives` whose fields
            are (n_days,) arrays (or scalars) for days 0..n_days−1, ``psi_ratio`` ignored, and
            ``.load_factor`` (n_days,) habitual-force multiplier (see
            :func:`febone.remodel.coupling.daily_inputs`). The start is the homeostasis of
            neutral drives.
        years: simulated time, years (a multiple of 1/steps_per_year).
        settings: :class:`RemodelSettings`.
        label: name of the run (protocol) in outputs and file names.
        out_dir: folder for ``<label>.jsonl`` (one line per output, written as produced) and
            ``<label>.checkpoint.npz`` (full state after the last output).
        resume: continue from the checkpoint in ``out_dir`` (same bone, inputs, settings and
            duration, else ValueError); the result equals an uninterrupted run.
        progress: callable(step, n_steps, record_or_None) after every mechanical step.
        description: extra JSON-ready metadata stored with the result ("what was run").
        cache: a dict shared by runs on the same ``mesh`` object (e.g. the arms of a study) to
            reuse the solver set-up (posed models, AMG hierarchies) between them.

    Returns:
        :class:`RemodelResult`.

    Raises:
        ValueError/TypeError: bad inputs; :class:`~febone.solve.ConvergenceError` when an FE
        solve fails; :class:`~febone.remodel.cells.CellModelError` when the cell model cannot
        meet its tolerance.
    """
    from ..solve.solution import ConvergenceError

    start = time.perf_counter()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a febone Mesh (febone.read_mesh); got {type(mesh).__name__}")
    if not isinstance(settings, RemodelSettings):
        raise TypeError(f"settings must be RemodelSettings; got {type(settings).__name__}")
    bounds = step_schedule(years, settings.steps_per_year)
    n_steps, n_days = len(bounds) - 1, int(bounds[-1])
    every = int(round(settings.output_interval_years * settings.steps_per_year))
    outputs = set(range(every, n_steps + 1, every)) | {n_steps}
    table, load_factor = _check_inputs(inputs, n_days)
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir (the folder of the interrupted run)")
    run = _Run(mesh, settings, Drives(), cache)
    fp = _fingerprint(mesh, table, load_factor, settings, years)
    out_dir = None if out_dir is None else Path(out_dir)
    ckpt = jsonl = None
    state, step0 = run.state0, 0
    records = [run.baseline]
    fields0, pending = run.series(state)               # pending: the next step's stimulus
    series = {k: [v] for k, v in fields0.items()}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt, jsonl = out_dir / f"{label}.checkpoint.npz", out_dir / f"{label}.jsonl"
        if resume and ckpt.exists():
            state, step0, records, series, run.strength_warm = _load_checkpoint(ckpt, state, fp)
            run.refresh_preconditioners(state)      # as the uninterrupted run did there
            pending = None
            log.info("%s: resuming at step %d of %d", label, step0, n_steps)
        elif resume:
            log.warning("%s: no checkpoint in %s; starting from the beginning", label, out_dir)
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    mp, params, nu = run.mp, settings.cell_params, settings.nu
    timing = {"setup_seconds": time.perf_counter() - start, "fe_seconds": 0.0,
              "cell_seconds": 0.0, "output_seconds": 0.0}
    for k in range(step0, n_steps):
        d0, d1 = int(bounds[k]), int(bounds[k + 1])
        t_fe = time.perf_counter()
        if pending is None:
            pending = _stimulus_step(run.stim, state, nu, mp, law=run.law)
        (psi, u, _, ok), pending = pending, None
        if not bool(ok):
            raise ConvergenceError(f"{label}: habitual-load FE solve failed at day {d0} (CG did "
                                   f"not converge or the bone no longer resists the load)")
        ratio = jnp.asarray(np.asarray(psi) / run.psi0)
        t_cell = time.perf_counter()
        timing["fe_seconds"] += t_cell - t_fe
        dt = {name: jnp.asarray(v[d0:d1]) for name, v in table.items()}
        cells, mineral, _ = _cell_step(params, mp, state.cells, state.mineral, Drives(**dt),
                                       jnp.asarray(load_factor[d0:d1]), ratio,
                                       jnp.asarray(float(d0)), settings.lazy_zone,
                                       n_days=d1 - d0,
                                       rtol=settings.cell_rtol)
        f_now = np.asarray(cells.f_bm)
        if not np.all(np.isfinite(f_now)):
            raise CellModelError(f"{label}: the cell model produced NaN at day {d1}; check the "
                                 f"daily inputs for extreme values")
        if np.any(f_now <= 0) or np.any(f_now > 1):
            raise CellModelError(f"{label}: BV/TV left (0, 1] at day {d1} (elements resorbed "
                                 f"completely or overfilled); shorten the run or check the inputs")
        state = BoneState(cells, mineral, u)
        t_out = time.perf_counter()
        timing["cell_seconds"] += t_out - t_cell
        rec = None
        if k + 1 in outputs:
            run.refresh_preconditioners(state)
            rec = run.measure(state, (k + 1) / settings.steps_per_year, d1)
            records.append(rec)
            fields_k, pending = run.series(state)
            for name, v in fields_k.items():
                series[name].append(v)
            if out_dir is not None:
                with jsonl.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                _save_checkpoint(ckpt, state, k + 1, fp, records, series, run.strength_warm)
            timing["output_seconds"] += time.perf_counter() - t_out
        if progress is not None:
            progress(k + 1, n_steps, rec)
    timing["steps"], timing["days"] = n_steps - step0, int(bounds[-1] - bounds[step0])
    desc = {"label": label, "years": years, "fingerprint": fp, "settings": settings.describe(),
            "n_elements": mesh.n_elements, "n_dofs": mesh.n_dofs, "timing": timing,
            **(description or {})}
    return RemodelResult(label, records, *(np.asarray(series[k]) for k in
                                           ("density", "bvtv", "displacement", "von_mises")),
                         time.perf_counter() - start, device_description(), desc)

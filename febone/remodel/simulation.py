"""The host driver of the FE-coupled remodelling model: outputs, checkpoints, resume, progress.

:func:`remodel` runs the one remodelling model (:mod:`.model`: :func:`~.model.initial_state` and
the pure :func:`~.model.step`, jitted once per step length) over the calendar of
:func:`~.settings.step_schedule` (default 12 steps per year, 30 or 31 days each, so that output
times fall on whole years). :func:`febone.study.forward` runs the same step under ``lax.scan``.

Outputs (every ``output_interval_years``) are measured the way a clinic would: regional vBMD
(:func:`~.model.regional_vbmd`) and a DXA-like aBMD with T-score
(:mod:`febone.bones.densitometry`, mineral mass scaled from the mesh baseline by the element's
mineral content v_m·f_bm), CTX- and P1NP-like markers (:func:`~.model.markers`, relative to
baseline), and stiffness and fracture load of the strength load cases
(:func:`febone.strength.strength`). Results and a checkpoint of the full state are written after
every output (the checkpoint first, so the jsonl never runs ahead of it), and an interrupted run
resumes (``resume=True``) to the same numbers.

Host-only work, which changes no answer beyond the CG tolerance: on the unstructured path the
habitual cases' AMG hierarchies are refreshed for the current moduli at every output
(``refresh_preconditioners``: pyamg's aggregation kept, the Galerkin products, smoother bounds
and coarse inverse recomputed on the device, :func:`febone.solve.amg_refresh.refresh_on_device`).
On the voxel engine (``RemodelSettings.solver``, the default for grid-aligned hex8 bones) the
habitual cases keep a geometric-multigrid hierarchy set up on the device from the moduli of time
0 and of every output since (:func:`keep_voxel_hierarchies`; the differentiable study, and a run
with ``refresh=False``, set it up inside every solve), and the outputs' strength analyses run on
the voxel engine too.

Between outputs the host only dispatches steps: the daily inputs, the model and the physics are
put on the device once, each step reads its days there (no host-to-device transfer), and its
checks (finite, BV/TV in (0, 1], FE converged) come back as one int32 read one step late, while
the next step runs, so the device never waits for the host.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..device import device_description
from ..files import atomic_savez, atomic_write_text, read_npz
from ..mesh.mesh import Mesh
from ..precision import PrecisionMode, precision_mode
from .cells import CellModelError, Drives
from .model import (COMPARTMENTS, OUTCOME_SOLVER, BoneState, apparent_density, build_model, initial_state,
                    markers, physics, regional_vbmd, step)
from .mechanics import _voxel_solver, case_von_mises, stimulus_engine
from .settings import RemodelSettings, calendar

__all__ = ["RemodelResult", "remodel", "scaled_density", "run_precision", "RUN_PRECISIONS"]

log = logging.getLogger(__name__)


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


#: Codes of a step's checks (:func:`_step`), first failure wins.
_OK, _NAN, _OUTSIDE, _FE = 0, 1, 2, 3


def _step(model, phys, state, drives, load_factor, t0, *, n_days):
    """One step on days t0 .. t0 + n_days − 1 of the whole-run daily inputs (device arrays,
    sliced here so that nothing moves between host and device); returns the new state and an
    int32 check code (:data:`_OK`, :data:`_NAN`, :data:`_OUTSIDE`, :data:`_FE`)."""
    i0 = t0.astype(jnp.int32)
    days = lambda a: jax.lax.dynamic_slice_in_dim(a, i0, n_days)  # noqa: E731
    new, info, _ = step(model, phys, state, jax.tree_util.tree_map(days, drives),
                        days(load_factor), t0, n_days=n_days)
    f = new.cells.f_bm
    code = jnp.where(~jnp.all(jnp.isfinite(f)), _NAN,
                     jnp.where(~jnp.all((f > 0) & (f <= 1)), _OUTSIDE,
                               jnp.where(info.ok, _OK, _FE)))
    return new, code.astype(jnp.int32)


#: :func:`_step` compiled with its input state donated: its buffers (the mineral queue's above
#: all) become the output's instead of being copied every step
_step_donating = jax.jit(_step, static_argnames=("n_days",), donate_argnames=("state",))
_copy_state = jax.jit(lambda state: jax.tree_util.tree_map(jnp.copy, state))
_initial_state = jax.jit(initial_state)

#: The precision modes a remodelling run accepts (:func:`run_precision`).
RUN_PRECISIONS = ("float64", "mixed", "float32")


def run_precision(precision: str | PrecisionMode | None = None) -> PrecisionMode:
    """The :class:`~febone.precision.PrecisionMode` of a remodelling run (``None``: float64
    with JAX's x64 mode on).

    Raises:
        ValueError: an unknown mode, a mode that needs x64 while it is off, or a mode a
            remodelling run does not accept (the message names those it does).
    """
    mode = precision_mode(precision)
    if mode.name not in RUN_PRECISIONS:
        raise ValueError(f"precision {mode.name!r} is not available for a remodelling run; "
                         f"use one of {list(RUN_PRECISIONS)}")
    if mode.name == "float32" and jax.config.jax_enable_x64:
        # with x64 on, the cell model and the outputs would silently stay float64
        raise ValueError("precision 'float32' runs everything in float32, but JAX's x64 mode "
                         "is on: call febone.precision.configure('float32') at the start of "
                         "your script (before any computation), or use precision 'float64' or "
                         "'mixed'")
    return mode


def _with_precision(model, mode: PrecisionMode):
    """``(model, outcome solver)`` of a run in ``mode``: float64 keeps both as they are; the
    other modes set the habitual and outcome solvers' ``mixed_precision`` to the mode's and
    raise their rtol to what the mode reaches."""
    if mode.name == "float64":
        return model, OUTCOME_SOLVER

    def adapt(solver):
        return replace(solver, mixed_precision=mode.refine, rtol=max(solver.rtol, mode.min_rtol))

    stim = replace(model.stim, solver=adapt(model.stim.solver))
    return replace(model, stim=stim), adapt(OUTCOME_SOLVER)


@jax.jit
def _measures(model, phys, state):
    rho, mineral_vol = apparent_density(state.cells, state.v_m, phys.mineral)
    return (rho, state.rho0 * mineral_vol / state.mineral_ref, phys.law.modulus(rho),
            regional_vbmd(model, state, phys.mineral), *markers(model, state, phys.cell))


class _Outputs:
    """Host-side outputs of one bone: the clinic's measures and the output fields."""

    def __init__(self, mesh: Mesh, model, settings: RemodelSettings, cache: dict,
                 solver=OUTCOME_SOLVER):
        from ..strength.loadcases import CASES

        self.mesh, self.model, self.settings, self.solver = mesh, model, settings, solver
        # the strength solves of the outputs on the engine of the habitual ones
        self.voxel = stimulus_engine(model.stim) == "voxel"
        self._strength = cache.setdefault("strength-voxel" if self.voxel else "strength", {})
        self._dxa = cache.setdefault("dxa", {})
        self.strength_warm = {}      # {strength case: last solution}: next output's warm start
        h0 = settings.habitual[0]
        case0, self.side = CASES[h0.case](**dict(h0.options)).sided(mesh)  # mirrored if left
        self.pose0 = np.asarray(case0.pose)                             # posed = R·x
        self.regions = sorted(k[len("region_"):] for k in mesh.cell_data if k.startswith("region_"))
        self.baseline = None

    def fields(self, state: BoneState, phys) -> dict:
        """Density and BV/TV (n_elements,), and displacement (n_nodes, 3) mm and von Mises
        stress (n_elements,) MPa of the first habitual case at its target force (mesh frame)."""
        from ..material.elastic import LinearElastic

        rho, _, E, *_ = _measures(self.model, phys, state)
        c = self.model.stim.cases[0]
        u_case = state.u[0] * (c.force_N / state.stiffness[0])
        vm = case_von_mises(c, LinearElastic(E, jnp.asarray(self.settings.nu, E.dtype)), u_case)
        return {"density": np.asarray(rho), "bvtv": np.asarray(state.cells.f_bm),
                "displacement": np.asarray(u_case) @ self.pose0,
                "von_mises": np.asarray(vm)}

    def _dxa_scan(self, region: str):
        """The DXA geometry of ``region``, projected once per bone (hip scans rotated)."""
        if region not in self._dxa:
            from ..bones import dxa_rotation_deg
            from ..bones.densitometry import dxa_scan

            rot = dxa_rotation_deg() if "femoral_neck" in self.regions else 0.0
            if self.side == "left":      # internal rotation of a left hip turns the other way
                rot = -rot
            self._dxa[region] = dxa_scan(self.mesh, region, rotation_deg=rot)
        return self._dxa[region]

    def abmd(self, state: BoneState, phys, region: str) -> float:
        """DXA-like aBMD of ``region`` in ``state``, g/cm²."""
        dxa_density = np.asarray(_measures(self.model, phys, state)[1])
        return self._dxa_scan(region).measure(dxa_density).abmd_g_cm2

    def _strength_case(self, name):
        if name not in self._strength:
            from ..fe.model import FEModel
            from ..material.elastic import LinearElastic
            from ..material.laws import density_law
            from ..solve.amg import make_preconditioner
            from ..strength import CASES

            from ..strength.geometry import resolve_node_sets

            case = CASES[name]()            # strength() mirrors it for a left femur itself
            if self.voxel:                  # the voxel engine: nothing to build on the host
                self._strength[name] = (case, "auto")
                return self._strength[name]
            with_sets = resolve_node_sets(self.mesh, case)[0]
            posed = case.sided(with_sets)[0].posed(with_sets)
            E0 = np.asarray(density_law(self.settings.law).modulus(self.model.rho0))
            pre = make_preconditioner(self.settings.preconditioner, FEModel.from_mesh(posed),
                                      LinearElastic.create(E0, self.settings.nu,
                                                           self.mesh.n_elements),
                                      case.boundary_conditions(posed))
            self._strength[name] = (case, pre)
        return self._strength[name]

    def measure(self, state: BoneState, phys, t_years: float, day: int = 0) -> dict:
        """The output record of ``state`` at nominal time ``t_years`` (simulated ``day``)."""
        from ..bones.densitometry import REFERENCE_POPULATIONS
        from ..strength import strength

        s = self.settings
        rho, dxa_density, E, vbmd, ctx, p1np = (np.asarray(a) for a in
                                                 _measures(self.model, phys, state))
        vbmd = dict(zip(self.model.regions, vbmd.tolist()))
        regions = {}
        for name in self.regions:
            entry = {"vbmd_mg_cm3": vbmd[name]}
            for comp in COMPARTMENTS:
                if f"{name}/{comp}" in vbmd:
                    entry[f"{comp}_vbmd_mg_cm3"] = vbmd[f"{name}/{comp}"]
            if name in REFERENCE_POPULATIONS:
                a = self._dxa_scan(name).measure(dxa_density).abmd_g_cm2
                mean, sd, _ = REFERENCE_POPULATIONS[name]
                entry.update(abmd_g_cm2=a, t_score=(a - mean) / sd)
            regions[name] = entry
        stiffness, loads = {}, {}
        for name in s.strength_cases:
            case, pre = self._strength_case(name)
            res = strength(self.mesh, case, E, nu=s.nu, methods=tuple(s.strength_methods),
                           density=rho, preconditioner=pre, u0=self.strength_warm.get(name),
                           solver=_voxel_solver(self.solver) if self.voxel else self.solver)
            self.strength_warm[name] = jnp.asarray(res.u)
            stiffness[name] = res.stiffness_N_per_mm
            loads[name] = dict(res.fracture_load_N)
        ctx, p1np = float(ctx), float(p1np)
        rec = {"time_years": float(t_years), "day": int(day), "regions": regions,
               "stiffness_N_per_mm": stiffness,
               "fracture_load_N": loads, "markers": {"ctx": ctx, "p1np": p1np},
               "mean_bvtv": float(np.average(np.asarray(state.cells.f_bm),
                                             weights=np.asarray(self.model.volumes)))}
        b = self.baseline or rec          # the baseline record is measured against itself
        for name, entry in regions.items():
            key = "abmd_g_cm2" if "abmd_g_cm2" in entry else "vbmd_mg_cm3"
            entry["change_pct"] = 100.0 * (entry[key] / b["regions"][name][key] - 1.0)
            for comp in COMPARTMENTS:
                k = f"{comp}_vbmd_mg_cm3"
                if k in entry:
                    entry[f"{comp}_change_pct"] = 100.0 * (entry[k] / b["regions"][name][k] - 1.0)
        rec["markers"].update(ctx_rel=ctx / b["markers"]["ctx"],
                              p1np_rel=p1np / b["markers"]["p1np"])
        return rec


def refresh_preconditioners(model, state: BoneState, phys, settings: RemodelSettings):
    """``model`` with the habitual cases' AMG hierarchies refreshed for the moduli of ``state``
    on the device (:func:`febone.solve.amg_refresh.refresh`: the baseline aggregation, new
    Galerkin products, smoother bounds and coarse inverse; same shapes, so nothing recompiles;
    no host transfer). As low-density elements resorb, a hierarchy built for the baseline
    moduli degrades (after 10 years of menopause: 38 CG iterations instead of 12); refreshing
    at every output cut the FE time of the default study from 29 to 18 s per arm. The strength
    solves of the outputs keep the baseline hierarchy (refreshing them cost more than it
    saved: 20 instead of 13 s of outputs per arm). Hierarchies without a refresh plan (built
    without ``refreshable=True``) are kept as they are. On the voxel engine the cases keep the
    geometric-multigrid hierarchy of the current moduli (:func:`keep_voxel_hierarchies`)."""
    if settings.preconditioner == "jacobi":
        return model
    from ..material.elastic import LinearElastic
    from ..solve.amg_refresh import refresh

    if stimulus_engine(model.stim) == "voxel":
        return keep_voxel_hierarchies(model, _measures(model, phys, state)[2], phys.nu)
    mat = LinearElastic(_measures(model, phys, state)[2], phys.nu)
    cases = tuple(replace(c, preconditioner=refresh(c.preconditioner, c.model, mat, c.bcs))
                  if getattr(c.preconditioner, "refresh", None) is not None else c
                  for c in model.stim.cases)
    return replace(model, stim=replace(model.stim, cases=cases))


def keep_voxel_hierarchies(model, E, nu):
    """``model`` whose voxel-engine habitual cases keep the multigrid hierarchy of the moduli
    ``E`` ((n_elements,) MPa) for their solves until the next refresh, instead of setting it
    up inside every solve (:func:`~.voxel_case.with_hierarchy`; fine femur: 0.07 s of each
    monthly step's 0.7 s)."""
    from .voxel_case import with_hierarchy

    cases = tuple(with_hierarchy(c, E, nu, model.stim.solver) for c in model.stim.cases)
    return replace(model, stim=replace(model.stim, cases=cases))


def _check_inputs(inputs, n_days: int):
    drives = getattr(inputs, "drives", None)
    load_factor = getattr(inputs, "load_factor", None)
    if not isinstance(drives, Drives) or load_factor is None:
        raise TypeError("inputs must carry .drives (a Drives with (n_days,) fields) and "
                        ".load_factor ((n_days,)); build them with "
                        "febone.remodel.model.daily_table(patient, treatments, coupling, n_days)")
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
    mf = getattr(inputs, "mineralisation_factor", None)
    mf = np.ones(n_days) if mf is None else np.asarray(mf, dtype=np.float64)
    mf = np.full(n_days, float(mf)) if mf.ndim == 0 else mf[:n_days]
    if mf.shape[0] < n_days or not np.all(np.isfinite(mf)) or np.any(mf <= 0):
        raise ValueError(f"mineralisation_factor must be positive and finite for all {n_days} days")
    return table, lf[:n_days], mf


def scaled_density(rho0, scale: float):
    """The baseline density scaled uniformly by ``scale``, capped at 95 % of the tissue density
    of fully mineralised bone (a scaled cortex cannot exceed BV/TV = 1), g/cm³."""
    from .mineral import tissue_density
    from .parameters import MINERAL_MARTINEZ_REINA_2019

    cap = 0.95 * float(tissue_density(MINERAL_MARTINEZ_REINA_2019.v_max))
    return jnp.minimum(rho0 * scale, cap)


def _fit_density_scale(replay, out, phys, targets: dict, label: str, tol: float = 1e-3):
    """The uniform density scale whose replayed bone has the measured aBMD at time 0
    (fixed-point iteration s ← s · target/model; aBMD is nearly proportional to s).

    Returns:
        ``(scale, state at time 0)``.
    """
    unknown = [r for r in targets if r not in out.regions]
    if unknown:
        raise ValueError(f"baseline DXA of {unknown}: the bone has no such region (its regions: "
                         f"{out.regions}); give femoral_neck/total_hip for a femur, the lumbar "
                         f"spine (vertebral_body) for a vertebra")
    scale = 1.0
    for _ in range(6):
        state = replay(scale)
        ratios = np.array([targets[r] / out.abmd(state, phys, r) for r in targets])
        step = float(np.exp(np.mean(np.log(ratios))))
        if abs(step - 1.0) < tol:
            break
        scale *= step
    else:
        state = replay(scale)
    log.info("%s: density scaled by %.4f for the baseline DXA %s (misfit %s)", label, scale,
             targets, (ratios / step - 1.0).round(4).tolist())
    return scale, state


def _history_key(table: dict, lf: np.ndarray, day0: int, phys, history_years: float,
                 baseline_abmd) -> str:
    """Digest of what a replayed history depends on: its days of inputs, the physics and the
    measured DXA."""
    h = hashlib.sha256()
    for k in sorted(table):
        h.update(k.encode())
        h.update(np.ascontiguousarray(table[k][:day0]).tobytes())
    h.update(np.ascontiguousarray(lf[:day0]).tobytes())
    for leaf in jax.tree_util.tree_leaves(phys):
        h.update(np.asarray(leaf).tobytes())
    h.update(repr((float(history_years), sorted((baseline_abmd or {}).items()))).encode())
    return h.hexdigest()


def _fingerprint(mesh: Mesh, table: dict, lf: np.ndarray, settings: RemodelSettings,
                 years: float, history_years: float, baseline_abmd=None) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.points).tobytes())
    h.update(np.ascontiguousarray(mesh.cells).tobytes())
    for k in sorted(table):
        h.update(k.encode())
        h.update(np.ascontiguousarray(table[k]).tobytes())
    h.update(lf.tobytes())
    h.update(json.dumps(settings.describe(), sort_keys=True, default=str).encode())
    h.update(repr((float(years), float(history_years),
                   sorted((baseline_abmd or {}).items()))).encode())
    return h.hexdigest()[:16]


def _save_checkpoint(path: Path, state: BoneState, step: int, fingerprint: str, records: list,
                     series: dict, warm: dict) -> None:
    """``warm``: {strength case: (n_nodes, 3) last solution} (the next output's warm starts).
    Atomic: an interrupted write leaves the previous checkpoint whole."""
    leaves = jax.tree_util.tree_leaves(state)
    atomic_savez(path, step=step, fingerprint=fingerprint, records=json.dumps(records),
                 **{f"series_{k}": np.asarray(v) for k, v in series.items()},
                 **{f"warm_{k}": np.asarray(v) for k, v in warm.items()},
                 **{f"leaf{i}": np.asarray(a) for i, a in enumerate(leaves)})


def _load_checkpoint(path: Path, template: BoneState, fingerprint: str):
    z = read_npz(path, fix="the run cannot resume from it: delete it (or start afresh with "
                           "--overwrite instead of --resume) or choose another --out folder")
    if str(z.get("fingerprint")) != fingerprint:
        raise ValueError(f"{path} belongs to a different run (bone, inputs, settings or "
                         f"duration changed); delete it or use another --out folder")
    template_leaves, treedef = jax.tree_util.tree_flatten(template)
    leaves = [z.get(f"leaf{i}") for i in range(len(template_leaves))]
    if any(a is None or a.shape != jnp.shape(t) for a, t in zip(leaves, template_leaves)):
        raise ValueError(f"{path} holds a state of another layout (written by another febone "
                         f"version); delete it, or use another --out folder, to start afresh")
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])
    series = {k[len("series_"):]: list(v) for k, v in z.items() if k.startswith("series_")}
    warm = {k[len("warm_"):]: jnp.asarray(v) for k, v in z.items() if k.startswith("warm_")}
    return state, int(z["step"]), json.loads(str(z["records"])), series, warm


def remodel(mesh: Mesh, inputs, *, years: float, settings: RemodelSettings = RemodelSettings(),
            label: str = "run", out_dir=None, resume: bool = False, progress=None,
            description: dict | None = None, cache: dict | None = None,
            refresh: bool = True, history_years: float = 0.0,
            baseline_abmd: dict | None = None, precision: str | None = None) -> RemodelResult:
    """Remodel a bone for ``years`` under daily hormone/drug inputs, coupled to the FE solution.

    Args:
        mesh: the bone (mm) with an apparent-density cell field (``settings.density_field``,
            g/cm³), the habitual and strength load cases' node sets (masks, or found from the
            geometry), and optionally ``region_*`` cell masks for the regional outputs.
        inputs: daily inputs (:func:`febone.remodel.model.daily_table`): ``.drives`` a
            :class:`~febone.remodel.cells.Drives` whose fields are (n_days,) arrays (or scalars)
            for days 0..n_days−1, ``psi_ratio`` ignored; ``.load_factor`` (n_days,)
            habitual-force multiplier; optional ``.mineralisation_factor`` (n_days,), whose
            mean over the run scales the secondary mineralisation rate (calcium, vitamin D).
            The start is the homeostasis of neutral drives.
        years: simulated time from time 0, years (a multiple of 1/steps_per_year).
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
        refresh: refresh the habitual AMG hierarchies for the current moduli at every output
            (on the device; a speed-up: the answers change only within the CG tolerance).
        history_years: the patient's history replayed before time 0 (:mod:`.history`), years (a
            multiple of 1/spinup_steps_per_year): ``inputs`` then start that long before time 0
            (:func:`~.history.replayed`), the run starts from the steady state there, and the
            outputs are re-based at time 0.
        baseline_abmd: measured DXA at time 0, {region: aBMD g/cm²} (regions with a DXA
            reference, e.g. ``femoral_neck``, ``total_hip``, ``vertebral_body``): the mesh's
            density field is scaled uniformly (:func:`scaled_density`) before the history is
            replayed, so that the model's aBMD at time 0 equals them (one region exactly to
            0.1 %; several by the geometric mean of their ratios, the misfit logged).
        precision: ``"float64"`` (default; ``None`` too), ``"mixed"`` (the habitual and
            strength solves as float32 CG inside a float64 residual correction, everything
            else float64) or ``"float32"``; :data:`RUN_PRECISIONS`, and the tolerances each
            reaches in :mod:`febone.precision`. Recorded in ``description["precision"]``.

    Returns:
        :class:`RemodelResult`.

    Raises:
        ValueError/TypeError: bad inputs; :class:`~febone.solve.ConvergenceError` when an FE
        solve fails; :class:`~febone.remodel.cells.CellModelError` when the cell model cannot
        meet its tolerance.
    """
    run = _Run(mesh, inputs, years=years, settings=settings, label=label, out_dir=out_dir,
               resume=resume, description=description, cache=cache, refresh=refresh,
               history_years=history_years, baseline_abmd=baseline_abmd, precision=precision)
    state, n_hist, n_steps = run.state, run.n_hist, run.n_steps
    pending = None                   # the last dispatched step, checked while the next runs
    for k in range(run.step0, n_steps):
        t_step = time.perf_counter()
        state, new_pending = run.dispatch(state, n_hist + k, donate=k > run.step0)
        if pending is not None:
            run.check(pending)
            if progress is not None:
                progress(pending[0] - n_hist + 1, n_steps, None)
        pending = new_pending
        if k + 1 in run.outputs:
            run.check(pending)
            pending = None
        run.timing["step_seconds"] += time.perf_counter() - t_step
        if k + 1 in run.outputs:
            rec = run.output(state, k)
            if progress is not None:
                progress(k + 1, n_steps, rec)
    return run.result()


class _Run:
    """One run's host side, for :func:`remodel` and for a batch of runs
    (:func:`febone.remodel.batched.remodel_batch`): the set-up (inputs checked, model, physics,
    the history replayed or the checkpoint read, baseline written: :attr:`state` at step
    :attr:`step0`), a step's dispatch and checks, an output (measures, fields, checkpoint,
    jsonl) and the result. Arguments as :func:`remodel`'s."""

    def __init__(self, mesh: Mesh, inputs, *, years, settings, label, out_dir, resume,
                 description, cache, refresh, history_years, baseline_abmd, precision=None):
        self.start = start = time.perf_counter()
        mode = run_precision(precision)
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a febone Mesh (febone.read_mesh); got "
                            f"{type(mesh).__name__}")
        if not isinstance(settings, RemodelSettings):
            raise TypeError(f"settings must be RemodelSettings; got {type(settings).__name__}")
        self.mesh, self.settings, self.label, self.refresh = mesh, settings, label, refresh
        self.bounds, self.n_hist = bounds, n_hist = calendar(years, settings, history_years)
        self.n_steps, self.day0 = n_steps, day0 = len(bounds) - 1 - n_hist, int(bounds[n_hist])
        every = int(round(settings.output_interval_years * settings.steps_per_year))
        self.outputs = set(range(every, n_steps + 1, every)) | {n_steps}
        table, load_factor, mineral_factor = _check_inputs(inputs, int(bounds[-1]))
        if resume and out_dir is None:
            raise ValueError("resume=True needs out_dir (the folder of the interrupted run)")
        cache = {} if cache is None else cache
        key = (id(mesh), json.dumps(settings.describe(), sort_keys=True, default=str), mode.name)
        if key not in cache:
            cache[key] = {"model": _with_precision(build_model(mesh, settings), mode)}
        shared = cache[key]
        model, outcome_solver = shared["model"]
        phys = physics(settings, float(np.mean(mineral_factor[day0:])))
        self.out = out = _Outputs(mesh, model, settings, shared, outcome_solver)
        state, ok = _initial_state(model, phys)
        if not bool(ok):
            raise ValueError("the baseline habitual-load solves did not converge or the bone "
                             "does not resist the load; check the node sets of the load cases")
        self.fp = fp = _fingerprint(mesh, table, load_factor, settings, years, history_years,
                                    baseline_abmd)
        if mode.name != "float64":     # a checkpoint resumes a run of its own precision only
            self.fp = fp = hashlib.sha256(f"{fp}/{mode.name}".encode()).hexdigest()[:16]
        density_scale = 1.0
        self.timing = timing = {"setup_seconds": 0.0, "history_seconds": 0.0,
                                "step_seconds": 0.0, "output_seconds": 0.0}

        # on the device once: the daily inputs, every step's first day, the model and the physics
        # (a step then moves nothing between host and device)
        self.days_dev = jax.device_put((Drives(**table), load_factor,
                                        [np.float64(b) for b in bounds[:-1]]))
        self.model, self.phys = model, phys = jax.device_put((model, phys))
        self.voxel = stimulus_engine(model.stim) == "voxel"
        if refresh and self.voxel:           # kept from the start: the step compiles once
            self.model = keep_voxel_hierarchies(model, phys.law.modulus(model.rho0), phys.nu)

        out_dir = None if out_dir is None else Path(out_dir)
        self.ckpt = self.jsonl = None
        # under jax.distributed every process runs the same run; process 0 alone writes its
        # files (the others read a checkpoint to resume)
        self.writes = jax.process_index() == 0
        if out_dir is not None:
            if self.writes:
                out_dir.mkdir(parents=True, exist_ok=True)
            self.ckpt, self.jsonl = out_dir / f"{label}.checkpoint.npz", out_dir / f"{label}.jsonl"
        self.step0 = 0
        if resume and self.ckpt.exists():
            state, self.step0, records, series, out.strength_warm = _load_checkpoint(
                self.ckpt, state, fp)
            out.baseline = records[0]
            if refresh:                              # as the uninterrupted run did there
                self.model = refresh_preconditioners(model, state, phys, settings)
            log.info("%s: resuming at step %d of %d", label, self.step0, n_steps)
        else:
            if resume:
                log.warning("%s: no checkpoint in %s; starting from the beginning", label, out_dir)
            t_hist = time.perf_counter()
            if n_hist:
                log.info("%s: replaying %.2f years of history before time 0", label, history_years)

            def replay(scale):
                s0, _ = _initial_state(model, phys, scaled_density(model.rho0, scale))
                return self.advance(s0, range(n_hist))

            # arms of one patient share their history (same days, drives, physics): replay it once
            hkey = _history_key(table, load_factor, day0, phys, history_years, baseline_abmd)
            replays = shared.setdefault("history", {})
            if hkey in replays:
                density_scale, state = replays[hkey]
            elif baseline_abmd:
                density_scale, state = _fit_density_scale(replay, out, phys, baseline_abmd, label)
            else:
                state = replay(1.0)
            replays[hkey] = (density_scale, state)
            if refresh and self.voxel and n_hist:    # time 0 is an output: refresh there too
                self.model = refresh_preconditioners(self.model, state, phys, settings)
            timing["history_seconds"] = time.perf_counter() - t_hist
            out.baseline = out.measure(state, phys, 0.0)
            records = [out.baseline]
            series = {k: [v] for k, v in out.fields(state, phys).items()}
        self.state, self.records, self.series = state, records, series
        if self.jsonl is not None and self.writes:
            atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in records))
        timing["setup_seconds"] = time.perf_counter() - start - timing["history_seconds"]
        self.desc = {"label": label, "years": years, "history_years": history_years,
                     "baseline_abmd": dict(baseline_abmd or {}), "density_scale": density_scale,
                     "fingerprint": fp, "precision": mode.name, "settings": settings.describe(),
                     "n_elements": mesh.n_elements, "n_dofs": mesh.n_dofs, "timing": timing,
                     **(description or {})}

    def dispatch(self, state, k, donate: bool = False):
        """Step k of the calendar (history steps first), dispatched: ``(state, (k, code))``.
        ``donate``: ``state`` belongs to this loop alone (a previous step's output), and its
        buffers may become the new state's."""
        drives, lf, starts = self.days_dev
        if not donate:               # (one compiled step: a state held elsewhere is copied)
            state = _copy_state(state)
        new, code = _step_donating(self.model, self.phys, state, drives, lf, starts[k],
                                   n_days=self.n_days(k))
        return new, (k, code)

    def n_days(self, k: int) -> int:
        """Days of step k of the calendar."""
        return int(self.bounds[k + 1] - self.bounds[k])

    def check(self, pending):
        """Raise if the dispatched step ``pending`` = (k, code) failed (waits for it)."""
        from ..solve.solution import ConvergenceError

        k, code = pending
        code = int(code)
        label = self.label
        when = f"day {int(self.bounds[k + 1]) - self.day0} (from time 0)"
        if code == _NAN:
            raise CellModelError(f"{label}: the cell model produced NaN at {when}; check the "
                                 f"daily inputs for extreme values")
        if code == _OUTSIDE:
            raise CellModelError(f"{label}: BV/TV left (0, 1] at {when} (elements resorbed "
                                 f"completely or overfilled); shorten the run or check the inputs")
        if code == _FE:
            raise ConvergenceError(f"{label}: habitual-load FE solve failed at {when} (CG did "
                                   f"not converge or the bone no longer resists the load)")

    def advance(self, state, ks):
        """Steps ``ks`` one after the other, each checked while the next one runs."""
        pending = None
        for i, k in enumerate(ks):
            state, new_pending = self.dispatch(state, k, donate=i > 0)
            if pending is not None:
                self.check(pending)
            pending = new_pending
        if pending is not None:
            self.check(pending)
        return state

    def output(self, state, k: int) -> dict:
        """The output after step k (from time 0) of ``state``: the AMG refresh, the record and
        fields, the checkpoint, then the jsonl. Returns the record."""
        t_out = time.perf_counter()
        out, phys = self.out, self.phys
        if self.refresh:
            self.model = refresh_preconditioners(self.model, state, phys, self.settings)
        rec = out.measure(state, phys, (k + 1) / self.settings.steps_per_year,
                          int(self.bounds[self.n_hist + k + 1]) - self.day0)
        self.records.append(rec)
        for name, v in out.fields(state, phys).items():
            self.series[name].append(v)
        if self.ckpt is not None and self.writes:
            # the checkpoint first: the jsonl never runs ahead of it
            _save_checkpoint(self.ckpt, state, k + 1, self.fp, self.records, self.series,
                             out.strength_warm)
            atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records))
        self.timing["output_seconds"] += time.perf_counter() - t_out
        return rec

    def result(self) -> RemodelResult:
        self.timing["steps"] = self.n_steps - self.step0
        self.timing["days"] = int(self.bounds[-1] - self.bounds[self.n_hist + self.step0])
        return RemodelResult(self.label, self.records,
                             *(np.asarray(self.series[k]) for k in
                               ("density", "bvtv", "displacement", "von_mises")),
                             time.perf_counter() - self.start, device_description(), self.desc)

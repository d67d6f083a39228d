"""``strength()``: stiffness and fracture load of a bone under a load case."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from ..fe.post import ElementFields
from ..material.elastic import LinearElastic
from ..mesh.mesh import Mesh
from ..precision import precision_mode
from .engines import build_engine
from .geometry import resolve_node_sets
from .criteria import Pistoia, StrainLimits, effective_strain, failure_load, strain_limit_ratio
from .loadcases import LoadCase
from .nonlinear import FailureCurve, ProgressiveFailure, progressive_failure

__all__ = ["strength", "StrengthResult", "METHODS"]

METHODS = ("pistoia", "pistoia-smooth", "strain-limit", "nonlinear")


@dataclass(frozen=True)
class StrengthResult:
    """Stiffness and fracture loads of one load case.

    Attributes:
        case: the :class:`LoadCase`.
        stiffness_N_per_mm: force / displacement of the linear solve.
        fracture_load_N: {method: load in N} for the methods run.
        failure_region: {method: summary} with element count, volume (mm³), centroid
            (mm, unposed frame) and the share of each ``region_*`` cell set.
        u: (n_nodes, 3) displacement of the linear solve at ``case.displacement_mm``, mm,
            in the posed frame.
        fields: :class:`ElementFields` of the linear solve.
        effective_strain: (n_elements,) √(2·SED/E) at the linear load.
        curve: :class:`FailureCurve` of the nonlinear analysis, if run.
        n_dofs, iterations, solve_seconds, device: solver figures of the linear solve.
        failed_elements: {method: ids of the elements beyond the criterion at failure}.
        node_sets: {set name: {"source": "mask" | "box" | "given" | "geometry", "nodes": n}}.
        side: ``"right"`` or ``"left"`` for femur cases (a left femur's pose is mirrored, see
            :meth:`LoadCase.sided`), None otherwise.
        solver: the engine that solved: ``"voxel"`` or ``"unstructured"``
            (:mod:`febone.strength.engines`).
    """

    case: LoadCase
    stiffness_N_per_mm: float
    fracture_load_N: dict
    failure_region: dict
    u: np.ndarray
    fields: ElementFields
    effective_strain: np.ndarray
    curve: FailureCurve | None
    n_dofs: int
    iterations: int
    solve_seconds: float
    device: str
    failed_elements: dict = field(default_factory=dict)
    node_sets: dict = field(default_factory=dict)
    side: str | None = None
    solver: str = "unstructured"

    def summary(self) -> dict:
        """JSON-ready summary (the keys of ``febone strength --json``)."""
        out = {"case": self.case.name, "stiffness_N_per_mm": self.stiffness_N_per_mm,
               "fracture_load_N": self.fracture_load_N, "failure_region": self.failure_region,
               "n_dofs": self.n_dofs, "iterations": self.iterations,
               "solve_seconds": self.solve_seconds, "device": self.device,
               "node_sets": self.node_sets, "side": self.side, "solver": self.solver}
        if self.curve is not None:
            out["nonlinear"] = {"displacement_mm": self.curve.displacement_mm.tolist(),
                                "force_N": self.curve.force_N.tolist(),
                                "peak_reached": self.curve.peak_reached,
                                "linear_solves": self.curve.iterations,
                                "rejected_increments": self.curve.rejected}
        return out


def _region_summary(mesh: Mesh, elements: np.ndarray, volumes: np.ndarray) -> dict:
    centroids = mesh.points[mesh.cells[elements]].mean(axis=1)
    vol = volumes[elements]
    summary = {"elements": int(elements.size), "volume_mm3": float(vol.sum()),
               "centroid_mm": (vol @ centroids / max(vol.sum(), 1e-300)).tolist()}
    shares = {}
    for name, mask in mesh.cell_data.items():
        if name.startswith("region_"):
            inside = np.asarray(mask).reshape(-1)[elements] != 0
            shares[name[len("region_"):]] = float(vol[inside].sum() / max(vol.sum(), 1e-300))
    if shares:
        summary["region_share"] = shares
    return summary


def strength(mesh: Mesh, case: LoadCase, E, *, nu: float = 0.3,
             methods=("pistoia", "pistoia-smooth", "strain-limit"),
             pistoia: Pistoia = Pistoia(), limits: StrainLimits = StrainLimits(),
             nonlinear: ProgressiveFailure = ProgressiveFailure(), density=None,
             tissue_volume=None, solver="auto", preconditioner="auto",
             progress=None, node_sets=None, find_sets: str = "auto", u0=None,
             precision: str | None = None) -> StrengthResult:
    """Stiffness and fracture load of ``mesh`` under ``case``.

    Args:
        mesh: the bone (its own frame; the case poses it).
        case: :class:`LoadCase`; a femur case is mirrored for a left femur
            (:meth:`LoadCase.sided`; ``result.side`` says which).
        E: (n_elements,) Young's moduli, MPa.
        nu: Poisson's ratio.
        methods: any of :data:`METHODS`.
        pistoia, limits, nonlinear: criterion settings.
        density: (n_elements,) apparent density, g/cm³ (density-dependent yield strains).
        tissue_volume: (n_elements,) mm³ weights of the linear criteria (default: element
            volumes, i.e. continuum tissue; pass BV/TV × volume for porous elements).
        solver: the engine (:mod:`febone.strength.engines`): ``"auto"`` (default: the voxel
            engine for a grid-aligned hex8 mesh, as the bundled bones are, unless
            ``preconditioner`` names an unstructured one; else the unstructured path),
            ``"voxel"`` (raises :class:`febone.voxel.from_mesh.NotGridAligned`, saying why,
            for any other mesh) or ``"unstructured"``; or a strategy object: a
            :class:`febone.PCG` runs the unstructured path with it, a
            :class:`febone.voxel.VoxelPCG` the voxel engine. Both engines give the same
            answers to the solver tolerance. None means ``"auto"``.
        preconditioner: of the unstructured path: ``"auto"`` (AMG when pyamg is installed),
            ``"amg"``, ``"jacobi"``, or a preconditioner object for :func:`febone.solve`; a
            named one is built once for the posed model and reused by every solve of the
            analysis. The voxel engine uses geometric multigrid.
        progress: callable(displacement_mm, force_N) for the nonlinear analysis.
        node_sets: optional {set name: node ids or :class:`~febone.strength.geometry.Box`}
            overriding the mesh's masks for the sets the case uses.
        find_sets: ``"auto"`` (masks of the mesh, else found from the geometry in the
            standard orientation, see :mod:`febone.strength.geometry`), ``"geometry"``
            (always from the geometry) or ``"masks"`` (never).
        u0: optional (n_nodes, 3) initial guess of the linear solve, mm (e.g. ``u`` of an
            earlier result for similar moduli; the answer does not depend on it).
        precision: of the linear solve: ``"float64"``, ``"mixed"`` (float64 answers from
            float32 iterations) or ``"float32"`` (rtol 1e-5: stiffness and the linear
            fracture loads to about 1e-3); see :mod:`febone.precision`. The nonlinear
            method needs float64 (``"float64"`` or ``"mixed"``). ``None``: from the solver
            and JAX's x64 setting.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown strength method(s) {unknown}; choose from {list(METHODS)}")
    if "nonlinear" in methods and not precision_mode(precision).needs_x64:
        raise ValueError("the nonlinear method needs float64 arithmetic (its increments solve "
                         "to rtol 1e-8): use precision 'float64' or 'mixed', or drop "
                         "'nonlinear' from methods")
    mesh, sources = resolve_node_sets(mesh, case, node_sets, find=find_sets)
    set_info = {name: {"source": src, "nodes": int(np.count_nonzero(mesh.point_data[name]))}
                for name, src in sources.items()}
    case, side = case.sided(mesh)
    posed = case.posed(mesh)
    mat = LinearElastic.create(E, nu, mesh.n_elements)
    bcs = case.boundary_conditions(posed)
    engine = build_engine(solver, mesh, posed, case.pose, mat.E, nu, bcs,
                          preconditioner=preconditioner, precision=precision)
    t0 = time.perf_counter()
    sol = engine.solve(mat.E, bcs, u0=u0)
    solve_seconds = time.perf_counter() - t0
    reactions = engine.reactions(mat.E, bcs, sol.u)
    force = float(case.measured_force(reactions, posed))
    if not force > 0:
        raise ValueError(f"load case {case.name}: the measured force is {force:.4g} N (not "
                         f"resisting the applied displacement); check the node sets and the pose")
    fields = engine.fields(mat.E, sol.u)
    volumes = engine.volumes
    weights = jnp.asarray(volumes if tissue_volume is None else tissue_volume)
    eff = effective_strain(fields.sed, mat.E)
    ratio = strain_limit_ratio(fields.principal_strain, limits)
    loads, regions, failed = {}, {}, {}

    def record(method, load, measure, critical):
        loads[method] = float(load)
        # elements beyond the critical value at the failure load
        exceed = np.flatnonzero(np.asarray(measure) * float(load) / force >= critical * (1 - 1e-12))
        failed[method] = exceed
        regions[method] = _region_summary(mesh, exceed, volumes)

    if "pistoia" in methods:
        record("pistoia", failure_load(force, eff, weights, pistoia.critical_strain,
                                       pistoia.fraction), eff, pistoia.critical_strain)
    if "pistoia-smooth" in methods:
        record("pistoia-smooth", failure_load(force, eff, weights, pistoia.critical_strain,
                                              pistoia.fraction, smooth=True),
               eff, pistoia.critical_strain)
    if "strain-limit" in methods:
        record("strain-limit", failure_load(force, ratio, weights, 1.0, limits.fraction), ratio, 1.0)
    curve = None
    if "nonlinear" in methods:
        unit = case.boundary_conditions(posed, displacement_mm=1.0)
        curve = progressive_failure(
            engine, mat.E, nu, unit, lambda r: case.measured_force(r, posed), settings=nonlinear,
            density=density, progress=progress)
        loads["nonlinear"] = curve.ultimate_load_N
        yielded = np.flatnonzero(curve.damage_at_ultimate > 0)
        failed["nonlinear"] = yielded
        regions["nonlinear"] = {**_region_summary(mesh, yielded, volumes),
                                "first_yield": _region_summary(mesh, curve.first_yield, volumes),
                                "peak_reached": curve.peak_reached}
    return StrengthResult(case, force / case.displacement_mm, loads, regions, np.asarray(sol.u),
                          fields, np.asarray(eff), curve, engine.n_dofs, int(sol.stats.iterations),
                          solve_seconds, sol.stats.device, failed, set_info, side, engine.name)

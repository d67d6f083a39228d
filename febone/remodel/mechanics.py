"""Mechanical stimulus of the remodelling loop: habitual daily loading → strain energy density.

The cell model's mechanical feedback (Scheiner 2013, science.md §3) needs the strain energy
density Ψ of every element under the bone's *habitual* loading, a weighted mix of daily load
cases. Each :class:`HabitualLoad` names a whole-bone load case (:mod:`febone.strength.loadcases`:
the pose and the node sets) and a force magnitude in body weights. The cases are displacement
controlled, so each is solved at a unit displacement and the linear answer is rescaled to the
target force: the loading is force controlled, as in vivo, and a bone that softens strains more.

    Ψ_e = Σ_c w_c · (F_c / F_c,unit)² · SED_c,unit,e        (MPa = mJ/mm³)

With ``smoothing`` the stimulus is averaged element → node → element once (each node takes the
volume-weighted mean of its elements, each element the mean of its nodes): the usual remedy for
the checkerboard of element-wise density laws on linear elements (Jacobs et al. 1995).

Everything runs inside ``jit``: one compilation serves every mechanical step of a run, each
solve is warm-started from the previous step's displacement, and gradients flow through the
solves by implicit differentiation (:func:`febone.solve`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

import jax
import jax.numpy as jnp
import numpy as np

from ..fe.bc import BoundaryConditions
from ..fe.model import FEModel
from ..fe.post import element_fields, reaction_forces
from ..material.elastic import LinearElastic
from ..mesh.mesh import Mesh
from ..mesh.nodesets import node_set
from ..solve.linear import solve
from ..solve.pcg import PCG
from ..solve.relay import solve_relayed
from ..voxel.solve import VoxelPCG
from .voxel_case import (VoxelCase, pose_voxel_case, voxel_sed, voxel_solve, voxel_stiffness,
                         voxel_von_mises)

__all__ = ["HabitualLoad", "MechanicalStimulus", "PosedCase", "DEFAULT_HABITUAL", "build_stimulus",
           "STIMULUS_QUANTITIES", "ENGINES", "resolve_engine", "stimulus_engine",
           "pose_case", "case_stiffness", "case_sed", "case_von_mises", "case_volumes",
           "habitual_sed", "habitual_sed_relayed", "lazy_zone"]

log = logging.getLogger(__name__)

_G = 9.81  # m/s², body weight → N


#: What the cells may sense (:class:`MechanicalStimulus` ``quantity``).
STIMULUS_QUANTITIES = ("sed", "strain", "effective-strain")

#: The FE engines of the loop's solves (:func:`resolve_engine`; ``RemodelSettings.solver``,
#: ``febone run --solver``).
ENGINES = ("auto", "voxel", "unstructured")


@dataclass(frozen=True)
class HabitualLoad:
    """One daily load case of the habitual loading.

    Attributes:
        case: load-case name of :data:`febone.strength.loadcases.CASES` (``stance``,
            ``sideways-fall``, ``vertebral-compression``, ``compression``).
        weight: share of the daily stimulus (the weights of a run sum to 1).
        magnitude_bw: peak force in body weights (hip contact in stance ≈ 2.5–3 BW,
            Bergmann 2001).
        options: keyword arguments of the case function as ``((name, value), ...)``, e.g.
            ``(("angle_deg", 20.0),)`` for stance.
    """

    case: str = "stance"
    weight: float = 1.0
    magnitude_bw: float = 2.5
    options: tuple = ()

    def __post_init__(self):
        from ..strength.loadcases import CASES

        if self.case not in CASES:
            raise ValueError(f"unknown habitual load case {self.case!r}; choose from "
                             f"{sorted(CASES)}")
        if not (np.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"habitual load {self.case!r}: weight must be positive (share of "
                             f"the daily loading); got {self.weight}")
        if not (np.isfinite(self.magnitude_bw) and self.magnitude_bw > 0):
            raise ValueError(f"habitual load {self.case!r}: magnitude_bw must be positive (body "
                             f"weights); got {self.magnitude_bw}")


#: Default habitual loading of a femur: single-leg stance, 2.5 × body weight (Bergmann 2001).
DEFAULT_HABITUAL = (HabitualLoad("stance", 1.0, 2.5),)


@dataclass(frozen=True)
class PosedCase:
    """A whole-bone load case posed on one bone, ready for compiled solves (a pytree).

    Attributes:
        model: :class:`FEModel` of the posed bone.
        bcs: boundary conditions at a unit (1 mm) displacement.
        preconditioner: AMG hierarchy, Jacobi or ``None`` (:func:`febone.solve`).
        loaded: (n_loaded,) node ids whose reactions make the measured force.
        axis: load axis (0, 1, 2; static); sign: +1/−1 so the measured force is positive.
        weight: share of the daily loading (habitual cases; static).
        force_N: target force, N (data: a new body mass does not recompile).
    """

    model: FEModel
    bcs: BoundaryConditions
    preconditioner: object
    loaded: jax.Array
    axis: int = field(metadata=dict(static=True))
    sign: float = field(metadata=dict(static=True))
    weight: float = field(metadata=dict(static=True))
    force_N: jax.Array


@dataclass(frozen=True)
class MechanicalStimulus:
    """Everything the compiled habitual-SED evaluation needs (a pytree; topology on the host once).

    Attributes:
        cases: one entry per habitual load case: a :class:`PosedCase` (unstructured path:
            posed model, unit-displacement BCs, AMG or ``None``, loaded node ids, load axis and
            sign, weight, target force in N) or a :class:`~.voxel_case.VoxelCase` (voxel
            engine, the same in the grid's numbering).
        smooth_nodes: (n_elements, n_corners) corner-node ids for the element → node → element
            average, or ``None`` without smoothing.
        node_weight: (n_nodes,) Σ of the volumes of each node's elements (mm³), or ``None``.
        volumes: (n_elements,) element volumes, mm³.
        solver: :class:`PCG` strategy of the solves (unstructured path), or
            :class:`febone.voxel.VoxelPCG` (voxel engine: every case a ``VoxelCase``).
        quantity: ``"sed"`` (strain energy density Ψ, MPa), ``"strain"`` (SED/E = ε_eff²/2,
            the squared effective strain over two) or ``"effective-strain"`` (ε_eff =
            √(2·SED/E), the root mean square over the habitual cases, dimensionless). The two
            strain measures are what an element feels when its modulus changes and its
            deformation does not; they differ in the loop gain of the feedback. Under a fixed
            force a uniform loss of density raises SED by (E0/E), ε_eff by (E0/E) and SED/E by
            (E0/E)²: the effective strain gives the FE loop the feedback of the FE-free site
            closure the coupling was calibrated with (:mod:`.site`), SED/E twice it.
    """

    cases: tuple
    smooth_nodes: jax.Array | None
    node_weight: jax.Array | None
    volumes: jax.Array
    solver: PCG | VoxelPCG = field(metadata=dict(static=True))
    quantity: str = field(default="sed", metadata=dict(static=True))


for _cls in (PosedCase, MechanicalStimulus):
    _static = [f.name for f in fields(_cls) if f.metadata.get("static")]
    jax.tree_util.register_dataclass(
        _cls, data_fields=[f.name for f in fields(_cls) if f.name not in _static],
        meta_fields=_static)


def build_stimulus(mesh: Mesh, E0, *, nu: float = 0.3, habitual=DEFAULT_HABITUAL,
                   body_mass_kg: float = 70.0, smoothing: bool = True,
                   preconditioner: str = "auto", solver: PCG | VoxelPCG | None = None,
                   quantity: str = "sed", engine: str = "unstructured") -> MechanicalStimulus:
    """Pose the bone for each habitual load case and build its solver data (host side, once).

    Args:
        mesh: the bone in febone's standard orientation with the load cases' node sets.
        E0: (n_elements,) baseline moduli, MPa (the AMG hierarchy is built for them and reused
            while the moduli change).
        nu: Poisson's ratio.
        habitual: sequence of :class:`HabitualLoad`; weights must sum to 1.
        body_mass_kg: body mass, kg (forces = magnitude_bw × body_mass_kg × 9.81 N).
        smoothing: average the stimulus element → node → element (anti-checkerboard).
        quantity: the stimulus, one of :data:`STIMULUS_QUANTITIES` (see
            :class:`MechanicalStimulus`).
        preconditioner: ``"auto"``, ``"amg"`` or ``"jacobi"`` (see
            :func:`febone.solve.amg.make_preconditioner`; the unstructured path's).
        solver: :class:`PCG` settings (default rtol 1e-8); a :class:`febone.voxel.VoxelPCG`
            asks for the voxel engine (default there ``VoxelPCG(rtol=1e-8)``; a ``PCG`` given
            with the voxel engine passes its rtol, atol, iteration cap and mixed precision).
        engine: ``"unstructured"`` (default), ``"voxel"`` or ``"auto"``
            (:func:`resolve_engine`).
    """
    from ..strength.loadcases import CASES

    habitual = tuple(habitual)
    if not habitual:
        raise ValueError("habitual loading needs at least one HabitualLoad (e.g. stance 2.5 BW)")
    for h in habitual:
        if not isinstance(h, HabitualLoad):
            raise TypeError(f"habitual loads must be HabitualLoad objects; got {type(h).__name__}")
    total = sum(h.weight for h in habitual)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"habitual load weights must sum to 1 (shares of the daily loading); "
                         f"got {total:g} for {[h.case for h in habitual]}")
    if quantity not in STIMULUS_QUANTITIES:
        raise ValueError(f"unknown stimulus quantity {quantity!r}; use one of "
                         f"{', '.join(map(repr, STIMULUS_QUANTITIES))} (see "
                         f"febone.remodel.mechanics.MechanicalStimulus)")
    if not (np.isfinite(body_mass_kg) and body_mass_kg > 0):
        raise ValueError(f"body_mass_kg must be positive; got {body_mass_kg}")
    if isinstance(solver, VoxelPCG):
        engine = "voxel"
    engine, layout = resolve_engine(engine, mesh, preconditioner)
    if layout is not None:
        solver = _voxel_solver(solver or PCG(rtol=1e-8))
        cases = [pose_voxel_case(mesh, layout, CASES[h.case](**dict(h.options)),
                                 weight=float(h.weight),
                                 force_N=h.magnitude_bw * body_mass_kg * _G) for h in habitual]
    else:
        solver = solver or PCG(rtol=1e-8)
        cases = [pose_case(mesh, CASES[h.case](**dict(h.options)), E0, nu=nu,
                           preconditioner=preconditioner, weight=float(h.weight),
                           force_N=h.magnitude_bw * body_mass_kg * _G, refreshable=True)
                 for h in habitual]
    volumes = jnp.asarray(case_volumes(cases[0]))
    smooth_nodes = node_weight = None
    if smoothing:
        corners = np.asarray(mesh.cells[:, : mesh.element.n_corners])
        w = np.zeros(mesh.n_nodes)
        np.add.at(w, corners, np.asarray(volumes)[:, None])
        smooth_nodes, node_weight = jnp.asarray(corners), jnp.asarray(np.maximum(w, 1e-300))
    return MechanicalStimulus(tuple(cases), smooth_nodes, node_weight, volumes, solver, quantity)


def resolve_engine(engine: str, mesh: Mesh, preconditioner="auto"):
    """The engine of the loop's solves on ``mesh``: ``(name, layout)``.

    ``"auto"`` takes the voxel engine when the mesh is grid-aligned hex8
    (:func:`febone.voxel.from_mesh.mesh_grid`: the bundled bones are) and no unstructured
    preconditioner is named, else the unstructured path; ``"voxel"`` insists; ``"unstructured"``
    never uses the voxel engine (as :func:`febone.strength.engines.build_engine`).

    Returns:
        ``("voxel", MeshGrid)`` or ``("unstructured", None)``.

    Raises:
        ValueError: an unknown engine, or ``"voxel"`` with an unstructured preconditioner.
        NotGridAligned: ``"voxel"`` on a mesh that is not grid-aligned hex8 (says why).
    """
    from ..voxel.from_mesh import NotGridAligned, mesh_grid

    if engine not in ENGINES:
        raise ValueError(f"unknown FE engine (solver) {engine!r}; use one of "
                         f"{', '.join(map(repr, ENGINES))}")
    named = not (isinstance(preconditioner, str) and preconditioner == "auto")
    if engine == "voxel":
        if named:
            raise ValueError(f"the voxel engine preconditions with geometric multigrid; "
                             f"preconditioner {preconditioner!r} belongs to the unstructured "
                             f"path: drop it (preconditioner 'auto') or use solver "
                             f"'unstructured'")
        return "voxel", mesh_grid(mesh)
    if engine == "auto" and not named:
        try:
            return "voxel", mesh_grid(mesh)
        except NotGridAligned as err:
            log.info("remodelling: unstructured path (%s)", err)
    return "unstructured", None


def _voxel_solver(solver) -> VoxelPCG:
    if isinstance(solver, VoxelPCG):
        return solver
    return VoxelPCG(rtol=solver.rtol, atol=solver.atol, max_iter=solver.max_iter,
                    mixed_precision=bool(getattr(solver, "mixed_precision", False)))


def stimulus_engine(stim: MechanicalStimulus) -> str:
    """``"voxel"`` or ``"unstructured"``: the engine of ``stim``'s solves."""
    return "voxel" if isinstance(stim.solver, VoxelPCG) else "unstructured"


def pose_case(mesh: Mesh, case, E0, *, nu: float = 0.3, preconditioner="auto",
              weight: float = 1.0, force_N: float = 1.0, refreshable: bool = False) -> PosedCase:
    """Pose ``mesh`` for the load case ``case`` (:class:`febone.strength.LoadCase`) at a unit
    displacement and build its solver data (host side, once).

    Args:
        mesh: the bone with the case's node sets.
        case: the load case (pose, node sets, load axis); a femur case is mirrored for a
            left femur (:meth:`febone.strength.LoadCase.sided`).
        E0: (n_elements,) moduli the preconditioner is built for, MPa.
        nu: Poisson's ratio.
        preconditioner: ``"auto"``, ``"amg"`` or ``"jacobi"``
            (:func:`febone.solve.amg.make_preconditioner`).
        weight: share of the daily loading (habitual cases).
        force_N: target force, N (habitual cases).
        refreshable: an AMG hierarchy that the remodelling loop can refresh on the device for
            new moduli (:func:`febone.solve.amg_refresh.refresh`); habitual cases ask for it.
    """
    from ..solve.amg import make_preconditioner

    case, _ = case.sided(mesh)        # a left femur is loaded as the mirror of a right one
    posed = case.posed(mesh)
    model = FEModel.from_mesh(posed)
    mat = LinearElastic.create(np.asarray(E0, dtype=np.float64), nu, mesh.n_elements)
    bcs = case.boundary_conditions(posed, displacement_mm=1.0)
    pre = make_preconditioner(preconditioner, model, mat, bcs, refreshable=refreshable)
    return PosedCase(model, bcs, pre, jnp.asarray(node_set(posed, case.loaded)),
                     "xyz".index(case.axis), case.load_sign(posed), float(weight),
                     jnp.asarray(force_N))


def case_stiffness(c: PosedCase | VoxelCase, material: LinearElastic, u):
    """Measured force of ``c`` at its unit displacement, N/mm (the case's stiffness), from the
    solution ``u`` (n_nodes, 3) mm (traceable)."""
    if isinstance(c, VoxelCase):
        return voxel_stiffness(c, material.E, material.nu, u)
    return c.sign * reaction_forces(c.model, material, c.bcs, u)[c.loaded, c.axis].sum()


def case_sed(c: PosedCase | VoxelCase, material: LinearElastic, u):
    """(n_elements,) strain energy density of ``u`` (n_nodes, 3) mm, MPa (traceable)."""
    if isinstance(c, VoxelCase):
        return voxel_sed(c, material.E, material.nu, u)
    return element_fields(c.model, material, u).sed


def case_von_mises(c: PosedCase | VoxelCase, material: LinearElastic, u):
    """(n_elements,) von Mises stress of ``u`` (n_nodes, 3) mm, MPa."""
    if isinstance(c, VoxelCase):
        return voxel_von_mises(c, material.E, material.nu, u)
    return element_fields(c.model, material, u).von_mises


def case_volumes(c: PosedCase | VoxelCase):
    """(n_elements,) element volumes of ``c``'s bone, mm³."""
    return c.volumes if isinstance(c, VoxelCase) else c.model.volumes


def case_solve(c: PosedCase | VoxelCase, material: LinearElastic, u0, solver):
    """Unit-displacement solution of ``c`` from the warm start ``u0`` (n_nodes, 3) mm:
    ``(u, converged)`` (traceable; ``solver`` a :class:`PCG` or, for a voxel case, a
    :class:`febone.voxel.VoxelPCG`)."""
    if isinstance(c, VoxelCase):
        return voxel_solve(c, material.E, material.nu, u0, _voxel_solver(solver))
    sol = solve(c.model, material, c.bcs, solver=solver, preconditioner=c.preconditioner,
                u0=u0, throw=False, check_supports=False)
    return sol.u, sol.stats.converged


def _smooth(stim: MechanicalStimulus, psi):
    """Element → node (volume-weighted) → element (mean of corners) average of ``psi``."""
    n_nodes = stim.node_weight.shape[0]
    vals = jnp.broadcast_to((psi * stim.volumes)[:, None], stim.smooth_nodes.shape)
    nodal = jnp.zeros(n_nodes, psi.dtype).at[stim.smooth_nodes].add(vals) / stim.node_weight
    return nodal[stim.smooth_nodes].mean(axis=1)


def lazy_zone(ratio, width):
    """Stimulus ratio Ψ/Ψ̆ with a dead band ("lazy zone", Carter 1987; Huiskes et al. 1987) of
    ±``width`` around homeostasis: 1 inside the band, shifted towards 1 by ``width`` outside it
    (continuous). Under the SED stimulus, elements in parallel with stiffer ones lose strain
    energy as they lose density, so without a band the homeostatic state of a heterogeneous bone
    is unstable and round-off of the FE solves grows into density drift over decades; the band
    makes small perturbations neutral while disuse and overload beyond it still act. The strain
    stimulus (SED/E, the default of the FE loop) needs no band.

    Args:
        ratio: Ψ/Ψ̆, any shape (dimensionless).
        width: half-width of the band (fraction, ≥ 0; 0 = no band).
    """
    d = ratio - 1.0
    return 1.0 + jnp.sign(d) * jnp.maximum(jnp.abs(d) - width, 0.0)


def habitual_sed(stim: MechanicalStimulus, E, nu, u_prev):
    """Habitual strain energy density of every element (traceable; call inside ``jit``).

    Args:
        stim: :class:`MechanicalStimulus` from :func:`build_stimulus`.
        E: (n_elements,) current moduli, MPa.
        nu: Poisson's ratio (scalar).
        u_prev: tuple of (n_nodes, 3) unit-load displacements of the previous step (warm
            starts), mm, one per case.

    Returns:
        ``(psi, u, forces, ok)``: psi (n_elements,) weighted SED at the target forces, MPa;
        u the new unit-displacement solutions (tuple); forces (n_cases,) reaction of each case at
        unit displacement, N/mm (its stiffness); ok: bool scalar, every solve converged.
    """
    def solve_case(c, mat, u0, _):
        return (*case_solve(c, mat, u0, stim.solver), None)

    return _habitual(stim, E, nu, u_prev, (None,) * len(stim.cases), solve_case)[:4]


def habitual_sed_relayed(stim: MechanicalStimulus, E, nu, u_prev, relay):
    """:func:`habitual_sed` whose reverse pass warm-starts each adjoint solve from the next
    time step's (:func:`febone.solve.relay.solve_relayed`): carry ``relay`` (one (n_nodes, 3)
    array per case, zeros at the start) from step to step. Reverse mode only. A voxel case
    solves as :func:`habitual_sed` does (its adjoint starts from the forward warm start) and
    carries its relay unchanged.

    Returns:
        ``(psi, u, forces, ok, relay)``.
    """
    def solve_case(c, mat, u0, r):
        if isinstance(c, VoxelCase):
            return (*case_solve(c, mat, u0, stim.solver), r)
        return solve_relayed(c.model, mat, c.bcs, u0, r, solver=stim.solver,
                             preconditioner=c.preconditioner)

    return _habitual(stim, E, nu, u_prev, relay, solve_case)


def _habitual(stim, E, nu, u_prev, relay, solve_case):
    mat = LinearElastic(E, jnp.asarray(nu, E.dtype))
    psi = jnp.zeros_like(E)
    us, forces, relays, ok = [], [], [], jnp.asarray(True)
    for c, u0, r in zip(stim.cases, u_prev, relay):
        u, converged, r = solve_case(c, mat, u0, r)
        k = case_stiffness(c, mat, u)                            # N per mm of displacement
        scale = c.force_N / k
        sed = case_sed(c, mat, u)
        psi = psi + c.weight * scale ** 2 * (sed if stim.quantity == "sed" else sed / E)
        us.append(u)
        forces.append(k)
        relays.append(r)
        ok = ok & converged & (k > 0)
    if stim.quantity == "effective-strain":                      # RMS over the cases
        psi = jnp.sqrt(jnp.maximum(2.0 * psi, jnp.finfo(psi.dtype).tiny))
    if stim.smooth_nodes is not None:
        psi = _smooth(stim, psi)
    return psi, tuple(us), jnp.stack(forces), ok, tuple(relays)

"""The two engines a strength analysis solves on: the unstructured path and the voxel engine.

Both answer the same four questions for the posed bone, in the mesh's own numbering and in
the posed frame (the load case's axes): the displacement for moduli and conditions
(:meth:`solve`), the reactions, the element fields, and the element volumes. So every load
case and every criterion of :func:`febone.strength.strength` (and the nonlinear analysis)
runs on either.

* :class:`UnstructuredEngine`: :class:`febone.FEModel` of the posed mesh, element-by-element
  operator, CG with AMG or Jacobi (:func:`febone.solve`). Any tet4/tet10/hex8 mesh.
* :class:`VoxelEngine`: a grid-aligned hex8 mesh (:func:`febone.voxel.from_mesh.mesh_grid`)
  as a voxel model whose displacement components are the pose's axes
  (:meth:`febone.voxel.VoxelModel.in_frame`), the grid itself never rotated; matrix-free
  structured operator and geometric-multigrid CG (:func:`febone.voxel.solve_voxel`). The
  same elements, so the same answers to the solver tolerance.

:func:`build_engine` picks one: ``solver="auto"`` (default) takes the voxel engine for a
grid-aligned hex8 mesh when no unstructured preconditioner was asked for, else the
unstructured path; ``"voxel"`` insists (and says why a mesh does not qualify);
``"unstructured"`` never uses the voxel engine. A :class:`febone.PCG` means the
unstructured path with that strategy, a :class:`febone.voxel.VoxelPCG` the voxel engine.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..fe.bc import BoundaryConditions
from ..fe.model import FEModel
from ..fe.post import ElementFields, element_fields, reaction_forces
from ..material.elastic import LinearElastic
from ..mesh.mesh import Mesh
from ..solve.constraints import check_constraints
from ..solve.linear import solve
from ..solve.pcg import PCG
from ..solve.solution import Solution
from ..voxel.fields import voxel_fields
from ..voxel.from_mesh import MeshGrid, NotGridAligned, mesh_grid
from ..voxel.grid import VoxelModel
from ..voxel.solve import VoxelPCG, solve_voxel, voxel_reactions

__all__ = ["SOLVERS", "UnstructuredEngine", "VoxelEngine", "build_engine"]

log = logging.getLogger(__name__)

#: the engine choices of ``strength(solver=...)`` and ``febone strength --solver``
SOLVERS = ("auto", "voxel", "unstructured")

#: coarsest multigrid level of the voxel engine: at most this many nodes. Its dense inverse is
#: recomputed at every solve (the moduli change), O((3n)³): on the bundled coarse femur in
#: sideways fall (20k dofs, 2 loaded CPU cores) a warm solve took 2.2 s with febone.voxel's
#: default of 700 nodes, 0.9 s with 200 and 0.2 s with 64, all in 19 CG iterations.
COARSE_NODES = 64


class _Sizes:
    """Node, element and dof counts of an engine from its ``_geometry()``: the posed mesh's
    (n_nodes, 3) points and (n_elements, n_en) cells."""

    @property
    def n_nodes(self) -> int:
        return int(self._geometry()[0].shape[0])

    @property
    def n_elements(self) -> int:
        return int(self._geometry()[1].shape[0])

    @property
    def n_dofs(self) -> int:
        return 3 * self.n_nodes


@dataclass(frozen=True)
class UnstructuredEngine(_Sizes):
    """The unstructured path on the posed mesh.

    Attributes:
        model: :class:`febone.FEModel` of the posed mesh.
        nu: Poisson's ratio.
        preconditioner: ``preconditioner`` of :func:`febone.solve` (built once), or None.
        solver: :class:`febone.PCG` of the analysis' linear solve (None: the default).
        precision: precision mode of that solve (:mod:`febone.precision`).
    """

    model: FEModel
    nu: float
    preconditioner: object = None
    solver: PCG | None = None
    precision: str | None = None
    name: ClassVar[str] = "unstructured"

    def solve(self, E, bcs: BoundaryConditions, *, u0=None, rtol: float | None = None,
              check_supports: bool = True) -> Solution:
        """Displacements (n_nodes, 3) mm for moduli ``E`` (n_elements,) MPa. ``rtol``: solve
        with a default float64 CG at this tolerance instead of the analysis' strategy."""
        solver, precision = (PCG(rtol=rtol), None) if rtol is not None else \
            (self.solver, self.precision)
        return solve(self.model, LinearElastic(jnp.asarray(E), self.nu), bcs, solver=solver,
                     preconditioner=self.preconditioner, u0=u0, check_supports=check_supports,
                     precision=precision)

    def reactions(self, E, bcs: BoundaryConditions, u) -> jax.Array:
        """(n_nodes, 3) reactions K u − f, N."""
        return reaction_forces(self.model, LinearElastic(jnp.asarray(E), self.nu), bcs, u)

    def fields(self, E, u) -> ElementFields:
        """Element fields (n_elements, ...) of displacements ``u``."""
        return element_fields(self.model, LinearElastic(jnp.asarray(E), self.nu), u)

    @property
    def volumes(self) -> np.ndarray:
        """(n_elements,) element volumes, mm³."""
        return np.asarray(self.model.volumes)

    def _geometry(self):
        return self.model.points, self.model.cells


@dataclass(frozen=True)
class VoxelEngine(_Sizes):
    """The voxel engine on a grid-aligned hex8 mesh, in the load case's pose.

    Attributes:
        layout: :class:`~febone.voxel.from_mesh.MeshGrid` (mesh ↔ grid numbering).
        model: :class:`febone.voxel.VoxelModel` of the grid, its frame the pose.
        nu: Poisson's ratio.
        points: (n_nodes, 3) posed node coordinates, mm (the support check's).
        cells: (n_elements, 8) node ids (the support check's).
        solver: :class:`febone.voxel.VoxelPCG` of the analysis' linear solve (None: default).
        precision: precision mode of that solve.
    """

    layout: MeshGrid
    model: VoxelModel
    nu: float
    points: np.ndarray
    cells: np.ndarray
    solver: VoxelPCG | None = None
    precision: str | None = None
    name: ClassVar[str] = "voxel"

    def solve(self, E, bcs: BoundaryConditions, *, u0=None, rtol: float | None = None,
              check_supports: bool = True) -> Solution:
        """As :meth:`UnstructuredEngine.solve`, in the mesh's numbering."""
        if check_supports:
            check_constraints(self.points, self.cells, np.asarray(bcs.fixed))
        solver, precision = (VoxelPCG(rtol=rtol), None) if rtol is not None else \
            (self.solver, self.precision)
        lay = self.layout
        sol = solve_voxel(self.model, lay.voxel_values(E), lay.grid_conditions(bcs), nu=self.nu,
                          solver=solver, u0=None if u0 is None else lay.grid_nodal(u0),
                          precision=precision)
        return Solution(lay.mesh_nodal(sol.u), sol.stats)

    def reactions(self, E, bcs: BoundaryConditions, u) -> jax.Array:
        """(n_nodes, 3) reactions K u − f, N, in the mesh's numbering."""
        lay = self.layout
        r = voxel_reactions(self.model, lay.voxel_values(E), lay.grid_conditions(bcs),
                            lay.grid_nodal(u), nu=self.nu)
        return lay.mesh_nodal(r)

    def fields(self, E, u) -> ElementFields:
        """Element fields (n_elements, ...) in the mesh's element order."""
        lay = self.layout
        f = voxel_fields(self.model, lay.voxel_values(E), jnp.asarray(self.nu), lay.grid_nodal(u))
        return jax.tree_util.tree_map(lay.element_values, f)

    @property
    def volumes(self) -> np.ndarray:
        """(n_elements,) element volumes (one voxel each), mm³."""
        return np.full(self.n_elements, float(np.prod(self.model.voxel_size)))

    def _geometry(self):
        return self.points, self.cells


def _choice(solver) -> str:
    """"auto", "voxel" or "unstructured" from the ``solver`` argument."""
    if solver is None:
        return "auto"
    if isinstance(solver, VoxelPCG):
        return "voxel"
    if isinstance(solver, PCG):
        return "unstructured"
    if isinstance(solver, str) and solver in SOLVERS:
        return solver
    raise ValueError(f"solver must be one of {list(SOLVERS)}, a febone.PCG (unstructured) or a "
                     f"febone.voxel.VoxelPCG (voxel engine); got {solver!r}")


def build_engine(solver, mesh: Mesh, posed: Mesh, pose, E, nu, bcs: BoundaryConditions, *,
                 preconditioner="auto", precision: str | None = None):
    """The engine of one analysis.

    Args:
        solver: ``"auto"`` (or None), ``"voxel"``, ``"unstructured"``, a :class:`febone.PCG`
            or a :class:`febone.voxel.VoxelPCG` (see the module docstring).
        mesh: the bone in its own frame (the grid's, for the voxel engine).
        posed: the same mesh in the loading pose.
        pose: (3, 3) rotation from ``mesh`` to ``posed`` (:attr:`LoadCase.pose`).
        E: (n_elements,) moduli, MPa (the AMG hierarchy is built for them).
        nu: Poisson's ratio.
        bcs: the analysis' conditions on ``posed`` (for the AMG hierarchy).
        preconditioner: of the unstructured path: ``"auto"``, ``"amg"``, ``"jacobi"`` or an
            object (:func:`febone.solve`). ``"auto"`` lets ``solver="auto"`` take the voxel
            engine, whose preconditioner is geometric multigrid; naming an unstructured one
            (or passing an object) keeps auto on the unstructured path.
        precision: precision mode of the linear solve.

    Returns:
        :class:`VoxelEngine` or :class:`UnstructuredEngine`.

    Raises:
        NotGridAligned: ``solver="voxel"`` on a mesh that is not grid-aligned hex8 (the
            message says why and to use the unstructured path).
        ValueError: an unknown solver, or ``"voxel"`` with an unstructured preconditioner.
    """
    choice = _choice(solver)
    layout = None
    if choice == "voxel":
        if not (isinstance(preconditioner, str) and preconditioner == "auto"):
            raise ValueError(f"the voxel engine preconditions with geometric multigrid; "
                             f"preconditioner {preconditioner!r} belongs to the unstructured "
                             f"path: drop it (--preconditioner auto) or use --solver unstructured")
        layout = mesh_grid(mesh)
    elif choice == "auto" and isinstance(preconditioner, str) and preconditioner == "auto":
        try:
            layout = mesh_grid(mesh)
        except NotGridAligned as err:
            log.info("strength: unstructured path (%s)", err)
    if layout is not None:
        model = VoxelModel.create(layout.grid, max_coarse_nodes=COARSE_NODES).in_frame(pose)
        return VoxelEngine(layout, model, float(nu), np.asarray(posed.points),
                           np.asarray(posed.cells), solver if isinstance(solver, VoxelPCG)
                           else None, precision)
    model = FEModel.from_mesh(posed)
    if isinstance(preconditioner, str):
        from ..solve.amg import make_preconditioner

        preconditioner = make_preconditioner(preconditioner, model,
                                             LinearElastic.create(E, nu, mesh.n_elements), bcs)
    return UnstructuredEngine(model, nu, preconditioner, solver if isinstance(solver, PCG)
                              else None, precision)

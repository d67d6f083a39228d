"""A habitual (or strength) load case on the voxel engine, for the remodelling loop.

A grid-aligned hex8 bone (:func:`febone.voxel.from_mesh.mesh_grid`: the bundled bones are) is
solved by the loop on the matrix-free voxel engine instead of the unstructured path: the same
elements on the same boxes, so the same answers to the CG tolerance. :class:`VoxelCase` holds
the voxel model posed for the case (:meth:`febone.voxel.VoxelModel.in_frame`: displacement
components along the pose's axes, the grid itself unrotated), the case's unit-displacement
conditions over the grid nodes, and the maps between the mesh's numbering and the grid's. The
loop keeps its state (moduli, stimulus, displacements) in the mesh's numbering; each solve
permutes in and out (two gathers), so outputs, checkpoints and ``--resume`` are those of the
unstructured path.

No host work in the loop: the geometric-multigrid hierarchy (Galerkin coarse operators,
Chebyshev bounds, coarse inverse) is set up on the device from the moduli, either inside every
compiled solve (:func:`febone.voxel.solve_voxel`, :func:`febone.voxel.multigrid.setup_multigrid`;
a case without a kept hierarchy: the differentiable study) or once per output
(:func:`with_hierarchy`: ``febone run``'s loop keeps each case's hierarchy and refreshes it at
its outputs, as it refreshes the unstructured path's AMG); gradients pass through the solve by
implicit differentiation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..fe.bc import BoundaryConditions
from ..mesh.mesh import Mesh
from ..mesh.nodesets import node_set
from ..voxel.fields import voxel_fields
from ..voxel.from_mesh import MeshGrid
from ..voxel.grid import VoxelModel
from ..voxel.operator import apply_stiffness, element_energy, element_stiffness
from ..voxel.solve import VoxelPCG, solve_voxel, voxel_hierarchy

__all__ = ["VoxelCase", "pose_voxel_case", "voxel_solve", "voxel_stiffness", "voxel_sed",
           "voxel_von_mises", "with_hierarchy", "COARSE_NODES"]

#: coarsest multigrid level of the loop's voxel models: at most this many nodes (its dense
#: inverse is recomputed at every solve, O((3n)³); the strength engine's choice,
#: :data:`febone.strength.engines.COARSE_NODES`).
COARSE_NODES = 64


@dataclass(frozen=True)
class VoxelCase:
    """A load case posed on a grid-aligned bone for the voxel engine (a pytree).

    Attributes:
        model: :class:`febone.voxel.VoxelModel` whose frame is the case's pose.
        bcs: unit-displacement (1 mm) conditions over the grid nodes.
        grid_to_node: (n_nodes,) int32 mesh node of each grid node.
        node_to_grid: (n_nodes,) int32 grid node of each mesh node.
        voxel_to_element: (n_elements,) int32 element of each voxel.
        element_to_voxel: (n_elements,) int32 voxel of each element.
        loaded: (n_loaded,) grid node ids whose reactions make the measured force.
        volume: volume of one voxel (= element), mm³ (static).
        axis: load axis (0, 1, 2; static); sign: +1/−1 so the measured force is positive.
        weight: share of the daily loading (habitual cases; static).
        force_N: target force, N.
        hierarchy: multigrid data kept between solves (:func:`with_hierarchy`), or ``None``:
            set up from the current moduli inside every solve.
    """

    model: VoxelModel
    bcs: BoundaryConditions
    grid_to_node: jax.Array
    node_to_grid: jax.Array
    voxel_to_element: jax.Array
    element_to_voxel: jax.Array
    loaded: jax.Array
    volume: float = field(metadata=dict(static=True))
    axis: int = field(metadata=dict(static=True))
    sign: float = field(metadata=dict(static=True))
    weight: float = field(metadata=dict(static=True))
    force_N: jax.Array
    hierarchy: object = None

    @property
    def volumes(self) -> jax.Array:
        """(n_elements,) element volumes, mm³."""
        return jnp.full(self.voxel_to_element.shape, self.volume)


_static = [f.name for f in fields(VoxelCase) if f.metadata.get("static")]
jax.tree_util.register_dataclass(
    VoxelCase, data_fields=[f.name for f in fields(VoxelCase) if f.name not in _static],
    meta_fields=_static)


def pose_voxel_case(mesh: Mesh, layout: MeshGrid, case, *, weight: float = 1.0,
                    force_N: float = 1.0) -> VoxelCase:
    """Pose the grid-aligned ``mesh`` for the load case ``case`` at a unit displacement
    (host side, once).

    Args:
        mesh: the bone with the case's node sets, in its own (the grid's) frame.
        layout: ``mesh_grid(mesh)``.
        case: :class:`febone.strength.LoadCase`; a femur case is mirrored for a left femur.
        weight: share of the daily loading (habitual cases).
        force_N: target force, N (habitual cases).
    """
    case, _ = case.sided(mesh)
    posed = case.posed(mesh)
    bcs = case.boundary_conditions(posed, displacement_mm=1.0)
    model = VoxelModel.create(layout.grid, max_coarse_nodes=COARSE_NODES).in_frame(case.pose)
    i32 = lambda a: jnp.asarray(np.asarray(a, dtype=np.int32))  # noqa: E731
    loaded = np.asarray(layout.node_to_grid)[node_set(posed, case.loaded)]
    return VoxelCase(model, layout.grid_conditions(bcs), i32(layout.grid_to_node),
                     i32(layout.node_to_grid), i32(layout.voxel_to_element),
                     i32(layout.element_to_voxel), i32(loaded),
                     float(np.prod(layout.grid.voxel_size)), "xyz".index(case.axis),
                     case.load_sign(posed), float(weight), jnp.asarray(force_N))


def voxel_solve(c: VoxelCase, E, nu, u0, solver: VoxelPCG):
    """Unit-displacement solution of ``c`` (traceable).

    Args:
        E: (n_elements,) moduli, MPa (mesh order).
        nu: Poisson's ratio.
        u0: (n_nodes, 3) warm start, mm (mesh numbering, posed frame).
        solver: :class:`febone.voxel.VoxelPCG`.

    Returns:
        ``(u, converged)``: (n_nodes, 3) mm in the mesh's numbering, bool scalar.
    """
    sol = solve_voxel(c.model, E[c.voxel_to_element], c.bcs, nu=nu, solver=solver,
                      u0=u0[c.grid_to_node], throw=False, hierarchy=c.hierarchy)
    return sol.u[c.node_to_grid], sol.stats.converged


def with_hierarchy(c: VoxelCase, E, nu, solver: VoxelPCG) -> VoxelCase:
    """``c`` keeping the multigrid hierarchy of the moduli ``E`` ((n_elements,) MPa, mesh
    order; their dtype is the solves' precision) for its later solves (on the device; one
    compiled set-up, the same shapes at every refresh). A solve with a kept hierarchy differs
    from one set up from its own moduli only in the CG iterates, within the solver's
    tolerance."""
    return replace(c, hierarchy=_set_up(replace(c, hierarchy=None), E, nu, solver))


@partial(jax.jit, static_argnames=("solver",))
def _set_up(c: VoxelCase, E, nu, solver: VoxelPCG):
    return voxel_hierarchy(c.model, E[c.voxel_to_element], nu, c.bcs.fixed, solver, E.dtype)


def voxel_stiffness(c: VoxelCase, E, nu, u):
    """Measured force of ``c`` at its unit displacement, N/mm, from ``u`` (n_nodes, 3) mm in
    the mesh's numbering (reactions K u on the loaded nodes; traceable)."""
    Ke = element_stiffness(c.model.voxel_size, nu, u.dtype, c.model.frame)
    r = apply_stiffness(c.model.fine, Ke, E[c.voxel_to_element].astype(u.dtype),
                        u[c.grid_to_node])
    return c.sign * r[c.loaded, c.axis].sum()


def voxel_sed(c: VoxelCase, E, nu, u):
    """(n_elements,) strain energy density ½ uᵉᵀ Kᵉ uᵉ / V, MPa, of ``u`` (mesh numbering): the
    volume average over the 2×2×2 Gauss points, as :func:`febone.fe.post.element_fields`'s."""
    Ke = element_stiffness(c.model.voxel_size, nu, u.dtype, c.model.frame)
    energy = element_energy(c.model.fine, Ke, u[c.grid_to_node])[c.element_to_voxel]
    return 0.5 * E * energy / c.volume


def voxel_von_mises(c: VoxelCase, E, nu, u):
    """(n_elements,) von Mises stress, MPa, of ``u`` (mesh numbering)."""
    f = voxel_fields(c.model, E[c.voxel_to_element], jnp.asarray(nu, E.dtype),
                     u[c.grid_to_node])
    return f.von_mises[c.element_to_voxel]

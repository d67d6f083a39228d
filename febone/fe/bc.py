"""Boundary conditions: fixed components, prescribed displacements, nodal and surface loads.

Everything is stored as dense (n_nodes, 3) arrays so the compiled solve sees fixed shapes;
building them happens once on the host.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import numpy as np

from ..mesh.mesh import Mesh
from ..mesh.topology import boundary_faces
from ..mesh.elements import FACE_ELEMENTS

__all__ = ["BoundaryConditions", "surface_load"]

_AXES = {"x": 0, "y": 1, "z": 2}


def _components(spec: str) -> list[int]:
    spec = spec.lower()
    if not spec or any(c not in _AXES for c in spec):
        raise ValueError(f"components must be letters from 'xyz' (e.g. 'xz'); got {spec!r}")
    return [_AXES[c] for c in spec]


def _nodes(nodes, n_nodes: int) -> np.ndarray:
    ids = np.unique(np.asarray(nodes, dtype=np.int64).ravel())
    if ids.size == 0:
        raise ValueError("empty node set: a boundary condition needs at least one node")
    if ids.min() < 0 or ids.max() >= n_nodes:
        raise ValueError(f"node ids must lie in 0..{n_nodes - 1}; got {ids.min()}..{ids.max()}")
    return ids


@dataclass(frozen=True)
class BoundaryConditions:
    """Dirichlet and Neumann conditions on the nodes of a mesh.

    Attributes:
        fixed: (n_nodes, 3) bool, True where the displacement component is prescribed.
        values: (n_nodes, 3) prescribed displacement, mm (0 where not fixed).
        forces: (n_nodes, 3) external nodal forces, N.

    Build with :meth:`empty` and chain :meth:`fix`, :meth:`displace`, :meth:`add_force`,
    :meth:`add_nodal_forces`; each returns a new object.
    """

    fixed: jax.Array
    values: jax.Array
    forces: jax.Array

    @classmethod
    def empty(cls, n_nodes: int) -> "BoundaryConditions":
        z = np.zeros((n_nodes, 3))
        return cls(np.zeros((n_nodes, 3), dtype=bool), z, z.copy())

    @property
    def n_nodes(self) -> int:
        return int(self.fixed.shape[0])

    def fix(self, nodes, components: str = "xyz", *,
            name: str | None = None) -> "BoundaryConditions":
        """Zero displacement in ``components`` (e.g. ``"z"``, ``"xyz"``) at ``nodes``.

        ``name`` (the node set's name) only labels the error of a conflicting condition."""
        if not components:
            return self
        return self.displace(nodes, **{"xyz"[k]: 0.0 for k in _components(components)}, name=name)

    def displace(self, nodes, x: float | None = None, y: float | None = None,
                 z: float | None = None, *, name: str | None = None) -> "BoundaryConditions":
        """Prescribe displacement components (mm) at ``nodes``; ``None`` leaves a component free.

        Raises:
            ValueError: a component already prescribed at one of the nodes with another value
                (e.g. fixed, then displaced): the message names the set (``name``), the
                components and both values.
        """
        ids = _nodes(nodes, self.n_nodes)
        fixed, values = np.array(self.fixed), np.array(self.values, dtype=float)
        given = {k: v for k, v in (("x", x), ("y", y), ("z", z)) if v is not None}
        if not given:
            raise ValueError("displace: give at least one of x, y, z (mm)")
        clashes = []
        for axis, v in given.items():
            if not np.isfinite(v):
                raise ValueError(f"prescribed displacement {axis}={v} is not finite")
            k = _AXES[axis]
            clash = ids[fixed[ids, k] & (values[ids, k] != float(v))]
            if clash.size:
                clashes.append(f"{axis} (already {values[clash[0], k]:g} mm at {clash.size} of its "
                               f"{ids.size} nodes, e.g. node {clash[0]}; now {float(v):g} mm)")
            fixed[ids, k] = True
            values[ids, k] = float(v)
        if clashes:
            where = f"node set {name!r}" if name else f"a set of {ids.size} nodes"
            raise ValueError(f"conflicting boundary conditions on {where}: displacement "
                             f"{'; '.join(clashes)}. A component is either fixed or displaced, "
                             f"once: drop one of the two conditions or use node sets that do not "
                             f"overlap")
        return replace(self, fixed=fixed, values=values)

    def add_force(self, nodes, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> "BoundaryConditions":
        """Add a total force (N) shared equally by ``nodes``."""
        ids = _nodes(nodes, self.n_nodes)
        total = np.array([x, y, z], dtype=float)
        if not np.all(np.isfinite(total)):
            raise ValueError(f"force {total.tolist()} N is not finite")
        f = np.array(self.forces, dtype=float)
        f[ids] += total / ids.size
        return replace(self, forces=f)

    def add_nodal_forces(self, forces) -> "BoundaryConditions":
        """Add a (n_nodes, 3) array of nodal forces, N (e.g. from :func:`surface_load`)."""
        forces = np.asarray(forces, dtype=float)
        if forces.shape != (self.n_nodes, 3):
            raise ValueError(f"nodal forces must have shape ({self.n_nodes}, 3); got {forces.shape}")
        if not np.all(np.isfinite(forces)):
            raise ValueError("nodal forces contain NaN/inf")
        return replace(self, forces=np.asarray(self.forces) + forces)


jax.tree_util.register_dataclass(BoundaryConditions, data_fields=["fixed", "values", "forces"],
                                 meta_fields=[])


def surface_load(mesh: Mesh, nodes, *, traction=None, pressure: float | None = None) -> np.ndarray:
    """Consistent nodal forces of a load on the boundary faces whose nodes all lie in ``nodes``.

    Args:
        mesh: the mesh.
        nodes: node ids of the loaded surface patch.
        traction: (3,) traction vector, MPa (N/mm²), constant over the patch.
        pressure: normal pressure, MPa; positive pushes into the body (t = −p n).

    Returns:
        (n_nodes, 3) nodal forces, N; their sum equals traction × patch area.

    Raises:
        ValueError: if no boundary face lies entirely in ``nodes``, or neither/both loads given.
    """
    if (traction is None) == (pressure is None):
        raise ValueError("surface_load: give exactly one of traction (3,) MPa or pressure MPa")
    faces, _ = boundary_faces(mesh)
    member = np.zeros(mesh.n_nodes, dtype=bool)
    member[np.asarray(nodes, dtype=np.int64)] = True
    faces = faces[member[faces].all(axis=1)]
    if len(faces) == 0:
        raise ValueError("surface_load: no boundary face has all its nodes in the given set; "
                         "the set must cover whole faces of the outer surface")
    ref = FACE_ELEMENTS[mesh.element.face_type]
    N = ref.shape_at_quadrature()  # (nq, nfn)
    dN = ref.dshape_at_quadrature()  # (nq, nfn, 2)
    X = mesh.points[faces]  # (nf, nfn, 3)
    tangents = np.einsum("qak,faj->fqkj", dN, X)  # (nf, nq, 2, 3)
    normal_area = np.cross(tangents[:, :, 0], tangents[:, :, 1])  # n dA / dξdη, outward
    if traction is not None:
        t = np.broadcast_to(np.asarray(traction, float), (3,))
        load = np.linalg.norm(normal_area, axis=-1)[..., None] * t  # (nf, nq, 3)
    else:
        load = -float(pressure) * normal_area
    f_face = np.einsum("q,qa,fqj->faj", ref.quad_weights, N, load)
    out = np.zeros((mesh.n_nodes, 3))
    np.add.at(out, faces.ravel(), f_face.reshape(-1, 3))
    return out

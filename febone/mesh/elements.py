"""Reference elements: shape functions, their derivatives and quadrature rules.

They live with the mesh, which needs them to name and check its cells (Jacobians at the
quadrature points); the FE layer (:mod:`febone.fe`) builds its kernels from them.

Supported volume elements (VTK node order, as meshio and ParaView use):

* ``tetra``    (tet4):  linear tetrahedron, 1-point rule (exact for its constant strain).
* ``tetra10``  (tet10): quadratic tetrahedron, 4-point rule (degree 2, exact stiffness
  for straight-sided elements).
* ``hexahedron`` (hex8): trilinear hexahedron, 2×2×2 Gauss rule.

Surface (face) elements, for tractions and pressures:

* ``triangle`` (tri3), ``triangle6`` (tri6), ``quad`` (quad4).

Reference coordinates: tetrahedra and triangles use the unit simplex
(ξ, η, ζ ≥ 0, ξ + η + ζ ≤ 1); hexahedra and quads use [−1, 1]^d.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["ReferenceElement", "ELEMENTS", "FACE_ELEMENTS", "element"]


@dataclass(frozen=True)
class ReferenceElement:
    """A reference element.

    Attributes:
        name: meshio cell-type name (``"tetra"``, ``"tetra10"``, ``"hexahedron"``, ...).
        dim: reference dimension (3 for volume, 2 for faces).
        n_nodes: nodes per element.
        n_corners: corner (vertex) nodes, which come first in the node order.
        shape: ``shape(xi) -> (n_nodes,)`` shape function values at one point ``xi: (dim,)``.
        dshape: ``dshape(xi) -> (n_nodes, dim)`` derivatives w.r.t. reference coordinates.
        quad_points: (n_q, dim) quadrature points.
        quad_weights: (n_q,) quadrature weights (sum = reference volume/area).
        faces: (n_faces, n_face_nodes) local node ids of each face, outward normal by the
            right-hand rule (empty for face elements).
        face_type: meshio name of the face element.
    """

    name: str
    dim: int
    n_nodes: int
    n_corners: int
    shape: Callable[[np.ndarray], np.ndarray]
    dshape: Callable[[np.ndarray], np.ndarray]
    quad_points: np.ndarray
    quad_weights: np.ndarray
    faces: np.ndarray
    face_type: str

    def shape_at_quadrature(self) -> np.ndarray:
        """(n_q, n_nodes) shape function values at the quadrature points."""
        return np.stack([self.shape(q) for q in self.quad_points])

    def dshape_at_quadrature(self) -> np.ndarray:
        """(n_q, n_nodes, dim) reference derivatives at the quadrature points."""
        return np.stack([self.dshape(q) for q in self.quad_points])


# ---------------------------------------------------------------- tetrahedra
def _tet4_shape(x):
    xi, eta, zeta = x
    return np.array([1.0 - xi - eta - zeta, xi, eta, zeta])


def _tet4_dshape(x):
    return np.array([[-1.0, -1.0, -1.0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])


# VTK quadratic tetra: edges (0,1) (1,2) (2,0) (0,3) (1,3) (2,3) -> nodes 4..9
_TET10_EDGES = np.array([[0, 1], [1, 2], [2, 0], [0, 3], [1, 3], [2, 3]])


def _tet10_shape(x):
    L = _tet4_shape(x)
    corners = L * (2.0 * L - 1.0)
    edges = 4.0 * L[_TET10_EDGES[:, 0]] * L[_TET10_EDGES[:, 1]]
    return np.concatenate([corners, edges])


def _tet10_dshape(x):
    L = _tet4_shape(x)
    dL = _tet4_dshape(x)  # (4, 3)
    corners = (4.0 * L - 1.0)[:, None] * dL
    a, b = _TET10_EDGES[:, 0], _TET10_EDGES[:, 1]
    edges = 4.0 * (L[a, None] * dL[b] + L[b, None] * dL[a])
    return np.concatenate([corners, edges])


_TET1_POINTS = np.array([[0.25, 0.25, 0.25]])
_TET1_WEIGHTS = np.array([1.0 / 6.0])
_a, _b = 0.5854101966249685, 0.1381966011250105
_TET4_POINTS = np.array([[_b, _b, _b], [_a, _b, _b], [_b, _a, _b], [_b, _b, _a]])
_TET4_WEIGHTS = np.full(4, 1.0 / 24.0)

# faces with outward normals (right-hand rule) for a positively oriented tetra
_TET_FACES = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
# tri6 face node order: corners then edge mid-nodes (c0c1, c1c2, c2c0)
_TET10_FACES = np.array(
    [[0, 2, 1, 6, 5, 4], [0, 1, 3, 4, 8, 7], [1, 2, 3, 5, 9, 8], [0, 3, 2, 7, 9, 6]]
)

# ---------------------------------------------------------------- hexahedron
_HEX_CORNERS = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
     [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=float
)


def _hex8_shape(x):
    return 0.125 * np.prod(1.0 + _HEX_CORNERS * np.asarray(x)[None, :], axis=1)


def _hex8_dshape(x):
    x = np.asarray(x)
    f = 1.0 + _HEX_CORNERS * x[None, :]  # (8, 3)
    d = np.empty((8, 3))
    for k in range(3):
        others = [j for j in range(3) if j != k]
        d[:, k] = 0.125 * _HEX_CORNERS[:, k] * f[:, others[0]] * f[:, others[1]]
    return d


_g = 1.0 / np.sqrt(3.0)
_HEX_POINTS = np.array([[i, j, k] for k in (-_g, _g) for j in (-_g, _g) for i in (-_g, _g)])
_HEX_WEIGHTS = np.ones(8)
_HEX_FACES = np.array(
    [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]
)

# ---------------------------------------------------------------- faces
def _tri3_shape(x):
    return np.array([1.0 - x[0] - x[1], x[0], x[1]])


def _tri3_dshape(x):
    return np.array([[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]])


_TRI6_EDGES = np.array([[0, 1], [1, 2], [2, 0]])


def _tri6_shape(x):
    L = _tri3_shape(x)
    return np.concatenate([L * (2 * L - 1), 4 * L[_TRI6_EDGES[:, 0]] * L[_TRI6_EDGES[:, 1]]])


def _tri6_dshape(x):
    L = _tri3_shape(x)
    dL = _tri3_dshape(x)
    a, b = _TRI6_EDGES[:, 0], _TRI6_EDGES[:, 1]
    return np.concatenate([(4 * L - 1)[:, None] * dL, 4 * (L[a, None] * dL[b] + L[b, None] * dL[a])])


_QUAD_CORNERS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)


def _quad4_shape(x):
    return 0.25 * np.prod(1.0 + _QUAD_CORNERS * np.asarray(x)[None, :], axis=1)


def _quad4_dshape(x):
    x = np.asarray(x)
    f = 1.0 + _QUAD_CORNERS * x[None, :]
    return 0.25 * np.stack([_QUAD_CORNERS[:, 0] * f[:, 1], _QUAD_CORNERS[:, 1] * f[:, 0]], axis=1)


# 3-point (degree 2) triangle rule; weights sum to 1/2
_TRI3_POINTS = np.array([[1 / 6, 1 / 6], [2 / 3, 1 / 6], [1 / 6, 2 / 3]])
_TRI3_WEIGHTS = np.full(3, 1 / 6)
# 6-point (degree 4) triangle rule (Dunavant)
_w1, _w2 = 0.109951743655322 / 2, 0.223381589678011 / 2
_p1, _p2 = 0.091576213509771, 0.445948490915965
_TRI6_POINTS = np.array(
    [[_p1, _p1], [1 - 2 * _p1, _p1], [_p1, 1 - 2 * _p1], [_p2, _p2], [1 - 2 * _p2, _p2], [_p2, 1 - 2 * _p2]]
)
_TRI6_WEIGHTS = np.array([_w1, _w1, _w1, _w2, _w2, _w2])
_QUAD_POINTS = np.array([[i, j] for j in (-_g, _g) for i in (-_g, _g)])
_QUAD_WEIGHTS = np.ones(4)

_EMPTY = np.zeros((0, 0), dtype=int)

FACE_ELEMENTS: dict[str, ReferenceElement] = {
    "triangle": ReferenceElement("triangle", 2, 3, 3, _tri3_shape, _tri3_dshape,
                                 _TRI3_POINTS, _TRI3_WEIGHTS, _EMPTY, ""),
    "triangle6": ReferenceElement("triangle6", 2, 6, 3, _tri6_shape, _tri6_dshape,
                                  _TRI6_POINTS, _TRI6_WEIGHTS, _EMPTY, ""),
    "quad": ReferenceElement("quad", 2, 4, 4, _quad4_shape, _quad4_dshape,
                             _QUAD_POINTS, _QUAD_WEIGHTS, _EMPTY, ""),
}

ELEMENTS: dict[str, ReferenceElement] = {
    "tetra": ReferenceElement("tetra", 3, 4, 4, _tet4_shape, _tet4_dshape,
                              _TET1_POINTS, _TET1_WEIGHTS, _TET_FACES, "triangle"),
    "tetra10": ReferenceElement("tetra10", 3, 10, 4, _tet10_shape, _tet10_dshape,
                                _TET4_POINTS, _TET4_WEIGHTS, _TET10_FACES, "triangle6"),
    "hexahedron": ReferenceElement("hexahedron", 3, 8, 8, _hex8_shape, _hex8_dshape,
                                   _HEX_POINTS, _HEX_WEIGHTS, _HEX_FACES, "quad"),
}

#: Friendly aliases accepted wherever a cell type is named.
ALIASES = {"tet4": "tetra", "tet10": "tetra10", "hex8": "hexahedron", "hex": "hexahedron",
           "tet": "tetra"}


def element(cell_type: str) -> ReferenceElement:
    """The reference element for a meshio cell-type name or alias (``tet4``, ``tet10``, ``hex8``).

    Raises:
        ValueError: for an unsupported cell type, listing the supported ones.
    """
    name = ALIASES.get(cell_type, cell_type)
    if name not in ELEMENTS:
        raise ValueError(
            f"unsupported cell type {cell_type!r}: febone solves tetra (tet4), tetra10 (tet10) "
            f"and hexahedron (hex8) meshes; convert the mesh (e.g. with gmsh) to one of these"
        )
    return ELEMENTS[name]

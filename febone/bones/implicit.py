"""The :class:`ImplicitBone`: a bone described by functions of position, ready to be meshed.

A generator (:func:`febone.bones.femur`, :func:`febone.bones.vertebra`, ...) returns one;
:func:`febone.bones.mesh_bone` samples it on a grid and builds hex8 or tet4 meshes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

__all__ = ["ImplicitBone"]


@dataclass(frozen=True)
class ImplicitBone:
    """A bone as an implicit surface plus fields, all in mm and g/cm³.

    Attributes:
        name: short name used in file names (``"femur"``, ``"vertebra"``, ...).
        sdf: ``(n, 3) mm -> (n,) mm`` signed distance (approximate away from the surface),
            negative inside the bone.
        density: ``(n, 3) mm -> (n,)`` apparent density ρ_app in g/cm³ (meaningful inside).
        regions: ``(n, 3) mm -> {name: (n,) bool}`` anatomical / DXA regions, evaluated at
            element centroids to give the ``region_<name>`` cell masks.
        node_sets: ``(points (n, 3) mm, on_surface (n,) bool, h mm) -> {name: (n,) bool}``
            load-application node masks (stored as point data).
        lower, upper: (3,) bounding box of the bone, mm.
        grid_anchor: (3,) a point that every sampling grid puts on a node (for instance a
            point of the distal cut plane, so that the cut is a grid plane).
        flat_planes: ``((axis, value, inward), ...)`` planes of the surface that meshing must
            keep exactly flat (cut faces, cube faces); axis 0/1/2 = x/y/z, value in mm,
            inward = +1 or −1, the side of the plane where the bone is.
        law: name of the density→modulus law for ``E_MPa`` (see
            :func:`febone.density_law`), or ``"constant:E"`` for one tissue modulus in MPa.
        uniform_density: when not None, every element gets this density (g/cm³) without
            sub-sampling (micro-structures made of one tissue).
        well_composed: repair edge/corner-only voxel contacts when voxelising (closed
            manifold surfaces); off for micro-structures, where it would thicken trabeculae.
        info: free-form description (dimensions, sources) copied into the meshes' README.
    """

    name: str
    sdf: Callable[[np.ndarray], np.ndarray]
    density: Callable[[np.ndarray], np.ndarray]
    regions: Callable[[np.ndarray], Mapping[str, np.ndarray]]
    node_sets: Callable[[np.ndarray, np.ndarray, float], Mapping[str, np.ndarray]]
    lower: np.ndarray
    upper: np.ndarray
    grid_anchor: np.ndarray
    flat_planes: tuple = ()
    law: str = "morgan-pooled"
    uniform_density: float | None = None
    well_composed: bool = True
    info: Mapping[str, object] = field(default_factory=dict)

    def modulus(self, rho) -> np.ndarray:
        """E in MPa for apparent density ρ (g/cm³) by this bone's law (host NumPy)."""
        rho = np.asarray(rho, dtype=np.float64)
        if self.law.startswith("constant:"):
            return np.full(rho.shape, float(self.law.split(":", 1)[1]))
        from ..material import density_law

        law = density_law(self.law)  # evaluated in NumPy float64 whatever JAX's x64 flag
        return law.a * np.maximum(rho, law.rho_min) ** law.b

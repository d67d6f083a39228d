"""Load cases for whole bones and specimens, displacement controlled.

A :class:`LoadCase` rotates the bone into its loading pose so that the load acts along a
global axis, then prescribes the displacement of the loaded node set along that axis and
supports the others. The force is the reaction of the loaded set along the load axis; the
displacement is the prescribed one; stiffness = |force| / displacement.

Standard orientation of febone's bundled bones (see ``meshes/README.md``): mm, shaft /
body axis along +z (proximal/superior up). Node sets are point-data masks (1 = member):
femur ``head_contact`` (stance contact cap), ``head_medial`` (sideways-fall support),
``trochanter_lateral``, ``distal_cut``; vertebra
``endplate_superior``, ``endplate_inferior``. Any mesh with masks of other names works by
passing the names explicitly; a mesh without the masks gets them from its geometry, or from
boxes, through :func:`febone.strength.geometry.resolve_node_sets` (``strength()`` does this).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..fe.bc import BoundaryConditions
from ..mesh.mesh import Mesh
from ..mesh.nodesets import node_set

__all__ = ["LoadCase", "Support", "sideways_fall", "stance", "vertebral_compression",
           "uniaxial_compression", "rotation", "CASES"]

_AXES = "xyz"


def rotation(axis, degrees: float) -> np.ndarray:
    """3×3 rotation matrix about ``axis`` ((3,) vector or 'x'/'y'/'z') by ``degrees``."""
    if isinstance(axis, str):
        axis = np.eye(3)["xyz".index(axis)]
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.deg2rad(degrees)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K


@dataclass(frozen=True)
class Support:
    """Displacement components (``"xyz"`` letters, posed frame) fixed at a node set."""

    nodes: str
    components: str = "xyz"


@dataclass(frozen=True)
class LoadCase:
    """A displacement-controlled load case.

    Attributes:
        name: short name (``sideways-fall``, ``stance``, ...).
        loaded: node-set name where the displacement is applied.
        axis: global load axis in the posed frame (``"x"``, ``"y"``, ``"z"``).
        sign: +1 or −1: direction of the applied displacement along ``axis``; ignored when
            ``towards`` is given.
        towards: optional node-set name: the displacement points from the loaded set's
            centroid towards this set's centroid along ``axis`` (orientation-proof).
        supports: node sets and the components fixed there.
        loaded_fixed: other components fixed at the loaded set (e.g. ``"y"``).
        pose: 3×3 rotation applied to the mesh coordinates before loading.
        displacement_mm: magnitude of the applied displacement (linear analyses scale).
        description: what the case represents, with its source.
        side_sets: femur cases: (head set, shaft set); the head's offset along x from the
            shaft tells a right femur (head at −x, the standard) from a left one (head at +x),
            whose pose :meth:`sided` mirrors. Empty for bones without a side.
    """

    name: str
    loaded: str
    axis: str
    sign: float
    supports: tuple[Support, ...]
    loaded_fixed: str = ""
    pose: np.ndarray = field(default_factory=lambda: np.eye(3))
    displacement_mm: float = 1.0
    description: str = ""
    towards: str | None = None
    side_sets: tuple[str, ...] = ()

    def __post_init__(self):
        if self.axis not in _AXES:
            raise ValueError(f"load axis must be 'x', 'y' or 'z'; got {self.axis!r}")
        if self.sign not in (1, -1, 1.0, -1.0):
            raise ValueError(f"sign must be +1 or −1; got {self.sign}")
        if not self.displacement_mm > 0:
            raise ValueError(f"displacement_mm must be positive; got {self.displacement_mm}")

    def load_sign(self, mesh: Mesh) -> float:
        """+1/−1: the direction of the applied displacement along the axis on a posed mesh."""
        if self.towards is None:
            return float(self.sign)
        k = _AXES.index(self.axis)
        gap = (mesh.points[node_set(mesh, self.towards), k].mean()
               - mesh.points[node_set(mesh, self.loaded), k].mean())
        if gap == 0:
            raise ValueError(f"load case {self.name}: sets {self.loaded!r} and {self.towards!r} "
                             f"have the same centroid along {self.axis}; give the sign explicitly")
        return float(np.sign(gap))

    def sided(self, mesh: Mesh) -> tuple["LoadCase", str | None]:
        """This case for the side of the bone: ``(case, "right" | "left" | None)``.

        The standard orientation is a right femur (head at −x of the shaft). A left femur
        (head at +x) gets the pose mirrored in x (M·pose·M, M = diag(−1, 1, 1)), so it is
        loaded as the mirror image of a right one: same stiffness and fracture load as the
        right femur it mirrors. ``None`` for cases without :attr:`side_sets`.

        Raises:
            ValueError: the head set lies neither medial nor lateral of the shaft set (less
                than 0.1 × their distance apart along x) while the pose is not mirror
                symmetric, so the side matters and cannot be told.
        """
        if not self.side_sets:
            return self, None
        head, shaft = self.side_sets
        gap = (mesh.points[node_set(mesh, head)].mean(axis=0)
               - mesh.points[node_set(mesh, shaft)].mean(axis=0))
        M = np.diag([-1.0, 1.0, 1.0])
        mirrored = M @ np.asarray(self.pose) @ M
        if abs(gap[0]) < 0.1 * np.linalg.norm(gap) and not np.allclose(mirrored, self.pose):
            raise ValueError(
                f"load case {self.name}: cannot tell a right from a left femur: the head set "
                f"{head!r} lies {gap[0]:+.3g} mm along x from the shaft set {shaft!r} (standard "
                f"orientation: the head medial, at −x for a right femur, +x for a left one; "
                f"shaft along +z); rotate the mesh into that orientation (meshes/README.md)")
        if gap[0] < 0:
            return self, "right"
        return replace(self, pose=mirrored,
                       description=self.description + " (left femur: pose mirrored in x)"), "left"

    def posed(self, mesh: Mesh) -> Mesh:
        """The mesh rotated into the loading pose (rotation about its centroid)."""
        c = mesh.points.mean(axis=0)
        return replace(mesh, points=(mesh.points - c) @ np.asarray(self.pose).T + c)

    def boundary_conditions(self, mesh: Mesh, displacement_mm: float | None = None) -> BoundaryConditions:
        """Supports and the applied displacement on a (posed) mesh."""
        d = self.displacement_mm if displacement_mm is None else displacement_mm
        bcs = BoundaryConditions.empty(mesh.n_nodes)
        for s in self.supports:
            bcs = bcs.fix(node_set(mesh, s.nodes), s.components, name=s.nodes)
        loaded = node_set(mesh, self.loaded)
        if self.loaded_fixed:
            bcs = bcs.fix(loaded, self.loaded_fixed, name=self.loaded)
        return bcs.displace(loaded, **{self.axis: self.load_sign(mesh) * d}, name=self.loaded)

    def measured_force(self, reactions, mesh: Mesh):
        """Force on the loaded set along the load direction, N (positive: the bone resists)."""
        loaded = node_set(mesh, self.loaded)
        return reactions[loaded, _AXES.index(self.axis)].sum() * self.load_sign(mesh)


def sideways_fall(adduction_deg: float = 10.0, internal_rotation_deg: float = 15.0, *,
                  head: str = "head_medial", trochanter: str = "trochanter_lateral",
                  distal: str = "distal_cut") -> LoadCase:
    """Sideways fall on the greater trochanter (Keyak/Dall'Ara-type configuration).

    The femur (standard orientation: shaft along +z, medial–lateral along x; see
    meshes/README.md) is posed with the shaft adducted by ``adduction_deg`` (rotation about
    the anterior–posterior axis y) and internally rotated by ``internal_rotation_deg``
    (about the shaft axis z). The trochanter is displaced along x towards the head, the head
    is supported along x and the distal cut along z, as in the MITK-GEM sideways-fall set-up.
    """
    pose = rotation("y", adduction_deg) @ rotation("z", internal_rotation_deg)
    return LoadCase(
        "sideways-fall", trochanter, "x", 1.0,
        (Support(head, "x"), Support(distal, "z")), loaded_fixed="y", pose=pose, towards=head,
        side_sets=(head, distal),
        description=(f"sideways fall: shaft adducted {adduction_deg}°, internally rotated "
                     f"{internal_rotation_deg}°; trochanter displaced towards the head, head "
                     f"supported along the load, distal cut supported axially"))


def stance(angle_deg: float = 20.0, *, head: str = "head_contact", distal: str = "distal_cut") -> LoadCase:
    """Single-leg stance: hip contact force on the head at ``angle_deg`` from the shaft axis in
    the frontal plane (Bergmann 2001 peak ≈ 2.5–3 × body weight), distal cut clamped."""
    return LoadCase(
        "stance", head, "z", -1.0, (Support(distal, "xyz"),), pose=rotation("y", angle_deg),
        towards=distal, side_sets=(head, distal),
        description=f"single-leg stance: head loaded {angle_deg}° from the shaft axis, distal clamped")


def vertebral_compression(*, superior: str = "endplate_superior",
                          inferior: str = "endplate_inferior") -> LoadCase:
    """Axial compression between plane-parallel endplates: inferior clamped, superior
    displaced along −z with transverse motion free."""
    return LoadCase("vertebral-compression", superior, "z", -1.0, (Support(inferior, "xyz"),),
                    towards=inferior,
                    description="vertebral body: axial compression between parallel endplates")


def uniaxial_compression(axis: str = "z", *, bottom: str = "face_min", top: str = "face_max") -> LoadCase:
    """Specimen compression: ``bottom`` clamped, ``top`` displaced along −axis only."""
    return LoadCase("compression", top, axis, -1.0, (Support(bottom, "xyz"),), towards=bottom,
                    description=f"uniaxial compression along {axis}: bottom face clamped")


CASES = {"sideways-fall": sideways_fall, "stance": stance,
         "vertebral-compression": vertebral_compression, "compression": uniaxial_compression}

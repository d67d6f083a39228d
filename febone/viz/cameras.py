"""Camera presets for the bundled bones (axes as in ``meshes/README.md``).

Femur (right proximal femur): ``+x`` lateral, ``+y`` anterior, ``+z`` proximal.
Vertebra: ``+x`` patient's right, ``+y`` anterior, ``+z`` cranial.
Trabecular cube: structure elongated along ``z``.

A camera is a :class:`CameraSpec`: the direction *from* the bone's centre *to* the eye, the
screen's up direction and a zoom. Each bone kind has named presets; ``"default"`` is the view
used when none is asked for. The default section (clip) plane per bone is :data:`SECTIONS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["CameraSpec", "CAMERAS", "SECTIONS", "bone_kind", "camera_spec", "plane"]


@dataclass(frozen=True)
class CameraSpec:
    """Direction from the focal point (the mesh centre) to the eye, the up vector, a zoom."""

    view_from: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    zoom: float = 1.0


_ANATOMICAL = {   # shared by femur and vertebra: +y anterior, +z up (proximal/cranial)
    "anterior": CameraSpec((0, 1, 0)),
    "posterior": CameraSpec((0, -1, 0)),
    "superior": CameraSpec((0, 0, 1), up=(0, 1, 0)),
    "inferior": CameraSpec((0, 0, -1), up=(0, 1, 0)),
}

CAMERAS: dict[str, dict[str, CameraSpec]] = {
    # femur: lateral = +x (greater trochanter), medial = -x (head)
    "femur": {**_ANATOMICAL, "default": CameraSpec((0, 1, 0)),
              "lateral": CameraSpec((1, 0, 0)), "medial": CameraSpec((-1, 0, 0)),
              "anterolateral": CameraSpec((0.6, 1, 0.25)), "iso": CameraSpec((0.5, 1, 0.45))},
    # vertebra: patient's right = +x
    "vertebra": {**_ANATOMICAL, "default": CameraSpec((0.8, 1, 0.5)),
                 "lateral": CameraSpec((1, 0, 0)), "right": CameraSpec((1, 0, 0)),
                 "left": CameraSpec((-1, 0, 0)), "iso": CameraSpec((0.8, 1, 0.5))},
    "trabecular": {"default": CameraSpec((1, 0.8, 0.6)), "iso": CameraSpec((1, 0.8, 0.6)),
                   "x": CameraSpec((1, 0, 0)), "y": CameraSpec((0, 1, 0)),
                   "z": CameraSpec((0, 0, 1), up=(0, 1, 0))},
    "generic": {"default": CameraSpec((1, 0.8, 0.6)), "iso": CameraSpec((1, 0.8, 0.6)),
                "x": CameraSpec((1, 0, 0)), "-x": CameraSpec((-1, 0, 0)),
                "y": CameraSpec((0, 1, 0)), "-y": CameraSpec((0, -1, 0)),
                "z": CameraSpec((0, 0, 1), up=(0, 1, 0)), "-z": CameraSpec((0, 0, -1), up=(0, 1, 0))},
}

# section planes that show the inside of each bone from its default camera: (normal, which side
# is cut away = the side the normal points to). Femur: coronal (frontal) section, anterior half
# removed; vertebra: mid-sagittal section, right half removed; cube: front half along y.
SECTIONS: dict[str, tuple[float, float, float]] = {
    "femur": (0, 1, 0), "vertebra": (1, 0, 0), "trabecular": (0, 1, 0), "generic": (0, 1, 0),
}

_AXES = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1),
         "-x": (-1, 0, 0), "-y": (0, -1, 0), "-z": (0, 0, -1)}


def bone_kind(mesh=None, bone: str | None = None) -> str:
    """``"femur"``, ``"vertebra"``, ``"trabecular"`` or ``"generic"``.

    From ``bone`` (a bundled name or file stem such as ``femur_coarse_hex8``) when given, else
    from the mesh's data: ``region_femoral_neck``/``region_head`` -> femur,
    ``region_vertebral_body`` -> vertebra, ``face_xmin`` node set -> trabecular.
    """
    if bone is not None:
        stem = str(bone).replace("\\", "/").rsplit("/", 1)[-1].lower()
        for kind in ("femur", "vertebra", "trabecular"):
            if stem.startswith(kind) or kind in stem:
                return kind
        return "generic"
    if mesh is not None:
        if {"region_femoral_neck", "region_head"} & set(mesh.cell_data):
            return "femur"
        if "region_vertebral_body" in mesh.cell_data:
            return "vertebra"
        if "face_xmin" in mesh.point_data:
            return "trabecular"
    return "generic"


def camera_spec(kind: str, camera=None) -> CameraSpec:
    """The :class:`CameraSpec` for ``camera`` on a bone of ``kind``.

    Args:
        kind: from :func:`bone_kind`.
        camera: ``None`` (the bone's default), a preset name (``"anterior"``, ``"lateral"``,
            ``"superior"``, ``"iso"``..., see :data:`CAMERAS`), a :class:`CameraSpec`, or a
            mapping ``{"view_from": (x, y, z), "up": (x, y, z), "zoom": z}``.

    Raises:
        ValueError: unknown preset (lists those of this bone) or a zero/parallel direction.
        TypeError: ``camera`` of another type.
    """
    presets = CAMERAS.get(kind, CAMERAS["generic"])
    if camera is None:
        return presets["default"]
    if isinstance(camera, CameraSpec):
        spec = camera
    elif isinstance(camera, str):
        if camera in presets:
            return presets[camera]
        if camera in CAMERAS["generic"]:
            return CAMERAS["generic"][camera]
        raise ValueError(f"unknown camera {camera!r} for a {kind}; presets: "
                         f"{sorted(set(presets) | set(CAMERAS['generic']))}, or a dict "
                         f"{{'view_from': (x, y, z), 'up': (x, y, z), 'zoom': 1.0}}")
    elif isinstance(camera, Mapping):
        bad = set(camera) - {"view_from", "up", "zoom"}
        if bad or "view_from" not in camera:
            raise ValueError(f"camera dict needs 'view_from' (and optionally 'up', 'zoom'); got "
                             f"keys {sorted(camera)}")
        spec = CameraSpec(tuple(map(float, camera["view_from"])),
                          tuple(map(float, camera.get("up", (0, 0, 1)))),
                          float(camera.get("zoom", 1.0)))
    else:
        raise TypeError(f"camera must be a preset name, a CameraSpec or a dict; got "
                        f"{type(camera).__name__}")
    d, u = np.asarray(spec.view_from, float), np.asarray(spec.up, float)
    if d.shape != (3,) or u.shape != (3,) or not np.linalg.norm(d) > 0:
        raise ValueError(f"camera view_from must be a non-zero 3-vector; got {spec.view_from}")
    if np.linalg.norm(np.cross(d, u)) < 1e-6 * np.linalg.norm(d) * np.linalg.norm(u):
        raise ValueError(f"camera up {spec.up} must not be parallel to view_from {spec.view_from}")
    if not spec.zoom > 0:
        raise ValueError(f"camera zoom must be positive; got {spec.zoom}")
    return spec


def plane(spec, kind: str, centre, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(normal, origin)`` of a clip or slice plane.

    Args:
        spec: ``True`` (the bone's section plane through its centre, :data:`SECTIONS`), an axis
            ``"x"``/``"-y"``..., a normal ``(nx, ny, nz)``, or ``{"normal": ..., "origin": ...}``
            (origin in mm; default the mesh centre).
        kind: bone kind; centre: (3,) mesh centre, mm; what: ``"clip"`` or ``"slice"``.
    """
    origin = np.asarray(centre, float)
    if spec is True:
        normal = SECTIONS.get(kind, SECTIONS["generic"])
    elif isinstance(spec, str):
        if spec not in _AXES:
            raise ValueError(f"{what}={spec!r}: use an axis {sorted(_AXES)}, a normal (nx, ny, nz), "
                             f"True (the bone's section) or {{'normal': ..., 'origin': ...}}")
        normal = _AXES[spec]
    elif isinstance(spec, Mapping):
        bad = set(spec) - {"normal", "origin"}
        if bad or "normal" not in spec:
            raise ValueError(f"{what} dict needs 'normal' (and optionally 'origin', mm); got keys "
                             f"{sorted(spec)}")
        normal = spec["normal"]
        if isinstance(normal, str):
            normal = _AXES[normal]
        if spec.get("origin") is not None:
            origin = np.asarray(spec["origin"], float)
    else:
        normal = spec
    normal = np.asarray(normal, float)
    if normal.shape != (3,) or not np.linalg.norm(normal) > 0 or origin.shape != (3,):
        raise ValueError(f"{what}: the plane needs a non-zero normal (nx, ny, nz) and an origin "
                         f"(x, y, z) in mm; got normal {normal}, origin {origin}")
    return normal / np.linalg.norm(normal), origin

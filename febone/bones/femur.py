"""A parametric human proximal femur with a QCT-like density field.

Standard orientation (a RIGHT femur, right-handed axes, mm; the same convention as the
CT-derived MITK-GEM femur in ``../shared/data``):

* ``+z`` proximal along the shaft axis; the shaft axis is the z axis (x = y = 0);
* ``+x`` lateral (towards the greater trochanter; the head lies at ``−x``);
* ``+y`` anterior (the anteverted head leans towards ``+y``);
* ``z = 0`` at the height of the femoral-head centre; the distal cut is the plane
  ``z = −shaft_length_mm``.

A clinical hip DXA scan rotates the leg internally by about the anteversion angle so
that the neck lies parallel to the detector. :func:`dxa_rotation_deg` gives that angle;
rotating by it about ``+z`` (anterior surface towards medial, ``−x``) brings the neck axis
into the x–z plane, and the DXA projection runs along ``y`` of the rotated frame. The
``region_*`` masks are defined in that projection (see :func:`femur`).

Default dimensions: a young-adult (20–29 y) Caucasian woman. They are population means
read from the literature; they vary between studies and populations by a few mm/degrees.

* femoral-head diameter 44 mm — female means of 42–45 mm in European samples
  (osteometric sexing literature); *(verify: population dependent)*
* neck–shaft angle 128° — 129.2° mean of 375 adult femora, females slightly larger
  (Toogood, Skalak & Cooperman 2009, Clin Orthop Relat Res 467:876); 127–135° range;
* anteversion 12° — 9.7° mean (Toogood 2009), females ≈ 10–12° (Jiang 2015, Medicine
  94:e891; Reikeras 1983) *(verify)*;
* neck length 48 mm from the head centre to the shaft axis along the neck axis, i.e. a
  femoral offset of 48·sin(52°) ≈ 38 mm — female offsets 38.9–39.9 mm (Han, Zhang & Shan
  2014, Int J Morphol 32:1194) *(verify)*;
* neck diameter 30 mm superior–inferior at the waist, 0.85× that antero-posteriorly —
  DXA femoral-neck width ≈ 30–32 mm in women *(verify)*;
* shaft diameter 28 mm medio-lateral (subtrochanteric), 0.92× that antero-posteriorly
  *(verify)*;
* cortical thickness 5 mm at the diaphysis (the distal cut), tapering to 2.5 mm at the
  lesser trochanter; femoral neck 1.2 mm superior, 2.8 mm inferior (calcar side; the
  value inside the reported 2–4 mm that calibrates the neck aBMD); 1 mm subchondral
  plate on the head and on the greater trochanter *(verify: young-adult values; the
  superior neck cortex thins to < 1 mm with age)*.

Density: apparent density ρ_app in g/cm³. Cortical bone 1.80 g/cm³ (wet cortical bone
1.8–1.9 g/cm³); trabecular bone 0.04 (diaphyseal marrow canal) to ≈ 0.7 (principal
compressive group), with the principal compressive and tensile trabecular groups, a
secondary compressive group and a sparse Ward's triangle, drawn as curves in the neck
plane. The levels are calibrated so that the DXA-like femoral-neck aBMD of the default
femur is ≈ 0.86 g/cm² (NHANES III women 20–29: 0.858 ± 0.120 g/cm², Looker 1998) with
ρ_ash = 0.6 ρ_app (see :mod:`febone.bones.densitometry`); ``meshes/README.md`` reports the
value obtained.

Modulus: ``E_MPa`` uses Morgan et al. (2003) femoral-neck law E = 6850 ρ^1.49 for every
element: at 1.8 g/cm³ it gives 16.4 GPa, within the 17–20 GPa ± scatter of longitudinal
cortical bone (science.md §5), so one law spans trabecular and cortical bone without a jump.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .implicit import ImplicitBone
from .shapes import (bezier_polyline, ellipsoid, frame_from_axis, polyline_distance_2d,
                     smooth_union, smoothstep, softmin_weights, sphere, tapered_elliptic_cylinder,
                     unit)

__all__ = ["FemurParams", "femur", "dxa_rotation_deg", "FEMUR_REGIONS", "FEMUR_NODE_SETS"]

FEMUR_REGIONS = ("head", "femoral_neck", "trochanter", "intertrochanteric", "total_hip", "shaft")
FEMUR_NODE_SETS = ("head_contact", "head_medial", "trochanter_lateral", "distal_cut")


@dataclass(frozen=True)
class FemurParams:
    """Dimensions (mm, degrees) and density levels (g/cm³) of the proximal femur.

    See the module docstring for the sources of the defaults. All lengths in mm.
    """

    head_diameter_mm: float = 44.0
    neck_length_mm: float = 48.0
    neck_diameter_mm: float = 30.0
    neck_aspect: float = 0.85
    neck_shaft_angle_deg: float = 128.0
    anteversion_deg: float = 12.0
    shaft_diameter_mm: float = 28.0
    shaft_aspect: float = 0.92
    shaft_length_mm: float = 120.0
    cortical_thickness_mm: float = 5.0
    neck_cortex_superior_mm: float = 1.2
    neck_cortex_inferior_mm: float = 2.8
    head_cortex_mm: float = 1.0
    trochanter_cortex_mm: float = 1.0
    rho_cortical: float = 1.80
    rho_head: float = 0.42
    rho_neck: float = 0.22
    rho_trochanter: float = 0.20
    rho_metaphysis: float = 0.22
    rho_marrow: float = 0.04
    rho_compressive: float = 0.30
    rho_tensile: float = 0.16
    rho_secondary: float = 0.08
    wards_reduction: float = 0.6
    fn_box_width_mm: float = 15.0

    def __post_init__(self):
        positive = ["head_diameter_mm", "neck_length_mm", "neck_diameter_mm", "shaft_diameter_mm",
                    "shaft_length_mm", "cortical_thickness_mm", "neck_cortex_superior_mm",
                    "neck_cortex_inferior_mm", "head_cortex_mm", "trochanter_cortex_mm",
                    "rho_cortical", "rho_marrow", "fn_box_width_mm", "neck_aspect", "shaft_aspect"]
        for name in positive:
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"FemurParams.{name} must be positive and finite; got {v}")
        if not 90.0 < self.neck_shaft_angle_deg < 170.0:
            raise ValueError(f"neck_shaft_angle_deg must lie in (90, 170) degrees (adults: "
                             f"120–140); got {self.neck_shaft_angle_deg}")
        if not -30.0 <= self.anteversion_deg <= 45.0:
            raise ValueError(f"anteversion_deg must lie in [-30, 45] degrees (adults: about "
                             f"0–25); got {self.anteversion_deg}")
        if self.neck_diameter_mm >= self.head_diameter_mm:
            raise ValueError(f"neck_diameter_mm ({self.neck_diameter_mm}) must be smaller than "
                             f"head_diameter_mm ({self.head_diameter_mm})")
        if self.neck_length_mm <= 0.5 * self.head_diameter_mm:
            raise ValueError(f"neck_length_mm ({self.neck_length_mm}) must exceed the head "
                             f"radius ({0.5 * self.head_diameter_mm}) or the head swallows the "
                             f"neck; it is measured from the head centre to the shaft axis")
        if self.shaft_length_mm < 2.5 * self.shaft_diameter_mm:
            raise ValueError(f"shaft_length_mm ({self.shaft_length_mm}) must be at least "
                             f"2.5 shaft diameters so that the lesser trochanter and the "
                             f"distal cut stay apart")
        if self.cortical_thickness_mm >= 0.5 * self.shaft_diameter_mm:
            raise ValueError(f"cortical_thickness_mm ({self.cortical_thickness_mm}) must be "
                             f"less than the shaft radius ({0.5 * self.shaft_diameter_mm})")
        if self.rho_cortical > 2.2:
            raise ValueError(f"rho_cortical {self.rho_cortical} g/cm³ exceeds fully mineralised "
                             f"bone tissue (≈2.1); apparent densities are in g/cm³, not mg/cm³")


def dxa_rotation_deg(params: FemurParams = FemurParams()) -> float:
    """Internal rotation about +z (degrees) that puts the neck axis in the x–z plane."""
    return float(params.anteversion_deg)


class _Geometry:
    """Derived landmarks of one parameter set (mm), computed once."""

    def __init__(self, q: FemurParams):
        self.q = q
        g = np.deg2rad(180.0 - q.neck_shaft_angle_deg)
        b = np.deg2rad(q.anteversion_deg)
        self.gamma, self.beta = g, b
        L = q.neck_length_mm
        self.Rh = 0.5 * q.head_diameter_mm
        self.rn = 0.5 * q.neck_diameter_mm
        self.rs = 0.5 * q.shaft_diameter_mm
        # neck axis from the shaft axis towards the head (medial = -x, anterior = +y)
        self.d = np.array([-np.sin(g) * np.cos(b), np.sin(g) * np.sin(b), np.cos(g)])
        self.C = L * np.array([-np.sin(g) * np.cos(b), np.sin(g) * np.sin(b), 0.0])
        self.P0 = np.array([0.0, 0.0, -L * np.cos(g)])
        self.neck_frame = frame_from_axis(-self.d, (0.0, 0.0, 1.0))  # a: head->shaft, u: superior
        self.s_waist = np.sqrt(max(self.Rh**2 - self.rn**2, 0.0)) + 0.25 * self.rn
        self.z_cut = -q.shaft_length_mm
        self.z_lt = self.P0[2] - 1.0 * q.shaft_diameter_mm          # lesser-trochanter centre
        self.z_top = self.P0[2] + 0.5 * q.shaft_diameter_mm          # top of the shaft cylinder
        # in-plane (DXA) frame: m = medial distance from the shaft axis, towards the head
        self.e_med = np.array([-np.cos(b), np.sin(b), 0.0])
        self.e_off = np.cross(np.array([0.0, 0.0, 1.0]), self.e_med)
        rs = self.rs
        self.gt_centre = np.array([0.5 * rs, -0.25 * rs, self.P0[2] + 0.9 * rs])
        self.gt_radii = np.array([0.85 * rs, 1.05 * rs, 1.35 * rs])
        lt_dir = unit([-0.55, -0.85, 0.0])
        self.lt_centre = np.array([*(0.8 * rs * lt_dir[:2]), self.z_lt])
        self.lt_radii = np.array([0.5 * rs, 0.5 * rs, 0.7 * rs])
        # femoral-neck DXA box: centred at the waist + half its width, along the neck axis
        self.s_fn = self.s_waist + 0.5 * q.fn_box_width_mm
        self.z_th_distal = self.z_lt - self.lt_radii[2] - 10.0

    # -- the in-plane coordinates of the neck plane (the DXA view) ---------------------
    def plane(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(m, z, y'): medial in-plane distance, height, off-plane (anterior) coordinate."""
        return p @ self.e_med, p[:, 2], p @ self.e_off

    def neck_coords(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, v) in the neck plane: s along the neck axis from the head centre towards the
        shaft, v perpendicular in the plane, positive superior (mm)."""
        m, z, _ = self.plane(p)
        mc = self.C @ self.e_med
        g = self.gamma
        a2 = np.array([-np.sin(g), -np.cos(g)])
        u2 = np.array([-np.cos(g), np.sin(g)])
        dm, dz = m - mc, z - self.C[2]
        return dm * a2[0] + dz * a2[1], dm * u2[0] + dz * u2[1]

    def in_plane_point(self, m: float, z: float) -> np.ndarray:
        return m * self.e_med + np.array([0.0, 0.0, z])

    # -- primitives --------------------------------------------------------------------
    def neck_radii(self, s):
        q = self.q
        L = q.neck_length_mm
        t = smoothstep((s - self.s_waist) / (L - self.s_waist))
        return self.rn * (1.0 + 0.75 * t), q.neck_aspect * self.rn * (1.0 + 0.35 * t)

    def shaft_radii(self, z):
        t = smoothstep((z - self.z_lt) / (self.z_top - self.z_lt))
        return self.rs * (1.0 + 0.30 * t), self.q.shaft_aspect * self.rs * (1.0 + 0.20 * t)

    def primitives(self, p: np.ndarray) -> dict[str, np.ndarray]:
        q = self.q
        head = sphere(p, self.C, self.Rh)
        neck = tapered_elliptic_cylinder(p, self.C, self.neck_frame, q.neck_length_mm,
                                         self.neck_radii)
        xy_frame = (np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        start = np.array([0.0, 0.0, self.z_cut - 5.0])
        shaft = tapered_elliptic_cylinder(p, start, xy_frame, self.z_top - start[2],
                                          lambda s: self.shaft_radii(s + start[2]))
        gt = ellipsoid(p, self.gt_centre, self.gt_radii)
        lt = ellipsoid(p, self.lt_centre, self.lt_radii)
        return {"head": head, "neck": neck, "shaft": shaft, "gt": gt, "lt": lt}

    def body(self, d: dict) -> np.ndarray:
        """Signed distance of the uncut femur from the primitives' values ``d``."""
        body = smooth_union(d["shaft"], d["gt"], 0.5 * self.rs)
        body = smooth_union(body, d["lt"], 0.35 * self.rs)
        body = smooth_union(body, d["neck"], 0.7 * self.rs)
        return smooth_union(body, d["head"], 0.2 * self.Rh)

    def sdf(self, p: np.ndarray) -> np.ndarray:
        return np.maximum(self.body(self.primitives(p)), self.z_cut - p[:, 2])

    # -- density -----------------------------------------------------------------------
    def cortical_thickness(self, p: np.ndarray, prims: dict) -> np.ndarray:
        q = self.q
        # neck: thin superiorly, thick inferiorly (calcar side)
        a, u, w = self.neck_frame
        r = p - self.C
        rad = r - np.outer(r @ a, a)
        cos_sup = (rad @ u) / np.maximum(np.linalg.norm(rad, axis=1), 1e-9)
        t_neck = q.neck_cortex_superior_mm + (q.neck_cortex_inferior_mm
                                              - q.neck_cortex_superior_mm) * 0.5 * (1 - cos_sup)
        # shaft: thickens distally from the lesser trochanter; medial side thicker
        z = p[:, 2]
        t_prox = 0.5 * q.cortical_thickness_mm
        ramp = smoothstep((self.z_lt - z) / (2.0 * q.shaft_diameter_mm))
        t_shaft = t_prox + (q.cortical_thickness_mm - t_prox) * ramp
        metaphysis = smoothstep((z - self.z_lt) / (self.z_top - self.z_lt))
        t_shaft = t_shaft * (1.0 - 0.55 * metaphysis)
        cos_lat = p[:, 0] / np.maximum(np.hypot(p[:, 0], p[:, 1]), 1e-9)
        t_shaft = t_shaft * (1.0 - 0.2 * cos_lat)
        names = ["head", "neck", "shaft", "gt", "lt"]
        w = softmin_weights([prims[k] for k in names], tau=3.0)
        ts = [np.full(len(p), q.head_cortex_mm), t_neck, t_shaft,
              np.full(len(p), q.trochanter_cortex_mm),
              np.full(len(p), 1.5 * q.trochanter_cortex_mm)]
        return sum(wi * ti for wi, ti in zip(w, ts))

    def trabecular(self, p: np.ndarray, prims: dict) -> np.ndarray:
        q = self.q
        z = p[:, 2]
        shaft_base = q.rho_marrow + (q.rho_metaphysis - q.rho_marrow) * smoothstep(
            (z - (self.z_lt - 1.2 * q.shaft_diameter_mm)) / (1.5 * q.shaft_diameter_mm))
        names = ["head", "neck", "shaft", "gt", "lt"]
        w = softmin_weights([prims[k] for k in names], tau=4.0)
        base = (w[0] * q.rho_head + w[1] * q.rho_neck + w[2] * shaft_base
                + w[3] * q.rho_trochanter + w[4] * q.rho_metaphysis)
        m, zz, _ = self.plane(p)  # the groups are plates across the neck: in-plane distance
        mc = self.C @ self.e_med
        Rh, rs = self.Rh, self.rs
        g = self.gamma
        c20, s20 = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
        # principal compressive group: superior head (20° medial of vertical) -> calcar
        comp = np.array([[mc + 0.85 * Rh * s20, 0.85 * Rh * c20], [0.9 * rs, self.z_lt + 0.3 * rs]])
        d_c = polyline_distance_2d(m, zz, comp)
        # principal tensile group: inferior head -> over the superior neck -> lateral cortex
        ang = np.deg2rad(-65.0)
        p0 = [mc + 0.8 * Rh * np.cos(ang), 0.8 * Rh * np.sin(ang)]
        sup = 0.55 * q.neck_length_mm * np.array([np.sin(g), np.cos(g)])
        p1 = [sup[0], self.P0[2] + sup[1] + 1.6 * self.rn]
        p2 = [-0.9 * rs, self.P0[2] - 0.6 * rs]
        d_t = polyline_distance_2d(m, zz, bezier_polyline(p0, p1, p2, 12))
        # secondary compressive group: calcar -> greater trochanter
        sec = np.array([[0.7 * rs, self.z_lt + 0.6 * rs], [-0.6 * rs, self.P0[2] + 0.9 * rs]])
        d_s = polyline_distance_2d(m, zz, sec)
        groups = (q.rho_compressive * np.exp(-(d_c / (0.45 * self.rn)) ** 2)
                  + q.rho_tensile * np.exp(-(d_t / (0.3 * self.rn)) ** 2)
                  + q.rho_secondary * np.exp(-(d_s / (0.35 * self.rn)) ** 2))
        # the groups fade out down the shaft
        groups = groups * smoothstep((z - (self.z_lt - 0.8 * rs)) / (0.8 * rs))
        # Ward's triangle: between the groups at the base of the neck
        wm = 0.45 * q.neck_length_mm * np.sin(g)
        wz = self.P0[2] + 0.45 * q.neck_length_mm * np.cos(g)
        d_w = np.hypot(m - wm, zz - (wz - 0.35 * self.rn))
        factor = 1.0 - q.wards_reduction * np.exp(-(d_w / (0.5 * self.rn)) ** 2)
        return (base + groups) * factor

    def density(self, p: np.ndarray) -> np.ndarray:
        prims = self.primitives(p)
        depth = -self.body(prims)  # the distal cut is a section, not a periosteal surface
        t = self.cortical_thickness(p, prims)
        rho_t = self.trabecular(p, prims)
        shell = 1.0 - smoothstep((depth - t + 0.3) / 0.6)  # 1 in the cortex, 0.6 mm blend
        return rho_t + (self.q.rho_cortical - rho_t) * shell

    # -- regions and node sets ---------------------------------------------------------
    def regions(self, p: np.ndarray) -> dict[str, np.ndarray]:
        q = self.q
        s, v = self.neck_coords(p)
        z = p[:, 2]
        s0, s1 = self.s_fn - 0.5 * q.fn_box_width_mm, self.s_fn + 0.5 * q.fn_box_width_mm
        r_si, _ = self.neck_radii(self.s_fn)
        fn = (s >= s0) & (s <= s1) & (np.abs(v) <= 1.25 * r_si)
        head = s < s0
        total_hip = (s >= s0) & (z >= self.z_th_distal)
        # trochanter: lateral of the neck box and above the continuation of its lower edge
        r1, _ = self.neck_radii(s1)
        troch = total_hip & ~fn & (v > -r1) & ((s > s1) | (v > 0))
        inter = total_hip & ~fn & ~troch
        shaft = (s >= s0) & (z < self.z_th_distal)
        return {"head": head, "femoral_neck": fn, "trochanter": troch,
                "intertrochanteric": inter, "total_hip": total_hip, "shaft": shaft}

    def node_sets(self, points: np.ndarray, surface: np.ndarray, h: float) -> dict:
        r = points - self.C
        dist = np.linalg.norm(r, axis=1)
        near_head = surface & (dist > self.Rh - 1.5 * h) & (dist < self.Rh + 1.5 * h)
        cdir = np.array([-np.sin(np.deg2rad(20.0)), 0.0, np.cos(np.deg2rad(20.0))])
        cosang = (r @ cdir) / np.maximum(dist, 1e-9)
        head_contact = near_head & (cosang >= np.cos(np.deg2rad(35.0)))
        cosmed = (r @ np.array([-1.0, 0.0, 0.0])) / np.maximum(dist, 1e-9)
        head_medial = near_head & (cosmed >= np.cos(np.deg2rad(30.0)))
        z = points[:, 2]
        gt_zone = surface & (z > self.P0[2] - 0.5 * self.rs)
        x_max = points[gt_zone, 0].max() if gt_zone.any() else np.inf
        troch = gt_zone & (points[:, 0] >= x_max - max(4.0, 1.5 * h))
        distal = surface & (z <= self.z_cut + 1e-6 * max(1.0, abs(self.z_cut)))
        return {"head_contact": head_contact, "head_medial": head_medial,
                "trochanter_lateral": troch, "distal_cut": distal}


def femur(params: FemurParams | None = None, **overrides) -> ImplicitBone:
    """The default (or a customised) young-adult female right proximal femur.

    Args:
        params: dimensions and density levels (default :class:`FemurParams()`).
        **overrides: field replacements, e.g. ``femur(neck_shaft_angle_deg=135)``.

    Returns:
        An :class:`ImplicitBone` in the standard orientation (module docstring) with
        regions ``head, femoral_neck, trochanter, intertrochanteric, total_hip, shaft``
        (DXA-like, defined in the internally rotated projection: the femoral-neck box is
        ``fn_box_width_mm`` wide along the neck axis, centred half a box lateral of the
        neck waist, 2.5 neck radii tall; ``head`` is everything medial of the box;
        ``total_hip`` is the bone lateral of the box's medial edge down to 10 mm below the
        lesser trochanter; ``trochanter`` is the part of it lateral of the box and above the
        continuation of the neck's inferior edge; ``intertrochanteric`` the rest;
        ``shaft`` is below the total-hip region), and node sets ``head_contact`` (35° cap
        around the direction 20° medial of the shaft axis: stance contact), ``head_medial``
        (30° cap around −x: sideways-fall support), ``trochanter_lateral`` (surface nodes
        within max(4 mm, 1.5 h) of the most lateral point of the greater trochanter) and
        ``distal_cut`` (the cut face).

    Raises:
        ValueError: parameters out of anatomical range (the message names the field).
        TypeError: an unknown override name.
    """
    params = params or FemurParams()
    if overrides:
        unknown = sorted(set(overrides) - set(asdict(params)))
        if unknown:
            raise TypeError(f"unknown femur parameter(s) {unknown}; valid: "
                            f"{sorted(asdict(params))}")
        params = replace(params, **overrides)
    geo = _Geometry(params)
    lo = np.array([geo.C[0] - geo.Rh - 2.0, -max(geo.gt_radii[1] + 0.3 * geo.rs, geo.rs) - 4.0,
                   geo.z_cut])
    lo[1] = min(lo[1], geo.C[1] - geo.Rh - 2.0)
    hi = np.array([geo.gt_centre[0] + geo.gt_radii[0] + 0.4 * geo.rs + 4.0,
                   max(geo.C[1] + geo.Rh, 1.3 * geo.rs) + 4.0, geo.C[2] + geo.Rh + 2.0])
    info = {"orientation": "right femur; +z proximal (shaft axis = z), +x lateral (head at -x), "
                           "+y anterior; z = 0 at the head centre; mm",
            "head_centre_mm": geo.C.round(3).tolist(),
            "neck_axis": geo.d.round(6).tolist(),
            "distal_cut_z_mm": geo.z_cut,
            "dxa_rotation_deg": dxa_rotation_deg(params),
            "params": asdict(params)}
    return ImplicitBone(
        name="femur", sdf=geo.sdf, density=geo.density, regions=geo.regions,
        node_sets=geo.node_sets, lower=lo, upper=hi,
        grid_anchor=np.array([0.0, 0.0, geo.z_cut]), flat_planes=((2, geo.z_cut, 1),),
        law="morgan-femoral-neck", info=info)

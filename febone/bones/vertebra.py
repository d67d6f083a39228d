"""A parametric lumbar vertebra (L3-like, young-adult woman) with a QCT-like density field.

Standard orientation (right-handed, mm): ``+z`` cranial (superior), ``+y`` anterior,
``+x`` to the patient's right; the vertebral body is centred at the origin, its endplate
rims at ``z = ±body_height_mm/2``; the posterior elements lie at ``y < 0``.

Default dimensions *(verify: population means of female L3 from morphometric CT and
cadaver studies vary by several mm)*: endplate width 45 mm (medio-lateral), depth 33 mm
(antero-posterior), body height 26 mm, endplates concave by 1.5 mm at the centre, a
0.5 mm cortical shell (vertebral cortical shells are 0.2–0.5 mm, Silva 1994; Eswaran
2006 report ≈ 0.4 mm) and 0.7 mm endplates; spinal canal 23 × 17 mm.

Density (apparent, g/cm³): cortical shell 1.7; trabecular centrum 0.28, i.e. 168 mg/cm³
mineral with ρ_ash = 0.6 ρ_app, matching young-adult QCT spine trabecular vBMD of
≈ 160–180 mg/cm³ *(verify)* (vertebral trabecular apparent densities 0.1–0.35 g/cm³,
Morgan 2003); 4% denser towards the endplates, 8% sparser at the basivertebral centre;
posterior elements 0.35 inside a 1 mm cortex.

Modulus: Morgan et al. (2003) vertebral law E = 4730 ρ^1.56 for every element.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .implicit import ImplicitBone
from .shapes import ellipsoid, smooth_union, smoothstep

__all__ = ["VertebraParams", "vertebra", "VERTEBRA_REGIONS", "VERTEBRA_NODE_SETS"]

VERTEBRA_REGIONS = ("vertebral_body", "posterior")
VERTEBRA_NODE_SETS = ("endplate_superior", "endplate_inferior")


@dataclass(frozen=True)
class VertebraParams:
    """Dimensions (mm) and density levels (g/cm³) of the lumbar vertebra."""

    body_width_mm: float = 45.0
    body_depth_mm: float = 33.0
    body_height_mm: float = 26.0
    endplate_concavity_mm: float = 1.5
    waist_mm: float = 1.5
    shell_mm: float = 0.5
    endplate_mm: float = 0.7
    canal_width_mm: float = 23.0
    canal_depth_mm: float = 17.0
    posterior_elements: bool = True
    rho_cortical: float = 1.70
    rho_centrum: float = 0.28
    rho_posterior: float = 0.35

    def __post_init__(self):
        for name in ("body_width_mm", "body_depth_mm", "body_height_mm", "shell_mm",
                     "endplate_mm", "canal_width_mm", "canal_depth_mm", "rho_cortical",
                     "rho_centrum", "rho_posterior"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"VertebraParams.{name} must be positive and finite; got {v}")
        if not 0 <= self.endplate_concavity_mm < 0.25 * self.body_height_mm:
            raise ValueError(f"endplate_concavity_mm must lie in [0, body_height/4); got "
                             f"{self.endplate_concavity_mm}")
        if not 0 <= self.waist_mm < 0.2 * self.body_depth_mm:
            raise ValueError(f"waist_mm must lie in [0, body_depth/5); got {self.waist_mm}")
        if self.rho_cortical > 2.2:
            raise ValueError(f"rho_cortical {self.rho_cortical} g/cm³ exceeds bone tissue "
                             f"density; densities are in g/cm³")


class _Geometry:
    def __init__(self, q: VertebraParams):
        self.q = q
        self.a = 0.5 * q.body_width_mm
        self.b = 0.5 * q.body_depth_mm
        self.H = 0.5 * q.body_height_mm
        self.y_post = -0.8 * self.b  # flat posterior wall of the body
        self.cw, self.cd = 0.5 * q.canal_width_mm, 0.5 * q.canal_depth_mm
        self.yc = self.y_post - self.cd  # canal centre
        self.wall = 5.0

    def footprint(self, x, y, z):
        """2-D signed distance of the body's cross-section at height z (mm)."""
        q = self.q
        shrink = q.waist_mm * (1.0 - (z / self.H) ** 2)
        a, b = self.a - shrink, self.b - shrink
        k0 = np.sqrt((x / a) ** 2 + (y / b) ** 2)
        k1 = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2)
        ell = np.where(k0 > 0.8, k0 * (k0 - 1) / np.maximum(k1, 1e-12), (k0 - 1) * np.minimum(a, b))
        return np.maximum(ell, self.y_post - y)  # flat posterior wall

    def body(self, p):
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        q = self.q
        r2 = (x / self.a) ** 2 + (y / self.b) ** 2
        dip = q.endplate_concavity_mm * np.clip(1.0 - r2, 0.0, 1.0)
        top = z - (self.H - dip)
        bottom = -(z + (self.H - dip))
        return np.maximum(self.footprint(x, y, z), np.maximum(top, bottom))

    def posterior(self, p):
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        w = self.wall
        yy = y - self.yc
        outer = ellipsoid(np.stack([x, yy, 0 * z], 1), (0, 0, 0), (self.cw + w, self.cd + w, 1e3))
        inner = ellipsoid(np.stack([x, yy, 0 * z], 1), (0, 0, 0), (self.cw, self.cd, 1e3))
        ring = np.maximum(np.maximum(outer, -inner), np.abs(z) - 0.6 * self.H)
        y_back = self.yc - self.cd - w
        spinous = ellipsoid(p, (0.0, y_back - 11.0, -0.25 * self.H), (3.5, 14.0, 0.7 * self.H))
        def pair(x0, y0, z0, radii):  # left and right copies
            return np.minimum(ellipsoid(p, (x0, y0, z0), radii), ellipsoid(p, (-x0, y0, z0), radii))

        tp = pair(self.cw + w + 10.0, self.yc + 2.0, 0.1 * self.H, (13, 4, 4.5))
        sup = pair(0.55 * self.cw + 3, self.yc - 3.0, 0.75 * self.H, (4, 5, 7))
        inf = pair(0.45 * self.cw + 2, self.yc - 8.0, -0.8 * self.H, (4, 5, 7))
        post = smooth_union(ring, spinous, 3.0)
        post = smooth_union(post, tp, 3.0)
        post = smooth_union(post, sup, 2.5)
        post = smooth_union(post, inf, 2.5)
        # keep the canal open: nothing of the posterior elements inside it
        return np.maximum(post, -inner)

    def parts(self, p):
        body = self.body(p)
        if not self.q.posterior_elements:
            return body, np.full(len(p), np.inf)
        return body, self.posterior(p)

    def sdf(self, p):
        body, post = self.parts(p)
        if not self.q.posterior_elements:
            return body
        yy = p[:, 1] - self.yc
        inner = ellipsoid(np.stack([p[:, 0], yy, 0 * yy], 1), (0, 0, 0), (self.cw, self.cd, 1e3))
        return np.maximum(smooth_union(body, post, 2.0), -inner)

    def density(self, p):
        q = self.q
        body, post = self.parts(p)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        # endplates: distance to the top/bottom faces; side shell: distance to the footprint
        r2 = (x / self.a) ** 2 + (y / self.b) ** 2
        dip = q.endplate_concavity_mm * np.clip(1.0 - r2, 0.0, 1.0)
        d_end = (self.H - dip) - np.abs(z)
        d_side = -self.footprint(x, y, z)
        shell_b = np.maximum(1.0 - smoothstep((d_side - q.shell_mm + 0.25) / 0.5),
                             1.0 - smoothstep((d_end - q.endplate_mm + 0.25) / 0.5))
        near_end = np.exp(-np.maximum(d_end, 0.0) / 3.0)
        centre = np.exp(-((x / (0.5 * self.a)) ** 2
                          + ((y - self.y_post * 0.5) / (0.5 * self.b)) ** 2
                          + (z / (0.5 * self.H)) ** 2))
        trab = q.rho_centrum * (1.0 + 0.04 * near_end - 0.08 * centre)
        rho_body = trab + (q.rho_cortical - trab) * shell_b
        if not q.posterior_elements:
            return rho_body
        shell_p = 1.0 - smoothstep((-post - 1.0 + 0.25) / 0.5)
        rho_post = q.rho_posterior + (q.rho_cortical - q.rho_posterior) * shell_p
        w_body = 1.0 / (1.0 + np.exp(np.clip((body - post) / 0.75, -50, 50)))
        return w_body * rho_body + (1 - w_body) * rho_post

    def regions(self, p):
        body, post = self.parts(p)
        in_body = body <= post
        return {"vertebral_body": in_body, "posterior": ~in_body}

    def node_sets(self, points, surface, h):
        q = self.q
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        foot = self.footprint(x, y, z) <= 0.5 * h
        band = q.endplate_concavity_mm + 0.75 * h
        sup = surface & foot & (z >= self.H - band)
        inf = surface & foot & (z <= -self.H + band)
        return {"endplate_superior": sup, "endplate_inferior": inf}


def vertebra(params: VertebraParams | None = None, **overrides) -> ImplicitBone:
    """The default (or a customised) lumbar vertebra.

    Returns:
        An :class:`ImplicitBone` in the standard orientation (module docstring) with regions
        ``vertebral_body`` and ``posterior`` (nearest part) and node sets
        ``endplate_superior`` / ``endplate_inferior``: surface nodes over the body's
        footprint within (concavity + 0.75 h) of the endplate rim planes.
    """
    params = params or VertebraParams()
    if overrides:
        unknown = sorted(set(overrides) - set(asdict(params)))
        if unknown:
            raise TypeError(f"unknown vertebra parameter(s) {unknown}; valid: "
                            f"{sorted(asdict(params))}")
        params = replace(params, **overrides)
    g = _Geometry(params)
    if params.posterior_elements:
        lo = np.array([-(g.cw + g.wall + 24.0), g.yc - g.cd - g.wall - 26.0, -g.H - 1.0])
        hi = np.array([g.cw + g.wall + 24.0, g.b + 1.0, g.H + 1.0])
        lo[0], hi[0] = min(lo[0], -g.a - 1), max(hi[0], g.a + 1)
    else:
        lo = np.array([-g.a - 1.0, -g.b - 1.0, -g.H - 1.0])
        hi = -lo
    info = {"orientation": "+z cranial, +y anterior, +x patient's right; body centred at the "
                           "origin, endplate rims at z = ±body_height/2; mm",
            "params": asdict(params)}
    return ImplicitBone(
        name="vertebra", sdf=g.sdf, density=g.density, regions=g.regions,
        node_sets=g.node_sets, lower=lo, upper=hi, grid_anchor=np.array([0.0, 0.0, g.H]),
        flat_planes=(), law="morgan-vertebra", info=info)

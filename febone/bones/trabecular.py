"""A synthetic trabecular micro-structure cube for micro-FE demos.

The structure is the thickened zero set of a smooth Gaussian random field: bone where
|g(x)| < c. ``g`` is a sum of ``n_waves`` random cosines (random Fourier features of a
Gaussian covariance with correlation wavenumber ``k0 = 2π/spacing_mm``), normalised to unit
variance, so its one-point distribution is close to N(0, 1) and the bone volume fraction of
the continuous field is P(|g| < c) = erf(c/√2): ``c`` follows in closed form from the
target BV/TV. Stretching the wave vectors' z components by 1/``anisotropy`` elongates the
structure along z (the principal loading direction) by that factor, so the mean intercept
length along z is ≈ ``anisotropy`` × that along x or y. The sheets of the zero set give a
connected, plate-like network (like human trabecular bone at BV/TV 0.1–0.3); the
voxel mesh keeps the largest face-connected component (no well-composedness repair, which
would thicken the thin plates). With the default ``spacing_mm`` = 1.6 the sheets lie
π/k0 = 0.8 mm apart along x (expected zero crossings of g per mm: k0/π) and are
≈ BV/TV × 0.8 ≈ 0.15 mm thick: human Tb.Sp ≈ 0.6–0.9 mm, Tb.Th ≈ 0.1–0.2 mm.

The field is continuous, so meshes of the same cube at different voxel sizes describe the
same structure. Random numbers come from ``numpy.random.default_rng(seed)`` (PCG64, the
same stream on every platform).

Material: every bone voxel is bone tissue: ``density_g_cm3`` = tissue density 2.0 g/cm³
(wet, fully mineralised bone tissue ≈ 1.9–2.1), ``E_MPa`` = 18 000 MPa (a typical micro-FE
tissue modulus, science.md §5; use ν = 0.3). Apparent density of the cube =
BV/TV × 2.0 g/cm³.

Orientation: the cube spans [0, size]³ mm; node sets ``face_zmin``/``face_zmax`` (and x, y)
hold the bone nodes of the outermost node layers, which are the cube faces when ``size_mm``
is a multiple of the voxel size (as in the bundled cubes), for uniaxial compression along z.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .implicit import ImplicitBone

__all__ = ["TrabecularParams", "trabecular_cube", "threshold_for_bv_tv", "TISSUE_DENSITY",
           "TISSUE_MODULUS_MPA"]

TISSUE_DENSITY = 2.0
TISSUE_MODULUS_MPA = 18000.0


@dataclass(frozen=True)
class TrabecularParams:
    """Cube size (mm), target BV/TV, trabecular spacing scale (mm), anisotropy, seed."""

    size_mm: float = 4.0
    bv_tv: float = 0.18
    spacing_mm: float = 1.6
    anisotropy: float = 1.5
    n_waves: int = 256
    seed: int = 20240605

    def __post_init__(self):
        if not (np.isfinite(self.size_mm) and self.size_mm > 0):
            raise ValueError(f"size_mm must be positive; got {self.size_mm}")
        if not 0.01 <= self.bv_tv <= 0.6:
            raise ValueError(f"bv_tv must lie in [0.01, 0.6] (human trabecular bone: "
                             f"0.05–0.35); got {self.bv_tv}")
        if not (np.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise ValueError(f"spacing_mm must be positive; got {self.spacing_mm}")
        if not 0.25 <= self.anisotropy <= 4:
            raise ValueError(f"anisotropy must lie in [0.25, 4] (human bone: 1–2.5); got "
                             f"{self.anisotropy}")
        if not self.n_waves >= 16:
            raise ValueError(f"n_waves must be at least 16 for a near-Gaussian field; got "
                             f"{self.n_waves}")


def threshold_for_bv_tv(bv_tv: float) -> float:
    """c with P(|g| < c) = erf(c/√2) = bv_tv for g ~ N(0, 1) (bisection on math.erf)."""
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.erf(mid / math.sqrt(2.0)) < bv_tv:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def trabecular_cube(params: TrabecularParams | None = None, **overrides) -> ImplicitBone:
    """The trabecular cube as an implicit bone (mesh it with ``mesh_bone(..., "hex8")``)."""
    params = params or TrabecularParams()
    if overrides:
        unknown = sorted(set(overrides) - set(asdict(params)))
        if unknown:
            raise TypeError(f"unknown trabecular parameter(s) {unknown}; valid: "
                            f"{sorted(asdict(params))}")
        params = replace(params, **overrides)
    q = params
    rng = np.random.default_rng(q.seed)
    k0 = 2.0 * np.pi / q.spacing_mm
    k = rng.standard_normal((q.n_waves, 3)) * k0
    k[:, 2] /= q.anisotropy
    phase = rng.uniform(0.0, 2.0 * np.pi, q.n_waves)
    amp = np.sqrt(2.0 / q.n_waves)
    c = threshold_for_bv_tv(q.bv_tv)
    L = q.size_mm
    slope = k0 / np.sqrt(3.0)  # typical |∇g| scale, turns field units into ≈ mm

    def field(p):
        out = np.zeros(len(p))
        for i0 in range(0, q.n_waves, 32):
            out += np.cos(p @ k[i0:i0 + 32].T + phase[i0:i0 + 32]).sum(axis=1)
        return amp * out

    def sdf(p):
        structure = (np.abs(field(p)) - c) / slope
        box = np.max(np.abs(p - 0.5 * L) - 0.5 * L, axis=1)
        return np.maximum(structure, box)

    def density(p):
        return np.full(len(p), TISSUE_DENSITY)

    def regions(p):
        return {}

    def node_sets(points, surface, h):
        # the outermost node layers (the faces themselves when size is a multiple of h)
        tol = 1e-6 * h
        out = {}
        for a, name in enumerate("xyz"):
            out[f"face_{name}min"] = points[:, a] <= points[:, a].min() + tol
            out[f"face_{name}max"] = points[:, a] >= points[:, a].max() - tol
        return out

    info = {"orientation": "cube [0, size]^3 mm, structure elongated along z",
            "threshold_c": c, "params": asdict(params)}
    return ImplicitBone(
        name="trabecular", sdf=sdf, density=density, regions=regions, node_sets=node_sets,
        lower=np.zeros(3), upper=np.full(3, L), grid_anchor=np.zeros(3),
        flat_planes=tuple((a, v, s) for a in range(3) for v, s in ((0.0, 1), (L, -1))),
        law=f"constant:{TISSUE_MODULUS_MPA:g}", uniform_density=TISSUE_DENSITY,
        well_composed=False, info=info)

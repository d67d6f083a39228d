"""Implicit-surface primitives for the bone generators (NumPy, host side).

Every primitive takes ``p: (n, 3)`` points in mm and returns ``(n,)`` signed values in mm,
negative inside. They are exact signed distances (sphere, half-space) or close
approximations whose gradient has length ≈ 1 near the surface (ellipsoid, tapered
elliptic cylinder, smooth unions), which is all the meshers need: a sign for the inside
test and a gradient for projecting nodes onto the surface.

Reference for the smooth minimum and the ellipsoid bound: I. Quílez, "distance functions"
(iquilezles.org/articles/distfunctions), polynomial smooth-min and ellipsoid bound.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sphere", "ellipsoid", "tapered_elliptic_cylinder", "half_space", "smooth_union",
           "softmin_weights", "smoothstep", "segment_distance", "polyline_distance_2d",
           "bezier_polyline", "unit",
           "frame_from_axis"]


def unit(v) -> np.ndarray:
    """v / |v| for a (3,) vector."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def frame_from_axis(axis, up) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal frame (a, u, w): a = unit axis, u = ``up`` made orthogonal to a, w = a × u."""
    a = unit(axis)
    u = np.asarray(up, dtype=np.float64)
    u = unit(u - (u @ a) * a)
    return a, u, np.cross(a, u)


def smoothstep(t) -> np.ndarray:
    """C¹ ramp: 0 for t ≤ 0, 1 for t ≥ 1, 3t² − 2t³ between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def sphere(p: np.ndarray, centre, radius: float) -> np.ndarray:
    """Exact signed distance to a sphere (mm)."""
    return np.linalg.norm(p - np.asarray(centre), axis=1) - radius


def half_space(p: np.ndarray, point, normal) -> np.ndarray:
    """Signed distance to the half-space whose outward normal is ``normal`` (inside: below)."""
    n = unit(normal)
    return (p - np.asarray(point)) @ n


def ellipsoid(p: np.ndarray, centre, radii, axes=None) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (Quílez's bound; exact for a sphere).

    Args:
        centre: (3,) mm. radii: (3,) semi-axes, mm, along the rows of ``axes``.
        axes: (3, 3) orthonormal rows (default: x, y, z).
    """
    q = p - np.asarray(centre)
    if axes is not None:
        q = q @ np.asarray(axes).T
    r = np.asarray(radii, dtype=np.float64)
    k0 = np.linalg.norm(q / r, axis=1)
    k1 = np.linalg.norm(q / (r * r), axis=1)
    return _bound(k0, k1, r.min())


def _ellipse_sdf(u: np.ndarray, v: np.ndarray, a, b) -> np.ndarray:
    """Approximate signed distance to an ellipse with semi-axes a (u) and b (v) (mm)."""
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    return _bound(k0, k1, np.minimum(a, b))


def _bound(k0, k1, rmin):
    """Quílez's ellipsoid bound k0 (k0 − 1) / k1 outside and near the surface; deep inside
    (k0 < 0.5, where the bound degenerates to 0 at the centre) the scaled radius (k0 − 1)·r_min,
    blended continuously."""
    outer = k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
    inner = (k0 - 1.0) * rmin
    t = np.clip((k0 - 0.5) / 0.3, 0.0, 1.0)
    return np.where(k0 >= 0.8, outer, t * outer + (1 - t) * inner)


def tapered_elliptic_cylinder(p: np.ndarray, start, axis, length: float, radii_fn) -> np.ndarray:
    """A capped cylinder along ``axis`` whose elliptic section varies along it.

    Args:
        start: (3,) mm, centre of the first cap.
        axis: (3,) direction; with ``frame_from_axis``'s (a, u, w) frame given as a tuple
            ``(a, u, w)`` the section's first semi-axis lies along u.
        length: mm, distance between the caps.
        radii_fn: s -> (r_u, r_w), the semi-axes (mm) at arc length s ∈ [0, length].
    """
    a, u, w = axis
    q = p - np.asarray(start)
    s = q @ a
    ru, rw = radii_fn(np.clip(s, 0.0, length))
    radial = _ellipse_sdf(q @ u, q @ w, ru, rw)
    caps = np.maximum(-s, s - length)
    outside = np.sqrt(np.maximum(radial, 0.0) ** 2 + np.maximum(caps, 0.0) ** 2)
    return np.where((radial > 0) & (caps > 0), outside, np.maximum(radial, caps))


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum with blend radius k (mm); the plain minimum for k = 0."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def softmin_weights(ds: list[np.ndarray], tau: float) -> np.ndarray:
    """(n_primitives, n) partition of unity favouring the primitive with the smallest value.

    w_i ∝ exp(−(d_i − min_j d_j)/τ); used to blend per-primitive properties (cortical
    thickness, trabecular density) smoothly across the fillets, τ in mm.
    """
    d = np.stack(ds)
    w = np.exp(-(d - d.min(axis=0)) / tau)
    return w / w.sum(axis=0)


def segment_distance(p: np.ndarray, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point (n, d) to the segment a–b (d,), and the parameter t ∈ [0, 1]."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    r = p - a - t[:, None] * ab
    return np.sqrt(np.einsum("ij,ij->i", r, r)), t


def polyline_distance_2d(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Distance (mm) from planar points (x, y), each (n,), to a polyline (k, 2)."""
    best = np.full(x.shape, np.inf)
    for (ax, ay), (bx, by) in zip(vertices[:-1], vertices[1:]):
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        rx, ry = x - ax - t * dx, y - ay - t * dy
        np.minimum(best, rx * rx + ry * ry, out=best)
    return np.sqrt(best)


def bezier_polyline(p0, p1, p2, n: int = 16) -> np.ndarray:
    """(n + 1, d) points of the quadratic Bézier curve p0–p1–p2, uniform in the parameter."""
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    return (1 - t) ** 2 * np.asarray(p0, float) + 2 * (1 - t) * t * np.asarray(p1, float) \
        + t**2 * np.asarray(p2, float)

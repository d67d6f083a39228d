"""Fracture load of a cantilever beam from the linear criteria, against beam theory.

A tip-loaded cantilever (length L, section b × h) carries M(z) = P (L − z) at every section
(statics, exact whatever the tip traction), so the bending strain is ε = P (L − z) y / (E I)
and, in uniaxial stress, the effective strain √(2·SED/E) = |ε|. With ξ = 1 − z/L and
η = 2|y|/h the tissue fraction beyond a strain a·ε_max (ε_max = P L h / (2 E I) at the root's
outer fibres) is the area of {ξη > a} in the unit square, f(a) = 1 − a + a ln a. Pistoia
(2 % beyond 0.7 %) therefore fails at P = (0.007 / a*) · 2 E I / (L h) with f(a*) = 0.02,
a* = 0.8068; the tensile strain limit (1 % of the volume, all on the tension half, beyond
0.73 %; the compressive side reaches 0.73·/1.04 × that strain and does not count) fails at
the same a* with 0.0073 in place of 0.007.
"""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import febone as fb
from febone.strength import LoadCase, Support, exceedance_quantile, strength

B, H, L, E0 = 10.0, 10.0, 100.0, 1000.0
NU = 0.01  # the clamp fixes u_y over the root face; ν → 0 removes its Poisson restraint
I = B * H**3 / 12
CANTILEVER = LoadCase("cantilever", "tip", "y", -1.0, (Support("root", "yz"), Support("corner", "x")))


def _beam(shape):
    mesh = fb.box_mesh(shape, (B, H, L), "tet10", origin=(0.0, -H / 2, 0.0))
    p = mesh.points
    root = p[:, 2] == 0
    corner = root & (p[:, 0] == 0) & (p[:, 1] == -H / 2)
    return mesh.with_point_data(root=root.astype(int), tip=(p[:, 2] == L).astype(int),
                                corner=corner.astype(int))


def _a_star(fraction):
    return brentq(lambda a: 1 - a + a * np.log(a) - fraction, 1e-9, 1 - 1e-12)


def _beam_theory_per_element(mesh, P):
    """Beam-theory |ε| per element as febone measures it (RMS over the quadrature points,
    since SED is their weighted mean) and the element-mean axial strain, at tip load P."""
    xq = np.einsum("qn,enk->eqk", mesh.element.shape_at_quadrature(), mesh.points[mesh.cells])
    w = np.asarray(fb.FEModel.from_mesh(mesh).weights)
    eps = P * (L - xq[..., 2]) * xq[..., 1] / (E0 * I)
    return np.sqrt((w * eps**2).sum(1) / w.sum(1)), (w * eps).sum(1) / w.sum(1), w.sum(1)


@pytest.mark.parametrize("shape, continuum_tol", [((2, 6, 30), 0.015), ((2, 10, 50), 0.004)])
def test_cantilever_fracture_load_against_beam_theory(shape, continuum_tol):
    mesh = _beam(shape)
    res = strength(mesh, CANTILEVER, np.full(mesh.n_elements, E0), nu=NU,
                   methods=("pistoia", "strain-limit"))
    P = res.stiffness_N_per_mm * CANTILEVER.displacement_mm
    a = _a_star(0.02)
    closed = {"pistoia": 0.007 / a * 2 * E0 * I / (L * H),
              "strain-limit": 0.0073 / a * 2 * E0 * I / (L * H)}
    # 1) hand computation: the same quantiles of the beam-theory strain on the same elements.
    # What remains is the FE model's departure from beam theory (the clamp's Saint-Venant
    # zone, shear, tet10 interpolation): measured 3e-4 on both meshes; bound 2e-3.
    eff, mean, vol = _beam_theory_per_element(mesh, P)
    q_p = float(exceedance_quantile(jnp.asarray(eff), jnp.asarray(vol), 0.02))
    ratio = np.maximum(np.maximum(mean, 0) / 0.0073, np.maximum(-mean, 0) / 0.0104)
    q_s = float(exceedance_quantile(jnp.asarray(ratio), jnp.asarray(vol), 0.01))
    assert res.fracture_load_N["pistoia"] == pytest.approx(P * 0.007 / q_p, rel=2e-3)
    assert res.fracture_load_N["strain-limit"] == pytest.approx(P / q_s, rel=2e-3)
    # 2) the continuum closed form: the critical band is the outer 10 % of the depth, one
    # element or less, so the element-wise quantile converges with the mesh: measured
    # +0.66 % / +1.0 % with 6 elements through the depth and −0.19 % / −0.08 % with 10
    for method, load in closed.items():
        assert res.fracture_load_N[method] == pytest.approx(load, rel=continuum_tol), method
    # where it fails: at the root's outer fibres, inside {ξη ≥ a*} up to one element size
    c = mesh.points[mesh.cells[res.failed_elements["pistoia"]]].mean(axis=1)
    xi_eta = (1 - c[:, 2] / L) * 2 * np.abs(c[:, 1]) / H
    assert xi_eta.min() >= a - (L / shape[2] / L + H / shape[1] * 2 / H)


def _section_moment_capacity(settings, n=20001):
    """Peak of the moment–curvature curve of the B × H section for the secant-softening law
    (plane sections, uniaxial stress, tension and compression yield strains differ so the
    neutral axis moves; N = 0 solved per curvature), N·mm."""
    y = np.linspace(-H / 2, H / 2, n)
    p = settings

    def s(k):  # stress / yield stress for strain ratio k (the law of secant_ratio)
        soft = np.maximum(1 + p.hardening * (p.softening_start - 1) - p.softening * (k - p.softening_start),
                          p.residual)
        return np.where(k <= 1, k, np.where(k <= p.softening_start, 1 + p.hardening * (k - 1), soft))

    def resultants(phi, y0):
        eps = phi * (y - y0)
        sig = np.where(eps > 0, E0 * p.yield_tension * s(eps / p.yield_tension),
                       -E0 * p.yield_compression * s(-eps / p.yield_compression))
        return np.trapezoid(sig, y) * B, np.trapezoid(sig * y, y) * B

    moments = []
    for phi in np.linspace(1e-5, 8 * p.yield_tension / (H / 2), 400):
        y0 = brentq(lambda y0: resultants(phi, y0)[0], -0.499 * H, 0.499 * H)
        moments.append(resultants(phi, y0)[1])
    return max(moments)


@pytest.mark.slow
def test_cantilever_nonlinear_ultimate_load_against_section_capacity():
    from febone.strength import ProgressiveFailure

    settings = ProgressiveFailure(increments=40, stop_ratio=0.9, stiffness_tol=0.02)
    shape = (2, 6, 30)
    mesh = _beam(shape)
    c = strength(mesh, CANTILEVER, np.full(mesh.n_elements, E0), nu=NU, methods=("nonlinear",),
                 nonlinear=settings).curve
    assert c.peak_reached and np.all(np.isfinite(c.force_N))
    # The beam fails when the root section reaches its moment capacity M_max (1744 N·mm,
    # 1.61 × the first-yield moment): P_u = M_max / L. The FE root elements carry their
    # mean strain at Δz/2 from the root, where the moment is P (L − Δz/2), so the FE peak
    # approaches M_max / (L − Δz/2); measured +1.5 % for this mesh (+0.3 % with 10 × 50
    # elements), the rest being the 6-element depth profile and IMPL-EX's first-order error
    # (≈ 1 % at stiffness_tol 0.02 on the femur); bound 3 %
    dz = L / shape[2]
    assert c.ultimate_load_N == pytest.approx(_section_moment_capacity(settings) / (L - dz / 2), rel=0.03)

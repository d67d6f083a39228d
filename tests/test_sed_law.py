"""Strain-energy remodelling law (febone.remodel.sed_law) on small bars.

A prismatic bar under an axial force F is in uniaxial stress σ = F/A whatever its density
(ν = 0.001, so the clamped end barely disturbs it), hence U = σ²/(2E) and, with E = aρ²,

    S = U/ρ = σ²/(2aρ³)   (J/g for MPa and g/cm³),   equilibrium S = k  ⇒  ρ* = (σ²/(2ak))^(1/3).

The FE stimulus of this bar matches the closed form to ~1e-6 relative (measured: 1.1e-6 for the
2×2×6 bar; the residual is the ν = 0.001 end effect, the CG tolerance is 1e-8), so densities
after one step are compared at rtol 1e-5 and converged densities at 1e-5 (ρ* ∝ S^(1/3) divides
the stimulus error by three; the iteration error after 50 steps is < 1e-12).
"""
from dataclasses import replace

import numpy as np
import pytest

import febone as fb
from febone.remodel.mechanics import HabitualLoad
from febone.remodel.sed_law import WEINANS_1992, SEDLaw, sed_remodel

NU = 0.001
AREA, LENGTH = 4.0, 6.0            # mm², mm (2 × 2 × 6 bar)
G = 9.81


def bar(shape=(2, 2, 6)):
    mesh = fb.box_mesh(shape, size=(2.0, 2.0, LENGTH))
    z = mesh.points[:, 2]
    pd = {"face_min": (z == z.min()).astype(np.uint8), "face_max": (z == z.max()).astype(np.uint8)}
    return replace(mesh, point_data=pd)


def run(mesh, sigma, rho0, **kw):
    """SED remodelling of a bar under axial stress σ (MPa): force F = σA as 1 BW of F/g kg."""
    kw.setdefault("preconditioner", "jacobi")
    return sed_remodel(mesh, habitual=(HabitualLoad("compression", 1.0, 1.0),),
                       body_mass_kg=sigma * AREA / G, nu=NU, rho0=rho0, **kw)


def sigma_for(rho_star, law=WEINANS_1992):
    """Axial stress (MPa) whose equilibrium density is rho_star (g/cm³): σ² = 2akρ*³."""
    return np.sqrt(2 * law.a * law.k * rho_star ** 3)


def closed_form_S(sigma, rho, law=WEINANS_1992):
    return sigma ** 2 / (2 * law.a * rho ** law.b) / rho


@pytest.mark.parametrize("rho0", [0.6, 1.2])
def test_bar_converges_to_closed_form_equilibrium(rho0):
    """From below (0.6) and above (1.2) the bar settles at ρ* = (σ²/(200k))^(1/3) = 0.8 g/cm³,
    monotonically (dt = 0.5 < ρ*/(3Bk) = 1.07), and its stiffness follows K = 100ρ²A/L."""
    mesh = bar()
    rho_star = 0.8
    res = run(mesh, sigma_for(rho_star), rho0, steps=50, dt=0.5)
    rho = res.density[:, 0]
    np.testing.assert_allclose(res.density[-1], rho_star, rtol=1e-5)
    # monotone up to the CG noise of the warm-started solves (rtol 1e-8: measured ≤ 1.6e-8
    # g/cm³ per step once converged)
    steps = np.diff(rho)
    assert np.all(steps >= -1e-7) if rho0 < rho_star else np.all(steps <= 1e-7)
    np.testing.assert_allclose(res.stimulus[-1], WEINANS_1992.k, rtol=1e-5)
    # stiffness of a uniaxial bar: E A / L; the clamped end stiffens it by O(ν²)
    np.testing.assert_allclose(res.stiffness[:, 0], 100 * rho ** 2 * AREA / LENGTH, rtol=1e-5)
    assert res.time[-1] == pytest.approx(25.0) and res.stiffness.shape == (51, 1)


def layered(ratios, law):
    """1 × 1 × 6 bar whose layers (in series, each carrying σ = F/A) have S/k = ``ratios``
    under the stress that keeps ρ = 0.8 at S = k: ρ_i = 0.8 · ratio_i^(−1/3) (S ∝ ρ⁻³)."""
    mesh = bar((1, 1, 6))
    zc = mesh.points[mesh.cells].mean(axis=1)[:, 2]
    ratio = np.asarray(ratios)[np.argsort(np.argsort(zc))]
    return mesh, sigma_for(0.8, law), 0.8 * ratio ** (-1 / 3), ratio


def test_lazy_zone_keeps_density():
    """Layers with S/k in 0.81…1.19 lie inside the zone of s = 0.2: nothing changes, exactly."""
    law = SEDLaw(s=0.2)
    mesh, sigma, rho0, ratio = layered([1.19, 0.81, 1.1, 0.9, 1.0, 1.05], law)
    res = run(mesh, sigma, rho0, steps=5, law=law)
    np.testing.assert_allclose(res.stimulus[0], ratio * law.k, rtol=1e-5)
    np.testing.assert_array_equal(res.density, np.broadcast_to(rho0, res.density.shape))


@pytest.mark.parametrize("s", [0.0, 0.2])
def test_one_explicit_step_matches_hand_computation(s):
    """ρ1 = ρ0 + Δt·B(S0 − (1 ± s)k) with S0 = σ²/(2aρ0³) (non-default B and k); with s = 0.2
    the layers at S/k = 1.1 and 0.9 are inside the zone and keep their density."""
    law = SEDLaw(k=0.3, B=0.5, s=s)
    dt = 0.4
    mesh, sigma, rho0, ratio = layered([1.5, 0.5, 1.3, 0.7, 1.1, 0.9], law)
    res = run(mesh, sigma, rho0, steps=1, dt=dt, law=law)
    S0 = closed_form_S(sigma, rho0, law)
    np.testing.assert_allclose(S0, ratio * law.k, rtol=1e-12)
    rate = np.where(S0 > (1 + s) * law.k, law.B * (S0 - (1 + s) * law.k),
                    np.where(S0 < (1 - s) * law.k, law.B * (S0 - (1 - s) * law.k), 0.0))
    np.testing.assert_allclose(res.stimulus[0], S0, rtol=1e-5)
    # atol: the 1e-6 relative stimulus error of the FE, on the largest S
    np.testing.assert_allclose(res.density[1] - rho0, dt * rate, rtol=1e-5, atol=1e-6 * S0.max())
    assert np.count_nonzero(rate == 0.0) == (2 if s else 0)


def test_density_is_clipped_at_the_bounds():
    """Overload drives ρ to 1.74 and disuse to 0.01 g/cm³; both stay there."""
    law = WEINANS_1992
    high = run(bar(), sigma_for(3.0), 1.7, years=3.0, dt=0.5, law=replace(law, time_unit_years=2.0))
    np.testing.assert_allclose(high.time_years, [0.0, 1.0, 2.0, 3.0])    # 3 y = 3 steps of 1 y
    assert high.density[1:].max() == law.rho_max
    np.testing.assert_array_equal(high.density[-1], law.rho_max)
    low = run(bar(), sigma_for(0.002), 0.05, steps=3, dt=1.0)
    # first step: 0.05 + 1·(S − 0.25) with S = 0.002³/0.05³·0.25 ≈ 1.6e-5 → below 0.01 → clipped
    np.testing.assert_array_equal(low.density[1:], law.rho_min)


def test_smoothing_averages_the_rate_over_nodes():
    """One element per layer (1 × 1 × 6): the element → node → element average of the rate is
    (r_{i−1} + 2r_i + r_{i+1})/4 inside and (3r_0 + r_1)/4 at the ends (equal volumes). The
    layers are in series, so each still carries σ = F/A and r_i = B(σ²/(200ρ_i³) − k)."""
    mesh = bar((1, 1, 6))
    zc = mesh.points[mesh.cells].mean(axis=1)[:, 2]
    rho0 = np.interp(zc, [0, 2, 4, 6], [0.6, 1.0, 0.7, 0.9])
    sigma, dt = sigma_for(0.8), 0.1
    r = WEINANS_1992.B * (closed_form_S(sigma, rho0) - WEINANS_1992.k)
    order = np.argsort(zc)
    ro = r[order]
    pad = np.concatenate([ro[:1], ro, ro[-1:]])
    smooth = np.empty_like(r)
    smooth[order] = (pad[:-2] + 2 * pad[1:-1] + pad[2:]) / 4
    res = run(mesh, sigma, rho0, steps=1, dt=dt, smoothing=True)
    # atol: the 1e-6 relative FE stimulus error on the largest S (some smoothed rates are ≈ 0)
    np.testing.assert_allclose(res.density[1] - rho0, dt * smooth, rtol=1e-5,
                               atol=dt * 1e-5 * closed_form_S(sigma, rho0).max())


def test_bad_inputs():
    for kw, msg in [(dict(B=-1.0), "B must be"), (dict(k=0.0), "k must be"),
                    (dict(k=-0.25), "k must be"), (dict(s=1.0), r"\[0, 1\)"),
                    (dict(s=-0.1), r"\[0, 1\)"), (dict(s=float("nan")), r"\[0, 1\)"),
                    (dict(rho_max=0.005), "rho_max")]:
        with pytest.raises(ValueError, match=msg):
            SEDLaw(**kw)
    mesh = bar()
    rho = np.full(mesh.n_elements, 0.8)
    rho[3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite in elements \[3\]"):
        run(mesh, 5.0, rho, steps=1)
    with pytest.raises(ValueError, match="outside the law's bounds"):
        run(mesh, 5.0, 1.9, steps=1)
    with pytest.raises(ValueError, match="density_g_cm3"):
        run(mesh, 5.0, None, steps=1)
    with pytest.raises(ValueError, match="exactly one of steps"):
        run(mesh, 5.0, 0.8, steps=1, years=1.0)
    with pytest.raises(ValueError, match="whole number of steps"):
        run(mesh, 5.0, 0.8, years=1.25, dt=0.5)
    with pytest.raises(ValueError, match="dt must be"):
        run(mesh, 5.0, 0.8, steps=1, dt=0.0)
    with pytest.raises(TypeError, match="SEDLaw"):
        run(mesh, 5.0, 0.8, steps=1, law={"k": 0.25})

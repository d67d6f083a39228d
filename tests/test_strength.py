"""Strength: linear criteria, nonlinear progressive failure and the smooth surrogate against
closed-form answers and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb
from febone.strength import (LoadCase, Pistoia, ProgressiveFailure, StrainLimits, Support,
                             exceedance_quantile, fracture_load_surrogate, secant_ratio,
                             soft_exceedance_quantile, strength)

A, L, E0 = 10.0 * 10.0, 40.0, 1000.0  # bar cross-section mm², length mm, modulus MPa


def _roller_bar(cell_type="hex8", shape=(2, 2, 6)):
    """Bar along z; bottom face supported along z only, plus the minimum in-plane supports so
    that the stress is exactly uniaxial (no end clamping)."""
    mesh = fb.box_mesh(shape, (10.0, 10.0, L), cell_type)
    p = mesh.points
    origin = (p[:, 0] == 0) & (p[:, 1] == 0) & (p[:, 2] == 0)
    xaxis = (p[:, 0] == 10) & (p[:, 1] == 0) & (p[:, 2] == 0)
    return mesh.with_point_data(bottom=(p[:, 2] == 0).astype(int), top=(p[:, 2] == L).astype(int),
                                origin=origin.astype(int), xaxis=xaxis.astype(int))


ROLLER = LoadCase("compression", "top", "z", -1.0,
                  (Support("bottom", "z"), Support("origin", "xy"), Support("xaxis", "y")),
                  displacement_mm=0.1, towards="bottom")


def test_uniform_bar_linear_criteria_closed_form():
    mesh = _roller_bar()
    res = strength(mesh, ROLLER, np.full(mesh.n_elements, E0),
                   methods=("pistoia", "strain-limit"))
    # uniaxial stress: stiffness EA/L; effective strain √(2·SED/E) = |ε|, so Pistoia fails at
    # E·A·0.007 and the compressive strain limit at E·A·0.0104 (exact up to the CG tolerance)
    assert res.stiffness_N_per_mm == pytest.approx(E0 * A / L, rel=1e-7)
    assert res.fracture_load_N["pistoia"] == pytest.approx(E0 * A * 0.007, rel=1e-7)
    assert res.fracture_load_N["strain-limit"] == pytest.approx(E0 * A * 0.0104, rel=1e-7)


def test_uniform_bar_tension_uses_tensile_limit():
    mesh = _roller_bar()
    pull = LoadCase("tension", "top", "z", 1.0, ROLLER.supports, displacement_mm=0.1)
    res = strength(mesh, pull, np.full(mesh.n_elements, E0), methods=("strain-limit",))
    # in tension ε₁ = ε governs over the lateral −ν·ε: failure at E·A·0.0073
    assert res.fracture_load_N["strain-limit"] == pytest.approx(E0 * A * 0.0073, rel=1e-7)


def test_nonlinear_bar_recovers_linear_stiffness_and_known_ultimate_load():
    mesh = _roller_bar(shape=(1, 1, 4))
    settings = ProgressiveFailure(max_displacement_mm=L * 0.008 * 6, increments=24)
    res = strength(mesh, ROLLER, np.full(mesh.n_elements, E0), methods=("nonlinear",),
                   nonlinear=settings)
    c = res.curve
    # first increment is elastic: force/displacement equals the linear stiffness E·A/L
    assert c.force_N[1] / c.displacement_mm[1] == pytest.approx(E0 * A / L, rel=1e-6)
    # uniform uniaxial bar: the peak is σ_y·A·(1 + H(κ_s − 1)) with σ_y = E·ε_yc; an
    # increment lands exactly on κ_s = 3 (displacement 3·ε_y·L is a multiple of the step)
    expected = E0 * settings.yield_compression * A * (1 + settings.hardening * (settings.softening_start - 1))
    assert c.ultimate_load_N == pytest.approx(expected, rel=1e-6)
    assert c.peak_reached
    assert np.all(np.isfinite(c.force_N))


def test_nonlinear_series_bar_passes_the_peak_onto_the_softening_branch():
    # a bar of 8 elements with one weak element (half the yield strain via the density
    # exponent) in series with an elastic remainder, ν → 0 so the stress stays uniaxial.
    # Closed form, κ the weak element's strain ratio (ε_yw = 0.004, L_w = 5 mm):
    #   F = E·A·ε_yw·s(κ),  d = ε_yw·κ·L_w + F/(E·A)·(L − L_w)
    # peak F = E·A·ε_yw·(1 + H(κ_s − 1)) = 416 N; past it the force falls with slope
    # −E·A·S/(L_w − S(L − L_w)) (no snap-back for S = 0.1); the rest stays elastic.
    mesh = _roller_bar(shape=(1, 1, 8))
    zc = mesh.points[mesh.cells].mean(axis=1)[:, 2]
    weak = (zc > 15) & (zc < 20)
    settings = ProgressiveFailure(density_exponent=1.0, max_displacement_mm=0.4, increments=100,
                                  stop_ratio=0.3, softening=0.1, stiffness_tol=0.01)
    res = strength(mesh, ROLLER, np.full(mesh.n_elements, E0), nu=1e-3, methods=("nonlinear",),
                   density=np.where(weak, 0.5, 1.0), nonlinear=settings)
    c = res.curve
    assert np.all(np.isfinite(c.force_N)) and c.peak_reached
    elastic = c.displacement_mm <= 0.004 * L  # below the weak element's first yield
    np.testing.assert_allclose(c.force_N[elastic], E0 * A / L * c.displacement_mm[elastic], rtol=1e-9)
    peak = E0 * A * 0.004 * (1 + settings.hardening * (settings.softening_start - 1))
    # IMPL-EX is first order: stiffness_tol 0.01 gives −0.49 % here (0.05: +0.76 %)
    assert c.ultimate_load_N == pytest.approx(peak, rel=0.015)
    after = c.displacement_mm > c.ultimate_displacement_mm
    assert np.all(np.diff(c.force_N[after]) < 0) and c.force_N[-1] < 0.3 * c.ultimate_load_N
    # damage only in the weak element; the remainder never reached its yield strain
    assert np.all(c.damage[weak] > 0.5) and np.all(c.damage[~weak] == 0)


def test_secant_ratio_shape():
    p = ProgressiveFailure()
    k = jnp.array([0.5, 1.0, 2.0, p.softening_start, 100.0])
    g = np.asarray(secant_ratio(k, p))
    s = g * np.asarray(k)  # stress ratio σ/σ_y
    assert g[0] == 1 and g[1] == 1
    assert s[2] == pytest.approx(1 + p.hardening)
    assert s[4] == pytest.approx(p.residual)  # fully softened: residual stress


def test_exceedance_quantile_matches_sorted_definition():
    rng = np.random.default_rng(0)
    v, w = rng.random(1000), rng.random(1000)
    q = float(exceedance_quantile(jnp.asarray(v), jnp.asarray(w), 0.02))
    # the weight strictly above q is below 2 %, and including q's element reaches it
    assert w[v > q].sum() < 0.02 * w.sum() <= w[v >= q].sum()


def test_soft_quantile_converges_to_exact_and_has_implicit_gradient():
    rng = np.random.default_rng(1)
    v = jnp.asarray(np.exp(rng.normal(size=20000) * 0.3))
    w = jnp.asarray(rng.random(20000) + 0.5)
    hard = float(exceedance_quantile(v, w, 0.02))
    # a logistic ramp of relative width τ biases the quantile by O(τ²·density slope); with
    # τ = 0.005 on a smooth distribution the two agree to well under 1 %
    assert float(soft_exceedance_quantile(v, w, 0.02, tau=0.005)) == pytest.approx(hard, rel=0.01)
    f = lambda v: soft_exceedance_quantile(v, w, 0.02, tau=0.05)
    g = jax.grad(f)(v)
    k = int(jnp.argmax(jnp.abs(g)))
    h = 1e-6 * float(v[k])
    fd = (f(v.at[k].add(h)) - f(v.at[k].add(-h))) / (2 * h)
    assert float(g[k]) == pytest.approx(float(fd), rel=1e-5)


def _bending_cube(n):
    mesh = fb.box_mesh((n, n, n), (20.0, 20.0, 20.0), "tet10")
    p = mesh.points
    return mesh.with_point_data(bottom=(p[:, 2] == 0).astype(int), top=(p[:, 2] == 20).astype(int))


def test_surrogate_agrees_with_pistoia_and_gradient_matches_fd():
    mesh = _bending_cube(3)
    rng = np.random.default_rng(2)
    E = jnp.asarray(1000.0 * (1 + 0.5 * rng.random(mesh.n_elements)))
    case = LoadCase("compression", "top", "z", -1.0, (Support("bottom", "xyz"),), displacement_mm=0.1)
    res = strength(mesh, case, E, methods=("pistoia", "pistoia-smooth"))
    # 162 tet10 elements with a heterogeneous field: τ = 2 % smoothing changes the 2 % volume
    # quantile by a few per cent at most here
    assert res.fracture_load_N["pistoia-smooth"] == pytest.approx(res.fracture_load_N["pistoia"], rel=0.05)
    posed = case.posed(mesh)
    model = fb.FEModel.from_mesh(posed)
    bcs = case.boundary_conditions(posed)
    loaded = fb.node_set(posed, "top")

    @jax.jit
    def load(E):
        return fracture_load_surrogate(model, E, 0.3, bcs, loaded, 2, -1.0, criterion=Pistoia())

    assert float(load(E)) == pytest.approx(res.fracture_load_N["pistoia-smooth"], rel=1e-8)
    g = jax.jit(jax.grad(load))(E)
    for k in np.argsort(-np.abs(np.asarray(g)))[:3]:
        h = 1e-5 * float(E[k])
        fd = (load(E.at[k].add(h)) - load(E.at[k].add(-h))) / (2 * h)
        # central differences: O(h²) truncation ~1e-10 relative, solver rtol 1e-10
        assert float(g[k]) == pytest.approx(float(fd), rel=1e-4)


def test_strain_limit_surrogate_gradient():
    mesh = _bending_cube(2)
    E = jnp.full(mesh.n_elements, 1000.0).at[0].set(500.0)
    case = LoadCase("compression", "top", "z", -1.0, (Support("bottom", "xyz"),), displacement_mm=0.1)
    model = fb.FEModel.from_mesh(mesh)
    bcs = case.boundary_conditions(mesh)
    loaded = fb.node_set(mesh, "top")
    f = jax.jit(lambda E: fracture_load_surrogate(model, E, 0.3, bcs, loaded, 2, -1.0,
                                                  criterion=StrainLimits()))
    g = jax.jit(jax.grad(f))(E)
    h = 1e-5 * 500.0
    fd = (f(E.at[0].add(h)) - f(E.at[0].add(-h))) / (2 * h)
    assert float(g[0]) == pytest.approx(float(fd), rel=1e-4)


@pytest.mark.slow
def test_pistoia_load_stable_under_refinement():
    # a cube clamped at the bottom and compressed at the top: the 2 % tissue quantile of the
    # effective strain converges with the mesh (the peak element value would not: it sits in
    # the clamped corners)
    loads = []
    for n in (3, 5):
        mesh = _bending_cube(n)
        case = LoadCase("compression", "top", "z", -1.0, (Support("bottom", "xyz"),), displacement_mm=0.1)
        loads.append(strength(mesh, case, np.full(mesh.n_elements, 1000.0),
                              methods=("pistoia",)).fracture_load_N["pistoia"])
    assert loads[1] == pytest.approx(loads[0], rel=0.05)


def test_bad_strength_inputs():
    mesh = _roller_bar()
    with pytest.raises(ValueError, match="unknown strength method"):
        strength(mesh, ROLLER, np.full(mesh.n_elements, E0), methods=("magic",))
    with pytest.raises(ValueError, match="critical strain"):
        Pistoia(critical_strain=7.0)
    with pytest.raises(ValueError, match="softening_start"):
        ProgressiveFailure(softening_start=0.5)
    with pytest.raises(fb.mesh.NodeSetError, match="available node sets"):
        strength(mesh, LoadCase("x", "nope", "z", -1, (Support("bottom"),)), np.full(mesh.n_elements, E0))

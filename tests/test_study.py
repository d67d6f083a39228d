"""Differentiable studies (febone.study): reverse-mode gradients against central differences
for the solve, the strength surrogate, one remodelling step and a multi-year run; vmap equals a
Python loop; the gradient's memory grows per step by one checkpointed carry, not by a step's
intermediates.

Tolerances: the FE solves run at CG rtol 1e-8 (habitual loads) and 1e-10 (strength), so
outcomes carry ~1e-8 relative noise; central differences with h = 1e-3 relative then have
truncation O(h²)·f''' ≈ 1e-6 and noise ~1e-8/1e-3 = 1e-5 relative: AD and FD must agree to
2e-4 relative (a real error — a missing term, a stop_gradient in the wrong place — shows as
≥ 1e-2).
"""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb
from febone.remodel.mechanics import HabitualLoad
from febone.remodel.patient import Patient
from febone.remodel.settings import RemodelSettings
from febone.remodel.treatments import Treatment
from febone.strength import CASES
from febone.strength.geometry import resolve_node_sets
from febone.study import (StudySettings, batch, build_study, finite_difference, loop,
                          value_and_grad)

RTOL_AD_FD = 2e-4


def _specimen(shape=(2, 2, 3)):
    """A 10 × 10 × 15 mm trabecular specimen with heterogeneous density, g/cm³."""
    mesh = fb.box_mesh(shape, (10.0, 10.0, 5.0 * shape[2]))
    rng = np.random.default_rng(7)
    rho = 0.3 + 0.2 * rng.random(mesh.n_elements)
    return replace(mesh, cell_data={"density_g_cm3": rho})


def _settings(steps_per_year=12, **kw):
    """Fixed daily cell steps (a study's default, STUDY_DIFFERENCES)."""
    rs = RemodelSettings(habitual=(HabitualLoad("compression", 1.0, 0.5),),
                         preconditioner="jacobi", law="morgan-vertebra", cell_rtol=None,
                         steps_per_year=steps_per_year)
    return StudySettings(remodel=rs, strength_case="compression", **kw)


WOMAN = Patient.create(age_years=62.0)
AI = (Treatment.create("anastrozole", 1.0, "mg", 1),
      Treatment.create("exercise-resistance", 0.1, "fraction", 1))


@pytest.fixture(scope="module")
def one_step():
    """A 30-day run: one mechanical step."""
    return build_study(_specimen(), WOMAN, AI, history_years=0.0, years=30 / 365.25, settings=_settings())


def _posed(case_name):
    mesh, _ = resolve_node_sets(_specimen(), CASES[case_name]())
    case = CASES[case_name]()
    posed = case.posed(mesh)
    model = fb.FEModel.from_mesh(posed)
    return mesh, case, posed, model, case.boundary_conditions(posed)


def test_solve_gradient_matches_central_differences():
    """d(stiffness)/d(E) along a random direction: one adjoint solve vs two more solves."""
    mesh, case, posed, model, bcs = _posed("compression")
    loaded = fb.node_set(posed, case.loaded)
    E0 = jnp.asarray(1000.0 + 500.0 * np.random.default_rng(1).random(mesh.n_elements))
    v = jnp.asarray(np.random.default_rng(2).standard_normal(mesh.n_elements))

    def stiffness(t):
        mat = fb.LinearElastic(E0 * (1.0 + t * v), jnp.asarray(0.3))
        sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-12), check_supports=False)
        return case.load_sign(posed) * fb.reaction_forces(model, mat, bcs, sol.u)[loaded, 2].sum()

    ad = jax.grad(stiffness)(0.0)
    h = 1e-4
    fd = (stiffness(h) - stiffness(-h)) / (2 * h)
    # the operator is linear in E, the stiffness a smooth rational function: FD truncation
    # ~h² relative, CG at 1e-12
    np.testing.assert_allclose(ad, fd, rtol=1e-6)
    assert abs(float(ad)) > 1e-3 * float(stiffness(0.0))      # a non-trivial direction


def test_surrogate_gradient_matches_central_differences():
    """Soft-quantile Pistoia load: solve adjoint + implicit quantile derivative vs FD."""
    from febone.strength import fracture_load_surrogate

    mesh, case, posed, model, bcs = _posed("compression")
    loaded = fb.node_set(posed, case.loaded)
    rho = jnp.asarray(mesh.cell_data["density_g_cm3"])
    v = jnp.asarray(np.random.default_rng(3).standard_normal(mesh.n_elements))
    law = fb.density_law("morgan-vertebra")

    def load(t):
        return fracture_load_surrogate(model, law.modulus(rho * (1.0 + 0.1 * t * v)), 0.3, bcs,
                                       loaded, 2, case.load_sign(posed),
                                       solver=fb.PCG(rtol=1e-12))

    ad = jax.grad(load)(0.0)
    h = 1e-4
    fd = (load(h) - load(-h)) / (2 * h)
    np.testing.assert_allclose(ad, fd, rtol=1e-5)
    assert abs(float(ad)) > 1e-4 * float(load(0.0))


def test_one_remodelling_step_gradients(one_step):
    """Fracture load after one 30-day step (hormones → drives → steady start → FE stimulus →
    cells → strength) w.r.t. a dose, exercise, a coupling constant, the law exponent and the
    density scale."""
    names = ["dose:anastrozole", "exercise", "coupling:k_load", "law:b", "density_scale"]
    p = {"dose:anastrozole": 1.0, "exercise": 0.1, "coupling:k_load": 0.3, "law:b": 1.56,
         "density_scale": 1.0}
    value, grad = value_and_grad(one_step, p, "fracture_load")
    fd = finite_difference(one_step, p, names, "fracture_load")
    for n in names:
        np.testing.assert_allclose(float(grad[n]), fd[n], rtol=RTOL_AD_FD,
                                   atol=1e-7 * abs(float(value)), err_msg=n)
    # sanity of signs the physics fixes: denser bone is stronger; a stiffer law exponent with
    # ρ < 1 g/cm³ lowers the moduli (ρ^b falls with b) and so the load
    assert grad["density_scale"] > 0 and grad["law:b"] < 0


@pytest.mark.slow
def test_vmap_equals_loop(one_step):
    """A dose–response batch in one compiled vmap call equals one call per parameter set."""
    p = {"dose:anastrozole": jnp.array([0.25, 1.0, 4.0]),
         "exercise": jnp.array([0.0, 0.1, 0.3])}
    b, l = batch(one_step, p), loop(one_step, p)
    # vmapped CG runs until every member converged (rtol 1e-8): ~1e-8 relative differences
    for field in ("fracture_load", "stiffness", "bmd_change", "bmd_trajectory"):
        np.testing.assert_allclose(getattr(b, field), getattr(l, field), rtol=1e-7, atol=1e-9,
                                   err_msg=field)
    assert bool(jnp.all(b.converged))
    # and the members differ far beyond that agreement (the batch is not one run broadcast)
    assert float(jnp.ptp(b.fracture_load)) > 1e3 * float(jnp.max(jnp.abs(b.fracture_load -
                                                                          l.fracture_load)))


def test_bad_inputs(one_step):
    with pytest.raises(ValueError, match="unknown parameter"):
        value_and_grad(one_step, {"dosage": 1.0})
    with pytest.raises(ValueError, match="no 'denosumab' treatment"):
        value_and_grad(one_step, {"dose:denosumab": 60.0})
    with pytest.raises(ValueError, match="unknown outcome"):
        value_and_grad(one_step, {"exercise": 0.1}, "bmd")
    with pytest.raises(ValueError, match="steps_per_year"):
        _settings(steps_per_year=0)
    with pytest.raises(ValueError, match="one common leading size"):
        batch(one_step, {"exercise": jnp.array([0.1, 0.2]), "dose:anastrozole": jnp.ones(3)})
    with pytest.raises(ValueError, match="years"):
        build_study(_specimen(), WOMAN, AI, history_years=0.0, years=0.0, settings=_settings())


@pytest.mark.heavy
def test_relayed_adjoints_give_the_same_gradient():
    """Three monthly steps with the adjoint FE solves warm-started from the next step's (the
    default) and from zero: the same value, and the same gradient to 1e-6 relative (both solves
    of every step stop at CG rtol 1e-8; the outcome amplifies that residual through three steps
    of the cell model). The iteration counts are measured in benchmarks/RESULTS_study.md."""
    study = build_study(_specimen(), WOMAN, AI, history_years=0.0, years=90 / 365.25, settings=_settings())
    cold = replace(study, settings=replace(study.settings, relay_adjoints=False))
    p = {"dose:anastrozole": 1.0, "exercise": 0.1, "law:b": 1.56}
    v1, g1 = value_and_grad(study, p, "fracture_load")
    v2, g2 = value_and_grad(cold, p, "fracture_load")
    assert float(v1) == float(v2)
    for n in p:
        np.testing.assert_allclose(float(g1[n]), float(g2[n]), rtol=1e-6, err_msg=n)
        assert abs(float(g1[n])) > 1e-6 * float(v1)


@pytest.mark.heavy
def test_forward_mode_without_the_relay_equals_reverse_mode(one_step):
    """jax.jvp through a run (StudySettings(relay_adjoints=False): the relayed adjoint solves
    are reverse-mode only) equals the reverse-mode gradient, to round-off of the solves."""
    from febone.study.model import forward

    off = replace(one_step, settings=replace(one_step.settings, relay_adjoints=False))
    f = lambda s, x: forward(s, {"density_scale": x, "exercise": 0.1}).fracture_load
    _, tangent = jax.jvp(lambda x: f(off, x), (1.0,), (1.0,))
    grad = jax.grad(lambda x: f(one_step, x))(1.0)
    np.testing.assert_allclose(float(tangent), float(grad), rtol=1e-8)
    assert abs(float(grad)) > 0
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda x: f(one_step, x), (1.0,), (1.0,))


@pytest.mark.slow
def test_multi_year_run_gradients():
    """Two years in ten 73-day steps (five per year; two-level checkpoints: blocks of 4 with two
    padding steps): regional BMD change w.r.t. a dose, an E2 coupling constant and the density
    scale."""
    study = build_study(_specimen(), WOMAN, AI, history_years=0.0, years=2.0,
                        settings=_settings(steps_per_year=5, block=None))
    assert study.n_steps == 10
    names = ["dose:anastrozole", "coupling:P_RANKL_E2", "density_scale"]
    p = {"dose:anastrozole": 1.0, "coupling:P_RANKL_E2": 250.0, "density_scale": 1.0}
    value, grad = value_and_grad(study, p, "bmd_change:all")
    fd = finite_difference(study, p, names, "bmd_change:all")
    assert float(value) < 0          # an aromatase inhibitor after menopause loses bone
    # over ten steps the habitual CG noise (rtol 1e-8 → ~1e-8 of the stimulus, integrated by
    # the cells) divided by h enters the differences of this small derivative (the dose's
    # effect saturates): 1e-3 relative
    for n in names:
        np.testing.assert_allclose(float(grad[n]), fd[n], rtol=1e-3, err_msg=n)
    # more RANKL from the E2 deficit: more loss
    assert grad["coupling:P_RANKL_E2"] < 0


@pytest.mark.heavy
@pytest.mark.slow
def test_gradient_memory_grows_by_one_carry_per_step():
    """XLA's compiled memory of the reverse pass for N and 2N steps (one checkpoint per step):
    the increase per step is about one saved carry (cells, mineral queue, warm-start
    displacement), not the step's intermediates (its days of cell-model residuals)."""
    from febone.study.model import forward

    def temp_bytes(n, **kw):
        st = build_study(_specimen(), WOMAN, AI, history_years=0.0, years=n / 36,
                         settings=_settings(steps_per_year=36, block=1, **kw))
        g = jax.jit(jax.grad(lambda s, x: forward(s, {"exercise": x}).fracture_load, argnums=1))
        mem = g.lower(st, 0.1).compile().memory_analysis()
        return mem.temp_size_in_bytes, st

    n = 4
    m1, st = temp_bytes(n)
    m2, _ = temp_bytes(2 * n)
    n_el, n_nodes = st.rho0.shape[0], st.stim.cases[0].model.n_nodes
    queue = st.settings.remodel.mineral_params.queue_days
    # float64 bytes of the BoneState (cells, mean mineral content, stimulus, its reference,
    # mineral and density baselines, queue, warm-start displacement) and the relayed adjoint
    carry = 8 * (10 * n_el + n_el * queue + 6 * n_nodes)
    per_step = (m2 - m1) / n
    # a saved carry per step, plus the per-step inputs (10 days of 13 drives and the load
    # factor) and bookkeeping: within 1.5 carries
    assert per_step <= 1.5 * carry, (per_step, carry)
    # the working set of one step is several carries: 10 days × ~250 floats per element of
    # Rosenbrock residuals (12 elements: ~240 kB ≈ 2.5 carries) besides the mineral updates, so
    # without any checkpoint (neither the step nor its cell steps) the growth per step is far
    # larger
    m1_nc, _ = temp_bytes(n, checkpoint=False, cell_checkpoint=False)
    m2_nc, _ = temp_bytes(2 * n, checkpoint=False, cell_checkpoint=False)
    assert (m2_nc - m1_nc) / n > 3 * per_step, ((m2_nc - m1_nc) / n, per_step)

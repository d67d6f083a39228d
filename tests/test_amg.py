"""Smoothed-aggregation AMG preconditioner (febone.solve.amg).

Checks, each against something independent of the code under test:

* the host-assembled stiffness (reference element + NumPy) equals the matrix-free
  operator (FEModel + JAX) applied to random displacements, and is symmetric;
* AMG-preconditioned CG returns the Jacobi-preconditioned answer on tet4/tet10/hex8
  cantilevers with strongly heterogeneous moduli, in far fewer iterations;
* the V-cycle is a symmetric positive definite operator M with spec(M K) ⊂ (0, 1]
  (the error propagator of a symmetric V-cycle with a convergent smoother and exact
  coarse solve is an A-norm contraction), computed from dense matrices;
* gradients through ``fb.solve`` with AMG equal central finite differences and the
  Jacobi-preconditioned gradient;
* bad options raise ValueError/MaterialError with a message naming the fix.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb
from febone.fe.elasticity import internal_force
from febone.material.elastic import MaterialError

from meshes_for_tests import jittered_box

pyamg = pytest.importorskip("pyamg", reason="pyamg is not installed (pip install febone[amg])")
pytest.importorskip("scipy", reason="scipy is not installed (pip install febone[amg])")

from febone.solve.amg import AMG, assemble_stiffness  # noqa: E402

# small cantilevers, (nx, ny, nz) cells on a 4:1:1 box (tets: 6 per cell)
SHAPES = {"hexahedron": (12, 3, 3), "tetra": (8, 2, 2), "tetra10": (6, 2, 2)}
SIZE = (8.0, 2.0, 2.0)  # mm


def _cantilever(cell_type: str, seed: int = 0, shape=None):
    """Jittered 8 × 2 × 2 mm bar, clamped at x = 0, end at x = 8 pushed 0.05 mm in z;
    moduli log-uniform in 100…10,000 MPa per element (bone-like contrast)."""
    mesh = jittered_box(shape or SHAPES[cell_type], cell_type, size=SIZE, seed=seed)
    model = fb.FEModel.from_mesh(mesh)
    rng = np.random.default_rng(seed)
    E = 10.0 ** rng.uniform(2.0, 4.0, mesh.n_elements)
    mat = fb.LinearElastic.create(E, 0.3, n_elements=mesh.n_elements)
    end = fb.nodes_on_plane(mesh, "x", "max")
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes).fix(fb.nodes_on_plane(mesh, "x", "min"), "xyz")
           .displace(end, z=-0.05))
    return mesh, model, mat, bcs, end


@pytest.mark.parametrize("cell_type", list(SHAPES))
def test_assembled_stiffness_equals_matrix_free_operator(cell_type):
    _, model, mat, bcs, _ = _cantilever(cell_type)
    K = assemble_stiffness(model, mat)
    u = np.random.default_rng(1).normal(size=(model.n_nodes, 3))
    f_assembled = (K @ u.ravel()).reshape(-1, 3)
    f_free = np.asarray(internal_force(model, jnp.asarray(u), mat.E, mat.nu))
    # two independent float64 implementations of the same integrals: round-off only
    np.testing.assert_allclose(f_assembled, f_free, rtol=0, atol=1e-12 * np.abs(f_free).max())
    asym = abs(K - K.T).max()
    assert asym <= 1e-13 * abs(K).max()
    # with supports: prescribed rows/columns decoupled, diagonal kept
    Kb = assemble_stiffness(model, mat, bcs).toarray()
    fixed = np.asarray(bcs.fixed).ravel()
    Kd = K.toarray()
    np.testing.assert_array_equal(Kb[np.ix_(~fixed, ~fixed)], Kd[np.ix_(~fixed, ~fixed)])
    np.testing.assert_array_equal(Kb[np.ix_(fixed, fixed)], np.diag(np.diag(Kd)[fixed]))
    assert not Kb[np.ix_(fixed, ~fixed)].any()


@pytest.mark.parametrize("cell_type, fine", [("hexahedron", "assembled"), ("tetra", "assembled"),
                                             ("tetra10", "assembled"), ("tetra10", "matrix-free")])
def test_amg_solve_equals_jacobi_solve_in_far_fewer_iterations(cell_type, fine):
    _, model, mat, bcs, end = _cantilever(cell_type)
    solver = fb.PCG(rtol=1e-10)
    ref = fb.solve(model, mat, bcs, solver=solver)
    # max_coarse=8 forces a real hierarchy (≥ 2 levels) on these small meshes
    amg = AMG.build(model, mat, bcs, fine=fine, max_coarse=8)
    assert len(amg.levels) >= 1, amg.info
    sol = fb.solve(model, mat, bcs, solver=solver, preconditioner=amg)
    # both stop at ‖r‖ ≤ 1e-10‖b‖; with cond(K) ≲ 1e6 here the displacement error is ≲ 1e-4
    # relative in the worst case, and ~1e-8 in practice (both converge far past it)
    np.testing.assert_allclose(sol.u, ref.u, rtol=0, atol=1e-6 * np.abs(ref.u).max())
    r_ref = fb.reaction_forces(model, mat, bcs, ref.u)[end].sum(0)
    r_amg = fb.reaction_forces(model, mat, bcs, sol.u)[end].sum(0)
    # z: the prescribed direction, the bar's stiffness; x, y are free there, so their
    # "reactions" are CG residuals (≤ 1e-10‖b‖), zero to round-off for both solves
    np.testing.assert_allclose(float(r_amg[2]), float(r_ref[2]), rtol=1e-7)
    assert float(jnp.abs(r_amg[:2]).max()) <= 1e-7 * abs(float(r_ref[2]))
    it_j, it_a = int(ref.stats.iterations), int(sol.stats.iterations)
    # Jacobi needs O(100) iterations on these bars, SA-AMG O(10); a factor 4 is a loose floor
    assert it_a * 4 <= it_j, f"AMG {it_a} vs Jacobi {it_j} iterations ({amg.info})"


def _dense(op, n: int) -> np.ndarray:
    eye = jnp.eye(3 * n).reshape(3 * n, n, 3)
    return np.asarray(jax.vmap(op)(eye)).reshape(3 * n, 3 * n).T


@pytest.mark.parametrize("cell_type, shape", [("hexahedron", (8, 2, 2)), ("tetra10", (4, 1, 1))])
def test_vcycle_is_symmetric_positive_definite_contraction(cell_type, shape):
    _, model, mat, bcs, _ = _cantilever(cell_type, shape=shape)
    amg = AMG.build(model, mat, bcs, max_coarse=4)
    assert len(amg.levels) >= 1, amg.info  # a real V-cycle, not just the coarse solve
    n = model.n_nodes
    free = ~np.asarray(bcs.fixed).ravel()
    M = _dense(lambda r: amg(r), n)[np.ix_(free, free)]
    K = assemble_stiffness(model, mat).toarray()[np.ix_(free, free)]
    # ⟨M r1, r2⟩ = ⟨r1, M r2⟩: every entry, to float64 round-off of the cycle
    assert np.abs(M - M.T).max() <= 1e-12 * np.abs(M).max()
    L = np.linalg.cholesky(0.5 * (M + M.T))  # raises if M is not positive definite
    lam = np.linalg.eigvalsh(L.T @ K @ L)  # spectrum of M K
    # error propagator I − MK of a symmetric V-cycle (convergent smoother, exact coarse
    # solve) is an energy-norm contraction: spec(MK) ⊂ (0, 1]; 1e-9 allows round-off
    assert lam.min() > 0.0
    assert lam.max() <= 1.0 + 1e-9
    # and it is a good preconditioner: cond(MK) small (Jacobi gives ~1e4 here)
    assert lam.max() / lam.min() < 100.0


def test_float32_hierarchy_gives_the_float64_answer():
    _, model, mat, bcs, _ = _cantilever("tetra10")
    solver = fb.PCG(rtol=1e-10)
    ref = fb.solve(model, mat, bcs, solver=solver, preconditioner=AMG.build(model, mat, bcs, max_coarse=8))
    amg32 = AMG.build(model, mat, bcs, max_coarse=8, dtype="float32")
    sol = fb.solve(model, mat, bcs, solver=solver, preconditioner=amg32)
    assert sol.u.dtype == jnp.float64
    # CG residual and iterates stay float64, so the same tolerance argument as above holds
    np.testing.assert_allclose(sol.u, ref.u, rtol=0, atol=1e-6 * np.abs(ref.u).max())


def test_hierarchy_built_for_other_moduli_still_converges():
    _, model, mat, bcs, _ = _cantilever("hexahedron")
    amg = AMG.build(model, fb.LinearElastic.create(1000.0, 0.3, n_elements=model.n_elements),
                    bcs, max_coarse=8)  # homogeneous hierarchy, heterogeneous solve
    ref = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-10))
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-10), preconditioner=amg)
    np.testing.assert_allclose(sol.u, ref.u, rtol=0, atol=1e-6 * np.abs(ref.u).max())


@pytest.mark.slow
def test_gradient_through_amg_solve_equals_finite_differences_and_jacobi():
    _, model, mat, bcs, end = _cantilever("tetra", seed=3)
    amg = AMG.build(model, mat, bcs, max_coarse=8)
    solver = fb.PCG(rtol=1e-12)

    def stiffness(E, preconditioner):
        m = fb.LinearElastic(E, mat.nu)
        u = fb.solve(model, m, bcs, solver=solver, preconditioner=preconditioner).u
        return fb.reaction_forces(model, m, bcs, u)[end, 2].sum()

    E = mat.E
    g_amg = jax.grad(stiffness)(E, amg)
    g_jac = jax.grad(stiffness)(E, None)
    # same adjoint equation, both solved to 1e-12: agreement to ~1e-8 relative
    np.testing.assert_allclose(g_amg, g_jac, rtol=0, atol=1e-7 * np.abs(g_jac).max())
    # central differences on the three elements with the largest sensitivity; step 1e-4·E
    # gives truncation ~1e-8 and solver noise ~1e-12/1e-4 = 1e-8 relative
    for k in np.argsort(-np.abs(np.asarray(g_amg)))[:3]:
        h = 1e-4 * float(E[k])
        fd = (stiffness(E.at[k].add(h), amg) - stiffness(E.at[k].add(-h), amg)) / (2 * h)
        np.testing.assert_allclose(float(g_amg[k]), float(fd), rtol=1e-5)


def test_bad_options_raise_with_a_fix():
    _, model, mat, bcs, _ = _cantilever("tetra")
    with pytest.raises(ValueError, match="fine"):
        AMG.build(model, mat, bcs, fine="dense")
    with pytest.raises(ValueError, match="degree"):
        AMG.build(model, mat, bcs, degree=0)
    with pytest.raises(ValueError, match="dtype"):
        AMG.build(model, mat, bcs, dtype="int32")
    with pytest.raises(MaterialError, match="shape"):
        AMG.build(model, fb.LinearElastic(jnp.ones(3), 0.3), bcs)
    with pytest.raises(ValueError, match="build them for this mesh"):
        AMG.build(model, mat, fb.BoundaryConditions.empty(model.n_nodes + 1))
    amg = AMG.build(model, mat, bcs, max_coarse=8)
    with pytest.raises(ValueError, match="shape"):
        amg(jnp.zeros((model.n_nodes + 1, 3)))


@pytest.mark.slow
@pytest.mark.shared_data
def test_femur_stiffness_with_amg(shared_data):
    """CT femur, sideways fall (77,610 dofs tet10): stiffness 9799.3 N/mm, the value
    torch-fem 0.14 (independent assembly, CG + pyamg) gives for the same model
    (benchmarks/femur_vs_torchfem.py); AMG needs tens of iterations where Jacobi needs ~1,300."""
    mesh = fb.read_mesh(shared_data / "mitkgem_proximal_femur_tet10.vtu")
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(np.asarray(mesh.cell_data["E_MPa"]), 0.3,
                                  n_elements=mesh.n_elements)
    troch = fb.node_set(mesh, "bc_trochanter_ux_minus1_uy0")
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes)
           .fix(fb.node_set(mesh, "bc_distal_uz0"), "z").fix(fb.node_set(mesh, "bc_head_ux0"), "x")
           .displace(troch, x=-1.0, y=0.0))
    amg = AMG.build(model, mat, bcs)
    sol = fb.solve(model, mat, bcs, preconditioner=amg)
    fx = float(fb.reaction_forces(model, mat, bcs, sol.u)[troch, 0].sum())
    assert int(sol.stats.iterations) < 60
    # rtol 1e-8 solves agree to ~1e-7; 1e-5 leaves room for the torch-fem quadrature
    # constants, which are rounded to 8 digits
    np.testing.assert_allclose(-fx, 9799.309, rtol=1e-5)


def test_missing_pyamg_raises_import_error_naming_the_extra(monkeypatch):
    _, model, mat, bcs, _ = _cantilever("tetra")
    monkeypatch.setitem(sys.modules, "pyamg", None)  # `import pyamg` fails
    with pytest.raises(ImportError, match=r"febone\[amg\]"):
        AMG.build(model, mat, bcs)


def test_hierarchy_without_supports_is_positive_semidefinite_and_converges():
    """Built with bcs=None the coarsest operator is singular (the six rigid-body modes);
    its pseudo-inverse must drop them instead of dividing by round-off (which made the
    cycle indefinite, eigenvalues ~ ±1e12, before this was handled)."""
    _, model, mat, bcs, _ = _cantilever("hexahedron", shape=(8, 2, 2))
    amg = AMG.build(model, mat, None, max_coarse=4)
    M = _dense(lambda r: amg(r), model.n_nodes)
    lam = np.linalg.eigvalsh(0.5 * (M + M.T))
    assert lam.min() >= -1e-10 * lam.max()  # positive semi-definite to round-off
    # no mode amplified beyond the supported cycle's largest (~1/λ_min(K_supported),
    # the softest supported mode); dividing by round-off gave ~1e13 times more
    free = ~np.asarray(bcs.fixed).ravel()
    M_sup = _dense(lambda r: AMG.build(model, mat, bcs, max_coarse=4)(r), model.n_nodes)
    assert lam.max() <= np.linalg.eigvalsh(0.5 * (M_sup + M_sup.T)[np.ix_(free, free)]).max()
    ref = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-10))
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-10), preconditioner=amg)
    np.testing.assert_allclose(sol.u, ref.u, rtol=0, atol=1e-6 * np.abs(ref.u).max())
    assert int(sol.stats.iterations) * 2 <= int(ref.stats.iterations)

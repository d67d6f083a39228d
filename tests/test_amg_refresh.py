"""The AMG hierarchy refreshed on the device (febone.solve.amg_refresh).

Checks against references independent of the device code:

* every level operator of a hierarchy refreshed for new moduli equals the host recomputation
  (SciPy ``Pᵀ A P`` with the same P, A from the NumPy assembly of
  :func:`~febone.solve.amg.assemble_stiffness`) to 1e-12 relative, and the coarse inverse equals
  the host inverse of the host coarse operator;
* the Chebyshev interval covers the true spectral radius of D⁻¹A (dense eigenvalues);
* the refresh keeps every shape and dtype (no recompilation) and moves nothing between host
  and device (``jax.transfer_guard``);
* on the coarse femur remodelled (−20 % density in the low-density half), CG with the refreshed
  hierarchy needs no more than 1.2 × the iterations of a pyamg rebuild and gives its answer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb

from meshes_for_tests import jittered_box

pytest.importorskip("pyamg", reason="pyamg is not installed (pip install febone[amg])")
sp = pytest.importorskip("scipy.sparse", reason="scipy is not installed")

from febone.solve.amg import AMG, BlockCSR, assemble_stiffness  # noqa: E402
from febone.solve.amg_refresh import refresh  # noqa: E402


def _bar(cell_type: str, shape, seed: int = 0):
    """Jittered 8 × 2 × 2 mm bar clamped at x = 0; log-uniform moduli 100…10,000 MPa."""
    mesh = jittered_box(shape, cell_type, size=(8.0, 2.0, 2.0), seed=seed)
    model = fb.FEModel.from_mesh(mesh)
    E = 10.0 ** np.random.default_rng(seed).uniform(2.0, 4.0, mesh.n_elements)
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes).fix(fb.nodes_on_plane(mesh, "x", "min"),
                                                        "xyz")
    bcs = bcs.displace(fb.nodes_on_plane(mesh, "x", "max"), z=-0.05)
    return model, E, bcs


def _scipy(M: BlockCSR, n_cols: int):
    """A :class:`BlockCSR` as a SciPy CSR matrix (n_rows·r, n_cols·c)."""
    r, c, _ = M.blocks.shape
    rows, cols = np.asarray(M.rows), np.asarray(M.cols)
    b = np.asarray(M.blocks)
    ii = (rows[None, None, :] * r + np.arange(r)[:, None, None]) + 0 * np.arange(c)[None, :, None]
    jj = (cols[None, None, :] * c + np.arange(c)[None, :, None]) + 0 * np.arange(r)[:, None, None]
    return sp.csr_matrix((b.ravel(), (ii.ravel(), jj.ravel())), shape=(M.n_rows * r, n_cols * c))


def _host_levels(amg: AMG, model, E, bcs):
    """Host reference: A_0 by NumPy assembly, A_{l+1} = Pᵀ A_l P by SciPy with amg's P."""
    A = assemble_stiffness(model, fb.LinearElastic.create(E, 0.3, model.n_elements), bcs).tocsr()
    out = [A]
    for lvl in amg.levels:
        P = _scipy(lvl.P, lvl.R.n_rows)
        A = (P.T @ A @ P).tocsr()
        out.append(A)
    return out


def test_refreshed_operators_equal_host_galerkin_products():
    model, E0, bcs = _bar("hexahedron", (12, 3, 3))
    mat0 = fb.LinearElastic.create(E0, 0.3, model.n_elements)
    amg = AMG.build(model, mat0, bcs, max_coarse=8, refreshable=True)
    assert len(amg.levels) >= 2, amg.info            # two Galerkin products at least
    E1 = E0 * np.random.default_rng(7).uniform(0.3, 1.5, E0.size)   # remodelled moduli
    new = refresh(amg, model, fb.LinearElastic.create(E1, 0.3, model.n_elements), bcs)
    host = _host_levels(amg, model, E1, bcs)
    for lvl, A in zip(new.levels, host):
        D = _scipy(lvl.A, lvl.A.n_rows)
        err = abs(D - A).max() / abs(A).max()
        assert err <= 1e-12, err
        # Chebyshev interval: the Lanczos Ritz value (× safety 1.1) brackets ρ(D⁻¹A) from
        # above within the smoother's tolerance; dense eigenvalues are the reference
        d = A.diagonal()
        s = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
        rho = np.linalg.eigvalsh((A.toarray() * s[:, None]) * s[None, :]).max()
        theta = 1.0 / float(lvl.cheb[0, 1])          # (hi + hi/10)/2
        hi = 2.0 * theta / 1.1
        assert rho * (1.0 + 1e-9) >= hi / 1.1 >= 0.9 * rho, (hi, rho)
        np.testing.assert_allclose(np.asarray(lvl.dinv).ravel(),
                                   np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0), rtol=1e-12)
    Ac = host[-1].toarray()
    # the coarse operator is SPD here (supports): the inverse of the host operator, to the
    # round-off amplified by its condition number (≲ 1e4 in the scaled form)
    ref = np.linalg.inv(Ac)
    assert np.abs(np.asarray(new.coarse) - ref).max() <= 1e-8 * np.abs(ref).max()
    # same structure, shapes and dtypes: a compiled solve takes either without recompiling
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(amg)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(amg)):
        assert a.shape == b.shape and a.dtype == b.dtype


def test_refresh_of_the_build_moduli_equals_the_built_hierarchy_without_host_transfers():
    model, E0, bcs = _bar("hexahedron", (12, 3, 3))
    mat0 = fb.LinearElastic.create(E0, 0.3, model.n_elements)
    amg = AMG.build(model, mat0, bcs, max_coarse=8, refreshable=True)
    args = jax.device_put((amg, model, fb.LinearElastic(jnp.asarray(E0), jnp.asarray(0.3)),
                           bcs))
    refresh(*args)                                    # compile outside the guard
    with jax.transfer_guard("disallow"):
        again = refresh(*args)
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(amg)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_refresh_of_a_hierarchy_built_without_plan_says_how():
    model, E0, bcs = _bar("hexahedron", (8, 2, 2))
    mat = fb.LinearElastic.create(E0, 0.3, model.n_elements)
    amg = AMG.build(model, mat, bcs, max_coarse=4)
    with pytest.raises(ValueError, match="refreshable=True"):
        refresh(amg, model, mat, bcs)


@pytest.mark.slow
def test_refreshed_hierarchy_on_a_remodelled_femur_is_as_sharp_as_a_pyamg_rebuild():
    from febone.bones import load_bundled
    from febone.material.laws import density_law
    from febone.strength import CASES
    from febone.strength.geometry import resolve_node_sets

    mesh = load_bundled("femur_coarse_hex8")
    mesh, _ = resolve_node_sets(mesh, CASES["stance"]())
    rho = np.asarray(mesh.cell_data["density_g_cm3"], float).reshape(-1)
    law = density_law("morgan-femoral-neck")
    case, _ = CASES["stance"]().sided(mesh)
    posed = case.posed(mesh)
    model = fb.FEModel.from_mesh(posed)
    bcs = case.boundary_conditions(posed, displacement_mm=1.0)
    amg = AMG.build(model, fb.LinearElastic.create(np.asarray(law.modulus(rho)), 0.3,
                                                   mesh.n_elements), bcs, refreshable=True)
    low = rho < np.median(rho)                       # disuse: −20 % in the low-density half
    mat = fb.LinearElastic.create(np.asarray(law.modulus(np.where(low, 0.8 * rho, rho))), 0.3,
                                  mesh.n_elements)
    solver = fb.PCG(rtol=1e-10)
    rebuilt = fb.solve(model, mat, bcs, solver=solver, preconditioner=AMG.build(model, mat, bcs),
                       check_supports=False)
    fresh = fb.solve(model, mat, bcs, solver=solver, preconditioner=refresh(amg, model, mat, bcs),
                     check_supports=False)
    it_rebuilt, it_fresh = int(rebuilt.stats.iterations), int(fresh.stats.iterations)
    assert it_fresh <= 1.2 * it_rebuilt, (it_fresh, it_rebuilt)
    # both stop at ‖r‖ ≤ 1e-10‖b‖: the same displacement to well within 1e-6
    np.testing.assert_allclose(fresh.u, rebuilt.u, rtol=0, atol=1e-6 * np.abs(rebuilt.u).max())

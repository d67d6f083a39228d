"""Patch tests: linear displacement fields must be reproduced to round-off on distorted meshes.

* MacNeal & Harder (1985) 7-element distorted hex8 cube (science.md §9): with
  u = 1e-3(2x+y+z)/2, v = 1e-3(x+2y+z)/2, w = 1e-3(x+y+2z)/2 on the 8 outer corners,
  E = 1e6, ν = 0.25, every element must carry σxx = σyy = σzz = 2000, τ = 400.
* Distorted tet4 / tet10 / hex8 boxes: a general linear field (stretch, shear and rotation)
  imposed on all surface nodes is recovered at every interior node.

Why round-off tolerances are right: the exact solution lies in the finite-element space
and the element quadratures integrate these constant-strain stiffness terms exactly
(affine tets; 2×2×2 Gauss integrates ∫∂N/∂x dV of a trilinear hex exactly), so the
discrete solution *is* the linear field. What is left is the PCG stopping error
(rtol 1e-12) amplified by the condition number of these tiny systems (≲ 1e3), i.e.
≲ 1e-9 relative, and float64 round-off.
"""
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb
from meshes_for_tests import jittered_box, macneal_harder_cube

TIGHT = fb.PCG(rtol=1e-12)


def _exact_stress(grad_u: np.ndarray, E: float, nu: float) -> np.ndarray:
    """Hooke's law written out independently of febone: σ = λ tr(ε) I + 2 μ ε."""
    eps = 0.5 * (grad_u + grad_u.T)
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    return lam * np.trace(eps) * np.eye(3) + 2 * mu * eps


def test_macneal_harder_hex8_patch():
    mesh = macneal_harder_cube()
    E, nu = 1.0e6, 0.25
    # ∂u_i/∂x_j of the prescribed field, as [i, j]
    G = 1e-3 * np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]) / 2.0
    sigma = _exact_stress(G, E, nu)
    # the published values follow from the formula (guards the formula and the numbers)
    np.testing.assert_allclose(np.diag(sigma), 2000.0, rtol=1e-13)
    np.testing.assert_allclose(sigma[[0, 0, 1], [1, 2, 2]], 400.0, rtol=1e-13)

    corners = np.arange(8)  # the outer cube corners (nodes 8..15 are the distorted inner ones)
    u_exact = mesh.points @ G.T
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes)
    for n in corners:
        bcs = bcs.displace([n], *u_exact[n])
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(E, nu=nu, n_elements=mesh.n_elements)
    sol = fb.solve(model, mat, bcs, solver=TIGHT)

    np.testing.assert_allclose(np.asarray(sol.u)[8:], u_exact[8:], rtol=0, atol=1e-9 * 1e-3)
    f = fb.element_fields(model, mat, sol.u)
    stress = np.asarray(f.stress)
    assert stress.shape == (7, 3, 3)
    # round-off: 1e-9 × the stress scale (2000 MPa), in every element and component
    np.testing.assert_allclose(stress, np.broadcast_to(sigma, stress.shape), rtol=0,
                               atol=1e-9 * 2000.0)
    # the reaction forces at the corners balance (no external loads): Σ r = 0
    r = np.asarray(fb.reaction_forces(model, mat, bcs, sol.u))
    np.testing.assert_allclose(r[corners].sum(0), 0.0, atol=1e-9 * np.abs(r).max())
    # and no spurious force at the free inner nodes
    np.testing.assert_allclose(r[8:], 0.0, atol=1e-9 * np.abs(r).max())


def test_macneal_harder_quadratic_field_is_not_reproduced():
    """Control: the same check fails for a field outside the element space, so the
    round-off tolerances above really discriminate."""
    mesh = macneal_harder_cube()
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(1e6, nu=0.25, n_elements=mesh.n_elements)
    u_exact = 1e-3 * np.stack([mesh.points[:, 0] ** 2, mesh.points[:, 1] * mesh.points[:, 2],
                               np.zeros(mesh.n_nodes)], axis=1)
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes)
    for n in range(8):
        bcs = bcs.displace([n], *u_exact[n])
    sol = fb.solve(model, mat, bcs, solver=TIGHT)
    assert np.abs(np.asarray(sol.u)[8:] - u_exact[8:]).max() > 1e-6


@pytest.mark.parametrize("cell_type", ["tet4", "tet10", "hex8"])
def test_linear_field_recovered_on_distorted_mesh(cell_type):
    mesh = jittered_box((3, 3, 3), cell_type, size=(2.0, 1.5, 1.0), amplitude=0.2, seed=7)
    # the jitter really distorts the mesh: interior nodes are off the regular grid
    regular = fb.box_mesh((3, 3, 3), size=(2.0, 1.5, 1.0), cell_type=cell_type)
    assert np.abs(mesh.points - regular.points).max() > 0.05
    E, nu = 3000.0, 0.3
    G = 1e-3 * np.array([[1.0, 0.4, -0.7], [0.2, -0.5, 0.3], [0.9, 0.1, 0.6]])  # not symmetric
    c = np.array([0.01, -0.02, 0.005])
    u_exact = mesh.points @ G.T + c
    surface = fb.surface_node_set(mesh)
    interior = np.setdiff1d(np.arange(mesh.n_nodes), surface)
    assert interior.size > 0
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes)
    fixed = np.zeros((mesh.n_nodes, 3), bool)
    fixed[surface] = True
    bcs = fb.BoundaryConditions(fixed, np.where(fixed, u_exact, 0.0), np.zeros((mesh.n_nodes, 3)))
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(E, nu=nu, n_elements=mesh.n_elements)
    sol = fb.solve(model, mat, bcs, solver=TIGHT)
    u = np.asarray(sol.u)
    # displacement scale |G| · size ≈ 2e-3 mm; round-off level 1e-9 of it
    np.testing.assert_allclose(u[interior], u_exact[interior], rtol=0, atol=1e-9 * 2e-3)
    stress = np.asarray(fb.element_fields(model, mat, jnp.asarray(u)).stress)
    sigma = _exact_stress(G, E, nu)
    np.testing.assert_allclose(stress, np.broadcast_to(sigma, stress.shape), rtol=0,
                               atol=1e-9 * np.abs(sigma).max())

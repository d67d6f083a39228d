"""Convergence rates under h-refinement against an exact body-force-free elasticity solution.

u = s ∇φ with φ = eˣ sin y + eᶻ cos x + xyz harmonic (Δφ = 0), s = 0.01. Then div u = Δφ = 0
and Δu = ∇Δφ = 0, so Navier's equations μΔu + (λ + μ)∇(div u) = 0 hold for every E, ν:
no body force is needed. The exact u is prescribed on all boundary nodes of the unit cube
and the relative L2 error ‖u_h − u‖/‖u‖ is integrated with a 125-point rule per element
(``meshes_for_tests.l2_error``), independent of the elements' stiffness quadrature.

Theory (Ciarlet; Strang & Fix): O(h²) for tet4 and hex8, O(h³) for tet10. The slope of a
least-squares fit of log(error) against log(h) must lie within ±0.3 of it. Measured (2-core
CPU, jax 0.10.2): tet4 1.99, hex8 2.01 (n = 2, 4, 8), tet10 2.96 (n = 1, 2, 4; 3.00 over
2, 4, 8). ±0.3 separates the orders (a tet10 that lost an order would fit ≈ 2) while
allowing the pre-asymptotic bend of the coarsest mesh.
"""
import numpy as np
import pytest

import febone as fb
from meshes_for_tests import l2_error

SCALE = 1e-2


def exact(p):
    """u = s ∇φ, φ = eˣ sin y + eᶻ cos x + xyz; p: (n, 3) mm -> (n, 3) mm."""
    x, y, z = p.T
    return SCALE * np.stack([np.exp(x) * np.sin(y) - np.exp(z) * np.sin(x) + y * z,
                             np.exp(x) * np.cos(y) + x * z,
                             np.exp(z) * np.cos(x) + x * y], axis=1)


def test_exact_solution_is_divergence_free_and_harmonic():
    """Check the premise numerically: div u = 0 and Δu = 0 by central differences.

    Step d = 1e-3: truncation O(d²·|∂³u|) (measured 1.1e-6·s for div, 4e-7·s for Δ);
    round-off ≈ 1e-16·|u|/d² ≈ 3e-10·s. Bounds 1e-5·s and 1e-4·s; a field that is not
    harmonic would give O(s)."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, (10, 3))
    d = 1e-3
    eye = np.eye(3) * d
    div = sum((exact(p + eye[i]) - exact(p - eye[i]))[:, i] / (2 * d) for i in range(3))
    lap = sum((exact(p + eye[i]) - 2 * exact(p) + exact(p - eye[i])) / d**2 for i in range(3))
    np.testing.assert_allclose(div, 0.0, atol=1e-5 * SCALE)
    np.testing.assert_allclose(lap, 0.0, atol=1e-4 * SCALE)


def _relative_error(cell_type: str, n: int) -> float:
    mesh = fb.box_mesh((n, n, n), cell_type=cell_type)
    ue = exact(mesh.points)
    fixed = np.zeros((mesh.n_nodes, 3), bool)
    fixed[fb.surface_node_set(mesh)] = True
    bcs = fb.BoundaryConditions(fixed, np.where(fixed, ue, 0.0), np.zeros_like(ue))
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(1000.0, nu=0.3, n_elements=mesh.n_elements)
    # rtol 1e-12: the algebraic error stays far below the finest discretisation error (≈1e-4)
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-12))
    err, norm = l2_error(mesh, np.asarray(sol.u), exact)
    return err / norm


@pytest.mark.parametrize("cell_type, divisions, order", [
    ("tet4", (2, 4, 8), 2.0),
    ("hex8", (2, 4, 8), 2.0),
    ("tet10", (1, 2, 4), 3.0),
])
def test_l2_convergence_rate(cell_type, divisions, order):
    errors = np.array([_relative_error(cell_type, n) for n in divisions])
    assert np.all(np.diff(errors) < 0), errors
    h = 1.0 / np.asarray(divisions, float)
    slope = np.polyfit(np.log(h), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (slope, errors)

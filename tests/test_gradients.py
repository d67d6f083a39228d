"""Gradients through ``fb.solve`` (implicit adjoint) against independent references.

Model: a small box, heterogeneous moduli (random per element, 500–1500 MPa), clamped at
x = 0, the x = L face pulled by a prescribed u_x = δ, and a traction on the top face so that
the displacement depends on E through both the Dirichlet and the Neumann data.
Quantity: the total x-reaction R on the pulled face (N).

References:
* central finite differences in single element moduli;
* Euler's theorem for the pure-Dirichlet case: R(cE) = c R(E) (u does not change when all
  moduli scale, K u does), so Σ_e E_e ∂R/∂E_e = R exactly;
* R is affine in δ, so dR/dδ equals a secant slope exactly.

Solves use rtol 1e-12 so that solver error (≈ 1e-12 relative in R) is negligible next to
the finite-difference truncation error (see the step-size comment below).
"""
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb

TIGHT = fb.PCG(rtol=1e-12)
NU = 0.3


def _setup(cell_type: str, with_traction: bool = True):
    mesh = fb.box_mesh((3, 2, 2), size=(3.0, 2.0, 2.0), cell_type=cell_type)
    E = np.random.default_rng(42).uniform(500.0, 1500.0, mesh.n_elements)
    pulled = fb.nodes_on_plane(mesh, "x", "max")
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes)
           .fix(fb.nodes_on_plane(mesh, "x", "min"), "xyz")
           .displace(pulled, x=1.0))
    if with_traction:
        top = fb.nodes_on_plane(mesh, "z", "max")
        bcs = bcs.add_nodal_forces(fb.surface_load(mesh, top, traction=(0.0, 2.0, -5.0)))
    return mesh, fb.FEModel.from_mesh(mesh), jnp.asarray(E), bcs, pulled


def _reaction(model, bcs, pulled, E, delta=1.0):
    """Total x-reaction (N) on the pulled face for moduli E (MPa) and pull δ (mm)."""
    bcs = replace(bcs, values=jnp.asarray(bcs.values) * delta)
    mat = fb.LinearElastic(E, jnp.asarray(NU))
    u = fb.solve(model, mat, bcs, solver=TIGHT).u
    return fb.reaction_forces(model, mat, bcs, u)[pulled, 0].sum()


# each new (cell type, transformation) pair costs a compilation (several s): the hex8
# variants of the two compile-heavy tests run in the slow set
BOTH = ["tet10", pytest.param("hex8", marks=pytest.mark.slow)]


@pytest.mark.parametrize("cell_type", BOTH)
def test_reaction_gradient_wrt_moduli_matches_central_differences(cell_type):
    mesh, model, E, bcs, pulled = _setup(cell_type)
    R = lambda E_: _reaction(model, bcs, pulled, E_)
    grad = np.asarray(jax.grad(R)(E))
    assert np.all(np.isfinite(grad))
    # elements next to the clamp, in the middle and next to the pulled face
    centroid = mesh.points[mesh.cells].mean(axis=1)
    picks = [int(np.argmin(centroid[:, 0])), int(np.argmin(np.abs(centroid[:, 0] - 1.5))),
             int(np.argmax(centroid[:, 0]))]
    for e in picks:
        # step h = 1e-4·E_e: truncation (h/E)²·|R'''|E³/6 ≈ 1e-8 relative; round-off of R
        # (solver rtol 1e-12, times the conditioning) / (2h) ≈ 1e-12·|R|/(2e-4·E_e·|∂R/∂E_e|)
        # ≲ 1e-6 relative, since one element carries ≳ 1 % of R. Tolerance 1e-5.
        h = 1e-4 * float(E[e])
        fd = (float(R(E.at[e].add(h))) - float(R(E.at[e].add(-h)))) / (2 * h)
        assert grad[e] == pytest.approx(fd, rel=1e-5), (e, grad[e], fd)
    # control: the picked sensitivities are not negligible (≥ 0.1 % of the mean share R/ΣE)
    assert np.all(np.abs(grad[picks]) > 1e-3 * abs(float(R(E))) / float(E.sum()))


@pytest.mark.parametrize("cell_type", ["tet10", "hex8"])
def test_reaction_is_homogeneous_of_degree_one_in_moduli(cell_type):
    """Pure Dirichlet loading: Σ_e E_e ∂R/∂E_e = R (Euler), an exact identity of the
    continuous and the discrete problem; tolerance 1e-9 (solver rtol 1e-12 × conditioning).

    This checks the whole gradient vector at once, but only along the direction E: there
    the adjoint (through-u) part must vanish, since u does not change when all moduli scale.
    The finite-difference test above is what checks the adjoint part element by element."""
    _, model, E, bcs, pulled = _setup(cell_type, with_traction=False)
    R = lambda E_: _reaction(model, bcs, pulled, E_)
    value, grad = jax.value_and_grad(R)(E)
    assert float(value) > 0  # pulling needs a tensile force on the pulled face
    assert float(jnp.dot(E, grad)) == pytest.approx(float(value), rel=1e-9)


@pytest.mark.parametrize("cell_type", BOTH)
def test_reaction_gradient_wrt_prescribed_displacement_is_exact(cell_type):
    """R(δ) = k δ + c (the traction adds c): dR/dδ = (R(δ₂) − R(δ₁))/(δ₂ − δ₁) exactly,
    up to the solver tolerance (rtol 1e-12; bound 1e-9)."""
    _, model, E, bcs, pulled = _setup(cell_type)
    R = lambda d: _reaction(model, bcs, pulled, E, d)
    slope = (float(R(0.02)) - float(R(-0.01))) / 0.03
    grad = float(jax.grad(R)(jnp.asarray(0.005)))
    assert grad == pytest.approx(slope, rel=1e-9)
    assert slope > 0

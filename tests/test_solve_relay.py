"""Relayed adjoint warm starts (febone.solve.relay): the gradient of a time loop of solves
whose adjoints start from the next step's equals the gradient through ordinary solves (the
implicit derivative w.r.t. moduli, Poisson's ratio, forces and prescribed displacements), and
the relayed cotangent is that adjoint (the next solve's starting guess).

Tolerances: every solve runs to CG rtol 1e-12, so the two gradients agree to ~1e-10 relative."""
import jax
import jax.numpy as jnp
import numpy as np

import febone as fb
from febone.solve.relay import solve_relayed

SOLVER = fb.PCG(rtol=1e-12)


def _problem():
    mesh = fb.box_mesh((3, 3, 4), (3.0, 3.0, 4.0))
    model = fb.FEModel.from_mesh(mesh)
    z = np.asarray(model.points)[:, 2]
    bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(np.flatnonzero(z < 1e-9))
    top = np.flatnonzero(z > 4.0 - 1e-9)
    bcs = bcs.displace(top, z=-0.01)
    side = np.flatnonzero(np.asarray(model.points)[:, 0] > 3.0 - 1e-9)
    forces = np.zeros((model.n_nodes, 3))
    forces[side, 0] = 0.5
    bcs = fb.BoundaryConditions(bcs.fixed, bcs.values, jnp.asarray(forces))
    E0 = jnp.asarray(1000.0 + 400.0 * np.random.default_rng(0).random(model.n_elements))
    return model, bcs, E0


def _loop(relayed: bool, model, bcs, E0, steps=3):
    """Σ_k wᵀ u_k over a loop whose moduli change each step with the previous solution."""
    w = jnp.asarray(np.random.default_rng(1).standard_normal((model.n_nodes, 3)))

    def f(scale, nu, load):
        b = fb.BoundaryConditions(bcs.fixed, bcs.values * load, bcs.forces * load)
        u = jnp.zeros((model.n_nodes, 3))
        relay = jnp.zeros_like(u)
        total = 0.0
        for k in range(steps):
            E = E0 * scale * (1.0 + 0.1 * k * jnp.tanh(jnp.abs(u).sum() * 1e2))
            mat = fb.LinearElastic(E, nu)
            if relayed:
                u, ok, relay = solve_relayed(model, mat, b, u, relay, solver=SOLVER)
            else:
                u = fb.solve(model, mat, b, solver=SOLVER, u0=u, check_supports=False).u
            total = total + jnp.vdot(w, u)
        return total

    return f


def test_relayed_gradient_equals_ordinary_solves():
    model, bcs, E0 = _problem()
    args = (1.0, jnp.asarray(0.3), 1.0)
    v1, g1 = jax.jit(jax.value_and_grad(_loop(True, model, bcs, E0), argnums=(0, 1, 2)))(*args)
    v2, g2 = jax.jit(jax.value_and_grad(_loop(False, model, bcs, E0), argnums=(0, 1, 2)))(*args)
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    for a, b in zip(g1, g2):            # moduli, Poisson's ratio, and the loads (forces and
        np.testing.assert_allclose(a, b, rtol=1e-9)      # prescribed values scale together)
        assert abs(float(b)) > 1e-6 * abs(float(v2))
    # and they are derivatives: the moduli scale against a central difference
    f = jax.jit(_loop(False, model, bcs, E0))
    h = 1e-5
    fd = (f(1.0 + h, 0.3, 1.0) - f(1.0 - h, 0.3, 1.0)) / (2 * h)
    np.testing.assert_allclose(g1[0], fd, rtol=1e-6)


def test_relayed_cotangent_is_the_adjoint():
    """The cotangent returned for ``relay`` is λ = K_ff⁻¹ ū (the next solve's warm start)."""
    model, bcs, E0 = _problem()
    mat = fb.LinearElastic(E0, jnp.asarray(0.3))
    w = jnp.asarray(np.random.default_rng(2).standard_normal((model.n_nodes, 3)))
    zero = jnp.zeros((model.n_nodes, 3))
    _, vjp = jax.vjp(lambda r: solve_relayed(model, mat, bcs, zero, r, solver=SOLVER)[0], zero)
    lam = vjp(w)[0]
    # λ solves K λ = w on the free dofs with λ = 0 on the fixed ones
    free = ~np.asarray(bcs.fixed)
    adj = fb.BoundaryConditions(bcs.fixed, jnp.zeros_like(zero), jnp.where(free, w, 0.0))
    ref = fb.solve(model, mat, adj, solver=SOLVER).u
    np.testing.assert_allclose(lam, ref, rtol=0, atol=1e-10 * float(jnp.abs(ref).max()))

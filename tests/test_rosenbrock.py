"""The generic Rosenbrock stepper (febone.remodel.rosenbrock) on problems with known answers:
the unrolled 4 × 4 block solves against LAPACK (values and both derivative modes), and the
methods' convergence orders and adaptive control on a stiff linear system (exact solution by the
matrix exponential). The cell model's own checks are in test_cells.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from febone.remodel.rosenbrock import (TABLEAUS, adaptive_interval, block_jacobian,
                                       fixed_interval, lu4, rosenbrock_step, solve4)

RNG = np.random.default_rng(3)
# 5 blocks; the first has a zero leading pivot, so the row exchanges are exercised
W_BLOCKS = RNG.normal(size=(5, 4, 4)) + 4.0 * np.eye(4)
W_BLOCKS[0, 0, 0] = 0.0
B = RNG.normal(size=(5, 4))
# stiff, non-normal affine systems y' = A (y − Y_EQ) (eigenvalues -0.5 .. -200), one per block;
# the states stay away from 0, as the cell model's do (the error control is relative)
A_BLOCKS = np.stack([np.triu(RNG.normal(size=(4, 4)), 1) + np.diag([-0.5, -3.0, -40.0, -200.0])
                     for _ in range(3)])
Y_EQ = RNG.uniform(1.0, 2.0, size=(3, 4))
Y0 = RNG.uniform(0.5, 1.5, size=(3, 4))


def _nested(W):
    return [[jnp.asarray(W[:, i, j]) for j in range(4)] for i in range(4)]


def _cols(b):
    return tuple(jnp.asarray(b[:, i]) for i in range(4))


def _solve(W, b):
    Wn = _nested(W)
    return jnp.stack(solve4(Wn, lu4(jax.lax.stop_gradient(Wn)), _cols(b)), axis=-1)


def test_block_solves_equal_lapack():
    np.testing.assert_allclose(_solve(W_BLOCKS, B), np.linalg.solve(W_BLOCKS, B[..., None])[..., 0],
                               rtol=1e-12, atol=1e-13)


def test_block_solve_derivatives_are_the_implicit_ones():
    dW, db = RNG.normal(size=W_BLOCKS.shape), RNG.normal(size=B.shape)
    ref = lambda W, b: jnp.linalg.solve(W, b[..., None])[..., 0]
    _, t_ours = jax.jvp(_solve, (jnp.asarray(W_BLOCKS), jnp.asarray(B)), (dW, db))
    _, t_ref = jax.jvp(ref, (jnp.asarray(W_BLOCKS), jnp.asarray(B)), (dW, db))
    np.testing.assert_allclose(t_ours, t_ref, rtol=1e-10, atol=1e-12)
    loss = lambda f: lambda W, b: jnp.sum(jnp.sin(f(W, b)))
    for g_ours, g_ref in zip(jax.grad(loss(_solve), (0, 1))(W_BLOCKS, B),
                             jax.grad(loss(ref), (0, 1))(W_BLOCKS, B)):
        np.testing.assert_allclose(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def _linear_step(tableau):
    A = [[jnp.asarray(A_BLOCKS[:, i, j]) for j in range(4)] for i in range(4)]

    def F(y):
        return tuple(sum(A[i][j] * (y[j] - Y_EQ[:, j]) for j in range(4)) for i in range(4))

    def step(y, t, h):
        f0, J = block_jacobian(F, y)
        y_new, err = rosenbrock_step(F, y, f0, J, h, tableau)
        return y_new, err

    return step


def _exact(t):
    return np.stack([c + expm(a * t) @ (y - c) for a, y, c in zip(A_BLOCKS, Y0, Y_EQ)])


def _error(y, t):
    return float(np.max(np.abs(np.stack(y, axis=-1) - _exact(t))))


@pytest.mark.parametrize("method", ["euler", "ros2", "rodas3"])
def test_fixed_steps_converge_at_the_method_order(method):
    tab = TABLEAUS[method]
    step = _linear_step(tab)
    errors = [_error(fixed_interval(step, _cols(Y0), 0.0, 1.0, length=1.0, n_sub=n)[0], 1.0)
              for n in (400, 800)]
    assert np.log2(errors[0] / errors[1]) == pytest.approx(tab.order, abs=0.25)


def test_adaptive_interval_meets_its_tolerance_with_few_rejections():
    step = _linear_step(TABLEAUS["rodas3"])
    values = lambda y: jnp.stack(y, axis=-1)
    y, h_next, n_acc, n_rej, n_forced = adaptive_interval(
        step, _cols(Y0), 0.0, 1.0, length=1.0, h_max=1.0, rtol=1e-6, order=3, max_substeps=400,
        values=values)
    assert int(n_forced) == 0 and 0 < int(n_rej) < int(n_acc) < 400
    assert _error(y, 1.0) < 1e-5
    assert 0 < float(h_next) <= 1.0

"""Linearly implicit (Rosenbrock) time stepping of many independent 4-component systems.

The state is 4 columns of shape (n,): n systems ("elements") that do not couple, each with
its own 4 × 4 Jacobian block. Methods (:data:`TABLEAUS`): RODAS3 (order 3, L-stable, stiffly
accurate, Sandu et al. 1997), ROS2 (order 2, L-stable) and linearly implicit Euler. The 4 × 4
systems of the stages are solved by an LU unrolled into elementwise operations
(:func:`lu4`, :func:`solve4`), whose derivative is the implicit one (a custom JVP), so forward
and reverse mode both work and cost one more solve by the same factors.

:func:`rosenbrock_step` takes one step from the right-hand side and its Jacobian blocks;
:func:`fixed_interval` and :func:`adaptive_interval` cross an interval with fixed steps or with
steps chosen by the embedded error estimate (the step-size control is excluded from
differentiation). Nothing here knows what the systems are; :mod:`febone.remodel.cells` runs the
bone cell model with them.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Tableau", "TABLEAUS", "lu4", "solve4", "block_jacobian", "rosenbrock_step",
           "fixed_interval", "error_ratio", "single_step_interval", "adaptive_interval"]


class Tableau(NamedTuple):
    """Rosenbrock method in implementation form (Hairer & Wanner 1996, IV.7, eq. 7.25):
    (1/(γh) − J) U_i = f(y + Σ_j a_ij U_j) + Σ_j (c_ij/h) U_j,  y_{n+1} = y + Σ_i m_i U_i."""

    gamma: float
    a: tuple
    c: tuple
    m: tuple
    e: tuple | None      # embedded error estimate Σ e_i U_i (None: no estimate)
    order: int           # order used in the step-size controller exponent 1/order


_G2 = 1.0 + 1.0 / np.sqrt(2.0)
#: the methods by name
TABLEAUS = {
    # linearly implicit Euler: order 1, L-stable (fixed steps only)
    "euler": Tableau(1.0, ((),), ((),), (1.0,), None, 1),
    # ROS2 (Verwer, Spee, Blom & Hundsdorfer 1999): order 2, L-stable
    "ros2": Tableau(_G2, ((), (1.0 / _G2,)), ((), (-2.0 / _G2,)), (1.5 / _G2, 0.5 / _G2),
                    (0.5 / _G2, 0.5 / _G2), 2),
    # RODAS3 (Sandu et al. 1997, as in KPP): order 3 (embedded 2), L-stable, stiffly accurate
    "rodas3": Tableau(0.5, ((), (0.0,), (2.0, 0.0), (2.0, 0.0, 1.0)),
                      ((), (4.0,), (1.0, -1.0), (1.0, -1.0, -8.0 / 3.0)),
                      (2.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.0, 1.0), 3),
}

#: row exchanges of :func:`lu4`, in order: (pivot row k, candidate row i)
_SWAPS = tuple((k, i) for k in range(4) for i in range(k + 1, 4))


def lu4(W):
    """LU with partial pivoting of every 4 × 4 element block of W (a nested list W[i][j] of
    (n,) arrays), unrolled into elementwise operations (XLA fuses them; a batched LAPACK call
    per block is ~6× slower for the bone cell model). Returns (rows, takes) for :func:`_lu4_solve`:
    rows[i][j] the (n,) entries of L (below the diagonal, unit diagonal implied) and U;
    takes[m] the (n,) bool mask of row exchange :data:`_SWAPS`[m]. With P the exchanges applied
    in order, W = Pᵀ L U."""
    a = [list(row) for row in W]
    takes = []
    for k in range(4):
        for i in range(k + 1, 4):            # tournament: row k ends with the largest |pivot|
            take = jnp.abs(a[i][k]) > jnp.abs(a[k][k])
            a[k], a[i] = ([jnp.where(take, x, y) for x, y in zip(a[i], a[k])],
                          [jnp.where(take, y, x) for x, y in zip(a[i], a[k])])
            takes.append(take)
        inv = 1.0 / a[k][k]
        for i in range(k + 1, 4):
            a[i][k] = a[i][k] * inv
            for j in range(k + 1, 4):
                a[i][j] = a[i][j] - a[i][k] * a[k][j]
    return a, takes


def _exchange(x, takes, order):
    for m in order:
        k, i = _SWAPS[m]
        x[k], x[i] = jnp.where(takes[m], x[i], x[k]), jnp.where(takes[m], x[k], x[i])
    return x


def _lu4_solve(lu, b):
    """Solve W x = b (b: 4 (n,) arrays) with the factors of :func:`lu4`; returns a tuple."""
    a, takes = lu
    x = _exchange(list(b), takes, range(len(_SWAPS)))
    for i in range(4):
        for k in range(i):
            x[i] = x[i] - a[i][k] * x[k]
    for i in reversed(range(4)):
        for k in range(i + 1, 4):
            x[i] = x[i] - a[i][k] * x[k]
        x[i] = x[i] / a[i][i]
    return tuple(x)


@jax.custom_jvp
def solve4(W, lu, b):
    """x = W⁻¹ b per element block, with the factors ``lu = lu4(W)`` computed outside AD. The
    derivative is the implicit one, ẋ = W⁻¹ (ḃ − Ẇ x) by the same factors (its transpose, the
    reverse pass, is a solve with Wᵀ), instead of differentiating the pivoting and elimination,
    which in reverse mode cost ~13× the factorisation itself. Forward and reverse mode."""
    return _lu4_solve(lu, b)


@solve4.defjvp
def _solve4_jvp(primals, tangents):
    W, lu, b = primals
    dW, _, db = tangents
    x = _lu4_solve(lu, b)
    rhs = tuple(db[i] - sum(dW[i][j] * x[j] for j in range(4)) for i in range(4))
    return x, _lu4_solve(lu, rhs)


def block_jacobian(F, y: tuple):
    """(F(y), J) for a right-hand side ``F`` whose systems do not couple: J[i][j] the (n,)
    entries ∂F_i/∂y_j of every 4 × 4 block, from one JVP per state component."""
    f0, lin = jax.linearize(F, y)
    unit = [tuple(jnp.full_like(y[0], float(i == j)) for j in range(4)) for i in range(4)]
    cols = [lin(e) for e in unit]                     # cols[j][i] = ∂F_i/∂y_j
    return f0, [[cols[j][i] for j in range(4)] for i in range(4)]


def rosenbrock_step(F: Callable, y: tuple, f0: tuple, J, dt, tableau: Tableau):
    """One Rosenbrock step of ``dt`` from ``y``.

    Args:
        F: right-hand side, 4 columns → 4 columns (the time derivatives, per unit of ``dt``).
        y: 4 (n,) columns; ``f0`` = F(y).
        J: 4 × 4 nested list of (n,) Jacobian entries J[i][j] = ∂F_i/∂y_j (e.g.
            :func:`block_jacobian`).
        dt: step (scalar).
        tableau: :class:`Tableau` (:data:`TABLEAUS`).

    Returns:
        (y at t + dt as 4 columns, (n, 4) embedded error estimate, or None without one).
        The stages are kept as 4 separate (n,) columns (no packing into (n, 4) arrays, whose
        stacking and slicing cost more than the arithmetic in reverse mode).
    """
    tab = tableau
    diag = 1.0 / (tab.gamma * dt)
    W = [[(diag if i == j else 0.0) - J[i][j] for j in range(4)] for i in range(4)]
    lu = lu4(jax.lax.stop_gradient(W))

    def combine(base, terms):
        return tuple(b + sum(c * u[k] for c, u in terms) for k, b in enumerate(base))

    U = []
    for i in range(len(tab.m)):
        if any(tab.a[i]):
            fi = F(combine(y, [(aij, uj) for aij, uj in zip(tab.a[i], U) if aij]))
        else:               # first stage, or a_ij all zero: the stage reuses f(y)
            fi = f0
        rhs_i = combine(fi, [(cij / dt, uj) for cij, uj in zip(tab.c[i], U) if cij])
        U.append(solve4(W, lu, rhs_i))
    y_new = combine(y, [(mi, ui) for mi, ui in zip(tab.m, U) if mi])
    err = None
    if tab.e is not None:
        err = jnp.stack(combine((0.0,) * 4, [(ei, ui) for ei, ui in zip(tab.e, U) if ei]), axis=-1)
    return y_new, err


def fixed_interval(step: Callable, state, t, h_try, *, length: float, n_sub: int):
    """Cross ``[t, t + length]`` by ``n_sub`` equal steps of ``step(state, t, h)``.

    Returns (state, h_try unchanged, accepted steps, 0 rejected, 0 forced) (int32 scalars), as
    :func:`adaptive_interval`."""
    zero = jnp.zeros((), jnp.int32)
    h = length / n_sub

    def body(i, c):
        return step(c[0], c[1], h)[0], c[1] + h

    state, _ = jax.lax.fori_loop(0, n_sub, body, (state, t))
    return state, h_try, jnp.asarray(n_sub, jnp.int32), zero, zero


def error_ratio(y, y_new, e, rtol: float):
    """Largest ratio of the error estimate ``e`` to ``rtol`` times the larger of |y| and
    |y_new| (all (n, 4)); a step is accepted when it is ≤ 1 (not differentiated)."""
    scale = rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new)) + jnp.finfo(y.dtype).tiny
    return jax.lax.stop_gradient(jnp.max(jnp.abs(e) / scale))


def single_step_interval(step: Callable, state, t, h_try, *, length: float, rtol: float,
                         order: int, values: Callable):
    """Cross ``[t, t + length]`` by one step, as :func:`adaptive_interval` does when its first
    attempt is a full step that is accepted and keeps the next step size at ``length``
    (``h_try == length`` and an error ratio ≤ 0.9^order, below which the controller does not
    shrink the step). Returns :func:`adaptive_interval`'s outputs and ``miss``, a bool: the
    interval is not one that :func:`adaptive_interval` would have crossed this way (then
    its result must be taken instead)."""
    one, zero = jnp.ones((), jnp.int32), jnp.zeros((), jnp.int32)
    s_new, e = step(state, t, jnp.asarray(length, h_try.dtype))
    err = error_ratio(values(state), values(s_new), e, rtol)
    miss = (err > 0.9 ** order) | (h_try != length)
    return s_new, h_try, one, zero, zero, miss


def adaptive_interval(step: Callable, state, t, h_try, *, length: float, h_max: float,
                      rtol: float, order: int, max_substeps: int, values: Callable):
    """Cross ``[t, t + length]`` by steps of ``step(state, t, h)`` accepted when the error
    estimate is within ``rtol`` times the state (max over systems and components).

    Args:
        step: one step, ``(state, t, h) -> (state, (n, 4) error estimate)``.
        state: any pytree; ``values(state)`` its (n, 4) components that the error is scaled by.
        t, h_try: start time and the first step to try (scalars).
        length, h_max: the interval and the largest step.
        rtol: relative tolerance; ``order``: the method's order (controller exponent 1/order).
        max_substeps: most attempts; the last is forced to the end of the interval.

    Returns:
        (state at t + length, next step to try, accepted, rejected, forced steps that missed the
        tolerance) (the counts int32 scalars). Attempts run in blocks of 8 under ``lax.cond`` so
        that a finished interval skips them cheaply; the step sizes are ``stop_gradient``.
    """
    zero = jnp.zeros((), jnp.int32)
    t_end = t + length

    def attempt(c, last):
        s, tc, h_try, n_acc, n_rej, n_forced = c
        remaining = t_end - tc
        h = jnp.where(last, remaining, jnp.minimum(h_try, remaining))
        s_new, e = step(s, tc, h)
        err = error_ratio(values(s), values(s_new), e, rtol)
        ok = err <= 1.0
        accept = ok | last
        fac = jnp.clip(0.9 * jnp.maximum(err, 1e-10) ** (-1.0 / order), 0.2, 5.0)
        h_next = jnp.minimum(h * fac, h_max)
        h_next = jnp.where(ok & (h < h_try), jnp.maximum(h_next, h_try), h_next)  # clipped step
        pick = lambda a, b: jax.tree_util.tree_map(lambda u, v: jnp.where(accept, u, v), a, b)
        return (pick(s_new, s), jnp.where(accept, tc + h, tc), jax.lax.stop_gradient(h_next),
                n_acc + accept, n_rej + (~accept), n_forced + (last & ~ok))

    def done(c):
        return (t_end - c[1]) <= 1e-9 * length

    def block(c, b):        # blocks of 8 attempts, so finished intervals skip them cheaply
        def inner(c, j):
            i = 1 + b * 8 + j
            skip = done(c) | (i >= max_substeps)
            return jax.lax.cond(skip, lambda c: c,
                                lambda c: attempt(c, i == max_substeps - 1), c), None

        return jax.lax.cond(done(c), lambda c: c,
                            lambda c: jax.lax.scan(inner, c, jnp.arange(8))[0], c), None

    # the first attempt runs unconditionally (most intervals end with it: a step of h_max
    # accepted), the rest in blocks of 8 that a finished interval skips
    c = attempt((state, t, h_try, zero, zero, zero), False)

    def rest(c):
        return jax.lax.scan(block, c, jnp.arange(-(-(max_substeps - 1) // 8)))[0]

    state, _, h_try, n_acc, n_rej, n_forced = jax.lax.cond(done(c), lambda c: c, rest, c)
    return state, h_try, n_acc, n_rej, n_forced

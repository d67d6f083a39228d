"""The bone cell model of every element in time: :func:`simulate` and :func:`step`.

The model (states, :class:`Drives`, signals, right-hand side, closed-form Jacobian) is in
:mod:`febone.remodel.cell_model`, its steady state in :mod:`febone.remodel.homeostasis`; their
public names are importable from here too, as one face of the cell model.

Integration: linearly implicit Rosenbrock methods (:mod:`febone.remodel.rosenbrock`; default
RODAS3: order 3, L-stable, stiffly accurate, Sandu et al. 1997; also ROS2 and linearly implicit
Euler) with the per-element 4×4 Jacobian in closed form (:func:`rhs_jacobian`; from four
batched JVPs when the drives depend on the state; the elements do not couple), so a 1-day step
is stable although A_OCa ≈ 5.6/day. By default each day is crossed by adaptive sub-steps
(embedded error estimate, rtol 1e-4, largest step ``dt``) so that abrupt inputs (a 25-fold RANKL
jump, a denosumab dose) are followed accurately; ``rtol=None`` gives fixed steps. Within a step
the drives are evaluated at the mid-step time (and at the stage states, so state-dependent
drives enter the Jacobian): second order for smooth inputs and exact for inputs that switch at
step boundaries. :func:`simulate` runs a ``lax.scan`` over days (reverse-mode differentiable),
advancing the mineralisation queue (:mod:`febone.remodel.mineral`) once per day.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Var as _JaxprVar

from .cell_model import (CellModelError, CellState, Drives, Signals, _broadcast_drives, _concrete,
                         _jacobian_blocks, pmo_rankl_production, rhs, rhs_jacobian, signals,
                         resorption_rate, specific_surface, turnover)
from .homeostasis import steady_state
from .mineral import (MineralState, advance_day_queue, check_layout, join_queue,
                      mean_mineral_content, old_bins, split_queue)
from .parameters import CellParameters, MineralParameters, MINERAL_MARTINEZ_REINA_2019
from .rosenbrock import (TABLEAUS, adaptive_interval, block_jacobian, fixed_interval,
                         rosenbrock_step, single_step_interval)

logger = logging.getLogger(__name__)

__all__ = ["CellState", "Drives", "Signals", "CellTrajectory", "CellModelError", "signals", "rhs",
           "rhs_jacobian", "steady_state", "step", "simulate", "specific_surface",
           "pmo_rankl_production", "turnover", "resorption_rate", "remodelling_space_update"]


@dataclass(frozen=True)
class CellTrajectory:
    """Result of :func:`simulate`.

    Attributes:
        t: (n_save,) days, starting with the initial time.
        states: :class:`CellState` with fields (n_save, n_elements).
        v_m: (n_save, n_elements) mean mineral volume fraction, or None without mineralisation.
        final: :class:`CellState` at the last time (fields (n_elements,)).
        mineral: final :class:`~febone.remodel.mineral.MineralState`, or None.
        n_steps: accepted steps (int scalar array).
        n_rejected: rejected adaptive step attempts (int scalar array).
    """

    t: jax.Array
    states: CellState
    v_m: jax.Array | None
    final: CellState
    mineral: object | None
    n_steps: jax.Array
    n_rejected: jax.Array


jax.tree_util.register_dataclass(CellTrajectory,
                                 data_fields=[f.name for f in fields(CellTrajectory)],
                                 meta_fields=[])


# --------------------------------------------------------------------------------------------
# time integration
# --------------------------------------------------------------------------------------------
DrivesFn = Callable[[jax.Array, CellState, object], Drives]
_QUEUE_CHUNK_DAYS = 32      # days between conversions of the mineral day queue (see save_body)


class _Stepper(NamedTuple):
    params: CellParameters
    drives_fn: DrivesFn
    method: str
    state_drives: bool            # the drives depend on the state: JVP-built Jacobian


def _drives_use_state(drives_fn, t, state: CellState, v_m) -> bool:
    """Whether ``drives_fn(t, state, v_m)`` reads ``state`` (a data-flow walk over its jaxpr;
    calls and control flow count as reading all their inputs, so the answer errs towards
    True). State-free drives let the Rosenbrock step use the closed-form :func:`rhs_jacobian`."""
    closed = jax.make_jaxpr(lambda s: drives_fn(t, s, v_m))(state)
    live = set(closed.jaxpr.invars)
    for eqn in closed.jaxpr.eqns:
        if any(isinstance(v, _JaxprVar) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(isinstance(v, _JaxprVar) and v in live for v in closed.jaxpr.outvars)


def _pack(s: CellState):
    return jnp.stack([s.OBp, s.OBa, s.OCa, s.f_bm], axis=-1)


def step(state: CellState, t, dt, params: CellParameters, drives: Drives | DrivesFn, *,
         method: str = "rodas3", v_m=None) -> CellState:
    """Advance every element by one linearly implicit step of ``dt`` days from time ``t``.

    Args:
        state: :class:`CellState` (n_elements,).
        t, dt: current time and step, days (scalars).
        params: :class:`CellParameters`.
        drives: :class:`Drives`, or a function ``(t, state, v_m) -> Drives``, called with the
            mid-step time t + dt/2 and the stage states (state-dependent drives enter the
            Jacobian); inputs that switch on or off should do so at step boundaries.
        method: ``"rodas3"`` (order 3, L-stable, stiffly accurate; default), ``"ros2"`` (order 2,
            L-stable) or ``"euler"`` (linearly implicit Euler, order 1).
        v_m: optional (n_elements,) mean mineral volume fraction, passed to a ``drives`` function.

    Returns:
        :class:`CellState` at ``t + dt``.
    """
    fn = drives if callable(drives) else (lambda t_, s_, v_: drives)
    if method not in TABLEAUS:
        raise CellModelError(f"unknown method {method!r}; use one of {sorted(TABLEAUS)}")
    t = jnp.asarray(t, dtype=state.f_bm.dtype)
    stepper = _Stepper(params, fn, method, _drives_use_state(fn, t + 0.5 * dt, state, v_m))
    return _step(state, t, dt, stepper, v_m)[0]



def _cols(s: CellState):
    return s.OBp, s.OBa, s.OCa, s.f_bm


def _step(state, t, dt, stepper: _Stepper, v_m):
    """One Rosenbrock step of the cell model; returns (new state, (n, 4) error estimate or
    None). ``P_OBp`` stays constant."""
    params, drives_fn, method, _ = stepper
    P_OBp = state.P_OBp
    t_mid = t + 0.5 * dt          # drives frozen at mid-step in time (state dependence kept)

    def F(y):
        s = CellState(*y, P_OBp, state.space)
        return _cols(rhs(s, params, drives_fn(t_mid, s, v_m)))

    y = _cols(state)
    if stepper.state_drives:
        f0, J = block_jacobian(F, y)
    else:                   # drives fixed over the step: the closed-form Jacobian
        d = drives_fn(t_mid, state, v_m)
        f0 = _cols(rhs(state, params, d))
        J = _jacobian_blocks(state, params, d)
    y_new, err = rosenbrock_step(F, y, f0, J, dt, TABLEAUS[method])
    return CellState(*y_new, P_OBp, state.space), err


def _check_inputs(params, state, drives, dt, days, save_every):
    if not isinstance(params, CellParameters):
        raise TypeError(f"params must be a CellParameters (e.g. MARTINEZ_REINA_2019); got "
                        f"{type(params).__name__}")
    if not isinstance(state, CellState):
        raise TypeError(f"state must be a CellState (use steady_state()); got "
                        f"{type(state).__name__}")
    shapes = {f.name: jnp.shape(getattr(state, f.name)) for f in fields(CellState)}
    if len(set(shapes.values())) != 1 or len(shapes["f_bm"]) != 1:
        raise CellModelError(f"state fields must all be (n_elements,); got {shapes}")
    if not (callable(drives) or isinstance(drives, Drives)):
        raise TypeError("drives must be a Drives or a function (t, state, v_m) -> Drives; got "
                        f"{type(drives).__name__}")
    if isinstance(drives, Drives):
        _broadcast_drives(drives, shapes["f_bm"][0], state.f_bm.dtype)
        if (_concrete(params.chi_den) and _concrete(drives.denosumab) and params.chi_den == 0
                and np.any(np.asarray(drives.denosumab))):
            raise CellModelError(f"parameter set {params.name!r} has no denosumab binding "
                                 f"(chi_den = 0); use MARTINEZ_REINA_2019 or set chi_den, K_den")
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise CellModelError(f"dt must be a positive number of days; got {dt!r}")
    if dt <= 1:
        sub = 1.0 / dt
        if abs(sub - round(sub)) > 1e-9:
            raise CellModelError(f"dt ≤ 1 day must divide one day (1, 0.5, 0.25, ...); got {dt}")
        macro, n_sub = 1.0, int(round(sub))
    else:
        macro, n_sub = float(dt), 1
    n_macro = days / macro
    if not (isinstance(days, (int, float)) and days > 0) or abs(n_macro - round(n_macro)) > 1e-9:
        raise CellModelError(f"days must be a positive multiple of the step {macro:g}; "
                             f"got {days!r}")
    n_macro = int(round(n_macro))
    if not (isinstance(save_every, int) and save_every >= 1) or n_macro % save_every:
        raise CellModelError(f"save_every must be a positive integer dividing the {n_macro} "
                             f"{'days' if macro == 1 else 'steps'}; got {save_every!r}")
    return macro, n_sub, n_macro


@partial(jax.jit, static_argnames=("drives_fn", "method", "n_sub", "macro", "save_every",
                                   "n_saves", "rtol", "max_substeps", "checkpoint_steps"))
def _simulate_core(params, state, const_drives, mineral, mineral_params, t0, *, drives_fn, method,
                   n_sub, macro, save_every, n_saves, rtol, max_substeps, checkpoint_steps=True):
    fn = drives_fn if drives_fn is not None else (lambda t_, s_, v_: const_drives)
    dtype = state.f_bm.dtype
    v_probe = None if mineral is None else jnp.zeros_like(state.f_bm)
    stepper = _Stepper(params, fn, method, _drives_use_state(fn, jnp.asarray(t0, dtype), state,
                                                             v_probe))
    step_fn = lambda s, t, h, v: _step(s, t, h, stepper, v)
    if checkpoint_steps:
        step_fn = jax.checkpoint(step_fn)
    h_max = macro / n_sub

    # With adaptive steps of at most a day (dt = 1), a run of days is first crossed by one
    # step a day (single_step_interval); only if some day of it was not one that the
    # adaptive controller would have crossed in one step is the run redone adaptively. The
    # result is the adaptive one either way, without the cost of the controller's machinery
    # (its conditional attempts) on the days that need none.
    fast_first = rtol is not None and n_sub == 1

    def interval(s, t, v, h_try, fast):
        step_v = lambda s, t, h: step_fn(s, t, h, v)
        if rtol is None:
            return fixed_interval(step_v, s, t, h_try, length=macro, n_sub=n_sub) + (False,)
        if fast:
            return single_step_interval(step_v, s, t, h_try, length=macro, rtol=rtol,
                                        order=TABLEAUS[method].order, values=_pack)
        return adaptive_interval(step_v, s, t, h_try, length=macro, h_max=h_max, rtol=rtol,
                                 order=TABLEAUS[method].order, max_substeps=max_substeps,
                                 values=_pack) + (False,)

    def macro_body(carry, leaving, fast):  # one interval (a day with mineralisation)
        s, q, t, h_try, stats = carry      # q: a DayQueue
        v_m = None if q is None else q.mineral / s.f_bm       # at the start of the day
        r0 = resorption_rate(s, params)
        s, h_try, n_acc, n_rej, n_forced, miss = interval(s, t, v_m, h_try, fast)
        t = t + macro
        entered = None
        if q is not None:
            q, entered = advance_day_queue(q, leaving, s, params, mineral_params)
        s = remodelling_space_update(s, r0, params, macro)
        counts = jnp.stack([n_acc, n_rej, n_forced, jnp.asarray(miss, jnp.int32)])
        return (s, q, t, h_try, stats + counts), entered

    def run_days(carry, n):         # n intervals; the queue's day form lives only inside
        s, m, t, h_try, stats = carry
        q = leaving = None
        if m is not None:
            q, leaving = split_queue(m, mineral_params, n)

        def days_as(fast):
            return jax.lax.scan(lambda c, x: macro_body(c, x, fast), (s, q, t, h_try, stats),
                                leaving, length=n)

        if fast_first:              # (the queue's ring stays outside the conditional)
            fast = days_as(True)
            (s, q, t, h_try, stats), entered = jax.lax.cond(
                fast[0][4][3] > stats[3], lambda: days_as(False), lambda: fast)
        else:
            (s, q, t, h_try, stats), entered = days_as(False)
        m = None if q is None else join_queue(m, q, entered, mineral_params)
        content = None if q is None else q.mineral     # mineral volume per element volume
        return (s, m, t, h_try, stats), content

    def save_body(carry, _):
        # the leaving rows are gathered (and the emitted ones written back) every
        # _QUEUE_CHUNK_DAYS (at most the length of the queue's older ring), which bounds the
        # (chunk, n_elements) rows a run holds and checks the queue's scale that often
        chunk = (min(_QUEUE_CHUNK_DAYS, old_bins(mineral_params))
                 if mineral is not None else save_every)
        full, rest = divmod(save_every, chunk)
        if full:
            carry, contents = jax.lax.scan(lambda c, _: run_days(c, chunk), carry, None,
                                           length=full)
            content = None if contents is None else contents[-1]
        if rest:
            carry, content = run_days(carry, rest)
        s, m, t = carry[:3]
        # the day form's running content (equal to mean_mineral_content of the joined queue to
        # rounding, without reading the whole queue)
        vm = None if m is None else content / s.f_bm
        return carry, (t, s, vm)

    carry0 = (state, mineral, t0, jnp.asarray(h_max, dtype), jnp.zeros(4, jnp.int32))
    (sN, mN, _, _, stats), (ts, states, vms) = jax.lax.scan(save_body, carry0, None,
                                                            length=n_saves)
    t_all = jnp.concatenate([t0[None], ts])
    states = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), state, states)
    if mineral is not None:
        vm0 = mean_mineral_content(mineral, state.f_bm, mineral_params)
        vms = jnp.concatenate([vm0[None], vms])
    return t_all, states, vms, sN, mN, stats


def remodelling_space_update(state: CellState, r_start, params: CellParameters, days=1.0):
    """Advance the remodelling space over one interval of ``days`` (after the Rosenbrock steps).

    Heaney (1994, J Bone Miner Res 9:1515, "The bone-remodeling transient"): resorption cavities
    are refilled over the formation period, so the volume open for remodelling is R = r·τ at a
    steady resorption rate r (BV/TV per day) with a refill time τ = ``remodelling_space_days``;
    when r falls the open cavities still refill (a transient BMD gain of τ·Δr over ~τ), when it
    rises more volume is held open (a loss), and the reverse when a drug stops. The cell model's
    balance k_form·OBa − k_res·OCa couples formation to resorption within days (OBa lives ~5
    days), so it lacks this lag; the space adds it on top. With D = R − r·τ (``state.space``):

        dR/dt = r − R/τ  ⇒  dD/dt = −D/τ − τ dr/dt,    df_bm/dt += −dR/dt = D/τ,

    integrated exactly over the interval for a step change of r at its start:
    D ← D − τ(r_end − r_start); f_bm += D (1 − e^(−days/τ)); D ← D e^(−days/τ). At a steady
    state D = 0 and nothing changes; τ = 0 disables it. The refilled volume is counted with the
    remainder (oldest) bin of the mineral queue.

    Args:
        state: :class:`CellState` at the end of the interval.
        r_start: (n_elements,) resorption rate at its start (:func:`resorption_rate`), per day.
        params: :class:`CellParameters` (``remodelling_space_days`` τ, days).
        days: interval length, days.
    """
    tau = params.remodelling_space_days
    r_end = resorption_rate(state, params)
    D = state.space - tau * (r_end - r_start)
    keep = jnp.exp(-days / jnp.maximum(tau, 1e-9))
    f = jnp.clip(state.f_bm + D * (1.0 - keep), 1e-6, 1.0)
    return replace(state, f_bm=f, space=D * keep)


def simulate(params: CellParameters, state: CellState, drives: Drives | DrivesFn, *, days,
             dt: float = 1.0, t0: float = 0.0, method: str = "rodas3", mineral=None,
             mineral_params: MineralParameters = MINERAL_MARTINEZ_REINA_2019,
             save_every: int = 1, rtol: float | None = 1e-4,
             max_substeps: int = 64, checkpoint_steps: bool = True) -> CellTrajectory:
    """Integrate the cell model of every element over ``days`` (a ``lax.scan``).

    Args:
        params: :class:`CellParameters`.
        state: initial :class:`CellState` (n_elements,), usually from :func:`steady_state`.
        drives: constant :class:`Drives`, or a function ``(t, state, v_m) -> Drives`` (t in
            days; ``v_m`` the (n_elements,) mean mineral volume fraction at the start of the day,
            or None without mineralisation) for time- or state-dependent inputs (hormone levels, a PK curve, a mechanical closure).
        days: simulated time, days.
        dt: step, days: a divisor of one day (1, 0.5, 0.25, ...) or, without mineralisation, any
            positive step (then ``days`` must be a multiple of it).
        t0: initial time, days.
        method: ``"rodas3"`` (default), ``"ros2"`` or ``"euler"``; see :func:`step`.
        mineral: optional :class:`~febone.remodel.mineral.MineralState`; its age queue is
            advanced once per day with the end-of-day cells (Martínez-Reina 2019), so dt ≤ 1.
        mineral_params: :class:`MineralParameters` for the queue.
        save_every: store the state every ``save_every`` days (or steps when dt > 1).
        rtol: relative tolerance of adaptive sub-stepping (default 1e-4), or None for fixed steps
            of ``dt``. Adaptive: ``dt`` is the largest step; each day (or each dt > 1 interval) is
            crossed by steps accepted when the embedded error estimate (max over elements and
            states) is below ``rtol`` times the state; all elements share the step sizes; the
            step-size controller is excluded from differentiation (``stop_gradient``). Fixed
            1-day steps are stable but follow abrupt inputs (a 25-fold RANKL jump, a denosumab
            dose) only to a few % in the cells for the first days; the adaptive default keeps
            every state within ~1e-3 of a converged solution (tests/test_cells.py).
        max_substeps: adaptive mode: most step attempts per interval; the last attempt is forced to
            the interval end, and a forced step that misses the tolerance raises (when the result
            is concrete).
        checkpoint_steps: reverse mode keeps only each step's input state and recomputes its
            Rosenbrock stages (default: O(n_elements) memory per step); False keeps the stages'
            residuals instead (~250 floats per element per step, no recomputation) — for callers
            that already checkpoint an enclosing interval (:mod:`febone.study`).

    Returns:
        :class:`CellTrajectory` with the initial state first.

    Raises:
        CellModelError / TypeError: bad parameters, state, drives, dt, days or save_every, or an
        adaptive run that had to force steps beyond ``max_substeps``.
    """
    if method not in TABLEAUS:
        raise CellModelError(f"unknown method {method!r}; use one of {sorted(TABLEAUS)}")
    if isinstance(state, CellState) and jnp.shape(state.space) != jnp.shape(state.f_bm):
        state = replace(state, space=jnp.broadcast_to(
            jnp.asarray(state.space, jnp.result_type(state.f_bm)), jnp.shape(state.f_bm)))
    macro, n_sub, n_macro = _check_inputs(params, state, drives, dt, days, save_every)
    if mineral is not None:
        if macro != 1.0:
            raise CellModelError(f"mineralisation advances its age queue daily: use dt ≤ 1 day "
                                 f"(a divisor of one day); got dt = {dt}")
        if not isinstance(mineral, MineralState):
            raise TypeError(f"mineral must be a MineralState (mineral.init_mineral); got "
                            f"{type(mineral).__name__}")
        if mineral.n_elements != state.n_elements:
            raise CellModelError(f"mineral queue has {mineral.n_elements} elements but the "
                                 f"state has {state.n_elements}")
        try:
            check_layout(mineral, mineral_params)
        except ValueError as e:
            raise CellModelError(str(e)) from None
    if rtol is not None:
        if TABLEAUS[method].e is None:
            raise CellModelError(f"method {method!r} has no error estimate; use 'rodas3' or 'ros2' "
                                 f"with rtol, or rtol=None for fixed steps")
        if not (isinstance(rtol, float) and 0 < rtol < 1):
            raise CellModelError(f"rtol must be a float in (0, 1) or None; got {rtol!r}")
        if not (isinstance(max_substeps, int) and max_substeps >= 2):
            raise CellModelError(f"max_substeps must be an integer ≥ 2; got {max_substeps!r}")
    dtype = state.f_bm.dtype
    const = drives if isinstance(drives, Drives) else Drives()
    t_all, states, vms, sN, mN, stats = _simulate_core(
        params, state, const, mineral, mineral_params, jnp.asarray(t0, dtype=dtype),
        drives_fn=None if isinstance(drives, Drives) else drives, method=method, n_sub=n_sub,
        macro=macro, save_every=save_every, n_saves=n_macro // save_every, rtol=rtol,
        max_substeps=max_substeps, checkpoint_steps=bool(checkpoint_steps))
    if _concrete(stats) and int(stats[2]) > 0:
        raise CellModelError(f"{int(stats[2])} step(s) had to be forced to the end of their "
                             f"interval without meeting rtol={rtol}; raise max_substeps "
                             f"({max_substeps}) or rtol")
    logger.debug("cell model: %d elements, %g days, dt %g, %s, steps %s", state.n_elements, days,
                 dt, method, stats)
    return CellTrajectory(t_all, states, vms, sN, mN, stats[0], stats[1])

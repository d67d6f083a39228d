"""Mineralisation of new bone with an age queue (Martínez-Reina & Pivonka 2019), per element.

Newly formed bone enters the queue at age 0; it carries no mineral during the lag (12 days), its
mineral volume fraction rises linearly to v_primary = 0.121 over the primary phase (10 days), then
approaches v_max = 0.442 as v_m(t′) = v_max + (v_primary − v_max)·exp(−κ t′). Resorption removes
bone in proportion from every bin older than the lag; the last bin holds all older bone (taken as
fully mineralised). The queue advances once per day, as in bone-models 0.1.0
(``Martinez_Reina_Model.update_ageing_queue``), with the end-of-day formation φ = k_form·OBa/100
and resorption r = k_res·OCa/100 (BV/TV per day) and the end-of-day BV/TV f; the last bin is the
remainder f + φ − r − Σ(other bins), floored at 0 (bone-models' convention).

Derived tissue properties (Martínez-Reina 2019 after Hernandez 2001):
ash fraction α = ρ_m v_m / (ρ_m v_m + ρ_o v_o); tissue density ρ_t = 1 + (ρ_m − 1) v_m +
(ρ_o − 1) v_o g/cm³; apparent density ρ_app = ρ_t·f_bm; E = 84.37·f_bm^2.58·α^2.74 GPa.

Memory: the queue is (queue_days, n_elements) floats (1000 days: 8 kB per element in float64);
shorten ``MineralParameters.queue_days`` for large meshes (bone older than the queue counts as
fully mineralised). Time: a day touches the K young bins and one row of the older ring
(:class:`MineralState`), not the whole queue.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from .cell_model import specific_surface
from .parameters import CellParameters, MineralParameters, MINERAL_MARTINEZ_REINA_2019

__all__ = ["MineralState", "from_bins", "mineral_law", "init_mineral", "update_mineral",
           "mean_mineral_content", "ash_fraction", "tissue_density", "apparent_density",
           "youngs_modulus_gpa", "DayQueue", "check_layout", "split_queue", "advance_day_queue",
           "join_queue", "old_bins"]


@dataclass(frozen=True)
class MineralState:
    """Age queue of bone volume, kept so that a day costs O(1) work per element whatever the
    length of the queue.

    Ages 0..L−1 (L = ``queue_days``; the last bin holds all older bone) fall in three parts:
    the lag (ages 0..lag−1, no mineral, not resorbed), the primary phase (ages lag..K−1, mineral
    rising linearly) and the secondary phase (ages K..L−2). Every bin older than the lag loses
    the same fraction r/f a day, so the primary and secondary bins are held in stored units,
    BV/TV = stored × ``scale`` (a per-element product of the daily survival factors). Each part
    is a ring: the bin of age a of a part spanning ages a0..a1 sits in row
    (``day`` + a1 − a) mod (a1 − a0 + 1), so ageing by a day moves every part's oldest row on:
    it leaves into the next part and today's bin takes its place. Running sums give the
    mineral content without reading the rings (:func:`mean_mineral_content`): Σ stored and
    Σ (a − lag)·stored of the primary part (v_m rises linearly there), Σ stored and
    Σ e^(−κ(a − K))·stored of the secondary part (v_m = v_max + c·e^(−κ(a − K))). ``scale`` is
    reset to 1 (one pass over the rings) only when some element's falls below 1e-6.

    Attributes:
        lag: (lag_days, n_elements) BV/TV of ages 0..lag−1 (ring).
        primary: (K − lag, n_elements) stored bins of ages lag..K−1 (ring).
        ring: (L − K − 1, n_elements) stored bins of ages K..L−2 (ring).
        day: () int32, days advanced since the rings' rows were in age order.
        scale: (n_elements,) BV/TV per stored unit.
        lag_sum, primary_sum, primary_moment, old_sum, old_moment: (n_elements,) the running
            sums (lag in BV/TV, the others in stored units).
        last: (n_elements,) BV/TV of all bone older than the queue (fully mineralised).
    """

    lag: jax.Array
    primary: jax.Array
    ring: jax.Array
    day: jax.Array
    scale: jax.Array
    lag_sum: jax.Array
    primary_sum: jax.Array
    primary_moment: jax.Array
    old_sum: jax.Array
    old_moment: jax.Array
    last: jax.Array

    @property
    def queue_days(self) -> int:
        return self.lag.shape[0] + self.primary.shape[0] + self.ring.shape[0] + 1

    @property
    def n_elements(self) -> int:
        return self.last.shape[0]

    @property
    def bins(self) -> jax.Array:
        """(queue_days, n_elements) BV/TV by age in days (row j: age j; the last row: all older
        bone), put together from the rings (a full pass: for inspection and tests)."""
        return jnp.concatenate([_in_age_order(self.lag, self.day),
                                _in_age_order(self.primary, self.day) * self.scale[None, :],
                                _in_age_order(self.ring, self.day) * self.scale[None, :],
                                self.last[None, :]], axis=0)

    @property
    def queue(self) -> jax.Array:
        """(n_elements, queue_days) view of :attr:`bins`, element-major."""
        return self.bins.T


jax.tree_util.register_dataclass(
    MineralState, data_fields=["lag", "primary", "ring", "day", "scale", "lag_sum", "primary_sum",
                               "primary_moment", "old_sum", "old_moment", "last"],
    meta_fields=[])


def _in_age_order(ring, day):
    """The rows of a ring, youngest first."""
    m = ring.shape[0]
    return jnp.take(ring, (day + m - 1 - jnp.arange(m)) % m, axis=0)


def _oldest_row(ring, day):
    """(index, row) of a ring's oldest bin."""
    i = day % ring.shape[0]
    return i, jax.lax.dynamic_index_in_dim(ring, i, axis=0, keepdims=False)


def from_bins(bins, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019) -> MineralState:
    """The :class:`MineralState` of an explicit (queue_days, n_elements) age queue (BV/TV by
    age in days, the last row all older bone)."""
    _check_queue(params)
    lag, K = params.lag_days, _young_bins(params)
    if bins.shape[0] != params.queue_days:
        raise ValueError(f"the queue has {bins.shape[0]} bins but MineralParameters.queue_days is "
                         f"{params.queue_days}")
    primary, old = bins[lag:K], bins[K:-1]
    decay = jnp.exp(-params.rate * jnp.arange(old.shape[0], dtype=bins.dtype))
    weight = jnp.arange(K - lag, dtype=bins.dtype)
    return MineralState(bins[:lag][::-1], primary[::-1], old[::-1], jnp.zeros((), jnp.int32),
                        jnp.ones_like(bins[0]), bins[:lag].sum(axis=0), primary.sum(axis=0),
                        weight @ primary, old.sum(axis=0), decay @ old, bins[-1])


def _check_queue(params: MineralParameters) -> None:
    young = _young_bins(params)
    if params.queue_days < young + 2:
        raise ValueError(f"MineralParameters.queue_days ({params.queue_days}) must exceed the lag "
                         f"and primary phase ({young - 1} days) by at least 2 days; use ≥ 400 "
                         f"days")
    if params.lag_days < 1:
        raise ValueError(f"MineralParameters.lag_days must be ≥ 1 day (the mineralisation lag of "
                         f"osteoid, 12 days in Martínez-Reina 2019); got {params.lag_days}")


def mineral_law(age_days, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Mineral volume fraction v_m of bone of a given age (days, array): 0 during the lag, a
    linear rise to ``v_primary`` over the primary phase, then exponential approach to ``v_max``."""
    p = params
    a = jnp.asarray(age_days, dtype=jnp.result_type(float))
    lin = p.v_primary * (a - p.lag_days) / p.primary_days
    sec = p.v_max + (p.v_primary - p.v_max) * jnp.exp(-p.rate * (a - p.lag_days - p.primary_days))
    return jnp.where(a <= p.lag_days, 0.0, jnp.where(a <= p.lag_days + p.primary_days, lin, sec))


def _rates(state, cell_params: CellParameters):
    """(formation φ, resorption r), BV/TV per day, exactly as in dBV/TV/dt of the cell model
    (including its specific-surface factor when ``cell_params.specific_surface``)."""
    phi = cell_params.k_form * state.OBa / 100.0
    r = cell_params.k_res * state.OCa / 100.0
    if cell_params.specific_surface:
        s = specific_surface(state.f_bm) / specific_surface(cell_params.sv_reference_bvtv)
        phi, r = phi * s, r * s
    return phi, r


def init_mineral(state, cell_params: CellParameters,
                 params: MineralParameters = MINERAL_MARTINEZ_REINA_2019) -> MineralState:
    """Stationary queue for a steady state (closed form of bone-models' repeated daily update
    from an empty queue): bins 0..lag hold φ, older bins φ(1 − r/f)^(age − lag), the last bin the
    remainder f + φ − r − Σ.

    The rings are written directly in ring order and their sums taken in closed form
    (geometric series), so that a caller that needs only the mineral content (the fixed point
    of :func:`febone.remodel.model.initial_state`) never materialises the queue under ``jit``,
    and one that needs the queue materialises it once (a 0.6 mm femur's 1000-day queue is 5 GB).

    Args:
        state: :class:`~febone.remodel.cells.CellState` (n_elements,) at steady state.
        cell_params: the :class:`CellParameters` of the run (k_form, k_res).
        params: :class:`MineralParameters`.
    """
    _check_queue(params)
    lag, K = params.lag_days, _young_bins(params)
    P, M = K - lag, old_bins(params)
    phi, r = _rates(state, cell_params)
    f = state.f_bm
    x = jnp.clip(r / f, 0.0, 1.0)               # fraction of older bone resorbed a day
    keep = 1.0 - x
    primary_powers = _powers(keep, P)           # keep^(a − lag), ages lag..K−1
    base = phi * primary_powers[-1] * keep      # the bin of age K
    primary = (phi * primary_powers)[::-1]      # ring order (day 0): the oldest in row 0
    ring = base * _powers(keep, M)[::-1]        # ages L−2 … K
    log_keep = jnp.log1p(-jnp.minimum(x, 1.0 - 1e-16))
    old_sum = base * _geometric_sum(x, log_keep, M)
    # Σ_j (e^(−κ) keep)^j: ratio q = e^(−κ)(1 − x), 1 − q = −expm1(−κ) + e^(−κ)·x
    decay = jnp.exp(-params.rate)
    one_minus_q = -jnp.expm1(-params.rate) + decay * x
    old_moment = base * (-jnp.expm1(M * (log_keep - params.rate))) / one_minus_q
    primary_sum = jnp.sum(phi * primary_powers, axis=0)
    moment = jnp.sum(jnp.arange(P, dtype=f.dtype)[:, None] * phi * primary_powers, axis=0)
    last = f + phi - r - (lag * phi + primary_sum + old_sum)
    last = jnp.where(last < 1e-13, 0.0, last)
    return MineralState(jnp.broadcast_to(phi, (lag,) + phi.shape), primary, ring,
                        jnp.zeros((), jnp.int32), jnp.ones_like(f), lag * phi, primary_sum,
                        moment, old_sum, old_moment, last)


def _geometric_sum(x, log_keep, n: int):
    """Σ_{j<n} (1 − x)^j = (1 − (1 − x)^n)/x, accurate for small x (n at x = 0)."""
    safe = jnp.where(x > 0, x, 1.0)
    return jnp.where(x > 0, -jnp.expm1(n * log_keep) / safe, float(n))


def _powers(x, n: int, block: int = 32):
    """(n, len(x)) powers x⁰ … xⁿ⁻¹ by products only: x^(block·m + i) = (x^block)^m · x^i, each
    factor a chain of at most ``block`` products (relative error ~1e-14; ``x ** k`` evaluates a
    log and an exp per entry, forward and in reverse mode)."""
    low = [jnp.ones_like(x)]
    for _ in range(block - 1):
        low.append(low[-1] * x)
    step = low[-1] * x
    high = [jnp.ones_like(x)]
    for _ in range(-(-n // block) - 1):
        high.append(high[-1] * step)
    out = jnp.stack(high)[:, None, :] * jnp.stack(low)[None, :, :]
    return out.reshape(-1, x.shape[0])[:n]


def update_mineral(mineral: MineralState, state, cell_params: CellParameters,
                   params: MineralParameters = MINERAL_MARTINEZ_REINA_2019) -> MineralState:
    """Advance the queue by one day with the end-of-day cells and BV/TV of ``state``: the
    explicit update of every bin (a full pass; :func:`advance_day_queue` is the fast form that
    :func:`~febone.remodel.cells.simulate` uses)."""
    _check_queue(params)
    L, lag = params.queue_days, params.lag_days
    q = mineral.bins
    phi, r = _rates(state, cell_params)
    f = state.f_bm
    young = q[:lag]                                             # ages 0..lag−1 → 1..lag, kept
    old = q[lag:L - 2] * (1.0 - r / f)[None, :]                 # ages lag.. → lag+1..L−2
    body = jnp.concatenate([phi[None, :], young, old], axis=0)
    last = f + phi - r - body.sum(axis=0)
    last = jnp.where(last < 1e-13, 0.0, last)
    return from_bins(jnp.concatenate([body, last[None, :]], axis=0), params)


def _young_bins(params: MineralParameters) -> int:
    """K: bins of age 0..K−1 span the lag and the primary phase; every older bin is secondary."""
    return params.lag_days + int(np.floor(params.primary_days)) + 1


def old_bins(params: MineralParameters) -> int:
    """Explicit bins of the secondary phase, ages K..L−2 (the last bin holds all older bone)."""
    return params.queue_days - _young_bins(params) - 1


@dataclass(frozen=True)
class DayQueue:
    """What the day loop of a run carries: the :class:`MineralState` without its secondary
    ring (``queue.ring`` has no rows: :func:`split_queue` gathers the ring's leaving rows at the
    start of the run and :func:`join_queue` writes the entering ones back at its end), plus the
    running mineral content, so nothing of size queue_days is carried by the day loop (it would
    be copied every day, and kept per day in reverse mode).

    Attributes:
        queue: :class:`MineralState` with a (0, n_elements) ring.
        mineral: (n_elements,) mineral volume per element volume.
    """

    queue: MineralState
    mineral: jax.Array


jax.tree_util.register_dataclass(DayQueue, data_fields=["queue", "mineral"], meta_fields=[])


def _secondary_offset(params: MineralParameters, K: int):
    """c: v_m(a) = v_max + c·e^(−κ(a − K)) for a ≥ K."""
    return (params.v_primary - params.v_max) * jnp.exp(
        -params.rate * (K - params.lag_days - params.primary_days))


def _content(q: MineralState, params: MineralParameters):
    """(n_elements,) mineral volume per element volume, Σ_j q_j v_m(j), from the running sums."""
    K = params.lag_days + q.primary.shape[0]
    return (q.scale * (params.v_primary / params.primary_days * q.primary_moment
                       + params.v_max * q.old_sum + _secondary_offset(params, K) * q.old_moment)
            + params.v_max * q.last)


def check_layout(mineral: MineralState, params: MineralParameters) -> None:
    """Raise ValueError unless ``mineral`` has the queue layout of ``params``."""
    K, M = _young_bins(params), old_bins(params)
    if (mineral.lag.shape[0], mineral.primary.shape[0], mineral.ring.shape[0]) != (
            params.lag_days, K - params.lag_days, M):
        raise ValueError(f"the mineral queue has {mineral.queue_days} days (lag "
                         f"{mineral.lag.shape[0]}) but MineralParameters asks for "
                         f"{params.queue_days} (lag {params.lag_days}); build it with "
                         f"init_mineral(..., params)")


def split_queue(mineral: MineralState, params: MineralParameters, n_days: int):
    """(day form, (n_days, n) secondary-ring rows that leave on the next n_days days, the
    oldest first) at the start of a run of n_days (1 ≤ n_days ≤ the ring's rows)."""
    M = mineral.ring.shape[0]
    if not 0 < n_days <= M:
        raise ValueError(f"a day-queue run covers 1..{M} days; got {n_days}")
    m = mineral
    dq = DayQueue(replace(m, ring=m.ring[:0]), _content(m, params))
    return dq, jnp.take(m.ring, (m.day + jnp.arange(n_days)) % M, axis=0)


def join_queue(mineral: MineralState, dq: DayQueue, entered,
               params: MineralParameters) -> MineralState:
    """The :class:`MineralState` after a run begun at ``mineral``: ``entered`` (n_days, n) the
    stored bins the days emitted into the secondary ring (the first day's first) take the rows
    that left. When some element's scale fell below 1e-6 the stored parts are brought back to
    scale 1 (one pass)."""
    M, n = mineral.ring.shape[0], entered.shape[0]
    ring = mineral.ring.at[(mineral.day + jnp.arange(n)) % M].set(entered)
    q = dq.queue
    stored = (q.primary, ring, q.primary_sum, q.primary_moment, q.old_sum, q.old_moment)

    def rescale(scale, stored):
        return jnp.ones_like(scale), tuple(a * scale for a in stored)

    scale, stored = jax.lax.cond(jnp.min(q.scale) < 1e-6, rescale, lambda *a: a, q.scale,
                                 stored)
    primary, ring, p_sum, p_moment, o_sum, o_moment = stored
    return replace(q, primary=primary, ring=ring, scale=scale, primary_sum=p_sum,
                   primary_moment=p_moment, old_sum=o_sum, old_moment=o_moment)


def advance_day_queue(dq: DayQueue, leaving, state, cell_params: CellParameters,
                      params: MineralParameters):
    """:func:`update_mineral` on the :class:`DayQueue` form (equal to rounding); ``leaving``
    (n_elements,) is this day's row of :func:`split_queue`'s leaving bins. Returns (new day
    form, (n_elements,) the stored bin that entered the secondary ring)."""
    q = dq.queue
    P, M = q.primary.shape[0], old_bins(params)
    phi, r = _rates(state, cell_params)
    f = state.f_bm
    scale = q.scale * (1.0 - r / f)                # bins older than the lag lose r/f today
    i_lag, out_of_lag = _oldest_row(q.lag, q.day)             # age lag − 1 → lag
    i_primary, out_of_primary = _oldest_row(q.primary, q.day)  # age K − 1 → K (stored)
    into_primary = jnp.where(scale > 0, out_of_lag / jnp.where(scale > 0, scale, 1.0), 0.0)
    lag = jax.lax.dynamic_update_index_in_dim(q.lag, phi, i_lag, axis=0)
    primary = jax.lax.dynamic_update_index_in_dim(q.primary, into_primary, i_primary, axis=0)
    lag_sum = q.lag_sum - out_of_lag + phi
    kept = q.primary_sum - out_of_primary          # ages lag..K−2, each a day older now
    primary_moment = q.primary_moment - (P - 1) * out_of_primary + kept
    primary_sum = kept + into_primary
    old_sum = q.old_sum - leaving + out_of_primary
    decay = jnp.exp(-params.rate)
    old_moment = decay * (q.old_moment - leaving * decay ** (M - 1)) + out_of_primary
    last = f + phi - r - (lag_sum + scale * (primary_sum + old_sum))
    last = jnp.where(last < 1e-13, 0.0, last)
    new = MineralState(lag, primary, q.ring, q.day + 1, scale, lag_sum, primary_sum,
                       primary_moment, old_sum, old_moment, last)
    return DayQueue(new, _content(new, params)), out_of_primary


def mean_mineral_content(mineral: MineralState, f_bm,
                         params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Mean mineral volume fraction of the bone matrix, (n_elements,): Σ q_j v_m(j) / f_bm (from
    the queue's running sums)."""
    return _content(mineral, params) / f_bm


def ash_fraction(v_m, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Ash fraction α = ρ_m v_m / (ρ_m v_m + ρ_o v_o) (dimensionless), like ``v_m``."""
    m = params.rho_mineral * v_m
    return m / (m + params.rho_organic * params.v_organic)


def tissue_density(v_m, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Tissue (material) density ρ_t = 1 + (ρ_m − 1) v_m + (ρ_o − 1) v_o, g/cm³ (water fills the
    rest of the matrix volume)."""
    return 1.0 + (params.rho_mineral - 1.0) * v_m + (params.rho_organic - 1.0) * params.v_organic


def apparent_density(v_m, f_bm, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Apparent density ρ_app = ρ_t·f_bm, g/cm³ (pores empty)."""
    return tissue_density(v_m, params) * f_bm


def youngs_modulus_gpa(f_bm, ash, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Young's modulus E = E0·f_bm^2.58·α^2.74, GPa (Hernandez 2001); multiply by 1000 for MPa."""
    return params.E0_GPa * f_bm ** params.exp_bvtv * ash ** params.exp_ash

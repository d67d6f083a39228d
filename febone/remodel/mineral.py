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
fully mineralised).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .cell_model import specific_surface
from .parameters import CellParameters, MineralParameters, MINERAL_MARTINEZ_REINA_2019

__all__ = ["MineralState", "mineral_law", "init_mineral", "update_mineral", "mean_mineral_content",
           "ash_fraction", "tissue_density", "apparent_density", "youngs_modulus_gpa", "DayQueue",
           "split_queue", "advance_day_queue", "join_queue", "old_bins"]


@dataclass(frozen=True)
class MineralState:
    """Age queue of bone volume.

    Attributes:
        bins: (queue_days, n_elements) BV/TV fraction of bone by age in days (row j: age j days;
            the last row: all older bone). Age-major, so that the daily update and the chunked
            day form (:func:`split_queue`) read and write contiguous rows.
    """

    bins: jax.Array

    @property
    def queue(self) -> jax.Array:
        """(n_elements, queue_days) view of :attr:`bins`, element-major."""
        return self.bins.T


jax.tree_util.register_dataclass(MineralState, data_fields=["bins"], meta_fields=[])


def _check_queue(params: MineralParameters) -> None:
    young = _young_bins(params)
    if params.queue_days < young + 2:
        raise ValueError(f"MineralParameters.queue_days ({params.queue_days}) must exceed the lag "
                         f"and primary phase ({young - 1} days) by at least 2 days; use ≥ 400 "
                         f"days")


def mineral_law(age_days, params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Mineral volume fraction v_m of bone of a given age (days, array): 0 during the lag, a
    linear rise to ``v_primary`` over the primary phase, then exponential approach to ``v_max``."""
    p = params
    a = jnp.asarray(age_days, dtype=jnp.result_type(float))
    lin = p.v_primary * (a - p.lag_days) / p.primary_days
    sec = p.v_max + (p.v_primary - p.v_max) * jnp.exp(-p.rate * (a - p.lag_days - p.primary_days))
    return jnp.where(a <= p.lag_days, 0.0, jnp.where(a <= p.lag_days + p.primary_days, lin, sec))


def _bin_mineral(params: MineralParameters, dtype):
    """(queue_days,) mineral content of each bin; the last bin is fully mineralised."""
    L = params.queue_days
    law = mineral_law(jnp.arange(L - 1, dtype=dtype), params)
    return jnp.concatenate([law, jnp.asarray([params.v_max], dtype=law.dtype)])


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

    Args:
        state: :class:`~febone.remodel.cells.CellState` (n_elements,) at steady state.
        cell_params: the :class:`CellParameters` of the run (k_form, k_res).
        params: :class:`MineralParameters`.
    """
    _check_queue(params)
    L, lag = params.queue_days, params.lag_days
    phi, r = _rates(state, cell_params)
    f = state.f_bm
    keep = 1.0 - r / f
    q = phi[None, :] * jnp.concatenate([jnp.ones((lag, f.shape[0]), f.dtype),
                                        _powers(keep, L - 1 - lag)])
    last = f + phi - r - q.sum(axis=0)
    last = jnp.where(last < 1e-13, 0.0, last)
    return MineralState(jnp.concatenate([q, last[None, :]], axis=0))


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
    """Advance the queue by one day with the end-of-day cells and BV/TV of ``state``."""
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
    return MineralState(jnp.concatenate([body, last[None, :]], axis=0))


def _young_bins(params: MineralParameters) -> int:
    """K: bins of age 0..K−1 span the lag and the primary phase; every older bin is secondary."""
    return params.lag_days + int(np.floor(params.primary_days)) + 1


def old_bins(params: MineralParameters) -> int:
    """Explicit bins of the secondary phase, ages K..L−2 (the last bin holds all older bone)."""
    return params.queue_days - _young_bins(params) - 1


@dataclass(frozen=True)
class DayQueue:
    """The age queue in the form the daily update uses inside a run of n days: the same
    contents as :class:`MineralState`, with O(K) work per day instead of O(queue_days).

    ``young[a]`` is the BV/TV of age a = 0..K−1 (the lag and the primary phase). The older bins
    (ages K..L−2, all in the secondary phase) are not carried through the days: every bin older
    than the lag loses the same fraction r/f each day, so their BV/TV is (BV/TV at the start of
    the run, or on entering) × ``scale`` / (``scale`` then), one product of survival factors per
    element. Each day emits the bin that leaves the young block (in stored units, BV/TV / scale)
    and takes in the one that leaves the queue's explicit part (known at the start of the run,
    :func:`split_queue`); :func:`join_queue` puts the queue back together once at the end. Their
    mineral is v_max·Σ + c·Σ e^(−κ(a − K)) (v_m of the secondary phase), so the volume
    ``old_sum`` and moment ``old_moment`` (stored units) give the mineral content ``mineral``
    (Σ_j q_j v_m(j), per element volume) every day. Nothing of size queue_days is carried by the
    day loop (it would be copied every day, and kept per day in reverse mode).

    Attributes: young (K, n_elements); old_sum, old_moment, scale, last, mineral
    (n_elements,).
    """

    young: jax.Array
    old_sum: jax.Array
    old_moment: jax.Array
    scale: jax.Array
    last: jax.Array
    mineral: jax.Array


jax.tree_util.register_dataclass(
    DayQueue, data_fields=["young", "old_sum", "old_moment", "scale", "last", "mineral"],
    meta_fields=[])


def _secondary_offset(params: MineralParameters, K: int):
    """c: v_m(a) = v_max + c·e^(−κ(a − K)) for a ≥ K."""
    return (params.v_primary - params.v_max) * jnp.exp(
        -params.rate * (K - params.lag_days - params.primary_days))


def split_queue(mineral: MineralState, params: MineralParameters, n_days: int):
    """(day form, old bins (L − K − 1, n) by age K..L−2, (n_days, n) bins that leave the explicit
    part on the next n_days updates, the oldest first) at the start of a run of n_days."""
    q = mineral.bins
    K = _young_bins(params)
    old = q[K:-1]
    if not 0 < n_days <= old.shape[0]:
        raise ValueError(f"a day-queue run covers 1..{old.shape[0]} days; got {n_days}")
    decay = jnp.exp(-params.rate * jnp.arange(old.shape[0], dtype=q.dtype))
    content = _bin_mineral(params, q.dtype) @ q
    dq = DayQueue(q[:K], old.sum(axis=0), decay @ old, jnp.ones_like(q[0]), q[-1], content)
    return dq, old, old[::-1][:n_days]


def join_queue(dq: DayQueue, old, entered) -> MineralState:
    """The :class:`MineralState` after a run: ``old`` from :func:`split_queue`, ``entered``
    (n_days, n) the stored bins the days emitted (the first day's first)."""
    n = entered.shape[0]
    aged = jnp.concatenate([entered[::-1], old[:old.shape[0] - n]]) * dq.scale[None, :]
    return MineralState(jnp.concatenate([dq.young, aged, dq.last[None, :]], axis=0))


def advance_day_queue(dq: DayQueue, leaving, state, cell_params: CellParameters,
                      params: MineralParameters):
    """:func:`update_mineral` on the :class:`DayQueue` form (equal to rounding); ``leaving``
    (n_elements,) is this day's row of :func:`split_queue`'s leaving bins. Returns (new day
    form, (n_elements,) the stored bin that entered the older part)."""
    K, lag, n_old = dq.young.shape[0], params.lag_days, old_bins(params)
    phi, r = _rates(state, cell_params)
    f = state.f_bm
    keep = 1.0 - r / f
    entering = jnp.where(dq.scale > 0, dq.young[-1] / jnp.where(dq.scale > 0, dq.scale, 1.0), 0.0)
    young = jnp.concatenate([phi[None, :], dq.young[:lag], dq.young[lag:-1] * keep[None, :]])
    scale = dq.scale * keep
    old_sum = dq.old_sum - leaving + entering
    decay = jnp.exp(-params.rate)
    old_moment = decay * (dq.old_moment - leaving * decay ** (n_old - 1)) + entering
    last = f + phi - r - (young.sum(axis=0) + old_sum * scale)
    last = jnp.where(last < 1e-13, 0.0, last)
    law = mineral_law(jnp.arange(K, dtype=f.dtype), params)
    mineral = (law @ young + scale * (params.v_max * old_sum
                                      + _secondary_offset(params, K) * old_moment)
               + params.v_max * last)
    return DayQueue(young, old_sum, old_moment, scale, last, mineral), entering


def mean_mineral_content(mineral: MineralState, f_bm,
                         params: MineralParameters = MINERAL_MARTINEZ_REINA_2019):
    """Mean mineral volume fraction of the bone matrix, (n_elements,): Σ q_j v_m(j) / f_bm."""
    return _bin_mineral(params, mineral.bins.dtype) @ mineral.bins / f_bm


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

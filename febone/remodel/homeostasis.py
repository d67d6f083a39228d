"""The homeostatic (steady) state of the bone cell model of every element.

The OBp and OBa equations of :func:`~febone.remodel.cell_model.rhs` are solved in closed form for
a given OCa, which leaves one scalar equation per element for OCa: bisection in log OCa, then
two Newton steps that also carry the implicit-function derivative (:func:`steady_state`).
"""
from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from .cell_model import (CellModelError, CellState, Drives, _broadcast_drives, _check_bvtv,
                         _concrete, signals)
from .parameters import CellParameters

__all__ = ["steady_state"]


def _reduced_cells(log_OCa, params: CellParameters, drives: Drives):
    """OBp, OBa from the OBp/OBa steady-state equations for a given OCa (no mechanics)."""
    p, d = params, drives
    OCa = jnp.exp(log_OCa)
    TGFb = (p.alpha_TGFb * OCa + d.P_TGFb) / p.D_TGFb
    pi_act = TGFb / (TGFb + p.K_act_TGFb_OBu)
    pi_rep = p.K_rep_TGFb_OBp / (TGFb + p.K_rep_TGFb_OBp)
    flux = p.D_OBu * d.D_OBu_factor * pi_act
    OBp = flux / (p.D_OBp * d.D_OBp_factor * pi_rep)
    OBa = flux / (p.A_OBa * d.A_OBa_factor)
    return OBp, OBa, OCa


def _osteoclast_balance(log_OCa, params, drives):
    """Scaled dOCa/dt at the OBp/OBa steady state; decreasing through its root in OCa."""
    OBp, OBa, OCa = _reduced_cells(log_OCa, params, drives)
    st = CellState(OBp, OBa, OCa, jnp.ones_like(OCa), jnp.zeros_like(OCa), jnp.zeros_like(OCa))
    s = signals(st, params, drives)
    prod = params.D_OCp * drives.D_OCp_factor * s.pi_act_OCp
    loss = params.A_OCa * drives.A_OCa_factor * OCa * s.pi_act_OCa
    return (prod - loss) / (prod + loss)


def steady_state(params: CellParameters, drives: Drives | None = None, *, f_bm,
                 bracket=(1e-15, 1e3)) -> CellState:
    """Homeostatic cell state of every element for its own (time-independent) drives.

    The OBp and OBa equations are solved in closed form for given OCa, leaving one scalar
    equation per element for OCa, solved by bisection in log OCa over ``bracket`` (pM; 64 halvings
    reach machine precision) and polished by two Newton steps, which also carry the exact
    implicit-function derivative for ``jax.grad`` / ``jax.jvp``. Mechanics are at homeostasis
    (``psi_ratio`` is ignored and taken as 1), and ``P_OBp`` is set so that the mechanical terms
    of dOBp/dt vanish: P_OBp = a D_OBu π_act,OBu / (OBp Π̆) (Scheiner 2013, eq. 16).

    BV/TV is stationary only where k_form OBa = k_res OCa, which holds for the default drives
    with both published parameter sets.

    Args:
        params: :class:`CellParameters`.
        drives: baseline :class:`Drives` (default neutral); fields broadcast to (n_elements,).
        f_bm: (n_elements,) BV/TV fraction of each element (scalar → one element).
        bracket: (low, high) OCa search interval, pM.

    Returns:
        :class:`CellState` with fields (n_elements,).

    Raises:
        CellModelError: bad f_bm or drives, or no steady state in ``bracket`` (when concrete).
    """
    if not isinstance(params, CellParameters):
        raise TypeError(f"params must be a CellParameters (e.g. MARTINEZ_REINA_2019); got "
                        f"{type(params).__name__}")
    drives = Drives() if drives is None else drives
    f_bm = jnp.atleast_1d(jnp.asarray(f_bm, dtype=jnp.result_type(float)))
    if f_bm.ndim != 1:
        raise CellModelError(f"f_bm must be (n_elements,); got shape {f_bm.shape}")
    _check_bvtv(f_bm)
    n = f_bm.shape[0]
    d = replace(_broadcast_drives(drives, n, f_bm.dtype), psi_ratio=jnp.ones_like(f_bm))

    st, g_lo, g_hi, res = _steady_core(params, d, f_bm, np.log(bracket[0]), np.log(bracket[1]))
    if _concrete(res):
        bad = np.flatnonzero(~((np.asarray(g_lo) > 0) & (np.asarray(g_hi) < 0)))
        if bad.size:
            raise CellModelError(
                f"no osteoclast steady state in OCa ∈ {bracket} pM for elements "
                f"{bad[:10].tolist()} ({bad.size} in all); check the drives (rate factors must be "
                f"positive, productions non-negative) or widen `bracket`")
        res = np.abs(np.asarray(res))
        if not np.all(res < 1e3 * np.finfo(res.dtype).eps):
            raise CellModelError(f"steady-state solve did not converge (max scaled residual "
                                 f"{res.max():.3g}); check the drives and parameters")
    return st


@jax.jit
def _steady_core(params, d, f_bm, log_lo, log_hi):
    # bisection on stop-gradient inputs (no derivative through the comparisons)
    ps, ds = jax.lax.stop_gradient((params, d))
    n = f_bm.shape[0]
    lo = jnp.full((n,), log_lo, dtype=f_bm.dtype)
    hi = jnp.full((n,), log_hi, dtype=f_bm.dtype)
    g_lo = _osteoclast_balance(lo, ps, ds)
    g_hi = _osteoclast_balance(hi, ps, ds)

    def bisect(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        up = _osteoclast_balance(mid, ps, ds) > 0.0
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 64, bisect, (lo, hi))
    u = jax.lax.stop_gradient(0.5 * (lo + hi))
    for _ in range(2):      # Newton in log OCa: elementwise, derivative by a ones-tangent JVP
        g, dg = jax.jvp(lambda v: _osteoclast_balance(v, params, d), (u,), (jnp.ones_like(u),))
        u = u - g / dg
    res = _osteoclast_balance(u, params, d)
    OBp, OBa, OCa = _reduced_cells(u, params, d)
    st = CellState(OBp, OBa, OCa, f_bm, jnp.zeros_like(f_bm), jnp.zeros_like(f_bm))
    s = signals(st, params, d)
    P_OBp = params.a_mech * params.D_OBu * d.D_OBu_factor * s.pi_act_OBu / (OBp * params.Pi_mech_ss)
    return replace(st, P_OBp=P_OBp), g_lo, g_hi, res


"""Bone cell population model per element (Pivonka 2008 / Scheiner 2013 / Martínez-Reina 2019).

States per element (all ``(n_elements,)``): osteoblast precursors OBp, active osteoblasts OBa,
active osteoclasts OCa (pM), bone volume fraction f_bm (BV/TV as a fraction), plus the constant
mechanical proliferation rate P_OBp (1/day) fixed at the homeostatic start (Scheiner 2013, eq. 16).

    dOBp/dt = D_OBu π_act,OBu − D_OBp OBp π_rep,OBp + P_OBp OBp Π_mech − a D_OBu π_act,OBu
    dOBa/dt = D_OBp OBp π_rep,OBp − A_OBa OBa
    dOCa/dt = D_OCp π_act,OCp^RANKL − A_OCa OCa π_act,OCa^TGFβ
    df_bm/dt = s(f_bm) (k_form OBa − k_res OCa) / 100,   s = S_V(f)/S_V(f_ref) or 1

with quasi-steady signals (exactly as coded in bone-models 0.1.0, see :func:`signals`):

    TGFβ  = (α OCa + P_TGFβ,d) / D̃_TGFβ;   PTH = (β_PTH + P_PTH,d) / D̃_PTH
    OPG   = (P_OB + P_OPG,d) OPG_max / (P_OB + D̃_OPG OPG_max),  P_OB = β_OPG OBa π_rep^PTH
    RANKL = R OBp π_act^PTH / (1 + K_A1 OPG + K_A2 RANK + χ K_den C_den)
            · (β_RANKL + P_RANKL,d + P_RANKL,mech) / (β_RANKL + D̃_RANKL R OBp π_act^PTH)
    π_act,OCp^RANKL = K_A2 RANKL RANK / (K_A2 RANKL RANK + K_d,RANKL)

Hormones, drugs and mechanics enter through :class:`Drives`, a pytree of per-element arrays
broadcastable to ``(n_elements,)`` (additive productions and multiplicative rate factors, the
denosumab concentration and the strain-energy ratio Ψ/Ψ̆). Mechanical feedback (Scheiner 2013):
Π_mech = min(1, Π̆ (1 + λ (Ψ/Ψ̆ − 1))) for Ψ > Ψ̆, else Π̆; P_RANKL,mech = κ (1 − Ψ/Ψ̆) for Ψ < Ψ̆.

Integration: linearly implicit Rosenbrock methods (default RODAS3: order 3, L-stable, stiffly
accurate, Sandu et al. 1997; also ROS2 and linearly implicit Euler) with the per-element 4×4
Jacobian in closed form (:func:`rhs_jacobian`; from four batched JVPs when the drives depend on
the state; the elements do not couple), so a 1-day step is stable although
A_OCa ≈ 5.6/day. By default each day is crossed by adaptive sub-steps (embedded error estimate,
rtol 1e-4, largest step ``dt``) so that abrupt inputs (a 25-fold RANKL jump, a denosumab dose)
are followed accurately; ``rtol=None`` gives fixed steps. Within a step the drives are evaluated
at the mid-step time (and at the stage states, so state-dependent drives enter the Jacobian):
second order for smooth inputs and exact for inputs that switch at step boundaries.
:func:`simulate` runs a ``lax.scan`` over days (reverse-mode differentiable).
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

from .parameters import (CellParameters, MineralParameters, MINERAL_MARTINEZ_REINA_2019,
                         PMOParameters, PMO_MARTINEZ_REINA_2019)

logger = logging.getLogger(__name__)

__all__ = ["CellState", "Drives", "Signals", "CellTrajectory", "CellModelError", "signals", "rhs",
           "rhs_jacobian", "steady_state", "step", "simulate", "specific_surface",
           "pmo_rankl_production", "turnover"]


class CellModelError(ValueError):
    """Invalid input to the cell population model."""


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


# --------------------------------------------------------------------------------------------
# pytrees
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellState:
    """State of every element. All fields ``(n_elements,)`` (or with a leading time axis in a
    :class:`CellTrajectory`).

    Attributes:
        OBp, OBa, OCa: osteoblast precursors, active osteoblasts, active osteoclasts, pM.
        f_bm: bone volume fraction BV/TV (fraction, 0 < f_bm ≤ 1).
        P_OBp: mechanical proliferation rate of OBp, 1/day; constant in time, set by
            :func:`steady_state` so that the mechanical terms vanish at the homeostatic start.
    """

    OBp: jax.Array
    OBa: jax.Array
    OCa: jax.Array
    f_bm: jax.Array
    P_OBp: jax.Array

    @property
    def n_elements(self) -> int:
        return int(jnp.shape(self.f_bm)[-1])

    @classmethod
    def create(cls, OBp, OBa, OCa, f_bm, P_OBp=0.0) -> "CellState":
        """Validated state; scalars are broadcast to the common ``(n_elements,)`` shape.

        Raises:
            CellModelError: non-1-D or mismatched shapes, non-positive cells, BV/TV outside (0, 1].
        """
        arrs = [jnp.asarray(a, dtype=jnp.result_type(float)) for a in (OBp, OBa, OCa, f_bm, P_OBp)]
        try:
            shape = jnp.broadcast_shapes(*(a.shape for a in arrs))
        except ValueError as e:
            raise CellModelError(f"OBp, OBa, OCa, f_bm, P_OBp must share one (n_elements,) shape; "
                                 f"got {[a.shape for a in arrs]}") from e
        if len(shape) != 1:
            raise CellModelError(f"cell state fields must be 1-D (n_elements,); got shape {shape} "
                                 f"(pass f_bm as an array of one value per element)")
        arrs = [jnp.broadcast_to(a, shape) for a in arrs]
        names = ("OBp", "OBa", "OCa")
        for name, a in zip(names, arrs[:3]):
            if _concrete(a) and not bool(np.all(np.asarray(a) > 0)):
                raise CellModelError(f"{name} must be positive and finite (pM); got min "
                                     f"{np.nanmin(np.asarray(a)):g}; start from steady_state()")
        _check_bvtv(arrs[3])
        return cls(*arrs)


def _check_bvtv(f) -> None:
    if not _concrete(f):
        return
    f = np.asarray(f)
    if not np.all(np.isfinite(f)) or np.any(f <= 0) or np.any(f > 1):
        hint = " (it looks like percent: divide by 100)" if np.nanmax(f) > 1 else ""
        raise CellModelError(f"f_bm (BV/TV) must be a fraction in (0, 1]; got "
                             f"{np.nanmin(f):g}..{np.nanmax(f):g}{hint}")


@dataclass(frozen=True)
class Drives:
    """Per-element inputs where hormones, drugs and mechanics enter. Every field is an array
    broadcastable to ``(n_elements,)``; the defaults are the neutral values.

    Additive productions (pM/day): ``P_RANKL`` (E2 loss, PMO, cytokines), ``P_PTH`` (PTH dosing),
    ``P_OPG``, ``P_TGFb``.
    Multiplicative factors (dimensionless, 1 = none): ``beta_OPG_factor`` (E2 → OPG),
    ``A_OCa_factor`` (E2, glucocorticoid → OC apoptosis), ``D_OBp_factor`` (T, progesterone,
    glucocorticoid), ``D_OBu_factor`` (GH/IGF-1), ``D_OCp_factor`` (GH), ``A_OBa_factor``
    (glucocorticoid), ``mechanosensitivity`` (scales λ; low E2 blunts it).
    ``denosumab``: free denosumab concentration C_den, pM (see :mod:`febone.remodel.denosumab`).
    ``psi_ratio``: strain energy density relative to its homeostatic value, Ψ/Ψ̆ (1 = homeostasis).
    """

    P_RANKL: jax.Array = 0.0
    P_PTH: jax.Array = 0.0
    P_OPG: jax.Array = 0.0
    P_TGFb: jax.Array = 0.0
    beta_OPG_factor: jax.Array = 1.0
    A_OCa_factor: jax.Array = 1.0
    D_OBp_factor: jax.Array = 1.0
    D_OBu_factor: jax.Array = 1.0
    D_OCp_factor: jax.Array = 1.0
    A_OBa_factor: jax.Array = 1.0
    mechanosensitivity: jax.Array = 1.0
    denosumab: jax.Array = 0.0
    psi_ratio: jax.Array = 1.0


@dataclass(frozen=True)
class Signals:
    """Quasi-steady signalling concentrations (pM) and activation functions (dimensionless),
    each ``(n_elements,)``."""

    TGFb: jax.Array
    PTH: jax.Array
    OPG: jax.Array
    RANKL: jax.Array
    pi_act_OBu: jax.Array
    pi_rep_OBp: jax.Array
    pi_act_OCa: jax.Array
    pi_act_OCp: jax.Array
    Pi_mech: jax.Array
    P_RANKL_mech: jax.Array


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


for _cls in (CellState, Drives, Signals, CellTrajectory):
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in fields(_cls)],
                                     meta_fields=[])


# --------------------------------------------------------------------------------------------
# model equations
# --------------------------------------------------------------------------------------------
def specific_surface(f):
    """Bone specific surface S_V(f), mm⁻¹, for BV/TV f (fraction): Martin (1984) polynomial as used
    by Lerebours et al. (2016): S_V = 32.2f − 93.9f² + 134f³ − 101f⁴ + 28.8f⁵."""
    return f * (32.2 + f * (-93.9 + f * (134.0 + f * (-101.0 + 28.8 * f))))


def pmo_rankl_production(t, *, onset=0.0, params: PMOParameters = PMO_MARTINEZ_REINA_2019):
    """Extra RANKL production of postmenopausal osteoporosis (Martínez-Reina & Pivonka 2019,
    eq. 18), pM/day: P0 ξ²/(ξ² + ((t − onset)/τ)²) for t ≥ onset, 0 before (t, onset in days)."""
    s = (t - onset) / params.tau
    return jnp.where(t >= onset, params.P0 * params.xi ** 2 / (params.xi ** 2 + s * s), 0.0)


def signals(state: CellState, params: CellParameters, drives: Drives = Drives()) -> Signals:
    """Quasi-steady signals for the current cells (the algebraic part of the model)."""
    p, d = params, drives
    TGFb = (p.alpha_TGFb * state.OCa + d.P_TGFb) / p.D_TGFb
    pi_act_OBu = TGFb / (TGFb + p.K_act_TGFb_OBu)
    pi_rep_OBp = p.K_rep_TGFb_OBp / (TGFb + p.K_rep_TGFb_OBp)
    pi_act_OCa = TGFb / (TGFb + p.K_act_TGFb_OCa)
    PTH = (p.beta_PTH + d.P_PTH) / p.D_PTH
    pi_act_PTH = PTH / (PTH + p.K_act_PTH)
    pi_rep_PTH = p.K_rep_PTH / (PTH + p.K_rep_PTH)
    P_OB = p.beta_OPG * d.beta_OPG_factor * state.OBa * pi_rep_PTH
    OPG = (P_OB + d.P_OPG) * p.OPG_max / (P_OB + p.D_OPG * p.OPG_max)
    psi = d.psi_ratio
    slope = p.lambda_mech * d.mechanosensitivity
    raised = jnp.minimum(1.0, p.Pi_mech_ss * (1.0 + slope * (psi - 1.0)))
    Pi_mech = jnp.where(psi > 1.0, raised, p.Pi_mech_ss)
    P_RANKL_mech = jnp.where(psi < 1.0, p.kappa_mech * (1.0 - psi), 0.0)
    RANKL_max = p.R_RANKL * state.OBp * pi_act_PTH
    RANKL = (RANKL_max / (1.0 + p.K_A1 * OPG + p.K_A2 * p.RANK + p.chi_den * p.K_den * d.denosumab)
             * (p.beta_RANKL + d.P_RANKL + P_RANKL_mech) / (p.beta_RANKL + p.D_RANKL * RANKL_max))
    RANKL_RANK = p.K_A2 * RANKL * p.RANK
    pi_act_OCp = RANKL_RANK / (RANKL_RANK + p.K_d_RANKL)
    return Signals(TGFb, PTH, OPG, RANKL, pi_act_OBu, pi_rep_OBp, pi_act_OCa, pi_act_OCp,
                   Pi_mech, P_RANKL_mech)


def rhs(state: CellState, params: CellParameters, drives: Drives = Drives()) -> CellState:
    """Time derivatives (per day) of every state field; ``P_OBp`` is constant (derivative 0)."""
    p, d = params, drives
    s = signals(state, p, d)
    D_OBu = p.D_OBu * d.D_OBu_factor
    D_OBp = p.D_OBp * d.D_OBp_factor
    formed_OBp = D_OBp * state.OBp * s.pi_rep_OBp
    mech = state.P_OBp * state.OBp * s.Pi_mech - p.a_mech * D_OBu * s.pi_act_OBu
    dOBp = D_OBu * s.pi_act_OBu - formed_OBp + mech
    dOBa = formed_OBp - p.A_OBa * d.A_OBa_factor * state.OBa
    dOCa = (p.D_OCp * d.D_OCp_factor * s.pi_act_OCp
            - p.A_OCa * d.A_OCa_factor * state.OCa * s.pi_act_OCa)
    df = (p.k_form * state.OBa - p.k_res * state.OCa) / 100.0
    if p.specific_surface:
        df = df * specific_surface(state.f_bm) / specific_surface(p.sv_reference_bvtv)
    return CellState(dOBp, dOBa, dOCa, df, jnp.zeros_like(state.P_OBp))


def _specific_surface_slope(f):
    """dS_V/df, mm⁻¹ per unit BV/TV (derivative of :func:`specific_surface`)."""
    return 32.2 + f * (-187.8 + f * (402.0 + f * (-404.0 + 144.0 * f)))


def rhs_jacobian(state: CellState, params: CellParameters, drives: Drives = Drives()) -> jax.Array:
    """∂(dOBp, dOBa, dOCa, df_bm)/∂(OBp, OBa, OCa, f_bm) of :func:`rhs` at fixed drives, in
    closed form: (n_elements, 4 out, 4 in), per day (pM⁻¹·pM and BV/TV units as the states).

    Equal to ``jax.jacfwd`` of :func:`rhs` (tests/test_cells.py), and its reverse-mode
    derivative is first order (that of a JVP-built Jacobian is second order): the Rosenbrock
    steps of gradient studies spent most of their reverse pass there."""
    return jnp.stack([jnp.stack(row, axis=-1) for row in _jacobian_blocks(state, params, drives)],
                     axis=-2)


def _jacobian_blocks(state: CellState, params: CellParameters, drives: Drives):
    """:func:`rhs_jacobian` as a 4 × 4 nested list of (n_elements,) arrays [out][in]."""
    p, d = params, drives
    sg = signals(state, p, d)
    T, pi_rep_OBp, pi_act_OCa, Pi_mech = sg.TGFb, sg.pi_rep_OBp, sg.pi_act_OCa, sg.Pi_mech
    dT = p.alpha_TGFb / p.D_TGFb                                   # ∂TGFβ/∂OCa
    d_act_OBu = p.K_act_TGFb_OBu / (T + p.K_act_TGFb_OBu) ** 2 * dT   # ∂/∂OCa
    d_rep_OBp = -p.K_rep_TGFb_OBp / (T + p.K_rep_TGFb_OBp) ** 2 * dT
    d_act_OCa = p.K_act_TGFb_OCa / (T + p.K_act_TGFb_OCa) ** 2 * dT
    pi_act_PTH = sg.PTH / (sg.PTH + p.K_act_PTH)
    c_OB = p.beta_OPG * d.beta_OPG_factor * p.K_rep_PTH / (sg.PTH + p.K_rep_PTH)  # P_OB/OBa
    den_OPG = c_OB * state.OBa + p.D_OPG * p.OPG_max
    dOPG = c_OB * p.OPG_max * (p.D_OPG * p.OPG_max - d.P_OPG) / den_OPG ** 2   # ∂/∂OBa
    RANKL_max = p.R_RANKL * state.OBp * pi_act_PTH
    A = 1.0 + p.K_A1 * sg.OPG + p.K_A2 * p.RANK + p.chi_den * p.K_den * d.denosumab
    C = p.beta_RANKL + p.D_RANKL * RANKL_max
    B = p.beta_RANKL + d.P_RANKL + sg.P_RANKL_mech
    dRANKL_OBp = B / A * p.beta_RANKL / C ** 2 * p.R_RANKL * pi_act_PTH
    dRANKL_OBa = -sg.RANKL * p.K_A1 / A * dOPG
    RR = p.K_A2 * sg.RANKL * p.RANK
    d_act_OCp = p.K_A2 * p.RANK * p.K_d_RANKL / (RR + p.K_d_RANKL) ** 2   # ∂/∂RANKL
    D_OBu = p.D_OBu * d.D_OBu_factor
    D_OBp = p.D_OBp * d.D_OBp_factor
    D_OCp = p.D_OCp * d.D_OCp_factor
    A_OBa = p.A_OBa * d.A_OBa_factor
    A_OCa = p.A_OCa * d.A_OCa_factor
    zero = jnp.zeros_like(T)
    row_OBp = [-D_OBp * pi_rep_OBp + state.P_OBp * Pi_mech, zero,
               D_OBu * (1.0 - p.a_mech) * d_act_OBu - D_OBp * state.OBp * d_rep_OBp, zero]
    row_OBa = [D_OBp * pi_rep_OBp, -A_OBa + zero, D_OBp * state.OBp * d_rep_OBp, zero]
    row_OCa = [D_OCp * d_act_OCp * dRANKL_OBp, D_OCp * d_act_OCp * dRANKL_OBa,
               -A_OCa * (pi_act_OCa + state.OCa * d_act_OCa), zero]
    s, ds = 1.0, 0.0
    if p.specific_surface:
        ref = specific_surface(p.sv_reference_bvtv)
        s, ds = specific_surface(state.f_bm) / ref, _specific_surface_slope(state.f_bm) / ref
    balance = (p.k_form * state.OBa - p.k_res * state.OCa) / 100.0
    row_f = [zero, p.k_form / 100.0 * s + zero, -p.k_res / 100.0 * s + zero, balance * ds + zero]
    return [list(jnp.broadcast_arrays(*r)) for r in (row_OBp, row_OBa, row_OCa, row_f)]


def turnover(state: CellState, params: CellParameters):
    """(formation, resorption) rates k_form·OBa and k_res·OCa, % BV/TV per day, each like the state
    fields; P1NP and CTX markers are these relative to their baseline (science.md §7)."""
    return params.k_form * state.OBa, params.k_res * state.OCa


# --------------------------------------------------------------------------------------------
# steady state
# --------------------------------------------------------------------------------------------
_POSITIVE_DRIVES = ("beta_OPG_factor", "A_OCa_factor", "D_OBp_factor", "D_OBu_factor",
                    "D_OCp_factor", "A_OBa_factor")


def _broadcast_drives(drives: Drives, n: int, dtype) -> Drives:
    """Drives with every field broadcast to (n,); checks shapes and (when concrete) signs."""
    out = {}
    for f in fields(Drives):
        v = jnp.asarray(getattr(drives, f.name), dtype=dtype)
        try:
            out[f.name] = jnp.broadcast_to(v, (n,))
        except ValueError as e:
            raise CellModelError(f"drive {f.name!r} has shape {v.shape}, which does not broadcast "
                                 f"to (n_elements,) = ({n},); give a scalar or one value per "
                                 f"element") from e
        if not _concrete(v):
            continue
        a = np.asarray(v)
        if not np.all(np.isfinite(a)):
            raise CellModelError(f"drive {f.name} has NaN/inf values; fill them (neutral value "
                                 f"{f.default})")
        if f.name in _POSITIVE_DRIVES and np.any(a <= 0):
            raise CellModelError(f"drive {f.name} must be positive (a rate multiplier, 1 = no "
                                 f"effect); got min {a.min():g}")
        if f.name not in _POSITIVE_DRIVES and f.name != "mechanosensitivity" and np.any(a < 0):
            raise CellModelError(f"drive {f.name} must be non-negative; got min {a.min():g}")
    return Drives(**out)


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
    st = CellState(OBp, OBa, OCa, jnp.ones_like(OCa), jnp.zeros_like(OCa))
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
    st = CellState(OBp, OBa, OCa, f_bm, jnp.zeros_like(f_bm))
    s = signals(st, params, d)
    P_OBp = params.a_mech * params.D_OBu * d.D_OBu_factor * s.pi_act_OBu / (OBp * params.Pi_mech_ss)
    return replace(st, P_OBp=P_OBp), g_lo, g_hi, res


# --------------------------------------------------------------------------------------------
# time integration
# --------------------------------------------------------------------------------------------
DrivesFn = Callable[[jax.Array, CellState, object], Drives]
_QUEUE_CHUNK_DAYS = 32      # days between conversions of the mineral day queue (see save_body)

class _Tableau(NamedTuple):
    """Rosenbrock method in implementation form (Hairer & Wanner 1996, IV.7, eq. 7.25):
    (1/(γh) − J) U_i = f(y + Σ_j a_ij U_j) + Σ_j (c_ij/h) U_j,  y_{n+1} = y + Σ_i m_i U_i."""

    gamma: float
    a: tuple
    c: tuple
    m: tuple
    e: tuple | None      # embedded error estimate Σ e_i U_i (None: no estimate)
    order: int           # order used in the step-size controller exponent 1/order


_G2 = 1.0 + 1.0 / np.sqrt(2.0)
_TABLEAUS = {
    # linearly implicit Euler: order 1, L-stable (fixed steps only)
    "euler": _Tableau(1.0, ((),), ((),), (1.0,), None, 1),
    # ROS2 (Verwer, Spee, Blom & Hundsdorfer 1999): order 2, L-stable
    "ros2": _Tableau(_G2, ((), (1.0 / _G2,)), ((), (-2.0 / _G2,)), (1.5 / _G2, 0.5 / _G2),
                     (0.5 / _G2, 0.5 / _G2), 2),
    # RODAS3 (Sandu et al. 1997, as in KPP): order 3 (embedded 2), L-stable, stiffly accurate
    "rodas3": _Tableau(0.5, ((), (0.0,), (2.0, 0.0), (2.0, 0.0, 1.0)),
                       ((), (4.0,), (1.0, -1.0), (1.0, -1.0, -8.0 / 3.0)),
                       (2.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.0, 1.0), 3),
}


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
    if method not in _TABLEAUS:
        raise CellModelError(f"unknown method {method!r}; use one of {sorted(_TABLEAUS)}")
    t = jnp.asarray(t, dtype=state.f_bm.dtype)
    stepper = _Stepper(params, fn, method, _drives_use_state(fn, t + 0.5 * dt, state, v_m))
    return _step(state, t, dt, stepper, v_m)[0]


#: row exchanges of :func:`_lu4`, in order: (pivot row k, candidate row i)
_SWAPS = tuple((k, i) for k in range(4) for i in range(k + 1, 4))


def _lu4(W):
    """LU with partial pivoting of every 4 × 4 element block of W (a nested list W[i][j] of
    (n,) arrays), unrolled into elementwise operations (XLA fuses them; a batched LAPACK call
    per block is ~6× slower for the cell model). Returns (rows, takes) for :func:`_lu4_solve`:
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
    """Solve W x = b (b: 4 (n,) arrays) with the factors of :func:`_lu4`; returns a tuple."""
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
def _solve4(W, lu, b):
    """x = W⁻¹ b per element block, with the factors ``lu = _lu4(W)`` computed outside AD. The
    derivative is the implicit one, ẋ = W⁻¹ (ḃ − Ẇ x) by the same factors (its transpose, the
    reverse pass, is a solve with Wᵀ), instead of differentiating the pivoting and elimination,
    which in reverse mode cost ~13× the factorisation itself. Forward and reverse mode."""
    return _lu4_solve(lu, b)


@_solve4.defjvp
def _solve4_jvp(primals, tangents):
    W, lu, b = primals
    dW, _, db = tangents
    x = _lu4_solve(lu, b)
    rhs = tuple(db[i] - sum(dW[i][j] * x[j] for j in range(4)) for i in range(4))
    return x, _lu4_solve(lu, rhs)


def _cols(s: CellState):
    return s.OBp, s.OBa, s.OCa, s.f_bm


def _step(state, t, dt, stepper: _Stepper, v_m):
    """One Rosenbrock step; returns (new state, (n, 4) error estimate or None). The state and the
    stages are kept as 4 separate (n,) columns (no packing into (n, 4) arrays, whose
    stacking and slicing cost more than the arithmetic in reverse mode)."""
    params, drives_fn, method, _ = stepper
    P_OBp = state.P_OBp
    t_mid = t + 0.5 * dt          # drives frozen at mid-step in time (state dependence kept)

    def F(y):
        s = CellState(*y, P_OBp)
        return _cols(rhs(s, params, drives_fn(t_mid, s, v_m)))

    y = _cols(state)
    if stepper.state_drives:
        f0, lin = jax.linearize(F, y)
        # the elements do not couple: one JVP per state component gives every 4×4 block at once
        unit = [tuple(jnp.full_like(y[0], float(i == j)) for j in range(4)) for i in range(4)]
        cols = [lin(e) for e in unit]                     # cols[j][i] = ∂F_i/∂y_j
        J = [[cols[j][i] for j in range(4)] for i in range(4)]
    else:                   # drives fixed over the step: the closed-form Jacobian
        d = drives_fn(t_mid, state, v_m)
        f0 = _cols(rhs(state, params, d))
        J = _jacobian_blocks(state, params, d)
    tab = _TABLEAUS[method]
    diag = 1.0 / (tab.gamma * dt)
    W = [[(diag if i == j else 0.0) - J[i][j] for j in range(4)] for i in range(4)]
    lu = _lu4(jax.lax.stop_gradient(W))

    def combine(base, terms):
        return tuple(b + sum(c * u[k] for c, u in terms) for k, b in enumerate(base))

    U = []
    for i in range(len(tab.m)):
        if any(tab.a[i]):
            fi = F(combine(y, [(aij, uj) for aij, uj in zip(tab.a[i], U) if aij]))
        else:               # first stage, or a_ij all zero: the stage reuses f(y)
            fi = f0
        rhs_i = combine(fi, [(cij / dt, uj) for cij, uj in zip(tab.c[i], U) if cij])
        U.append(_solve4(W, lu, rhs_i))
    y_new = combine(y, [(mi, ui) for mi, ui in zip(tab.m, U) if mi])
    err = None
    if tab.e is not None:
        err = jnp.stack(combine((0.0,) * 4, [(ei, ui) for ei, ui in zip(tab.e, U) if ei]), axis=-1)
    return CellState(*y_new, P_OBp), err


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
    from . import mineral as _mineral

    fn = drives_fn if drives_fn is not None else (lambda t_, s_, v_: const_drives)
    tab = _TABLEAUS[method]
    dtype = state.f_bm.dtype
    v_probe = None if mineral is None else jnp.zeros_like(state.f_bm)
    stepper = _Stepper(params, fn, method, _drives_use_state(fn, jnp.asarray(t0, dtype), state,
                                                             v_probe))
    step_fn = lambda s, t, h, v: _step(s, t, h, stepper, v)
    if checkpoint_steps:
        step_fn = jax.checkpoint(step_fn)
    zero = jnp.zeros((), jnp.int32)
    h_max = macro / n_sub

    def fixed_interval(s, t, v, h_try):
        h = macro / n_sub

        def body(i, c):
            return step_fn(c[0], c[1], h, v)[0], c[1] + h

        s, _ = jax.lax.fori_loop(0, n_sub, body, (s, t))
        return s, h_try, jnp.asarray(n_sub, jnp.int32), zero, zero

    def adaptive_interval(s, t, v, h_try):
        t_end = t + macro

        def attempt(c, last):
            s, tc, h_try, n_acc, n_rej, n_forced = c
            remaining = t_end - tc
            h = jnp.where(last, remaining, jnp.minimum(h_try, remaining))
            s_new, e = step_fn(s, tc, h, v)
            y, y_new = _pack(s), _pack(s_new)
            scale = rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new)) + jnp.finfo(y.dtype).tiny
            err = jax.lax.stop_gradient(jnp.max(jnp.abs(e) / scale))
            ok = err <= 1.0
            accept = ok | last
            fac = jnp.clip(0.9 * jnp.maximum(err, 1e-10) ** (-1.0 / tab.order), 0.2, 5.0)
            h_next = jnp.minimum(h * fac, h_max)
            h_next = jnp.where(ok & (h < h_try), jnp.maximum(h_next, h_try), h_next)  # clipped step
            pick = lambda a, b: jax.tree_util.tree_map(lambda u, v: jnp.where(accept, u, v), a, b)
            return (pick(s_new, s), jnp.where(accept, tc + h, tc), jax.lax.stop_gradient(h_next),
                    n_acc + accept, n_rej + (~accept), n_forced + (last & ~ok))

        def done(c):
            return (t_end - c[1]) <= 1e-9 * macro

        def block(c, b):        # blocks of 8 attempts, so finished days skip them cheaply
            def inner(c, j):
                i = b * 8 + j
                skip = done(c) | (i >= max_substeps)
                return jax.lax.cond(skip, lambda c: c,
                                    lambda c: attempt(c, i == max_substeps - 1), c), None

            return jax.lax.cond(done(c), lambda c: c,
                                lambda c: jax.lax.scan(inner, c, jnp.arange(8))[0], c), None

        c0 = (s, t, h_try, zero, zero, zero)
        (s, _, h_try, n_acc, n_rej, n_forced), _ = jax.lax.scan(
            block, c0, jnp.arange(-(-max_substeps // 8)))
        return s, h_try, n_acc, n_rej, n_forced

    interval = fixed_interval if rtol is None else adaptive_interval

    def macro_body(carry, leaving):  # one interval (a day with mineralisation); q: a _DayQueue
        s, q, t, h_try, stats = carry
        v_m = None if q is None else q.mineral / s.f_bm       # at the start of the day
        s, h_try, n_acc, n_rej, n_forced = interval(s, t, v_m, h_try)
        t = t + macro
        entered = None
        if q is not None:
            q, entered = _mineral._advance_day_queue(q, leaving, s, params, mineral_params)
        return (s, q, t, h_try, stats + jnp.stack([n_acc, n_rej, n_forced])), entered

    def run_days(carry, n):         # n intervals; the queue's day form lives only inside
        s, m, t, h_try, stats = carry
        q = old = leaving = None
        if m is not None:
            q, old, leaving = _mineral._split_queue(m, mineral_params, n)
        (s, q, t, h_try, stats), entered = jax.lax.scan(macro_body, (s, q, t, h_try, stats),
                                                        leaving, length=n)
        m = None if q is None else _mineral._join_queue(q, old, entered)
        content = None if q is None else q.mineral     # mineral volume per element volume
        return (s, m, t, h_try, stats), content

    def save_body(carry, _):
        # the day queue is put back together every _QUEUE_CHUNK_DAYS (at most the length of the
        # queue's older part) so that its survival product stays of order one (≥ 0.9 at
        # 0.3 %/day resorption)
        chunk = (min(_QUEUE_CHUNK_DAYS, _mineral._old_bins(mineral_params))
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

    carry0 = (state, mineral, t0, jnp.asarray(h_max, dtype), jnp.zeros(3, jnp.int32))
    (sN, mN, _, _, stats), (ts, states, vms) = jax.lax.scan(save_body, carry0, None,
                                                            length=n_saves)
    t_all = jnp.concatenate([t0[None], ts])
    states = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), state, states)
    if mineral is not None:
        vm0 = _mineral.mean_mineral_content(mineral, state.f_bm, mineral_params)
        vms = jnp.concatenate([vm0[None], vms])
    return t_all, states, vms, sN, mN, stats


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
    from . import mineral as _mineral

    if method not in _TABLEAUS:
        raise CellModelError(f"unknown method {method!r}; use one of {sorted(_TABLEAUS)}")
    macro, n_sub, n_macro = _check_inputs(params, state, drives, dt, days, save_every)
    if mineral is not None:
        if macro != 1.0:
            raise CellModelError(f"mineralisation advances its age queue daily: use dt ≤ 1 day "
                                 f"(a divisor of one day); got dt = {dt}")
        if not isinstance(mineral, _mineral.MineralState):
            raise TypeError(f"mineral must be a MineralState (mineral.init_mineral); got "
                            f"{type(mineral).__name__}")
        if mineral.bins.shape[1] != state.n_elements:
            raise CellModelError(f"mineral queue has {mineral.bins.shape[1]} elements but the "
                                 f"state has {state.n_elements}")
    if rtol is not None:
        if _TABLEAUS[method].e is None:
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

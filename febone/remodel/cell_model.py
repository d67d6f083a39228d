"""Bone cell population model per element (Pivonka 2008 / Scheiner 2013 / Martínez-Reina 2019):
its states, inputs and equations.

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

The per-element 4×4 Jacobian is in closed form (:func:`rhs_jacobian`). The steady state and the
time integration are in :mod:`febone.remodel.cells`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import jax
import jax.numpy as jnp
import numpy as np

from .parameters import CellParameters, PMOParameters, PMO_MARTINEZ_REINA_2019

__all__ = ["CellState", "Drives", "Signals", "CellModelError", "signals", "rhs", "rhs_jacobian",
           "specific_surface", "pmo_rankl_production", "turnover", "resorption_rate"]


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
    :class:`~febone.remodel.cells.CellTrajectory`).

    Attributes:
        OBp, OBa, OCa: osteoblast precursors, active osteoblasts, active osteoclasts, pM.
        f_bm: bone volume fraction BV/TV (fraction, 0 < f_bm ≤ 1).
        P_OBp: mechanical proliferation rate of OBp, 1/day; constant in time, set by
            :func:`~febone.remodel.cells.steady_state` so that the mechanical terms vanish at
            the homeostatic start.
        space: remodelling-space excess D (BV/TV fraction): resorbed volume still awaiting
            refill beyond what the current resorption rate keeps open at steady state
            (R − r·τ in :func:`~febone.remodel.cells.simulate`'s daily remodelling-space update;
            0 at any steady state; Heaney 1994). Positive after turnover falls (cavities refill:
            a transient BMD gain), negative after it rises. Not part of the Rosenbrock system.
    """

    OBp: jax.Array
    OBa: jax.Array
    OCa: jax.Array
    f_bm: jax.Array
    P_OBp: jax.Array
    space: jax.Array = 0.0

    @property
    def n_elements(self) -> int:
        return int(jnp.shape(self.f_bm)[-1])

    @classmethod
    def create(cls, OBp, OBa, OCa, f_bm, P_OBp=0.0, space=0.0) -> "CellState":
        """Validated state; scalars are broadcast to the common ``(n_elements,)`` shape.

        Raises:
            CellModelError: non-1-D or mismatched shapes, non-positive cells, BV/TV outside (0, 1].
        """
        arrs = [jnp.asarray(a, dtype=jnp.result_type(float))
                for a in (OBp, OBa, OCa, f_bm, P_OBp, space)]
        try:
            shape = jnp.broadcast_shapes(*(a.shape for a in arrs))
        except ValueError as e:
            raise CellModelError(f"OBp, OBa, OCa, f_bm, P_OBp, space must share one (n_elements,) shape; "
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


for _cls in (CellState, Drives, Signals):
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
    return CellState(dOBp, dOBa, dOCa, df, jnp.zeros_like(state.P_OBp),
                     jnp.zeros_like(state.f_bm))


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


def resorption_rate(state: CellState, params: CellParameters):
    """Resorption k_res·OCa·s(f_bm)/100 in BV/TV (fraction) per day, like the state fields (the
    resorption term of df_bm/dt, with the specific-surface factor when it is on)."""
    r = params.k_res * state.OCa / 100.0
    if params.specific_surface:
        r = r * specific_surface(state.f_bm) / specific_surface(params.sv_reference_bvtv)
    return r


def turnover(state: CellState, params: CellParameters):
    """(formation, resorption) rates k_form·OBa and k_res·OCa, % BV/TV per day, each like the state
    fields; P1NP and CTX markers are these relative to their baseline (science.md §7)."""
    return params.k_form * state.OBa, params.k_res * state.OCa



# --------------------------------------------------------------------------------------------
# input checks
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


"""Frozen parameter pytrees for the bone cell population model, mineralisation and denosumab PK.

Two cell-model parameter sets are provided and must not be mixed:

* :data:`PIVONKA_2008` — Pivonka et al. (2008), as coded in ``bone-models`` 0.1.0 (Modiz et al.,
  MIT, ``bone_models/parameters/pivonka_parameters.py``), no mechanics, no denosumab.
* :data:`MARTINEZ_REINA_2019` — Scheiner et al. (2013) cell parameters with the mechanical feedback
  of Scheiner 2013 and the denosumab binding of Martínez-Reina & Pivonka (2019), as coded in
  ``bone_models/parameters/martinez_reina_parameters.py``.

Units: concentrations pM, time days, BV/TV as a fraction in the state but the formation/resorption
constants k_form, k_res in the papers' units %/(pM·day) (the model divides by 100).

Where the papers and bone-models' code disagree, the values follow the code (which reproduces the
published figures); bone-models documents the discrepancies: β_RANKL is 1.684e2 (paper 1e4), the
RANKL-RANK half-activation constant K_D,RANKL is code-only, Pivonka's D_OBp already contains the
Lemaire correction factor f0 = 0.05, and the Scheiner/Martínez-Reina TGF-β release omits k_res
(TGFβ = α·OCa/D̃_TGFβ with α = 1).

References:
    Pivonka P, Zimak J, Smith DW, Gardiner BS, Dunstan CR, Sims NA, Martin TJ, Mundy GR (2008).
        Model structure and control of bone remodeling: a theoretical study. Bone 43(2):249-263.
        doi:10.1016/j.bone.2008.03.025
    Scheiner S, Pivonka P, Hellmich C (2013). Coupling systems biology with multiscale mechanics,
        for computer simulations of bone remodeling. Comput Methods Appl Mech Eng 254:181-196.
        doi:10.1016/j.cma.2012.10.015
    Martínez-Reina J, Pivonka P (2019). Effects of long-term treatment of denosumab on bone mineral
        density: insights from an in-silico model of bone mineralization. Bone 125:87-95.
        doi:10.1016/j.bone.2019.04.022
    Lerebours C, Buenzli PR, Scheiner S, Pivonka P (2016). A multiscale mechanobiological model of
        bone remodelling predicts site-specific bone loss in the femur during osteoporosis and
        mechanical disuse. Biomech Model Mechanobiol 15:43-67. doi:10.1007/s10237-015-0705-x
    Hernandez CJ, Beaupré GS, Keller TS, Carter DR (2001). The influence of bone volume fraction and
        ash fraction on bone strength and modulus. Bone 29(1):74-78.
    Modiz C et al. bone-models 0.1.0 (PyPI, MIT), https://github.com/cmodiz/Bone-Models
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import jax

__all__ = ["CellParameters", "MineralParameters", "DenosumabParameters", "PMOParameters",
           "PIVONKA_2008", "MARTINEZ_REINA_2019", "MINERAL_MARTINEZ_REINA_2019",
           "DENOSUMAB_MARTINEZ_REINA_2019", "PMO_MARTINEZ_REINA_2019", "SITE_CELL_PARAMETERS"]


def _register(cls, meta=()):
    data = [f.name for f in fields(cls) if f.name not in meta]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=list(meta))
    return cls


@dataclass(frozen=True)
class CellParameters:
    """Parameters of the Pivonka-type bone cell population model (one set for all elements).

    Every float is a pytree leaf (differentiable with ``jax.grad``); ``name`` and
    ``specific_surface`` are static.

    Attributes:
        D_OBu: differentiation flux of uncommitted osteoblasts, pM/day.
        D_OBp: differentiation rate of osteoblast precursors, 1/day.
        D_OCp: differentiation flux of osteoclast precursors, pM/day.
        A_OBa: apoptosis rate of active osteoblasts, 1/day.
        A_OCa: apoptosis rate of active osteoclasts, 1/day.
        K_act_TGFb_OBu, K_rep_TGFb_OBp, K_act_TGFb_OCa: TGF-β activation/repression constants, pM.
        K_act_PTH, K_rep_PTH: PTH activation (RANKL) / repression (OPG) constants, pM.
        K_d_RANKL: half-activation of osteoclast precursors by RANKL-RANK, pM.
        alpha_TGFb: TGF-β released per osteoclast, pM/(pM·day): TGFβ = (α·OCa + P_TGFβ,d)/D̃_TGFβ.
        D_TGFb, D_PTH, D_OPG, D_RANKL: degradation rates D̃, 1/day.
        beta_PTH, beta_RANKL: intrinsic PTH / RANKL production, pM/day.
        beta_OPG: OPG production per active osteoblast, 1/day.
        R_RANKL: maximum RANKL per osteoblast precursor, pM/pM.
        OPG_max: OPG saturation concentration, pM.  RANK: fixed RANK concentration, pM.
        K_A1, K_A2: RANKL-OPG and RANKL-RANK association constants, 1/pM.
        k_form, k_res: bone formed per OBa / resorbed per OCa, %/(pM·day) (BV/TV in %).
        Pi_mech_ss: homeostatic mechanical proliferation activation Π̆ (Scheiner 2013: 0.5).
        lambda_mech: slope of Π_mech above the homeostatic strain energy density (1.25).
        a_mech: fraction of the OBu differentiation flux replaced by mechanically driven OBp
            proliferation (0.1; 0 disables the proliferation term).
        kappa_mech: mechanical RANKL production κ for Ψ < Ψ̆, pM/day (0 disables it).
        chi_den: accessibility of RANKL to denosumab (Martínez-Reina 2019: 0.012).
        K_den: RANKL-denosumab association constant, 1/pM (0.333).
        sv_reference_bvtv: BV/TV (fraction) at which k_form, k_res hold when ``specific_surface``.
        remodelling_space_days: refill time τ of the remodelling space, days (Heaney 1994; 0
            disables it, as in both published sets; see
            :func:`febone.remodel.cells.remodelling_space_update`).
        name: label of the set (static).
        specific_surface: scale dBV/TV/dt by S_V(f)/S_V(sv_reference_bvtv) (Lerebours 2016) so that
            turnover is proportional to the specific surface (static; off in both published sets).
    """

    D_OBu: float
    D_OBp: float
    D_OCp: float
    A_OBa: float
    A_OCa: float
    K_act_TGFb_OBu: float
    K_rep_TGFb_OBp: float
    K_act_TGFb_OCa: float
    K_act_PTH: float
    K_rep_PTH: float
    K_d_RANKL: float
    alpha_TGFb: float
    D_TGFb: float
    D_PTH: float
    D_OPG: float
    D_RANKL: float
    beta_PTH: float
    beta_RANKL: float
    beta_OPG: float
    R_RANKL: float
    OPG_max: float
    RANK: float
    K_A1: float
    K_A2: float
    k_form: float
    k_res: float
    Pi_mech_ss: float = 0.5
    lambda_mech: float = 1.25
    a_mech: float = 0.0
    kappa_mech: float = 0.0
    chi_den: float = 0.0
    K_den: float = 0.0
    sv_reference_bvtv: float = 0.15
    remodelling_space_days: float = 0.0
    name: str = "custom"
    specific_surface: bool = False


_register(CellParameters, meta=("name", "specific_surface"))


#: Pivonka et al. (2008) as coded in bone-models 0.1.0 (``Pivonka_Parameters``). No mechanics
#: (a_mech = κ = 0) and no denosumab binding (χ = 0): those drives have no effect with this set.
#: k_res is bone-models' balanced value k_form·OBa*/OCa* at the baseline steady state
#: (bone-models: 1.0870822197586198), so that BV/TV is stationary at baseline;
#: the published k_res = 1 enters only the TGF-β release (alpha_TGFb = α·k_res = 1).
PIVONKA_2008 = CellParameters(
    D_OBu=7.00e-4, D_OBp=2.674077909527713e-1, D_OCp=2.1e-3,
    A_OBa=1.89e-1, A_OCa=7.00e-1,
    K_act_TGFb_OBu=4.545454545454545e-3, K_rep_TGFb_OBp=1.415624253823446e-3,
    K_act_TGFb_OCa=4.545454545454545e-3,
    K_act_PTH=1.5e2, K_rep_PTH=2.225814277099542e-1, K_d_RANKL=4.457452802710724,
    alpha_TGFb=1.0, D_TGFb=1.0, D_PTH=86.0, D_OPG=3.5e-1, D_RANKL=1.0132471014805027e1,
    beta_PTH=250.0, beta_RANKL=1.684195714712206e2, beta_OPG=1.624900337835679e8,
    R_RANKL=2.703476379131062e6, OPG_max=2.0e8, RANK=10.0,
    K_A1=1.0e-3, K_A2=3.411764705882353e-2,
    k_form=1.571, k_res=1.0870822197586198,
    a_mech=0.0, kappa_mech=0.0, chi_den=0.0, K_den=0.0,
    name="Pivonka 2008 (bone-models 0.1.0)")

#: Scheiner et al. (2013) / Martínez-Reina & Pivonka (2019) as coded in bone-models 0.1.0
#: (``Martinez_Reina_Parameters``): homeostatic OBp, OBa, OCa = 1e-3, 5e-4, 1e-4 pM, BV/TV 15 %.
#: κ = 1e5 pM/day is Scheiner 2013's mechanical RANKL production; note that bone-models'
#: ``Martinez_Reina_Model`` drops that term (its RANKL override omits it), so febone's cross-check
#: against bone-models sets ``kappa_mech=0``.
MARTINEZ_REINA_2019 = CellParameters(
    D_OBu=7.00e-4, D_OBp=0.165696312976030, D_OCp=2.1e-3,
    A_OBa=0.211072625806496, A_OCa=5.64874468409633,
    K_act_TGFb_OBu=0.000563278809675429, K_rep_TGFb_OBp=0.000175426051821094,
    K_act_TGFb_OCa=0.000563278809675429,
    K_act_PTH=150.0, K_rep_PTH=0.222581427709954, K_d_RANKL=5.67971833061048,
    alpha_TGFb=1.0, D_TGFb=1.0, D_PTH=86.0, D_OPG=3.5e-1, D_RANKL=1.0132471014805027e1,
    beta_PTH=250.0, beta_RANKL=1.684195714712206e2, beta_OPG=1.624900337835679e8,
    R_RANKL=2.703476379131062e6, OPG_max=2.0e8, RANK=10.0,
    K_A1=1.0e-3, K_A2=3.411764705882353e-2,
    k_form=40.0, k_res=200.0,
    Pi_mech_ss=0.5, lambda_mech=1.25, a_mech=0.1, kappa_mech=1.0e5,
    chi_den=0.012, K_den=0.333, sv_reference_bvtv=0.15,
    name="Scheiner 2013 / Martinez-Reina 2019 (bone-models 0.1.0)")

#: Scheiner 2013 / Martínez-Reina 2019 cell parameters with turnover ∝ specific surface and the
#: mechanical RANKL production κ lowered from 1e5 to 1e4 pM/day: the set of every calibrated run
#: (FE-free :func:`febone.remodel.simulate_site` and the FE loop). With the force-controlled
#: closure, κ = 1e5 answers any anabolic stimulus (e.g. OB apoptosis −20 %) with a threefold
#: turnover rise that lowers BMD by ~20 % through younger, less mineralised bone, contradicting
#: the BMD gains of teriparatide, testosterone and GH; κ = 1e4 keeps BV/TV bounded (measured with
#: A_OBa ×0.8 over 10 y: BV/TV +10…68 % trabecular, +10 % cortical) *(choice, not fitted)*.
#: The remodelling space refills with τ = 100 days (Heaney 1994, J Bone Miner Res 9:1515: the
#: formation period, about 3 months, sets the bone-remodeling transient; Parfitt 1994: trabecular
#: formation period ≈ 100 days), so that lowering turnover gives the early BMD gain of HRT and
#: antiresorptives and raising it an early loss (:func:`febone.remodel.cells.remodelling_space_update`).
SITE_CELL_PARAMETERS = replace(MARTINEZ_REINA_2019, specific_surface=True, kappa_mech=1.0e4,
                               remodelling_space_days=100.0,
                               name=MARTINEZ_REINA_2019.name + " + S_V, kappa 1e4, space 100 d")


@dataclass(frozen=True)
class MineralParameters:
    """Mineralisation of new bone (Martínez-Reina & Pivonka 2019) and tissue properties.

    Attributes:
        lag_days: mineralisation lag t_mlt, days (no mineral while the osteoid is younger).
        primary_days: primary phase duration, days (linear rise to ``v_primary``); static (it
            sets the daily queue update's shapes), so not a differentiable parameter.
        v_primary: mineral volume fraction at the end of the primary phase.
        v_max: maximum mineral volume fraction.
        rate: secondary mineralisation rate κ, 1/day: v_m = v_max + (v_primary − v_max)·e^(−κ t′).
        rho_mineral, rho_organic: densities ρ_m, ρ_o, g/cm³.
        v_organic: organic volume fraction v_o (3/7).
        queue_days: length of the age queue, days (the last bin: all older, fully mineral bone).
        E0_GPa, exp_bvtv, exp_ash: Young's modulus E = E0·(BV/TV)^exp_bvtv·α^exp_ash, GPa
            (Hernandez 2001, as used by Martínez-Reina 2019).
    """

    lag_days: int = 12
    primary_days: float = 10.0
    v_primary: float = 0.121
    v_max: float = 0.442
    rate: float = 0.007
    rho_mineral: float = 3.2
    rho_organic: float = 1.1
    v_organic: float = 3.0 / 7.0
    queue_days: int = 1000
    E0_GPa: float = 84.37
    exp_bvtv: float = 2.58
    exp_ash: float = 2.74


_register(MineralParameters, meta=("lag_days", "primary_days", "queue_days"))

#: Martínez-Reina & Pivonka (2019) mineralisation (bone-models ``mineralisation`` class).
MINERAL_MARTINEZ_REINA_2019 = MineralParameters()


@dataclass(frozen=True)
class DenosumabParameters:
    """Denosumab pharmacokinetics (one compartment, first-order absorption, Michaelis-Menten and
    linear elimination), Martínez-Reina & Pivonka (2019) Table/eq. of the PK model:

        dC/dt = k_a·A/(V_c/F) − V_max/(V_c/F)·C/(K_m + C) − k_el·C,   dA/dt = −k_a·A (depot, ng)

    Attributes:
        k_a: absorption rate, 1/day.  k_el: linear elimination rate, 1/day.
        V_c_ml_per_kg: central volume, mL/kg.  F: bioavailability.
        V_max_ng_per_kg_day: Michaelis-Menten maximum elimination, ng/(kg·day).
        K_m_ng_per_ml: Michaelis-Menten constant, ng/mL.
        molar_mass_g_per_mol: 149 kDa.  body_mass_kg: reference body mass (60 kg).
    """

    k_a: float = 0.17
    k_el: float = 1.15e-2
    V_c_ml_per_kg: float = 77.9
    F: float = 1.0
    V_max_ng_per_kg_day: float = 2672.0
    K_m_ng_per_ml: float = 411.0
    molar_mass_g_per_mol: float = 149.0e3
    body_mass_kg: float = 60.0


_register(DenosumabParameters)

#: Martínez-Reina & Pivonka (2019) denosumab PK (bone-models ``denosumab`` class).
DENOSUMAB_MARTINEZ_REINA_2019 = DenosumabParameters()


@dataclass(frozen=True)
class PMOParameters:
    """Postmenopausal-osteoporosis RANKL production of Martínez-Reina & Pivonka (2019), eq. (18):
    P_RANKL,PMO(t) = P0·ξ²/(ξ² + ((t − t0)/τ)²).

    Attributes:
        P0: initial extra RANKL production, pM/day (4000).
        xi: reduction factor ξ (65).
        tau: characteristic time τ, days (30; the paper's 900 does not reproduce its own figures,
            bone-models corrects it to 30).
    """

    P0: float = 4.0e3
    xi: float = 65.0
    tau: float = 30.0


_register(PMOParameters)

#: Martínez-Reina & Pivonka (2019) PMO load (bone-models ``PMO`` class).
PMO_MARTINEZ_REINA_2019 = PMOParameters()

"""Hormone and drug levels → cell-model drives (science.md §4).

:func:`daily_inputs` maps a :class:`~febone.remodel.hormones.HormoneSeries` onto the slots of
:class:`febone.remodel.cells.Drives`, one value per day, with the constants of
:class:`CouplingParameters`. Every drive is neutral (0 for productions, 1 for factors) for a
young eugonadal adult of the patient's sex with normal GH, PTH, cortisol, vitamin D and calcium
and no drugs, so such a patient stays at the homeostatic start.

Slots (E2 "sufficiency" s_E = E2ⁿ/(E2ⁿ + EC50ⁿ), relative to the sex's young reference s_ref;
deficit d_E = max(0, 1 − s_E/s_ref); u_E = s_E − s_ref):

* ``P_RANKL`` = P_E2·(d_E − a·d̄_E)⁺ + P_cyt·(cytokines − 1)⁺ (E2 loss: Martínez-Reina 2019's
  PMO RANKL driven by the E2 level instead of time, so HRT and aromatase inhibitors act; d̄_E is
  d_E low-pass filtered with ``tau_adapt_E2_days`` and a = ``adapt_E2``, so the response to a
  sustained deficit decays like the PMO term; cytokines);
* ``beta_OPG_factor`` = exp(k_OPG·u_E); ``A_OCa_factor`` = exp(k_AOCa·u_E)·(1 + k_bp·BP)
  / (1 + k_gc_AOCa·x_gc) (E2 and bisphosphonate raise OC apoptosis, glucocorticoid prolongs OC
  survival);
* ``D_OBp_factor`` = (1 + k_tpd_DOBp·u_PTH) / (1 + k_gc_DOBp·x_gc) (intermittent PTH,
  glucocorticoid);
* ``D_OBu_factor`` = r_IGF^a_OBu, ``D_OCp_factor`` = r_IGF^a_OCp (GH/IGF-1 raise turnover;
  r_IGF = IGF-1 / age norm);
* ``A_OBa_factor`` = (1 + k_gc_AOBa·x_gc)·r̄_IGF^(−a_AOBa)·exp(−k_T (s_T − ½))
  / [(1 + k_P4 (s_P − s_P,ref))(1 + k_scl (load⁴ − 1)·s_E/s_ref)(1 + k_tpd_AOBa·u_PTH)]:
  glucocorticoid OB apoptosis; the slow IGF-1 effect on OB lifespan (r̄_IGF low-pass filtered
  with ``tau_igf_days``); testosterone's direct anabolic action (s_T = T/(T + T_ref,sex)),
  progesterone and the sclerostin/Wnt effect of exercise (blunted by low E2) as OB survival
  (androgens, estrogens and Wnt are anti-apoptotic for osteoblasts: Kousteni et al. 2001,
  Cell 104:719; Almeida et al. 2005); intermittent PTH retards OB apoptosis (Jilka 1999).
  science.md §4 names D_OBp for T and progesterone, but in this cell model a higher D_OBp
  depletes the RANKL-producing precursors and *lowers* BV/TV (measured: D_OBp ×1.2 → BV/TV
  −5 % in 10 y with the site closure), so the anabolic hormones act on OB lifespan instead;
* ``P_PTH`` = k_PTH·β_PTH·(PTH/PTH_ref − 1)⁺ (endogenous excess and continuous PTH raise the
  model's PTH by the same ratio: catabolic), intermittent PTH u_PTH = pulse dose / 20 µg is kept
  out of it;
* ``mechanosensitivity`` = 1 − k_ms·d_E (low E2 blunts the response to load);
* ``denosumab`` = the RANKL-binding drive of free serum denosumab C (pM), saturable:
  C_max·C/(C + C_50) (``denosumab_max_pM``, ``denosumab_ec50_pM``). The linear drive of
  Martínez-Reina 2019 (χ K C) tracks the concentration, which falls ~200-fold between the peak
  (~10 µg/mL at 2–3 weeks) and the 6-month trough (~50 ng/mL): CTX went from −60 % to baseline
  within every interval and the gains stopped. FREEDOM (Cummings 2009, N Engl J Med 361:756)
  measured CTX −86 % at 1 month and −72 % before the next dose: a response nearly saturated over
  the whole interval, so C_50 (100 pM ≈ 15 ng/mL) lies below the trough. C_max is set by the
  BMD gains (FREEDOM LS +9.2 %, total hip +6.0 % against placebo at 3 y); with this cell model
  those gains come with CTX only −25…−30 % (the model's late-postmenopausal turnover and the
  fast secondary mineralisation give +20 % BMD in a year at −85 % CTX: the marker depth and the
  BMD gains cannot both be met; docs/calibration.md). After the last dose the drug falls below
  C_50 within weeks and resorption returns;
* rebound after denosumab: osteoclast precursors accumulate while RANKL is blocked (Omiya 2018;
  McDonald 2021, Cell 184:1330 "osteomorphs"): a pool Q follows the occupancy
  b = C/(C + C_50) with time constant ``tau_den_pool_days``, and the OC
  differentiation flux is ×(1 + k_den_rebound·(Q − b)⁺), so stopping after years of treatment
  gives a resorption overshoot that decays with the pool (FREEDOM off-treatment, Bone 2011:
  CTX above baseline 3–12 months after the missed dose; Cummings 2018, J Bone Miner Res 33:190);

x_gc = (glucocorticoid / 5 mg − cortisol_rel + k_gc_age·(cortisol_rel − 1))⁺ is the
glucocorticoid excess over the young endogenous prednisone-equivalent production: the whole of
any drug, and the fraction ``k_gc_age`` of the age-related rise of endogenous cortisol.
``psi_ratio`` stays 1 in the drives: the mechanics sets it.
Every E2 term above uses the bone's E2, E2 + the series' ``bone_E2_offset_pg_mL`` (SERMs: an
oestrogen agonist on bone that leaves serum E2 unchanged; men on an aromatase inhibitor: the part
of the inhibition their reported serum E2 does not show).

``load_factor`` = 1 + k_load·(exercise factor − 1)·(1 − k_load,E2 d_E) is returned beside them
(SED scales with its square under force control); the osteocytes' load response needs ER-α (Lee et
al. 2003, Nature 424:389), so low E2 blunts it.

:data:`DEFAULT_COUPLING` holds the values fitted by :mod:`febone.calibration.site` (report:
``docs/calibration.md``); the other constants are documented guesses, not fitted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace

import jax
import jax.numpy as jnp

from .cells import Drives
from .hormones import E2_PREMENOPAUSE, EXERCISE_STIMULUS_EXPONENT, HormoneSeries, _approach_scan

logger = logging.getLogger(__name__)

__all__ = ["CouplingParameters", "DEFAULT_COUPLING", "FE_COUPLING", "FE_RANKL_E2_SCALE",
           "DailyInputs", "daily_inputs", "FITTED_FIELDS"]


@dataclass(frozen=True)
class CouplingParameters:
    """Every level → drive constant (all pytree leaves, so they can be fitted with ``jax.grad``).

    Attributes:
        E2_ec50_pg_mL, E2_hill: E2 sufficiency s_E = E2ⁿ/(E2ⁿ + EC50ⁿ), pg/mL and exponent
            (25 pg/mL, n = 2: postmenopausal E2 ≈ 15 pg/mL is 74 % deficient and an aromatase
            inhibitor adds the remaining 26 %; HRT at 50–60 pg/mL restores 85 % of the
            premenopausal effect). Bone still responds to E2 between 1 and 15 pg/mL: aromatase
            inhibitors, which take late-postmenopausal E2 below ~3 pg/mL, cost ~2 % a year at
            the spine (ATAC: −4.0 % at 2 y, −6.1 % at 5 y; Eastell 2006, 2008), and ultra-low
            doses that raise it by a few pg/mL gain bone in women over 60 (Prestwood 2003, JAMA
            290:1042; Ettinger 2004, Obstet Gynecol 104:443). With n = 3 the curve was flat there
            (an AI added 18 % of the full deficit) and ATAC's 2-y spine loss came out −2.9 %
            with every other constant fitted; n = 2 gives −4.4 % and a lower total cost of the
            fit (3.93 against 4.96, docs/calibration.md).
        E2_ref_female_pg_mL, E2_ref_male_pg_mL: young reference E2 by sex, pg/mL.
        P_RANKL_E2: extra RANKL production at full E2 deficit, pM/day.
        adapt_E2, tau_adapt_E2_days: fraction of a sustained E2 deficit to which the RANKL
            response adapts, and its time constant, days (the role of the decay
            ξ²/(ξ² + (t/τ)²) of Martínez-Reina 2019's PMO RANKL, here on the E2 level).
        k_OPG_E2, k_AOCa_E2: E2 effects on OPG production and OC apoptosis (per unit s_E).
        P_RANKL_cytokines: RANKL production per unit cytokine excess, pM/day.
        k_ms_E2: loss of mechanosensitivity λ at full E2 deficit (fraction).
        T_ref_female_ng_dL, T_ref_male_ng_dL, k_T: testosterone half-effect levels (= young
            reference) and direct anabolic gain on D_OBp.
        P4_half_ng_mL, P4_ref_female_ng_mL, P4_ref_male_ng_mL, k_P4: progesterone effect.
        a_OBu_IGF, a_OCp_IGF, a_AOBa_IGF, tau_igf_days: IGF-1 exponents on D_OBu, D_OCp and
            (filtered, time constant in days) A_OBa.
        adapt_IGF, tau_adapt_IGF_days: fraction of a sustained IGF-1 deviation to which the
            bone cells adapt, and its time constant, days (the IGF-1 terms use r_IGF/r̃^adapt,
            r̃ the IGF-1 ratio low-pass filtered from 1 = normal GH before the run): adult-onset
            GH deficiency settles at a modest BMD deficit (Z ≈ −1, Holmes et al. 1994, J Clin
            Endocrinol Metab 78:669; no growth of the deficit with duration, Murray et al. 2004,
            J Clin Endocrinol Metab 89:1124) instead of losing bone without end.
        PTH_ref_pg_mL, k_PTH: PTH reference level and gain of the catabolic P_PTH.
        k_tpd_AOBa, k_tpd_DOBp: intermittent PTH (per 20 µg/day) effects.
        k_gc_AOBa, k_gc_DOBp, k_gc_AOCa: glucocorticoid effects per unit excess.
        k_gc_age: fraction of the age-related rise of endogenous cortisol (``cortisol_rel`` − 1,
            +0.5 %/year after 40) that acts on bone as glucocorticoid excess. At 1 (the whole
            rise counted like a drug) untreated women and men of 63–73 lost 0.9–1.0 %/year at the
            hip, 2.5–3× the cohorts' rates (SOF women 67–69: −0.33 %/year total hip, Ensrud et
            al. 1995, J Bone Miner Res 10:1778; MrOS men ≥ 65: −0.37 %/year femoral neck,
            Cawthon et al. 2009, J Bone Miner Res 24:1728; WHI placebo at 63: +0.14 % in 3 years,
            Cauley et al. 2003); fitted against those rates (:mod:`febone.calibration.site`).
        k_bp: bisphosphonate effect on OC apoptosis at full skeletal effect.
        k_scl: sclerostin/Wnt effect of exercise on OB lifespan per unit excess of Carter's daily
            stimulus (load_factor⁴ − 1, see :mod:`febone.remodel.hormones`), so that intensity
            counts to the 4th power and the weekly number of sessions linearly; 0.15 puts
            LIFTMOR (Watson et al. 2018, J Bone Miner Res 33:211: twice-weekly high-intensity
            resistance and impact training, LS +4.1 and FN +2.2 points against control at 8
            months) inside its band at the top of the high-impact programme's range (load
            increase 0.8: LS +2.75, FN +2.26 points FE-free).
        denosumab_max_pM, denosumab_ec50_pM: saturable denosumab drive C_max·C/(C + C_50), pM.
        tau_den_pool_days, k_den_rebound: osteoclast-precursor pool after denosumab (time
            constant, days) and its gain on the OC differentiation flux when RANKL is released.
        k_load: fraction of a programme's load increase that reaches the daily habitual-load
            stimulus (load_factor = 1 + k_load·(programme factor − 1); a session is a small part
            of the day's loading cycles).
        k_load_E2: fraction of the exercise load effect lost at full E2 deficit.
    """

    E2_ec50_pg_mL: float = 25.0
    E2_hill: float = 2.0
    E2_ref_female_pg_mL: float = E2_PREMENOPAUSE
    E2_ref_male_pg_mL: float = 25.0
    P_RANKL_E2: float = 242.493
    adapt_E2: float = 0.874195
    tau_adapt_E2_days: float = 900.0
    k_OPG_E2: float = 0.110435
    k_AOCa_E2: float = 0.340636
    P_RANKL_cytokines: float = 30.0
    k_ms_E2: float = 0.0
    T_ref_female_ng_dL: float = 30.0
    T_ref_male_ng_dL: float = 600.0
    k_T: float = 0.19131
    P4_half_ng_mL: float = 4.0
    P4_ref_female_ng_mL: float = 4.0
    P4_ref_male_ng_mL: float = 0.3
    k_P4: float = 0.02
    a_OBu_IGF: float = 0.181748
    a_OCp_IGF: float = 0.656393
    a_AOBa_IGF: float = 0.000886743
    tau_igf_days: float = 180.0
    adapt_IGF: float = 0.807107
    tau_adapt_IGF_days: float = 1826.0
    PTH_ref_pg_mL: float = 35.0
    k_PTH: float = 1.0
    k_tpd_AOBa: float = 0.15
    k_tpd_DOBp: float = 0.0
    k_gc_AOBa: float = 0.5
    k_gc_DOBp: float = 0.3
    k_gc_AOCa: float = 0.3
    k_gc_age: float = 0.00310629
    k_bp: float = 1.5
    denosumab_max_pM: float = 5.0e3
    denosumab_ec50_pM: float = 100.0
    tau_den_pool_days: float = 365.0
    k_den_rebound: float = 1.0
    k_scl: float = 0.15
    k_load: float = 0.261697
    k_load_E2: float = 0.7


jax.tree_util.register_dataclass(CouplingParameters,
                                 data_fields=[f.name for f in fields(CouplingParameters)],
                                 meta_fields=[])

#: Names of the constants :mod:`febone.calibration.site` fits (the rest are fixed guesses).
FITTED_FIELDS = ("P_RANKL_E2", "adapt_E2", "k_OPG_E2", "k_AOCa_E2", "k_T", "a_OCp_IGF",
                 "a_AOBa_IGF", "k_load",
                 "a_OBu_IGF", "adapt_IGF", "k_gc_age")

#: Calibrated coupling: the FITTED_FIELDS values above come from five rounds of
#: ``python -m febone.calibration.site`` (8 + 5 + 5 least-squares evaluations, each round
#: started from the previous result; the first from hand-tuned values; then 8 evaluations with
#: ``k_gc_age`` and the ageing targets added, cost 4.96; then 10 evaluations after ``E2_hill``
#: 3 → 2, cost 3.93), no hand step, every guarded target inside its band;
#: table in docs/calibration.md.
DEFAULT_COUPLING = CouplingParameters()

#: Scale of ``P_RANKL_E2`` in FE-coupled runs. 1: the FE loop's stimulus is the effective strain
#: (:data:`~.settings.RemodelSettings` ``stimulus``), whose feedback under a fixed force is that
#: of the FE-free closure the coupling was fitted with, so the fitted constants carry over (the
#: SWAN transmenopause, femoral neck −7.5 % and spine −8.3 % against −5.8 and −7.4, inside their
#: bands; docs/calibration_fe.md). Under the squared strain (SED/E, twice the feedback) the
#: FE-level fit was 1.5 (:mod:`febone.calibration.fe`).
FE_RANKL_E2_SCALE = 1.0
#: The coupling of FE-coupled runs (``febone run``, ``febone sensitivity``, :mod:`febone.study`):
#: :data:`DEFAULT_COUPLING` with the FE-level correction of the menopausal RANKL gain.
FE_COUPLING = replace(DEFAULT_COUPLING, P_RANKL_E2=DEFAULT_COUPLING.P_RANKL_E2 * FE_RANKL_E2_SCALE)


@dataclass(frozen=True)
class DailyInputs:
    """Cell-model inputs per day.

    Attributes:
        drives: :class:`~febone.remodel.cells.Drives`, every field (n_days,) (``psi_ratio`` 1).
        load_factor: (n_days,) habitual-load multiplier (exercise); SED scales with its square.
        mineralisation_factor: (n_days,) mineralisation relative to normal.
    """

    drives: Drives
    load_factor: jax.Array
    mineralisation_factor: jax.Array


jax.tree_util.register_dataclass(DailyInputs,
                                 data_fields=["drives", "load_factor", "mineralisation_factor"],
                                 meta_fields=[])


def _low_pass(x, tau_days):
    """First-order filter of (n,) daily values with time constant ``tau_days`` (may be traced),
    starting at x[0]."""
    return _approach_scan(x, jnp.exp(-1.0 / jnp.asarray(tau_days, x.dtype)))


def e2_sufficiency(E2, c: CouplingParameters):
    """s_E = E2ⁿ/(E2ⁿ + EC50ⁿ) for E2 in pg/mL (dimensionless, 0..1)."""
    r = (jnp.maximum(E2, 0.0) / c.E2_ec50_pg_mL) ** c.E2_hill
    return r / (1.0 + r)


def daily_inputs(series: HormoneSeries, coupling: CouplingParameters = DEFAULT_COUPLING
                 ) -> DailyInputs:
    """Map daily levels onto cell-model drives (see the module docstring for each slot).

    Args:
        series: :class:`HormoneSeries` (fields (n_days,)).
        coupling: :class:`CouplingParameters`.

    Returns:
        :class:`DailyInputs` with every array (n_days,).

    Raises:
        TypeError: wrong argument types.
    """
    if not isinstance(series, HormoneSeries):
        raise TypeError(f"series must be a HormoneSeries (hormone_series(...)); got "
                        f"{type(series).__name__}")
    if not isinstance(coupling, CouplingParameters):
        raise TypeError(f"coupling must be a CouplingParameters; got {type(coupling).__name__}")
    c, s = coupling, series
    female = s.sex == "female"
    E2_ref = c.E2_ref_female_pg_mL if female else c.E2_ref_male_pg_mL
    T_ref = c.T_ref_female_ng_dL if female else c.T_ref_male_ng_dL
    P4_ref = c.P4_ref_female_ng_mL if female else c.P4_ref_male_ng_mL

    sE = e2_sufficiency(s.E2_pg_mL + s.bone_E2_offset_pg_mL, c)
    sE_ref = e2_sufficiency(jnp.asarray(E2_ref, sE.dtype), c)
    dE = jnp.maximum(1.0 - sE / sE_ref, 0.0)
    uE = sE - sE_ref

    sT = s.T_ng_dL / (s.T_ng_dL + T_ref)
    sP = s.progesterone_ng_mL / (s.progesterone_ng_mL + c.P4_half_ng_mL)
    sP_ref = P4_ref / (P4_ref + c.P4_half_ng_mL)
    r_igf = s.IGF1_ng_mL / s.IGF1_norm_ng_mL
    r_adapted = _approach_scan(jnp.concatenate([jnp.ones_like(r_igf[:1]), r_igf]),
                               jnp.exp(-1.0 / jnp.asarray(c.tau_adapt_IGF_days, r_igf.dtype)))[1:]
    r_igf = r_igf / r_adapted ** c.adapt_IGF
    r_igf_slow = _low_pass(r_igf, c.tau_igf_days)
    x_gc = jnp.maximum(s.glucocorticoid_mg / 5.0 - s.cortisol_rel
                       + c.k_gc_age * (s.cortisol_rel - 1.0), 0.0)
    u_pth = s.pth_pulsatile_ug / 20.0
    d_load = s.exercise_load_factor - 1.0
    stim = s.exercise_load_factor ** EXERCISE_STIMULUS_EXPONENT - 1.0   # Carter stimulus excess
    load_factor = 1.0 + c.k_load * d_load * jnp.maximum(1.0 - c.k_load_E2 * dE, 0.0)

    dE_adapted = _low_pass(dE, c.tau_adapt_E2_days)
    P_RANKL = (c.P_RANKL_E2 * jnp.maximum(dE - c.adapt_E2 * dE_adapted, 0.0)
               + c.P_RANKL_cytokines * jnp.maximum(s.cytokines_rel - 1.0, 0.0))
    beta_OPG = jnp.exp(c.k_OPG_E2 * uE)
    A_OCa = (jnp.exp(c.k_AOCa_E2 * uE) * (1.0 + c.k_bp * s.bisphosphonate)
             / (1.0 + c.k_gc_AOCa * x_gc))
    D_OBp = (1.0 + c.k_tpd_DOBp * u_pth) / (1.0 + c.k_gc_DOBp * x_gc)
    D_OBu = r_igf ** c.a_OBu_IGF
    C_den = jnp.maximum(s.denosumab_pM, 0.0)
    blocked = C_den / (C_den + c.denosumab_ec50_pM)
    den = c.denosumab_max_pM * blocked
    pool = _low_pass(blocked, c.tau_den_pool_days)
    D_OCp = r_igf ** c.a_OCp_IGF * (1.0 + c.k_den_rebound * jnp.maximum(pool - blocked, 0.0))
    A_OBa = ((1.0 + c.k_gc_AOBa * x_gc) * r_igf_slow ** (-c.a_AOBa_IGF)
             * jnp.exp(-c.k_T * (sT - 0.5))
             / ((1.0 + c.k_P4 * (sP - sP_ref)) * (1.0 + c.k_scl * stim * sE / sE_ref)
                * (1.0 + c.k_tpd_AOBa * u_pth)))
    beta_PTH = 250.0       # pM/day, intrinsic PTH production of both published cell-model sets
    P_PTH = c.k_PTH * beta_PTH * jnp.maximum(s.PTH_pg_mL / c.PTH_ref_pg_mL - 1.0, 0.0)
    mech = jnp.maximum(1.0 - c.k_ms_E2 * dE, 0.05)
    ones = jnp.ones_like(sE)
    drives = Drives(P_RANKL=P_RANKL, P_PTH=P_PTH, P_OPG=0.0 * ones, P_TGFb=0.0 * ones,
                    beta_OPG_factor=beta_OPG, A_OCa_factor=A_OCa, D_OBp_factor=D_OBp,
                    D_OBu_factor=D_OBu, D_OCp_factor=D_OCp, A_OBa_factor=A_OBa,
                    mechanosensitivity=mech, denosumab=den, psi_ratio=ones)
    return DailyInputs(drives, load_factor, s.mineralisation_factor)

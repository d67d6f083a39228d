"""Daily hormone, drug and lifestyle levels of a patient under a treatment schedule.

:func:`hormone_series` turns a :class:`~febone.remodel.patient.Patient` and a list of
:class:`~febone.remodel.treatments.Treatment` into a :class:`HormoneSeries`: one value per day
``k = 0 .. days−1`` (day k is scenario time ``k`` days, patient age ``age_years + k/365.25``)
for every level the coupling (:mod:`febone.remodel.coupling`) maps onto the cell model.
Everything is jnp, so ``jax.grad`` of a result with respect to a dose or a patient float works.

Physiology (endogenous levels; sources in brackets, *guess* where no published shape was used):

* **E2, women** — premenopausal cycle mean :data:`E2_PREMENOPAUSE` = 100 pg/mL. The menopausal
  transition follows Peterson & Riggs (2010, Bone 46:49, their ovarian-estrogen decline): a fall
  of 64 % over 1.66 y ending at the final menstrual period (FMP), here a smoothstep; after the FMP
  the remainder decays to the postmenopausal level with a 1-year time constant, so E2 stabilises
  ≈2 y after the FMP as in SWAN (Randolph et al. 2011, J Clin Endocrinol Metab 96:746: E2 falls
  from ~2 y before to ~2 y after the FMP) *(shape after the FMP: guess)*. Postmenopausal E2
  comes from aromatisation of adrenal androgens in fat: 8 + 0.25·fat_kg pg/mL (≈15 pg/mL at
  28 kg fat; Cauley et al. 1989 report higher E2 with higher body mass) *(guess)*.
* **E2, men** — 20 % secreted by the testes, 80 % from aromatisation of T (Longcope et al. 1969;
  de Ronde & de Jong 2011): E2 = 25 pg/mL·[0.2·T_endo + 0.8·T_total·(1 − inhibition)·g_fat]/600,
  g_fat = 1 + 0.02 (fat_kg − 18.9) (18.9 kg: the default fat of a 70-kg man; more adipose
  aromatase, Vermeulen et al. 2002) *(guess)*.
* **T** — men: 600 ng/dL, −1 %/y after 40 (MMAS, Feldman et al. 2002, J Clin Endocrinol Metab
  87:589: −0.8 to −1.6 %/y); women 30 ng/dL, −0.5 %/y after 40 *(guess)*. ``testosterone_ng_dL``
  overrides the endogenous level. Exogenous T suppresses endogenous production (HPG feedback):
  ×1/(1 + T_exo/300) *(guess)*; gonadorelin restores a fraction r/(r + 20 µg/day); enclomiphene
  raises it ×(1 + 1.2 r/(r + 8 mg/day)) (Kaminetsky 2013: 12.5–25 mg/day about doubles T);
  aromatase inhibition raises it ×(1 + 0.6·inhibition) (Leder et al. 2004: T +67 % on
  anastrozole 1 mg/day in older men).
* **Progesterone** — women: cycle mean 4 ng/mL before the transition, 0.3 ng/mL after (falls
  with the same transition as E2); men 0.3 ng/mL *(rounded textbook values)*.
* **IGF-1** — 300 ng/mL at 20 y, ×exp(−0.017·(age − 20)) (≈150 ng/mL at 60; shape of the
  reference ranges of Brabant et al. 2003, Horm Res 60:53); GH deficiency ×0.45 (IGF-1 SDS < −2)
  *(guess)*. The age norm is kept as ``IGF1_norm_ng_mL``: the coupling acts on IGF-1 relative to
  it (deficiency and treatment), not on the normal age decline.
* **PTH** — 35 pg/mL up to 40 y, +0.7 %/y after (rises ~30 % by 80 y; *guess after*
  Haden et al. 2000); ×(1 + 0.8·max(0, 1 − D/30)) for 25(OH)D below 30 ng/mL (secondary
  hyperparathyroidism, Lips 2001); ×(1 + 0.3·max(0, 1 − Ca/1000)) for calcium intake below
  1000 mg/day *(guess)*; continuous exogenous PTH adds 2 pg/mL per µg/day *(guess)*.
* **Cortisol** — ``cortisol_rel`` = 1 + 0.005·(age − 40)⁺ (evening cortisol rises with age, Van
  Cauter et al. 1996) *(guess)*; ``glucocorticoid_mg`` is total glucocorticoid in prednisone
  equivalents: 5 mg/day·cortisol_rel endogenous (cortisol production ≈ 20 mg/day hydrocortisone ≈
  5 mg prednisone) + the exogenous dose.
* **Cytokines** (IL-1, IL-6, TNF-α) — ``cytokines_rel`` = 1 + 0.5·max(0, 1 − h(E2)/h(E2_ref)) +
  0.005·(age − 40)⁺ with h(E2) = E2²/(E2² + (15 pg/mL)²):
  they rise after menopause and are suppressed by E2 (Pfeilschifter et al. 2002,
  Endocr Rev 23:90) *(magnitude: guess)*.
* **Vitamin D / calcium** — 25(OH)D rises 0.8 ng/mL per 100 IU/day of cholecalciferol
  (Heaney et al. 2003: 0.7–1 ng/mL per 100 IU/day), approached with a 20-day time constant;
  supplemental calcium adds to intake. ``mineralisation_factor`` (1 = normal) =
  (1 − 0.5·max(0, 1 − D/15))·(1 − 0.3·max(0, 1 − Ca/600)) (osteomalacia below ~10–15 ng/mL)
  *(guess)*.

Pharmacokinetics (daily resolution; the daily mean enters the coupling):

* depot drugs (T cypionate: absorption t½ 8 d; T undecanoate 21 d; T gel 1 d skin reservoir):
  depot D gets each dose and releases (1 − e^(−k_a)) of its content per day; T_exo = gain × the
  daily release (gains: 100 mg/week cypionate ≈ +700 ng/dL; gel 50 mg/day ≈ +500 ng/dL (AndroGel
  label C_avg ≈ 555 ng/dL); undecanoate 1000 mg/11 weeks ≈ +600 ng/dL) *(gains rounded from
  labels)*;
* anastrozole: one compartment, t½ 50 h (label), daily mean amount Ā; inhibition = Ā/(Ā + IC50)
  with IC50 set so that 1 mg/day gives 96.7 % inhibition at steady state (Geisler et al. 2002,
  J Clin Oncol 20:751: whole-body aromatisation −96.7 %);
* estradiol: patch +0.8 pg/mL per µg/day (50 µg/day ≈ +40 pg/mL); oral +30 pg/mL per mg/day
  (t½ ≈ 0.7 d reservoir); progesterone +0.04 ng/mL per mg/day *(rounded from labels)*;
* rhGH: IGF-1 += 400·r/(r + 0.6 mg/day) (0.3 mg/day normalises IGF-1 in adult GHD);
  secretagogues multiply endogenous IGF-1 by 1 + E·r/(r + r50): sermorelin E 0.8, r50 200 µg/day;
  CJC-1295/ipamorelin E 1.0, r50 100 µg/day; tesamorelin E 1.2, r50 1 mg/day (Falutz 2007:
  +81 % at 2 mg/day); a GH-deficient pituitary responds at 30 % *(guesses except tesamorelin)*;
* teriparatide: ``pth_pulsatile_ug`` = daily pulse dose (µg/day averaged over the interval),
  kept apart from continuous PTH (``pth_continuous_ug_day``, which raises serum PTH);
* denosumab: :func:`febone.remodel.denosumab.denosumab_pk` (Martínez-Reina 2019), scaled to the
  patient's body mass, sampled at mid-day;
* alendronate: skeletal surface reservoir R (mg): 0.64 % oral bioavailability (label), half of
  it to bone, lost with a 1.5-year half-time (burial); ``bisphosphonate`` = R/(R + 1 mg)
  *(guess of the half-time and EC50)*;
* exercise: a programme is sessions of intensity x (the dose: peak load ×(1 + x) over the
  habitual day's) every Δ days (``interval_days``). Its daily stimulus is Carter's daily stress
  stimulus ψ = (Σ nᵢσᵢ^m)^(1/m), m = 4 (Carter, Fyhrie & Whalen 1987, J Biomech 20:785; Whalen et
  al. 1988, J Biomech 21:825), averaged over the interval, with each session's cycles saturated
  (bone cells desensitise within a few dozen cycles: Umemura et al. 1997, J Bone Miner Res
  12:1480; Turner 1998, Bone 23:399) so that one session weighs as much as a habitual day, and
  mechanosensitivity recovered between sessions with time constant τ_rec = 8 h (Robling et al.
  2001, J Exp Biol 204:3389; 2002, J Bone Miner Res 17:1545):
  ``exercise_load_factor`` = [1 + Σ w(Δ)·((1 + x)^m − 1)]^(1/m),
  w(Δ) = (1 − e^(−Δ/τ_rec)) / (Δ (1 − e^(−1 d/τ_rec))) sessions-equivalent per day (1 for
  daily sessions, 2/7 twice weekly, 1.6 for two a day). A daily programme gives 1 + x as before;
  the weekly number of sessions and the intensity (to the 4th power) set the dose.

Drugs of issue 16 (calibrated in :mod:`febone.calibration.site`, table in docs/calibration.md):

* SERMs (tamoxifen, raloxifene): partial oestrogen agonists on bone that leave serum E2 unchanged.
  ``bone_E2_offset_pg_mL`` gains the E2 level whose bone effect the drug adds, saturating in the
  daily-mean body amount: E_eq = 2·E_label·Ā/(Ā + Ā_label) (E_label at the labelled dose; twice
  the labelled dose adds a third more, as MORE's 120 mg arm gained as much as its 60 mg arm,
  Ettinger 1999). t½ tamoxifen 5 d, raloxifene 27.7 h (labels). The bone coupling uses
  E2 + E_eq; serum E2 (and everything else that reads it) does not see it.
* conjugated oestrogens (Premarin): oral, a 0.7-day reservoir as oral estradiol, adding
  :data:`CE_E2_EQUIV_PER_MG` pg/mL E2-equivalent per mg/day to ``E2_pg_mL`` (the oestrogenic
  activity of CE's estrone sulphate and equilin counted as E2);
  medroxyprogesterone acetate adds :data:`MPA_P4_EQUIV_PER_MG` ng/mL progesterone-equivalent per
  mg/day *(guess: 2.5 mg/day ≈ a luteal-phase level)*.
* abaloparatide: ``pth_pulsatile_ug`` += :data:`ABALOPARATIDE_TPD_EQUIV` µg teriparatide-equivalent
  per µg (80 µg ≈ 20 µg teriparatide in the anabolic drive: ACTIVE, Miller 2016, LS +11.2 %
  against +10.5 %).
* zoledronic acid: the alendronate skeletal reservoir, fed with
  :data:`ZOLEDRONATE_ALN_EQUIV` alendronate-equivalent mg per mg infused (IV, ~50 % retained in
  bone, higher mineral affinity and potency) *(calibrated to HORIZON, Black 2007)*.
* anastrozole in men: serum E2 as trials report it falls with :data:`AI_MALE_SERUM_FRACTION` ×
  the whole-body inhibition (Burnett-Bowie 2009, J Clin Endocrinol Metab 94:4785: 1 mg/day in
  older men lowered immunoassay E2 only from 15 to 12 pg/mL while T rose 319 → 524 ng/dL at
  3 months and 474 at 1 year; Leder 2004, J Clin Endocrinol Metab 89:1174, similar), while the
  bone sees the whole inhibition: the same trial lost PA-spine BMD (−1.7 % vs +0.8 % placebo),
  which a 20 % fall of E2 cannot explain, and with aromatisation blocked and E2 measured by
  LC-MS men lose bone whatever their T (Finkelstein 2013, N Engl J Med 369:1011). Immunoassays
  overstate low E2, and bone E2 is largely made in bone from T (intracrine), so the difference
  (serum E2 at whole-body inhibition minus the reported serum E2, ≤ 0) goes into
  ``bone_E2_offset_pg_mL``. The HPG response raises endogenous T
  ×(1 + :data:`AI_MALE_T_GAIN`·inhibition).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .patient import Patient
from .treatments import DRUGS, Treatment, canonical_dose

logger = logging.getLogger(__name__)

__all__ = ["HormoneSeries", "hormone_series", "YEAR_DAYS", "E2_PREMENOPAUSE",
           "ANASTROZOLE_IC50_MG", "schedule", "session_weight", "EXERCISE_STIMULUS_EXPONENT",
           "SERMS", "CE_E2_EQUIV_PER_MG",
           "MPA_P4_EQUIV_PER_MG", "ABALOPARATIDE_TPD_EQUIV", "ZOLEDRONATE_ALN_EQUIV",
           "AI_MALE_SERUM_FRACTION", "AI_MALE_T_GAIN", "BISPHOSPHONATE_HALF_LIFE_YEARS"]

YEAR_DAYS = 365.25
E2_PREMENOPAUSE = 100.0          # pg/mL, cycle mean
_E2_MALE_YOUNG = 25.0            # pg/mL at T 600 ng/dL
_T_MALE_YOUNG = 600.0            # ng/dL
_T_FEMALE = 30.0                 # ng/dL
_TRANSITION_YEARS = 1.66         # Peterson & Riggs 2010
_TRANSITION_FALL = 0.64
_POST_FMP_TAU_YEARS = 1.0
_IGF1_YOUNG = 300.0              # ng/mL at 20 y
_PTH_YOUNG = 35.0                # pg/mL
_GC_ENDOGENOUS_MG = 5.0          # prednisone-equivalent mg/day
_FAT_REF_MALE_KG = 18.9          # kg, default fat mass of a 70-kg man (27 %)

_ANASTROZOLE_KE = math.log(2.0) / (50.0 / 24.0)          # 1/day (t½ 50 h)
#: Daily-mean body amount of anastrozole giving half-maximal aromatase inhibition, mg: 1 mg/day
#: gives a steady daily-mean amount 1/k_e and 96.7 % inhibition (Geisler 2002).
ANASTROZOLE_IC50_MG = (1.0 / _ANASTROZOLE_KE) * (1.0 - 0.967) / 0.967

# depot release rate k_a (1/day) and gain (level per mg/day released)
_T_DEPOTS = {"testosterone-cypionate": (math.log(2.0) / 8.0, 49.0),
             "testosterone-gel": (math.log(2.0) / 1.0, 10.0),
             "testosterone-undecanoate": (math.log(2.0) / 21.0, 46.0)}
_SECRETAGOGUES = {"sermorelin": (0.8, 200.0), "cjc1295-ipamorelin": (1.0, 100.0),
                  "tesamorelin": (1.2, 1.0)}
_RATE_DRUGS = ("estradiol-transdermal", "pth-continuous")   # dose is a delivery rate per day

#: SERMs: {drug: (elimination t½ days, labelled mg/day, bone E2-equivalent at that dose pg/mL)}
#: (t½ from the labels: tamoxifen 5–7 d, raloxifene 27.7 h; E2-equivalents calibrated in
#: febone.calibration.site: raloxifene to MORE, Ettinger 1999; tamoxifen to ATAC, Eastell 2006).
SERMS = {"tamoxifen": (5.0, 20.0, 26.0), "raloxifene": (27.7 / 24.0, 60.0, 8.0)}
#: E2-equivalent of oral conjugated oestrogens, pg/mL per mg/day (calibrated to PEPI 1996).
CE_E2_EQUIV_PER_MG = 64.0
#: Progesterone-equivalent of MPA, ng/mL per mg/day *(guess)*.
MPA_P4_EQUIV_PER_MG = 1.6
#: Teriparatide-equivalent µg per µg of abaloparatide in the anabolic drive (ACTIVE).
ABALOPARATIDE_TPD_EQUIV = 0.27
#: Alendronate-equivalent skeletal mg per mg of zoledronic acid infused (HORIZON).
ZOLEDRONATE_ALN_EQUIV = 0.2
#: Half-time of the bisphosphonate skeletal effect, years (burial and release of the reservoir).
BISPHOSPHONATE_HALF_LIFE_YEARS = 1.5
#: Fraction of the whole-body aromatase inhibition that shows in men's reported serum E2, and the
#: gain of endogenous T per unit of inhibition (Burnett-Bowie 2009: E2 15 → 12 pg/mL, T +49…64 %).
AI_MALE_SERUM_FRACTION = 0.63
AI_MALE_T_GAIN = 0.57


@dataclass(frozen=True)
class HormoneSeries:
    """Daily levels; every array field is ``(n_days,)`` (day k = scenario day k).

    Attributes:
        age_years: patient age, years.
        E2_pg_mL: serum estradiol, pg/mL (endogenous + exogenous).
        T_ng_dL: serum total testosterone, ng/dL.
        progesterone_ng_mL: serum progesterone, ng/mL.
        IGF1_ng_mL: serum IGF-1, ng/mL.  IGF1_norm_ng_mL: the age norm (no deficiency, no drug).
        PTH_pg_mL: serum PTH from endogenous secretion (age, vitamin D, calcium) and continuous
            exogenous PTH, pg/mL.
        pth_pulsatile_ug: intermittent (teriparatide) PTH, daily pulse dose, µg/day.
        pth_continuous_ug_day: continuous exogenous PTH, µg/day.
        glucocorticoid_mg: total glucocorticoid, prednisone-equivalent mg/day (endogenous ≈ 5).
        cortisol_rel: endogenous cortisol relative to a young adult.
        cytokines_rel: inflammatory cytokines relative to a young adult.
        aromatase_inhibition: fraction of aromatase activity blocked, 0..1.
        denosumab_pM: free serum denosumab, pM.
        bisphosphonate: skeletal bisphosphonate effect, 0..1.
        bone_E2_offset_pg_mL: E2 the bone sees beyond ``E2_pg_mL``, pg/mL: + the
            oestrogen-agonist effect of SERMs, − in men on an aromatase inhibitor the part of the
            inhibition reported serum E2 does not show (see the module docstring).
        vitamin_D_ng_mL: serum 25(OH)D, ng/mL.  calcium_mg_day: total calcium intake, mg/day.
        mineralisation_factor: mineralisation relative to normal (≤ 1).
        exercise_load_factor: habitual-load multiplier at loaded sites (≥ 1).
        sex: ``"female"`` / ``"male"`` (static).
    """

    age_years: jax.Array
    E2_pg_mL: jax.Array
    T_ng_dL: jax.Array
    progesterone_ng_mL: jax.Array
    IGF1_ng_mL: jax.Array
    IGF1_norm_ng_mL: jax.Array
    PTH_pg_mL: jax.Array
    pth_pulsatile_ug: jax.Array
    pth_continuous_ug_day: jax.Array
    glucocorticoid_mg: jax.Array
    cortisol_rel: jax.Array
    cytokines_rel: jax.Array
    aromatase_inhibition: jax.Array
    denosumab_pM: jax.Array
    bisphosphonate: jax.Array
    vitamin_D_ng_mL: jax.Array
    calcium_mg_day: jax.Array
    mineralisation_factor: jax.Array
    exercise_load_factor: jax.Array
    bone_E2_offset_pg_mL: jax.Array = 0.0
    sex: str = "female"

    @property
    def n_days(self) -> int:
        return int(self.E2_pg_mL.shape[0])

    def slice(self, start: int, stop: int | None = None) -> "HormoneSeries":
        """The days ``start .. stop−1`` (Python slice semantics)."""
        return jax.tree_util.tree_map(lambda a: a[start:stop], self)


jax.tree_util.register_dataclass(
    HormoneSeries, data_fields=[f.name for f in fields(HormoneSeries) if f.name != "sex"],
    meta_fields=["sex"])


#: Exponent m of Carter's daily stress stimulus (Whalen et al. 1988: m ≈ 4).
EXERCISE_STIMULUS_EXPONENT = 4.0
#: Recovery time constant of mechanosensitivity between loading sessions, days (Robling 2001:
#: 8 h of rest restores most of it).
EXERCISE_RECOVERY_DAYS = 8.0 / 24.0


def session_weight(interval_days: float) -> float:
    """Daily sessions-equivalent of a programme with a session every ``interval_days`` days:
    (1 − e^(−Δ/τ_rec)) / (Δ (1 − e^(−1/τ_rec))), 1 for daily sessions (module docstring)."""
    tau = EXERCISE_RECOVERY_DAYS
    d = float(interval_days)
    return (1.0 - math.exp(-d / tau)) / (d * (1.0 - math.exp(-1.0 / tau)))


# --------------------------------------------------------------------------------------------
# schedules and PK primitives
# --------------------------------------------------------------------------------------------
def schedule(tr: Treatment, days: int) -> np.ndarray:
    """(days,) number of administrations of ``tr`` on each day (a rate drug or an exercise
    programme: 1 on every active day). Day of the i-th administration: round(start + i·interval),
    all before ``stop`` and ``days``."""
    start = tr.start_years * YEAR_DAYS
    stop = days if tr.stop_years is None else min(days, tr.stop_years * YEAR_DAYS)
    out = np.zeros(days)
    if tr.drug in _RATE_DRUGS or DRUGS[tr.drug].kind == "lifestyle":
        k = np.arange(days)
        out[(k >= math.floor(start + 1e-9)) & (k < stop - 1e-9)] = 1.0
        return out
    times = start + tr.interval_days * np.arange(int(max(0.0, stop - start) / tr.interval_days) + 2)
    k = np.floor(times + 1e-9).astype(int)
    k = k[(times < stop - 1e-9) & (k < days)]
    np.add.at(out, k, 1.0)
    return out


@jax.jit
def _depot_scan(amounts, keep):
    def body(D, a):
        D = D + a
        return D * keep, D * (1.0 - keep)

    return jax.lax.scan(body, jnp.zeros((), amounts.dtype), amounts)[1]


@jax.jit
def _mean_scan(amounts, keep, mean_factor):
    def body(A, a):
        A = A + a
        return A * keep, A * mean_factor

    return jax.lax.scan(body, jnp.zeros((), amounts.dtype), amounts)[1]


@jax.jit
def _approach_scan(target, keep):
    def body(x, u):
        x = u + (x - u) * keep
        return x, x

    return jax.lax.scan(body, target[0], target)[1]


def _depot(amounts, ka):
    """Daily release of a first-order depot fed ``amounts`` (n,) at the start of each day:
    D ← (D + a)·e^(−k_a); release = (D + a)(1 − e^(−k_a)) per day."""
    return _depot_scan(amounts, jnp.asarray(math.exp(-ka), amounts.dtype))


def _one_compartment_mean(amounts, ke):
    """Daily mean body amount of a one-compartment drug dosed at the start of each day."""
    keep = math.exp(-ke)
    return _mean_scan(amounts, jnp.asarray(keep, amounts.dtype),
                      jnp.asarray((1.0 - keep) / ke, amounts.dtype))


def _first_order_approach(target, tau_days):
    """Level following ``target`` (n,) with time constant ``tau_days`` from target[0]."""
    return _approach_scan(target, jnp.asarray(math.exp(-1.0 / tau_days), target.dtype))


def _smoothstep(x):
    x = jnp.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pos(x):
    return jnp.maximum(x, 0.0)


# --------------------------------------------------------------------------------------------
# the patient model
# --------------------------------------------------------------------------------------------
def _check(patient, treatments, days):
    if not isinstance(patient, Patient):
        raise TypeError(f"patient must be a Patient (Patient.create(...)); got "
                        f"{type(patient).__name__}")
    if isinstance(treatments, Treatment):
        raise TypeError("treatments must be a sequence of Treatment; wrap a single one in a list")
    for tr in treatments:
        if not isinstance(tr, Treatment):
            raise TypeError(f"every treatment must be a Treatment (Treatment.create(...)); got "
                            f"{type(tr).__name__}")
        if tr.drug not in DRUGS:
            raise ValueError(f"unknown drug {tr.drug!r}; use Treatment.create to validate it")
    if not (isinstance(days, (int, np.integer)) and days >= 1):
        raise ValueError(f"days must be a positive integer number of days; got {days!r}")


def hormone_series(patient: Patient, treatments: Sequence[Treatment] = (), *, days: int,
                   dtype=None) -> HormoneSeries:
    """Daily levels of ``patient`` under ``treatments`` for days 0 .. days−1.

    Args:
        patient: :class:`Patient` (ages in years; floats may be traced).
        treatments: sequence of :class:`Treatment` (doses may be traced; schedules are static).
        days: number of days (int ≥ 1).
        dtype: float dtype of the arrays (default: JAX's default float).

    Returns:
        :class:`HormoneSeries` with every field (days,).

    Raises:
        TypeError / ValueError: not a Patient, not Treatments, bad ``days``.
    """
    _check(patient, treatments, days)
    dtype = jnp.result_type(float) if dtype is None else dtype
    p = patient
    female = p.sex == "female"
    age = jnp.asarray(p.age_years, dtype) + jnp.arange(days, dtype=dtype) / YEAR_DAYS
    fat = jnp.asarray(p.fat_mass, dtype)
    zeros = jnp.zeros(days, dtype)

    # ---- per-drug daily amounts (canonical unit; differentiable in the dose) ----
    by_drug: dict[str, jax.Array] = {}
    for tr in treatments:
        a = jnp.asarray(schedule(tr, days), dtype) * canonical_dose(tr)
        by_drug[tr.drug] = by_drug.get(tr.drug, zeros) + a

    def rate(name):
        """Daily delivery of a rate drug (patch, infusion), canonical unit per day."""
        return by_drug.get(name, zeros)

    # aromatase inhibition (whole body; men's reported serum E2: AI_MALE_SERUM_FRACTION of it)
    if "anastrozole" in by_drug:
        A = _one_compartment_mean(by_drug["anastrozole"], _ANASTROZOLE_KE)
        inh = A / (A + ANASTROZOLE_IC50_MG)
    else:
        inh = zeros

    # ---- testosterone ----
    T_exo = zeros
    for name, (ka, gain) in _T_DEPOTS.items():
        if name in by_drug:
            T_exo = T_exo + gain * _depot(by_drug[name], ka)
    if p.testosterone_ng_dL is not None:
        T_base = jnp.full(days, p.testosterone_ng_dL, dtype) * jnp.ones_like(age)
    elif female:
        T_base = _T_FEMALE * (1.0 - 0.005 * _pos(age - 40.0))
    else:
        T_base = _T_MALE_YOUNG * (1.0 - 0.01 * _pos(age - 40.0))
    endo = 1.0 / (1.0 + T_exo / 300.0)                           # HPG suppression
    if "gonadorelin" in by_drug:
        g = _depot(by_drug["gonadorelin"], math.log(2.0) / 1.0)
        endo = endo + (1.0 - endo) * g / (g + 20.0)
    if not female:
        if "enclomiphene" in by_drug:
            r = _depot(by_drug["enclomiphene"], math.log(2.0) / 0.5)
            endo = endo * (1.0 + 1.2 * r / (r + 8.0))
        endo = endo * (1.0 + AI_MALE_T_GAIN * inh)
    T_endo = T_base * endo
    T_total = T_endo + T_exo

    # ---- menopause transition (women) ----
    if female:
        m = jnp.asarray(p.menopause_age_years, dtype)
        ramp = _smoothstep((age - (m - _TRANSITION_YEARS)) / _TRANSITION_YEARS)
        E2_post = 8.0 + 0.25 * fat
        after = jnp.where(age > m, 1.0 - jnp.exp(-_pos(age - m) / _POST_FMP_TAU_YEARS), 0.0)
        at_fmp = E2_PREMENOPAUSE * (1.0 - _TRANSITION_FALL)
        E2_ov = jnp.where(age <= m, E2_PREMENOPAUSE * (1.0 - _TRANSITION_FALL * ramp),
                          at_fmp + (E2_post - at_fmp) * after)
        E2_endo = E2_ov * (1.0 - inh) + 0.004 * T_exo * (1.0 - inh)   # women on T aromatise it
        ovarian = 1.0 - jnp.where(age <= m, ramp, 1.0)
        P4_endo = 0.3 + 3.7 * ovarian
        E2_ref = E2_PREMENOPAUSE
        ai_hidden = zeros
    else:
        g_fat = 1.0 + 0.02 * (fat - _FAT_REF_MALE_KG)
        male_e2 = lambda i: _E2_MALE_YOUNG / _T_MALE_YOUNG * (        # noqa: E731
            0.2 * T_endo + 0.8 * T_total * (1.0 - i) * g_fat)
        E2_endo = male_e2(AI_MALE_SERUM_FRACTION * inh)
        ai_hidden = male_e2(inh) - E2_endo                           # ≤ 0
        P4_endo = jnp.full(days, 0.3, dtype)
        E2_ref = _E2_MALE_YOUNG
    E2 = E2_endo + 0.8 * rate("estradiol-transdermal") \
        + 30.0 * _depot(by_drug.get("estradiol-oral", zeros), math.log(2.0) / 0.7) \
        + CE_E2_EQUIV_PER_MG * _depot(by_drug.get("conjugated-estrogens", zeros),
                                      math.log(2.0) / 0.7)
    P4 = P4_endo + 0.04 * _depot(by_drug.get("progesterone", zeros), math.log(2.0) / 0.7) \
        + MPA_P4_EQUIV_PER_MG * _depot(by_drug.get("medroxyprogesterone", zeros),
                                       math.log(2.0) / 1.0)
    serm = ai_hidden
    for name, (half_days, label_mg, e_label) in SERMS.items():
        if name in by_drug:
            ke = math.log(2.0) / half_days
            A = _one_compartment_mean(by_drug[name], ke)
            A_label = label_mg / ke                     # steady daily-mean amount at the label
            serm = serm + 2.0 * e_label * A / (A + A_label)

    # ---- GH / IGF-1 ----
    IGF_norm = _IGF1_YOUNG * jnp.exp(-0.017 * _pos(age - 20.0))
    IGF_endo = IGF_norm * (0.45 if p.gh_deficient else 1.0)
    mult = jnp.ones_like(age)
    for name, (emax, r50) in _SECRETAGOGUES.items():
        if name in by_drug:
            r = _depot(by_drug[name], math.log(2.0) / 1.0)
            mult = mult + (0.3 if p.gh_deficient else 1.0) * emax * r / (r + r50)
    IGF = IGF_endo * mult
    if "rhgh" in by_drug:
        r = _depot(by_drug["rhgh"], math.log(2.0) / 1.0)
        IGF = IGF + 400.0 * r / (r + 0.6)

    # ---- vitamin D, calcium, PTH, mineralisation ----
    vd_target = p.vitamin_D_ng_mL + 0.008 * _depot(by_drug.get("vitamin-d", zeros), 1.0)
    vitD = _first_order_approach(vd_target * jnp.ones_like(age), 20.0)
    Ca = p.calcium_mg_day + _depot(by_drug.get("calcium", zeros), 1.0)
    pth_cont = rate("pth-continuous")
    PTH = (_PTH_YOUNG * (1.0 + 0.007 * _pos(age - 40.0))
           * (1.0 + 0.8 * _pos(1.0 - vitD / 30.0)) * (1.0 + 0.3 * _pos(1.0 - Ca / 1000.0))
           + 2.0 * pth_cont)
    mineralisation = (1.0 - 0.5 * _pos(1.0 - vitD / 15.0)) * (1.0 - 0.3 * _pos(1.0 - Ca / 600.0))

    # pulsatile PTH: dose averaged over the dosing interval (a 1-day reservoir)
    pth_pulse = _depot(by_drug.get("teriparatide", zeros)
                       + ABALOPARATIDE_TPD_EQUIV * by_drug.get("abaloparatide", zeros),
                       math.log(2.0) / 1.0)

    # ---- cortisol, glucocorticoid, cytokines ----
    cortisol = 1.0 + 0.005 * _pos(age - 40.0)
    gc = _GC_ENDOGENOUS_MG * cortisol + _depot(by_drug.get("glucocorticoid", zeros),
                                               math.log(2.0) / 0.5)
    h = lambda e: e * e / (e * e + 15.0 ** 2)                   # noqa: E731
    cyt = 1.0 + 0.5 * _pos(1.0 - h(E2 + serm) / h(E2_ref)) + 0.005 * _pos(age - 40.0)

    # ---- antiresorptives ----
    if "denosumab" in by_drug:
        from .denosumab import denosumab_pk
        from .parameters import DENOSUMAB_MARTINEZ_REINA_2019
        den_days = [tr for tr in treatments if tr.drug == "denosumab"]
        k_all, mg_all = [], []
        for tr in den_days:
            k = np.flatnonzero(schedule(tr, days))
            k_all.append(k)
            mg_all.append(jnp.broadcast_to(canonical_dose(tr), k.shape))
        k_all = np.concatenate(k_all)
        mg_all = jnp.concatenate(mg_all)
        pk = denosumab_pk(k_all.astype(float), days=float(days), dose_mg=mg_all,
                          params=replace(DENOSUMAB_MARTINEZ_REINA_2019,
                                         body_mass_kg=p.body_mass_kg))
        den = pk.C_pM[8::16][:days].astype(dtype)       # mid-day samples (grid 1/16 day)
    else:
        den = zeros
    if "alendronate" in by_drug or "zoledronic-acid" in by_drug:
        k_bp = math.log(2.0) / (BISPHOSPHONATE_HALF_LIFE_YEARS * YEAR_DAYS)
        to_bone = (by_drug.get("alendronate", zeros) * (0.0064 * 0.5)
                   + by_drug.get("zoledronic-acid", zeros) * ZOLEDRONATE_ALN_EQUIV)
        R = _depot(to_bone, k_bp)
        R = R / (1.0 - math.exp(-k_bp))                # release → content
        bp = R / (R + 1.0)
    else:
        bp = zeros

    stimulus = jnp.zeros_like(age)           # Carter daily stress stimulus, excess over habitual
    for tr in treatments:
        if DRUGS[tr.drug].kind == "lifestyle":
            x = canonical_dose(tr)
            stimulus = stimulus + (jnp.asarray(schedule(tr, days), dtype)
                                   * session_weight(tr.interval_days)
                                   * ((1.0 + x) ** EXERCISE_STIMULUS_EXPONENT - 1.0))
    load = (1.0 + stimulus) ** (1.0 / EXERCISE_STIMULUS_EXPONENT)

    series = HormoneSeries(
        age_years=age, E2_pg_mL=E2, T_ng_dL=T_total, progesterone_ng_mL=P4, IGF1_ng_mL=IGF,
        IGF1_norm_ng_mL=IGF_norm, PTH_pg_mL=PTH, pth_pulsatile_ug=pth_pulse,
        pth_continuous_ug_day=pth_cont, glucocorticoid_mg=gc, cortisol_rel=cortisol,
        cytokines_rel=cyt, aromatase_inhibition=inh, denosumab_pM=den, bisphosphonate=bp,
        vitamin_D_ng_mL=vitD, calcium_mg_day=Ca * jnp.ones_like(age),
        mineralisation_factor=mineralisation, exercise_load_factor=load,
        bone_E2_offset_pg_mL=serm, sex=p.sex)
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(jnp.asarray(a, dtype), (days,)),
                                  series)

"""Treatments of a remodelling scenario: drugs, hormones, supplements and exercise programmes.

A :class:`Treatment` is one regimen ("testosterone cypionate 100 mg IM every 7 days from year 0
to year 5"): a key of :data:`DRUGS`, a dose per administration in an accepted unit, the interval
between administrations (days) and the start/stop times (years from the scenario start). Its
``dose`` is a pytree leaf (``jax.grad`` of a result with respect to a dose works); everything
else is static. :func:`febone.remodel.hormones.hormone_series` turns a list of treatments into
daily levels (PK/PD), and :func:`febone.remodel.coupling.daily_inputs` into cell-model drives.

Dose conventions (see each :class:`DrugSpec`): an amount per administration for injections and
tablets (mg, µg, IU); a delivery *rate* for patches and infusions (``estradiol-transdermal`` in
µg/day, ``pth-continuous`` in µg/day: ``interval_days`` is then the patch change / bag interval
and does not change the exposure); for exercise the fractional increase of the habitual load at
the loaded sites (unit ``"fraction"``, 0.15 = +15 %; ``interval_days`` 1 = a daily programme).
"""
from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field, fields
from types import MappingProxyType

import jax

logger = logging.getLogger(__name__)

__all__ = ["DrugSpec", "DRUGS", "Treatment", "canonical_dose"]

_MG = {"mg": 1.0, "g": 1000.0, "ug": 1e-3, "µg": 1e-3, "mcg": 1e-3}
_UG = {"ug": 1.0, "µg": 1.0, "mcg": 1.0, "mg": 1000.0}
_UG_DAY = {"ug/day": 1.0, "µg/day": 1.0, "mcg/day": 1.0, "mg/day": 1000.0}
_FRACTION = {"fraction": 1.0, "%": 0.01}


@dataclass(frozen=True)
class DrugSpec:
    """What febone knows about one drug or programme.

    Attributes:
        name: key in :data:`DRUGS`.
        kind: ``"hormone"``, ``"hormone-modulator"``, ``"antiresorptive"``, ``"anabolic"``,
            ``"catabolic"``, ``"supplement"`` or ``"lifestyle"``.
        unit: canonical unit of ``Treatment.dose``.
        accepted_units: {unit: factor to the canonical unit}.
        typical_dose: a typical dose, canonical unit.
        typical_interval_days: its typical interval, days.
        route: ``"oral"``, ``"transdermal"``, ``"IM"``, ``"SC"``, ``"IV"`` or ``"mechanical"``.
        description: one line for listings.
        source: where the typical regimen comes from.
    """

    name: str
    kind: str
    unit: str
    accepted_units: dict = field(default_factory=dict)
    typical_dose: float = 1.0
    typical_interval_days: float = 1.0
    route: str = "oral"
    description: str = ""
    source: str = ""


def _spec(name, kind, unit, units, dose, interval, route, description, source):
    return DrugSpec(name, kind, unit, MappingProxyType(dict(units)), dose, interval, route,
                    description, source)


_SPECS = [
    _spec("estradiol-transdermal", "hormone", "ug/day", _UG_DAY, 50.0, 3.5, "transdermal",
          "17β-estradiol patch, delivery rate (µg/day); interval = patch change",
          "labels (Climara, Estradot 25–100 µg/day); KEEPS used 50 µg/day"),
    _spec("estradiol-oral", "hormone", "mg", _MG, 1.0, 1.0, "oral",
          "oral micronised 17β-estradiol", "labels (0.5–2 mg/day)"),
    _spec("progesterone", "hormone", "mg", _MG, 200.0, 1.0, "oral",
          "oral micronised progesterone (with estradiol in HRT)",
          "KEEPS: 200 mg/day 12 days a month; label 100 mg/day continuous"),
    _spec("testosterone-cypionate", "hormone", "mg", _MG, 100.0, 7.0, "IM",
          "testosterone cypionate depot injection", "TRT 100–200 mg/week IM"),
    _spec("testosterone-gel", "hormone", "mg", _MG, 50.0, 1.0, "transdermal",
          "testosterone gel, applied dose", "AndroGel 1 % 50–100 mg/day; T-Trials"),
    _spec("testosterone-undecanoate", "hormone", "mg", _MG, 1000.0, 77.0, "IM",
          "testosterone undecanoate depot injection", "Nebido 1000 mg every 10–14 weeks"),
    _spec("anastrozole", "hormone-modulator", "mg", _MG, 1.0, 1.0, "oral",
          "aromatase inhibitor", "breast cancer 1 mg/day (ATAC); TRT 0.25–0.5 mg twice weekly"),
    _spec("gonadorelin", "hormone-modulator", "ug", _UG, 100.0, 3.5, "SC",
          "GnRH analogue supporting endogenous testosterone on TRT",
          "TRT protocols 50–100 µg twice weekly"),
    _spec("enclomiphene", "hormone-modulator", "mg", _MG, 25.0, 1.0, "oral",
          "SERM raising LH and endogenous testosterone",
          "Kaminetsky 2013 / Wiehle 2014: 12.5–25 mg/day; protocols 2–3×/week"),
    _spec("rhgh", "anabolic", "mg", {**_MG, "IU": 1.0 / 3.0}, 0.3, 1.0, "SC",
          "recombinant human growth hormone (1 mg = 3 IU)",
          "adult GH deficiency 0.2–0.5 mg/day titrated to IGF-1"),
    _spec("sermorelin", "anabolic", "ug", _UG, 300.0, 1.0, "SC",
          "GHRH(1-29) analogue (GH secretagogue)", "protocols 200–300 µg nightly"),
    _spec("cjc1295-ipamorelin", "anabolic", "ug", _UG, 100.0, 1.0, "SC",
          "CJC-1295 (no DAC) + ipamorelin, dose of each (GH secretagogue)",
          "protocols 100 µg + 100 µg daily, 5 days a week"),
    _spec("tesamorelin", "anabolic", "mg", _MG, 2.0, 1.0, "SC",
          "stabilised GHRH analogue", "Egrifta label 2 mg/day (Falutz 2007)"),
    _spec("teriparatide", "anabolic", "ug", _UG, 20.0, 1.0, "SC",
          "PTH(1-34), intermittent daily injection (anabolic)", "Forteo label 20 µg/day"),
    _spec("pth-continuous", "catabolic", "ug/day", _UG_DAY, 20.0, 1.0, "SC",
          "continuous PTH exposure (infusion; models hyperparathyroidism), rate µg/day",
          "infusion studies (e.g. Cosman 1993-type continuous PTH(1-34) at 0.5–1 µg/h)"),
    _spec("glucocorticoid", "catabolic", "mg", _MG, 7.5, 1.0, "oral",
          "glucocorticoid, prednisone-equivalent dose",
          "≥ 2.5–7.5 mg/day prednisone for ≥ 3 months defines GIOP risk (ACR 2017)"),
    _spec("denosumab", "antiresorptive", "mg", _MG, 60.0, 183.0, "SC",
          "anti-RANKL antibody", "Prolia 60 mg every 6 months; PK Martínez-Reina 2019"),
    _spec("alendronate", "antiresorptive", "mg", _MG, 70.0, 7.0, "oral",
          "nitrogen-containing bisphosphonate", "Fosamax 70 mg weekly (or 10 mg daily)"),
    _spec("zoledronic-acid", "antiresorptive", "mg", _MG, 5.0, 365.25, "IV",
          "intravenous bisphosphonate infusion", "Reclast/Aclasta 5 mg once yearly (HORIZON)"),
    _spec("abaloparatide", "anabolic", "ug", _UG, 80.0, 1.0, "SC",
          "PTHrP(1-34) analogue, intermittent daily injection (anabolic)",
          "Tymlos label 80 µg/day; ACTIVE, Miller 2016"),
    _spec("tamoxifen", "hormone-modulator", "mg", _MG, 20.0, 1.0, "oral",
          "SERM: oestrogen agonist on bone, antagonist in the breast (serum E2 unchanged)",
          "breast cancer 20 mg/day (ATAC; Powles 1996)"),
    _spec("raloxifene", "hormone-modulator", "mg", _MG, 60.0, 1.0, "oral",
          "SERM: partial oestrogen agonist on bone (serum E2 unchanged)",
          "Evista label 60 mg/day; MORE, Ettinger 1999"),
    _spec("conjugated-estrogens", "hormone", "mg", _MG, 0.625, 1.0, "oral",
          "conjugated equine oestrogens (Premarin)",
          "Premarin 0.3–1.25 mg/day; WHI and PEPI 0.625 mg/day"),
    _spec("medroxyprogesterone", "hormone", "mg", _MG, 2.5, 1.0, "oral",
          "medroxyprogesterone acetate (MPA), progestin with oestrogen in HRT",
          "Prempro 2.5 mg/day continuous (WHI); PEPI 2.5 mg/day or 10 mg 12 d/month"),
    _spec("calcium", "supplement", "mg", _MG, 600.0, 1.0, "oral",
          "elemental calcium supplement (adds to dietary intake)",
          "source documents: 1200 mg/day total intake"),
    _spec("vitamin-d", "supplement", "IU", {"IU": 1.0, "ug": 40.0, "µg": 40.0, "mcg": 40.0},
          1000.0, 1.0, "oral", "cholecalciferol (1 µg = 40 IU)",
          "source documents: 800–1000 IU/day"),
    _spec("exercise-weight-bearing", "lifestyle", "fraction", _FRACTION, 0.10, 1.0,
          "mechanical", "walking/jogging programme: habitual load ×(1 + dose) at loaded sites",
          "source documents; guess of the load increase"),
    _spec("exercise-resistance", "lifestyle", "fraction", _FRACTION, 0.15, 1.0, "mechanical",
          "progressive resistance training: habitual load ×(1 + dose)",
          "source documents; LIFTMOR-type programmes; guess of the load increase"),
    _spec("exercise-high-impact", "lifestyle", "fraction", _FRACTION, 0.25, 1.0, "mechanical",
          "jumping/high-impact training: habitual load ×(1 + dose)",
          "source documents; guess of the load increase"),
]

#: Registry of known drugs and programmes, {name: :class:`DrugSpec`} (read-only).
DRUGS: MappingProxyType = MappingProxyType({s.name: s for s in _SPECS})


def _bad_number(x) -> bool:
    return isinstance(x, bool) or not isinstance(x, (int, float))


@dataclass(frozen=True)
class Treatment:
    """One regimen. ``dose`` is a pytree leaf; the other fields are static.

    Attributes:
        drug: key of :data:`DRUGS`.
        dose: amount per administration in ``unit`` (a rate for patches/infusions, a load
            fraction for exercise; see the module docstring).
        unit: one of the drug's ``accepted_units``.
        interval_days: days between administrations (1 daily, 7 weekly, 3.5 twice weekly, 183).
        start_years: start, years from the scenario start (first administration then); negative
            for a treatment before time 0, replayed with the patient's history
            (:mod:`febone.remodel.history`).
        stop_years: end, years from the scenario start (no administration from then on), or None
            for until the end of the scenario.
    """

    drug: str
    dose: float
    unit: str
    interval_days: float = 1.0
    start_years: float = 0.0
    stop_years: float | None = None

    @property
    def spec(self) -> DrugSpec:
        """The :class:`DrugSpec` of ``drug``."""
        return DRUGS[self.drug]

    @classmethod
    def create(cls, drug: str, dose, unit: str | None = None, interval_days: float | None = None,
               start_years: float = 0.0, stop_years: float | None = None) -> "Treatment":
        """Validated treatment.

        Args:
            drug: key of :data:`DRUGS`.
            dose: dose per administration in ``unit`` (> 0; a traced value is accepted).
            unit: an accepted unit (None: the canonical one).
            interval_days: days between administrations (None: the drug's typical interval).
            start_years, stop_years: years from the scenario start (stop None = to the end).

        Raises:
            ValueError: unknown drug (close matches listed), unit not accepted (accepted listed),
                dose ≤ 0 or not finite, interval ≤ 0, start < 0, stop ≤ start.
            TypeError: non-string drug/unit, non-numeric dose/times.
        """
        if not isinstance(drug, str):
            raise TypeError(f"Treatment drug must be a string key of DRUGS; got {drug!r}")
        if drug not in DRUGS:
            close = difflib.get_close_matches(drug.lower(), list(DRUGS), n=3, cutoff=0.5)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"unknown drug {drug!r}{hint} Known drugs: {sorted(DRUGS)}")
        spec = DRUGS[drug]
        unit = spec.unit if unit is None else unit
        if not isinstance(unit, str) or unit not in spec.accepted_units:
            raise ValueError(f"unit {unit!r} is not accepted for {drug}; use one of "
                             f"{sorted(spec.accepted_units)} (canonical {spec.unit!r})")
        if isinstance(dose, bool):
            raise TypeError(f"{drug}: dose must be a number in {unit}; got {dose!r}")
        if isinstance(dose, (int, float)):
            if not (math.isfinite(dose) and dose > 0):
                raise ValueError(f"{drug}: dose must be positive and finite ({unit}); got {dose!r}"
                                 f" (to stop a treatment use stop_years, not a zero dose)")
            dose = float(dose)
        interval = spec.typical_interval_days if interval_days is None else interval_days
        if _bad_number(interval) or not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"{drug}: interval_days must be a positive number of days; got "
                             f"{interval!r}")
        if _bad_number(start_years) or not math.isfinite(start_years):
            raise ValueError(f"{drug}: start_years must be a number of years from the scenario "
                             f"start (negative: a past treatment, replayed with the patient's "
                             f"history); got {start_years!r}")
        if stop_years is not None:
            if _bad_number(stop_years) or not math.isfinite(stop_years):
                raise ValueError(f"{drug}: stop_years must be a number of years or None; got "
                                 f"{stop_years!r}")
            if stop_years <= start_years:
                raise ValueError(f"{drug}: stop_years ({stop_years}) must be after start_years "
                                 f"({start_years})")
            stop_years = float(stop_years)
        return cls(drug, dose, unit, float(interval), float(start_years), stop_years)


def canonical_dose(t: Treatment):
    """The treatment's dose in its drug's canonical unit (a jax value when the dose is traced)."""
    return t.dose * DRUGS[t.drug].accepted_units[t.unit]


jax.tree_util.register_dataclass(
    Treatment, data_fields=["dose"],
    meta_fields=[f.name for f in fields(Treatment) if f.name != "dose"])

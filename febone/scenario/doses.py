"""Plausible dose ranges of the drugs and programmes of a scenario (label doses).

A dose 1000× the labelled one (estradiol 50 mg/day for 50 µg/day, alendronate 70 g weekly)
is nearly always a unit slip. Each drug of :data:`febone.remodel.treatments.DRUGS` has a
range of its *daily-average* dose, in its canonical unit per day (dose / interval for
administered amounts; the rate itself for patches and infusions; the load increase itself
for exercise). :func:`check_dose` warns outside the range and refuses a dose more than
:data:`FAR_FACTOR` × beyond it (above the top or below the bottom).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..remodel.treatments import DRUGS, Treatment, canonical_dose

__all__ = ["DoseRange", "DOSE_RANGES", "FAR_FACTOR", "daily_dose", "check_dose"]

#: A dose beyond FAR_FACTOR × the range (either side) is refused, not just warned about.
FAR_FACTOR = 10.0


@dataclass(frozen=True)
class DoseRange:
    """Daily-average dose range, canonical unit of the drug per day (see module docstring)."""

    low: float
    high: float
    source: str


#: {drug: DoseRange}: label (or, for unlicensed uses, protocol) doses.
DOSE_RANGES = {
    "estradiol-transdermal": DoseRange(14.0, 100.0, "labels: Menostar 14 µg/day to "
                                                    "Climara/Estradot 100 µg/day"),
    "estradiol-oral": DoseRange(0.5, 2.0, "labels (Estrace): 0.5–2 mg/day"),
    "progesterone": DoseRange(50.0, 400.0, "Prometrium label: 100 mg/day continuous to "
                                           "400 mg/day (secondary amenorrhoea)"),
    "testosterone-cypionate": DoseRange(50.0 / 28.0, 400.0 / 14.0,
                                        "Depo-Testosterone label: 50–400 mg every 2–4 weeks"),
    "testosterone-gel": DoseRange(20.0, 100.0, "AndroGel labels: 20.25–100 mg/day"),
    "testosterone-undecanoate": DoseRange(750.0 / 70.0, 1000.0 / 42.0,
                                          "Aveed 750 mg every 10 weeks; Nebido 1000 mg every "
                                          "10–14 weeks (6 weeks loading)"),
    "anastrozole": DoseRange(0.25 / 3.5, 1.0, "Arimidex label 1 mg/day; TRT protocols "
                                              "0.25–0.5 mg twice weekly"),
    "gonadorelin": DoseRange(50.0 / 7.0, 30.0, "TRT protocols: 50–100 µg twice weekly (no "
                                               "label for this use)"),
    "enclomiphene": DoseRange(12.5 * 2 / 7.0, 25.0, "trials (Kaminetsky 2013, Wiehle 2014): "
                                                    "12.5–25 mg/day; protocols 2–3×/week"),
    "rhgh": DoseRange(0.1, 1.6, "adult GH deficiency labels (Genotropin, Norditropin): "
                                "0.1–0.2 mg/day start, titrated, rarely > 1.6 mg/day"),
    "sermorelin": DoseRange(100.0, 2100.0, "Geref label 30 µg/kg/day (2.1 mg at 70 kg); "
                                           "protocols 200–300 µg nightly"),
    "cjc1295-ipamorelin": DoseRange(50.0, 300.0, "protocols 100–300 µg/day of each (no "
                                                 "approved label)"),
    "tesamorelin": DoseRange(1.4, 2.0, "Egrifta SV 1.4 mg/day, Egrifta 2 mg/day labels"),
    "teriparatide": DoseRange(20.0, 40.0, "Forteo label 20 µg/day; Neer 2001 40 µg/day arm"),
    "pth-continuous": DoseRange(12.0, 24.0, "continuous PTH(1-34) infusion studies: "
                                            "0.5–1 µg/h"),
    "glucocorticoid": DoseRange(2.5, 60.0, "prednisone labels 5–60 mg/day; ACR 2017 GIOP "
                                           "from 2.5 mg/day"),
    "denosumab": DoseRange(60.0 / 183.0, 120.0 / 28.0, "Prolia 60 mg every 6 months; Xgeva "
                                                       "120 mg every 4 weeks"),
    "alendronate": DoseRange(5.0, 40.0, "Fosamax labels: 5 mg/day (prevention), 10 mg/day or "
                                        "70 mg weekly, 40 mg/day (Paget's disease)"),
    "zoledronic-acid": DoseRange(5.0 / 730.5, 5.0 / 365.25 * 2.0,
                                 "Reclast/Aclasta label 5 mg IV once yearly (prevention 5 mg "
                                 "every 2 years); not above 5 mg a year"),
    "abaloparatide": DoseRange(80.0, 80.0, "Tymlos label 80 µg/day (ACTIVE, Miller 2016)"),
    "tamoxifen": DoseRange(10.0, 40.0, "Nolvadex label 20 mg/day (10–20 mg twice daily)"),
    "raloxifene": DoseRange(60.0, 120.0, "Evista label 60 mg/day; MORE 60 and 120 mg/day arms"),
    "conjugated-estrogens": DoseRange(0.3, 1.25, "Premarin labels 0.3–1.25 mg/day"),
    "medroxyprogesterone": DoseRange(1.5, 10.0, "Prempro 1.5–5 mg/day continuous; Provera "
                                                "5–10 mg/day for 12–14 days a month"),
    "calcium": DoseRange(200.0, 1500.0, "supplements of 200–1500 mg/day elemental calcium "
                                        "(IOM: total intake 1000–1200, upper limit 2000 mg/day)"),
    "vitamin-d": DoseRange(400.0, 50000.0 / 7.0, "IOM 600–800 IU/day (upper limit 4000); "
                                                 "repletion 50,000 IU weekly (Endocrine "
                                                 "Society 2011)"),
    "exercise-weight-bearing": DoseRange(0.02, 0.5, "load increase of a programme, +2–50 % of "
                                                    "the habitual load"),
    "exercise-resistance": DoseRange(0.02, 0.5, "load increase of a programme, +2–50 % of the "
                                                "habitual load"),
    "exercise-high-impact": DoseRange(0.02, 0.8, "load increase of a programme, +2–80 % of the "
                                                 "habitual load"),
}


def _per_day_unit(drug: str) -> str:
    unit = DRUGS[drug].unit
    return unit if unit.endswith("/day") or unit == "fraction" else f"{unit}/day"


def _regimen(drug: str, dose: float, unit: str, interval_days: float) -> str:
    if DRUGS[drug].unit.endswith("/day") or DRUGS[drug].unit == "fraction":
        return f"{dose:g} {unit}"
    return f"{dose:g} {unit} every {interval_days:g} days"


def daily_dose(t: Treatment) -> float:
    """Daily-average dose of ``t`` in its drug's canonical unit per day (see module docstring)."""
    spec = DRUGS[t.drug]
    dose = float(canonical_dose(t))
    if spec.unit.endswith("/day") or spec.unit == "fraction":
        return dose
    return dose / t.interval_days


def check_dose(t: Treatment) -> str | None:
    """A warning when ``t``'s daily-average dose is outside :data:`DOSE_RANGES` (None inside);
    refuse it beyond :data:`FAR_FACTOR` × the range.

    Raises:
        ValueError: dose > FAR_FACTOR × the top or < the bottom / FAR_FACTOR; the message
            gives the dose as entered, its daily average, the range and its source.
    """
    rng = DOSE_RANGES.get(t.drug)
    if rng is None:
        return None
    day, unit = daily_dose(t), _per_day_unit(t.drug)
    if rng.low <= day <= rng.high:
        return None
    spec = DRUGS[t.drug]
    what = (f"{t.drug} {_regimen(t.drug, t.dose, t.unit, t.interval_days)} is {day:.3g} {unit} "
            f"on average, {'above' if day > rng.high else 'below'} the plausible "
            f"{rng.low:.3g}–{rng.high:.3g} {unit} ({rng.source})")
    if day > FAR_FACTOR * rng.high or day < rng.low / FAR_FACTOR:
        typical = _regimen(t.drug, spec.typical_dose, spec.unit, spec.typical_interval_days)
        raise ValueError(f"{what}, by more than {FAR_FACTOR:g}×: check the unit (mg vs µg vs g) "
                         f"and the interval; typical: {typical}")
    return f"{what}; continuing, but check the dose"

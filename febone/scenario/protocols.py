"""Named treatment protocols (science.md §4): the data, usable by name and combinable.

A :class:`Protocol` is a fragment of a scenario document: the patient it is meant for and
its ``[[treatments]]`` tables, written in the same schema as a scenario file (so they pass
the same validation). The scenarios are built from them in :mod:`febone.scenario.builders`
(``protocol``, ``combine``, ``study``), through the parser like any scenario file.

Doses and intervals are those of science.md §4 ("Protocols users will ask for") where it gives
them, else the drug's typical regimen in ``febone.remodel.treatments.DRUGS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from ..remodel.treatments import DRUGS

__all__ = ["Protocol", "PROTOCOLS", "DEFAULT_STUDY"]


@dataclass(frozen=True)
class Protocol:
    """A named protocol.

    Attributes:
        name: key in :data:`PROTOCOLS`.
        description: one line: who, what, how much.
        patient: the patient it is meant for, as a ``[patient]`` table (``docs/scenarios.md``).
        requires: the part of ``patient`` that is the protocol's premise (e.g. sex and
            menopause timing for HRT); combined protocols must agree on it. When no combined
            protocol requires a sex, the first protocol's ``patient`` is used as an example.
        treatments: ``[[treatments]]`` tables.
        duration_years: default length of a run of this protocol, years.
        source: where the regimen comes from.
    """

    name: str
    description: str
    patient: MappingProxyType
    requires: MappingProxyType
    treatments: tuple
    duration_years: float = 10.0
    source: str = ""

    @property
    def strict(self) -> bool:
        """True when the protocol fixes the patient's sex (combined protocols must agree)."""
        return "sex" in self.requires

    @property
    def sex(self) -> str | None:
        """The sex the protocol is for, or None when it applies to anyone."""
        return self.requires.get("sex")


def _p(name, description, patient, treatments=(), *, strict=True, requires=None,
       duration_years=10.0, source=""):
    req = dict(patient) if strict else dict(requires or {})
    return Protocol(name, description, MappingProxyType(dict(patient)), MappingProxyType(req),
                    tuple(MappingProxyType(dict(t)) for t in treatments), duration_years, source)


# patients (the [patient] schema of docs/scenarios.md)
#: a woman one year before her final menstrual period (SWAN-like; natural menopause ≈ 51 y)
PERIMENOPAUSAL_WOMAN = {"sex": "female", "age": "50 years", "menopause_age": "51 years"}
#: ATAC: postmenopausal women with early breast cancer, mean age 64 (Eastell 2006)
AI_WOMAN = {"sex": "female", "age": "64 years", "menopause_age": "50 years"}
#: FREEDOM / FIT-like osteoporotic postmenopausal woman (mean ages ≈ 70–72)
OSTEOPOROTIC_WOMAN = {"sex": "female", "age": "70 years", "menopause_age": "50 years"}
#: early postmenopausal woman of the lifestyle trials
POSTMENOPAUSAL_WOMAN = {"sex": "female", "age": "58 years", "menopause_age": "51 years"}
#: hypogonadal man: total T 200 ng/dL (< 264–300 ng/dL thresholds, Endocrine Society 2018)
HYPOGONADAL_MAN = {"sex": "male", "age": "55 years", "body_mass": "85 kg",
                   "testosterone": "200 ng/dL"}
MIDDLE_AGED_MAN = {"sex": "male", "age": "50 years", "body_mass": "85 kg"}
GLUCOCORTICOID_PATIENT = {"sex": "female", "age": "60 years", "menopause_age": "51 years"}

_E2_PATCH = {"drug": "estradiol-transdermal", "dose": "50 µg/day", "interval": "twice weekly"}
_PROG = {"drug": "progesterone", "dose": "100 mg", "interval": "daily"}
_TRT = {"drug": "testosterone-cypionate", "dose": "150 mg", "interval": "weekly"}
_SRC_TRT = "science.md §4: testosterone cypionate 100–200 mg/week IM"


def _exercise(programme: str, what: str) -> Protocol:
    drug = f"exercise-{programme}"
    spec = DRUGS[drug]
    return _p(drug, f"{what}: habitual load +{spec.typical_dose:.0%} at the loaded sites, daily",
              POSTMENOPAUSAL_WOMAN, [{"drug": drug, "dose": spec.typical_dose,
                                      "interval": "daily"}],
              strict=False, source=f"science.md §4 (lifestyle); load increase: DRUGS[{drug!r}] "
                                   f"({spec.source})")


_LIST = [
    _p("untreated-menopause", "natural menopause without treatment: a woman of 50 whose final "
       "period comes at 51", PERIMENOPAUSAL_WOMAN,
       source="science.md §4; §8 SWAN (Greendale 2012) for the expected loss"),
    _p("early-hrt", "transdermal estradiol 50 µg/day (patch changed twice weekly) + micronised "
       "progesterone 100 mg/day from 1 year after the final period (≤ 3 y, as in KEEPS)",
       PERIMENOPAUSAL_WOMAN,
       [{**_E2_PATCH, "start_after_menopause": "1 year"},
        {**_PROG, "start_after_menopause": "1 year"}],
       source="science.md §4; KEEPS (Harman 2014; Farr 2013): started 6–36 months after the "
              "final period"),
    _p("late-hrt", "the early-hrt regimen started 10 years after the final period (ELITE's "
       "late stratum, ≥ 10 y)", PERIMENOPAUSAL_WOMAN,
       [{**_E2_PATCH, "start_after_menopause": "10 years"},
        {**_PROG, "start_after_menopause": "10 years"}], duration_years=15.0,
       source="science.md §4; ELITE (Hodis 2016, NEJM 374:1221): early < 6 y, late ≥ 10 y"),
    _p("oral-hrt", "oral micronised estradiol 1 mg/day + micronised progesterone 100 mg/day "
       "from 1 year after the final period", PERIMENOPAUSAL_WOMAN,
       [{"drug": "estradiol-oral", "dose": "1 mg", "interval": "daily",
         "start_after_menopause": "1 year"}, {**_PROG, "start_after_menopause": "1 year"}],
       source="science.md §4 (estradiol oral ± progesterone); label dose range 0.5–2 mg/day"),
    _p("anastrozole", "anastrozole 1 mg/day for 5 years in a postmenopausal woman (breast "
       "cancer, ATAC)", AI_WOMAN,
       [{"drug": "anastrozole", "dose": "1 mg", "interval": "daily", "duration": "5 years"}],
       duration_years=5.0, source="science.md §4; §8 ATAC (Eastell 2006): LS −4.0 % at 2 y"),
    _p("untreated-hypogonadism", "hypogonadal man (total T 200 ng/dL), no treatment",
       HYPOGONADAL_MAN, source="science.md §4 (men: hypogonadism untreated)"),
    _p("trt", "testosterone cypionate 150 mg IM weekly in a hypogonadal man", HYPOGONADAL_MAN,
       [_TRT], source=_SRC_TRT),
    _p("trt-anastrozole", "trt + anastrozole 0.5 mg twice weekly", HYPOGONADAL_MAN,
       [_TRT, {"drug": "anastrozole", "dose": "0.5 mg", "interval": "twice weekly"}],
       source=_SRC_TRT + " + anastrozole 0.25–0.5 mg twice weekly"),
    _p("trt-gonadorelin", "trt + gonadorelin 100 µg twice weekly (supports endogenous T)",
       HYPOGONADAL_MAN,
       [_TRT, {"drug": "gonadorelin", "dose": "100 µg", "interval": "twice weekly"}],
       source=_SRC_TRT + " + gonadorelin 50–100 µg twice weekly"),
    _p("enclomiphene", "enclomiphene 25 mg three times weekly in a hypogonadal man (raises "
       "endogenous T; combine with trt for the add-on use)", HYPOGONADAL_MAN,
       [{"drug": "enclomiphene", "dose": "25 mg", "interval": "3 times weekly"}],
       source="science.md §4: enclomiphene 12.5–25 mg 2–3×/week"),
    _p("gh-peptides", "CJC-1295 (no DAC) + ipamorelin 100 µg each, 5 nights a week",
       MIDDLE_AGED_MAN,
       [{"drug": "cjc1295-ipamorelin", "dose": "100 µg", "interval": "5 times weekly"}],
       strict=False, source="science.md §4 (GH secretagogue peptides); DRUGS"
                            "['cjc1295-ipamorelin'] (protocols 100 µg + 100 µg, 5 days a week)"),
    _p("sermorelin", "sermorelin 300 µg nightly", MIDDLE_AGED_MAN,
       [{"drug": "sermorelin", "dose": "300 µg", "interval": "daily"}], strict=False,
       source="science.md §4 (GH secretagogue peptides); protocols 200–300 µg nightly"),
    _p("rhgh", "recombinant human GH 0.3 mg/day in adult GH deficiency",
       {**MIDDLE_AGED_MAN, "gh_deficient": True},
       [{"drug": "rhgh", "dose": "0.3 mg", "interval": "daily"}],
       strict=False, requires={"gh_deficient": True},
       source="Endocrine Society 2011 adult GHD: 0.2–0.5 mg/day titrated to IGF-1; §8: BMD dips "
              "at 6–12 months, gains after 18–24"),
    _p("tesamorelin", "tesamorelin 2 mg/day SC", {**MIDDLE_AGED_MAN, "age": "48 years"},
       [{"drug": "tesamorelin", "dose": "2 mg", "interval": "daily"}], strict=False,
       source="Egrifta label 2 mg/day; Falutz 2007 (men with HIV lipodystrophy, mean age 48)"),
    _p("glucocorticoid", "prednisone 7.5 mg/day (glucocorticoid-induced osteoporosis risk "
       "threshold)", GLUCOCORTICOID_PATIENT,
       [{"drug": "glucocorticoid", "dose": "7.5 mg", "interval": "daily"}], strict=False,
       source="science.md §4 (glucocorticoid therapy); ACR 2017: ≥ 7.5 mg/day for ≥ 3 months"),
    _p("denosumab", "denosumab 60 mg SC every 6 months (183 days)", OSTEOPOROTIC_WOMAN,
       [{"drug": "denosumab", "dose": "60 mg", "interval": "183 days"}], strict=False,
       source="science.md §4: 60 mg every 183 days (PK Martínez-Reina 2019); FREEDOM"),
    _p("alendronate", "alendronate 70 mg weekly", OSTEOPOROTIC_WOMAN,
       [{"drug": "alendronate", "dose": "70 mg", "interval": "weekly"}], strict=False,
       source="science.md §4: alendronate 70 mg weekly"),
    _p("teriparatide", "teriparatide 20 µg SC daily for 2 years (the label's lifetime course)",
       OSTEOPOROTIC_WOMAN,
       [{"drug": "teriparatide", "dose": "20 µg", "interval": "daily", "duration": "2 years"}],
       strict=False, duration_years=2.0,
       source="science.md §4: teriparatide 20 µg daily; Forteo label (≤ 24 months)"),
    _p("denosumab-stop", "denosumab 60 mg every 6 months for 3 years (6 doses), then stopped: "
       "the off-treatment rebound", OSTEOPOROTIC_WOMAN,
       [{"drug": "denosumab", "dose": "60 mg", "interval": "183 days", "duration": "3 years"}],
       strict=False, duration_years=5.0,
       source="FREEDOM off-treatment (Bone 2011, J Clin Endocrinol Metab 96:972; Cummings "
              "2018, J Bone Miner Res 33:190)"),
    _p("denosumab-then-alendronate", "denosumab for 3 years, then alendronate 70 mg weekly "
       "from the month the next injection was due", OSTEOPOROTIC_WOMAN,
       [{"drug": "denosumab", "dose": "60 mg", "interval": "183 days", "duration": "3 years"},
        {"drug": "alendronate", "dose": "70 mg", "interval": "weekly", "start": "3 years"}],
       strict=False, duration_years=5.0,
       source="sequence after denosumab (e.g. Kendler 2020, DAPS; Tsourdi 2017 ECTS position)"),
    _p("zoledronic-acid", "zoledronic acid 5 mg IV once yearly for 3 years", OSTEOPOROTIC_WOMAN,
       [{"drug": "zoledronic-acid", "dose": "5 mg", "interval": "365.25 days",
         "duration": "3 years"}], strict=False, duration_years=5.0,
       source="HORIZON (Black 2007, N Engl J Med 356:1809): 5 mg yearly"),
    _p("abaloparatide", "abaloparatide 80 µg SC daily for 18 months", OSTEOPOROTIC_WOMAN,
       [{"drug": "abaloparatide", "dose": "80 µg", "interval": "daily",
         "duration": "18 months"}], strict=False, duration_years=2.0,
       source="Tymlos label; ACTIVE (Miller 2016, JAMA 316:722)"),
    _p("raloxifene", "raloxifene 60 mg/day (SERM)", OSTEOPOROTIC_WOMAN,
       [{"drug": "raloxifene", "dose": "60 mg", "interval": "daily"}], strict=False,
       duration_years=3.0, source="Evista label; MORE (Ettinger 1999, JAMA 282:637)"),
    _p("tamoxifen", "tamoxifen 20 mg/day for 5 years in a postmenopausal woman (breast cancer)",
       AI_WOMAN, [{"drug": "tamoxifen", "dose": "20 mg", "interval": "daily",
                   "duration": "5 years"}],
       duration_years=5.0, source="ATAC tamoxifen arm (Eastell 2006): LS +1.9 % at 2 y"),
    _p("conjugated-estrogens-mpa", "conjugated oestrogens 0.625 mg/day + medroxyprogesterone "
       "acetate 2.5 mg/day (continuous combined, Prempro)", POSTMENOPAUSAL_WOMAN,
       [{"drug": "conjugated-estrogens", "dose": "0.625 mg", "interval": "daily"},
        {"drug": "medroxyprogesterone", "dose": "2.5 mg", "interval": "daily"}],
       duration_years=3.0,
       source="PEPI 1996 (JAMA 276:1389); WHI E+P (Cauley 2003, JAMA 290:1729)"),
    _exercise("weight-bearing", "weight-bearing exercise (walking, jogging)"),
    _exercise("resistance", "progressive resistance training"),
    _exercise("high-impact", "high-impact training (jumping)"),
    _p("calcium-vitamin-d", "calcium 1200 mg/day + vitamin D 800 IU/day supplements",
       POSTMENOPAUSAL_WOMAN,
       [{"drug": "calcium", "dose": "1200 mg", "interval": "daily"},
        {"drug": "vitamin-d", "dose": "800 IU", "interval": "daily"}], strict=False,
       source="science.md §1/§4: calcium 1200 mg/d, vitamin D 800–1000 IU/d; Chapuy 1992 "
              "(1.2 g calcium + 800 IU D3)"),
]

#: {name: :class:`Protocol`}, read-only.
PROTOCOLS: MappingProxyType = MappingProxyType({p.name: p for p in _LIST})

#: The study ``febone run`` runs without arguments.
DEFAULT_STUDY = ("untreated-menopause", "early-hrt")

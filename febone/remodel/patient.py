"""The patient of a remodelling scenario: sex, age, menopause, body composition, vitamin D, calcium.

A :class:`Patient` is a frozen pytree: the continuous fields (ages, masses, levels) are leaves, so
``jax.grad`` of a result with respect to, e.g., ``menopause_age_years`` works; ``sex`` and
``gh_deficient`` are static. Hormone trajectories are computed from it by
:func:`febone.remodel.hormones.hormone_series`.

Times: ages in years; the scenario starts at ``age_years`` (scenario time 0).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace

import jax

logger = logging.getLogger(__name__)

__all__ = ["Patient", "SEXES", "default_fat_fraction"]

SEXES = ("female", "male")

#: Default body-fat fraction by sex when ``fat_mass_kg`` is None: DXA body fat of US adults aged
#: 40–60 (NHANES 1999–2004, Kelly et al. 2009, PLoS One 4:e7038: women ≈ 38–40 %, men ≈ 27–28 %);
#: rounded.
_DEFAULT_FAT_FRACTION = {"female": 0.38, "male": 0.27}

# (low, high, unit) plausibility ranges checked by Patient.create
_RANGES = {
    "age_years": (0.0, 110.0, "years"),
    "menopause_age_years": (30.0, 65.0, "years"),
    "body_mass_kg": (25.0, 300.0, "kg"),
    "fat_mass_kg": (1.0, 200.0, "kg"),
    "testosterone_ng_dL": (1.0, 3000.0, "ng/dL"),
    "vitamin_D_ng_mL": (1.0, 200.0, "ng/mL (serum 25(OH)D)"),
    "calcium_mg_day": (50.0, 5000.0, "mg/day"),
}


def default_fat_fraction(sex: str) -> float:
    """Body-fat fraction used when ``fat_mass_kg`` is None (documented above), dimensionless."""
    return _DEFAULT_FAT_FRACTION[sex]


@dataclass(frozen=True)
class Patient:
    """A patient (data fields are pytree leaves; ``sex`` and ``gh_deficient`` are static).

    Attributes:
        sex: ``"female"`` or ``"male"``.
        age_years: age at the scenario start, years.
        menopause_age_years: age at the final menstrual period, years (women; ignored for men).
        body_mass_kg: body mass, kg.
        fat_mass_kg: fat mass, kg, or None for the default fraction of the body mass by sex
            (:func:`default_fat_fraction`); raises aromatisation (men's E2) and postmenopausal E2.
        testosterone_ng_dL: endogenous total testosterone override, ng/dL (e.g. 200 for a
            hypogonadal man; None: the age curve of :mod:`febone.remodel.hormones`).
        gh_deficient: adult growth-hormone deficiency (IGF-1 well below the age norm).
        vitamin_D_ng_mL: serum 25(OH)D without supplements, ng/mL (30 = replete).
        calcium_mg_day: dietary calcium without supplements, mg/day.
    """

    sex: str = "female"
    age_years: float = 50.0
    menopause_age_years: float = 51.0
    body_mass_kg: float = 70.0
    fat_mass_kg: float | None = None
    testosterone_ng_dL: float | None = None
    gh_deficient: bool = False
    vitamin_D_ng_mL: float = 30.0
    calcium_mg_day: float = 1000.0

    @property
    def body_weight_kg(self) -> float:
        """Alias of ``body_mass_kg``, kg."""
        return self.body_mass_kg

    @property
    def fat_mass(self):
        """Fat mass in kg, the default fraction of the body mass when ``fat_mass_kg`` is None."""
        if self.fat_mass_kg is None:
            return _DEFAULT_FAT_FRACTION[self.sex] * self.body_mass_kg
        return self.fat_mass_kg

    @classmethod
    def create(cls, **kw) -> "Patient":
        """Validated patient. Keywords are the attributes (defaults as in the class).

        Raises:
            TypeError: an unknown keyword, or a non-numeric value.
            ValueError: ``sex`` not in ``("female", "male")``, a value outside its plausible range
                (the message names the field, the range and the unit), or a fat mass not below
                the body mass.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - names)
        if unknown:
            raise TypeError(f"unknown Patient field(s) {unknown}; valid fields: {sorted(names)}")
        p = replace(cls(), **kw)
        if p.sex not in SEXES:
            raise ValueError(f"Patient.sex must be one of {SEXES}; got {p.sex!r}")
        if not isinstance(p.gh_deficient, bool):
            raise TypeError(f"Patient.gh_deficient must be True or False; got {p.gh_deficient!r}")
        for name, (lo, hi, unit) in _RANGES.items():
            v = getattr(p, name)
            if v is None and name in ("fat_mass_kg", "testosterone_ng_dL"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"Patient.{name} must be a number in {unit}; got {v!r}")
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"Patient.{name} = {v!r} is outside the plausible range "
                                 f"[{lo:g}, {hi:g}] {unit}")
        if p.fat_mass_kg is not None and p.fat_mass_kg >= p.body_mass_kg:
            raise ValueError(f"Patient.fat_mass_kg ({p.fat_mass_kg:g} kg) must be below "
                             f"body_mass_kg ({p.body_mass_kg:g} kg)")
        floats = {n: float(getattr(p, n)) for n in _RANGES if getattr(p, n) is not None}
        return replace(p, **floats)


jax.tree_util.register_dataclass(
    Patient, data_fields=[f.name for f in fields(Patient) if f.name not in ("sex", "gh_deficient")],
    meta_fields=["sex", "gh_deficient"])

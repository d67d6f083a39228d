"""Quantities with units in scenario files: a small explicit unit table (no pint).

A value is either a number in the key's documented unit or a string ``"<number> <unit>"``
("10 years", "6 months", "60 mg", "2.5 BW"). Intervals also accept words ("daily",
"weekly", "twice weekly", "three times a week", "every 6 months", "every other day").
Unknown units raise :class:`ScenarioError` listing the accepted ones.

Conventions: 1 year = 365.25 days, 1 month = 1/12 year = 30.4375 days, 1 week = 7 days;
body weight BW = body mass × 9.81 m/s² (N).
"""
from __future__ import annotations

import difflib
import math
import re

__all__ = ["ScenarioError", "DAYS_PER_YEAR", "G", "TIME_DAYS", "parse_duration_years",
           "parse_duration_days", "parse_interval_days", "parse_dose", "parse_force",
           "parse_scalar", "SCALAR_UNITS", "dose_unit_spelling", "closest"]

DAYS_PER_YEAR = 365.25
G = 9.81  # m/s², as in `febone run` (body weight → N)


class ScenarioError(ValueError):
    """A bad scenario: ``source`` (file or protocol), ``key`` (e.g. ``treatments[2].unit``), ``line``."""

    def __init__(self, source: str, key: str, message: str, line: int | None = None):
        self.source, self.key, self.problem, self.line = source, key, message, line
        where = source if line is None else f"{source}, line {line}"
        where = f"{where}: {key}" if key else where
        super().__init__(f"{where}: {message}")


def closest(name: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    choices = [str(c) for c in choices]
    hit = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not hit:  # a documented key with a unit suffix ("age_years" -> "age")
        hit = sorted((c for c in choices if name.startswith(c + "_")), key=len, reverse=True)[:1]
    return f" (did you mean {hit[0]!r}?)" if hit else ""


# time units -> days
TIME_DAYS = {
    "day": 1.0, "days": 1.0, "d": 1.0,
    "week": 7.0, "weeks": 7.0, "wk": 7.0, "w": 7.0,
    "month": DAYS_PER_YEAR / 12, "months": DAYS_PER_YEAR / 12, "mo": DAYS_PER_YEAR / 12,
    "year": DAYS_PER_YEAR, "years": DAYS_PER_YEAR, "yr": DAYS_PER_YEAR, "yrs": DAYS_PER_YEAR,
    "y": DAYS_PER_YEAR,
}
_PERIOD_DAYS = {"day": 1.0, "week": 7.0, "month": DAYS_PER_YEAR / 12, "year": DAYS_PER_YEAR}
_COUNT = {"once": 1, "twice": 2, "thrice": 3, "one": 1, "two": 2, "three": 3, "four": 4,
          "five": 5, "six": 6, "seven": 7}
_ADVERB = {"daily": 1.0, "weekly": 7.0, "monthly": DAYS_PER_YEAR / 12, "yearly": DAYS_PER_YEAR,
           "annually": DAYS_PER_YEAR}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUM})\s*(.*?)\s*$")

# dose-unit spellings -> the spelling of the drug registry (febone.remodel.treatments.DRUGS
# decides which units a drug accepts and converts them; nothing is converted here)
_DOSE_SPELLING = {"μg": "ug", "µg": "ug", "mcg": "ug", "microgram": "ug", "micrograms": "ug",
                  "milligram": "mg", "milligrams": "mg", "gram": "g", "grams": "g",
                  "iu": "IU", "percent": "%"}
_PER_DAY = ("/day", "/d", " per day", " a day")

# single-valued quantities: kind -> {unit: factor to the documented unit}
SCALAR_UNITS = {
    "mass_kg": {"kg": 1.0, "g": 1e-3, "lb": 0.45359237, "lbs": 0.45359237},
    "testosterone_ng_dL": {"ng/dL": 1.0, "ng/dl": 1.0, "nmol/L": 28.84, "nmol/l": 28.84},
    "vitamin_d_ng_mL": {"ng/mL": 1.0, "ng/ml": 1.0, "nmol/L": 1 / 2.496, "nmol/l": 1 / 2.496},
    "calcium_mg_day": {"mg/day": 1.0, "mg/d": 1.0, "mg": 1.0, "g/day": 1000.0},
    "force_bw": {"BW": 1.0, "bw": 1.0, "body weight": 1.0, "body weights": 1.0,
                 "x BW": 1.0, "×BW": 1.0},
    "angle_deg": {"deg": 1.0, "degrees": 1.0, "°": 1.0},
}


def _number(value, source: str, key: str, unit_doc: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(source, key, f"expected a number ({unit_doc}) or a string with a unit; "
                                         f"got {type(value).__name__} {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ScenarioError(source, key, f"must be finite; got {value!r}")
    return x


def _split(value, source: str, key: str, example: str) -> tuple[float, str]:
    m = _QUANTITY.match(value)
    if not m:
        raise ScenarioError(source, key, f"cannot read {value!r} as '<number> <unit>' "
                                         f"(for example {example!r})")
    return float(m.group(1)), m.group(2)


def _unknown_unit(source, key, unit, accepted, example) -> ScenarioError:
    return ScenarioError(source, key, f"unknown unit {unit!r}{closest(unit, accepted)}; accepted: "
                                      f"{', '.join(accepted)} (for example {example!r})")


def parse_duration_days(value, source: str, key: str, *, number_unit: str = "years") -> float:
    """A duration or time point in days; plain numbers are in ``number_unit`` (years or days)."""
    if not isinstance(value, str):
        x = _number(value, source, key, number_unit)
        return x * TIME_DAYS[number_unit]
    x, unit = _split(value, source, key, "6 months")
    if unit == "":
        return x * TIME_DAYS[number_unit]
    if unit not in TIME_DAYS:
        raise _unknown_unit(source, key, unit, list(TIME_DAYS), "6 months")
    return x * TIME_DAYS[unit]


def parse_duration_years(value, source: str, key: str) -> float:
    """A duration or time point in years (plain numbers are years)."""
    return parse_duration_days(value, source, key, number_unit="years") / DAYS_PER_YEAR


_EVERY = re.compile(rf"^every\s+(?:({_NUM}|other)\s+)?([a-z]+)$")
_TIMES = re.compile(rf"^({_NUM}|[a-z]+)(?:\s+times)?\s+(?:a|per|each|/)?\s*(day|week|month|year)$")


def parse_interval_days(value, source: str, key: str) -> float:
    """Days between administrations: a number (days), ``"3.5 days"``, or words.

    Words: ``daily``, ``weekly``, ``monthly``, ``yearly`` (optionally ``once ...``),
    ``twice daily``, ``twice weekly``, ``3 times weekly``, ``three times a week``,
    ``every 6 months``, ``every 2 weeks``, ``every other day``.
    """
    if not isinstance(value, str):
        return _number(value, source, key, "days")
    text = " ".join(value.strip().lower().replace("/", " / ").split())
    text = text.replace(" / ", " per ")
    m = _QUANTITY.match(text)
    if m and m.group(2) in TIME_DAYS:
        return float(m.group(1)) * TIME_DAYS[m.group(2)]
    if m and m.group(2) == "":
        return float(m.group(1))
    words = text.split()
    if words and words[0] == "once" and len(words) == 2 and words[1] in _ADVERB:
        words = words[1:]
    if len(words) == 1 and words[0] in _ADVERB:
        return _ADVERB[words[0]]
    if len(words) == 2 and words[1] in _ADVERB and words[0] in _COUNT:  # "twice weekly"
        return _ADVERB[words[1]] / _COUNT[words[0]]
    if len(words) == 3 and words[1] == "times" and words[2] in _ADVERB:  # "3 times weekly"
        n = _COUNT.get(words[0]) or _count_number(words[0])
        if n:
            return _ADVERB[words[2]] / n
    m = _TIMES.match(text)  # "three times a week", "twice per day", "2 times per week"
    if m:
        n = _COUNT.get(m.group(1)) or _count_number(m.group(1))
        if n:
            return _PERIOD_DAYS[m.group(2)] / n
    m = _EVERY.match(text)  # "every 6 months", "every other day", "every week"
    if m:
        unit = m.group(2)
        unit_days = TIME_DAYS.get(unit)
        if unit_days is not None:
            n = 1.0 if m.group(1) is None else 2.0 if m.group(1) == "other" else float(m.group(1))
            return n * unit_days
    raise ScenarioError(source, key, f"cannot read the interval {value!r}; write days (7, "
                                     f"'3.5 days') or one of 'daily', 'weekly', 'monthly', "
                                     f"'twice weekly', '3 times weekly', 'every 6 months', "
                                     f"'every other day'")


def _count_number(word: str) -> float | None:
    try:
        n = float(word)
    except ValueError:
        return None
    return n if n > 0 else None


def parse_dose(value, source: str, key: str) -> tuple[float, str | None]:
    """``"60 mg"`` -> (60.0, "mg"); ``"50 µg/day"`` -> (50.0, "ug/day"); 0.15 -> (0.15, None).

    Returns the number and the unit in the drug registry's spelling (``µg``, ``μg``, ``mcg``
    -> ``ug``; ``per day`` -> ``/day``), or None for a plain number. Whether the drug accepts
    the unit is checked against ``DRUGS`` by the caller.
    """
    if not isinstance(value, str):
        return _number(value, source, key, "the unit given in `unit`"), None
    x, rest = _split(value, source, key, "60 mg")
    if not rest:
        return x, None
    return x, dose_unit_spelling(rest)


def dose_unit_spelling(unit: str) -> str:
    """Registry spelling of a dose unit: ``µg``/``μg``/``mcg`` -> ``ug``, ``per day`` -> ``/day``."""
    unit = " ".join(unit.split())
    per = ""
    for suffix in _PER_DAY:
        if unit.endswith(suffix) and unit[: -len(suffix)].strip():
            unit, per = unit[: -len(suffix)].strip(), "/day"
            break
    return _DOSE_SPELLING.get(unit, _DOSE_SPELLING.get(unit.lower(), unit)) + per


def parse_force(value, source: str, key: str, body_weight_N: float) -> tuple[float, float]:
    """A load magnitude: plain numbers and ``"2.5 BW"`` are body weights, ``"1750 N"`` newtons.

    Returns (body weights, newtons) for a body weight of ``body_weight_N``.
    """
    if not isinstance(value, str):
        bw = _number(value, source, key, "body weights")
        return bw, bw * body_weight_N
    x, unit = _split(value, source, key, "2.5 BW")
    if unit in ("N", "kN"):
        newton = x * (1000.0 if unit == "kN" else 1.0)
        return newton / body_weight_N, newton
    if unit == "" or unit in SCALAR_UNITS["force_bw"]:
        return x, x * body_weight_N
    raise _unknown_unit(source, key, unit, ["BW", "N", "kN"], "2.5 BW")


def parse_scalar(value, kind: str, source: str, key: str) -> float:
    """A single quantity of ``kind`` (see :data:`SCALAR_UNITS`) in its documented unit."""
    units = SCALAR_UNITS[kind]
    doc = kind.split("_", 1)[1] if "_" in kind else kind
    if not isinstance(value, str):
        return _number(value, source, key, doc)
    x, unit = _split(value, source, key, f"1 {next(iter(units))}")
    if unit == "":
        return x
    if unit not in units:
        raise _unknown_unit(source, key, unit, list(units), f"1 {next(iter(units))}")
    return x * units[unit]

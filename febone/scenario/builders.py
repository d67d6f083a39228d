"""Scenarios from named protocols, and a scenario over another duration.

``protocol("trt")`` builds a :class:`~febone.scenario.model.Scenario`;
``combine(["untreated-menopause", "calcium-vitamin-d"])`` (or ``protocol("a+b")``) merges
protocols: their patients must agree, their treatments are pooled (exact repeats kept once);
``study(["untreated-menopause", "early-hrt"])`` compares protocols on one bone. Each one is a
scenario document handed to :func:`~febone.scenario.parse.build_scenario`, so it is validated
like a scenario file; the protocols themselves are data (:mod:`febone.scenario.protocols`).
"""
from __future__ import annotations

import json

from .model import Scenario
from .parse import build_scenario
from .protocols import DEFAULT_STUDY

__all__ = ["protocol", "combine", "study", "default_study", "with_duration"]


def protocol(name: str) -> Scenario:
    """The :class:`~febone.scenario.model.Scenario` of a protocol (``"a+b"`` combines).

    Bone, loading and run settings are the scenario defaults (``docs/scenarios.md``).
    """
    return combine([name], name=name)


def combine(names, *, name: str | None = None) -> Scenario:
    """One scenario from several protocols (their patients must agree; treatments pool).

    Raises :class:`~febone.scenario.units.ScenarioError` (a ``ValueError``) for unknown names,
    incompatible patients (e.g. ``["trt", "anastrozole"]``: a man and a woman) or conflicting
    regimens of one drug.
    """
    names = [names] if isinstance(names, str) else list(names)
    label = name or "+".join(names)
    return build_scenario({"name": label, "protocols": names}, source=f"protocol {label}")


def study(names, *, duration_years=None, name: str | None = None) -> Scenario:
    """A comparison: one arm per protocol expression (``"trt+calcium-vitamin-d"`` combines).

    All arms share the bone, loading and run settings; ``duration_years`` defaults to the
    longest protocol default. ``scenario.runs()`` are the arms.
    """
    names = [names] if isinstance(names, str) else list(names)
    sim = {"compare": names}
    if duration_years is not None:
        sim["duration"] = duration_years
    label = name or " vs ".join(names)
    return build_scenario({"name": label, "simulation": sim}, source=f"study {label}")


def default_study() -> Scenario:
    """``febone run`` without arguments: untreated menopause vs early HRT on the bundled femur."""
    return study(DEFAULT_STUDY)


def with_duration(scenario: Scenario, years) -> Scenario:
    """The same scenario over ``years`` (number of years or ``"15 years"``), re-validated
    (a treatment that would start after the new end raises
    :class:`~febone.scenario.units.ScenarioError`)."""
    doc = json.loads(scenario.document)
    doc.setdefault("simulation", {})["duration"] = years
    return build_scenario(doc, source=scenario.source)


def with_spinup(scenario: Scenario, years) -> Scenario:
    """The same scenario with ``years`` of the patient's history replayed before time 0
    (number of years or ``"5 years"``; 0 = start from a young adult's homeostasis), re-validated."""
    doc = json.loads(scenario.document)
    doc.setdefault("simulation", {})["spinup"] = years
    return build_scenario(doc, source=scenario.source)

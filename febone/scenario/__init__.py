"""Scenarios: TOML schema, named protocols, validation (``docs/scenarios.md``).

* :func:`load_scenario` — a TOML file or text -> validated :class:`Scenario`.
* :data:`PROTOCOLS`, :func:`protocol`, :func:`combine`, :func:`study`, :func:`default_study` —
  the built-in protocols of science.md §4, by name, combined, compared; :func:`with_duration`
  re-validates a scenario over another duration.
* :class:`ScenarioError` — the ``ValueError`` every bad input raises (source, key path, line).
"""
from .model import BoneSpec, LoadCaseSpec, Scenario, StrengthSpec
from .parse import build_scenario, load_scenario
from .builders import combine, default_study, protocol, study, with_duration, with_spinup
from .protocols import DEFAULT_STUDY, PROTOCOLS, Protocol
from .units import ScenarioError, parse_duration_years, parse_interval_days

__all__ = ["load_scenario", "build_scenario", "Scenario", "BoneSpec", "LoadCaseSpec",
           "StrengthSpec", "ScenarioError", "PROTOCOLS", "Protocol", "protocol", "combine",
           "study", "default_study", "with_duration", "with_spinup", "DEFAULT_STUDY",
           "parse_duration_years",
           "parse_interval_days"]

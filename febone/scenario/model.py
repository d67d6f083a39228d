"""What a scenario is: a patient, a bone, habitual loading, treatments and the run settings.

Built by :func:`febone.scenario.load_scenario` (TOML) or :func:`febone.scenario.protocol`;
every field is validated there (and again by :func:`febone.scenario.with_duration`). Times:
scenario time 0 is the start of the simulation; the patient's age at time t (years) is
``patient.age_years + t``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..remodel.patient import Patient
from .units import DAYS_PER_YEAR

__all__ = ["BoneSpec", "LoadCaseSpec", "StrengthSpec", "Scenario"]


@dataclass(frozen=True)
class BoneSpec:
    """The bone to remodel.

    Attributes:
        mesh: a bundled mesh name (``"femur_coarse_hex8"``, see ``meshes/README.md``) or the
            absolute path of a mesh file (VTU, XDMF, .msh, .inp; mm).
        density_field: cell data with the apparent density, g/cm³.
        law: density→modulus law (``febone.material.laws.density_law`` name or ``"power:A,B"``).
        nu: Poisson's ratio.
        baseline_abmd: measured DXA at time 0, ((region, aBMD g/cm²), ...): the bone's
            density is scaled so that the model's aBMD at time 0 equals them
            (:func:`febone.remodel.remodel`'s ``baseline_abmd``).
    """

    mesh: str = "femur_coarse_hex8"
    density_field: str = "density_g_cm3"
    law: str = "morgan-femoral-neck"
    nu: float = 0.3
    baseline_abmd: tuple = ()

    @property
    def bundled(self) -> bool:
        """True for a bundled mesh name, False for a file path."""
        return not Path(self.mesh).is_absolute()

    def path(self) -> Path:
        """The mesh file (bundled meshes: ``meshes/<name>.vtu``; raises if it is missing)."""
        if self.bundled:
            from ..bones import bundled_path

            return Path(bundled_path(self.mesh))
        return Path(self.mesh)


@dataclass(frozen=True)
class LoadCaseSpec:
    """One habitual daily load case of the mechanical stimulus.

    The stimulus of an element is the weighted strain energy density
    Σ_i weight_i · SED_i, with SED_i from case i loaded by ``magnitude_N``.

    Attributes:
        name: label (default: the case).
        case: key of ``febone.strength.CASES`` (``stance``, ``sideways-fall``,
            ``vertebral-compression``, ``compression``).
        weight: share of the daily loading (the weights of a scenario sum to 1).
        magnitude_bw: resultant force, body weights.
        magnitude_N: the same in N (body weight = body mass × 9.81 m/s²).
        options: keyword arguments of the case function as ``((name, value), ...)``
            (e.g. ``(("angle_deg", 20.0),)`` for stance).
    """

    name: str
    case: str
    weight: float
    magnitude_bw: float
    magnitude_N: float
    options: tuple = ()

    def build(self):
        """The :class:`febone.strength.LoadCase` (pose and node sets) of this case."""
        from ..strength import CASES

        return CASES[self.case](**dict(self.options))


@dataclass(frozen=True)
class StrengthSpec:
    """Fracture-load outputs at every output time.

    Attributes:
        cases: keys of ``febone.strength.CASES``.
        methods: keys of ``febone.strength.METHODS`` (``pistoia``, ``pistoia-smooth``,
            ``strain-limit``, ``nonlinear``).
    """

    cases: tuple = ("stance", "sideways-fall")
    methods: tuple = ("pistoia", "strain-limit")


@dataclass(frozen=True)
class Scenario:
    """A validated remodelling scenario (see ``docs/scenarios.md``).

    Attributes:
        name: label of the scenario (file stem, protocol expression or ``name`` key).
        description: free text.
        patient: the patient at the scenario start.
        bone: the bone.
        load_cases: habitual daily load cases (weights sum to 1).
        strength: fracture-load outputs.
        treatments: every regimen (protocols, ``[[treatments]]`` and ``[lifestyle]``).
        duration_years: length of the run, years.
        output_interval_years: time between outputs, years.
        mechanical_step_days: days between FE updates of the stimulus (whole days).
        spinup_years: the patient's history replayed before time 0, years, or None for the
            automatic length (:func:`febone.remodel.history.spinup_years`; 0 = none).
        protocols: names of the protocols the scenario was built from.
        arms: scenarios to compare (one per ``simulation.compare`` entry, then one per
            ``[[arms]]`` block: the file's shared tables plus the arm's own treatments, patient
            and lifestyle keys), each a complete scenario with the same bone, loading and run
            settings; empty when nothing is compared.
        source: where it came from (file path or ``protocol ...``).
        document: the parsed input as JSON (what :meth:`to_toml` writes back).
        source_text: the TOML text that was read (None when built from protocols).
    """

    name: str
    description: str
    patient: Patient
    bone: BoneSpec
    load_cases: tuple
    strength: StrengthSpec
    treatments: tuple
    duration_years: float
    output_interval_years: float
    mechanical_step_days: int
    protocols: tuple = ()
    arms: tuple = ()
    spinup_years: float | None = None
    source: str = field(default="", compare=False)
    document: str = field(default="{}", compare=False, repr=False)
    source_text: str | None = field(default=None, compare=False, repr=False)

    @property
    def duration_days(self) -> int:
        """Simulated days, ``round(duration_years · 365.25)``."""
        return int(round(self.duration_years * DAYS_PER_YEAR))

    def output_times_years(self) -> tuple:
        """Output times, years: 0, Δ, 2Δ, ... and the end of the run (always included)."""
        n = int(math.floor(self.duration_years / self.output_interval_years + 1e-9))
        times = [k * self.output_interval_years for k in range(n + 1)]
        if self.duration_years - times[-1] > 1e-9:
            times.append(self.duration_years)
        return tuple(times)

    def runs(self) -> tuple:
        """The scenarios to simulate: the arms when comparing, else ``(self,)``."""
        return self.arms if self.arms else (self,)

    def to_dict(self) -> dict:
        """JSON-ready record of what is run (resolved values, canonical units, ``digest``)."""
        d = self._resolved()
        d["digest"] = self.digest
        d["source"] = self.source
        return d

    def _resolved(self) -> dict:
        return {
            "name": self.name, "description": self.description,
            "protocols": list(self.protocols),
            "patient": asdict(self.patient),
            "bone": asdict(self.bone),
            "load_cases": [{**asdict(lc), "options": dict(lc.options)} for lc in self.load_cases],
            "strength": {"cases": list(self.strength.cases), "methods": list(self.strength.methods)},
            "treatments": [asdict(t) for t in self.treatments],
            "duration_years": self.duration_years,
            "output_interval_years": self.output_interval_years,
            "mechanical_step_days": self.mechanical_step_days,
            "spinup_years": self.spinup_years,
            "arms": [a._resolved() for a in self.arms],
        }

    @property
    def digest(self) -> str:
        """SHA-256 of the resolved scenario: equal digests mean the same run (for ``--resume``)."""
        text = json.dumps(self._resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_toml(self) -> str:
        """TOML text that :func:`~febone.scenario.load_scenario` reads back to an equal scenario."""
        from .tomlw import dumps

        doc = json.loads(self.document)
        header = f"febone scenario {self.name!r}"
        if self.source:
            header += f" (from {self.source})"
        return dumps(doc, header=header)

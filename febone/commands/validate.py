"""``febone validate``: the model against published trials, from scenario files in the package.

    febone validate                       # every trial in febone/data/validation, writes docs/validation.md
    febone validate --quick               # the short CI subset
    febone validate --subset freedom fit --out table.md --json table.json
    febone validate --list                # the trials and their outcomes, nothing run

Each file in ``febone/data/validation/`` is one published trial: a scenario file
(``docs/scenarios.md``: usually ``[[arms]]``, drug against placebo) with a ``[validation]`` table
that ``febone run`` ignores and this command reads — the citation and the trial's reported
outcomes, each a key of the run's results (``regions.total_hip.change_pct``) at a time, in one
arm or as the difference of two arms. The scenario is run as ``febone run`` runs it (on the
outcome's bone, default the scenario's) and the model's figure is compared with the trial's:
inside when |model − trial| ≤ max(1.5 points, 50 % of |trial|).

A trial file's ``[validation]`` table:

    [validation]
    citation = "Cummings SR, ... N Engl J Med 2009;361:756-765"   # required
    doi = "10.1056/NEJMoa0809493"
    group = "drug"                     # required: hormone, drug or lifestyle
    population = "7868 women aged 60-90 ..."
    notes = "what the trial reported, where the model's output differs from it"
    quick = false                      # true: part of --quick (CI)

    [[validation.outcomes]]            # one block per reported figure
    label = "lumbar spine BMD, 36 months"
    key = "regions.vertebral_body.change_pct"   # a febone run --json key (per output time)
    time = "3 years"                   # an output time of the run
    arm = "denosumab"                  # needed when the scenario has several arms
    minus = "placebo"                  # optional: drug − placebo, in points
    trial = 9.2                        # the trial's figure, %
    bone = "vertebra_coarse_hex8"      # optional: the bone it is read on (default the file's)
"""
from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..files import atomic_write_json, atomic_write_text, check_writable

__all__ = ["register", "run", "Outcome", "Trial", "band", "inside", "trial_files", "load_trial",
           "run_trial", "validate", "markdown_table", "text_table", "TRIALS_DIR"]

#: The trial files shipped in the package.
TRIALS_DIR = Path(__file__).resolve().parents[1] / "data" / "validation"
#: Band floor, percentage points, and band fraction of the trial's change.
BAND_FLOOR_POINTS = 1.5
BAND_FRACTION = 0.5
_GROUPS = ("hormone", "drug", "lifestyle")
_VALIDATION_KEYS = ("citation", "doi", "group", "population", "notes", "quick", "outcomes")
_OUTCOME_KEYS = ("label", "key", "time", "arm", "minus", "trial", "bone")


def band(trial: float) -> float:
    """Half-width of the band around a trial's figure, percentage points:
    max(1.5, 0.5 · |trial|)."""
    return max(BAND_FLOOR_POINTS, BAND_FRACTION * abs(float(trial)))


def inside(model: float, trial: float) -> bool:
    """True when |model − trial| ≤ :func:`band` (trial); False for a NaN model figure."""
    return bool(abs(float(model) - float(trial)) <= band(trial) + 1e-12)


@dataclass(frozen=True)
class Outcome:
    """One reported figure of a trial.

    Attributes:
        label: what it is, e.g. ``"total hip aBMD, 36 months, denosumab − placebo"``.
        key: dotted path into one arm's results (``febone run --json`` keys), e.g.
            ``regions.total_hip.change_pct``; the value is the list over output times.
        time_years: output time read, years from the start of the run.
        arm: the arm it is read from.
        minus: the arm subtracted (a drug − placebo difference), or None.
        trial: the trial's figure (%, or percentage points for a difference).
        bone: bundled bone or mesh path it is read on (None: the scenario's bone).
    """

    label: str
    key: str
    time_years: float
    arm: str
    minus: str | None
    trial: float
    bone: str | None = None

    @property
    def band(self) -> float:
        return band(self.trial)


@dataclass(frozen=True)
class Trial:
    """One trial file: its scenario, citation and outcomes."""

    name: str
    path: str
    scenario: object
    citation: str
    group: str
    outcomes: tuple
    doi: str = ""
    population: str = ""
    notes: str = ""
    quick: bool = False

    @property
    def sexes(self) -> tuple:
        return tuple(sorted({a.patient.sex for a in self.scenario.runs()}))


def trial_files(directory=None) -> list:
    """The trial files (``*.toml``) of ``directory`` (default :data:`TRIALS_DIR`), sorted."""
    directory = TRIALS_DIR if directory is None else Path(directory)
    return sorted(directory.glob("*.toml"))


def _err(path, key: str, message: str) -> ValueError:
    from ..scenario.units import ScenarioError

    return ScenarioError(str(path), key, message)


def load_trial(path) -> Trial:
    """A :class:`Trial` from a trial file (a scenario file with a ``[validation]`` table).

    Raises :class:`~febone.scenario.units.ScenarioError` (a ``ValueError``) naming the file and
    key: a missing citation or outcome figure, an unknown key, an arm the scenario lacks, a time
    that is not an output time of the run.
    """
    from ..scenario import load_scenario
    from ..scenario.units import parse_duration_years

    path = Path(path)
    scenario = load_scenario(path)
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    v = doc.get("validation")
    if not isinstance(v, dict):
        raise _err(path, "validation", "missing: a trial file needs a [validation] table with the "
                                       "citation and [[validation.outcomes]] (see febone validate "
                                       "--help)")
    for k in v:
        if k not in _VALIDATION_KEYS:
            raise _err(path, f"validation.{k}", f"unknown key {k!r}; keys allowed here: "
                                                f"{', '.join(_VALIDATION_KEYS)}")
    for k in ("citation", "group"):
        if not isinstance(v.get(k), str) or not v[k].strip():
            raise _err(path, f"validation.{k}", "missing or empty: give a string")
    if v["group"] not in _GROUPS:
        raise _err(path, "validation.group", f"{v['group']!r} is not one of {', '.join(_GROUPS)}")
    arms = [a.name for a in scenario.runs()]
    times = scenario.output_times_years()
    raw = v.get("outcomes")
    if not isinstance(raw, list) or not raw or not all(isinstance(o, dict) for o in raw):
        raise _err(path, "validation.outcomes", "give at least one [[validation.outcomes]] table")
    outcomes = []
    for i, o in enumerate(raw):
        key = f"validation.outcomes[{i}]"
        for k in o:
            if k not in _OUTCOME_KEYS:
                raise _err(path, f"{key}.{k}", f"unknown key {k!r}; keys allowed here: "
                                               f"{', '.join(_OUTCOME_KEYS)}")
        for k in ("label", "key", "time", "trial"):
            if k not in o:
                raise _err(path, f"{key}.{k}", "missing")
        trial = o["trial"]
        if isinstance(trial, bool) or not isinstance(trial, (int, float)) or not math.isfinite(trial):
            raise _err(path, f"{key}.trial", f"the trial's figure must be a number (%); got "
                                             f"{trial!r}")
        t = parse_duration_years(o["time"], str(path), f"{key}.time")
        if not any(abs(t - x) < 1e-6 for x in times):
            raise _err(path, f"{key}.time", f"{t:g} years is not an output time of the run "
                                            f"({', '.join(f'{x:g}' for x in times)} years); set "
                                            f"[simulation] output_interval or duration so it is")
        default_arm = arms[0] if len(arms) == 1 else None
        arm = o.get("arm", default_arm)
        if arm is None:
            raise _err(path, f"{key}.arm", f"missing: the scenario has arms {arms}; name one")
        for k, name in (("arm", arm), ("minus", o.get("minus"))):
            if name is not None and name not in arms:
                raise _err(path, f"{key}.{k}", f"no arm {name!r}; the scenario's arms: "
                                               f"{', '.join(arms)}")
        if o.get("minus") == arm:
            raise _err(path, f"{key}.minus", "an arm minus itself is 0; name the comparator arm")
        outcomes.append(Outcome(str(o["label"]), str(o["key"]), float(t), arm, o.get("minus"),
                                float(trial), o.get("bone")))
    quick = v.get("quick", False)
    if not isinstance(quick, bool):
        raise _err(path, "validation.quick", f"must be true or false; got {quick!r}")
    return Trial(name=path.stem, path=str(path), scenario=scenario, citation=v["citation"].strip(),
                 group=v["group"], outcomes=tuple(outcomes), doi=str(v.get("doi", "")),
                 population=str(v.get("population", "")), notes=str(v.get("notes", "")),
                 quick=quick)


def read_key(arm_summary: dict, key: str, time_years: float) -> float:
    """The value of dotted ``key`` at ``time_years`` in one arm's results (``summary()``)."""
    node = arm_summary
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            have = ", ".join(node) if isinstance(node, dict) else type(node).__name__
            raise ValueError(f"the run has no {key!r} (no {part!r}; there: {have}); fix the "
                             f"outcome's key")
        node = node[part]
    times = arm_summary["time_years"]
    idx = next((i for i, x in enumerate(times) if abs(x - time_years) < 1e-6), None)
    if idx is None:
        raise ValueError(f"no output at {time_years:g} years (outputs at {times})")
    return float(node[idx])


@dataclass
class Row:
    """One outcome's result."""

    trial: str
    group: str
    sexes: tuple
    citation: str
    label: str
    key: str
    time_years: float
    arm: str
    minus: str | None
    bone: str
    trial_value: float
    model_value: float
    band: float
    inside: bool
    run_seconds: float = 0.0


def _with_bone(scenario, bone):
    from ..scenario import build_scenario

    if bone is None or bone == scenario.bone.mesh:
        return scenario
    doc = json.loads(scenario.document)
    doc.setdefault("bone", {})["mesh"] = bone
    doc["bone"].pop("law", None)   # the bone's own default law
    doc.pop("load_cases", None)    # ... and its default habitual loading and strength cases
    if doc.get("strength", {}).get("cases", None) != []:
        doc.pop("strength", None)  # no fracture loads stays no fracture loads
    return build_scenario(doc, source=scenario.source)


def run_trial(trial: Trial, *, runner=None, **settings) -> list:
    """Run ``trial`` (once per bone its outcomes need) and return its :class:`Row` s.

    ``runner(scenario) -> {arm: summary dict}`` replaces the FE run (tests); default
    :func:`febone.remodel.runner.run_scenario` with ``settings`` and no strength outputs.
    """
    if runner is None:
        def runner(sc):
            from ..remodel.runner import run_scenario

            res = run_scenario(sc, **settings)
            return {name: r.summary() for name, r in res.arms.items()}
    rows = []
    bones = list(dict.fromkeys(o.bone or trial.scenario.bone.mesh for o in trial.outcomes))
    for bone in bones:
        sc = _with_bone(trial.scenario, bone)
        start = time.perf_counter()
        arms = runner(sc)
        seconds = time.perf_counter() - start
        for o in trial.outcomes:
            if (o.bone or trial.scenario.bone.mesh) != bone:
                continue
            model = read_key(arms[o.arm], o.key, o.time_years)
            if o.minus is not None:
                model -= read_key(arms[o.minus], o.key, o.time_years)
            rows.append(Row(trial.name, trial.group, trial.sexes, trial.citation, o.label, o.key,
                            o.time_years, o.arm, o.minus, Path(bone).stem, o.trial, model,
                            o.band, inside(model, o.trial), seconds))
    return rows


def select(trials, subset=None, quick=False) -> list:
    """The trials named in ``subset`` (file stems), or the ``quick = true`` ones, or all."""
    if subset:
        names = [t.name for t in trials]
        missing = [s for s in subset if s not in names]
        if missing:
            raise ValueError(f"no trial {missing} in the validation set; choose from "
                             f"{', '.join(names)} (febone validate --list)")
        return [t for t in trials if t.name in subset]
    if quick:
        return [t for t in trials if t.quick]
    return list(trials)


def release_compiled_programs() -> None:
    """Drop JAX's in-memory compiled programs (``jax.clear_caches``) between trials.

    Each trial compiles its own set of programs (bones, arms, solver shapes), and XLA:CPU maps
    every executable's code into the process: one trial adds about 11,000 memory mappings, so
    the sixth trial of a table run in one process hit Linux's default limit of 65,530
    (``vm.max_map_count``) and LLVM failed with "Cannot allocate memory" (measured on the
    2-core CI machine: 34,000 mappings after three trials). With the persistent compilation
    cache on (as in ``febone validate``), a program needed again is loaded from disk."""
    import jax

    jax.clear_caches()


def validate(trials, *, runner=None, progress=None, spinup_years=None, **settings) -> dict:
    """Run ``trials`` and return ``{"rows": [Row...], "wall_seconds", "device", "inside",
    "total", "spinup_years"}``.

    ``spinup_years`` replaces every trial's replayed history (years; None = each patient's own,
    as ``febone run`` does): a shorter history is cheaper but no longer the trial's patient, and
    the table says so."""
    from ..device import device_description
    from ..scenario.builders import with_spinup

    if spinup_years is not None:
        trials = [replace(t, scenario=with_spinup(t.scenario, float(spinup_years)))
                  for t in trials]
    start = time.perf_counter()
    rows = []
    for t in trials:
        if progress:
            progress(t)
        rows += run_trial(t, runner=runner, **settings)
        release_compiled_programs()
    n_in = sum(r.inside for r in rows)
    return {"rows": rows, "inside": n_in, "total": len(rows),
            "wall_seconds": time.perf_counter() - start, "device": device_description(),
            "spinup_years": spinup_years}


def _history_note(result: dict) -> str:
    """What the table's patients start from ("" when each trial replays its own history)."""
    years = result.get("spinup_years")
    if years is None:
        return ""
    return (f"History overridden: every patient replays {years:g} years before time 0 "
            f"(--spinup), not the trial's own; the figures do not validate the model.")


def _what(r: Row) -> str:
    return f"{r.arm} − {r.minus}" if r.minus else r.arm


def text_table(result: dict) -> str:
    """The table as plain text (what the command prints)."""
    head = (f"{'trial':14s} {'outcome':52s} {'arm':28s} {'trial':>7s} {'model':>7s} "
            f"{'band':>6s}  in?")
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{r.trial:14.14s} {r.label:52.52s} {_what(r):28.28s} {r.trial_value:+7.1f} "
                     f"{r.model_value:+7.1f} {r.band:6.1f}  {'in' if r.inside else 'OUT'}")
    lines.append(f"{result['inside']} of {result['total']} inside the band (± max(1.5 points, "
                 f"50 % of the trial's change)); {result['wall_seconds']:.0f} s on "
                 f"{result['device']}")
    if _history_note(result):
        lines.append(_history_note(result))
    return "\n".join(lines)


def markdown_table(result: dict, trials=()) -> str:
    """``docs/validation.md``: the table, the band, the run time and the citations."""
    out = ["# Clinical validation", "",
           "Written by `febone validate` from the trial files in `febone/data/validation/` "
           "(scenario files with a `[validation]` table; see `febone validate --help`). Each "
           "trial is run as `febone run` runs it, on the bundled coarse bones (lumbar spine: "
           "`vertebra_coarse_hex8`, hip: `femur_coarse_hex8`). A model figure is **in** when "
           "|model − trial| ≤ max(1.5 points, 50 % of |trial|). Figures are % change from "
           "baseline at the time given (or the difference in points between two arms). The "
           "model is not tuned to this table.", "",
           f"**{result['inside']} of {result['total']} outcomes inside the band.** Run time "
           f"{result['wall_seconds']:.0f} s on {result['device']}." + (
               " " + _history_note(result) if _history_note(result) else ""), "",
           "| trial | group | sex | outcome | arm | bone | trial % | model % | band ± | in? "
           "| run s |",
           "|---|---|---|---|---|---|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        out.append(f"| {r.trial} | {r.group} | {'/'.join(r.sexes)} | {r.label} | {_what(r)} | "
                   f"{r.bone} | {r.trial_value:+.1f} | {r.model_value:+.1f} | {r.band:.1f} | "
                   f"{'in' if r.inside else '**out**'} | {r.run_seconds:.0f} |")
    out += ["", "## Trials", ""]
    seen = set()
    for t in trials:
        if t.name in seen:
            continue
        seen.add(t.name)
        doi = f" doi:{t.doi}" if t.doi else ""
        out.append(f"- **{t.name}** — {t.citation}{doi}. {t.population}".rstrip())
        if t.notes:
            out.append(f"  {t.notes}")
    return "\n".join(out) + "\n"


def result_json(result: dict) -> dict:
    return {**{k: v for k, v in result.items() if k != "rows"},
            "band": {"floor_points": BAND_FLOOR_POINTS, "fraction": BAND_FRACTION},
            "rows": [asdict(r) for r in result["rows"]]}


def run(args) -> int:
    import sys

    files = trial_files(args.dir)
    if not files:
        raise ValueError(f"no trial files (*.toml) in {args.dir or TRIALS_DIR}")
    trials = [load_trial(f) for f in files]
    chosen = select(trials, args.subset, args.quick)
    if args.list:
        for t in chosen:
            print(f"{t.name:16s} {t.group:9s} {'/'.join(t.sexes):12s} {t.citation}")
            for o in t.outcomes:
                what = f"{o.arm} − {o.minus}" if o.minus else o.arm
                print(f"    {o.label} [{what}]: {o.trial:+.1f} %")
        return 0
    if not chosen:
        raise ValueError("no trial selected (no trial file has quick = true); use --subset NAME")
    out = Path(args.out)
    check_writable(out)
    if args.json is not None:
        check_writable(args.json)
    result = validate(chosen, progress=lambda t: print(f"running {t.name} ...", file=sys.stderr,
                                                       flush=True),
                      preconditioner=args.preconditioner, spinup_years=args.spinup)
    print(text_table(result))
    atomic_write_text(out, markdown_table(result, chosen))
    print(f"table written to {out}")
    if args.json is not None:
        atomic_write_json(args.json, result_json(result))
    return 0


def register(sub) -> None:
    import argparse

    p = sub.add_parser("validate", help="the model against published trials (writes "
                                        "docs/validation.md)",
                       description="The model against published trials, from scenario files "
                                   "in the package.\n\n" + __doc__.split("\n\n", 2)[2],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subset", nargs="+", metavar="NAME", help="only these trials (file stems; "
                                                               "--list shows them)")
    p.add_argument("--quick", action="store_true", help="the short subset CI runs (trial files "
                                                        "with quick = true)")
    p.add_argument("--list", action="store_true", help="list the trials and outcomes; run nothing")
    p.add_argument("--out", default="docs/validation.md", metavar="FILE",
                   help="markdown table to write (default docs/validation.md)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the table as JSON")
    p.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)  # other trial files
    p.add_argument("--preconditioner", default="auto", choices=["auto", "amg", "jacobi"],
                   help="CG preconditioner of the FE solves (default auto)")
    p.add_argument("--spinup", type=float, metavar="YEARS",
                   help="replay YEARS of history for every patient instead of each trial's own "
                        "(cheaper; the table then says it validates nothing)")
    p.set_defaults(func=run)

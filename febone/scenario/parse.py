"""Scenario documents (TOML) -> validated :class:`~febone.scenario.model.Scenario`.

One path for everything: a TOML file, a TOML string, a named protocol and a combination of
protocols are all documents (dicts with the keys of ``docs/scenarios.md``) handed to
:func:`build_scenario`. Every problem raises :class:`~febone.scenario.units.ScenarioError`
(a ``ValueError``) naming the source, the key path (``treatments[2].unit``, 0-based indices),
the line where it can be found, and the fix.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import re
import tomllib
from pathlib import Path

from ..remodel.patient import SEXES, Patient
from ..remodel.treatments import DRUGS, Treatment
from .ct_bone import CT_KEYS, ct_bone_mesh
from .doses import check_dose
from .model import BoneSpec, LoadCaseSpec, Scenario, StrengthSpec
from .units import (DAYS_PER_YEAR, G, ScenarioError, closest, dose_unit_spelling, parse_dose,
                    parse_duration_days, parse_duration_years, parse_force, parse_interval_days,
                    parse_scalar)

log = logging.getLogger(__name__)

__all__ = ["load_scenario", "build_scenario", "KEYS", "PATIENT_KEYS", "DEFAULTS"]

#: Patient keys in a scenario file -> (Patient field, unit kind)
PATIENT_KEYS = {
    "sex": ("sex", None), "age": ("age_years", "years"),
    "menopause_age": ("menopause_age_years", "years"), "body_mass": ("body_mass_kg", "mass_kg"),
    "fat_mass": ("fat_mass_kg", "mass_kg"), "testosterone": ("testosterone_ng_dL", "testosterone_ng_dL"),
    "gh_deficient": ("gh_deficient", None), "vitamin_d": ("vitamin_D_ng_mL", "vitamin_d_ng_mL"),
    "calcium": ("calcium_mg_day", "calcium_mg_day"),
}
_TREATMENT_KEYS = ("drug", "dose", "unit", "interval", "start", "start_after_menopause", "stop",
                   "duration")
_EXERCISE_KEYS = ("programme", "load_increase", "interval", "start", "start_after_menopause",
                  "stop", "duration")
_SUPPLEMENT_KEYS = ("dose", "unit", "interval", "start", "start_after_menopause", "stop",
                    "duration")
#: Allowed keys of every table (load cases also take the keyword arguments of their case).
KEYS = {
    "": ("name", "description", "protocols", "patient", "bone", "load_cases", "strength",
         "treatments", "lifestyle", "simulation", "arms", "validation"),
    "patient": tuple(PATIENT_KEYS),
    "bone": ("mesh", "density_field", "law", "nu", *CT_KEYS) + tuple(
        f"{site}_{kind}" for site in ("femoral_neck", "total_hip", "lumbar_spine")
        for kind in ("abmd", "t_score")),
    "load_cases": ("case", "name", "weight", "magnitude"),
    "strength": ("cases", "methods"),
    "treatments": _TREATMENT_KEYS,
    "lifestyle": ("exercise", "calcium", "vitamin_d"),
    "lifestyle.exercise": _EXERCISE_KEYS,
    "lifestyle.supplement": _SUPPLEMENT_KEYS,
    "simulation": ("duration", "output_interval", "mechanical_step", "compare", "spinup"),
    "arms": ("name", "description", "protocols", "patient", "treatments", "lifestyle"),
}

#: Defaults that do not depend on the bone (the bone-dependent ones are in _BONE_KINDS).
DEFAULTS = {
    "bone.mesh": "femur_coarse_hex8", "bone.density_field": "density_g_cm3", "bone.nu": 0.3,
    "strength.methods": ("pistoia", "strain-limit"),
    "simulation.duration_years": 10.0, "simulation.output_interval_years": 1.0,
    "simulation.mechanical_step_days": 30,
}
# per bone kind: default law, habitual load cases, strength cases, cases its node sets allow
_BONE_KINDS = {
    "femur": dict(law="morgan-femoral-neck", load=("stance",), strength=("stance", "sideways-fall"),
                  cases=("stance", "sideways-fall")),
    "vertebra": dict(law="morgan-vertebra", load=("vertebral-compression",),
                     strength=("vertebral-compression",), cases=("vertebral-compression",)),
    "trabecular": dict(law=None, load=None, strength=("compression",), cases=("compression",)),
}
#: Default habitual magnitude per case, body weights: hip contact in stance 2.5–3 BW
#: (science.md §6, lower end); lumbar compression in relaxed standing ≈ 1 BW (Wilke et al.
#: 1999, Spine 24:755: 0.5 MPa intradiscal pressure). Other cases need an explicit magnitude.
DEFAULT_MAGNITUDE_BW = {"stance": 2.5, "vertebral-compression": 1.0}
#: Oldest age a run may reach, years (the Patient's age range; hormone curves end there).
MAX_AGE_YEARS = 110.0
_MESH_SUFFIXES = (".vtu", ".vtk", ".xdmf", ".xmf", ".msh", ".inp", ".med", ".mesh")


class _Ctx:
    """Error factory for one document: source name, text (for line numbers), key prefix."""

    def __init__(self, source: str, text: str | None, prefix: str = "", line_key: str | None = None):
        self.source, self.text, self.prefix, self.line_key = source, text, prefix, line_key

    def err(self, key: str, message: str) -> ScenarioError:
        line = _line_of(self.text, self.line_key if self.line_key is not None else key)
        return ScenarioError(self.source, self.prefix + key, message, line=line)

    def sub(self, prefix: str, line_key: str = "") -> "_Ctx":
        """Errors keyed ``prefix + key``, located at ``line_key`` ("" for no line)."""
        return _Ctx(self.source, self.text, self.prefix + prefix,
                    line_key if self.line_key is None else self.line_key)


_PATH = re.compile(r"^(\w+)(?:\[(\d+)\])?(?:\.(\w+))?")
_ARRAYS = ("treatments", "load_cases", "arms")
_TABLES = ("patient", "bone", "strength", "lifestyle", "simulation")


def _line_of(text: str | None, key: str) -> int | None:
    """1-based line of ``key`` (``treatments[2].unit``, ``patient.sex``, ``name``) in ``text``."""
    arm = re.match(r"^arms\[(\d+)\]\.(treatments|patient|lifestyle)(?:\[(\d+)\])?(?:\.(\w+))?", key or "")
    if text and arm:
        return _line_in_arm(text, int(arm.group(1)), arm.group(2), int(arm.group(3) or 0),
                            arm.group(4))
    m = _PATH.match(key or "")
    if not text or not m:
        return None
    head, index, sub = m.groups()
    lines = text.splitlines()
    if head in _ARRAYS or head in _TABLES:
        pattern = rf"^\s*\[\[\s*{head}\s*\]\]" if head in _ARRAYS else rf"^\s*\[\s*{head}\s*\]"
        hits = [i for i, ln in enumerate(lines) if re.match(pattern, ln)]
        n = int(index or 0) if head in _ARRAYS else 0
        if len(hits) <= n:
            return None
        start = hits[n]
    elif head in KEYS[""]:
        start, sub = -1, head
    else:
        return None
    for i in range(start + 1, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            break
        if sub and re.match(rf"^\s*{re.escape(sub)}\s*=", lines[i]):
            return i + 1
    return start + 1 if start >= 0 else None


def _line_in_arm(text: str, arm: int, table: str, index: int, sub: str | None) -> int | None:
    """1-based line of ``arms[arm].<table>[index].<sub>``: the key, else the table's header, else
    the arm's ``[[arms]]`` header."""
    lines = text.splitlines()
    heads = [i for i, ln in enumerate(lines) if re.match(r"^\s*\[\[\s*arms\s*\]\]", ln)]
    if len(heads) <= arm:
        return None
    end = heads[arm + 1] if arm + 1 < len(heads) else len(lines)
    pattern = (rf"^\s*\[\[\s*arms\.{table}\s*\]\]" if table == "treatments"
               else rf"^\s*\[\s*arms\.{table}\s*\]")
    hits = [i for i in range(heads[arm], end) if re.match(pattern, lines[i])]
    if len(hits) <= index:
        return heads[arm] + 1
    start = hits[index]
    for i in range(start + 1, end):
        if re.match(r"^\s*\[", lines[i]):
            break
        if sub and re.match(rf"^\s*{re.escape(sub)}\s*=", lines[i]):
            return i + 1
    return start + 1


# ---------------------------------------------------------------------------------------------
# entry points


def load_scenario(path_or_text) -> Scenario:
    """A validated :class:`Scenario` from a TOML file (``str`` or ``Path``) or TOML text.

    A ``str`` containing a newline or ``=`` is TOML text; any other ``str`` is a path.
    Relative mesh paths are resolved against the file's folder (the working directory for
    text). Raises :class:`~febone.scenario.units.ScenarioError` (a ``ValueError``) on any
    problem, naming the file, the key path, the line and the fix.
    """
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in
                                          path_or_text and "=" not in path_or_text
                                          and path_or_text.strip()):
        path = Path(path_or_text)
        if not path.is_file():
            raise ScenarioError(str(path), "", "no such scenario file (give a .toml path or TOML "
                                               "text; `febone.scenario.PROTOCOLS` lists the "
                                               "built-in protocols)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            line = err.object[:err.start].count(b"\n") + 1
            byte = err.object[err.start]
            raise ScenarioError(str(path), "", f"not UTF-8 text (byte {byte:#04x}); scenario "
                                               f"files are UTF-8 TOML: save it as UTF-8 (e.g. "
                                               f"iconv -f latin1 -t utf-8 {path} > "
                                               f"{path.stem}_utf8.toml)", line=line) from None
        source, base_dir, default_name = str(path), path.resolve().parent, path.stem
    elif isinstance(path_or_text, str):
        text, source, base_dir, default_name = path_or_text, "<scenario text>", Path.cwd(), "scenario"
    else:
        raise TypeError(f"load_scenario takes a path or TOML text; got {type(path_or_text).__name__}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(source, "", f"not valid TOML: {err}; check the quoting, brackets and "
                                        f"'key = value' syntax there") from None
    doc.setdefault("name", default_name)
    return build_scenario(doc, source=source, text=text, base_dir=base_dir)


def build_scenario(doc: dict, *, source: str, text: str | None = None,
                   base_dir: Path | None = None) -> Scenario:
    """A validated :class:`Scenario` from a parsed document (the dict ``tomllib`` returns)."""
    ctx = _Ctx(source, text)
    if not isinstance(doc, dict):
        raise ctx.err("", f"a scenario document is a table; got {type(doc).__name__}")
    doc = copy.deepcopy(doc)
    _check_keys(doc, KEYS[""], ctx, "")
    base_dir = Path.cwd() if base_dir is None else base_dir
    return _build(doc, ctx, base_dir)


# ---------------------------------------------------------------------------------------------
# helpers


def _check_keys(table: dict, allowed, ctx: _Ctx, path: str, extra=()) -> None:
    allowed = tuple(allowed) + tuple(extra)
    for k in table:
        if k not in allowed:
            where = f"{path}.{k}" if path else k
            raise ctx.err(where, f"unknown key {k!r}{closest(k, allowed)}; keys allowed here: "
                                 f"{', '.join(allowed)}")


def _table(doc: dict, key: str, ctx: _Ctx) -> dict:
    v = doc.get(key, {})
    if not isinstance(v, dict):
        raise ctx.err(key, f"must be a table ([{key}] with 'key = value' lines); got "
                           f"{type(v).__name__} {v!r}")
    return v


def _array_of_tables(doc: dict, key: str, ctx: _Ctx) -> list:
    v = doc.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ctx.err(key, f"must be an array of tables (one [[{key}]] block per entry); got "
                           f"{type(v).__name__}")
    return v


def _str(v, ctx: _Ctx, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ctx.err(key, f"must be a non-empty string; got {type(v).__name__} {v!r}")
    return v.strip()


def _str_list(v, ctx: _Ctx, key: str) -> list:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ctx.err(key, f"must be a list of strings (e.g. [\"a\", \"b\"]); got {v!r}")
    return [x.strip() for x in v]


def _choice(v, choices, ctx: _Ctx, key: str, what: str) -> str:
    v = _str(v, ctx, key)
    if v not in choices:
        raise ctx.err(key, f"unknown {what} {v!r}{closest(v, choices)}; choose one of "
                           f"{', '.join(choices)}")
    return v


def _years(v, ctx, key):
    try:
        return parse_duration_years(v, ctx.source, ctx.prefix + key)
    except ScenarioError as e:
        raise ctx.err(key, e.problem) from None


def _wrap(fn, ctx: _Ctx, key: str, *args):
    """Call a units parser, re-raising with this context's key and line."""
    try:
        return fn(*args, ctx.source, ctx.prefix + key)
    except ScenarioError as e:
        raise ctx.err(key, e.problem) from None


def _protocol_names(v, ctx: _Ctx, key: str) -> list:
    from .protocols import PROTOCOLS

    names = []
    for i, expr in enumerate(_str_list(v, ctx, key)):
        for name in (p.strip() for p in expr.split("+")):
            if name not in PROTOCOLS:
                raise ctx.err(f"{key}[{i}]", f"unknown protocol {name!r}{closest(name, PROTOCOLS)}; "
                                             f"built-in protocols: {', '.join(PROTOCOLS)}")
            if name not in names:
                names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# the sections


def _patient_fields(table: dict, ctx: _Ctx, path: str) -> dict:
    """Patient field values from a [patient] table (units parsed)."""
    if not isinstance(table, dict):
        raise ctx.err(path, f"must be a table; got {type(table).__name__}")
    _check_keys(table, PATIENT_KEYS, ctx, path)
    out = {}
    for k, v in table.items():
        field, kind = PATIENT_KEYS[k]
        key = f"{path}.{k}"
        if k == "sex":
            out[field] = _choice(v, SEXES, ctx, key, "sex")
        elif k == "gh_deficient":
            if not isinstance(v, bool):
                raise ctx.err(key, f"must be true or false; got {v!r}")
            out[field] = v
        elif kind == "years":
            out[field] = _years(v, ctx, key)
        else:
            out[field] = _wrap(lambda val, s, kk, kind=kind: parse_scalar(val, kind, s, kk), ctx,
                               key, v)
    return out


def _merge_protocol_patients(protocols, ctx: _Ctx) -> tuple[dict, str | None, str | None]:
    """(patient fields, required sex, protocol requiring it) from the protocols' patients.

    The ``requires`` parts of all protocols must agree; when none fixes the sex, the first
    protocol's example ``patient`` fills the other fields.
    """
    fields, origin = {}, {}
    for p in protocols:
        pctx = _Ctx(f"protocol {p.name}", None)
        for f, v in _patient_fields(dict(p.requires), pctx, "patient").items():
            if f in fields and not _same(fields[f], v):
                raise ctx.err("protocols", f"protocols {origin[f]!r} and {p.name!r} need different "
                                           f"patients ({f}: {fields[f]!r} vs {v!r}); compare them "
                                           f"([simulation] compare = [...]) instead of combining "
                                           f"them")
            fields.setdefault(f, v)
            origin.setdefault(f, p.name)
    if "sex" in fields:
        return fields, fields["sex"], origin["sex"]
    if protocols:
        first = protocols[0]
        example = _patient_fields(dict(first.patient), _Ctx(f"protocol {first.name}", None),
                                  "patient")
        fields = {**example, **fields}
    return fields, None, None


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _patient(doc: dict, protocols, ctx: _Ctx) -> Patient:
    base, required_sex, sex_of = _merge_protocol_patients(protocols, ctx)
    own = _patient_fields(_table(doc, "patient", ctx), ctx, "patient")
    if required_sex and own.get("sex", required_sex) != required_sex:
        raise ctx.err("patient.sex", f"protocol {sex_of!r} is for a {required_sex} patient but "
                                     f"[patient] sex = {own['sex']!r}; remove the sex key or "
                                     f"choose a protocol for a {own['sex']} patient")
    fields = {**base, **own}
    if fields.get("sex", "female") == "male" and "menopause_age_years" in own:
        raise ctx.err("patient.menopause_age", "a male patient has no menopause; remove "
                                               "menopause_age or set sex = \"female\"")
    try:
        return Patient.create(**fields)
    except (TypeError, ValueError) as e:
        key = "patient"
        for k, (f, _) in PATIENT_KEYS.items():
            if f in str(e):
                key = f"patient.{k}"
        raise ctx.err(key, f"{e}; fix the [patient] table") from None


def _bone(doc: dict, ctx: _Ctx, base_dir: Path) -> tuple[BoneSpec, str | None]:
    from ..bones.build import SPECS
    from ..material.laws import density_law

    t = _table(doc, "bone", ctx)
    _check_keys(t, KEYS["bone"], ctx, "bone")
    mesh = _str(t.get("mesh", DEFAULTS["bone.mesh"]), ctx, "bone.mesh")
    names = [s.name for s in SPECS]
    ct_keys = [k for k in CT_KEYS if k in t and k != "image"]
    if "image" in t:                      # a clinical CT: its bone model is a mesh file
        mesh, doc["bone"] = ct_bone_mesh(t, ctx, base_dir)
        kind = None
    elif ct_keys:
        raise ctx.err(f"bone.{ct_keys[0]}", f"{ct_keys[0]} belongs to a CT bone; give the CT "
                                            f"as [bone] image = \"scan.nii.gz\", or remove it")
    elif "/" in mesh or "\\" in mesh or mesh.lower().endswith(_MESH_SUFFIXES):
        path = Path(mesh).expanduser()
        path = path if path.is_absolute() else (base_dir / path)
        if not path.is_file():
            raise ctx.err("bone.mesh", f"mesh file {str(path)!r} not found; give an existing "
                                       f"file (relative paths start at the scenario file's "
                                       f"folder) or a bundled name: {', '.join(names)}")
        mesh, kind = str(path.resolve()), None
        doc["bone"] = {**t, "mesh": mesh}
    else:
        stem = mesh[:-4] if mesh.endswith(".vtu") else mesh
        if stem not in names:
            raise ctx.err("bone.mesh", f"no bundled mesh {mesh!r}{closest(stem, names)}; bundled: "
                                       f"{', '.join(names)} (or give a mesh file path)")
        mesh, kind = stem, stem.split("_")[0]
    law_default = _BONE_KINDS[kind]["law"] if kind else "morgan-femoral-neck"
    if "law" not in t and law_default is None:
        raise ctx.err("bone.law", f"{mesh} holds tissue voxels (no apparent density law fits); "
                                  f"set [bone] law = \"power:A,B\" (E = A·ρ^B, MPa, g/cm³)")
    law = _str(t.get("law", law_default), ctx, "bone.law")
    try:
        density_law(law)
    except ValueError as e:
        raise ctx.err("bone.law", str(e)) from None
    nu = t.get("nu", DEFAULTS["bone.nu"])
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not 0.0 < nu < 0.5:
        raise ctx.err("bone.nu", f"Poisson's ratio must be a number in (0, 0.5); got {nu!r}")
    field = _str(t.get("density_field", DEFAULTS["bone.density_field"]), ctx, "bone.density_field")
    return BoneSpec(mesh, field, law, float(nu), _baseline_dxa(t, ctx, kind)), kind


#: DXA sites of ``[bone] <site>_abmd`` / ``<site>_t_score`` → the mesh region scanned.
_DXA_SITES = {"femoral_neck": "femoral_neck", "total_hip": "total_hip",
              "lumbar_spine": "vertebral_body"}


def _baseline_dxa(t: dict, ctx: _Ctx, kind: str | None) -> tuple:
    """``[bone] femoral_neck_abmd = 0.70`` (g/cm²) or ``femoral_neck_t_score = -2.5`` (and
    total_hip, lumbar_spine) → ((region, aBMD g/cm²), ...)."""
    from ..bones.densitometry import REFERENCE_POPULATIONS

    out = {}
    for site, region in _DXA_SITES.items():
        for key in (f"{site}_abmd", f"{site}_t_score"):
            if key not in t:
                continue
            v = t[key]
            if isinstance(v, str):
                v = v.replace("g/cm²", "").replace("g/cm2", "").strip()
                try:
                    v = float(v)
                except ValueError:
                    raise ctx.err(f"bone.{key}", f"give a number (aBMD in g/cm², or a T-score); "
                                                f"got {t[key]!r}") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ctx.err(f"bone.{key}", f"must be a number; got {t[key]!r}")
            if region in out:
                raise ctx.err(f"bone.{key}", f"give {site}_abmd or {site}_t_score, not both")
            if key.endswith("_t_score"):
                if not -6.0 <= v <= 4.0:
                    raise ctx.err(f"bone.{key}", f"a T-score in [-6, 4]; got {v:g}")
                mean, sd, _ = REFERENCE_POPULATIONS[region]
                v = mean + v * sd
            elif not 0.2 <= v <= 2.0:
                raise ctx.err(f"bone.{key}", f"an aBMD in [0.2, 2.0] g/cm²; got {v:g} (a T-score "
                                             f"goes in {site}_t_score)")
            out[region] = float(v)
    want = {"femur": ("femoral_neck", "total_hip"), "vertebra": ("vertebral_body",)}.get(kind)
    wrong = [r for r in out if want is not None and r not in want]
    if wrong:
        raise ctx.err("bone", f"baseline DXA of {wrong} does not fit a {kind} mesh; give "
                              f"{' or '.join(s for s, r in _DXA_SITES.items() if r in want)}")
    return tuple(sorted(out.items()))


def _load_cases(doc: dict, ctx: _Ctx, kind: str | None, body_weight_N: float) -> tuple:
    from ..strength import CASES

    entries = _array_of_tables(doc, "load_cases", ctx)
    allowed = _BONE_KINDS[kind]["cases"] if kind else tuple(CASES)
    if not entries:
        defaults = _BONE_KINDS[kind]["load"] if kind else ("stance",)
        if defaults is None:
            raise ctx.err("load_cases", "a micro-CT cube has no default habitual loading; add "
                                        "[[load_cases]] case = \"compression\", magnitude = "
                                        "\"100 N\"")
        entries = [{"case": c} for c in defaults]
    out, names = [], set()
    for i, e in enumerate(entries):
        key = f"load_cases[{i}]"
        case = _choice(e.get("case"), tuple(CASES), ctx, f"{key}.case", "load case") \
            if "case" in e else None
        if case is None:
            raise ctx.err(f"{key}.case", f"missing; give one of {', '.join(allowed)}")
        if case not in allowed:
            raise ctx.err(f"{key}.case", f"the bundled {kind} has no node sets for {case!r}; use "
                                         f"{', '.join(allowed)}")
        params = inspect.signature(CASES[case]).parameters
        _check_keys(e, KEYS["load_cases"], ctx, key, extra=tuple(params))
        options = []
        for p, v in e.items():
            if p in params:
                default = params[p].default
                ok = isinstance(v, str) if isinstance(default, str) else \
                    (isinstance(v, (int, float)) and not isinstance(v, bool))
                if not ok:
                    raise ctx.err(f"{key}.{p}", f"must be a {type(default).__name__} like the "
                                                f"default {default!r}; got {v!r}")
                options.append((p, float(v) if isinstance(v, (int, float)) else v))
        if "weight" in e:
            w = e["weight"]
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1:
                raise ctx.err(f"{key}.weight", f"must be a share of the daily loading in (0, 1]; "
                                               f"got {w!r}")
            weight = float(w)
        elif len(entries) == 1:
            weight = 1.0
        else:
            raise ctx.err(f"{key}.weight", f"missing: with {len(entries)} load cases give each a "
                                           f"weight (shares of the daily loading summing to 1)")
        if "magnitude" in e:
            bw, newton = _wrap(lambda v, s, k: parse_force(v, s, k, body_weight_N), ctx,
                               f"{key}.magnitude", e["magnitude"])
        elif case in DEFAULT_MAGNITUDE_BW:
            bw = DEFAULT_MAGNITUDE_BW[case]
            newton = bw * body_weight_N
        else:
            raise ctx.err(f"{key}.magnitude", f"missing: {case!r} has no default habitual "
                                              f"magnitude; give e.g. magnitude = \"1 BW\" or "
                                              f"\"700 N\"")
        if not bw > 0:
            raise ctx.err(f"{key}.magnitude", f"must be positive; got {e['magnitude']!r}")
        name = _str(e.get("name", case), ctx, f"{key}.name")
        if name in names:
            raise ctx.err(f"{key}.name", f"two load cases are called {name!r}; give each a "
                                         f"distinct name")
        names.add(name)
        out.append(LoadCaseSpec(name, case, weight, bw, newton, tuple(sorted(options))))
    total = sum(lc.weight for lc in out)
    if abs(total - 1.0) > 1e-6:
        raise ctx.err("load_cases", f"the weights sum to {total:g}, not 1: they are shares of the "
                                    f"daily loading; divide each by {total:g}")
    return tuple(out)


def _strength(doc: dict, ctx: _Ctx, kind: str | None) -> StrengthSpec:
    from ..strength import CASES, METHODS

    t = _table(doc, "strength", ctx)
    _check_keys(t, KEYS["strength"], ctx, "strength")
    allowed = _BONE_KINDS[kind]["cases"] if kind else tuple(CASES)
    cases = _str_list(t.get("cases", list(_BONE_KINDS[kind or "femur"]["strength"])), ctx,
                      "strength.cases")
    for i, c in enumerate(cases):
        _choice(c, tuple(CASES), ctx, f"strength.cases[{i}]", "load case")
        if c not in allowed:
            raise ctx.err(f"strength.cases[{i}]", f"the bundled {kind} has no node sets for {c!r}; "
                                                  f"use {', '.join(allowed)}")
    methods = _str_list(t.get("methods", list(DEFAULTS["strength.methods"])), ctx,
                        "strength.methods")
    for i, m in enumerate(methods):
        _choice(m, METHODS, ctx, f"strength.methods[{i}]", "fracture-load method")
    for what, seq in (("cases", cases), ("methods", methods)):
        dup = sorted({x for x in seq if seq.count(x) > 1})
        if dup:
            raise ctx.err(f"strength.{what}", f"{dup} listed twice; list each once")
    if cases and not methods:
        raise ctx.err("strength.methods", "empty while strength.cases is not; give at least one "
                                          f"method ({', '.join(METHODS)})")
    return StrengthSpec(tuple(cases), tuple(methods))


def _simulation(doc: dict, ctx: _Ctx, default_years: float) -> tuple[float, float, int]:
    t = _table(doc, "simulation", ctx)
    _check_keys(t, KEYS["simulation"], ctx, "simulation")
    years = _years(t["duration"], ctx, "simulation.duration") if "duration" in t else default_years
    if not 0 < years <= 100:
        raise ctx.err("simulation.duration", f"must be in (0, 100] years; got {years:g} years")
    out = _years(t["output_interval"], ctx, "simulation.output_interval") \
        if "output_interval" in t else min(DEFAULTS["simulation.output_interval_years"], years)
    if not 0 < out <= years + 1e-12:
        raise ctx.err("simulation.output_interval", f"must be positive and at most the duration "
                                                    f"({years:g} years); got {out:g} years")
    if "mechanical_step" in t:
        step_days = _wrap(lambda v, s, k: parse_duration_days(v, s, k, number_unit="days"), ctx,
                          "simulation.mechanical_step", t["mechanical_step"])
    else:
        step_days = DEFAULTS["simulation.mechanical_step_days"]
    step = int(round(step_days))
    if step < 1:
        raise ctx.err("simulation.mechanical_step", f"must be at least 1 day; got {step_days:g} "
                                                    f"days")
    if step > out * DAYS_PER_YEAR + 0.5:
        raise ctx.err("simulation.mechanical_step", f"{step} days is longer than the output "
                                                    f"interval ({out * DAYS_PER_YEAR:.0f} days); "
                                                    f"shorten it or output less often")
    return years, out, step


def _spinup(doc: dict, ctx: _Ctx) -> float | None:
    """``[simulation] spinup``: years of the patient's history replayed before time 0 (None:
    automatic, febone.remodel.history)."""
    t = doc.get("simulation", {})
    if not isinstance(t, dict) or "spinup" not in t:
        return None
    spin = _years(t["spinup"], ctx, "simulation.spinup")
    if not 0 <= spin <= 80:
        raise ctx.err("simulation.spinup", f"must be in [0, 80] years (0 = start from a young "
                                           f"adult's homeostasis); got {spin:g} years")
    return spin


def _treatment(t: dict, ctx: _Ctx, key: str, patient: Patient, years: float, *,
               allowed=_TREATMENT_KEYS, rename=None) -> Treatment:
    """One [[treatments]] table (or a lifestyle item turned into one) -> Treatment."""
    rename = rename or {}
    k = lambda name: f"{key}.{rename.get(name, name)}"  # noqa: E731
    if not isinstance(t, dict):
        raise ctx.err(key, f"must be a table; got {type(t).__name__} {t!r}")
    _check_keys({rename.get(n, n): v for n, v in t.items()}, allowed, ctx, key)
    if "drug" not in t:
        raise ctx.err(k("drug"), f"missing; give one of {', '.join(DRUGS)}")
    drug = _choice(t["drug"], tuple(DRUGS), ctx, k("drug"), "drug")
    spec = DRUGS[drug]
    typical = f"{spec.typical_dose:g} {spec.unit} {_every(spec.typical_interval_days)}"
    if "dose" not in t:
        raise ctx.err(k("dose"), f"missing; e.g. dose = \"{spec.typical_dose:g} {spec.unit}\" "
                                 f"(typical {drug}: {typical})")
    dose, dose_unit = _wrap(parse_dose, ctx, k("dose"), t["dose"])
    unit = dose_unit
    if "unit" in t:
        unit = dose_unit_spelling(_str(t["unit"], ctx, k("unit")))
        if dose_unit is not None and dose_unit != unit:
            raise ctx.err(k("unit"), f"the dose says {dose_unit!r} but unit = {t['unit']!r}; give "
                                     f"the unit once")
    unit_key = k("unit") if "unit" in t else k("dose")
    unit = spec.unit if unit is None else unit
    implied_interval = None
    if unit not in spec.accepted_units and unit.endswith("/day") and \
            unit[:-4] in spec.accepted_units:
        unit, implied_interval = unit[:-4], 1.0  # "1200 mg/day": 1200 mg daily
    if unit not in spec.accepted_units:
        raise ctx.err(unit_key, f"unit {unit!r} is not accepted for {drug}; use one of "
                                f"{', '.join(spec.accepted_units)} (typical: {typical})")
    if not dose > 0:
        raise ctx.err(k("dose"), f"must be positive; got {t['dose']!r} (to end a treatment use "
                                 f"stop)")
    if "interval" in t:
        interval = _wrap(parse_interval_days, ctx, k("interval"), t["interval"])
        if not interval > 0:
            raise ctx.err(k("interval"), f"must be a positive number of days; got {t['interval']!r}")
        if implied_interval is not None and abs(interval - implied_interval) > 1e-9:
            raise ctx.err(k("interval"), f"the dose is per day but interval = {t['interval']!r}; "
                                         f"give the dose per administration")
    else:
        interval = implied_interval or spec.typical_interval_days
    if "start" in t and "start_after_menopause" in t:
        raise ctx.err(k("start_after_menopause"), "give start or start_after_menopause, not both")
    start = _years(t["start"], ctx, k("start")) if "start" in t else 0.0
    if "start_after_menopause" in t:
        if patient.sex != "female":
            raise ctx.err(k("start_after_menopause"), "the patient is male (no menopause); use "
                                                      "start")
        after = _years(t["start_after_menopause"], ctx, k("start_after_menopause"))
        start = patient.menopause_age_years + after - patient.age_years
        if start < -1e-9:
            raise ctx.err(k("start_after_menopause"),
                          f"{_yrs(after)} after the final period is {_yrs(-start)} before "
                          f"the scenario starts (age {patient.age_years:g}, final period at "
                          f"{patient.menopause_age_years:g}); use start, or a younger patient")
        start = max(start, 0.0)
    if start < 0 and not start >= -patient.age_years + 10:
        raise ctx.err(k("start"), f"a past treatment (negative start: years before the scenario "
                                  f"starts) must start after age 10; got {start:g} years at age "
                                  f"{patient.age_years:g}")
    if start >= years - 1e-9:
        raise ctx.err(k("start"), f"{drug} starts at {_yrs(start)}, when the run "
                                  f"({_yrs(years)}) is over; start it earlier or run longer "
                                  f"than {_yrs(start)} (febone run --years, or [simulation] "
                                  f"duration in a scenario file)")
    if "stop" in t and "duration" in t:
        raise ctx.err(k("duration"), "give stop or duration, not both")
    stop = None
    if "stop" in t:
        stop = _years(t["stop"], ctx, k("stop"))
    elif "duration" in t:
        stop = start + _years(t["duration"], ctx, k("duration"))
    if stop is not None and stop <= start:
        which = k("stop") if "stop" in t else k("duration")
        raise ctx.err(which, f"the treatment stops at {_yrs(stop)}, not after its start "
                             f"({_yrs(start)}); stop must come after start")
    try:
        treatment = Treatment.create(drug, dose, unit, interval_days=interval, start_years=start,
                                     stop_years=stop)
    except (TypeError, ValueError) as e:
        raise ctx.err(key, str(e)) from None
    try:
        warning = check_dose(treatment)
    except ValueError as e:
        raise ctx.err(k("dose"), str(e)) from None
    if warning:
        log.warning("%s", ctx.err(k("dose"), warning))
    return treatment


def _lifestyle(doc: dict, ctx: _Ctx, patient: Patient, years: float) -> list:
    """[lifestyle] -> [(key, Treatment)]."""
    t = _table(doc, "lifestyle", ctx)
    _check_keys(t, KEYS["lifestyle"], ctx, "lifestyle")
    programmes = [d[len("exercise-"):] for d in DRUGS if d.startswith("exercise-")]
    out = []
    ex = t.get("exercise", [])
    items = ex if isinstance(ex, list) else [ex]
    for i, item in enumerate(items):
        key = f"lifestyle.exercise[{i}]" if isinstance(ex, list) else "lifestyle.exercise"
        if isinstance(item, str):
            item = {"programme": item}
        if not isinstance(item, dict):
            raise ctx.err(key, f"a programme name ({', '.join(programmes)}) or a table "
                               f"{{programme = ..., load_increase = ...}}; got {item!r}")
        _check_keys(item, KEYS["lifestyle.exercise"], ctx, key)
        if "programme" not in item:
            raise ctx.err(f"{key}.programme", f"missing; one of {', '.join(programmes)}")
        prog = _choice(item["programme"], programmes, ctx, f"{key}.programme", "exercise programme")
        drug = f"exercise-{prog}"
        table = {"drug": drug, "dose": item.get("load_increase", DRUGS[drug].typical_dose),
                 **{n: v for n, v in item.items() if n not in ("programme", "load_increase")}}
        rename = {"drug": "programme", "dose": "load_increase"}
        out.append((key, _treatment(table, ctx, key, patient, years,
                                    allowed=_EXERCISE_KEYS, rename=rename)))
    for name, drug in (("calcium", "calcium"), ("vitamin_d", "vitamin-d")):
        if name not in t:
            continue
        key = f"lifestyle.{name}"
        item = t[name]
        if isinstance(item, dict):
            _check_keys(item, KEYS["lifestyle.supplement"], ctx, key)
            table = {"drug": drug, **item}
        else:
            table = {"drug": drug, "dose": item}
        out.append((key, _treatment(table, ctx, key, patient, years)))
    return out


def _yrs(x: float) -> str:
    return f"{x:g} year" if x == 1 else f"{x:g} years"


def _every(days: float) -> str:
    words = {1.0: "daily", 7.0: "weekly", 3.5: "twice weekly"}
    return words.get(days, f"every {days:g} days")


def _overlap(a: Treatment, b: Treatment) -> bool:
    inf = float("inf")
    return a.start_years < (b.stop_years or inf) and b.start_years < (a.stop_years or inf)


def _merge_treatments(entries, ctx: _Ctx) -> tuple:
    """Drop exact repeats that come from protocols; reject conflicting regimens of one drug."""
    kept = []  # (key, from_protocol, Treatment)
    for key, from_protocol, t in entries:
        dup = None
        for k2, p2, t2 in kept:
            if t2.drug != t.drug or not _overlap(t, t2):
                continue
            if t2 == t and (from_protocol or p2):
                dup = k2
                break
            diff = [f"{f} {getattr(t2, f)!r} vs {getattr(t, f)!r}" for f in
                    ("dose", "unit", "interval_days", "start_years", "stop_years")
                    if getattr(t2, f) != getattr(t, f)]
            what = "differ in " + ", ".join(diff) if diff else "are identical (their doses would add)"
            raise ctx.err(key, f"{t.drug} is also given by {k2} at overlapping times and the two "
                               f"{what}; keep one entry, or make their start/stop not overlap")
        if dup is None:
            kept.append((key, from_protocol, t))
        else:
            log.debug("%s repeats %s; kept once", key, dup)
    return tuple(t for _, _, t in kept)


def _arm_tables(doc: dict, ctx: _Ctx, taken) -> list:
    """The ``[[arms]]`` tables, checked: keys, names (distinct, and distinct from the
    ``simulation.compare`` arms in ``taken``), protocols, patient keys, lifestyle keys."""
    if "arms" not in doc:
        return []
    arms = doc["arms"]
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        raise ctx.err("arms", f"must be an array of tables (one [[arms]] block per arm, each with "
                              f"a name and its own [[arms.treatments]]); got "
                              f"{type(arms).__name__} {arms!r}")
    if not arms:
        raise ctx.err("arms", "is empty; give one [[arms]] block per arm (name = \"placebo\", "
                              "then name = \"denosumab\" with its [[arms.treatments]]) or remove "
                              "the key")
    names = list(taken)
    for i, a in enumerate(arms):
        key = f"arms[{i}]"
        _check_keys(a, KEYS["arms"], ctx, key)
        if "name" not in a:
            raise ctx.err(f"{key}.name", "missing; every arm needs a name (e.g. name = "
                                         "\"placebo\"), used for its results")
        name = _str(a["name"], ctx, f"{key}.name")
        if name in names:
            raise ctx.err(f"{key}.name", f"two arms are called {name!r}; give each arm a distinct "
                                         f"name")
        names.append(name)
        if "description" in a and not isinstance(a["description"], str):
            raise ctx.err(f"{key}.description", f"must be a string; got {a['description']!r}")
        _protocol_names(a.get("protocols", []), ctx, f"{key}.protocols")
        _patient_fields(_table(a, "patient", ctx.sub(f"{key}.")), ctx, f"{key}.patient")
        _array_of_tables(a, "treatments", ctx.sub(f"{key}."))
        _check_keys(_table(a, "lifestyle", ctx.sub(f"{key}.")), KEYS["lifestyle"], ctx,
                    f"{key}.lifestyle")
    return arms


def _arm_document(doc: dict, arm: dict, sim_doc: dict, names: list) -> dict:
    """The complete scenario document of one ``[[arms]]`` arm: the file's shared tables with the
    arm's patient keys, lifestyle keys, protocols and treatments on top."""
    arm_doc = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("arms", "validation")}
    arm_doc["name"] = arm["name"].strip()
    arm_doc["simulation"] = dict(sim_doc)
    if "description" in arm:
        arm_doc["description"] = arm["description"]
    extra = [n for n in _protocol_names(arm.get("protocols", []), _Ctx("", None), "protocols")
             if n not in names]
    if names or extra:
        arm_doc["protocols"] = names + extra
    if arm.get("patient"):
        arm_doc["patient"] = {**doc.get("patient", {}), **copy.deepcopy(arm["patient"])}
    if arm.get("lifestyle"):
        arm_doc["lifestyle"] = {**doc.get("lifestyle", {}), **copy.deepcopy(arm["lifestyle"])}
    if arm.get("treatments"):
        arm_doc["treatments"] = list(doc.get("treatments", [])) + copy.deepcopy(arm["treatments"])
    return arm_doc


def _build(doc: dict, ctx: _Ctx, base_dir: Path, *, treatment_keys=None) -> Scenario:
    """``treatment_keys``: the key of each ``[[treatments]]`` entry in errors (an arm's document
    holds the shared treatments and then the arm's own, ``arms[i].treatments[j]``)."""
    from .protocols import PROTOCOLS

    names = _protocol_names(doc.get("protocols", []), ctx, "protocols")
    protocols = [PROTOCOLS[n] for n in names]
    sim = _table(doc, "simulation", ctx)
    compare = _str_list(sim.get("compare", []), ctx, "simulation.compare")
    arm_names = [_protocol_names([c], ctx, f"simulation.compare[{i}]") for i, c in
                 enumerate(compare)]
    dup = sorted({c for c in compare if compare.count(c) > 1})
    if dup:
        raise ctx.err("simulation.compare", f"{dup} listed twice; list each protocol once")
    if "validation" in doc and not isinstance(doc["validation"], dict):
        raise ctx.err("validation", f"must be a table ([validation], read by febone validate); "
                                    f"got {type(doc['validation']).__name__}")
    own_arms = _arm_tables(doc, ctx, compare)
    arm_names += [_protocol_names(a.get("protocols", []), ctx, f"arms[{i}].protocols")
                  for i, a in enumerate(own_arms)]
    default_years = max([p.duration_years for p in protocols] +
                        [PROTOCOLS[n].duration_years for arm in arm_names for n in arm],
                        default=DEFAULTS["simulation.duration_years"])
    name = _str(doc.get("name", "+".join(names) or "scenario"), ctx, "name")
    description = doc.get("description", "; ".join(p.description for p in protocols))
    if not isinstance(description, str):
        raise ctx.err("description", f"must be a string; got {description!r}")
    years, out_years, step = _simulation(doc, ctx, default_years)
    patient = _patient(doc, protocols, ctx)
    end_age = patient.age_years + years
    if end_age > MAX_AGE_YEARS + 1e-9:
        raise ctx.err("simulation.duration",
                      f"the patient would be {end_age:g} years old at the end of the run (age "
                      f"{patient.age_years:g} + {_yrs(years)}), past {MAX_AGE_YEARS:g}, where "
                      f"febone's hormone and cell models end; shorten the run to at most "
                      f"{_yrs(MAX_AGE_YEARS - patient.age_years)} ([simulation] duration; "
                      f"febone run --years) or start younger ([patient] age)")
    bone, kind = _bone(doc, ctx, base_dir)
    load_cases = _load_cases(doc, ctx, kind, patient.body_mass_kg * G)
    strength = _strength(doc, ctx, kind)

    entries = []
    for p in protocols:
        pctx = ctx.sub(f"protocol {p.name}: ", "protocols")
        for j, table in enumerate(p.treatments):
            entries.append((f"protocol {p.name} treatments[{j}]", True,
                            _treatment(dict(table), pctx, f"treatments[{j}]", patient, years)))
    for j, table in enumerate(_array_of_tables(doc, "treatments", ctx)):
        key = treatment_keys[j] if treatment_keys else f"treatments[{j}]"
        entries.append((key, False, _treatment(table, ctx, key, patient, years)))
    entries.extend((k, False, t) for k, t in _lifestyle(doc, ctx, patient, years))
    treatments = _merge_treatments(entries, ctx)

    doc["name"] = name
    arms = []
    sim_doc = {k: v for k, v in sim.items() if k != "compare"}
    sim_doc["duration"] = years
    if compare:
        for i, (expr, extra) in enumerate(zip(compare, arm_names)):
            arm_doc = {**{k: copy.deepcopy(v) for k, v in doc.items() if k not in ("arms", "validation")},
                       "name": expr, "simulation": sim_doc,
                       "protocols": names + [n for n in extra if n not in names]}
            arm_doc.pop("description", None)
            arms.append(_build(arm_doc, ctx.sub(f"simulation.compare[{i}] ({expr}): ",
                                                "simulation.compare"), base_dir))
    shared = [f"treatments[{j}]" for j in range(len(doc.get("treatments", [])))]
    for i, arm in enumerate(own_arms):
        arm_doc = _arm_document(doc, arm, sim_doc, names)
        keys = shared + [f"arms[{i}].treatments[{j}]" for j in range(len(arm.get("treatments", [])))]
        arm_ctx = _Ctx(ctx.source, ctx.text, f"{ctx.prefix}arm {arm_doc['name']!r}: ")
        arms.append(_build(arm_doc, arm_ctx, base_dir, treatment_keys=keys))
    return Scenario(name=name, description=description, patient=patient, bone=bone,
                    load_cases=load_cases, strength=strength, treatments=treatments,
                    duration_years=years, output_interval_years=out_years,
                    mechanical_step_days=step, protocols=tuple(names), arms=tuple(arms),
                    spinup_years=_spinup(doc, ctx),
                    source=ctx.source, document=json.dumps(doc, ensure_ascii=False),
                    source_text=ctx.text)

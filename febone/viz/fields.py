"""What a field is called, its unit, colour map and where it lives (points or cells).

A *field* is a name plus an array over the mesh's cells ``(n_elements,)`` or points
``(n_nodes,)``. :func:`resolve_field` turns whatever the caller has -- a field name looked up in
a :class:`~febone.Mesh`, in a dict or in an object with ``fields`` (for example a
``StrengthResult``), or a bare array -- into a :class:`ScalarField` with a label, unit, colour
map and colour range. Vectors become magnitudes (displacement) or one component
(``principal_strain_max``/``_mid``/``_min``); strains are shown in microstrain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["FieldSpec", "ScalarField", "FIELDS", "field_spec", "resolve_field", "locate"]


@dataclass(frozen=True)
class FieldSpec:
    """How to show one named field.

    Attributes:
        label: human name for titles and scalar bars.
        unit: unit as shown (after ``scale``).
        cmap: matplotlib colour-map name.
        diverging: centre the colour range on 0 (changes, signed strains).
        scale: factor applied to the stored values before display (1e6: strain -> microstrain).
        location: ``"cell"`` or ``"point"`` when the name fixes it, else ``None``.
        clim: fixed colour range in displayed units, or ``None`` for the data range.
        from_zero: a magnitude (von Mises, SED, |u|): the colour range starts at 0.
    """

    label: str
    unit: str
    cmap: str
    diverging: bool = False
    scale: float = 1.0
    location: str | None = None
    clim: tuple[float, float] | None = None
    from_zero: bool = False


_MU = "microstrain"   # VTK's bundled font has no ε, so not "µε"
_SEQ, _DIV = "inferno", "RdBu"   # RdBu: loss (negative) red, gain (positive) blue

FIELDS: dict[str, FieldSpec] = {
    "von_mises_MPa": FieldSpec("von Mises stress", "MPa", _SEQ, location="cell", from_zero=True),
    "principal_strain_max": FieldSpec("max principal strain", _MU, _DIV, True, 1e6, "cell"),
    "principal_strain_mid": FieldSpec("mid principal strain", _MU, _DIV, True, 1e6, "cell"),
    "principal_strain_min": FieldSpec("min principal strain", _MU, _DIV, True, 1e6, "cell"),
    "principal_stress_max_MPa": FieldSpec("max principal stress", "MPa", _DIV, True, 1.0, "cell"),
    "principal_stress_min_MPa": FieldSpec("min principal stress", "MPa", _DIV, True, 1.0, "cell"),
    "effective_strain": FieldSpec("effective strain", _MU, _SEQ, False, 1e6, "cell",
                                  from_zero=True),
    "sed_MPa": FieldSpec("strain energy density", "MPa = mJ/mm³", "viridis", location="cell",
                         from_zero=True),
    "damage": FieldSpec("damage", "0–1", "magma", location="cell", clim=(0.0, 1.0)),
    "density_g_cm3": FieldSpec("apparent density", "g/cm³", "viridis", location="cell"),
    "density_change_g_cm3": FieldSpec("density change", "g/cm³", _DIV, True, location="cell"),
    "density_change_pct": FieldSpec("density change", "%", _DIV, True, location="cell"),
    "E_MPa": FieldSpec("Young's modulus", "MPa", "viridis", location="cell"),
    "youngs_modulus_MPa": FieldSpec("Young's modulus", "MPa", "viridis", location="cell"),
    "displacement_mm": FieldSpec("displacement magnitude", "mm", "viridis", location="point",
                                 from_zero=True),
    "reaction_N": FieldSpec("reaction force magnitude", "N", "viridis", location="point",
                            from_zero=True),
}

# short names accepted by plot_field(..., "von_mises") and friends
ALIASES = {
    "von_mises": "von_mises_MPa", "vm": "von_mises_MPa", "stress": "von_mises_MPa",
    "sed": "sed_MPa", "density": "density_g_cm3", "rho": "density_g_cm3",
    "density_change": "density_change_g_cm3", "displacement": "displacement_mm", "u": "displacement_mm",
    "modulus": "E_MPa", "E": "E_MPa",
    "principal_strain": "principal_strain_max", "principal_strain_1": "principal_strain_max",
    "principal_strain_2": "principal_strain_mid", "principal_strain_3": "principal_strain_min",
    "principal_stress": "principal_stress_max_MPa",
}

# derived scalar name -> (stored array name, component index)
_COMPONENTS = {
    "principal_strain_max": ("principal_strain", 0),
    "principal_strain_mid": ("principal_strain", 1),
    "principal_strain_min": ("principal_strain", 2),
    "principal_stress_max_MPa": ("principal_stress_MPa", 0),
    "principal_stress_min_MPa": ("principal_stress_MPa", 2),
}

_UNIT_SUFFIX = (("_g_cm3", "g/cm³"), ("_mg_cm3", "mg/cm³"), ("_MPa", "MPa"), ("_mm", "mm"),
                ("_pct", "%"), ("_N", "N"), ("_days", "days"), ("_years", "years"), ("_pM", "pM"))


def field_spec(name: str, values: np.ndarray | None = None) -> FieldSpec:
    """The :class:`FieldSpec` of ``name``; unknown names get one guessed from the unit suffix
    (``_MPa``, ``_mm``, ``_g_cm3``, ``_pct``...) and a diverging map when the name says
    "change" or the values take both signs."""
    name = ALIASES.get(name, name)
    if name in FIELDS:
        return FIELDS[name]
    unit = next((u for s, u in _UNIT_SUFFIX if name.endswith(s)), "")
    label = name
    for s, _ in _UNIT_SUFFIX:
        if name.endswith(s):
            label = name[: -len(s)]
            break
    label = label.replace("_", " ")
    signed = values is not None and values.size and np.nanmin(values) < 0 < np.nanmax(values)
    diverging = "change" in name or bool(signed)
    return FieldSpec(label, unit or "–", _DIV if diverging else "viridis", diverging)


@dataclass(frozen=True)
class ScalarField:
    """One scalar per cell or per point, ready to draw.

    Attributes:
        name: canonical field name (e.g. ``von_mises_MPa``).
        values: (n_elements,) or (n_nodes,) float64, in displayed units (``spec.scale`` applied).
        location: ``"cell"`` or ``"point"``.
        spec: the :class:`FieldSpec`.
    """

    name: str
    values: np.ndarray
    location: str
    spec: FieldSpec

    @property
    def title(self) -> str:
        """Scalar-bar title, ``label (unit)``."""
        return f"{self.spec.label} ({self.spec.unit})"

    def clim(self) -> tuple[float, float]:
        """Colour range in displayed units: fixed, symmetric about 0 (diverging) or min..max."""
        if self.spec.clim is not None:
            return self.spec.clim
        v = self.values[np.isfinite(self.values)]
        if v.size == 0:
            raise ValueError(f"field {self.name!r} has no finite values to colour")
        if self.spec.diverging:
            m = float(np.max(np.abs(v))) or 1.0
            return (-m, m)
        lo, hi = float(v.min()), float(v.max())
        if self.spec.from_zero and lo >= 0:
            lo = 0.0
        if hi <= lo:
            pad = abs(lo) * 0.01 or 1.0
            return (lo - pad, hi + pad)
        return (lo, hi)


def locate(mesh, name: str, values: np.ndarray, location: str | None = None) -> str:
    """``"cell"`` or ``"point"``: where ``values`` (first axis) lives on ``mesh``.

    Raises:
        ValueError: the first axis matches neither n_elements nor n_nodes, or both (then pass
            ``location=``), or ``location`` contradicts the shape.
    """
    n = np.shape(values)[0] if np.ndim(values) else None
    fits = {"cell": n == mesh.n_elements, "point": n == mesh.n_nodes}
    if location is not None:
        if location not in fits:
            raise ValueError(f"location must be 'cell' or 'point'; got {location!r}")
        if not fits[location]:
            want = mesh.n_elements if location == "cell" else mesh.n_nodes
            raise ValueError(f"field {name!r} has {n} rows but location={location!r} needs {want}")
        return location
    if fits["cell"] and fits["point"]:
        known = FIELDS.get(ALIASES.get(name, name))
        if known is not None and known.location is not None:
            return known.location
        raise ValueError(f"field {name!r}: the mesh has as many nodes as elements ({n}); pass "
                         f"location='cell' or location='point'")
    if fits["cell"]:
        return "cell"
    if fits["point"]:
        return "point"
    raise ValueError(f"field {name!r} has shape {np.shape(values)}: its first axis must be "
                     f"n_elements = {mesh.n_elements} (cell field) or n_nodes = {mesh.n_nodes} "
                     f"(point field)")


def _lookup(sources: list[Mapping], name: str):
    for src in sources:
        if name in src:
            return np.asarray(src[name])
    return None


def _as_mapping(obj) -> Mapping | None:
    """A field dict from a dict, an ElementFields-like object (``as_cell_data()``) or an object
    with ``fields``/``cell_data``/``point_data``; ``None`` if it is none of these."""
    if isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "as_cell_data"):
        return obj.as_cell_data()
    out = {}
    fields = getattr(obj, "fields", None)
    if fields is not None:
        out.update(_as_mapping(fields) or {})
    for attr in ("effective_strain",):
        if getattr(obj, attr, None) is not None:
            out[attr] = getattr(obj, attr)
    if getattr(obj, "u", None) is not None and np.ndim(obj.u) == 2:
        out["displacement_mm"] = obj.u
    return out or None


def resolve_field(mesh, field, *, name: str | None = None, extra=None,
                  location: str | None = None) -> ScalarField:
    """Turn ``field`` into a :class:`ScalarField` on ``mesh``.

    Args:
        mesh: the :class:`~febone.Mesh` the field lives on.
        field: a field name (looked up in ``extra``, then the mesh's cell and point data; short
            names such as ``"von_mises"``, ``"density"``, ``"principal_strain_min"`` work), an
            array ``(n_elements,)``/``(n_nodes,)`` (or ``(n, 3)``: its magnitude), or a mapping /
            result object holding the field called ``name``.
        name: the field's name when ``field`` is an array or a container (chooses label, unit
            and colour map).
        extra: optional mapping or result object searched before the mesh's own data.
        location: ``"cell"``/``"point"`` to disambiguate when n_nodes == n_elements.

    Raises:
        ValueError: unknown name (lists what is available), wrong shape, non-finite data.
        TypeError: ``field`` is none of the accepted kinds.
    """
    is_array = isinstance(field, (np.ndarray, list, tuple)) or hasattr(field, "__array__")
    sources = []
    if isinstance(field, str):
        if name is not None and ALIASES.get(name, name) != ALIASES.get(field, field):
            raise ValueError(f"give the field name once: got field={field!r} and name={name!r}")
        name = field
    elif not is_array:
        m = _as_mapping(field)
        if m is None:
            raise TypeError(f"field must be a name, an array or a mapping/result holding fields; "
                            f"got {type(field).__name__}")
        if name is None:
            raise ValueError(f"field is a {type(field).__name__}: pass name='von_mises_MPa' (or "
                             f"another field it holds: {sorted(m)})")
        sources.append(m)
    if name is None:
        raise ValueError("an array field needs name=... (e.g. name='density_change_pct'): it picks "
                         "the label, unit and colour map")
    canonical = ALIASES.get(name, name)
    if is_array:
        raw = np.asarray(field)
    else:
        if extra is not None:
            m = _as_mapping(extra)
            if m is None:
                raise TypeError(f"extra must be a mapping or a result with fields; got "
                                f"{type(extra).__name__}")
            sources.append(m)
        sources += [mesh.cell_data, mesh.point_data]
        raw = _lookup(sources, canonical)
        if raw is None and canonical in _COMPONENTS:
            base, k = _COMPONENTS[canonical]
            raw = _lookup(sources, base)
            if raw is not None:
                if raw.ndim != 2 or raw.shape[1] <= k:
                    raise ValueError(f"{base!r} has shape {raw.shape}; expected (n, 3) principal "
                                     f"values, largest first")
                raw = raw[:, k]
        if raw is None:
            raw = _lookup(sources, name)
        if raw is None:
            available = sorted({k for s in sources for k in s})
            raise ValueError(f"no field {name!r}; available: {available} (principal values also "
                             f"as principal_strain_max/_mid/_min)")
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim == 2 and raw.shape[1] == 3:
        raw = np.linalg.norm(raw, axis=1)
    if raw.ndim != 1:
        raise ValueError(f"field {name!r} has shape {raw.shape}; give one value per cell or point "
                         f"(or (n, 3) vectors, shown as magnitudes)")
    where = locate(mesh, name, raw, location)
    if not np.isfinite(raw).any():
        raise ValueError(f"field {name!r} has no finite values")
    spec = field_spec(canonical, raw)
    values = raw * spec.scale
    if not math.isfinite(float(np.nanmax(np.abs(values)))):
        raise ValueError(f"field {name!r} overflows after scaling by {spec.scale}")
    return ScalarField(canonical, values, where, spec)

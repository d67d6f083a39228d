"""Named continuous parameters of a study and how they enter the model.

A parameter set is a dict ``{name: value}``; values may be traced (``grad``, ``vmap``). Names:

* ``dose:<drug>`` — dose of the study's treatment of that drug, in the treatment's unit
  (``dose:<drug>#<k>`` for the k-th of several regimens of one drug, k = 1, 2, ...);
* ``exercise`` — load increase of the exercise programme (fraction, e.g. 0.15): the dose of the
  study's ``exercise-*`` treatment; without one, a daily ``exercise-resistance`` programme with
  that dose is added (0 = none);
* ``coupling:<field>`` — a :class:`~febone.remodel.coupling.CouplingParameters` constant;
* ``cell:<field>`` / ``mineral:<field>`` — a :class:`~febone.remodel.parameters.CellParameters`
  / :class:`~febone.remodel.parameters.MineralParameters` float;
* ``patient:<field>`` — a float of the :class:`~febone.remodel.patient.Patient`
  (``age_years``, ``body_mass_kg``, ``testosterone_ng_dL``, ...);
* ``law:a`` (MPa/(g/cm³)^b), ``law:b`` — the density → modulus power law E = a ρ^b;
* ``density_scale`` — factor on every baseline element density (1 = the mesh);
* ``density`` — (n_elements,) baseline densities, g/cm³ (element-wise sensitivities).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import jax
import jax.numpy as jnp

from ..remodel.treatments import Treatment

__all__ = ["Resolved", "apply", "base_values", "parameter_names", "EXERCISE_DRUG"]

#: The programme added by the ``exercise`` parameter when a study has none.
EXERCISE_DRUG = "exercise-resistance"


@dataclass(frozen=True)
class Resolved:
    """The model inputs after applying a parameter set."""

    patient: object
    treatments: tuple
    coupling: object
    cell_params: object
    mineral_params: object
    law: object         # PowerLaw E = a ρ^b (a MPa/(g/cm³)^b)
    rho0: object        # (n_elements,) g/cm³


def _float_fields(obj) -> list:
    """Names of the numeric (possibly traced) fields of a parameter dataclass."""
    def numeric(v):
        return (isinstance(v, (int, float, jax.Array)) or hasattr(v, "aval")) \
            and not isinstance(v, bool)
    return [f.name for f in fields(obj) if numeric(getattr(obj, f.name))]


def _dose_index(study, name: str) -> int:
    """Index into study.treatments of ``dose:<drug>[#k]``."""
    spec = name[len("dose:"):]
    drug, _, k = spec.partition("#")
    hits = [i for i, t in enumerate(study.treatments) if t.drug == drug]
    if not hits:
        raise ValueError(f"parameter {name!r}: the study has no {drug!r} treatment; its drugs "
                         f"are {sorted({t.drug for t in study.treatments})}")
    if k:
        if not k.isdigit() or not 1 <= int(k) <= len(hits):
            raise ValueError(f"parameter {name!r}: use #1..#{len(hits)} for the {len(hits)} "
                             f"{drug!r} regimens")
        return hits[int(k) - 1]
    if len(hits) > 1:
        raise ValueError(f"parameter {name!r}: the study has {len(hits)} {drug!r} regimens; "
                         f"name one as {name}#1 .. {name}#{len(hits)}")
    return hits[0]


def _exercise_index(study):
    hits = [i for i, t in enumerate(study.treatments) if t.drug.startswith("exercise-")]
    return hits[0] if hits else None


def parameter_names(study) -> list:
    """Scalar parameter names the study accepts (``density`` is also accepted)."""
    s = study.settings.remodel
    names = []
    for t in study.treatments:
        n = sum(1 for u in study.treatments if u.drug == t.drug)
        k = [u for u in study.treatments if u.drug == t.drug].index(t) + 1
        names.append(f"dose:{t.drug}" + (f"#{k}" if n > 1 else ""))
    names.append("exercise")
    names += [f"coupling:{n}" for n in _float_fields(study.coupling)]
    names += [f"cell:{n}" for n in _float_fields(s.cell_params)]
    if s.mineral_params is not None:
        names += [f"mineral:{n}" for n in _float_fields(s.mineral_params)]
    names += [f"patient:{n}" for n in _float_fields(study.patient)]
    return names + ["law:a", "law:b", "density_scale"]


def _check_name(study, name: str) -> None:
    if name == "density" or name in ("law:a", "law:b", "density_scale", "exercise"):
        return
    if name.startswith("dose:"):
        _dose_index(study, name)
        return
    prefix, _, rest = name.partition(":")
    objs = {"coupling": study.coupling, "cell": study.settings.remodel.cell_params,
            "mineral": study.settings.remodel.mineral_params, "patient": study.patient}
    if prefix in objs and objs[prefix] is not None:
        if rest in _float_fields(objs[prefix]):
            return
        raise ValueError(f"parameter {name!r}: {rest!r} is not a float field of {prefix}; "
                         f"choose from {_float_fields(objs[prefix])}")
    raise ValueError(f"unknown parameter {name!r}; use dose:<drug>, exercise, coupling:<field>, "
                     f"cell:<field>, mineral:<field>, patient:<field>, law:a, law:b, "
                     f"density_scale or density (see febone.study.parameters)")


def base_values(study, names) -> dict:
    """{name: the study's own value} (floats; ``density`` gives the (n_elements,) array)."""
    from ..material.laws import density_law

    out = {}
    s = study.settings.remodel
    for name in names:
        _check_name(study, name)
        if name.startswith("dose:"):
            out[name] = float(study.treatments[_dose_index(study, name)].dose)
        elif name == "exercise":
            i = _exercise_index(study)
            out[name] = 0.0 if i is None else float(study.treatments[i].dose)
        elif name in ("law:a", "law:b"):
            out[name] = float(getattr(density_law(s.law), name[-1]))
        elif name == "density_scale":
            out[name] = 1.0
        elif name == "density":
            out[name] = study.rho0
        else:
            prefix, _, rest = name.partition(":")
            obj = {"coupling": study.coupling, "cell": s.cell_params, "mineral": s.mineral_params,
                   "patient": study.patient}[prefix]
            out[name] = float(getattr(obj, rest))
    return out


def apply(study, params: dict) -> Resolved:
    """The model inputs of ``study`` with ``params`` (see the module docstring) applied."""
    from ..material.laws import density_law

    s = study.settings.remodel
    treatments = list(study.treatments)
    groups = {"coupling": {}, "cell": {}, "mineral": {}, "patient": {}}
    law = density_law(s.law)
    a, b = law.a, law.b
    rho0 = study.rho0
    for name, value in params.items():
        _check_name(study, name)
        value = jnp.asarray(value, rho0.dtype)
        if name.startswith("dose:"):
            i = _dose_index(study, name)
            treatments[i] = replace(treatments[i], dose=value)
        elif name == "exercise":
            i = _exercise_index(study)
            if i is None:
                treatments.append(replace(Treatment.create(EXERCISE_DRUG, 0.1, "fraction"),
                                          dose=value))
            else:
                treatments[i] = replace(treatments[i], dose=value)
        elif name == "law:a":
            a = value
        elif name == "law:b":
            b = value
        elif name == "density_scale":
            rho0 = rho0 * value
        elif name == "density":
            if value.shape != study.rho0.shape:
                raise ValueError(f"parameter 'density' must have shape {study.rho0.shape} "
                                 f"(one g/cm³ value per element); got {value.shape}")
            rho0 = value
        else:
            prefix, _, rest = name.partition(":")
            groups[prefix][rest] = value
    return Resolved(replace(study.patient, **groups["patient"]), tuple(treatments),
                    replace(study.coupling, **groups["coupling"]),
                    replace(s.cell_params, **groups["cell"]),
                    None if s.mineral_params is None else replace(s.mineral_params,
                                                                  **groups["mineral"]),
                    replace(law, a=a, b=b), rho0)

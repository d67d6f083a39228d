"""Outcomes, gradients, central differences, sensitivity tables and batched runs of a study.

All entry points compile once per study structure (the :class:`~febone.study.model.Study` is
an argument of the compiled functions, not a constant), so repeated calls — finite-difference
checks, optimiser iterations, cohorts of the same size — reuse one executable.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .model import OUTCOMES, Outcomes, Study, forward
from .parameters import base_values

__all__ = ["outcome", "value_and_grad", "finite_difference", "fd_step", "sensitivity",
           "SensitivityResult", "batch", "loop"]

log = logging.getLogger(__name__)


def _select(study: Study, out: Outcomes, name: str):
    if name in OUTCOMES:
        return getattr(out, name)
    if name.startswith("bmd_change:") and name[len("bmd_change:"):] in study.regions:
        return out.bmd_change[study.regions.index(name[len("bmd_change:"):])]
    raise ValueError(f"unknown outcome {name!r}; choose from {list(study.outcome_names)}")


def outcome(study: Study, params: dict, name: str = "fracture_load"):
    """Scalar outcome ``name`` of :func:`forward` (traceable): ``fracture_load`` (N),
    ``stiffness`` (N/mm), ``mean_bvtv_change`` (%) or ``bmd_change:<region>`` (%)."""
    return _select(study, forward(study, params), name)


_forward_jit = jax.jit(forward)


@jax.jit
def _batched(study, params):
    return jax.vmap(forward, in_axes=(None, 0))(study, params)


def _check_outcome(study: Study, name: str) -> None:
    if name not in study.outcome_names:
        raise ValueError(f"unknown outcome {name!r}; choose from {list(study.outcome_names)}")


_VG = {}


def _value_and_grad_fn(name: str):
    if name not in _VG:
        _VG[name] = jax.jit(jax.value_and_grad(lambda st, p: outcome(st, p, name), argnums=1))
    return _VG[name]


def value_and_grad(study: Study, params: dict, name: str = "fracture_load"):
    """(value, {parameter: d value / d parameter}) by reverse mode through the whole run."""
    _check_outcome(study, name)
    return _value_and_grad_fn(name)(study, _as_arrays(params))


def _as_arrays(params: dict) -> dict:
    return {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in params.items()}


def fd_step(name: str, value) -> float:
    """Finite-difference step for a parameter: 10⁻³ of its magnitude (at least 10⁻⁵), balancing
    O(h²) truncation against the ~10⁻⁸ relative noise of the CG solves; 10⁻⁴ at a zero value
    (then the difference is one-sided forward: doses and exercise cannot go negative, and at
    zero load increase the mechanical feedback has a kink at Ψ/Ψ̆ = 1)."""
    v = abs(float(value))
    if v == 0.0:
        return 1e-4
    return max(1e-3 * v, 1e-5)


def finite_difference(study: Study, params: dict, names, outcome_name: str = "fracture_load",
                      steps: dict | None = None, *, devices=None) -> dict:
    """{name: central difference (f(x + h) − f(x − h)) / 2h} with :func:`fd_step` steps
    (forward difference (f(x + h) − f(x)) / h at x = 0).

    ``devices`` (a number or a sequence of :class:`jax.Device`, :func:`febone.parallel.
    batch_devices`): run the perturbed parameter sets as one :func:`batch` spread over them
    instead of one after another."""
    _check_outcome(study, outcome_name)
    params = _as_arrays(params)
    if devices is not None:
        return _finite_difference_batch(study, params, list(names), outcome_name, steps,
                                        devices)
    out, f0 = {}, None
    for n in names:
        h = (steps or {}).get(n) or fd_step(n, params[n])
        up = _select(study, _forward_jit(study, {**params, n: params[n] + h}), outcome_name)
        if float(params[n]) == 0.0:
            if f0 is None:
                f0 = _select(study, _forward_jit(study, params), outcome_name)
            out[n] = float((up - f0) / h)
            continue
        dn = _select(study, _forward_jit(study, {**params, n: params[n] - h}), outcome_name)
        out[n] = float((up - dn) / (2.0 * h))
    return out


def _finite_difference_batch(study: Study, params: dict, names, outcome_name: str, steps,
                             devices) -> dict:
    """:func:`finite_difference` with every perturbed set in one sharded :func:`batch`: rows
    ``x + h`` and ``x − h`` per parameter (``x`` once, for the zero-valued ones)."""
    sets, plan = [], {}
    for n in names:
        h = (steps or {}).get(n) or fd_step(n, params[n])
        sets.append({**params, n: params[n] + h})
        if float(params[n]) == 0.0:
            plan[n] = (len(sets) - 1, "base", h)
        else:
            sets.append({**params, n: params[n] - h})
            plan[n] = (len(sets) - 2, len(sets) - 1, h)
    if any(lo == "base" for _, lo, _ in plan.values()):
        sets.append(params)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *sets)
    outs = batch(study, stacked, devices=devices)
    f = np.asarray(jax.vmap(lambda o: _select(study, o, outcome_name))(outs))
    res = {}
    for n, (up, lo, h) in plan.items():
        if lo == "base":
            res[n] = float((f[up] - f[-1]) / h)
        else:
            res[n] = float((f[up] - f[lo]) / (2.0 * h))
    return res


@dataclass(frozen=True)
class SensitivityResult:
    """Value and gradient of one outcome (the JSON of ``febone sensitivity``).

    Attributes:
        outcome: outcome name; value: its value (unit of the outcome).
        parameters: list of {name, value, ad, fd (None without check), step (FD step)}.
        forward_seconds, gradient_seconds: run time of one forward / value-and-gradient
            evaluation, s (compiled; compilation reported separately).
        compile_seconds: {"forward": s, "gradient": s}.
        years: simulated years (nominal, as ``febone run`` reports them); days: simulated days;
            n_steps: mechanical steps; device: where it ran.
        baseline: the outcomes at time 0 as ``febone run`` reports them: ``pistoia_load_N``
            (exact Pistoia), ``surrogate_load_N`` (the differentiated surrogate),
            ``stiffness_N_per_mm``, of the study's strength case.
        precision: the study's precision mode (:attr:`~.model.StudySettings.precision`).
    """

    outcome: str
    value: float
    parameters: list
    forward_seconds: float
    gradient_seconds: float
    compile_seconds: dict = field(default_factory=dict)
    years: float = 0.0
    n_steps: int = 0
    device: str = ""
    days: int = 0
    baseline: dict = field(default_factory=dict)
    precision: str = "float64"

    def summary(self) -> dict:
        """The result, JSON-ready (the name every febone result uses)."""
        return {"outcome": self.outcome, "value": self.value, "parameters": self.parameters,
                "forward_seconds": self.forward_seconds,
                "gradient_seconds": self.gradient_seconds,
                "compile_seconds": self.compile_seconds, "years": self.years,
                "days": self.days, "n_steps": self.n_steps, "baseline": self.baseline,
                "device": self.device, "precision": self.precision}


def _timed(fn, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t


def sensitivity(study: Study, names, outcome_name: str = "fracture_load", *,
                check: bool = False, params: dict | None = None,
                devices=None) -> SensitivityResult:
    """Gradient of one outcome with respect to ``names`` at the study's values (or ``params``).

    Compiles the forward run and its reverse-mode gradient (timed separately), runs each once
    (timed), and with ``check`` adds central differences (:func:`fd_step`) for every parameter;
    with ``devices`` (a number or a sequence of :class:`jax.Device`) their 2 runs per
    parameter go as one batch spread over the devices (:func:`finite_difference`).
    """
    from ..device import device_description

    names = list(names)
    if not names:
        raise ValueError("give at least one parameter (e.g. dose:anastrozole, exercise)")
    if len(set(names)) != len(names):
        raise ValueError(f"parameters repeat: {names}")
    if "density" in names:
        raise ValueError("'density' is an array parameter; use density_scale in sensitivity "
                         "tables (value_and_grad gives the element-wise gradient)")
    _check_outcome(study, outcome_name)
    p = _as_arrays({**base_values(study, names), **(params or {})})
    vg = _value_and_grad_fn(outcome_name)
    t = time.perf_counter()
    fwd_c = _forward_jit.lower(study, p).compile()
    t_fc = time.perf_counter() - t
    t = time.perf_counter()
    vg_c = vg.lower(study, p).compile()
    t_gc = time.perf_counter() - t
    out, t_f = _timed(fwd_c, study, p)
    if not bool(out.converged):
        raise RuntimeError("an FE solve of the study did not converge (or the bone stopped "
                           "resisting its load); check the mesh, node sets and loads")
    (value, grad), t_g = _timed(vg_c, study, p)
    fd = finite_difference(study, p, names, outcome_name, devices=devices) if check else {}
    rows = [{"name": n, "value": float(p[n]), "ad": float(grad[n]), "fd": fd.get(n),
             "step": fd_step(n, p[n]) if check else None} for n in names]
    log.info("sensitivity of %s: forward %.2f s, gradient %.2f s (compile %.1f + %.1f s)",
             outcome_name, t_f, t_g, t_fc, t_gc)
    baseline = {"pistoia_load_N": float(out.pistoia_load[0]),
                "surrogate_load_N": float(out.baseline_fracture_load),
                "stiffness_N_per_mm": float(out.baseline_stiffness)}
    return SensitivityResult(outcome_name, float(value), rows, t_f, t_g,
                             {"forward": t_fc, "gradient": t_gc}, study.years, study.n_steps,
                             device_description(), study.n_days, baseline,
                             study.settings.precision)


def batch(study: Study, params: dict, *, devices=None) -> Outcomes:
    """Outcomes for a batch of parameter sets in one compiled ``vmap`` call.

    Args:
        params: {name: (n_sets,) array} (``density``: (n_sets, n_elements)); every entry must
            have the same leading size.
        devices: None (the default device) or a number N / a sequence of :class:`jax.Device`:
            the sets spread over them (:func:`febone.parallel.map_batch`: N ≤
            ``jax.device_count()``, padded to a multiple of N, no communication between the
            devices; every host's devices after :func:`febone.parallel.initialize_distributed`).

    Returns:
        :class:`Outcomes` with a leading (n_sets,) axis.
    """
    params = _as_arrays(params)
    sizes = {k: v.shape[0] if v.ndim else None for k, v in params.items()}
    if not params or None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"batch needs {{name: (n_sets,) array}} with one common leading size; "
                         f"got shapes {({k: v.shape for k, v in params.items()})}")
    base_values(study, params)          # validates the names
    if devices is None:
        return _batched(study, params)
    from ..parallel import map_batch

    return map_batch(forward, study, params, devices=devices)


def loop(study: Study, params: dict) -> Outcomes:
    """The same as :func:`batch`, one compiled forward call per parameter set (reference)."""
    params = _as_arrays(params)
    n = next(iter(params.values())).shape[0]
    outs = [_forward_jit(study, {k: v[i] for k, v in params.items()}) for i in range(n)]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)

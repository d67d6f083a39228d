"""FE-free remodelling of a skeletal site: patient + treatments → BV/TV, BMD and markers over time.

A site is a set of elements (``f_bm``: BV/TV of each, with optional volume weights) that share
the patient's daily drives (:func:`~febone.remodel.coupling.daily_inputs`). Instead of an FE
solve, each element carries the force-controlled mechanical closure: under a fixed habitual load
the stress stays constant, so the strain energy density scales as 1/E, and with E ∝ f_bm^B

    Ψ/Ψ̆ = load_factor² · E0/E = load_factor² · (f_bm,0 / f_bm)^B

(B = 1.49: Morgan et al. 2003, femoral neck, E ∝ ρ_app^1.49), so bone that is lost raises the
strain energy density of what remains and the Scheiner 2013 feedback resists further loss; an
exercise programme raises Ψ by load_factor². The cell model is
:func:`febone.remodel.cells.simulate` (Rosenbrock, adaptive) with turnover proportional to the
specific surface (Lerebours 2016; ``specific_surface=True``), so trabecular elements (low f_bm)
turn over and lose faster than cortical ones; mineralisation follows Martínez-Reina 2019
(its rate scaled by the run-mean ``mineralisation_factor``).

Start: every element at its own homeostatic steady state under neutral drives. ``spinup_years``
runs the untreated patient for that long before the scenario start (from age
``age_years − spinup_years``) so that a patient who starts years after menopause or with a long
hypogonadism is in her adapted, high-turnover state at time 0; changes and markers are then
reported relative to time 0, and ``f_bm`` is the BV/TV at the start of the spin-up.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .cells import CellState, Drives, simulate, specific_surface, steady_state
from .coupling import DEFAULT_COUPLING, CouplingParameters, daily_inputs
from .hormones import YEAR_DAYS, HormoneSeries, hormone_series
from .mineral import init_mineral
from .parameters import (MINERAL_MARTINEZ_REINA_2019, SITE_CELL_PARAMETERS, CellParameters,
                         MineralParameters)
from .patient import Patient
from .treatments import Treatment

logger = logging.getLogger(__name__)

__all__ = ["SiteResult", "simulate_site", "SITE_CELL_PARAMETERS", "MODULUS_EXPONENT"]

#: Exponent B of E ∝ ρ_app^B (Morgan et al. 2003, femoral neck: 6850 ρ^1.49 MPa).
MODULUS_EXPONENT = 1.49


@dataclass(frozen=True)
class SiteResult:
    """Result of :func:`simulate_site` at the output times (n_out of them, from time 0).

    Attributes:
        t_years: (n_out,) years from the scenario start.
        bvtv: (n_out, n) BV/TV of every element (fraction).
        v_m: (n_out, n) mean mineral volume fraction of the matrix.
        mineral_density_mg_cm3: (n_out, n) mineral per bulk volume ρ_m·v_m·f_bm, mg/cm³.
        apparent_density_g_cm3: (n_out, n) ρ_t·f_bm, g/cm³.
        bmd_mg_cm3: (n_out,) weighted mean mineral density of the site, mg/cm³ (∝ DXA BMD).
        bmd_change_pct, bvtv_change_pct: (n_out,) % change of the weighted means from time 0.
        ctx_rel, p1np_rel: (n_out,) resorption / formation (k_res OCa, k_form OBa times the
            specific-surface factor, weighted) relative to time 0.
        final: :class:`~febone.remodel.cells.CellState` at the end.
        series: :class:`~febone.remodel.hormones.HormoneSeries` of the scenario days.
    """

    t_years: jax.Array
    bvtv: jax.Array
    v_m: jax.Array
    mineral_density_mg_cm3: jax.Array
    apparent_density_g_cm3: jax.Array
    bmd_mg_cm3: jax.Array
    bmd_change_pct: jax.Array
    bvtv_change_pct: jax.Array
    ctx_rel: jax.Array
    p1np_rel: jax.Array
    final: CellState
    series: HormoneSeries

    def at(self, years, field: str = "bmd_change_pct"):
        """``field`` (an (n_out,) attribute) linearly interpolated at ``years`` from the start."""
        return jnp.interp(jnp.asarray(years, self.t_years.dtype), self.t_years,
                          getattr(self, field))


jax.tree_util.register_dataclass(
    SiteResult, data_fields=["t_years", "bvtv", "v_m", "mineral_density_mg_cm3",
                             "apparent_density_g_cm3", "bmd_mg_cm3", "bmd_change_pct",
                             "bvtv_change_pct", "ctx_rel", "p1np_rel", "final", "series"],
    meta_fields=[])


def _shift(tr: Treatment, years: float) -> Treatment:
    stop = None if tr.stop_years is None else tr.stop_years + years
    return replace(tr, start_years=tr.start_years + years, stop_years=stop)


@partial(jax.jit, static_argnames=("days", "step", "B", "rtol"))
def _run_cells(cell_params, mineral_params, f0, table: Drives, lf, *, days, step, B, rtol):
    """Cell model with the force-controlled closure, compiled once per (n, days, step, B)."""
    s0 = steady_state(cell_params, f_bm=f0)
    m0 = init_mineral(s0, cell_params, mineral_params)

    def drives_fn(t, state, v_m):
        k = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, days - 1)
        d = jax.tree_util.tree_map(lambda a: a[k], table)
        return replace(d, psi_ratio=lf[k] ** 2 * (f0 / state.f_bm) ** B)

    return simulate(cell_params, s0, drives_fn, days=days, mineral=m0,
                    mineral_params=mineral_params, save_every=step, rtol=rtol)


def simulate_site(patient: Patient, treatments: Sequence[Treatment] = (), *, years: float, f_bm,
                  weights=None, coupling: CouplingParameters = DEFAULT_COUPLING,
                  cell_params: CellParameters = SITE_CELL_PARAMETERS,
                  mineral_params: MineralParameters = MINERAL_MARTINEZ_REINA_2019,
                  modulus_exponent: float = MODULUS_EXPONENT, spinup_years: float = 0.0,
                  output_every_days: int = 30, rtol: float | None = 1e-4) -> SiteResult:
    """Remodel a site of ``n`` elements for ``years`` under the patient's hormones and drugs.

    Args:
        patient: :class:`Patient` (age at the scenario start).
        treatments: sequence of :class:`Treatment` (times from the scenario start).
        years: scenario length, years (> 0); spin-up + scenario are rounded up to whole output
            intervals (so runs with the same spinup_years + years share one compilation).
        f_bm: (n,) BV/TV of each element at the (spin-up) start, fractions in (0, 1].
        weights: (n,) volume weights of the elements (default equal), for the site means.
        coupling: :class:`CouplingParameters` (default the calibrated set).
        cell_params: cell-model parameters (default Martínez-Reina 2019 with specific surface).
        mineral_params: mineralisation parameters.
        modulus_exponent: B in E ∝ f_bm^B for the mechanical closure.
        spinup_years: untreated history before the scenario start, years (≥ 0).
        output_every_days: output interval, days (int ≥ 1).
        rtol: adaptive tolerance of the cell model (None: fixed 1-day steps).

    Returns:
        :class:`SiteResult`.

    Raises:
        TypeError / ValueError: bad patient, treatments, f_bm, weights, years or intervals.
    """
    if not isinstance(patient, Patient):
        raise TypeError(f"patient must be a Patient; got {type(patient).__name__}")
    if isinstance(years, bool) or not isinstance(years, (int, float)) or not years > 0:
        raise ValueError(f"years must be a positive number of years; got {years!r}")
    if isinstance(spinup_years, bool) or not isinstance(spinup_years, (int, float)) \
            or not (spinup_years >= 0 and math.isfinite(spinup_years)):
        raise ValueError(f"spinup_years must be a number ≥ 0 (years); got {spinup_years!r}")
    if spinup_years > 0 and not isinstance(patient.age_years, jax.core.Tracer) \
            and patient.age_years - spinup_years < 0:
        raise ValueError(f"spinup_years ({spinup_years}) exceeds the patient's age "
                         f"({patient.age_years} years)")
    if not (isinstance(output_every_days, int) and output_every_days >= 1):
        raise ValueError(f"output_every_days must be a positive integer; got "
                         f"{output_every_days!r}")
    f0 = jnp.atleast_1d(jnp.asarray(f_bm, dtype=jnp.result_type(float)))
    if f0.ndim != 1:
        raise ValueError(f"f_bm must be a 1-D array of BV/TV fractions (n,); got shape {f0.shape}")
    if not isinstance(f0, jax.core.Tracer):
        fa = np.asarray(f0)
        if not (np.all(np.isfinite(fa)) and np.all(fa > 0) and np.all(fa <= 1)):
            hint = " (it looks like percent: divide by 100)" if np.nanmax(fa) > 1 else ""
            raise ValueError(f"f_bm (BV/TV) must be fractions in (0, 1]; got "
                             f"{np.nanmin(fa):g}..{np.nanmax(fa):g}{hint}")
    w = jnp.ones_like(f0) if weights is None else jnp.asarray(weights, f0.dtype)
    if w.shape != f0.shape:
        raise ValueError(f"weights must have the shape of f_bm {f0.shape}; got {w.shape}")
    if not isinstance(w, jax.core.Tracer) and not bool(np.all(np.asarray(w) >= 0)
                                                       and np.asarray(w).sum() > 0):
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / jnp.sum(w)

    step = output_every_days
    spin_days = int(round(spinup_years * YEAR_DAYS / step)) * step
    days = int(math.ceil((spinup_years + years) * YEAR_DAYS / step - 1e-9)) * step
    days = max(days, spin_days + step)
    spin = spin_days / YEAR_DAYS
    hist = replace(patient, age_years=patient.age_years - spin) if spin_days else patient
    series = hormone_series(hist, [_shift(t, spin) for t in treatments], days=days,
                            dtype=f0.dtype)
    inputs = daily_inputs(series, coupling)
    mineral_params = replace(mineral_params,
                             rate=mineral_params.rate * jnp.mean(inputs.mineralisation_factor))

    tr = _run_cells(cell_params, mineral_params, f0, inputs.drives, inputs.load_factor,
                    days=days, step=step, B=float(modulus_exponent), rtol=rtol)
    i0 = spin_days // step
    st = jax.tree_util.tree_map(lambda a: a[i0:], tr.states)
    v_m = tr.v_m[i0:]
    t_years = (tr.t[i0:] - spin_days) / YEAR_DAYS
    f = st.f_bm
    mp = mineral_params
    mineral_density = 1000.0 * mp.rho_mineral * v_m * f
    apparent = (1.0 + (mp.rho_mineral - 1.0) * v_m + (mp.rho_organic - 1.0) * mp.v_organic) * f
    bmd = mineral_density @ w
    bv = f @ w
    sv = (specific_surface(f) / specific_surface(cell_params.sv_reference_bvtv)
          if cell_params.specific_surface else jnp.ones_like(f))
    ctx = (cell_params.k_res * st.OCa * sv) @ w
    p1np = (cell_params.k_form * st.OBa * sv) @ w
    return SiteResult(t_years, f, v_m, mineral_density, apparent, bmd,
                      100.0 * (bmd / bmd[0] - 1.0), 100.0 * (bv / bv[0] - 1.0),
                      ctx / ctx[0], p1np / p1np[0], tr.final, series.slice(spin_days))

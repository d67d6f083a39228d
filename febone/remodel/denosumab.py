"""Denosumab pharmacokinetics (Martínez-Reina & Pivonka 2019) as a drive for the cell model.

One compartment with a subcutaneous depot A (ng), first-order absorption, Michaelis-Menten plus
linear elimination of the serum concentration C (ng/mL):

    dA/dt = −k_a A,   dC/dt = k_a A / (V_c/F) − V_max/(V_c/F) · C/(K_m + C) − k_el C

A dose D adds D to the depot (for a single dose from C = 0 this is the paper's
k_a D/(V_c/F) e^(−k_a t) input). V_c and V_max are per kg and scaled by the body mass.
The concentration enters the cell model in pM (C·10⁶/M, M = 149 kDa) through
``Drives.denosumab``: RANKL's binding denominator gains χ K_den C_den.

bone-models 0.1.0 restarts the PK from C = 0 at every dose (it solves one 183-day dosing interval
and repeats it); ``reset_each_dose=True`` reproduces that, the default carries the remaining drug
over (superposition through the nonlinear ODE).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .parameters import DenosumabParameters, DENOSUMAB_MARTINEZ_REINA_2019

__all__ = ["DenosumabPK", "denosumab_pk", "concentration_pM", "dose_days"]


@dataclass(frozen=True)
class DenosumabPK:
    """Tabulated serum concentration.

    Attributes:
        t: (m,) days on a uniform grid.
        C_ng_ml: (m,) serum concentration, ng/mL.
        C_pM: (m,) the same in pM.
    """

    t: jax.Array
    C_ng_ml: jax.Array
    C_pM: jax.Array


jax.tree_util.register_dataclass(DenosumabPK, data_fields=["t", "C_ng_ml", "C_pM"], meta_fields=[])


def dose_days(first: float, every: float, until: float) -> np.ndarray:
    """Dosing times first, first + every, ... (< until), days: ``dose_days(365, 183, 4000)``."""
    if every <= 0:
        raise ValueError(f"dosing interval must be positive (days); got {every}")
    return np.arange(first, until, every, dtype=float)


def denosumab_pk(doses, *, days, dose_mg=60.0, t0: float = 0.0, dt: float = 1.0 / 16.0,
                 reset_each_dose: bool = False,
                 params: DenosumabParameters = DENOSUMAB_MARTINEZ_REINA_2019) -> DenosumabPK:
    """Serum denosumab concentration over ``[t0, t0 + days]`` for subcutaneous doses.

    Integrated with classical RK4 on a uniform ``dt`` grid (default 1/16 day; k_a·dt ≈ 0.01, so the
    discretisation error is ~1e-9 relative); doses are applied at grid points.

    Args:
        doses: dosing times, days (array; each a multiple of ``dt`` after ``t0``).
        days: length of the table, days.
        dose_mg: dose per injection, mg (scalar, or one per dose); 60 mg for Prolia; may be a
            traced value (``jax.grad`` with respect to the dose works).
        t0: start of the table, days (C = 0 and an empty depot before the first dose).
        dt: grid step, days.
        reset_each_dose: restart from C = 0 at each dose (bone-models' convention).
        params: :class:`DenosumabParameters`.

    Returns:
        :class:`DenosumabPK` with m = days/dt + 1 points.

    Raises:
        ValueError: doses off the grid or outside the table, non-positive days/dt, negative dose.
    """
    if not (days > 0 and dt > 0) or abs(days / dt - round(days / dt)) > 1e-9:
        raise ValueError(f"days ({days}) and dt ({dt}) must be positive with days a multiple of dt")
    n = int(round(days / dt))
    doses = np.atleast_1d(np.asarray(doses, dtype=float))
    k = (doses - t0) / dt
    if np.any(np.abs(k - np.round(k)) > 1e-6) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"dose times must lie on the grid t0 + i·dt within [t0, t0 + days] "
                         f"(t0 = {t0}, dt = {dt}); got {doses.tolist()[:10]}")
    dtype = jnp.result_type(float)
    mg = jnp.broadcast_to(jnp.asarray(dose_mg, dtype=dtype), doses.shape)   # may be traced
    if not isinstance(mg, jax.core.Tracer) and np.any(np.asarray(mg) < 0):
        raise ValueError(f"doses must be non-negative (mg); got {np.asarray(mg).min()}")
    idx = np.round(k).astype(int)
    amount = jnp.zeros(n + 1, dtype=dtype).at[idx].add(mg * 1e6)     # ng
    is_dose = np.zeros(n + 1, dtype=bool)
    is_dose[idx] = True

    p = params
    Vc = p.V_c_ml_per_kg * p.body_mass_kg / p.F                     # mL (V_c/F)
    vmax = p.V_max_ng_per_kg_day * p.body_mass_kg / Vc              # ng/mL/day

    def f(y):
        A, C = y
        dC = p.k_a * A / Vc - vmax * C / (p.K_m_ng_per_ml + C) - p.k_el * C
        return jnp.stack([-p.k_a * A, dC])

    def body(y, inp):
        add, dose = inp
        if reset_each_dose:
            y = jnp.where(dose, jnp.stack([add, 0.0]), y)
        else:
            y = y.at[0].add(add)
        out = y[1]
        k1 = f(y)
        k2 = f(y + 0.5 * dt * k1)
        k3 = f(y + 0.5 * dt * k2)
        k4 = f(y + dt * k3)
        return y + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), out

    _, C = jax.lax.scan(body, jnp.zeros(2, dtype=dtype),
                        (amount, jnp.asarray(is_dose)))
    t = t0 + dt * jnp.arange(n + 1, dtype=dtype)
    return DenosumabPK(t, C, C * 1e6 / p.molar_mass_g_per_mol)


def concentration_pM(pk: DenosumabPK, t):
    """Serum concentration at time(s) ``t`` (days), pM, by linear interpolation of the table
    (0 before it; NaN after its end, so a run longer than the table fails loudly). Use as
    ``Drives(denosumab=concentration_pM(pk, t))`` inside a drives function."""
    return jnp.interp(t, pk.t, pk.C_pM, left=0.0, right=jnp.nan)

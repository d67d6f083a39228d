"""Strain-energy remodelling law (Huiskes et al. 1987; Weinans, Huiskes & Grootenboer 1992).

The classical phenomenological alternative to the cell model (science.md §3): each element's
apparent density ρ follows its strain energy density per unit mass under the habitual loading,

    S = U / ρ                                                    (J/g)
    dρ/dt = B · (S − (1 + s) k)    if S > (1 + s) k              (formation)
          = B · (S − (1 − s) k)    if S < (1 − s) k              (resorption)
          = 0                      otherwise                     (lazy zone)
    E = a ρ^b  (Weinans 1992: a = 100 MPa/(g/cm³)², b = 2),  ρ clipped to [ρ_min, ρ_max]

Units. U is the habitual strain energy density of :func:`~febone.remodel.mechanics.habitual_sed`
in MPa = N/mm² = mJ/mm³, ρ is in g/cm³ = 1e-3 g/mm³, so

    S = U/ρ  [mJ/mm³ / (1e-3 g/mm³)] = 1e3 mJ/g · U/ρ = 1 J/g · (U [MPa] / ρ [g/cm³]):

the numbers need no conversion factor (1 MPa/(g/cm³) = 1 J/g). B turns J/g into g/cm³ per time
unit, so its unit is (g/cm³)/((J/g)·time) = (g/cm³)²/(MPa·time). Weinans' plate uses k = 0.25 J/g,
B = 1 (g/cm³)²/(MPa·time unit), s = 0 and a nominal time unit; here one time unit is
``SEDLaw.time_unit_years`` years (default 1: B per year) so that runs can be asked for in years.

Time stepping is explicit (forward Euler) with the stimulus recomputed by an FE solve of the
habitual load cases at every step (force control, warm starts):
ρ_{n+1} = clip(ρ_n + Δt · dρ/dt(S_n, ρ_n)). Linearising around the equilibrium of a bar in
uniaxial stress (S = σ²/(2aρ³) for b = 2) gives the stability limit Δt < 2ρ*/(3Bk) and a
monotone approach for Δt < ρ*/(3Bk); low-density regions limit the step.

With ``smoothing`` the density *rate* is averaged element → node → element
(:func:`febone.remodel.mechanics._smooth`: volume-weighted to the nodes, mean of the corners
back) before it is applied: a node-based update in the spirit of Jacobs et al. 1995, the remedy
for the checkerboards of element-wise density laws on linear elements (Weinans 1992). A
checkerboard pattern averages to nearly zero at the nodes, so it can no longer grow. The FE
stimulus itself is not smoothed, so the lazy zone acts on each element's own S.

References:
    Huiskes R, et al. (1987) J Biomech 20:1135–1150.
    Weinans H, Huiskes R, Grootenboer HJ (1992) J Biomech 25:1425–1441.
    Jacobs CR, et al. (1995) J Biomech 28:449–459.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..mesh.mesh import Mesh
from ..solve.solution import ConvergenceError
from .mechanics import DEFAULT_HABITUAL, _smooth, build_stimulus, habitual_sed, lazy_zone

__all__ = ["SEDLaw", "WEINANS_1992", "SEDRemodelResult", "sed_remodel"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SEDLaw:
    """Parameters of the strain-energy remodelling law (defaults: Weinans et al. 1992, plate).

    Attributes:
        k: reference stimulus (homeostatic S), J/g.
        B: rate constant, (g/cm³)²/(MPa·time unit) = (g/cm³ per time unit) per J/g.
        s: half-width of the lazy zone as a fraction of k, 0 ≤ s < 1 (0: no lazy zone).
        a: modulus coefficient of E = a ρ^b, MPa/(g/cm³)^b.
        b: modulus exponent.
        rho_min: lower density bound, g/cm³.
        rho_max: upper density bound (cortical bone), g/cm³.
        time_unit_years: length of the law's time unit in years (Weinans' is nominal).
    """

    k: float = 0.25
    B: float = 1.0
    s: float = 0.0
    a: float = 100.0
    b: float = 2.0
    rho_min: float = 0.01
    rho_max: float = 1.74
    time_unit_years: float = 1.0

    def __post_init__(self):
        for name in ("k", "B", "a", "b", "rho_min", "time_unit_years"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"SEDLaw.{name} must be a positive finite number; got {v!r} "
                                 f"(Weinans 1992: k = 0.25 J/g, B = 1, E = 100 ρ²)")
        if not (isinstance(self.s, (int, float)) and 0.0 <= self.s < 1.0):
            raise ValueError(f"SEDLaw.s (lazy-zone half-width, fraction of k) must lie in "
                             f"[0, 1); got {self.s!r}")
        if not (math.isfinite(self.rho_max) and self.rho_max > self.rho_min):
            raise ValueError(f"SEDLaw.rho_max must exceed rho_min = {self.rho_min} g/cm³; "
                             f"got {self.rho_max!r}")

    def modulus(self, rho):
        """E = a ρ^b, MPa, for ρ in g/cm³ (any shape)."""
        return self.a * rho ** self.b

    def rate(self, S):
        """dρ/dt (g/cm³ per time unit) for stimulus S (J/g), any shape; the lazy zone is
        :func:`~febone.remodel.mechanics.lazy_zone` of S/k: B·k·(lazy(S/k) − 1) equals
        B(S − (1 ± s)k) outside the zone and 0 inside."""
        return self.B * self.k * (lazy_zone(S / self.k, self.s) - 1.0)


#: Weinans, Huiskes & Grootenboer 1992 (plate model): k = 0.25 J/g, B = 1, E = 100 ρ², no zone.
WEINANS_1992 = SEDLaw()


@dataclass(frozen=True)
class SEDRemodelResult:
    """Outcome of :func:`sed_remodel`.

    Attributes:
        time: (n_out,) output times in the law's time units (0 = start).
        density: (n_out, n_elements) apparent densities at the output times, g/cm³.
        stimulus: (n_out, n_elements) S = U/ρ at the output times, J/g.
        stiffness: (n_steps + 1, n_cases) axial stiffness of each habitual load case at every
            step's density (index 0 = start, last = final state), N/mm.
        cases: names of the habitual load cases (columns of ``stiffness``).
        law: the :class:`SEDLaw` used.
        dt: step, time units.
    """

    time: np.ndarray
    density: np.ndarray
    stimulus: np.ndarray
    stiffness: np.ndarray
    cases: tuple
    law: SEDLaw
    dt: float

    @property
    def time_years(self) -> np.ndarray:
        """(n_out,) output times, years."""
        return self.time * self.law.time_unit_years


@partial(jax.jit, static_argnames=("law",))
def _sed_step(stim, smoother, rho, u, nu, dt, *, law):
    """One forward-Euler step: FE stimulus at ρ_n, then ρ_{n+1} (traced; one compilation)."""
    psi, u, forces, ok = habitual_sed(stim, law.modulus(rho), nu, u)
    S = psi / rho                                  # MPa/(g/cm³) = J/g
    rate = law.rate(S)
    if smoother is not None:
        rate = _smooth(smoother, rate)
    rho_new = jnp.clip(rho + dt * rate, law.rho_min, law.rho_max)
    return rho_new, S, u, forces, ok


def _initial_density(mesh: Mesh, rho0, law: SEDLaw) -> np.ndarray:
    if rho0 is None:
        if "density_g_cm3" not in mesh.cell_data:
            raise ValueError("the mesh has no cell data 'density_g_cm3' (apparent density, "
                             "g/cm³); pass rho0=<(n_elements,) array> or add the field")
        rho0 = mesh.cell_data["density_g_cm3"]
    rho = np.asarray(rho0, dtype=np.float64)
    if rho.ndim == 0:
        rho = np.full(mesh.n_elements, float(rho))
    if rho.shape != (mesh.n_elements,):
        raise ValueError(f"rho0 must have shape ({mesh.n_elements},) (one apparent density per "
                         f"element, g/cm³); got {np.shape(rho0)}")
    bad = np.flatnonzero(~np.isfinite(rho))
    if bad.size:
        raise ValueError(f"initial densities are NaN or infinite in elements "
                         f"{bad[:10].tolist()}; fill them before remodelling")
    out = np.flatnonzero((rho < law.rho_min) | (rho > law.rho_max))
    if out.size:
        raise ValueError(f"initial densities of elements {out[:10].tolist()} lie outside the "
                         f"law's bounds [{law.rho_min}, {law.rho_max}] g/cm³ (range "
                         f"{rho.min():.4g}…{rho.max():.4g}); clip them or widen "
                         f"SEDLaw.rho_min/rho_max")
    return rho


def sed_remodel(mesh: Mesh, *, steps: int | None = None, years: float | None = None,
                dt: float = 1.0, law: SEDLaw = WEINANS_1992, habitual=DEFAULT_HABITUAL,
                body_mass_kg: float = 70.0, nu: float = 0.3, rho0=None,
                smoothing: bool = False, output_every: int = 1, preconditioner: str = "auto",
                progress: Callable | None = None) -> SEDRemodelResult:
    """Remodel the bone's densities with the strain-energy law, explicit in time.

    Args:
        mesh: the bone with the habitual load cases' node sets (and ``density_g_cm3`` cell data
            unless ``rho0`` is given).
        steps: number of forward-Euler steps; or
        years: run length in years (a whole number of steps of ``dt · law.time_unit_years``).
        dt: step, time units of ``law`` (stable for dt < 2ρ*/(3Bk), see the module notes).
        law: :class:`SEDLaw` parameters.
        habitual: sequence of :class:`~febone.remodel.mechanics.HabitualLoad` (force control).
        body_mass_kg: body mass, kg (habitual forces = magnitude_bw × body mass × 9.81 N).
        nu: Poisson's ratio.
        rho0: (n_elements,) initial apparent densities, g/cm³ (default: the mesh's
            ``density_g_cm3``); must lie within [law.rho_min, law.rho_max].
        smoothing: average the density rate element → node → element (anti-checkerboard).
        output_every: record density and stimulus every this many steps (and at the end).
        preconditioner: ``"auto"``, ``"amg"`` or ``"jacobi"`` for the habitual solves.
        progress: optional ``callback(step, n_steps)`` after every step.

    Returns:
        :class:`SEDRemodelResult`.

    Raises:
        ValueError: bad arguments or densities; ConvergenceError: an FE solve failed.
    """
    if not isinstance(law, SEDLaw):
        raise TypeError(f"law must be an SEDLaw; got {type(law).__name__}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of time units; got {dt!r}")
    if (steps is None) == (years is None):
        raise ValueError("give exactly one of steps=<int> or years=<float>")
    if years is not None:
        if not (isinstance(years, (int, float)) and math.isfinite(years) and years > 0):
            raise ValueError(f"years must be positive; got {years!r}")
        step_years = dt * law.time_unit_years
        steps = int(round(years / step_years))
        if steps < 1 or abs(steps * step_years - years) > 1e-9 * years:
            raise ValueError(f"years = {years} is not a whole number of steps of {step_years:g} "
                             f"years (dt × law.time_unit_years); adjust dt or use steps=")
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if not (isinstance(output_every, (int, np.integer)) and output_every >= 1):
        raise ValueError(f"output_every must be a positive integer; got {output_every!r}")
    rho = _initial_density(mesh, rho0, law)

    full = build_stimulus(mesh, np.asarray(law.modulus(rho)), nu=nu, habitual=habitual,
                          body_mass_kg=body_mass_kg, smoothing=smoothing,
                          preconditioner=preconditioner)
    # the SED itself stays element-wise; only the density rate is smoothed
    stim = replace(full, smooth_nodes=None, node_weight=None)
    smoother = full if smoothing else None
    cases = tuple(h.case for h in habitual)
    u = tuple(jnp.zeros((mesh.n_nodes, 3)) for _ in stim.cases)
    rho_j = jnp.asarray(rho)
    times, dens, stims, stiff = [], [], [], []
    for k in range(steps + 1):
        rho_new, S, u, forces, ok = _sed_step(stim, smoother, rho_j, u, nu, dt, law=law)
        if not bool(ok):
            raise ConvergenceError(f"habitual-load FE solve failed at step {k} (CG did not "
                                   f"converge or the bone no longer resists the load)")
        stiff.append(np.asarray(forces))
        if k % output_every == 0 or k == steps:
            times.append(k * dt)
            dens.append(np.asarray(rho_j))
            stims.append(np.asarray(S))
        if k == steps:
            break                                  # the last solve only measures the final state
        rho_j = rho_new
        if progress is not None:
            progress(k + 1, steps)
    log.info("SED remodelling: %d steps of %g, mean density %.4g → %.4g g/cm³", steps, dt,
             dens[0].mean(), dens[-1].mean())
    return SEDRemodelResult(np.asarray(times), np.stack(dens), np.stack(stims), np.stack(stiff),
                            cases, law, float(dt))

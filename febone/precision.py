"""Precision modes, the precision of contractions, and the deterministic mode.

Three modes, each with the tolerances it can honestly reach (relative residual
‖b − K u‖/‖b‖ of the linear solves, measured in the mode's own arithmetic):

================  ==========  ===============================================  ==========  ========
mode              needs x64   what runs in which precision                     default     smallest
                                                                               rtol        rtol
================  ==========  ===============================================  ==========  ========
``"float64"``     yes         everything float64 (the voxel multigrid cycle    1e-8        1e-12
                              in float32, which changes iterations only)
``"mixed"``       yes         float32 inner CG (operator, preconditioner)      1e-8        1e-12
                              inside a float64 residual correction
                              (iterative refinement): float64 answers, about
                              half the bytes per iteration
``"float32"``     no          everything float32                               1e-5        1e-5
================  ==========  ===============================================  ==========  ========

float32 stops near 1e-6 (round-off of the float32 residual K u − b on voxel models with
modulus contrast); 1e-5 leaves a margin, and the displacements then carry a relative
error of about rtol × the condition number's share seen by the load (≲ 1e-3 on trabecular
bone): stiffness to about three digits (measured on the CPU: 2e-4 and 5e-4 on the LHDL
micro-CT sample at 156 µm, 1e-5 on the bundled coarse femur), not enough for gradients
checked against finite differences. Use ``"mixed"`` on a GPU for float64-accurate answers at float32 speed.

Remodelling (``febone run --precision`` / :func:`febone.remodel.run_scenario`; ``febone
sensitivity --precision`` / :class:`febone.study.StudySettings`), outputs against float64
(:data:`RUN_TOLERANCES`: relative for stiffness, fracture loads, vBMD/aBMD, markers and mean
BV/TV; percentage points for the % changes of BMD), documented and (measured):

================  ===============================================  ===================  ===========
mode              what runs in which precision                     relative             % change,
                                                                                        points
================  ===============================================  ===================  ===========
``"float64"``     everything float64 (habitual solves rtol 1e-8,   reference            reference
                  strength solves 1e-10)
``"mixed"``       the habitual and strength FE solves as float32   1e-6 (8.3e-8)        1e-5 (1e-6)
                  CG inside a float64 refinement to the same
                  rtol; cell model, outputs float64
``"float32"``     everything float32 (x64 off): FE solves rtol     1e-3 (2.1e-4)        0.01 (2e-3)
                  1e-5, the cell model's Rosenbrock steps and
                  daily mineral queue too
================  ===============================================  ===================  ===========

Measured on the CPU (jax 0.10.2, 2 cores shared with other jobs; febone 1e2046d), untreated
menopause on the bundled coarse femur (``femur_coarse_hex8``, 20,091 dofs, AMG), 5 years after
the 5-year replayed history: mixed at most 8.3e-8 relative (the strain-limit load, a quantile
of element strains; Pistoia loads 2.4e-8, vBMD/aBMD 1.6e-8, stiffness 6.9e-9, markers 2.4e-9)
and 1.0e-6 points of BMD change; float32 at most 2.1e-4 (sideways-fall stiffness and
strain-limit load; Pistoia loads 1.8e-4, vBMD 3.3e-5, aBMD 9.7e-6, markers 5e-6, BV/TV 6e-6)
and 2.0e-3 points (trochanter trabecular vBMD, −19.0998 % against −19.1018 %; femoral neck aBMD
−10.0194 % against −10.0200 %), growing with the simulated time. On the 72-element bar of
``tests/test_run_precision.py``: 1 year, mixed 3.9e-11 and 1.1e-9 points, float32 1.7e-6 and
1.6e-5 points; 10 years, mixed 7e-10 and 6e-8 points, float32 7.6e-6 and 2.4e-4. Mixed solves
stopped at rtol 1e-3 would be 2.4e-4 and 7e-5 points off (measured on the bar, 1 year): the
mixed tolerance tells a working refinement apart. The differences are those of the solves:
mixed meets the same rtol as float64 (habitual 1e-8: Ψ to ~1e-8 relative, which the cell
model's feedback does not amplify), float32 stops at rtol 1e-5 (stiffness and loads to ~1e-4,
as a single float32 strength solve). The float32 cell model (adaptive Rosenbrock, rtol 1e-4;
steady states by Newton) ran every one of these runs through without a failed step, so float32
is accepted. Wall times of those femur runs (5 + 5 years; the 2 CPU cores shared with other
jobs whose load varied, so a rough guide only): float64 113 s, float32 82 s, mixed 143 s (on a
CPU the float32 inner iterations save no time; mixed is for GPUs, where no figures exist yet).

A study (``febone sensitivity``) accepts ``"float64"`` and ``"mixed"`` only: mixed runs the
habitual forward solves as float32 CG inside the float64 refinement (their adjoints, the
strength solve and the cell model stay float64); measured on a 12-element specimen over 3
months, outcome 4e-11 and gradients 1.3e-9 relative from float64's. ``"float32"`` is refused:
outcomes with 1e-5–1e-4 relative noise against the 1e-3 relative step of the finite
differences that check a gradient would put 1–10 % errors into the check.

Every float32 contraction in the FE and voxel hot paths passes :data:`CONTRACTION`
(``jax.lax.Precision.HIGHEST``): on NVIDIA GPUs since Ampere a float32 ``dot`` at the default
precision may run on TF32 tensor cores (10-bit mantissa), which stalls float32 CG near a
relative residual of 1e-3; HIGHEST keeps full float32 products on every backend.

Deterministic mode: on a GPU, float scatter-adds (the element-to-node sums of the FE and
voxel operators) are atomics whose order varies between runs, so repeats differ in the last
bits. :func:`configure` with ``deterministic=True`` sets XLA's
``--xla_gpu_deterministic_ops=true`` (deterministic scatters and reductions) before the
backend starts; on CPUs scatters are sequential and repeats are bit-identical anyway.

The library never flips these switches on import: entry points (the CLI, benchmarks, the
tests' conftest, your script) call :func:`configure` once, first.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

__all__ = ["CONTRACTION", "PrecisionMode", "PRECISIONS", "precision_mode", "check_rtol",
           "resolve_solver", "configure", "DETERMINISTIC_XLA_FLAG", "deterministic_flag_set",
           "RUN_TOLERANCES"]

log = logging.getLogger(__name__)

#: precision of every float32 contraction (``jnp.matmul``/``einsum``/``vdot``) in hot paths
CONTRACTION = jax.lax.Precision.HIGHEST

#: the XLA flag of the deterministic mode (deterministic GPU scatters and reductions)
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


@dataclass(frozen=True)
class PrecisionMode:
    """One precision mode (see the module docstring for the table).

    Attributes:
        name: ``"float64"``, ``"mixed"`` or ``"float32"``.
        needs_x64: whether ``jax_enable_x64`` must be on (float64 arrays exist only then).
        default_rtol: the CG relative tolerance used when none is given.
        min_rtol: the smallest relative tolerance the mode reaches reliably.
        refine: float32 inner solves inside a float64 residual correction.
    """

    name: str
    needs_x64: bool
    default_rtol: float
    min_rtol: float
    refine: bool

    @property
    def dtype(self):
        """The dtype of answers and of the outer iteration (float64 needs x64 enabled)."""
        return jnp.dtype(jnp.float64 if self.needs_x64 else jnp.float32)

    @property
    def inner_dtype(self):
        """The dtype of the CG iterations (float32 in the mixed mode)."""
        return jnp.dtype(jnp.float32) if self.refine else self.dtype


#: the modes by name
PRECISIONS = {
    "float64": PrecisionMode("float64", True, 1e-8, 1e-12, False),
    "mixed": PrecisionMode("mixed", True, 1e-8, 1e-12, True),
    "float32": PrecisionMode("float32", False, 1e-5, 1e-5, False),
}

#: Agreement of a remodelling run's outputs with float64 (``febone run``; the table in the
#: module docstring): ``relative`` for stiffness, fracture loads, vBMD/aBMD, markers and mean
#: BV/TV; ``change_pct`` for the % changes of BMD, in percentage points.
RUN_TOLERANCES = {
    "mixed": {"relative": 1e-6, "change_pct": 1e-5},
    "float32": {"relative": 1e-3, "change_pct": 1e-2},
}


def precision_mode(name: str | PrecisionMode | None = None) -> PrecisionMode:
    """The :class:`PrecisionMode` named ``name``; ``None`` picks ``"float64"`` when x64 is
    enabled and ``"float32"`` otherwise.

    Raises:
        ValueError: an unknown name, or a mode that needs float64 while x64 is disabled
            (the message names the fix).
    """
    if isinstance(name, PrecisionMode):
        mode = name
    elif name is None:
        mode = PRECISIONS["float64" if jax.config.jax_enable_x64 else "float32"]
    elif name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; use one of {sorted(PRECISIONS)} "
                         f"(float64: CPU default; mixed: float32 iterations with float64 "
                         f"answers, for GPUs; float32: fastest, rtol ≥ 1e-5)")
    else:
        mode = PRECISIONS[name]
    if mode.needs_x64 and not jax.config.jax_enable_x64:
        raise ValueError(f"precision {mode.name!r} needs float64, but JAX's x64 mode is off: "
                         f"call jax.config.update('jax_enable_x64', True) at the start of your "
                         f"script (or febone.precision.configure(precision={mode.name!r})), or "
                         f"use precision='float32'")
    return mode


def check_rtol(mode: PrecisionMode, rtol: float) -> None:
    """Refuse a tolerance below what ``mode`` can reach.

    Raises:
        ValueError: ``rtol < mode.min_rtol``, naming the modes that reach it.
    """
    if rtol < mode.min_rtol:
        raise ValueError(f"rtol {rtol:g} is below what precision {mode.name!r} can reach "
                         f"(rtol ≥ {mode.min_rtol:g}); raise rtol or use precision='mixed' or "
                         f"'float64' (rtol ≥ 1e-12)")


def resolve_solver(solver, precision, strategy):
    """A solve's CG strategy and mode: ``precision=None`` keeps the solver's choice
    (``"mixed"`` when ``solver.mixed_precision``, else float64 with x64 enabled and float32
    without); a named mode sets ``mixed_precision`` to match; without a solver,
    ``strategy(rtol=mode.default_rtol)``.

    Args:
        solver: a frozen strategy dataclass with ``rtol`` and ``mixed_precision`` (``PCG``,
            ``VoxelPCG``), or ``None``.
        precision: a mode name or ``None``.
        strategy: the strategy class built when ``solver`` is ``None``.

    Returns:
        ``(solver, mode)``.

    Raises:
        ValueError: unknown mode, float64 mode without x64, or rtol below the mode's reach.
    """
    if precision is None and solver is not None and solver.mixed_precision:
        precision = "mixed"
    mode = precision_mode(precision)
    solver = strategy(rtol=mode.default_rtol) if solver is None else solver
    if solver.mixed_precision != mode.refine:
        solver = replace(solver, mixed_precision=mode.refine)
    check_rtol(mode, solver.rtol)
    return solver, mode


def deterministic_flag_set() -> bool:
    """Whether XLA_FLAGS holds the deterministic-ops flag (read by the backend at start)."""
    return DETERMINISTIC_XLA_FLAG in os.environ.get("XLA_FLAGS", "").split()


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - older or newer JAX
        return False


def configure(precision: str | None = "float64", *, deterministic: bool = True) -> PrecisionMode:
    """Set JAX up for a precision mode and (optionally) deterministic GPU arithmetic.

    For entry points only (the CLI, benchmarks, scripts), called once before the first
    computation: it sets ``jax_enable_x64`` as the mode needs (on for float64 and mixed,
    off for float32, so that float32 mode really runs in float32) and, with
    ``deterministic``, adds ``--xla_gpu_deterministic_ops=true`` to ``XLA_FLAGS``.

    Args:
        precision: ``"float64"``, ``"mixed"`` or ``"float32"``.
        deterministic: bit-identical repeats on GPUs (scatter-adds without atomics). XLA
            reads its flags when the backend starts, so this must come before the first
            computation; afterwards it only logs a warning unless the flag is already set.

    Returns:
        The :class:`PrecisionMode`.
    """
    if precision not in PRECISIONS:
        precision_mode(precision)  # raises the unknown-name message
    mode = PRECISIONS[precision]
    jax.config.update("jax_enable_x64", mode.needs_x64)
    if deterministic and not deterministic_flag_set():
        if _backends_started():
            warn = log.warning if jax.default_backend() != "cpu" else log.debug
            warn("deterministic mode requested after JAX's backend started: XLA_FLAGS "
                        "is read at start, so GPU scatters stay atomic in this process; call "
                        "febone.precision.configure() before the first computation")
        else:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_XLA_FLAG}".strip()
    return mode

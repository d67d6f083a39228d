"""The ``--precision`` and ``--no-deterministic`` options of the commands that solve.

:func:`febone.cli.main` reads them after parsing and calls :func:`febone.precision.configure`
before the first computation (float64 and mixed switch JAX's x64 mode on, float32 leaves it
off; deterministic GPU scatters unless ``--no-deterministic``). Commands without the options
run in float64, deterministic.
"""
from __future__ import annotations

__all__ = ["add_precision_options", "PRECISION_HELP", "RUN_PRECISION_HELP",
           "SENSITIVITY_PRECISION_HELP"]

PRECISION_HELP = ("arithmetic: float64 (default; rtol down to 1e-12), mixed (float32 CG "
                  "iterations inside a float64 residual correction: float64 answers, for GPUs; "
                  "rtol down to 1e-12) or float32 (everything float32, fastest; rtol ≥ 1e-5, "
                  "default 1e-5); see docs in febone.precision")

#: ``febone run``'s --precision (measured differences: the table in febone.precision)
RUN_PRECISION_HELP = ("arithmetic: float64 (default); mixed (the habitual and strength FE "
                      "solves as float32 CG inside a float64 residual correction, the cell "
                      "model and outputs float64: for GPUs; outputs equal float64's to 1e-6 "
                      "relative and 1e-5 points of BMD change, measured 8e-8 and 1e-6); or "
                      "float32 (everything float32, FE rtol 1e-5: stiffness, fracture loads "
                      "and BMD to 1e-3 relative and BMD change to 0.01 points, measured 2.1e-4 "
                      "and 2e-3 over 5 years); see febone.precision")

#: ``febone sensitivity``'s --precision
SENSITIVITY_PRECISION_HELP = ("arithmetic: float64 (default) or mixed (the habitual forward "
                              "solves as float32 CG inside a float64 residual correction; "
                              "adjoints, strength solve and cell model float64: outcomes "
                              "equal float64's to 1e-6, measured 4e-11, gradients 1.3e-9). float32 "
                              "is refused: its outcomes' 1e-5 to 1e-4 noise would spoil the "
                              "finite-difference check of the gradients; see febone.precision")


def add_precision_options(parser, *, modes=("float64", "mixed", "float32"),
                          help: str = PRECISION_HELP) -> None:
    """Add ``--precision`` (default float64) and ``--no-deterministic`` to a subcommand
    (``help``: the text of ``--precision``, default :data:`PRECISION_HELP`)."""
    parser.add_argument("--precision", choices=list(modes), default="float64", help=help)
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                        help="allow atomic (non-deterministic) scatter-adds on a GPU: faster, "
                             "but repeats may differ in the last bits (no effect on a CPU)")

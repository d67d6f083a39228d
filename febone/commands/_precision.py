"""The ``--precision`` and ``--no-deterministic`` options of the commands that solve.

:func:`febone.cli.main` reads them after parsing and calls :func:`febone.precision.configure`
before the first computation (float64 and mixed switch JAX's x64 mode on, float32 leaves it
off; deterministic GPU scatters unless ``--no-deterministic``). Commands without the options
run in float64, deterministic.
"""
from __future__ import annotations

__all__ = ["add_precision_options", "PRECISION_HELP"]

PRECISION_HELP = ("arithmetic: float64 (default; rtol down to 1e-12), mixed (float32 CG "
                  "iterations inside a float64 residual correction: float64 answers, for GPUs; "
                  "rtol down to 1e-12) or float32 (everything float32, fastest; rtol ≥ 1e-5, "
                  "default 1e-5); see docs in febone.precision")


def add_precision_options(parser, *, modes=("float64", "mixed", "float32")) -> None:
    """Add ``--precision`` (default float64) and ``--no-deterministic`` to a subcommand."""
    parser.add_argument("--precision", choices=list(modes), default="float64",
                        help=PRECISION_HELP)
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                        help="allow atomic (non-deterministic) scatter-adds on a GPU: faster, "
                             "but repeats may differ in the last bits (no effect on a CPU)")

"""The ``febone`` command line. Each subcommand lives in ``febone/commands/<name>.py`` and
exposes ``register(subparsers)``, which adds its parser with ``set_defaults(func=run)``;
``run(args) -> int`` returns the exit code."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

__all__ = ["main", "build_parser"]

#: Subcommand modules under febone.commands, in the order ``febone --help`` lists them.
COMMANDS = ["run", "validate", "solve", "compress", "strength", "sensitivity", "info"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="febone", description="Bone stiffness, fracture load and remodelling (JAX FE).")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log progress (-v) or debug detail (-vv) to stderr")
    parser.add_argument("--distributed", action="store_true",
                        help="join a multi-host run (jax.distributed.initialize) before anything "
                             "touches a device; also FEBONE_DISTRIBUTED=1. FEBONE_COORDINATOR_"
                             "ADDRESS, FEBONE_NUM_PROCESSES, FEBONE_PROCESS_ID are passed on "
                             "when set")
    parser.add_argument("--no-compilation-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache (on by default in "
                             "~/.cache/febone/jax; also FEBONE_NO_COMPILATION_CACHE=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"febone.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"febone.commands.{name}":
                continue  # subcommand not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .precision import configure

    parser = build_parser()
    args = parser.parse_args(argv)
    # entry points choose precision and determinism, the library never does: float64 unless a
    # command's --precision says otherwise, deterministic GPU scatters unless --no-deterministic
    configure(getattr(args, "precision", "float64"),
              deterministic=getattr(args, "deterministic", True))
    if not args.no_compilation_cache:  # a second run on same-shaped inputs skips compiling
        from .compile_cache import enable_compilation_cache

        enable_compilation_cache()
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.distributed or os.environ.get("FEBONE_DISTRIBUTED", "") not in ("", "0"):
            from .parallel import initialize_distributed

            initialize_distributed()    # before anything touches a device
        return int(args.func(args) or 0)
    except (ValueError, TypeError, RuntimeError) as err:
        print(f"febone {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # file-system faults: the path, what went wrong, the fix
        from .files import describe_os_error

        where = next((f"writing {getattr(args, k)}" for k in ("out", "json")
                      if getattr(args, k, None) is not None), None)
        print(f"febone {args.command}: error: {describe_os_error(err, context=where)}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

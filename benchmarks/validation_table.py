"""The full clinical validation table (``febone validate`` over every trial file), timed.

    python benchmarks/validation_table.py                    # all trials
    python benchmarks/validation_table.py --subset swan fit  # some

Runs each trial as ``febone validate`` does, rewrites ``benchmarks/RESULTS_validation.md`` after
every trial (so an interrupted run keeps what it finished), and at the end writes
``docs/validation.md``. Records the machine, the git commit (and whether the tree had
uncommitted changes) and the wall time of each trial and of the whole table. Slow: about a
minute per simulated arm-year on the coarse bones on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

from febone.commands import validate as v  # noqa: E402
from febone.files import atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS_validation.md"


def _git() -> str:
    if os.environ.get("FEBONE_COMMIT"):   # a run from an exported tree (git archive)
        return os.environ["FEBONE_COMMIT"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               text=True, capture_output=True, check=True).stdout.strip()
        return commit + (" with uncommitted changes in the working tree" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    from febone.device import device_description

    return (f"{device_description()}, {os.cpu_count()} CPU cores visible, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
            f"JAX {jax.__version__}")


def _cost(trial) -> float:
    """Simulated arm-years of a trial (one run per bone its outcomes need)."""
    bones = {o.bone or trial.scenario.bone.mesh for o in trial.outcomes}
    return len(bones) * len(trial.scenario.runs()) * trial.scenario.duration_years


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", nargs="+", metavar="NAME")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "validation.md")
    args = ap.parse_args(argv)
    # as `febone validate` does: programs that a trial needs again after the previous one's
    # were released (v.release_compiled_programs) load from disk instead of recompiling
    from febone.compile_cache import enable_compilation_cache
    enable_compilation_cache()
    trials = v.select([v.load_trial(p) for p in v.trial_files()], args.subset)
    trials.sort(key=_cost)   # cheapest first: an interrupted run has the most rows
    header = [f"# Clinical validation table: benchmark", "",
              f"`python benchmarks/validation_table.py` on {_machine()}; febone {_git()}; "
              f"started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
    rows, done, start = [], [], time.perf_counter()
    for i, t in enumerate(trials):
        t0 = time.perf_counter()
        rows += v.run_trial(t)
        v.release_compiled_programs()   # else the sixth trial exceeds vm.max_map_count
        done.append((t.name, time.perf_counter() - t0))
        wall = time.perf_counter() - start
        result = {"rows": rows, "inside": sum(r.inside for r in rows), "total": len(rows),
                  "wall_seconds": wall, "device": _machine()}
        status = ("complete" if i + 1 == len(trials) else
                  f"partial: {i + 1} of {len(trials)} trials done, still running "
                  f"({', '.join(x.name for x in trials[i + 1:])} to come)")
        timing = ["", "## Run time per trial", "", "| trial | wall s |", "|---|---:|"] + \
            [f"| {n} | {s:.0f} |" for n, s in done] + [f"| **all** | **{wall:.0f}** |"]
        table = v.markdown_table(result, trials[:i + 1]).split("\n", 2)[2]
        atomic_write_text(args.results, "\n".join(header + [f"Status: {status}.", "", ""]) + table +
                          "\n".join(timing) + "\n")
        print(f"{t.name}: {done[-1][1]:.0f} s; {result['inside']} of {result['total']} inside so far",
              flush=True)
    atomic_write_text(args.docs, v.markdown_table(result, trials))
    print(v.text_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

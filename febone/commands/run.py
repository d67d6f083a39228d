"""``febone run``: the main job, a hormone-driven remodelling study of a bone.

    febone run                                   # untreated menopause vs early HRT, 10 y, bundled femur
    febone run scenario.toml --out results/      # your scenario (docs/scenarios.md)
    febone run --protocol trt --protocol trt-anastrozole --years 5
    febone run --protocol untreated-menopause --bone femur_medium_hex8 --json run.json
    febone run scenario.toml --out results/ --resume   # continue an interrupted run
    febone run scenario.toml --devices 4         # the arms as one batch over 4 devices
    febone run --precision mixed                 # float32 FE iterations, float64 answers (GPUs)
    febone run --solver unstructured             # the AMG path instead of the voxel engine

Every output time reports regional vBMD, DXA-like aBMD and T-score, % change, CTX/P1NP-like
markers relative to baseline, and stiffness and fracture load of the strength load cases.
With ``--out`` each arm's results are written as they are produced (``<arm>.jsonl`` and a
checkpoint), then ``results.json``, a ParaView series of the density fields (``<arm>.pvd``), a
density-change animation, trajectory plots and a report.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
import time
from pathlib import Path

from ..files import atomic_write_json, atomic_write_text, check_writable, read_npz
from ._precision import RUN_PRECISION_HELP, add_precision_options

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(sub) -> None:
    from ..data import SCENARIO_REFERENCE

    p = sub.add_parser("run", help="the main job: a hormone-driven remodelling study of a bone",
                       description=__doc__.split("\n\n")[0],
                       epilog=f"scenario reference (TOML keys, protocols, drugs):\n  "
                              f"{SCENARIO_REFERENCE}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # path unbroken
    p.add_argument("scenario", nargs="?", type=Path,
                   help="scenario TOML file (see the reference below); default: the default study")
    p.add_argument("--protocol", action="append", default=[], metavar="NAME",
                   help="named protocol (repeat to compare; 'a+b' combines); --list-protocols "
                        "lists them")
    p.add_argument("--years", type=float, help="simulated years (overrides the scenario)")
    p.add_argument("--spinup", type=float, metavar="YEARS",
                   help="years of the patient's history replayed before time 0 (overrides the "
                        "scenario's; default: from the patient, e.g. 5 years before the final "
                        "period for a woman; 0 = start from a young adult's homeostasis)")
    p.add_argument("--bone", help="bundled bone or mesh file (overrides the scenario's bone)")
    p.add_argument("--out", type=Path, help="folder for results, fields, pictures and report "
                                            "(one run per folder; your own files there are kept)")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from the checkpoints in --out")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the results of an earlier run in --out (only its files)")
    p.add_argument("--preconditioner", default="auto", choices=["auto", "amg", "jacobi"],
                   help="CG preconditioner of the unstructured FE solves (default auto: AMG "
                        "with pyamg)")
    p.add_argument("--solver", default="auto", choices=["auto", "voxel", "unstructured"],
                   help="FE engine of the loop (default auto: the matrix-free multigrid voxel "
                        "engine for a grid-aligned hex8 bone, as the bundled ones, else the "
                        "unstructured path)")
    p.add_argument("--devices", type=int, metavar="N",
                   help="step the arms that share bone, settings and duration as one batch "
                        "spread over N devices (at most jax.device_count(); the answers equal "
                        "the arms run one after another); default: one after another")
    add_precision_options(p, help=RUN_PRECISION_HELP)
    p.add_argument("--no-pictures", action="store_true", help="skip pictures and animation")
    p.add_argument("--list-protocols", action="store_true", help="list the protocols and exit")
    p.set_defaults(func=run)


def _scenario(args):
    from ..scenario import (default_study, load_scenario, protocol, study, with_duration,
                            with_spinup)

    if args.scenario is not None and args.protocol:
        raise ValueError("give a scenario file or --protocol names, not both (a scenario file "
                         "can list protocols itself: see `febone run --help` for the reference)")
    if args.scenario is not None:
        if not args.scenario.is_file():
            raise ValueError(f"scenario file {args.scenario} does not exist")
        sc = load_scenario(args.scenario)
    elif len(args.protocol) == 1:
        sc = protocol(args.protocol[0])
    elif args.protocol:
        sc = study(args.protocol)
    else:
        sc = default_study()
    if args.bone is not None:
        from ..scenario import build_scenario

        doc = json.loads(sc.document)
        doc.setdefault("bone", {})["mesh"] = (str(Path(args.bone).resolve())
                                              if Path(args.bone).suffix else args.bone)
        sc = build_scenario(doc, source=sc.source)
    if args.years is not None:
        sc = with_duration(sc, args.years)
    if args.spinup is not None:
        sc = with_spinup(sc, args.spinup)
    from ._bone import check_bone_files

    check_bone_files(sc)   # size in mm, side, node sets: before any output is written
    return sc


class _Progress:
    """One status line per arm on stderr: bar, steps, simulated years, elapsed time."""

    def __init__(self, stream=None, on_output=None):
        self.stream = sys.stderr if stream is None else stream   # the current stderr, not import-time
        self.start = time.perf_counter()
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.on_output = on_output     # called after each output (its files are written then)

    def __call__(self, arm, k, n, rec):
        if rec is not None and self.on_output is not None:
            self.on_output()
        width = 24
        done = int(width * k / n)
        line = (f"  {arm:24.24s} [{'#' * done}{'.' * (width - done)}] {k:4d}/{n} steps "
                f"{time.perf_counter() - self.start:6.1f} s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if k == n else ""))
        elif rec is not None or k == n:
            self.stream.write(line + "\n")
        self.stream.flush()


def _print_arm(name, res) -> None:
    recs = res.records
    region = next((r for r in ("femoral_neck", "vertebral_body") if r in recs[0]["regions"]),
                  next(iter(recs[0]["regions"]), None))
    cases = list(recs[0]["stiffness_N_per_mm"])
    head = f"  {'year':>5s}"
    if region:
        has_t = "t_score" in recs[0]["regions"][region]
        head += f"  {region + (' aBMD' if has_t else ' vBMD'):>20s} {'T':>6s} {'Δ%':>6s}"
        comps = [c for c in ("cortical", "trabecular") if f"{c}_change_pct" in
                 recs[0]["regions"][region]]
        head += "".join(f" {c[:5] + ' Δ%':>8s}" for c in comps)
    for c in cases:
        head += f"  {c + ' N/mm':>18s} {'Ffrac N':>8s}"
    head += f"  {'CTX':>5s} {'P1NP':>5s}"
    print(f"{name}:")
    print(head)
    for r in recs:
        line = f"  {r['time_years']:5.1f}"
        if region:
            e = r["regions"][region]
            v = e.get("abmd_g_cm2", e["vbmd_mg_cm3"])
            t = e.get("t_score")
            line += f"  {v:20.3f} {t:+6.2f} {e['change_pct']:+6.1f}" if t is not None else \
                f"  {v:20.1f} {'':>6s} {e['change_pct']:+6.1f}"
            line += "".join(f" {e[f'{c}_change_pct']:+8.1f}" for c in comps)
        for c in cases:
            loads = r["fracture_load_N"][c]
            first = next(iter(loads.values()), float("nan"))
            line += f"  {r['stiffness_N_per_mm'][c]:18.0f} {first:8.0f}"
        line += f"  {r['markers']['ctx_rel']:5.2f} {r['markers']['p1np_rel']:5.2f}"
        print(line)


def _write_outputs(out: Path, result, pictures: bool) -> list:
    """results.json, PVD series, animation, trajectories and report in ``out``."""
    from ..mesh.io import read_mesh

    files = []
    summary = result.summary()
    atomic_write_json(out / "results.json", summary)
    atomic_write_text(out / "scenario.toml", result.scenario.to_toml())
    files += [out / "results.json", out / "scenario.toml"]
    try:
        from .. import viz
    except ImportError as e:  # pragma: no cover - viz is part of the [all] install
        log.warning("no fields or pictures (febone.viz unavailable: %s)", e)
        return files
    shown = []
    for name, res in result.arms.items():
        mesh = read_mesh(res.description["bone"])
        label = res.description.get("label", name)
        rho0 = res.density[0]
        frames = [{"density_g_cm3": rho, "density_change_pct": 100.0 * (rho / rho0 - 1.0),
                   "bvtv": f, "displacement_mm": u, "von_mises_MPa": vm}
                  for rho, f, u, vm in zip(res.density, res.bvtv, res.displacement,
                                           res.von_mises)]
        files.append(viz.write_pvd(out / f"{label}.pvd", mesh, list(res.time_years), frames))
        if pictures:
            try:
                gif = viz.animate_density(mesh, res.density, res.time_years,
                                          out / f"{label}_density.gif")
                shown.append(gif)
                shown += viz.snapshot(mesh, {"point_data": {"displacement_mm": res.displacement[-1]},
                                             "cell_data": {
                    "density_g_cm3": res.density[-1], "von_mises_MPa": res.von_mises[-1],
                    "density_change_pct": 100.0 * (res.density[-1] / rho0 - 1.0)}},
                    out / f"{label}_pictures", bone=Path(res.description["bone"]).stem)
            except (ImportError, viz.RenderingError) as e:
                log.warning("no 3-D pictures: %s", e)
    try:
        files.append(viz.plot_trajectories(summary, out / "trajectories.png"))
        files.append(viz.write_report(out, summary, shown))
    except ImportError as e:  # pragma: no cover
        log.warning("no trajectory plot or report: %s", e)
    return files + shown


def _output_folder(args, arms):
    """The ``--out`` folder held by this run (one run per folder: :mod:`.output_folder`)."""
    from .output_folder import output_folder

    expected = ["results.json", "scenario.toml", "report.*", "trajectories.png",
                *(f"{glob.escape(a)}[._]*" for a in arms)]
    return output_folder(args.out, command="run", overwrite=args.overwrite, resume=args.resume,
                         expected=expected)


def _check_checkpoints(out: Path) -> None:
    """Raise :class:`~febone.files.CorruptFileError` naming a checkpoint in ``out`` that cannot
    be read (a truncated or damaged file), before the run starts to resume from it."""
    for path in sorted(out.glob("*.checkpoint.npz")):
        read_npz(path, fix="the run cannot resume from it: start afresh with --overwrite "
                           "instead of --resume, or choose another --out folder")


def run(args) -> int:
    from ..device import device_description
    from ..remodel.runner import run_scenario

    if args.list_protocols:
        from ..scenario import PROTOCOLS

        for name, p in PROTOCOLS.items():
            print(f"{name:28s} {p.description}")
        return 0
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out DIR (the folder of the interrupted run)")
    if args.overwrite and args.out is None:
        raise ValueError("--overwrite needs --out DIR (the folder of the earlier run)")
    if args.devices is not None:
        from ..parallel import batch_devices

        batch_devices(args.devices)     # fail before the set-up: N ≤ jax.device_count()
    import contextlib

    import jax

    # under jax.distributed (febone --distributed) every process runs the same scenario and
    # gets every result; process 0 alone holds --out, writes the files and reports
    lead = jax.process_index() == 0
    say = print if lead else (lambda *a, **k: None)
    start = time.perf_counter()
    sc = _scenario(args)
    arms = [a.name for a in sc.runs()]
    if args.json is not None and lead:
        check_writable(args.json)                # fail now, not after the run
    say(f"scenario: {sc.name} ({len(arms)} arm{'s' if len(arms) > 1 else ''}, "
        f"{sc.duration_years:g} years, bone {sc.runs()[0].bone.mesh}) on {device_description()}"
        + ("" if getattr(args, "precision", "float64") == "float64"
           else f", precision {args.precision}"))
    with (_output_folder(args, arms) if lead else contextlib.nullcontext()) as folder:
        if args.resume:
            _check_checkpoints(args.out)
        progress = _Progress(on_output=None if folder is None else folder.update)
        result = run_scenario(sc, out_dir=args.out, resume=args.resume, progress=progress,
                              devices=args.devices, preconditioner=args.preconditioner,
                              solver=getattr(args, "solver", "auto"),
                              precision=getattr(args, "precision", None))
        if lead:
            for name, res in result.arms.items():
                _print_arm(name, res)
        summary = result.summary()
        if args.out is not None and lead:
            _write_outputs(args.out, result, pictures=not args.no_pictures)
            say(f"results in {args.out}/ (results.json, per-arm .jsonl and .pvd, report.md)")
    if args.json is not None and lead:
        atomic_write_json(args.json, summary)
    say(f"done in {time.perf_counter() - start:.1f} s on {result.device}")
    return 0

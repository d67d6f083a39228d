"""``febone sensitivity``: gradients of a remodelling outcome with respect to parameters.

Reverse-mode derivatives through the whole FE-coupled run (``febone.study``): doses, exercise,
coupling constants, material-law constants, densities.

    febone sensitivity                                 # TRT + anastrozole + training, femur, 1 y
    febone sensitivity my.toml --param dose:anastrozole --param exercise --check
    febone sensitivity --outcome bmd_change:femoral_neck --json out.json --out results/
    febone sensitivity --check --devices 4             # the finite differences over 4 devices
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..files import atomic_write_json
from ._precision import SENSITIVITY_PRECISION_HELP, add_precision_options
from .output_folder import add_overwrite_option, run_with_outputs

__all__ = ["register", "run"]


def register(sub) -> None:
    from ..study.scenario import DEFAULT_PARAMETERS, DEFAULT_PROTOCOL, DEFAULT_YEARS

    p = sub.add_parser("sensitivity", help="gradients of an outcome through a remodelling run",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", nargs="?", type=Path,
                   help=f"scenario TOML (default: protocol {DEFAULT_PROTOCOL} on the bundled "
                        f"coarse femur for {DEFAULT_YEARS:g} year)")
    p.add_argument("--param", action="append", dest="params", metavar="NAME",
                   help="parameter (repeatable): dose:<drug>, exercise, coupling:<field>, "
                        "cell:<field>, mineral:<field>, patient:<field>, law:a, law:b, "
                        f"density_scale (default {', '.join(DEFAULT_PARAMETERS)} where the "
                        f"scenario has them)")
    p.add_argument("--outcome", default="fracture_load",
                   help="fracture_load (N, default), stiffness (N/mm), mean_bvtv_change (%%) or "
                        "bmd_change:<region> (%%)")
    p.add_argument("--years", type=float, help="override the duration, years")
    p.add_argument("--spinup", type=float, metavar="YEARS",
                   help="years of the patient's history replayed before time 0 (default: the "
                        "scenario's, else from the patient as febone run; 0 = none)")
    p.add_argument("--step-days", type=int, dest="step_days",
                   help="override the mechanical step, days")
    p.add_argument("--preconditioner", default="auto", choices=["auto", "amg", "jacobi"])
    p.add_argument("--solver", default="auto", choices=["auto", "voxel", "unstructured"],
                   help="FE engine (default auto: the matrix-free multigrid voxel engine for a "
                        "grid-aligned hex8 bone, as the bundled ones, else the unstructured path)")
    p.add_argument("--check", action="store_true",
                   help="also central finite differences (one step per parameter)")
    p.add_argument("--devices", type=int, metavar="N",
                   help="run the finite differences of --check (2 runs per parameter) as one "
                        "batch spread over N devices (at most jax.device_count(); with "
                        "`febone --distributed`, every host's devices)")
    add_precision_options(p, help=SENSITIVITY_PRECISION_HELP)
    p.add_argument("--json", type=Path, help="write the results as JSON")
    add_overwrite_option(p)
    p.add_argument("--out", type=Path, help="folder for the tornado plot (PNG)")
    p.set_defaults(func=run)


def _default_names(study):
    from ..study.scenario import DEFAULT_PARAMETERS

    names = [n for n in DEFAULT_PARAMETERS
             if not n.startswith("dose:") or any(t.drug == n[5:] for t in study.treatments)]
    names += [f"dose:{t.drug}" for t in study.treatments
              if f"dose:{t.drug}" not in names and not t.drug.startswith("exercise-")
              and sum(u.drug == t.drug for u in study.treatments) == 1]
    return names


def tornado(result: dict, path: Path, *, relative: float = 0.1) -> Path:
    """Tornado plot: outcome change for ± ``relative`` of each parameter (linearised by AD)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for r in result["parameters"]:
        delta = relative * abs(r["value"]) if r["value"] else relative
        rows.append((r["name"], r["ad"] * delta, r["value"]))
    rows.sort(key=lambda t: abs(t[1]))
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    for i, (name, d, _) in enumerate(rows):
        ax.barh(i, d, color="tab:red", alpha=0.8)
        ax.barh(i, -d, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(rows)), [f"{n} = {v:.3g}" for n, _, v in rows])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(f"change of {result['outcome']} (red: +{relative:.0%}, blue: −{relative:.0%}; "
                  f"zero-valued parameters: ±{relative:g})")
    ax.set_title(f"{result['outcome']} = {result['value']:.4g} after {result['years']:.2f} y")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(args) -> int:
    return run_with_outputs(args, _run, command="sensitivity", expected=["tornado.png"])


def _run(args) -> int:
    from ..scenario import load_scenario
    from ..study import sensitivity
    from ..study.scenario import default_sensitivity_study, study_from_scenario

    if args.years is not None and not args.years > 0:
        raise ValueError(f"--years must be positive; got {args.years}")
    if args.spinup is not None and not args.spinup >= 0:
        raise ValueError(f"--spinup must be ≥ 0 years; got {args.spinup}")
    if args.devices is not None:
        from ..parallel import batch_devices

        if not args.check:
            raise ValueError("--devices spreads the finite-difference runs of --check over "
                             "devices; add --check (the gradient itself is one reverse pass)")
        batch_devices(args.devices)     # fail before the set-up: N ≤ jax.device_count()
    kw = dict(step_days=args.step_days, preconditioner=args.preconditioner,
              solver=getattr(args, "solver", "auto"), history_years=args.spinup, precision=getattr(args, "precision", "float64"))
    if args.scenario is None:
        study = default_sensitivity_study(**({"years": args.years} if args.years else {}), **kw)
        label = "default study"
    else:
        study = study_from_scenario(load_scenario(args.scenario), years=args.years, **kw)
        label = str(args.scenario)
    names = args.params or _default_names(study)
    print(f"{label}: {study.stim.volumes.shape[0]} elements, {study.n_steps} steps over "
          f"{study.n_days} days ({study.years:.2f} y); outcome {args.outcome}; precision "
          f"{study.settings.precision}; compiling ...", file=sys.stderr, flush=True)
    res = sensitivity(study, names, args.outcome, check=args.check,
                      devices=args.devices).summary()
    base = res["baseline"]
    print(f"baseline (t = 0, {study.settings.strength_case}): fracture load "
          f"{base['pistoia_load_N']:.1f} N (Pistoia, as febone run reports it; surrogate "
          f"{base['surrogate_load_N']:.1f} N), stiffness {base['stiffness_N_per_mm']:.1f} N/mm")
    print(f"{res['outcome']} = {res['value']:.6g}  (forward {res['forward_seconds']:.2f} s, "
          f"gradient {res['gradient_seconds']:.2f} s = "
          f"{res['gradient_seconds'] / res['forward_seconds']:.2f}× forward; compile "
          f"{res['compile_seconds']['forward']:.0f} + {res['compile_seconds']['gradient']:.0f} s)")
    for r in res["parameters"]:
        fd = "" if r["fd"] is None else f"   fd {r['fd']:+.6e}"
        print(f"  {r['name']:32s} = {r['value']:<10.4g} ad {r['ad']:+.6e}{fd}")
    if args.out:
        res["tornado_png"] = str(tornado(res, args.out / "tornado.png"))
    if args.json:
        atomic_write_json(args.json, res)
    return 0

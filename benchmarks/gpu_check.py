"""One-shot GPU check (issue 18, item 5): what febone does on the device it runs on, in one JSON.

    python benchmarks/gpu_check.py --out gpu_check.json            # a GPU: < 8 min on an H100
    python benchmarks/gpu_check.py --quick --out cpu_quick.json    # small sizes, runs on a CPU

It records:

* the device, its kind, JAX's version, XLA_FLAGS (the deterministic flag is set here, before
  the backend starts, unless ``--no-deterministic``) and the device's peak memory bandwidth
  from :data:`PEAK_GBPS` (null for a device not in the table);
* voxel solves of the LHDL micro-CT sample (../shared/data/trabecular_lhdl3155_19p5um.npz,
  Gaussian σ = 1 voxel, Otsu, largest component; E = 18 GPa, ν = 0.3, bottom clamped, top
  displaced by 1 % of the height) at about 1 M DOF (39 µm: the volume block-averaged ×2) and
  ≥ 10 M DOF (19.5 µm: the full volume mirrored once along z, so the copy joins it face to
  face), in each precision mode (float64, mixed, float32 at the mode's default rtol): compile
  time, iterations, ms per iteration, the apparent modulus, XLA's memory estimate, the device's
  peak memory in use, and whether two runs give bit-identical displacements;
* the achieved memory bandwidth of the fine matrix-free product (``K u`` alone, repeated) and of
  a Jacobi-CG iteration, against the device's peak. Bytes are a lower bound of the traffic (each
  array read or written once: moduli, voxel base ids, the four corner-id lookups per voxel,
  u read, K u written; plus 10 nodal-vector streams per CG iteration), so the GB/s are
  effective bandwidths, the measure of roofline work;
* one year of remodelling of the bundled coarse femur (``benchmarks/remodel_femur.py``'s run,
  no replayed history, run twice: the first run compiles the step): set-up, time per
  mechanical step, per output (host work: densitometry, strength), and the step's pieces timed
  alone (FE: the habitual solves from a warm start; cells: one step of the cell model with
  mineralisation), the rest of a step being host dispatch;
* the differentiable study's gradient/forward run-time ratio (``febone sensitivity``'s
  ``febone.study.forward``, one year of the default protocol on the coarse femur).

Each part is written to the JSON as soon as it is done (a part that fails records its error and
the check goes on); ``--budget`` seconds (420 by default, 3600 with ``--quick``) skips the parts
that would start after it, the voxel solves using at most 60 % of it. ``--quick`` uses small sizes (156 µm, and 156 µm mirrored: 20-50 k DOF; two months of
remodelling; the 12-element specimen study) so that the script runs on a CPU in a few minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0].parent / "shared" / "data" / "trabecular_lhdl3155_19p5um.npz"
E_TISSUE, NU, STRAIN = 18000.0, 0.3, 0.01
MODES = ("float64", "mixed", "float32")

#: peak memory bandwidth by device kind, GB/s (vendor data sheets); first match wins
PEAK_GBPS = [("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100 NVL", 3900.0), ("H100", 3350.0),
             ("A100-SXM4-80GB", 2039.0), ("A100 80GB PCIe", 1935.0), ("A100", 1555.0),
             ("L40S", 864.0), ("L4", 300.0), ("V100", 900.0)]


def peak_bandwidth(device_kind: str) -> float | None:
    """Peak memory bandwidth of a device kind, GB/s, or None when the kind is not in the table."""
    for key, gbps in PEAK_GBPS:
        if key.lower() in device_kind.lower():
            return gbps
    return None


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                              capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _peak_memory() -> int | None:
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPUs report none
        return None
    return stats.get("peak_bytes_in_use")


def specimens(quick: bool):
    """{label: (mask, voxel size mm)}: about 1 M and ≥ 10 M DOF (quick: 20-50 k DOF)."""
    import numpy as np

    from febone.voxel import load_image, segment

    image = load_image(DATA)
    factor_small, factor_large = (8, 8) if quick else (2, 1)
    out = {}
    seg = segment(image, sigma=1.0, resample=factor_small)
    out["1M" if not quick else "small"] = (seg.mask, seg.voxel_size)
    seg = seg if factor_large == factor_small else segment(image, sigma=1.0, resample=factor_large)
    out["10M" if not quick else "small-mirrored"] = (
        np.concatenate([seg.mask, seg.mask[::-1]], axis=0), seg.voxel_size)
    return out


def _product_bytes(model, itemsize: int) -> int:
    """Lower bound of the bytes one fine product K u moves (each array once)."""
    n_v, n_n = model.n_voxels, model.n_nodes
    return n_v * (itemsize + 4 + 4 * 4) + 2 * 3 * n_n * itemsize


def _time_product(model, E, dtype, reps: int) -> float:
    """Seconds per fine product K u (compiled, ``reps`` dependent products in a loop)."""
    import jax
    import jax.numpy as jnp

    from febone.voxel.operator import apply_stiffness, element_stiffness

    Ke = element_stiffness(model.voxel_size, NU, dtype)
    E = jnp.asarray(E, dtype)
    scale = 1.0 / (8.0 * float(jnp.abs(Ke).sum(axis=1).max()) * float(E.max()))

    @jax.jit
    def loop(u):
        return jax.lax.fori_loop(0, reps, lambda i, v: apply_stiffness(model.fine, Ke, E, v)
                                 * scale + v, u)

    u = jnp.ones((model.n_nodes, 3), dtype)
    loop(u).block_until_ready()
    t = time.perf_counter()
    loop(u).block_until_ready()
    return (time.perf_counter() - t) / reps


def voxel_part(quick: bool, peak: float | None, deadline: float) -> dict:
    """The voxel solves of every size and mode; a (size, mode) that would start after
    ``deadline`` (a ``time.perf_counter()`` value) is recorded as skipped."""
    import numpy as np

    import febone as fb
    from febone.precision import PRECISIONS
    from febone.voxel import (VoxelGrid, VoxelModel, VoxelPCG, compile_voxel_solve,
                              voxel_reactions)

    out = {}
    for label, (mask, voxel_size) in specimens(quick).items():
        grid = VoxelGrid.create(mask, voxel_size)
        model = VoxelModel.create(grid)
        top, bottom = grid.plane_nodes("z", "max"), grid.plane_nodes("z", "min")
        length = grid.shape[0] * grid.voxel_size[0]
        area = grid.shape[1] * grid.voxel_size[1] * grid.shape[2] * grid.voxel_size[2]
        delta = STRAIN * length
        bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(bottom, "xyz").displace(top, z=-delta)
        E = np.full(grid.n_voxels, E_TISSUE)
        entry = {"n_dofs": model.n_dofs, "n_voxels": grid.n_voxels, "shape": list(grid.shape),
                 "voxel_size_mm": list(grid.voxel_size),
                 "levels": [lev.n_nodes for lev in model.levels], "modes": {}}
        for mode in MODES:
            m = PRECISIONS[mode]
            if time.perf_counter() > deadline:
                entry["modes"][mode] = {"skipped": "the voxel part's share of --budget is spent"}
                continue
            row = {}
            t0 = time.perf_counter()
            run, memory = compile_voxel_solve(model, E, bcs, nu=NU, precision=mode,
                                              solver=VoxelPCG(rtol=m.default_rtol))
            row["compile_seconds"] = time.perf_counter() - t0
            first, second = run(E, bcs), run(E, bcs)
            seconds = min(first.stats.seconds, second.stats.seconds)
            iters = int(second.stats.iterations)
            force = -float(np.asarray(voxel_reactions(model, E, bcs, second.u, nu=NU))[top, 2]
                           .sum())
            row.update(rtol=m.default_rtol, iterations=iters, residual=float(second.stats.residual),
                       converged=bool(second.stats.converged), solve_seconds=seconds,
                       ms_per_iteration=1e3 * seconds / max(iters, 1),
                       apparent_modulus_MPa=(force / area) / STRAIN,
                       xla_memory_bytes=memory, peak_memory_bytes=_peak_memory(),
                       bit_identical_repeat=bool(np.array_equal(np.asarray(first.u),
                                                                np.asarray(second.u))),
                       dtype=second.stats.dtype)
            # bandwidth: the fine product alone, then a Jacobi-CG iteration
            itemsize = 4 if m.inner_dtype == np.float32 else 8
            per_product = _time_product(model, E, m.inner_dtype, reps=20 if not quick else 5)
            product_bytes = _product_bytes(model, itemsize)
            row["product_ms"] = 1e3 * per_product
            row["product_GBps"] = product_bytes / per_product / 1e9
            cap = 100 if not quick else 30
            jrun, _ = compile_voxel_solve(model, E, bcs, nu=NU, precision=mode, throw=False,
                                          solver=VoxelPCG(rtol=m.min_rtol, max_iter=cap,
                                                          preconditioner="jacobi"))
            jrun(E, bcs)
            j = jrun(E, bcs)
            j_iters = max(int(j.stats.iterations), 1)
            j_bytes = product_bytes + 10 * 3 * model.n_nodes * itemsize
            row["jacobi_ms_per_iteration"] = 1e3 * j.stats.seconds / j_iters
            row["jacobi_iteration_GBps"] = j_bytes * j_iters / j.stats.seconds / 1e9
            if peak:
                row["product_fraction_of_peak"] = row["product_GBps"] / peak
                row["jacobi_fraction_of_peak"] = row["jacobi_iteration_GBps"] / peak
            entry["modes"][mode] = row
            print(f"  voxel {label} {mode}: {model.n_dofs:,} dofs, {iters} it, "
                  f"{row['ms_per_iteration']:.2f} ms/it, compile {row['compile_seconds']:.1f} s, "
                  f"product {row['product_GBps']:.1f} GB/s", file=sys.stderr, flush=True)
        out[label] = entry
    return out


def remodel_part(quick: bool) -> dict:
    """One year (quick: two months) of remodelling on the coarse femur, and its step's pieces."""
    sys.path.insert(0, str(HERE))
    from remodel_femur import run_bone
    from study_gradient_cost import _study, parts

    years = 2.0 / 12.0 if quick else 1.0
    bone, protocol = "femur_coarse_hex8", "untreated-menopause"
    # the same run twice: the first compiles the step for each step length (28-31 days)
    warm = run_bone(bone, years, protocol)
    out = {"bone": bone, "years": years, "protocol": protocol, **run_bone(bone, years, protocol),
           "first_run": {"setup_s": warm["setup_s"], "step_s_with_compile": warm["step_s"],
                         "total_s": warm["total_s"]}}
    best = parts(_study(quick, years), rounds=2)  # quick: on the 12-element specimen
    fe = best["habitual SED, warm start"]
    cells = next(v for k, v in best.items() if k.startswith("cells") and "mineral" in k
                 and "no mineral" not in k)
    out.update(fe_per_step_s=fe, cells_per_step_s=cells, pieces=best,
               pieces_on="12-element specimen" if quick else bone,
               # the rest of a step: dispatch and host work (not meaningful when the pieces
               # were timed on the specimen)
               host_per_step_s=None if quick else max(out["step_s"] - fe - cells, 0.0))
    return out


def study_part(quick: bool) -> dict:
    """febone.study: forward and value-and-gradient run times (compiled, best of 2)."""
    import jax

    sys.path.insert(0, str(HERE))
    from study_gradient_cost import _best, _compiled, _study

    from febone.study import base_values, forward
    from febone.study.scenario import DEFAULT_PARAMETERS

    years = 0.25 if quick else 1.0
    study = _study(quick, years)
    p = {k: jax.numpy.asarray(v) for k, v in base_values(study, DEFAULT_PARAMETERS).items()}

    def f(s, p):
        return forward(s, p).fracture_load

    fc, c_f, _ = _compiled(f, study, p)
    gc, c_g, _ = _compiled(jax.value_and_grad(f, argnums=1), study, p)
    best = _best({"forward": (fc, (study, p)), "gradient": (gc, (study, p))}, rounds=2)
    return {"elements": int(study.rho0.shape[0]), "steps": int(study.n_steps), "years": years,
            "specimen" if quick else "bone": "12-element specimen" if quick else
            "femur_coarse_hex8", "forward_compile_s": c_f, "gradient_compile_s": c_g,
            "forward_s": best["forward"], "gradient_s": best["gradient"],
            "gradient_forward_ratio": best["gradient"] / best["forward"]}


def markdown(result: dict) -> str:
    """Markdown tables of a check's JSON (for benchmarks/RESULTS_gpu.md)."""
    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    lines = [f"Device: {result['device']} ({result['device_kind']}), JAX {result['jax_version']}, "
             f"commit {result['commit']}, peak bandwidth "
             f"{f(result['peak_bandwidth_GBps'], '.0f') or 'unknown'} GB/s, XLA_FLAGS "
             f"`{result['xla_flags']}`, load average {f(result.get('load_average'), '.1f')}; "
             f"{result['elapsed_seconds']:.0f} s in all.", "",
             "| model | dofs | mode | compile s | iterations | ms/iteration | E_app MPa | "
             "XLA MB | peak MB | repeat bit-identical | K·u GB/s | Jacobi-CG GB/s | "
             "fraction of peak |", "|---" * 13 + "|"]
    for label, entry in (result.get("voxel") or {}).items():
        if label == "part_seconds":
            continue
        if not isinstance(entry, dict) or "modes" not in entry:
            lines.append(f"| {label} | {entry} |")
            continue
        for mode, r in entry["modes"].items():
            if "skipped" in r:
                lines.append(f"| {label} | {entry['n_dofs']:,} | {mode} | skipped |")
                continue
            frac = r.get("jacobi_fraction_of_peak")
            lines.append(
                f"| {label} | {entry['n_dofs']:,} | {mode} | {r['compile_seconds']:.1f} | "
                f"{r['iterations']} | {r['ms_per_iteration']:.2f} | "
                f"{r['apparent_modulus_MPa']:.4f} | {f(r['xla_memory_bytes'] and r['xla_memory_bytes'] / 1e6, '.0f')} | "
                f"{f(r['peak_memory_bytes'] and r['peak_memory_bytes'] / 1e6, '.0f')} | "
                f"{'yes' if r['bit_identical_repeat'] else 'NO'} | {r['product_GBps']:.2f} | "
                f"{r['jacobi_iteration_GBps']:.2f} | {f(frac, '.2f')} |")
    rem = result.get("remodel") or {}
    if "step_s" in rem:
        lines += ["", f"Remodelling ({rem['bone']}, {rem['years']:.2f} y, {rem['protocol']}): "
                  f"set-up {rem['setup_s']:.1f} s, {rem['step_s']:.3f} s per mechanical step "
                  f"(first run, with compilation: "
                  f"{f(rem.get('first_run', {}).get('step_s_with_compile'), '.2f')} s), "
                  f"{rem['output_per_output_s']:.2f} s per output; pieces on {rem['pieces_on']}: "
                  f"FE {rem['fe_per_step_s'] * 1e3:.1f} ms, cells {rem['cells_per_step_s'] * 1e3:.1f} ms"
                  + ("" if rem["host_per_step_s"] is None else
                     f", host and dispatch {rem['host_per_step_s'] * 1e3:.1f} ms") + " per step."]
    elif rem:
        lines += ["", f"Remodelling: {rem}"]
    st = result.get("study") or {}
    if "gradient_forward_ratio" in st:
        lines += ["", f"Study ({st.get('bone') or st.get('specimen')}, {st['steps']} steps): "
                  f"forward {st['forward_s']:.3f} s, value and gradient {st['gradient_s']:.3f} s, "
                  f"ratio {st['gradient_forward_ratio']:.2f} (compile {st['forward_compile_s']:.1f} s "
                  f"and {st['gradient_compile_s']:.1f} s)."]
    elif st:
        lines += ["", f"Study: {st}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON written (gpu_check.json)")
    ap.add_argument("--quick", action="store_true", help="small sizes (runs on a CPU)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds after which the remaining parts are skipped (420; 3600 with "
                         "--quick, for slow CPUs)")
    ap.add_argument("--parts", default="voxel,remodel,study",
                    help="comma-separated parts to run (voxel,remodel,study)")
    ap.add_argument("--no-deterministic", action="store_true",
                    help="leave GPU scatter-adds atomic (default: deterministic)")
    ap.add_argument("--markdown", metavar="JSON",
                    help="print the tables of a recorded check's JSON and exit")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())), end="")
        return 0
    if args.budget is None:
        args.budget = 3600.0 if args.quick else 420.0
    from febone.precision import configure

    configure("float64", deterministic=not args.no_deterministic)  # before the backend starts
    import jax

    from febone.device import device_description, device_memory_bytes

    start = time.perf_counter()
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    peak = peak_bandwidth(kind) if dev.platform == "gpu" else None
    result = {"check": "benchmarks/gpu_check.py", "quick": args.quick, "commit": _commit(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "device": device_description(), "device_kind": kind, "platform": dev.platform,
              "device_count": jax.device_count(), "jax_version": jax.__version__,
              "python": platform.python_version(), "machine": platform.machine(),
              "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
              "device_memory_bytes": device_memory_bytes(), "peak_bandwidth_GBps": peak,
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    path = Path(args.out)

    def write():
        result["elapsed_seconds"] = time.perf_counter() - start
        path.write_text(json.dumps(result, indent=2) + "\n")

    write()
    # the voxel part may use 60 % of the budget, the rest is for remodelling and the study
    parts = {"voxel": lambda: voxel_part(args.quick, peak, start + 0.6 * args.budget),
             "remodel": lambda: remodel_part(args.quick),
             "study": lambda: study_part(args.quick)}
    for name in [p.strip() for p in args.parts.split(",") if p.strip()]:
        if name not in parts:
            raise SystemExit(f"unknown part {name!r}; choose from {sorted(parts)}")
        if time.perf_counter() - start > args.budget:
            result[name] = {"skipped": f"time budget of {args.budget:g} s spent"}
            write()
            continue
        t = time.perf_counter()
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        try:
            result[name] = parts[name]()
        except Exception as err:  # noqa: BLE001 - record and go on to the next part
            result[name] = {"error": f"{type(err).__name__}: {err}"}
        result[name]["part_seconds"] = time.perf_counter() - t
        write()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of reverse-mode gradients through a remodelling run (febone.study), side by side with
the forward run and with reverse mode without checkpoints.

Prints, for one study: compile and run time of the forward run and of value-and-gradient
(ratio target ≤ 3), and XLA's compiled temporary memory of the gradient for N and 2N
mechanical steps with two-level checkpoints (default), one checkpoint per step, and none.

    python benchmarks/study_gradient_cost.py --small         # specimen (seconds)
    python benchmarks/study_gradient_cost.py                 # bundled femur, 1 year
"""
import argparse
import platform
import time

import jax


def _study(small, years, **kw):
    from febone.scenario import protocol
    from febone.study.scenario import DEFAULT_PROTOCOL, specimen_study, study_from_scenario

    sc = protocol(DEFAULT_PROTOCOL)
    if small:
        return specimen_study(sc.patient, sc.treatments, years=years, **kw)
    return study_from_scenario(sc, years=years, **kw)


def _timed(fn, *a, repeat=2):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn(*a))
        best = min(best, time.perf_counter() - t)
    return best


def main(small=False, years=1.0, memory=True):
    from febone.study import base_values, forward
    from febone.study.scenario import DEFAULT_PARAMETERS

    study = _study(small, years)
    p = {k: jax.numpy.asarray(v) for k, v in base_values(study, DEFAULT_PARAMETERS).items()}
    fwd = jax.jit(lambda s, p: forward(s, p).fracture_load)
    vg = jax.jit(jax.value_and_grad(lambda s, p: forward(s, p).fracture_load, argnums=1))
    t = time.perf_counter(); fc = fwd.lower(study, p).compile(); c_f = time.perf_counter() - t
    t = time.perf_counter(); gc = vg.lower(study, p).compile(); c_g = time.perf_counter() - t
    t_f, t_g = _timed(fc, study, p), _timed(gc, study, p)
    print(f"machine: {platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}, "
          f"float64; {study.rho0.shape[0]} elements, {study.n_steps} steps of "
          f"{study.settings.step_days} days, {len(p)} parameters")
    print(f"{'':28s}{'compile s':>10s}{'run s':>10s}")
    print(f"{'forward':28s}{c_f:10.1f}{t_f:10.3f}")
    print(f"{'value + gradient (reverse)':28s}{c_g:10.1f}{t_g:10.3f}   ratio {t_g / t_f:.2f}")
    out = {"forward_s": t_f, "gradient_s": t_g, "ratio": t_g / t_f}
    if memory:
        print(f"\ncompiled temp memory of the gradient, MB (N = {study.n_steps}):")
        print(f"{'policy':28s}{'N steps':>10s}{'2N steps':>10s}{'per step':>10s}")
        for label, kw in (("two-level (default)", {}), ("one per step", {"block": 1}),
                          ("none", {"checkpoint": False})):
            mem = []
            for y in (years, 2 * years):
                s = _study(small, y, **kw)
                g = jax.jit(jax.grad(lambda s, p: forward(s, p).fracture_load, argnums=1))
                mem.append(g.lower(s, p).compile().memory_analysis().temp_size_in_bytes / 1e6)
            print(f"{label:28s}{mem[0]:10.1f}{mem[1]:10.1f}{(mem[1] - mem[0]) / study.n_steps:10.2f}")
            out[label] = mem
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--years", type=float, default=None)
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    main(small=a.small, years=a.years or (0.5 if a.small else 1.0), memory=not a.no_memory)

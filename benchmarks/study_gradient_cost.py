"""Cost of reverse-mode gradients through a remodelling run (febone.study), side by side with
the forward run, for the checkpoint policies of StudySettings.

Prints, for one study: compile and run time of the forward run and of value-and-gradient for
each policy (run times: best of interleaved rounds, so machine load hits every column alike);
XLA's compiled temporary memory of the gradient for N and 2N mechanical steps (the growth per
step); and with --parts the pieces of one mechanical step on the same mesh (habitual SED from a
warm start and its gradient, the cell model over one step with and without mineralisation and
its gradient), which explain the ratio.

    python benchmarks/study_gradient_cost.py --small              # specimen (seconds)
    python benchmarks/study_gradient_cost.py --days 60 --parts    # bundled femur, 2 steps
    python benchmarks/study_gradient_cost.py                      # bundled femur, 1 year
"""
import argparse
import platform
import time

import jax

POLICIES = {"one per step (default)": {},
            "two-level (blocks of √n)": {"block": None},
            "one per step, cells unckpt": {"cell_checkpoint": False}}


def _study(small, years, **kw):
    from febone.scenario import protocol
    from febone.study.scenario import DEFAULT_PROTOCOL, specimen_study, study_from_scenario

    sc = protocol(DEFAULT_PROTOCOL)
    if small:
        return specimen_study(sc.patient, sc.treatments, years=years, **kw)
    return study_from_scenario(sc, years=years, **kw)


def _best(fns, rounds):
    """{name: best run time s} of compiled (fn, args) pairs, interleaved over rounds."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, (fn, args) in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def _compiled(fn, *args):
    t = time.perf_counter()
    c = jax.jit(fn).lower(*args).compile()
    return c, time.perf_counter() - t, c.memory_analysis().temp_size_in_bytes / 1e6


def parts(study, rounds=3):
    """Run times of the pieces of one mechanical step on the study's mesh."""
    import jax.numpy as jnp
    from febone.remodel.cells import Drives, simulate, steady_state
    from febone.remodel.mechanics import habitual_sed
    from febone.remodel.mineral import init_mineral, mean_mineral_content

    s = study.settings.remodel
    E = 1e4 * study.rho0 ** 1.5
    u_zero = tuple(jnp.zeros((c.model.n_nodes, 3), E.dtype) for c in study.stim.cases)
    psi0, u1, _, _ = jax.jit(lambda E: habitual_sed(study.stim, E, s.nu, u_zero))(E)
    w = 1.0 + 0.5 * jnp.cos(0.01 * jnp.arange(E.shape[0]))

    def sed(E):            # a 1 % change of the moduli from the previous step's solution
        return jnp.sum(w * habitual_sed(study.stim, 1.01 * E, s.nu, u1)[0] / psi0)

    cells = steady_state(s.cell_params, Drives(), f_bm=jnp.minimum(study.rho0 / 2.0, 0.9))
    mineral = init_mineral(cells, s.cell_params, s.mineral_params)
    days = int(max(b - a for a, b in zip(study.days, study.days[1:])))   # longest step

    def cell_step(x, with_mineral):
        kw = dict(mineral=mineral, mineral_params=s.mineral_params) if with_mineral else {}
        tr = simulate(s.cell_params, cells, lambda t, st, v: Drives(P_RANKL=x), days=days,
                      save_every=days, rtol=None, **kw)
        out = jnp.sum(tr.final.f_bm)
        if with_mineral:
            out = out + jnp.sum(mean_mineral_content(tr.mineral, tr.final.f_bm,
                                                     s.mineral_params))
        return out

    fns = {"habitual SED, warm start": (_compiled(sed, E)[0], (E,)),
           "  value + gradient": (_compiled(jax.value_and_grad(sed), E)[0], (E,))}
    for label, m in ((f"cells {days} d + mineral", True), (f"cells {days} d, no mineral", False)):
        f = lambda x, m=m: cell_step(x, m)
        fns[label] = (_compiled(f, 10.0)[0], (10.0,))
        fns[f"  value + gradient ({label})"] = (_compiled(jax.value_and_grad(f), 10.0)[0],
                                                 (10.0,))
    best = _best(fns, rounds)
    print(f"\npieces of one mechanical step ({study.rho0.shape[0]} elements), run s:")
    for k, v in best.items():
        print(f"  {k:44s}{v:10.3f}")
    return best


def main(small=False, years=1.0, memory=True, rounds=3, with_parts=False):
    from febone.study import base_values, forward
    from febone.study.scenario import DEFAULT_PARAMETERS

    f = lambda s, p: forward(s, p).fracture_load
    study = _study(small, years)
    p = {k: jax.numpy.asarray(v) for k, v in base_values(study, DEFAULT_PARAMETERS).items()}
    print(f"machine: {platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}, "
          f"float64; {study.rho0.shape[0]} elements, {study.n_steps} steps over "
          f"{study.n_days} days, {len(p)} parameters")
    fc, c_f, m_f = _compiled(f, study, p)
    fns, comp, mem = {"forward": (fc, (study, p))}, {"forward": c_f}, {"forward": m_f}
    for label, kw in POLICIES.items():
        st = _study(small, years, **kw)
        gc, comp[label], mem[label] = _compiled(jax.value_and_grad(f, argnums=1), st, p)
        fns[label] = (gc, (st, p))
    best = _best(fns, rounds)
    print(f"{'':30s}{'compile s':>10s}{'run s':>10s}{'ratio':>8s}{'temp MB':>9s}")
    for k in fns:
        print(f"{k:30s}{comp[k]:10.1f}{best[k]:10.3f}{best[k] / best['forward']:8.2f}"
              f"{mem[k]:9.0f}")
    out = {"forward_s": best["forward"], "gradient_s": {k: best[k] for k in POLICIES}}
    if memory:
        print(f"\ncompiled temp memory of the gradient, MB (N = {study.n_steps}):")
        print(f"{'policy':30s}{'N steps':>10s}{'2N steps':>10s}{'per step':>10s}")
        for label, kw in POLICIES.items():
            m = []
            for y in (years, 2 * years):
                st = _study(small, y, **kw)
                m.append(_compiled(jax.grad(f, argnums=1), st, p)[2])
            print(f"{label:30s}{m[0]:10.1f}{m[1]:10.1f}{(m[1] - m[0]) / study.n_steps:10.2f}")
            out[label] = m
    if with_parts:
        out["parts"] = parts(study, rounds)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="12-element specimen")
    ap.add_argument("--years", type=float, default=None)
    ap.add_argument("--days", type=int, default=None, help="run length in days (overrides --years)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--parts", action="store_true", help="time the pieces of one step")
    a = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    yrs = a.days / 365.25 if a.days else (a.years or (0.5 if a.small else 1.0))
    main(small=a.small, years=yrs, memory=not a.no_memory, rounds=a.rounds,
         with_parts=a.parts)

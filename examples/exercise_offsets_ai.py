"""The exercise intensity that offsets aromatase-inhibitor bone loss (Newton on a gradient).

A postmenopausal woman starts anastrozole 1 mg daily (ATAC). Which habitual-load increase of a
daily resistance programme keeps her femoral-neck vBMD change at N years equal to that of the
same woman without the drug? Newton iterations on x (load increase, fraction) with the
derivative d ΔBMD / d x from reverse mode through the whole FE-coupled run.

    python examples/exercise_offsets_ai.py              # femur, 5 years (long)
    python examples/exercise_offsets_ai.py --small      # small specimen, 6 months
"""
import argparse

import jax


def main(small: bool = False, out=None, iterations: int = 6):
    from febone.remodel.patient import Patient
    from febone.scenario import protocol
    from febone.remodel.treatments import Treatment
    from febone.study import forward, value_and_grad
    from febone.study.scenario import specimen_study, study_from_scenario

    ai = Treatment.create("anastrozole", 1.0, "mg", 1)
    if small:
        woman = Patient.create(age_years=64.0)
        make = lambda tr: specimen_study(woman, tr, years=0.5)
        region = "all"
    else:
        sc = protocol("anastrozole")
        make = lambda tr: study_from_scenario(sc, years=5.0, treatments=tr)
        region = "femoral_neck"
    with_ai = make((ai,))
    without = make(())
    name = f"bmd_change:{region}"
    goal = float(forward(without, {}).bmd_change[without.regions.index(region)])
    x, history = 0.05, []
    for _ in range(iterations):
        v, g = value_and_grad(with_ai, {"exercise": x}, name)
        history.append((x, float(v)))
        step = (float(v) - goal) / float(g["exercise"])
        x = max(x - step, 1e-4)
        if abs(step) < 1e-6:
            break
    v_final = float(value_and_grad(with_ai, {"exercise": x}, name)[0])
    ai_alone = float(forward(with_ai, {}).bmd_change[with_ai.regions.index(region)])
    print(f"{region}: untreated {goal:+.3f} %, anastrozole {ai_alone:+.3f} %, anastrozole + "
          f"exercise {x:.4f} (load +{100 * x:.2f} %): {v_final:+.3f} %")
    return {"goal_pct": goal, "ai_alone_pct": ai_alone, "exercise_fraction": x,
            "with_exercise_pct": v_final, "history": history, "years": with_ai.years}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    main(small=a.small)

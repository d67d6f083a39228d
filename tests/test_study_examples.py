"""The differentiable-study examples, run small, give physically right answers."""

import numpy as np
import pytest

from conftest import load_example as _load


@pytest.mark.slow
def test_anastrozole_dose_response_small():
    res = _load("anastrozole_dose_response").main(small=True)
    loads = np.array(res["fracture_load_N"])
    # more aromatase inhibition, less E2, more resorption: the load falls with the dose
    assert np.all(np.diff(loads) < 0), loads
    # the reverse-mode slope at 0.5 mg lies between the batch's secant slopes around it
    d = np.array(res["doses_mg"])
    i = list(d).index(0.5)
    left = (loads[i] - loads[i - 1]) / (d[i] - d[i - 1])
    right = (loads[i + 1] - loads[i]) / (d[i + 1] - d[i])
    assert min(left, right) <= res["dload_ddose_N_per_mg"] <= max(left, right)


@pytest.mark.slow
def test_exercise_offsets_ai_small():
    res = _load("exercise_offsets_ai").main(small=True)
    assert res["ai_alone_pct"] < res["goal_pct"] < 0           # the drug adds to the loss
    assert res["exercise_fraction"] > 0
    # Newton converged: the programme brings the loss back to the untreated one
    assert abs(res["with_exercise_pct"] - res["goal_pct"]) < 1e-3 * abs(res["goal_pct"])


@pytest.mark.slow
def test_calibration_small():
    res = _load("calibrate_trajectory").main(small=True, steps=4)
    # Adam lowers the least-squares misfit it minimises (a few steps need not lower the largest
    # single-time error, which the first run showed: 0.0785 → 0.0716 in loss, max error up)
    assert res["loss"] < res["loss_start"]

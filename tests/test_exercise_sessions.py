"""Exercise as sessions (febone.remodel.hormones): Carter's daily stress stimulus with m = 4,
a session saturated and mechanosensitivity recovered between sessions (τ_rec = 8 h), so the
weekly number of sessions and the intensity set the dose; "twice weekly" is not "daily"."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from febone.remodel.hormones import (EXERCISE_STIMULUS_EXPONENT, hormone_series,
                                     session_weight)
from febone.remodel.patient import Patient
from febone.remodel.site import simulate_site
from febone.remodel.treatments import Treatment

M = EXERCISE_STIMULUS_EXPONENT


def test_session_weight_closed_form():
    q = math.exp(-3.0)                         # e^(−1 day / 8 h)
    assert session_weight(1.0) == pytest.approx(1.0, rel=1e-12)
    assert session_weight(7.0) == pytest.approx((1 - math.exp(-21.0)) / (7 * (1 - q)), rel=1e-12)
    assert session_weight(3.5) == pytest.approx(2 / 7 / (1 - q), rel=1e-4)     # ≈ 2/7
    assert 1.5 < session_weight(0.5) < 2.0     # two a day: more, but not twice (no full recovery)


def _load(dose, interval):
    p = Patient.create(age_years=60.0, sex="female", menopause_age_years=51.0)
    tr = [Treatment.create("exercise-high-impact", dose, "fraction", interval)]
    return np.asarray(hormone_series(p, tr, days=30).exercise_load_factor)


def test_daily_sessions_keep_the_load_multiplier_and_fewer_sessions_give_less():
    np.testing.assert_allclose(_load(0.25, 1.0), 1.25, rtol=1e-12)
    twice = _load(0.25, 3.5)
    np.testing.assert_allclose(twice, (1 + session_weight(3.5) * (1.25 ** M - 1)) ** (1 / M),
                               rtol=1e-12)
    assert np.all(twice < 1.1)                 # "twice weekly" is not "daily"
    assert np.all(_load(1.0, 3.5) > _load(0.25, 1.0))   # intensity counts to the 4th power


def test_bone_gain_grows_with_the_weekly_dose():
    p = Patient.create(age_years=65.0, sex="female", menopause_age_years=51.0)
    f = jnp.array([0.1, 0.25, 0.6])

    def gain(tr):
        return float(simulate_site(p, tr, years=1.0, f_bm=f, spinup_years=2.0).at(1.0))

    none = gain([])
    weekly, twice, daily = (gain([Treatment.create("exercise-high-impact", 0.5, "fraction", d)])
                            for d in (7.0, 3.5, 1.0))
    assert none < weekly < twice < daily

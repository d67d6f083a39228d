"""Hormone series (febone.remodel.hormones): published shapes, PK against closed forms and
independent superposition, drug interactions, gradients against central differences, bad input."""
import math
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from febone.remodel.denosumab import denosumab_pk
from febone.remodel.hormones import (ANASTROZOLE_IC50_MG, YEAR_DAYS, hormone_series, schedule)
from febone.remodel.patient import Patient
from febone.remodel.treatments import Treatment

T = Treatment.create
WOMAN = Patient.create(sex="female", age_years=45.0, menopause_age_years=51.0, fat_mass_kg=28.0)
MAN = Patient.create(sex="male", age_years=50.0)


def _at_age(series, age):
    return int(round((age - float(series.age_years[0])) * YEAR_DAYS))


def test_menopausal_e2_follows_peterson_riggs_then_the_postmenopausal_level():
    s = hormone_series(WOMAN, [], days=int(12 * YEAR_DAYS))
    E2 = np.asarray(s.E2_pg_mL)
    m = 51.0
    # Peterson & Riggs 2010: 64 % fall over 1.66 y ending at the FMP (smoothstep: half at the mid)
    assert E2[_at_age(s, m - 1.7)] == pytest.approx(100.0, rel=1e-12)
    assert E2[_at_age(s, m - 0.83)] == pytest.approx(100.0 * (1 - 0.32), rel=2e-3)
    assert E2[_at_age(s, m)] == pytest.approx(36.0, rel=2e-3)
    # after the FMP: exponential (τ 1 y) approach to 8 + 0.25·fat = 15 pg/mL
    for dt in (1.0, 3.0, 5.0):
        expected = 36.0 + (15.0 - 36.0) * (1.0 - math.exp(-dt))
        assert E2[_at_age(s, m + dt)] == pytest.approx(expected, rel=1e-3)
    P4 = np.asarray(s.progesterone_ng_mL)
    assert P4[0] == pytest.approx(4.0) and P4[_at_age(s, m + 1)] == pytest.approx(0.3)


def test_male_e2_is_mostly_aromatised_and_rises_with_fat():
    lean = hormone_series(Patient.create(sex="male", age_years=30.0, fat_mass_kg=18.9), [], days=3)
    fat = hormone_series(Patient.create(sex="male", age_years=30.0, fat_mass_kg=38.9), [], days=3)
    # 25 pg/mL at T 600 ng/dL (20 % testicular + 80 % aromatised); +20 kg fat: aromatised ×1.4
    assert float(lean.E2_pg_mL[0]) == pytest.approx(25.0, rel=1e-12)
    assert float(fat.E2_pg_mL[0]) == pytest.approx(25.0 * (0.2 + 0.8 * 1.4), rel=1e-12)
    old = hormone_series(Patient.create(sex="male", age_years=70.0), [], days=3)
    assert float(old.T_ng_dL[0]) == pytest.approx(600.0 * 0.7)          # −1 %/y after 40


def test_anastrozole_1mg_daily_inhibits_aromatase_by_96_7_percent():
    s = hormone_series(MAN, [T("anastrozole", 1.0, "mg", 1)], days=60)
    # Geisler et al. 2002: whole-body aromatisation −96.7 % at 1 mg/day (steady state)
    assert float(s.aromatase_inhibition[-1]) == pytest.approx(0.967, abs=1e-6)


def test_anastrozole_twice_weekly_matches_independent_superposition():
    days = 70
    s = hormone_series(MAN, [T("anastrozole", 0.5, "mg", 3.5)], days=days)
    ke = math.log(2.0) / (50.0 / 24.0)
    dose_days = np.floor(np.arange(0, days, 3.5) + 1e-9)
    k = np.arange(days)
    # daily mean of Σ 0.5 e^(−k_e (t − t_i)) over [k, k + 1]
    lag = k[:, None] - dose_days[None, :]
    A = np.where(lag >= 0, 0.5 * np.exp(-ke * np.maximum(lag, 0)), 0.0).sum(1)
    A = A * (1 - np.exp(-ke)) / ke
    np.testing.assert_allclose(s.aromatase_inhibition, A / (A + ANASTROZOLE_IC50_MG), rtol=1e-12)
    # less inhibition than 1 mg/day (mean over the last 4 weeks)
    assert float(jnp.mean(s.aromatase_inhibition[-28:])) < 0.93


def test_cypionate_depot_releases_each_dose_over_the_week():
    # hypogonadal override 200 ng/dL: T_total = 200/(1 + x/300) + x with x the exogenous T
    p = Patient.create(sex="male", age_years=50.0, testosterone_ng_dL=200.0)
    s = hormone_series(p, [T("testosterone-cypionate", 100.0, "mg", 7)], days=7 * 30)
    x = np.array([brentq(lambda x: 200 / (1 + x / 300) + x - t, 0, 5000)
                  for t in np.asarray(s.T_ng_dL)])
    # depot mass balance: at steady state each week releases one dose: mean x = gain·dose/7
    assert x[-7:].mean() == pytest.approx(49.0 * 100.0 / 7.0, rel=1e-3)
    # first-order release after the first dose (t½ 8 d): x_k ∝ e^(−k_a k)
    ka = math.log(2) / 8
    np.testing.assert_allclose(x[1:7] / x[0], np.exp(-ka * np.arange(1, 7)), rtol=1e-10)


def test_anastrozole_on_trt_raises_t_but_lowers_e2():
    trt = [T("testosterone-cypionate", 100.0, "mg", 7)]
    a = hormone_series(MAN, trt, days=120)
    b = hormone_series(MAN, trt + [T("anastrozole", 0.5, "mg", 3.5)], days=120)
    mean = lambda v: float(jnp.mean(v[-28:]))  # noqa: E731
    assert mean(b.T_ng_dL) > mean(a.T_ng_dL)
    # men on an AI: serum E2 falls by a third to a half, not to postmenopausal levels
    # (Burnett-Bowie 2009: 1 mg/day −20 % without TRT); the bone sees the whole inhibition
    assert 0.4 * mean(a.E2_pg_mL) < mean(b.E2_pg_mL) < 0.75 * mean(a.E2_pg_mL)
    bone = b.E2_pg_mL + b.bone_E2_offset_pg_mL
    assert mean(bone) < 0.3 * mean(a.E2_pg_mL)


def test_vitamin_d_supplement_approaches_its_target_and_lowers_pth():
    p = Patient.create(age_years=30.0, vitamin_D_ng_mL=15.0)
    s0 = hormone_series(p, [], days=300)
    s = hormone_series(p, [T("vitamin-d", 1000.0, "IU", 1)], days=300)
    # Heaney 2003: +0.8 ng/mL per 100 IU/day → 23 ng/mL, approached with τ = 20 days
    assert float(s.vitamin_D_ng_mL[-1]) == pytest.approx(23.0, rel=1e-4)
    # secondary hyperparathyroidism: PTH 35·(1 + 0.8(1 − D/30)) at age 30
    assert float(s0.PTH_pg_mL[0]) == pytest.approx(35.0 * 1.4)
    assert float(s.PTH_pg_mL[-1]) == pytest.approx(35.0 * (1 + 0.8 * (1 - 23 / 30)), rel=1e-4)
    assert float(s0.mineralisation_factor[0]) == 1.0      # 15 ng/mL is the osteomalacia edge


def test_intermittent_and_continuous_pth_are_distinct():
    p = Patient.create(age_years=30.0)
    tpd = hormone_series(p, [T("teriparatide", 20.0, "ug", 1)], days=30)
    cont = hormone_series(p, [T("pth-continuous", 20.0, "ug/day", 1)], days=30)
    assert float(tpd.pth_pulsatile_ug[-1]) == pytest.approx(20.0)
    assert float(tpd.PTH_pg_mL[-1]) == pytest.approx(35.0)          # no change in serum PTH
    assert float(cont.pth_pulsatile_ug[-1]) == 0.0
    assert float(cont.PTH_pg_mL[-1]) == pytest.approx(35.0 + 2.0 * 20.0)


def test_gh_deficiency_and_rhgh_set_igf1():
    p = Patient.create(sex="male", age_years=40.0, gh_deficient=True)
    s = hormone_series(p, [T("rhgh", 0.3, "mg", 1)], days=30)
    norm = 300.0 * math.exp(-0.017 * (20.0 + 29 / YEAR_DAYS))      # at day 29
    assert float(s.IGF1_norm_ng_mL[-1]) == pytest.approx(norm)
    assert float(s.IGF1_ng_mL[-1]) == pytest.approx(0.45 * norm + 400 * 0.3 / 0.9, rel=1e-4)


def test_denosumab_series_is_the_martinez_reina_pk_at_mid_day():
    p = Patient.create(age_years=65.0, body_mass_kg=60.0)
    s = hormone_series(p, [T("denosumab", 60.0, "mg", 183)], days=400)
    pk = denosumab_pk([0.0, 183.0, 366.0], days=400.0)
    np.testing.assert_allclose(s.denosumab_pM, np.interp(np.arange(400) + 0.5, pk.t, pk.C_pM),
                               rtol=1e-12)


def test_alendronate_reservoir_closed_form():
    s = hormone_series(Patient.create(age_years=65.0), [T("alendronate", 70.0, "mg", 7)],
                       days=366)
    k = math.log(2) / (1.5 * YEAR_DAYS)
    doses = np.arange(0, 366, 7)
    R = (70.0 * 0.0064 * 0.5 * np.exp(-k * (365 - doses))).sum()
    assert float(s.bisphosphonate[365]) == pytest.approx(R / (R + 1.0), rel=1e-10)


def test_exercise_and_schedules():
    tr = T("exercise-resistance", 0.15, "fraction", 1, start_years=1.0, stop_years=2.0)
    s = hormone_series(Patient.create(), [tr], days=int(3 * YEAR_DAYS))
    lf = np.asarray(s.exercise_load_factor)
    assert lf[300] == 1.0 and lf[500] == pytest.approx(1.15) and lf[800] == 1.0
    # twice weekly: doses on days floor(3.5 i); stop is exclusive
    sch = schedule(T("anastrozole", 0.5, "mg", 3.5, stop_years=14 / YEAR_DAYS), 30)
    assert np.flatnonzero(sch).tolist() == [0, 3, 7, 10]


def test_gradients_match_central_differences():
    def mean_inh(d):
        s = hormone_series(MAN, [T("anastrozole", d, "mg", 3.5)], days=60)
        return jnp.mean(s.aromatase_inhibition)

    def e2_at(m):
        p = replace(Patient.create(age_years=45.0), menopause_age_years=m)   # traced field
        s = hormone_series(p, [], days=int(7 * YEAR_DAYS))
        return s.E2_pg_mL[int(5.5 * YEAR_DAYS)]

    for f, x, h in ((mean_inh, 0.5, 1e-5), (e2_at, 51.0, 1e-4)):
        g = float(jax.grad(f)(x))
        fd = (float(f(x + h)) - float(f(x - h))) / (2 * h)
        # central differences: truncation O(h²·f''') ≪ 1e-6 relative here
        assert g == pytest.approx(fd, rel=1e-6)
        assert abs(g) > 0
    # patch: E2 is linear in the delivery rate with slope 0.8 pg/mL per µg/day
    g = jax.grad(lambda r: hormone_series(WOMAN, [T("estradiol-transdermal", r, "ug/day", 3.5)],
                                          days=10).E2_pg_mL[5])(50.0)
    assert float(g) == pytest.approx(0.8)


def test_bad_input():
    with pytest.raises(TypeError, match="Patient"):
        hormone_series({"sex": "female"}, [], days=10)
    with pytest.raises(TypeError, match="list"):
        hormone_series(WOMAN, T("anastrozole", 1.0), days=10)
    with pytest.raises(TypeError, match="Treatment"):
        hormone_series(WOMAN, [("anastrozole", 1.0)], days=10)
    with pytest.raises(ValueError, match="days"):
        hormone_series(WOMAN, [], days=0)

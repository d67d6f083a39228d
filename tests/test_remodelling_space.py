"""The reversible remodelling space (Heaney 1994, "The bone-remodeling transient"):
febone.remodel.cells.remodelling_space_update, carried in CellState.space.

Closed forms: without the specific-surface factor and at a fixed strain-energy ratio the cells do
not depend on f_bm, so the same run with and without the space differs in BV/TV by exactly the
change of the open space, τ·(r_start − r_now) once D has decayed (sum of the geometric refill
series); a drive that stops returns the space to where it started; a steady state stays steady.
"""
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest

from febone.remodel.cells import (Drives, remodelling_space_update, resorption_rate, simulate,
                                  steady_state)
from febone.remodel.parameters import MARTINEZ_REINA_2019, SITE_CELL_PARAMETERS

TAU = 100.0
F0 = jnp.array([0.1, 0.3, 0.6])


def _run(params, drives, days=1095):
    s0 = steady_state(params, f_bm=F0)
    return s0, simulate(params, s0, drives, days=days, save_every=days)


def test_space_off_changes_nothing():
    p = replace(MARTINEZ_REINA_2019, remodelling_space_days=0.0)
    s0, a = _run(p, Drives(A_OCa_factor=1.6), days=60)
    s = remodelling_space_update(a.final, resorption_rate(s0, p), p)
    np.testing.assert_array_equal(s.f_bm, a.final.f_bm)


def test_steady_state_stays_steady_with_the_space():
    p = replace(SITE_CELL_PARAMETERS, remodelling_space_days=TAU)
    s0, tr = _run(p, Drives(), days=730)
    np.testing.assert_allclose(tr.final.f_bm, F0, rtol=1e-9)
    np.testing.assert_allclose(tr.final.space, 0.0, atol=1e-12)


@pytest.mark.parametrize("factor", [1.6, 0.6])     # turnover falls / rises
def test_bvtv_offset_is_tau_times_the_change_of_resorption(factor):
    on = replace(MARTINEZ_REINA_2019, remodelling_space_days=TAU)
    off = replace(MARTINEZ_REINA_2019, remodelling_space_days=0.0)
    d = Drives(A_OCa_factor=factor)
    s0, a = _run(on, d)
    _, b = _run(off, d)
    r0, r1 = resorption_rate(s0, on), resorption_rate(a.final, on)
    assert np.all(np.sign(np.asarray(r0 - r1)) == np.sign(factor - 1.0))
    # the cells are identical; BV/TV differs by the space that closed (gain) or opened (loss)
    np.testing.assert_allclose(a.final.OCa, b.final.OCa, rtol=1e-10)
    expected = TAU * (r0 - r1) - a.final.space
    np.testing.assert_allclose(a.final.f_bm - b.final.f_bm, expected, rtol=1e-6, atol=1e-14)
    assert float(jnp.max(jnp.abs(a.final.space))) < 1e-3 * float(jnp.max(jnp.abs(r0 - r1))) * TAU


def test_stopping_the_drive_reverses_the_transient():
    on = replace(MARTINEZ_REINA_2019, remodelling_space_days=TAU)
    off = replace(MARTINEZ_REINA_2019, remodelling_space_days=0.0)
    fn = lambda t, s, v: Drives(A_OCa_factor=jnp.where(t < 730.0, 1.6, 1.0))  # noqa: E731
    s0 = steady_state(on, f_bm=F0)
    a = simulate(on, s0, fn, days=2190, save_every=365)
    b = simulate(off, s0, fn, days=2190, save_every=365)
    diff = np.asarray(a.states.f_bm - b.states.f_bm)          # (7 years, 3)
    on_drug = TAU * (resorption_rate(s0, on) - resorption_rate(
        type(s0)(*(getattr(b.states, f)[2] for f in ("OBp", "OBa", "OCa", "f_bm", "P_OBp",
                                                        "space"))), on))
    np.testing.assert_allclose(diff[2], on_drug, rtol=0.05)     # the gain while on the drug
    assert np.all(diff[2] > 0)
    # four years after stopping: turnover is back, the space reopened, the gain is gone
    np.testing.assert_allclose(diff[-1], 0.0, atol=1e-3 * float(np.max(diff[2])))


def test_update_is_the_exact_filter_for_a_step():
    p = replace(SITE_CELL_PARAMETERS, remodelling_space_days=TAU)
    s0 = steady_state(p, f_bm=F0)
    r0 = resorption_rate(s0, p)
    s1 = replace(s0, OCa=0.5 * s0.OCa)                # resorption halves at the day's start
    out = remodelling_space_update(s1, r0, p, days=1.0)
    D = TAU * (r0 - resorption_rate(s1, p))
    q = np.exp(-1.0 / TAU)
    np.testing.assert_allclose(out.f_bm - s0.f_bm, D * (1 - q), rtol=1e-12)
    np.testing.assert_allclose(out.space, D * q, rtol=1e-12)

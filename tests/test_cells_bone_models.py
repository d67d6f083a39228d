"""Cross-check of febone's cell population model against the reference implementation bone-models.

bone-models 0.1.0 (PyPI, MIT; Modiz et al., https://github.com/cmodiz/Bone-Models) is the
reference Python implementation named in science.md §2. Its curves for the Pivonka 2008 PTH load
case and the Martínez-Reina 2019 load cases (postmenopausal osteoporosis, PMO + denosumab) are
recorded by ``tests/reference/record_bone_models.py`` into ``tests/reference/*.npz`` and compared
here for a single element. When bone-models is installed, the equations are also compared live.

What the Martínez-Reina load case contains, and how febone expresses it:
* PMO: extra RANKL production P0 ξ²/(ξ² + (t/τ)²) from day 0 → ``Drives.P_RANKL``.
* denosumab 60 mg every 183 days from day 365, PK restarted at each dose → ``Drives.denosumab``
  from :func:`denosumab_pk` with ``reset_each_dose=True``.
* mechanics: constant 5 MPa habitual stress on the RVE, so Ψ = σ²/(2E) and
  Ψ/Ψ̆ = E(start)/E(now) with E = 84.37 f^2.58 α^2.74 and α from the mineral queue →
  ``Drives.psi_ratio`` computed from the state and queue inside the drives function.
* bone-models' ``Martinez_Reina_Model`` overrides the RANKL equation without Scheiner's mechanical
  RANKL term, so the cross-check uses ``kappa_mech=0``.
"""
from dataclasses import replace
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from febone.remodel import (MARTINEZ_REINA_2019, MINERAL_MARTINEZ_REINA_2019, PIVONKA_2008,
                            CellState, Drives, ash_fraction, concentration_pM, denosumab_pk,
                            dose_days, init_mineral, mean_mineral_content, pmo_rankl_production,
                            rhs, simulate, steady_state, youngs_modulus_gpa)

REF = Path(__file__).resolve().parent / "reference"


def _load(name):
    return dict(np.load(REF / f"bone_models_{name}.npz"))


def _max_rel(x, ref):
    return float(np.max(np.abs(np.asarray(x) - ref) / np.abs(ref)))


# ------------------------------------------------------------------------------------------
# Pivonka 2008: PTH injection 1000 pM/day for 0 ≤ t ≤ 100 days, 200 days simulated
# ------------------------------------------------------------------------------------------
def _pivonka_run(dt=1.0, rtol=1e-5):
    s0 = steady_state(PIVONKA_2008, f_bm=jnp.array([0.5]))

    def drives(t, s, v_m):   # bone-models switches the injection off after t = 100
        return Drives(P_PTH=jnp.where(t <= 100.0, 1000.0, 0.0))

    return s0, simulate(PIVONKA_2008, s0, drives, days=200, dt=dt, rtol=rtol)


def test_pivonka_steady_state_matches_bone_models():
    ref = _load("pivonka2008_pth")
    s0 = steady_state(PIVONKA_2008, f_bm=jnp.array([0.5]))
    got = np.array([s0.OBp[0], s0.OBa[0], s0.OCa[0]])
    # bone-models finds its root with scipy's LM at tol 1e-30; two independent root finders
    # agree to rounding
    np.testing.assert_allclose(got, ref["steady_state"], rtol=1e-9)
    # PIVONKA_2008.k_res is bone-models' balanced k_form·OBa*/OCa*
    np.testing.assert_allclose(PIVONKA_2008.k_res, float(ref["k_res"]), rtol=1e-12)


def test_pivonka_pth_load_case_within_one_percent():
    ref = _load("pivonka2008_pth")
    s0, tr = _pivonka_run()
    for k in ("OBp", "OBa", "OCa"):
        # the requirement is 1 %; measured 2.5e-4 (bone-models' own tolerance, rtol = atol = 1e-8
        # with atol comparable to OCa·1e-5, plus its t_eval interpolation across the switch-off)
        assert _max_rel(getattr(tr.states, k)[:, 0], ref[k]) < 1e-3, k
    # BV/TV changes only by ~0.03 % here, so compare the change against its own excursion
    d_ours = 100.0 * (np.asarray(tr.states.f_bm[:, 0]) - float(s0.f_bm[0]))
    d_ref = ref["bv_percent"] - 100.0
    # bone-models integrates BV with the trapezoid rule on a 0.05-day grid: ~1e-4 of the excursion
    assert np.max(np.abs(d_ours - d_ref)) < 0.01 * np.max(np.abs(d_ref))


# ------------------------------------------------------------------------------------------
# Martínez-Reina 2019: PMO, PMO + denosumab (4000 days)
# ------------------------------------------------------------------------------------------
def martinez_reina_case(case: str, *, dt=1.0, rtol=1e-4, days=None):
    """Run febone on the bone-models Martínez-Reina load case; returns (trajectory, reference)."""
    ref = _load(f"martinez_reina2019_{case}")
    days = int(ref["t"][-1]) if days is None else days
    P = replace(MARTINEZ_REINA_2019, kappa_mech=0.0)       # see module docstring
    MP = MINERAL_MARTINEZ_REINA_2019
    s0 = steady_state(P, f_bm=jnp.array([0.15]))          # BV/TV 15 % in bone-models' RVE
    m0 = init_mineral(s0, P, MP)

    modulus = lambda f, v_m: youngs_modulus_gpa(f, ash_fraction(v_m, MP), MP)
    E0 = modulus(s0.f_bm, mean_mineral_content(m0, s0.f_bm, MP))
    pk = denosumab_pk(dose_days(365, 183, 4000), days=4000, reset_each_dose=True)
    use_den = case == "denosumab"

    def drives(t, s, v_m):     # v_m: the queue's mean mineral content at the start of the day
        return Drives(P_RANKL=pmo_rankl_production(t), psi_ratio=E0 / modulus(s.f_bm, v_m),
                      denosumab=concentration_pM(pk, t) if use_den else 0.0)

    tr = simulate(P, s0, drives, days=days, dt=dt, rtol=rtol, mineral=m0, mineral_params=MP)
    return tr, ref


def _compare(tr, ref, every=2):
    out = {}
    n = len(ref["t"])
    for k in ("OBp", "OBa", "OCa"):
        out[k] = _max_rel(np.asarray(getattr(tr.states, k))[::every, 0][:n], ref[k])
    out["bv"] = _max_rel(100.0 * np.asarray(tr.states.f_bm)[::every, 0][:n], ref["bv_percent"])
    out["v_m"] = _max_rel(np.asarray(tr.v_m)[::every, 0][:n], ref["v_m"])
    return out


@pytest.fixture(scope="module")
def pmo_run():
    return martinez_reina_case("pmo")


@pytest.fixture(scope="module")
def denosumab_run():
    return martinez_reina_case("denosumab")


def test_martinez_reina_homeostasis_matches_bone_models(pmo_run):
    tr, ref = pmo_run
    # Scheiner's homeostatic P_OBp (eq. 16) and the queue's mean mineral content at the start
    np.testing.assert_allclose(float(tr.states.P_OBp[0, 0]), float(ref["proliferation_OBp"]),
                               rtol=1e-10)
    np.testing.assert_allclose(float(tr.v_m[0, 0]), float(ref["v_m"][0]), rtol=1e-6)  # float32


def test_martinez_reina_pmo_within_one_percent(pmo_run):
    tr, ref = pmo_run
    err = _compare(tr, ref)
    # requirement: every state within 1 % over the 4000 days. Measured: OCa 3.4e-3 (day 2 of the
    # 25-fold RANKL jump at onset), the rest ≤ 4e-4. That is bone-models' own error: it solves
    # each day with scipy's default rtol 1e-3 / atol 1e-6, and the same code at rtol 1e-9
    # (record_bone_models.py --tight) differs from it by 3.3e-3 in OCa at day 2.
    assert max(err.values()) < 0.01, err


def test_martinez_reina_pmo_against_tight_reference(pmo_run):
    tr, _ = pmo_run
    err = _compare(tr, _load("martinez_reina2019_pmo_tight"))
    # bone-models' equations solved at rtol 1e-9: measured ≤ 4e-5 (febone adaptive rtol 1e-4);
    # 1e-3 leaves room for float32 storage and the tolerance while catching any model change
    assert max(err.values()) < 1e-3, err


def test_martinez_reina_denosumab_within_one_percent(denosumab_run):
    tr, ref = denosumab_run
    err = _compare(tr, ref)
    # requirement 1 %. Measured: OCa 7.7e-3, OBa 2.5e-3, OBp 1.7e-3, BV/TV 2.1e-4, v_m 8e-4.
    # bone-models' own error (shipped tolerances vs its rtol 1e-9 re-run) is 6.3e-3 in OCa;
    # the rest is the PK read-out (next test).
    assert max(err.values()) < 0.01, err


def test_martinez_reina_denosumab_against_tight_reference(denosumab_run):
    tr, _ = denosumab_run
    err = _compare(tr, _load("martinez_reina2019_denosumab_tight"))
    # measured: OCa 2.7e-3, v_m 8.3e-4, OBp 4.9e-4, OBa 4.0e-4, BV/TV 1.6e-4. The OCa residual
    # alternates in sign day by day in the week after each dose: bone-models reads its PK curve
    # at the nearest point of its solver grid (a staircase up to half a day off), febone
    # interpolates it. 5e-3 bounds that while catching any change of the model.
    assert max(err.values()) < 5e-3, err


def test_denosumab_pk_matches_bone_models_table():
    ref = _load("martinez_reina2019_denosumab")
    pk = denosumab_pk([0.0], days=183, reset_each_dose=True)
    ours = np.interp(ref["pk_t"], np.asarray(pk.t), np.asarray(pk.C_ng_ml))
    # bone-models: solve_ivp rtol 1e-10; ours: RK4 with 1/16-day steps, read by linear
    # interpolation (error ≤ dt²/8·|C''| ≈ 0.2 ng/mL right after the dose, peak 1.0e4 ng/mL)
    assert np.max(np.abs(ours - ref["pk_c_ng_ml"])) < 1e-4 * ref["pk_c_ng_ml"].max()


# ------------------------------------------------------------------------------------------
# live comparison of the equations (only when bone-models is installed)
# ------------------------------------------------------------------------------------------
def test_rhs_equals_bone_models_pivonka_with_all_injections():
    pytest.importorskip("bone_models")
    from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1
    from bone_models.models.pivonka_model import Pivonka_Model

    lc = Pivonka_Load_Case_1()
    lc.PTH_injection, lc.OPG_injection = 300.0, 2e5
    lc.RANKL_injection, lc.TGFb_injection = 50.0, 1e-3
    m = Pivonka_Model(lc)
    rng = np.random.default_rng(0)
    x = np.array([6.2e-4, 5.6e-4, 8.1e-4]) * rng.uniform(0.5, 2.0, (5, 3))
    want = np.array([m.bone_cell_population_model(xi, 50.0) for xi in x])
    st = CellState.create(x[:, 0], x[:, 1], x[:, 2], 0.5)
    d = Drives(P_PTH=300.0, P_OPG=2e5, P_RANKL=50.0, P_TGFb=1e-3)
    got = rhs(st, PIVONKA_2008, d)
    got = np.stack([got.OBp, got.OBa, got.OCa], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-20)


def test_rhs_equals_bone_models_martinez_reina_without_load():
    pytest.importorskip("bone_models")
    from bone_models.load_cases.martinez_reina_load_cases import Martinez_Reina_Load_Case
    from bone_models.models.martinez_reina_model import Martinez_Reina_Model

    m = Martinez_Reina_Model(Martinez_Reina_Load_Case())
    m.denosumab_concentration_over_time = np.zeros(1)     # skip its PK solve (unused at t=None)
    rng = np.random.default_rng(1)
    x = np.array([1e-3, 5e-4, 1e-4]) * rng.uniform(0.5, 2.0, (5, 3))
    f = rng.uniform(10, 30, 5)
    # t=None: bone-models' homeostatic equations (no mechanics, PMO or denosumab)
    want = np.array([m.bone_cell_population_model([*xi, 100 - fi, fi], None)
                     for xi, fi in zip(x, f)])
    st = CellState.create(x[:, 0], x[:, 1], x[:, 2], f / 100.0)
    got = rhs(st, replace(MARTINEZ_REINA_2019, a_mech=0.0), Drives())   # no mechanics at t=None
    got = np.stack([got.OBp, got.OBa, got.OCa, 100.0 * got.f_bm], axis=1)
    np.testing.assert_allclose(got, want[:, [0, 1, 2, 4]], rtol=1e-11, atol=1e-20)


def test_pivonka_live_solution():
    pytest.importorskip("bone_models")
    from scipy.integrate import solve_ivp
    from bone_models.load_cases.pivonka_load_cases import Pivonka_Load_Case_1
    from bone_models.models.pivonka_model import Pivonka_Model

    m = Pivonka_Model(Pivonka_Load_Case_1())
    x0 = m.calculate_steady_state()
    days = np.arange(0.0, 121.0)
    sol = solve_ivp(lambda t, x: m.bone_cell_population_model(x, t), [0, 120], x0,
                    rtol=1e-10, atol=1e-14, t_eval=days, method="LSODA")
    _, tr = _pivonka_run()
    for i, k in enumerate(("OBp", "OBa", "OCa")):
        # tight reference, adaptive febone at rtol 1e-5: 1e-3 bounds both errors
        assert _max_rel(getattr(tr.states, k)[:121, 0], sol.y[i]) < 1e-3, k

"""simulate_site: the gradient of a BMD change with respect to a dose against central
differences, and bad input."""
import jax
import numpy as np
import pytest

from febone.remodel.patient import Patient
from febone.remodel.site import simulate_site
from febone.remodel.treatments import Treatment

T = Treatment.create


@pytest.mark.slow
def test_dose_gradient_matches_central_differences():
    man = Patient.create(sex="male", age_years=60.0, testosterone_ng_dL=250.0)
    f = np.array([0.15, 0.6])

    def bmd_change(dose):
        r = simulate_site(man, [T("testosterone-gel", dose, "mg", 1)], years=0.25, f_bm=f,
                          output_every_days=46, rtol=None)   # fixed steps: smooth in the dose
        return r.bmd_change_pct[-1]

    d, h = 40.0, 1e-2
    g = float(jax.grad(bmd_change)(d))
    fd = (float(bmd_change(d + h)) - float(bmd_change(d - h))) / (2 * h)
    # central differences: truncation O(h²) ~1e-6 relative, rounding ~1e-10/h
    assert g > 0
    assert g == pytest.approx(fd, rel=1e-4)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(years=0), ValueError, "years"),
    (dict(f_bm=[[0.2]]), ValueError, "1-D"),
    (dict(weights=[1.0, 2.0]), ValueError, "weights"),
    (dict(spinup_years=-1.0), ValueError, "spinup_years"),
    (dict(spinup_years=90.0), ValueError, "exceeds"),
    (dict(output_every_days=0), ValueError, "output_every_days"),
    (dict(f_bm=[1.5]), ValueError, "fraction"),
])
def test_bad_input(kw, exc, match):
    args = dict(years=1.0, f_bm=[0.2])
    args.update(kw)
    with pytest.raises(exc, match=match):
        simulate_site(Patient.create(), [], **args)
    with pytest.raises(TypeError, match="Patient"):
        simulate_site("woman", [], years=1.0, f_bm=[0.2])

"""Patient and Treatment data types: validation, units, pytree structure (febone.remodel)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from febone.remodel.patient import Patient, default_fat_fraction
from febone.remodel.treatments import DRUGS, Treatment, canonical_dose

REQUIRED_DRUGS = {
    "estradiol-transdermal", "estradiol-oral", "progesterone", "testosterone-cypionate",
    "testosterone-gel", "testosterone-undecanoate", "anastrozole", "gonadorelin", "enclomiphene",
    "rhgh", "sermorelin", "cjc1295-ipamorelin", "tesamorelin", "teriparatide", "pth-continuous",
    "glucocorticoid", "denosumab", "alendronate", "calcium", "vitamin-d",
    "exercise-weight-bearing", "exercise-resistance", "exercise-high-impact"}


def test_registry_has_every_drug_of_the_interface_with_its_canonical_unit():
    assert REQUIRED_DRUGS <= set(DRUGS)
    for name, spec in DRUGS.items():
        assert spec.name == name
        # the canonical unit is accepted with factor 1
        assert spec.accepted_units[spec.unit] == 1.0
        assert spec.typical_dose > 0 and spec.typical_interval_days > 0
    assert DRUGS["estradiol-transdermal"].unit == "ug/day"
    assert DRUGS["exercise-resistance"].unit == "fraction"


@pytest.mark.parametrize("drug, dose, unit, canonical", [
    ("anastrozole", 500.0, "ug", 0.5), ("teriparatide", 0.02, "mg", 20.0),
    ("vitamin-d", 25.0, "ug", 1000.0), ("rhgh", 0.9, "IU", 0.3),
    ("exercise-high-impact", 20.0, "%", 0.2), ("calcium", 1.2, "g", 1200.0)])
def test_units_convert_to_the_canonical_unit(drug, dose, unit, canonical):
    # conversion factors: 1 mg = 1000 µg, 1 µg vitamin D3 = 40 IU, 1 mg somatropin = 3 IU
    t = Treatment.create(drug, dose, unit)
    assert float(canonical_dose(t)) == pytest.approx(canonical, rel=1e-12)


def test_treatment_defaults_and_pytree():
    t = Treatment.create("denosumab", 60)
    assert (t.unit, t.interval_days, t.start_years, t.stop_years) == ("mg", 183.0, 0.0, None)
    leaves, treedef = jax.tree_util.tree_flatten(t)
    assert leaves == [60.0]              # only the dose is data (differentiable)
    g = jax.grad(lambda d: canonical_dose(jax.tree_util.tree_unflatten(treedef, [d])))(1.0)
    assert float(g) == 1.0


@pytest.mark.parametrize("kw, match", [
    (dict(drug="anastrazole", dose=1), "did you mean.*anastrozole"),
    (dict(drug="anastrozole", dose=1, unit="IU"), "accepted.*mg"),
    (dict(drug="anastrozole", dose=0), "positive"),
    (dict(drug="anastrozole", dose=float("nan")), "positive"),
    (dict(drug="anastrozole", dose=1, interval_days=0), "interval_days"),
    (dict(drug="anastrozole", dose=1, start_years=float("nan")), "start_years"),
    (dict(drug="anastrozole", dose=1, start_years=2, stop_years=1), "after start_years"),
])
def test_bad_treatments_name_the_problem(kw, match):
    with pytest.raises(ValueError, match=match):
        Treatment.create(**kw)


def test_bad_treatment_types():
    with pytest.raises(TypeError, match="string"):
        Treatment.create(3, 1.0)
    with pytest.raises(TypeError, match="number"):
        Treatment.create("anastrozole", True)


def test_patient_defaults_fat_and_pytree():
    p = Patient.create(sex="male", body_mass_kg=80.0)
    assert p.fat_mass == pytest.approx(default_fat_fraction("male") * 80.0)
    assert p.body_weight_kg == 80.0
    q = Patient.create(fat_mass_kg=30.0)
    assert q.fat_mass == 30.0
    leaves, treedef = jax.tree_util.tree_flatten(p)
    # sex and gh_deficient are static; None (fat mass, T override) has no leaves
    assert len(leaves) == 5 and all(isinstance(v, float) for v in leaves)
    assert treedef == jax.tree_util.tree_flatten(Patient.create(sex="male"))[1]


@pytest.mark.parametrize("kw, exc, match", [
    (dict(sex="f"), ValueError, "sex"),
    (dict(age_years=500), ValueError, r"age_years.*\[0, 110\] years"),
    (dict(vitamin_D_ng_mL=-3), ValueError, "vitamin_D_ng_mL"),
    (dict(fat_mass_kg=80.0, body_mass_kg=70.0), ValueError, "below body_mass_kg"),
    (dict(testosterone_ng_dL=float("inf")), ValueError, "testosterone"),
    (dict(weight=70), TypeError, "unknown Patient field"),
    (dict(age_years="50"), TypeError, "number"),
    (dict(gh_deficient=1), TypeError, "True or False"),
])
def test_bad_patients_name_the_field(kw, exc, match):
    with pytest.raises(exc, match=match):
        Patient.create(**kw)


def test_traced_dose_is_accepted():
    f = jax.jit(lambda d: canonical_dose(Treatment.create("teriparatide", d, "mg")))
    np.testing.assert_allclose(f(jnp.asarray(0.02)), 20.0)

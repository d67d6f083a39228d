"""Messages of bad input that used to be unclear (issue 17): each names the problem and the
fix in the user's own terms."""
import logging

import numpy as np
import pytest

import febone as fb
from febone.bones import load_bundled
from febone.cli import main
from febone.mesh.mirror import mirrored
from febone.remodel.treatments import DRUGS, Treatment
from febone.scenario import PROTOCOLS, ScenarioError, default_study, load_scenario, protocol, \
    with_duration
from febone.scenario.doses import DOSE_RANGES, FAR_FACTOR, check_dose, daily_dose
from febone.voxel import segment


# ------------------------------------------------------------ scenarios

def test_short_years_on_the_default_study_names_the_cli_option():
    with pytest.raises(ScenarioError) as err:
        with_duration(default_study(), 1)
    msg = str(err.value)
    assert "starts at 2 years, when the run (1 year) is over" in msg
    assert "febone run --years" in msg


def test_a_run_shorter_than_the_output_interval_outputs_at_its_end():
    sc = with_duration(protocol("untreated-menopause"), 0.5)
    assert sc.output_interval_years == pytest.approx(0.5)


def test_non_utf8_scenario_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "x"\n[patient]\nsex = "female"  # Größe\n'.encode("latin-1"))
    with pytest.raises(ScenarioError, match=r"latin1\.toml, line 3: not UTF-8 text \(byte "
                                            r"0xf6\); .*save it as UTF-8 \(e\.g\. iconv"):
        load_scenario(path)


def test_age_past_110_at_the_end_of_a_run_is_an_error():
    text = '[patient]\nsex = "female"\nage = 95\n[simulation]\nduration = "20 years"\n'
    with pytest.raises(ScenarioError, match=r"line 5: simulation.duration: the patient would be "
                                            r"115 years old .* at most 15 years"):
        load_scenario(text)
    load_scenario(text.replace("20 years", "15 years"))  # exactly 110 at the end is allowed


def _dose_scenario(drug, dose, interval=None):
    extra = f'interval = "{interval}"\n' if interval else ""
    return (f'[patient]\nsex = "female"\nage = 60\n[[treatments]]\ndrug = "{drug}"\n'
            f'dose = "{dose}"\n{extra}')


@pytest.mark.parametrize("drug,dose,interval", [("estradiol-transdermal", "50 mg/day", None),
                                                ("alendronate", "70 g", "weekly")])
def test_a_dose_1000_times_the_label_is_refused(drug, dose, interval):
    with pytest.raises(ScenarioError, match=rf"treatments\[0\]\.dose: {drug} .* above the "
                                            rf"plausible .* by more than 10×: check the unit"):
        load_scenario(_dose_scenario(drug, dose, interval))


def test_a_dose_outside_the_label_range_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="febone.scenario.parse"):
        load_scenario(_dose_scenario("alendronate", "140 mg", "daily"))
    assert "alendronate 140 mg every 1 days is 140 mg/day on average, above the plausible " \
           "5–40 mg/day" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="febone.scenario.parse"):
        load_scenario(_dose_scenario("alendronate", "70 mg", "weekly"))
    assert caplog.text == ""


def test_every_drug_has_a_range_holding_its_typical_dose_and_every_protocol_dose():
    assert set(DOSE_RANGES) == set(DRUGS)
    for name, spec in DRUGS.items():
        t = Treatment.create(name, spec.typical_dose, spec.unit,
                             interval_days=spec.typical_interval_days)
        assert check_dose(t) is None, name
    for name in PROTOCOLS:
        for t in protocol(name).treatments:
            assert check_dose(t) is None, (name, t)


def test_far_below_the_range_is_refused_too():
    spec = DRUGS["teriparatide"]
    low = DOSE_RANGES["teriparatide"].low
    t = Treatment.create("teriparatide", 0.9 * low / FAR_FACTOR, spec.unit, interval_days=1.0)
    assert daily_dose(t) < low / FAR_FACTOR
    with pytest.raises(ValueError, match="below the plausible 20–40 ug/day"):
        check_dose(t)


# ------------------------------------------------------------ images

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_an_image_is_named(bad):
    img = np.random.default_rng(0).normal(size=(5, 4, 4)).astype(np.float32)
    img[2, 1, 3] = bad
    with pytest.raises(ValueError, match=r"1 voxels are NaN or inf \(the first at \(z, y, x\) = "
                                         r"\(2, 1, 3\)\); replace them"):
        segment(img, 0.1)


def test_nan_image_in_the_cli(tmp_path, capsys):
    img = np.full((4, 4, 4), np.nan)
    np.save(tmp_path / "nan.npy", img)
    assert main(["compress", str(tmp_path / "nan.npy"), "--voxel-size", "0.1", "--strain",
                 "0.01"]) == 1
    err = capsys.readouterr().err
    assert "64 voxels are NaN or inf" in err and "constant" not in err


# ------------------------------------------------------------ febone run --bone

@pytest.fixture(scope="module")
def femur():
    return load_bundled("femur_coarse_hex8")


def _run_bone(path, capsys):
    code = main(["run", "--protocol", "untreated-menopause", "--bone", str(path), "--years", "1",
                 "--no-pictures"])
    return code, capsys.readouterr().err


def test_run_bone_without_node_sets_says_the_geometry_finds_them(femur, tmp_path, capsys):
    bare = fb.Mesh(femur.points, femur.cells, femur.cell_type, {}, dict(femur.cell_data))
    fb.write_mesh(tmp_path / "bare.vtu", bare)
    code, err = _run_bone(tmp_path / "bare.vtu", capsys)
    assert code == 1
    assert "has no point-data mask head_contact, distal_cut" in err
    assert "The geometry finds them" in err and "with_case_sets" in err
    # the suggested copy is complete
    from febone.strength.geometry import with_case_sets

    fixed = with_case_sets(bare, ["sideways-fall", "stance"])
    assert {"head_contact", "head_medial", "trochanter_lateral", "distal_cut"} <= \
        set(fixed.point_data)


def test_run_bone_without_node_sets_nor_a_femur_shape_says_which_masks(tmp_path, capsys):
    block = fb.box_mesh((2, 2, 4), (40.0, 40.0, 80.0), "hex8")
    fb.write_mesh(tmp_path / "block.vtu", block.with_cell_data(
        density_g_cm3=np.full(block.n_elements, 0.5)))
    code, err = _run_bone(tmp_path / "block.vtu", capsys)
    assert code == 1
    assert "has no point-data mask head_contact" in err
    assert "the geometry cannot find them either" in err and "Add the masks" in err


def test_run_bone_in_metres_is_refused_without_pixel_mm(femur, tmp_path, capsys):
    from dataclasses import replace

    fb.write_mesh(tmp_path / "femur_m.vtu", replace(femur, points=femur.points / 1000.0))
    code, err = _run_bone(tmp_path / "femur_m.vtu", capsys)
    assert code == 1
    assert "in m it would span" in err and "to_mm(" in err and "pixel_mm" not in err


@pytest.mark.heavy
@pytest.mark.slow
def test_a_left_femur_remodels_as_the_mirror_of_the_right(femur):
    """A left femur (the bundled right one mirrored in x) is loaded as the mirror of the right
    one in every habitual and strength case and its hip scan turns the other way, so a year
    of remodelling gives the right femur's regional vBMD, aBMD and fracture load. Mirroring is
    exact in exact arithmetic; the CG tolerances (1e-8 habitual, 1e-10 outcome) and the
    mirrored hierarchy's different rounding bound the difference well inside 1e-6."""
    from febone.remodel.coupling import FE_COUPLING
    from febone.remodel.model import daily_table
    from febone.remodel.patient import Patient
    from febone.remodel.settings import RemodelSettings, calendar
    from febone.remodel.simulation import remodel

    # the sideways fall, the case whose pose is mirrored (stance's mirroring:
    # tests/test_silent_answers.py)
    settings = RemodelSettings(steps_per_year=4, strength_cases=("sideways-fall",))
    patient = Patient.create(age_years=55.0, menopause_age_years=50.0)
    n_days = int(calendar(1.0, settings)[0][-1])
    inputs = daily_table(patient, (), FE_COUPLING, n_days)
    runs = [remodel(bone, inputs, years=1.0, settings=settings).records[-1]
            for bone in (femur, mirrored(femur))]
    right, left = runs
    for name, region in right["regions"].items():
        for key, value in region.items():
            assert left["regions"][name][key] == pytest.approx(value, rel=1e-6), (name, key)
    assert right["regions"]["femoral_neck"]["change_pct"] < -0.3   # it remodelled: menopause
    for case, value in right["stiffness_N_per_mm"].items():
        assert left["stiffness_N_per_mm"][case] == pytest.approx(value, rel=1e-6), case
        for method, load in right["fracture_load_N"][case].items():
            assert left["fracture_load_N"][case][method] == pytest.approx(load, rel=1e-6)

"""Remodelling on the matrix-free multigrid voxel engine (``RemodelSettings.solver``,
``febone run --solver``, ``febone sensitivity --solver``) against the unstructured path.

Both engines solve the same hex8 elements on the same boxes (a grid-aligned mesh: the bar
here, the bundled femurs), so a run differs between them only by where each CG stops: the
habitual solves at rtol 1e-8 (warm-started from the previous step) and the strength solves at
1e-10. That is the difference between the float64 and the mixed-precision runs, whose
documented tolerance (:data:`febone.precision.RUN_TOLERANCES`: 1e-6 relative, 1e-5 points of a
% change) the voxel loop is held to here; measured: on the bar 5e-11 relative and 3e-8 points,
on the coarse femur after 2 years of menopause 1.6e-8 relative and 1.1e-6 points (the regional
BMD changes within 1e-7 relative of each other). The gradient of a study through the voxel
solves (implicit adjoint, multigrid set up inside the solve from the traced moduli) is checked
against central differences (the tolerances of tests/test_study.py) and against the
unstructured path's gradient.
"""
from dataclasses import replace

import numpy as np
import pytest

import febone as fb
from febone.bones import bundled_path
from febone.precision import RUN_TOLERANCES
from febone.remodel import run_scenario
from febone.remodel.coupling import FE_COUPLING
from febone.remodel.mechanics import HabitualLoad, stimulus_engine
from febone.remodel.model import build_model, daily_table
from febone.remodel.settings import RemodelSettings, settings_for, step_schedule
from febone.remodel.simulation import remodel
from febone.remodel.voxel_case import VoxelCase
from febone.scenario import load_scenario, protocol, with_duration
from febone.study import StudySettings, build_study, finite_difference, value_and_grad
from febone.voxel.from_mesh import NotGridAligned
from meshes_for_tests import BAR_LOADING, jittered_box, run_differences, write_bar_bone

SCENARIO = """\
name = "bar"
[bone]
mesh = "BAR"
[patient]
age = "51 years"
menopause_age = "50 years"
[simulation]
duration = "1 year"
output_interval = "0.5 years"
spinup = 0
""" + BAR_LOADING

TOL = RUN_TOLERANCES["mixed"]


def _bmd_change(summary: dict) -> np.ndarray:
    return np.array([summary["regions"][r]["change_pct"] for r in sorted(summary["regions"])])


@pytest.fixture(scope="module")
def bar_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voxel_loop")
    path = write_bar_bone(tmp / "bar.vtu")
    (tmp / "bar.toml").write_text(SCENARIO.replace("BAR", str(path)))
    sc = load_scenario(tmp / "bar.toml")
    out = {"scenario": sc, "tmp": tmp}
    for solver in ("voxel", "unstructured"):
        folder = tmp / solver
        out[solver] = run_scenario(sc, out_dir=folder, solver=solver)
        out[f"{solver}_dir"] = folder
    return out


def test_bar_voxel_loop_equals_unstructured(bar_runs):
    """One year after menopause on the 72-element bar: every output of the voxel loop equals
    the unstructured loop's to the solvers' tolerance, BMD changes to 1e-6 relative."""
    v, u = bar_runs["voxel"].summary(), bar_runs["unstructured"].summary()
    d = run_differences(u, v)
    assert d["relative"] <= TOL["relative"], d
    assert d["change_pct"] <= TOL["change_pct"], d
    cu, cv = _bmd_change(u), _bmd_change(v)
    assert np.all(np.abs(cu[:, -1]) > 1.0)          # the bar did lose bone
    np.testing.assert_allclose(cv[:, 1:], cu[:, 1:], rtol=1e-6)
    (arm_v,), (arm_u,) = bar_runs["voxel"].arms.values(), bar_runs["unstructured"].arms.values()
    assert arm_v.description["settings"]["solver"] == "voxel"
    assert arm_u.description["settings"]["solver"] == "unstructured"
    for field in ("density", "bvtv", "displacement", "von_mises"):
        a, b = getattr(arm_u, field), getattr(arm_v, field)
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9 * np.abs(a).max(), err_msg=field)


def test_voxel_loop_files_and_resume(bar_runs, tmp_path):
    """The voxel loop writes the unstructured loop's files (jsonl lines with the same keys, a
    checkpoint of the same layout), and an interrupted voxel run resumes to the uninterrupted
    run's numbers exactly."""
    import json

    dv, du = bar_runs["voxel_dir"], bar_runs["unstructured_dir"]
    lv = [json.loads(x) for x in (dv / "bar.jsonl").read_text().splitlines()]
    lu = [json.loads(x) for x in (du / "bar.jsonl").read_text().splitlines()]
    assert len(lv) == len(lu) == 3
    assert [sorted(r) for r in lv] == [sorted(r) for r in lu]
    with np.load(dv / "bar.checkpoint.npz") as zv, np.load(du / "bar.checkpoint.npz") as zu:
        assert sorted(zv.files) == sorted(zu.files)
        assert all(zv[k].shape == zu[k].shape for k in zv.files if k.startswith("leaf"))

    sc = bar_runs["scenario"]

    class Stop(Exception):
        pass

    def interrupt(arm, k, n, rec):
        if rec is not None and k == 6:               # after the half-year output
            raise Stop

    with pytest.raises(Stop):
        run_scenario(sc, out_dir=tmp_path, solver="voxel", progress=interrupt)
    assert len((tmp_path / "bar.jsonl").read_text().splitlines()) == 2
    resumed = run_scenario(sc, out_dir=tmp_path, solver="voxel", resume=True)
    (full,), (again,) = bar_runs["voxel"].arms.values(), resumed.arms.values()
    np.testing.assert_array_equal(again.bvtv, full.bvtv)
    assert again.records == full.records
    # a checkpoint of the unstructured run is not a voxel run's (the settings differ)
    with pytest.raises(ValueError, match="different run"):
        run_scenario(sc, out_dir=du, solver="voxel", resume=True)


def test_cli_run_solver_flag(bar_runs, tmp_path):
    """``febone run --solver``: voxel and unstructured give the same results file numbers."""
    import json

    from febone.cli import main

    path = bar_runs["tmp"] / "bar.toml"
    out = {}
    for solver in ("voxel", "unstructured"):
        js = tmp_path / f"{solver}.json"
        assert main(["run", str(path), "--solver", solver, "--json", str(js)]) == 0
        out[solver] = json.loads(js.read_text())
        assert out[solver]["scenario"]["name"] == "bar"
    d = run_differences(out["unstructured"], out["voxel"])
    assert d["relative"] <= TOL["relative"] and d["change_pct"] <= TOL["change_pct"], d


def test_kept_hierarchy_changes_only_the_cg_iterates(monkeypatch):
    """``febone run``'s loop keeps each voxel case's multigrid hierarchy, set up from the moduli
    of time 0 and refreshed at every output, instead of setting it up inside every solve (as the
    study and a run with ``refresh=False`` do): the preconditioner only, so the answers agree
    within the solvers' tolerance, while the bone changes by far more."""
    from types import SimpleNamespace

    from febone.remodel import Drives, simulation, voxel_case

    mesh = fb.box_mesh((3, 3, 12), size=(3.0, 3.0, 12.0))
    z = mesh.points[:, 2]
    zc = mesh.points[mesh.cells].mean(axis=1)[:, 2]
    mesh = replace(mesh, point_data={"face_min": (z == z.min()).astype(np.uint8),
                                     "face_max": (z == z.max()).astype(np.uint8)},
                   cell_data={"density_g_cm3": 0.3 + 0.05 * zc})
    days = int(step_schedule(0.5, 12)[-1])
    inputs = SimpleNamespace(drives=Drives(P_RANKL=np.full(days, 150.0)),
                             load_factor=np.full(days, 0.8))
    settings = RemodelSettings(habitual=(HabitualLoad("compression", 1.0, 0.05),), nu=0.3,
                               strength_cases=("compression",), strength_methods=("pistoia",),
                               solver="voxel", output_interval_years=0.25)
    kept = []
    keep = voxel_case.with_hierarchy
    monkeypatch.setattr(voxel_case, "with_hierarchy",
                        lambda c, E, nu, solver: kept.append(E) or keep(c, E, nu, solver))
    fresh = simulation.remodel(mesh, inputs, years=0.5, settings=settings)
    plain = simulation.remodel(mesh, inputs, years=0.5, settings=settings, refresh=False)
    assert len(kept) == 3                 # time 0 and the two outputs, nothing without refresh
    E0, E1 = np.asarray(kept[0]), np.asarray(kept[-1])
    assert np.max(np.abs(E1 / E0 - 1.0)) > 0.01            # refreshed for the new moduli
    bvtv = lambda res: np.array([r["mean_bvtv"] for r in res.records])  # noqa: E731
    assert bvtv(fresh)[-1] < 0.99 * bvtv(fresh)[0]
    np.testing.assert_allclose(bvtv(fresh), bvtv(plain), rtol=TOL["relative"])
    np.testing.assert_allclose(fresh.density, plain.density, rtol=TOL["relative"])
    k = lambda res: [r["stiffness_N_per_mm"]["compression"] for r in res.records]  # noqa: E731
    np.testing.assert_allclose(k(fresh), k(plain), rtol=TOL["relative"])


@pytest.fixture(scope="module")
def coarse_femur():
    return fb.read_mesh(bundled_path("femur_coarse_hex8"))


@pytest.mark.heavy
def test_coarse_femur_voxel_loop_equals_unstructured(coarse_femur):
    """Three monthly steps after menopause on the bundled coarse femur (5,157 elements, 20k
    dofs), an output every step (densitometry, Pistoia load of the sideways fall):
    regional BMD changes equal to 1e-6 relative, the other outputs to the solvers' tolerance."""
    years = 0.25
    sc = with_duration(protocol("untreated-menopause"), years)
    days = int(step_schedule(years, 12)[-1])
    inputs = daily_table(sc.patient, sc.treatments, FE_COUPLING, days)
    runs = {}
    for solver in ("voxel", "unstructured"):
        st = settings_for(sc, solver=solver, output_interval_years=1 / 12,
                          strength_cases=("sideways-fall",))
        runs[solver] = remodel(coarse_femur, inputs, years=years, settings=st)
    v, u = runs["voxel"].summary(), runs["unstructured"].summary()
    d = run_differences(u, v)
    assert d["relative"] <= TOL["relative"], d
    assert d["change_pct"] <= TOL["change_pct"], d
    cu, cv = _bmd_change(u), _bmd_change(v)
    assert np.abs(cu[:, -1]).max() > 0.1               # a measurable change to compare
    np.testing.assert_allclose(cv[:, 1:], cu[:, 1:], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(runs["voxel"].density, runs["unstructured"].density, rtol=1e-9)


def test_auto_picks_the_voxel_engine_for_grid_aligned_hex8(coarse_femur):
    """auto: voxel for a grid-aligned hex8 bone unless an unstructured preconditioner is named;
    the unstructured path for other meshes; voxel insists and says why."""
    s = RemodelSettings()
    assert s.solver == "auto"
    model = build_model(coarse_femur, s)
    assert stimulus_engine(model.stim) == "voxel"
    assert all(isinstance(c, VoxelCase) for c in model.stim.cases)
    assert stimulus_engine(build_model(coarse_femur, replace(s, preconditioner="jacobi")).stim) \
        == "unstructured"
    assert stimulus_engine(build_model(coarse_femur, replace(s, solver="unstructured")).stim) \
        == "unstructured"
    with pytest.raises(ValueError, match="geometric multigrid"):
        build_model(coarse_femur, replace(s, solver="voxel", preconditioner="amg"))
    with pytest.raises(ValueError, match="unknown solver"):
        RemodelSettings(solver="gpu")
    box = jittered_box((2, 2, 3), "hexahedron", size=(10.0, 10.0, 15.0))
    box = replace(box, cell_data={"density_g_cm3": np.full(box.n_elements, 0.4)})
    loose = replace(s, habitual=(HabitualLoad("compression", 1.0, 0.5),),
                    law="morgan-vertebra", strength_cases=("compression",))
    assert stimulus_engine(build_model(box, loose).stim) == "unstructured"
    with pytest.raises(NotGridAligned, match="unstructured"):
        build_model(box, replace(loose, solver="voxel"))


def _study(solver: str):
    mesh = fb.box_mesh((2, 2, 3), (10.0, 10.0, 15.0))
    rho = 0.3 + 0.2 * np.random.default_rng(7).random(mesh.n_elements)
    mesh = replace(mesh, cell_data={"density_g_cm3": rho})
    rs = RemodelSettings(habitual=(HabitualLoad("compression", 1.0, 0.5),),
                         law="morgan-vertebra", cell_rtol=None, solver=solver)
    st = StudySettings(remodel=rs, strength_case="compression")
    from febone.remodel.patient import Patient
    from febone.remodel.treatments import Treatment

    woman = Patient.create(age_years=62.0)
    ai = (Treatment.create("anastrozole", 1.0, "mg", 1),
          Treatment.create("exercise-resistance", 0.1, "fraction", 1))
    return build_study(mesh, woman, ai, history_years=0.0, years=30 / 365.25, settings=st)


def test_study_gradient_through_voxel_solves():
    """One monthly step of a differentiable study on a 12-voxel specimen: jax.grad through
    the voxel habitual and strength solves against central differences (2e-4, as
    tests/test_study.py) and against the unstructured path's gradient (the same to the
    solvers' tolerance)."""
    names = ["exercise", "law:b", "density_scale"]
    p = {"exercise": 0.1, "law:b": 1.56, "density_scale": 1.0}
    vox, uns = _study("voxel"), _study("unstructured")
    assert stimulus_engine(vox.stim) == "voxel" and isinstance(vox.strength, VoxelCase)
    assert stimulus_engine(uns.stim) == "unstructured"
    value_v, grad_v = value_and_grad(vox, p, "fracture_load")
    value_u, grad_u = value_and_grad(uns, p, "fracture_load")
    fd = finite_difference(vox, p, names, "fracture_load")
    np.testing.assert_allclose(float(value_v), float(value_u), rtol=1e-8)
    for n in names:
        np.testing.assert_allclose(float(grad_v[n]), fd[n], rtol=2e-4,
                                   atol=1e-7 * abs(float(value_v)), err_msg=n)
        np.testing.assert_allclose(float(grad_v[n]), float(grad_u[n]), rtol=1e-6,
                                   atol=1e-9 * abs(float(value_v)), err_msg=n)
    assert grad_v["density_scale"] > 0

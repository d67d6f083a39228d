"""`febone strength` end to end: JSON keys and values against the Python API, output files."""
import json

import numpy as np
import pytest

import febone as fb
from febone.cli import main
from febone.strength import strength, uniaxial_compression


@pytest.fixture(scope="module")
def cube_file(tmp_path_factory):
    mesh = fb.box_mesh((2, 2, 3), (10.0, 10.0, 15.0), "hex8")
    z = mesh.points[:, 2]
    rho = np.linspace(0.3, 0.6, mesh.n_elements)
    mesh = mesh.with_point_data(face_min=(z == 0).astype(np.int32), face_max=(z == 15).astype(np.int32))
    mesh = mesh.with_cell_data(density_g_cm3=rho)
    path = tmp_path_factory.mktemp("cube") / "cube.vtu"
    fb.write_mesh(path, mesh)
    return path, mesh


def test_strength_cli_matches_api_and_writes_outputs(cube_file, tmp_path):
    path, mesh = cube_file
    out, js = tmp_path / "out", tmp_path / "r.json"
    code = main(["strength", str(path), "--case", "compression", "--density-field", "density_g_cm3",
                 "--law", "morgan-pooled", "--method", "pistoia,strain-limit,nonlinear",
                 "--body-weight-kg", "60", "--json", str(js), "--out", str(out)])
    assert code == 0
    r = json.loads(js.read_text())
    for key in ("stiffness_N_per_mm", "fracture_load_N", "failure_region", "n_dofs",
                "solve_seconds", "device"):
        assert key in r
    E = np.asarray(fb.density_law("morgan-pooled").modulus(mesh.cell_data["density_g_cm3"]))
    api = strength(mesh, uniaxial_compression("z"), E, methods=("pistoia", "strain-limit"))
    # same model through two front ends: agreement to the CG tolerance
    assert r["stiffness_N_per_mm"] == pytest.approx(api.stiffness_N_per_mm, rel=1e-7)
    for m in ("pistoia", "strain-limit"):
        assert r["fracture_load_N"][m] == pytest.approx(api.fracture_load_N[m], rel=1e-7)
        assert r["fracture_load_BW"][m] == pytest.approx(r["fracture_load_N"][m] / (60 * 9.81))
    assert r["n_dofs"] == mesh.n_dofs
    # the nonlinear curve starts on the linear stiffness (default range: the first of 30
    # increments is 1/3 of the first-yield displacement, so it is elastic)
    d, F = np.array(r["nonlinear"]["displacement_mm"]), np.array(r["nonlinear"]["force_N"])
    assert F[1] / d[1] == pytest.approx(r["stiffness_N_per_mm"], rel=1e-6)
    assert r["fracture_load_N"]["nonlinear"] == pytest.approx(F.max())
    back = fb.read_mesh(out / "strength.vtu")
    assert back.cell_data["damage"].shape == (mesh.n_elements,)
    assert back.point_data["displacement_mm"].shape == (mesh.n_nodes, 3)
    csv = np.loadtxt(out / "load_displacement.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(csv[:, 1], F)
    assert (out / "load_displacement.png").stat().st_size > 1000


def test_strength_cli_bad_method(cube_file, capsys):
    path, _ = cube_file
    assert main(["strength", str(path), "--case", "compression", "--E", "1000",
                 "--method", "pistoia,guess"]) == 1
    assert "unknown method(s) ['guess']" in capsys.readouterr().err


def test_strength_cli_missing_node_set(cube_file, capsys):
    path, _ = cube_file
    assert main(["strength", str(path), "--case", "stance", "--E", "1000", "--find-sets", "masks"]) == 1
    err = capsys.readouterr().err
    # stance needs head_contact (the loaded set, looked up first) and distal_cut
    assert "no point-data mask 'head_contact'" in err and "available node sets: ['face_min'" in err
    # by default the sets are looked for in the geometry, and a cube has no femoral head
    assert main(["strength", str(path), "--case", "stance", "--E", "1000"]) == 1
    err = capsys.readouterr().err
    assert "could not find the proximal femur" in err and "standard orientation" in err

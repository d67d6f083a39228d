"""End-to-end runs of the ``febone`` command line (info, solve) against closed-form answers.

The solve tests use a cube in uniaxial stress: a linear displacement field, which every
element type represents exactly, so reactions, displacements and stresses are known in
closed form and only round-off and the CG tolerance separate them from the FE result.
"""
import json
import re
import subprocess
import sys

import jax
import meshio
import numpy as np
import pytest

import febone as fb
from febone.cli import main

E, NU, STRAIN = 1000.0, 0.3, -0.01  # MPa, -, compressive strain of a 1 mm cube


def _cube_file(tmp_path, shape=(2, 2, 2), cell_type="hex8", extra_cell_data=None):
    """A 1 mm cube with node-set masks: bottom (z=0), top (z=1), origin (0,0,0), xaxis (1,0,0),
    corner_top (1,1,1) — the last one is never used by a boundary condition."""
    mesh = fb.box_mesh(shape, size=(1.0, 1.0, 1.0), cell_type=cell_type)
    p = mesh.points

    def mask(sel):
        return sel.astype(np.uint8)

    masks = {
        "bottom": mask(np.isclose(p[:, 2], 0.0)),
        "top": mask(np.isclose(p[:, 2], 1.0)),
        "origin": mask(np.all(np.isclose(p, 0.0), axis=1)),
        "xaxis": mask(np.all(np.isclose(p, [1.0, 0.0, 0.0]), axis=1)),
        "corner_top": mask(np.all(np.isclose(p, 1.0), axis=1)),
    }
    cell_data = {"E_MPa": np.full(mesh.n_elements, E), **(extra_cell_data or {})}
    path = tmp_path / "cube.vtu"
    fb.write_mesh(path, mesh, point_data=masks, cell_data=cell_data)
    return path


# Supports that remove the rigid-body modes without restraining the Poisson contraction:
# bottom u_z = 0, origin u_x = u_y = 0, (1,0,0) u_y = 0.
SUPPORTS = ["--fix", "bottom:z", "--fix", "origin:xy", "--fix", "xaxis:y"]


def test_info_json_matches_the_running_jax(tmp_path, capsys):
    out = tmp_path / "info.json"
    assert main(["info", "--json", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["jax_version"] == jax.__version__
    assert info["backend"] == jax.default_backend()
    assert info["precision"] == "float64"  # main() enables x64
    assert info["device"] == fb.device_description()
    printed = capsys.readouterr().out
    assert jax.__version__ in printed and "backend" in printed


def test_solve_displacement_control_matches_uniaxial_stress(tmp_path, capsys):
    path = _cube_file(tmp_path)
    out_json = tmp_path / "r.json"
    rc = main(["solve", str(path), "--E-field", "E_MPa", "--nu", str(NU), *SUPPORTS,
               "--displace", f"top:z={STRAIN}", "--rtol", "1e-10", "--json", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    # closed form: F = E·ε·A on the top (A = 1 mm²), the opposite on the bottom. The
    # tolerance covers round-off and the CG tolerance (1e-10 relative) with margin.
    F = E * STRAIN
    r = res["reactions_N"]
    np.testing.assert_allclose(r["top"], [0.0, 0.0, F], atol=1e-7 * abs(F))
    np.testing.assert_allclose(r["bottom"], [0.0, 0.0, -F], atol=1e-7 * abs(F))
    # free lateral contraction: the in-plane supports carry nothing
    np.testing.assert_allclose(r["origin"][:2], [0.0, 0.0], atol=1e-7 * abs(F))
    # an unused mask is still reported: bilinear 2×2 top face, corner node carries 1/16
    np.testing.assert_allclose(r["corner_top"], [0.0, 0.0, F / 16], atol=1e-7 * abs(F))
    assert set(r) == {"bottom", "top", "origin", "xaxis", "corner_top"}
    assert res["n_dofs"] == 3 * 27
    assert res["converged"] is True and res["residual"] <= 1e-9 and res["iterations"] >= 1
    assert res["solve_seconds"] > 0 and res["device"] == fb.device_description()
    assert res["dtype"] == "float64"
    printed = capsys.readouterr().out
    assert "Fz [N]" in printed and "corner_top" in printed


def test_solve_force_control_writes_exact_fields(tmp_path):
    # one hex8: equal shares of the total force on its 4 top nodes are the consistent
    # nodal loads of a uniform traction, so the FE solution is the exact uniaxial state
    path = _cube_file(tmp_path, shape=(1, 1, 1))
    F = E * STRAIN  # N on 1 mm² -> σ_zz = F MPa
    rc = main(["solve", str(path), "--E", str(E), "--nu", str(NU), *SUPPORTS,
               "--force", f"top:z={F}", "--rtol", "1e-12", "--out", str(tmp_path / "res")])
    assert rc == 0
    m = meshio.read(tmp_path / "res" / "solution.vtu")
    u = m.point_data["displacement_mm"]
    x = m.points
    exact = np.stack([-NU * STRAIN * x[:, 0], -NU * STRAIN * x[:, 1], STRAIN * x[:, 2]], 1)
    np.testing.assert_allclose(u, exact, atol=1e-9)  # CG at rtol 1e-12 on an 8-node model
    cd = {k: v[0] for k, v in m.cell_data.items()}
    np.testing.assert_allclose(cd["stress_MPa"][0], [0, 0, F, 0, 0, 0], atol=1e-8)
    np.testing.assert_allclose(cd["strain"][0], [-NU * STRAIN, -NU * STRAIN, STRAIN, 0, 0, 0],
                               atol=1e-11)
    np.testing.assert_allclose(cd["von_mises_MPa"], [abs(F)], rtol=1e-9)
    np.testing.assert_allclose(cd["principal_stress_MPa"][0], [0, 0, F], atol=1e-8)
    np.testing.assert_allclose(cd["sed_MPa"], [F**2 / (2 * E)], rtol=1e-9)  # σ²/2E
    np.testing.assert_allclose(cd["youngs_modulus_MPa"], [E])
    # the mesh's own data travels along
    assert "E_MPa" in cd and "top" in m.point_data


def test_solve_density_field_and_law(tmp_path):
    rho = 0.5  # g/cm³; E = 1000·ρ² = 250 MPa
    path = _cube_file(tmp_path, extra_cell_data={"rho": np.full(8, rho)})
    out = tmp_path / "r.json"
    rc = main(["solve", str(path), "--density-field", "rho", "--law", "power:1000,2", *SUPPORTS,
               "--displace", f"top:z={STRAIN}", "--rtol", "1e-10", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())["reactions_N"]["top"]
    np.testing.assert_allclose(r[2], 1000 * rho**2 * STRAIN, rtol=1e-7)


@pytest.mark.parametrize("argv, message", [
    ([], r"exactly one modulus source \(none was given\).*--E-field NAME.*--E MPA"
         r".*--density-field NAME --law LAW.*available cell-data fields: \['E_MPa'\]"),
    (["--E", "100", "--E-field", "E_MPa"], r"exactly one modulus source \(got --E-field and --E\)"),
    (["--E-field", "E_GPa"], r"no cell-data field 'E_GPa'; available cell-data fields: \['E_MPa'\]"),
    (["--density-field", "E_MPa"], r"--density-field needs --law"),
    (["--E", "100", "--law", "morgan-pooled"], r"--law needs --density-field"),
    (["--E", "100", "--fix", "floor:z"], r"--fix 'floor:z'.*no point-data mask 'floor'; "
                                         r"available node sets: \[.*'bottom'.*\]"),
    (["--E", "100", "--fix", "bottom:w"], r"unknown component letter\(s\) \['w'\]"),
    (["--E", "100", "--displace", "top=1"], r"expected SET:"),
    (["--E", "-5", "--fix", "bottom:xyz"], r"Young's modulus must be positive"),
    (["--E", "100", "--nu", "0.5", "--fix", "bottom:xyz"], r"Poisson's ratio must lie in \(0, 0.5\)"),
    (["--E", "100", "--fix", "top:z"], r"under-constrained"),
])
def test_solve_bad_arguments_fail_with_a_clear_message(tmp_path, capsys, argv, message):
    path = _cube_file(tmp_path)
    assert main(["solve", str(path), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("febone solve: error: ")
    assert re.search(message, err), err


def test_solve_missing_file(tmp_path, capsys):
    assert main(["solve", str(tmp_path / "nope.vtu"), "--E", "1"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_console_entry_point_runs(tmp_path):
    # the installed module entry point, in a fresh interpreter (x64 enabled by main())
    out = tmp_path / "info.json"
    proc = subprocess.run([sys.executable, "-m", "febone.cli", "info", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(out.read_text())
    assert info["jax_version"] == jax.__version__ and info["x64_enabled"] is True

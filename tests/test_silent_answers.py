"""Inputs that used to give a wrong answer with exit 0 (issue 17): coordinates in metres,
conflicting boundary conditions, a left femur posed as a right one, two load-bearing pieces in
a micro-CT image, a tensile strain in a compression test. Each now gives the right answer or
a clear error."""
import json
from dataclasses import replace

import numpy as np
import pytest

import febone as fb
from febone.bones import load_bundled
from febone.cli import main
from febone.material.laws import density_law
from febone.mesh.mirror import mirrored
from febone.strength import sideways_fall, stance, strength
from febone.voxel import VoxelImage, compress, compress_mask


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A 10 × 10 × 15 mm block with face masks, written in mm and in metres."""
    mesh = fb.box_mesh((2, 2, 3), (10.0, 10.0, 15.0), "hex8")
    z = mesh.points[:, 2]
    mesh = mesh.with_point_data(face_min=(z == 0).astype(np.int32),
                                face_max=(z == 15).astype(np.int32))
    folder = tmp_path_factory.mktemp("cube")
    fb.write_mesh(folder / "mm.vtu", mesh)
    fb.write_mesh(folder / "m.vtu", replace(mesh, points=mesh.points / 1000.0))
    return folder


# ------------------------------------------------------------ coordinates in metres

def test_solve_and_strength_refuse_a_bone_in_metres(cube, capsys):
    solve = ["--E", "1000", "--fix", "face_min:xyz", "--displace", "face_max:z=-0.1"]
    assert main(["solve", str(cube / "m.vtu"), *solve]) == 1
    err = capsys.readouterr().err
    assert "spans 0.015 mm along its largest side" in err and "--units m" in err
    assert main(["strength", str(cube / "m.vtu"), "--E", "1000", "--case", "compression"]) == 1
    assert "(in m it would span 15 mm): pass --units m" in capsys.readouterr().err


def test_units_option_converts_to_mm(cube, tmp_path):
    args = ["--E", "1000", "--case", "compression", "--method", "pistoia"]
    assert main(["strength", str(cube / "mm.vtu"), *args, "--json", str(tmp_path / "mm.json")]) == 0
    assert main(["strength", str(cube / "m.vtu"), *args, "--units", "m",
                 "--json", str(tmp_path / "m.json")]) == 0
    mm, m = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("mm", "m"))
    assert m["stiffness_N_per_mm"] == pytest.approx(mm["stiffness_N_per_mm"], rel=1e-9)
    assert m["fracture_load_N"]["pistoia"] == pytest.approx(mm["fracture_load_N"]["pistoia"],
                                                            rel=1e-9)
    assert mm["fracture_load_N"]["pistoia"] > 100.0


def test_huge_coordinates_are_refused(cube, tmp_path, capsys):
    mesh = fb.read_mesh(cube / "mm.vtu")
    fb.write_mesh(tmp_path / "huge.vtu", replace(mesh, points=mesh.points * 1e12))
    assert main(["strength", str(tmp_path / "huge.vtu"), "--E", "1000", "--case",
                 "compression"]) == 1
    err = capsys.readouterr().err
    assert "1.5e+13 mm" in err and "no unit among" in err


# ------------------------------------------------------------ conflicting conditions

def test_fixed_and_displaced_dof_is_an_error(cube, capsys):
    code = main(["solve", str(cube / "mm.vtu"), "--E", "1000", "--fix", "face_min:xyz",
                 "--displace", "face_min:z=-0.1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "--displace 'face_min:z=-0.1'" in err
    assert "conflicting boundary conditions on node set 'face_min': displacement z" in err


def test_displaced_twice_with_different_values_is_an_error():
    bcs = fb.BoundaryConditions.empty(4).displace([0, 1], x=0.1, name="top")
    with pytest.raises(ValueError, match=r"node set 'top': displacement x \(already 0.1 mm at 1 "
                                         r"of its 2 nodes, e\.g\. node 1; now 0.2 mm\)"):
        bcs.displace([1, 2], x=0.2, name="top")
    # the same value again, or another component, is no conflict
    again = bcs.displace([1, 2], x=0.1).fix([1], "yz")
    assert np.asarray(again.fixed).sum() == 5


# ------------------------------------------------------------ a left femur

@pytest.fixture(scope="module")
def femurs():
    right = load_bundled("femur_coarse_hex8")
    E = np.asarray(density_law("morgan-femoral-neck").modulus(right.cell_data["density_g_cm3"]))
    return right, mirrored(right), E


@pytest.mark.parametrize("case", [sideways_fall(), stance()], ids=["sideways-fall", "stance"])
def test_left_femur_with_masks_is_loaded_as_the_mirror_of_the_right(femurs, case):
    right, left, E = femurs
    r = strength(right, case, E, methods=("pistoia",))
    l = strength(left, case, E, methods=("pistoia",))
    assert (r.side, l.side) == ("right", "left")
    assert l.stiffness_N_per_mm == pytest.approx(r.stiffness_N_per_mm, rel=1e-6)
    assert l.fracture_load_N["pistoia"] == pytest.approx(r.fracture_load_N["pistoia"], rel=1e-6)
    assert "left femur: pose mirrored" in l.case.description


def test_left_femur_without_masks_gets_its_sets_from_the_geometry(femurs):
    right, left, E = femurs
    r = strength(right, sideways_fall(), E, methods=("pistoia",), find_sets="geometry")
    l = strength(left, sideways_fall(), E, methods=("pistoia",), find_sets="geometry")
    assert l.side == "left"
    assert l.stiffness_N_per_mm == pytest.approx(r.stiffness_N_per_mm, rel=1e-6)


def test_strength_cli_reports_the_side(femurs, tmp_path, capsys):
    _, left, E = femurs
    fb.write_mesh(tmp_path / "left.vtu", left.with_cell_data(E_MPa=E))
    assert main(["strength", str(tmp_path / "left.vtu"), "--case", "stance", "--E-field",
                 "E_MPa", "--method", "pistoia", "--json", str(tmp_path / "r.json")]) == 0
    assert "side             left femur" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["side"] == "left"


def test_side_that_cannot_be_told_is_an_error(femurs):
    right, _, E = femurs
    on_its_side = replace(right, points=right.points @ fb.strength.rotation("z", 90.0).T)
    with pytest.raises(ValueError, match="cannot tell a right from a left femur"):
        strength(on_its_side, sideways_fall(), E, methods=("pistoia",))


# ------------------------------------------------------------ micro-CT: two load-bearing pieces

def test_compress_keeps_every_load_bearing_piece():
    mask = np.zeros((8, 6, 6), bool)
    mask[:, 1:3, 1:3] = True
    one = compress_mask(mask, 0.1, strain=0.01)
    mask[:, 4:6, 4:6] = True      # a second pillar, not touching the first
    mask[3, 0, 5] = True          # a floating island
    mask[6:, 5, 0] = True         # a piece touching only the loaded plane
    two = compress(VoxelImage(mask, (0.1, 0.1, 0.1)), strain=0.01)
    assert two.reaction_force_N == pytest.approx(2 * one.reaction_force_N, rel=1e-6)
    assert two.removed_voxels == 3
    assert two.bv_tv_image == pytest.approx(mask.mean())
    assert two.bv_tv_model == pytest.approx((mask.sum() - 3) / mask.size)
    payload = two.summary()
    assert {"removed_voxels", "bv_tv_image", "bv_tv_model"} <= set(payload)


def test_compress_cli_json_holds_the_removed_voxels(tmp_path):
    mask = np.zeros((8, 6, 6), bool)
    mask[:, 1:3, 1:3] = mask[:, 4:6, 4:6] = True
    mask[3, 0, 5] = True
    np.save(tmp_path / "two.npy", mask)
    assert main(["compress", str(tmp_path / "two.npy"), "--voxel-size", "0.1", "--strain",
                 "0.01", "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["removed_voxels"] == 1
    assert res["bv_tv_image"] == pytest.approx(mask.mean())
    assert res["bv_tv_model"] == pytest.approx((mask.sum() - 1) / mask.size)


def test_unsupported_piece_in_a_given_mask_is_named():
    mask = np.zeros((6, 4, 4), bool)
    mask[:, 0, 0] = True
    mask[2:, 3, 3] = True  # reaches the loaded plane only
    with pytest.raises(ValueError, match=r"2 face-connected pieces, 1 of which \(sizes \[4\] "
                                         r"voxels\) do not touch the fixed first z-plane"):
        compress_mask(mask, 0.1, strain=0.01)


# ------------------------------------------------------------ tension in a compression test

@pytest.mark.parametrize("kw", [{"strain": -0.01}, {"displacement": -0.005}])
def test_negative_strain_is_refused(kw):
    with pytest.raises(ValueError, match="positive number .* a negative value would be tension"):
        compress_mask(np.ones((4, 3, 3), bool), 0.1, **kw)


def test_negative_strain_cli_message(tmp_path, capsys):
    np.save(tmp_path / "cube.npy", np.ones((4, 3, 3), bool))
    assert main(["compress", str(tmp_path / "cube.npy"), "--voxel-size", "0.1",
                 "--strain=-0.01", "--quiet"]) == 1
    assert "strain -0.01: a compression test takes the shortening as a finite positive" in \
        capsys.readouterr().err

"""The bundled meshes: present, valid, documented, and regenerated bit for bit."""
import numpy as np
import pytest

import febone as fb
import febone.bones.build as build_module
from febone.bones import load_bundled
from febone.bones.build import MESHES_DIR, SPECS, build

REGIONS = {"femur": ["head", "femoral_neck", "trochanter", "intertrochanteric", "total_hip",
                     "shaft"],
           "vertebra": ["vertebral_body", "posterior"], "trabecular": []}
SETS = {"femur": ["head_contact", "head_medial", "trochanter_lateral", "distal_cut"],
        "vertebra": ["endplate_superior", "endplate_inferior"],
        "trabecular": ["face_zmin", "face_zmax"]}


def test_meshes_folder_is_small_and_documented():
    files = sorted(MESHES_DIR.glob("*.vtu"))
    assert sorted(f.stem for f in files) == sorted(s.name for s in SPECS)
    assert sum(f.stat().st_size for f in files) < 20e6  # keep the repository light
    readme = (MESHES_DIR / "README.md").read_text(encoding="utf-8")
    for s in SPECS:
        assert f"`{s.name}.vtu`" in readme


@pytest.mark.parametrize("spec", [s for s in SPECS if "coarse" in s.name or "080um" in s.name],
                         ids=lambda s: s.name)
def test_bundled_mesh_fields(spec):
    mesh = load_bundled(spec.name)  # read_mesh validates: no inverted elements etc.
    kind = spec.name.split("_")[0]
    for name in ["density_g_cm3", "E_MPa"] + [f"region_{r}" for r in REGIONS[kind]]:
        assert name in mesh.cell_data, name
    for name in SETS[kind]:
        assert len(fb.node_set(mesh, name)) > 0
    assert np.all(mesh.cell_data["E_MPa"] > 0)


@pytest.mark.parametrize("names", [["femur_coarse"], ["vertebra_coarse_hex8"]])
def test_regenerates_bit_for_bit(tmp_path, names):
    # the documented promise of `python -m febone.bones.build`: same bytes on this platform
    for path in build(tmp_path, only=names):
        assert path.read_bytes() == (MESHES_DIR / path.name).read_bytes(), path.name


def test_unknown_name():
    with pytest.raises(ValueError, match="matches no mesh"):
        build("/nonexistent", only=["tibia"])


def test_rebuild_in_an_install_needs_out(tmp_path, monkeypatch, capsys):
    # an installed febone (no pyproject.toml above febone/data/meshes) must not rebuild into
    # site-packages by default
    monkeypatch.setattr(build_module, "MESHES_DIR",
                        tmp_path / "site-packages" / "febone" / "data" / "meshes")
    with pytest.raises(SystemExit) as done:
        build_module.main(["--only", "femur_coarse_hex8"])
    assert done.value.code == 2
    assert "give --out DIR" in capsys.readouterr().err

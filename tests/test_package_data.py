"""Package data: every file under febone/data is declared in pyproject.toml (so the wheel
ships it), the bundled meshes and the scenario reference are found through the package, and
`febone run --help` names a reference file that exists."""
import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from febone.bones import bundled_path
from febone.bones.build import SPECS
from febone.cli import main
from febone.data import MESHES_DIR, SCENARIO_REFERENCE

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_is_declared_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["febone.data"]
    data = ROOT / "febone" / "data"
    files = [p.relative_to(data).as_posix() for p in data.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert "scenarios.md" in files and "meshes/README.md" in files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    assert missing == [], f"add {missing} to [tool.setuptools.package-data] in pyproject.toml"


def test_bundled_meshes_and_reference_live_in_the_package():
    assert MESHES_DIR.parent == SCENARIO_REFERENCE.parent == ROOT / "febone" / "data"
    for spec in SPECS:
        assert bundled_path(spec.name) == MESHES_DIR / f"{spec.name}.vtu"
        assert bundled_path(spec.name).is_file()
    assert SCENARIO_REFERENCE.read_text(encoding="utf-8").startswith("# Scenarios")


def test_run_help_names_the_installed_reference(capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    (named,) = re.findall(r"(/\S+/scenarios\.md)", text)
    assert Path(named) == SCENARIO_REFERENCE and Path(named).is_file()

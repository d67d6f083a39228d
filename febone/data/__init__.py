"""Files shipped inside the package (package data), found next to this module in every install.

- :data:`MESHES_DIR`: the bundled bones (``<name>.vtu`` and their ``README.md``), written by
  ``python -m febone.bones.build``.
- :data:`SCENARIO_REFERENCE`: the scenario reference (TOML keys, protocols, drugs), the file
  ``febone run --help`` points to. In a source checkout ``docs/scenarios.md`` and ``meshes/``
  are links to these.
"""
from pathlib import Path

__all__ = ["MESHES_DIR", "SCENARIO_REFERENCE"]

MESHES_DIR = Path(__file__).resolve().parent / "meshes"
SCENARIO_REFERENCE = Path(__file__).resolve().parent / "scenarios.md"

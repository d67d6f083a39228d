"""Reading a bone's mesh file on the command line: ``--units`` and the size check (mm)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["add_units_option", "read_bone", "check_bone_files"]


def add_units_option(parser) -> None:
    """``--units m|cm|mm|um``: the unit of the mesh file's coordinates."""
    from ..mesh.units import PLAUSIBLE_EXTENT_MM, UNITS_MM

    lo, hi = PLAUSIBLE_EXTENT_MM
    parser.add_argument("--units", choices=list(UNITS_MM), default=None,
                        help=f"unit of the mesh coordinates, converted to mm (default mm, and a "
                             f"bone must then span {lo:g}–{hi:g} mm; giving --units skips that "
                             f"check)")


def read_bone(path, units: str | None):
    """The mesh at ``path`` in mm: converted from ``units``, its size checked (ValueError)."""
    from ..mesh.io import read_mesh
    from ..mesh.units import check_bone_size, to_mm

    mesh = to_mm(read_mesh(path), units or "mm")
    check_bone_size(mesh, f"mesh {Path(path).name}", units=units)
    return mesh


def check_bone_files(scenario) -> None:
    """The checks of every mesh file (not a bundled bone) the scenario's arms use: its size
    is plausible in mm, it is a right femur where the pose has a side, and it carries the node
    sets of the load cases (ValueError naming the masks to add, or how the geometry finds
    them)."""
    from ..mesh.io import read_mesh
    from ..mesh.units import check_bone_size

    files: dict = {}
    for arm in scenario.runs():
        if not arm.bone.bundled:
            files.setdefault(arm.bone.path(), []).append(arm)
    for path, arms in sorted(files.items()):
        mesh = read_mesh(path)
        check_bone_size(mesh, f"bone {path.name}", option=None, path=path)
        _check_node_sets(mesh, path, arms)


def _cases(arms) -> dict:
    """{case name: LoadCase} of the habitual loads and strength outputs of the arms."""
    from ..strength import CASES

    cases = {}
    for arm in arms:
        for lc in arm.load_cases:
            cases.setdefault(lc.case, CASES[lc.case](**dict(lc.options)))
        for name in arm.strength.cases:
            cases.setdefault(name, CASES[name]())
    return cases


def _check_node_sets(mesh, path: Path, arms) -> None:
    from ..strength.geometry import case_set_names, with_case_sets

    cases = _cases(arms)
    needed = {}
    for name, case in cases.items():
        for s in case_set_names(case):
            needed.setdefault(s, []).append(name)
    missing = [s for s in needed if s not in mesh.point_data]
    if missing:
        what = (f"bone {path.name} has no point-data mask {', '.join(missing)} (1 = member "
                f"node), which the load cases "
                f"{', '.join(sorted({c for s in missing for c in needed[s]}))} need")
        try:
            mesh = with_case_sets(mesh, cases.values())
        except ValueError as err:
            raise ValueError(f"{what}; the geometry cannot find them either ({err}). Add the "
                             f"masks to the mesh file") from None
        fixed = path.with_name(path.stem + "_sets.vtu")
        raise ValueError(
            f"{what}. The geometry finds them (standard orientation, meshes/README.md): write "
            f"a copy with the masks and use that: python -c \"import febone as fb; from "
            f"febone.strength.geometry import with_case_sets; fb.write_mesh({str(fixed)!r}, "
            f"with_case_sets(fb.read_mesh({str(path)!r}), {sorted(cases)!r}))\"")
    for case in cases.values():     # a left femur is posed as a mirrored right one; this
        case.sided(mesh)             # raises when the side of the bone cannot be told

"""Reading a bone on the command line: a mesh file (``--units``, the size check in mm) or a
clinical CT (``--calibration`` and the CT options, :mod:`febone.voxel.ct`)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["add_units_option", "add_ct_options", "ct_bone_from_args", "read_bone",
           "check_bone_files"]

#: the CT options other than --calibration, with their argparse defaults
_CT_OPTIONS = {"threshold": None, "resample": 1, "mask": None, "voxel_size": None,
               "density_kind": "apparent"}


def add_ct_options(parser) -> None:
    """The options of a CT given in place of a mesh (``--calibration A B`` and the rest)."""
    from ..voxel.ct import DEFAULT_THRESHOLD, DENSITY_KINDS

    g = parser.add_argument_group(
        "CT image (in place of a mesh: NIfTI, a DICOM series folder or a TIFF stack, in HU)")
    g.add_argument("--calibration", type=float, nargs=2, metavar=("A", "B"),
                   help="phantom calibration ρ = A + B·HU: A in g/cm³, B in g/cm³ per HU "
                        "(needed for a CT; the density kind says what ρ is)")
    g.add_argument("--density-kind", dest="density_kind", choices=list(DENSITY_KINDS),
                   default="apparent",
                   help="what the calibrated ρ is: apparent (default; the density of the "
                        "Morgan laws), ash (ρ_app = ρ_ash/0.6) or qct (K2HPO4-equivalent; "
                        "ρ_ash = 0.877 ρ_QCT + 0.0789, Schileo 2008)")
    g.add_argument("--threshold", type=float, metavar="RHO",
                   help=f"bone = the largest connected component of voxels with calibrated ρ "
                        f"above RHO g/cm³, after resampling (default {DEFAULT_THRESHOLD:g})")
    g.add_argument("--mask", type=Path,
                   help="bone mask on the CT's grid (NIfTI/TIFF, non-zero = bone) instead of "
                        "the threshold")
    g.add_argument("--resample", type=int, default=1, metavar="K",
                   help="average ρ over K×K×K voxel blocks before finding the bone (mass "
                        "conserving; default 1)")
    g.add_argument("--voxel-size", dest="voxel_size", type=float, nargs="+", metavar="MM",
                   help="voxel size for files without one (TIFF): DZ DY DX or one value, mm")


def ct_bone_from_args(args):
    """The :class:`febone.voxel.ct.CTBone` of a CT given as the bone, or None for a mesh file.

    Raises:
        ValueError: a CT without ``--calibration`` or ``--law``, or with a mesh's modulus
            option or ``--units``; CT options with a mesh file; and the CT route's own faults.
    """
    from ..voxel.ct import DEFAULT_THRESHOLD, CTCalibration, ct_bone, read_ct
    from ..voxel.image import is_image_path

    path = Path(args.mesh)
    given = [f"--{k.replace('_', '-')}" for k, v in _CT_OPTIONS.items()
             if getattr(args, k, v) != v]
    if not is_image_path(path):
        if args.calibration is not None or given:
            opts = " and ".join((["--calibration"] if args.calibration is not None else []) +
                                given)
            raise ValueError(f"{opts} belong to a CT image (.nii/.nii.gz, a DICOM series "
                             f"folder, .tif/.tiff), and {path.name} is a mesh file: drop them")
        return None
    if args.calibration is None:
        raise ValueError(f"{path.name} is a CT image: give its calibration --calibration A B "
                         f"(ρ = A + B·HU, A in g/cm³, B in g/cm³ per HU, from the phantom)")
    wrong = [o for o, v in (("--E-field", args.E_field), ("--E", args.E),
                            ("--density-field", args.density_field),
                            ("--units", args.units)) if v is not None]
    if wrong:
        raise ValueError(f"{' and '.join(wrong)} belong to mesh files; a CT's moduli come from "
                         f"its calibrated density and --law, its size from its header (or "
                         f"--voxel-size): drop them")
    if args.law is None:
        from ..material.laws import LAW_NAMES

        raise ValueError(f"a CT needs --law LAW to turn its density into moduli; choose one of "
                         f"{LAW_NAMES} or 'power:A,B' (E = A·ρ^B, MPa, apparent g/cm³)")
    from ..material.laws import density_law

    density_law(args.law)                     # an unknown law fails before the image is read
    calibration = CTCalibration(*args.calibration, kind=args.density_kind)
    voxel_size = args.voxel_size
    if voxel_size is not None and len(voxel_size) not in (1, 3):
        raise ValueError(f"--voxel-size takes one value or three (DZ DY DX), mm; got "
                         f"{len(voxel_size)}")
    image = read_ct(path, voxel_size=None if voxel_size is None else
                    (voxel_size[0] if len(voxel_size) == 1 else voxel_size))
    if args.mask is not None and args.threshold is not None:
        raise ValueError("give --threshold or --mask, not both: a mask replaces the threshold")
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    bone = ct_bone(image, calibration, threshold=threshold, resample=args.resample,
                   mask=args.mask)
    from ..mesh.units import PLAUSIBLE_EXTENT_MM, extent_mm

    extent, (lo, hi) = extent_mm(bone.mesh.points), PLAUSIBLE_EXTENT_MM
    if not lo <= extent <= hi:
        raise ValueError(f"CT {path.name}: the bone spans {extent:.4g} mm along its largest side "
                         f"(voxel size {list(image.voxel_size)} mm, dz dy dx), implausible for a "
                         f"bone ({lo:g}–{hi:g} mm): the header's or --voxel-size's unit is "
                         f"wrong; give --voxel-size in mm")
    return bone


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

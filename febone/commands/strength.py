"""``febone strength``: stiffness and fracture load of a bone under a standard load case.

Node sets come from the mesh's point-data masks of the standard names, from the geometry
when a mask is missing (standard orientation; see ``febone.strength.geometry``), or from
``--head NAME`` / ``--head box:x0,y0,z0,x1,y1,z1`` (mm, the mesh's frame) and the like.

A clinical CT (QCT) instead of a mesh: a NIfTI file, a folder holding one DICOM series or a
TIFF stack, with the phantom calibration ρ = A + B·HU (g/cm³) and a density law; the bone is
the largest connected component above ``--threshold`` (or ``--mask``), one hex8 element per
voxel with E from the law, solved on the voxel engine (``febone.voxel.ct``)::

    febone strength hip.nii.gz --calibration -0.005 0.0008 --case sideways-fall \
        --law morgan-femoral-neck --threshold 0.1 --resample 2

Example (the MITK-GEM femur in its sideways-fall frame; its node sets carry other names)::

    febone strength ../shared/data/mitkgem_proximal_femur_tet10.vtu --case sideways-fall \\
        --E-field E_MPa --head bc_head_ux0 --trochanter bc_trochanter_ux_minus1_uy0 \\
        --distal bc_distal_uz0 --adduction 0 --internal-rotation 0 --method all
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..files import atomic_write_json
from ._precision import add_precision_options
from .output_folder import add_overwrite_option, run_with_outputs

__all__ = ["register", "run"]

log = logging.getLogger(__name__)
_G = 9.81  # m/s²


def register(sub) -> None:
    from ..strength import CASES
    from ._bone import add_ct_options, add_units_option

    p = sub.add_parser("strength", help="stiffness and fracture load under a load case",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("mesh", help="mesh file (tet4/tet10/hex8; mm, or --units), or a CT image "
                                "(.nii/.nii.gz, a DICOM series folder, .tif/.tiff stack) with "
                                "--calibration")
    add_units_option(p)
    add_ct_options(p)
    p.add_argument("--case", required=True, choices=sorted(CASES), help="load case")
    src = p.add_argument_group("modulus (exactly one)")
    src.add_argument("--E-field", dest="E_field", help="cell-data field with E in MPa")
    src.add_argument("--E", type=float, help="one modulus for all elements, MPa")
    src.add_argument("--density-field", dest="density_field",
                     help="cell-data field with apparent density, g/cm³ (needs --law)")
    src.add_argument("--law", help="density→modulus law: morgan-femoral-neck, morgan-pooled, "
                                   "..., or power:A,B")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (default 0.3)")
    p.add_argument("--method", default="pistoia,strain-limit",
                   help="comma list of pistoia, pistoia-smooth, strain-limit, nonlinear, or 'all' "
                        "(default pistoia,strain-limit)")
    p.add_argument("--body-weight-kg", type=float, default=70.0,
                   help="body weight for loads in multiples of body weight (default 70 kg)")
    sets = p.add_argument_group(
        "node sets: a point-data mask NAME or box:x0,y0,z0,x1,y1,z1 (mm); default: the standard "
        "mask, else found from the geometry")
    sets.add_argument("--head", help="femoral head set (default head_medial for sideways fall, head_contact for stance)")
    sets.add_argument("--trochanter", help="greater trochanter set (default trochanter_lateral)")
    sets.add_argument("--distal", help="distal cut set (default distal_cut)")
    sets.add_argument("--superior", help="superior endplate / top face set")
    sets.add_argument("--inferior", help="inferior endplate / bottom face set")
    sets.add_argument("--find-sets", dest="find_sets", default="auto",
                      choices=["auto", "geometry", "masks"],
                      help="auto: masks if present, else geometry; geometry: ignore the standard "
                           "masks; masks: never use geometry (default auto)")
    pose = p.add_argument_group("pose")
    pose.add_argument("--adduction", type=float, default=10.0, help="sideways fall: shaft adduction, ° (10)")
    pose.add_argument("--internal-rotation", type=float, default=15.0,
                      help="sideways fall: internal rotation, ° (15)")
    pose.add_argument("--angle", type=float, default=20.0, help="stance: load angle to the shaft, ° (20)")
    pose.add_argument("--axis", default="z", choices=list("xyz"), help="compression: load axis (z)")
    p.add_argument("--max-displacement", type=float, dest="max_displacement",
                   help="nonlinear: largest applied displacement, mm (default: 10 × the "
                        "displacement at first yield)")
    p.add_argument("--solver", default="auto", choices=["auto", "voxel", "unstructured"],
                   help="engine: voxel (matrix-free geometric multigrid; grid-aligned hex8 "
                        "meshes, as the bundled bones), unstructured (any mesh), or auto "
                        "(default: voxel where the mesh allows, else unstructured)")
    p.add_argument("--preconditioner", default="auto", choices=["auto", "amg", "jacobi"],
                   help="CG preconditioner of the unstructured path (default auto: AMG when "
                        "pyamg is installed; naming one keeps --solver auto unstructured)")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    add_precision_options(p)
    add_overwrite_option(p)
    p.add_argument("--out", type=Path, help="folder for fields (VTU) and the load–displacement curve")
    p.set_defaults(func=run)


def _case(args):
    """(LoadCase, {set name: Box}) from the options: a mask name renames the case's set, a
    ``box:`` spec keeps the standard name and gives its nodes."""
    from ..strength import (Box, sideways_fall, stance, uniaxial_compression,
                            vertebral_compression)

    boxes = {}

    def pick(value, standard):
        if value is None:
            return standard
        if value.startswith("box:"):
            boxes[standard] = Box.parse(value[len("box:"):])
            return standard
        return value

    if args.case == "sideways-fall":
        case = sideways_fall(args.adduction, args.internal_rotation,
                             head=pick(args.head, "head_medial"),
                             trochanter=pick(args.trochanter, "trochanter_lateral"),
                             distal=pick(args.distal, "distal_cut"))
    elif args.case == "stance":
        case = stance(args.angle, head=pick(args.head, "head_contact"),
                      distal=pick(args.distal, "distal_cut"))
    elif args.case == "vertebral-compression":
        case = vertebral_compression(superior=pick(args.superior, "endplate_superior"),
                                     inferior=pick(args.inferior, "endplate_inferior"))
    else:
        case = uniaxial_compression(args.axis, bottom=pick(args.inferior, "face_min"),
                                    top=pick(args.superior, "face_max"))
    return case, boxes


def _methods(spec: str) -> tuple[str, ...]:
    from ..strength import METHODS

    if spec.strip() == "all":
        return METHODS
    methods = tuple(m.strip() for m in spec.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--method {spec!r}: unknown method(s) {bad}; use a comma list of "
                         f"{', '.join(METHODS)} or 'all'")
    return methods


def _write_outputs(out: Path, mesh, result) -> list[str]:
    from ..mesh.io import write_mesh

    out.mkdir(parents=True, exist_ok=True)
    cell = result.fields.as_cell_data()
    cell["effective_strain"] = result.effective_strain
    if result.curve is not None:
        cell["damage"] = result.curve.damage_at_ultimate
    for method, ids in result.failed_elements.items():
        mask = np.zeros(mesh.n_elements, dtype=np.int8)
        mask[ids] = 1
        cell[f"failed_{method.replace('-', '_')}"] = mask
    written = [str(write_mesh(out / "strength.vtu", mesh, point_data={"displacement_mm": result.u},
                              cell_data=cell))]
    from ._pictures import write_pictures

    written += [str(p) for p in write_pictures(
        mesh, {"point_data": {"displacement_mm": result.u}, "cell_data": cell}, out)]
    if result.curve is not None:
        csv = out / "load_displacement.csv"
        np.savetxt(csv, np.c_[result.curve.displacement_mm, result.curve.force_N], delimiter=",",
                   header="displacement_mm,force_N", comments="")
        written.append(str(csv))
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log.warning("matplotlib missing: no load–displacement PNG (pip install febone[viz])")
        else:
            fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
            ax.plot(result.curve.displacement_mm, result.curve.force_N, "o-", ms=3)
            ax.axhline(result.curve.ultimate_load_N, ls="--", c="grey", lw=0.8)
            ax.set_xlabel("displacement (mm)")
            ax.set_ylabel("force (N)")
            ax.set_title(f"{result.case.name}: ultimate {result.curve.ultimate_load_N:.0f} N")
            fig.tight_layout()
            fig.savefig(out / "load_displacement.png")
            plt.close(fig)
            written.append(str(out / "load_displacement.png"))
    return written


def run(args) -> int:
    return run_with_outputs(args, _run, command="strength",
                            expected=["strength.vtu", "load_displacement.*", "*.png"])


def _run(args) -> int:
    from ..strength import strength
    from ._bone import ct_bone_from_args, read_bone
    from .solve import moduli_from_args

    start = time.perf_counter()
    methods = _methods(args.method)
    if not args.body_weight_kg > 0:
        raise ValueError(f"--body-weight-kg must be positive; got {args.body_weight_kg}")
    ct = ct_bone_from_args(args)
    if ct is None:
        mesh = read_bone(args.mesh, args.units)
        E, source = moduli_from_args(mesh, args)
        density = None
        if args.density_field is not None:
            density = np.asarray(mesh.cell_data[args.density_field], float).reshape(-1)
    else:
        from ..material.laws import density_law

        mesh = ct.mesh
        density = np.asarray(mesh.cell_data["density_g_cm3"], float)
        E = np.asarray(density_law(args.law).modulus(density), dtype=np.float64)
        source = f"{args.law} law on the CT's apparent density"
    case, boxes = _case(args)

    def progress(d, F):
        print(f"\r  nonlinear: {d:6.3f} mm  {F:9.1f} N", end="", file=sys.stderr, flush=True)

    from ..strength import ProgressiveFailure

    result = strength(mesh, case, E, nu=args.nu, methods=methods, density=density,
                      preconditioner=args.preconditioner, solver=args.solver,
                      nonlinear=ProgressiveFailure(max_displacement_mm=args.max_displacement),
                      progress=progress if "nonlinear" in methods else None,
                      node_sets=boxes, find_sets=args.find_sets,
                      precision=getattr(args, "precision", None))
    if "nonlinear" in methods:
        print(file=sys.stderr)
    out = result.summary()
    bw = args.body_weight_kg * _G
    out.update(mesh=str(args.mesh), modulus_source=source, body_weight_N=bw,
               fracture_load_BW={k: v / bw for k, v in result.fracture_load_N.items()},
               wall_seconds=time.perf_counter() - start,
               precision=getattr(args, "precision", None) or "float64")
    if ct is not None:
        out["ct"] = ct.summary()
    if args.out:
        out["files"] = _write_outputs(args.out, mesh, result)
    print(f"{case.name}: {result.case.description}")
    if ct is not None:
        c = out["ct"]
        rho = c["apparent_density_g_cm3"]
        bone = (f"ρ > {c['threshold_g_cm3']:g} g/cm³" if c["threshold_g_cm3"] is not None
                else "the given mask")
        print(f"  CT               {c['voxels']} voxels of {' × '.join(f'{v:g}' for v in c['voxel_size_mm'])} mm "
              f"({bone}, largest of {c['components']} components), apparent density "
              f"{rho['min']:.3g}–{rho['max']:.3g} g/cm³, mean {rho['mean']:.3g}")
    if result.side is not None:
        print(f"  side             {result.side} femur (from the head's side of the shaft)")
    print("  node sets        " + ", ".join(f"{k} ({v['nodes']} nodes, {v['source']})"
                                            for k, v in result.node_sets.items()))
    print(f"  stiffness        {result.stiffness_N_per_mm:12.1f} N/mm   ({mesh.n_dofs} dofs, "
          f"{result.solver} solver, {result.iterations} CG iterations, "
          f"{result.solve_seconds:.2f} s, {result.device})")
    for k, v in result.fracture_load_N.items():
        print(f"  fracture load    {v:12.1f} N      ({v / bw:5.2f} × body weight)   [{k}]")
    if args.json:
        atomic_write_json(args.json, out)
    return 0

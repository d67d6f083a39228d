"""``febone solve``: one linear-elastic solve of a mesh file with node-set boundary conditions.

Node sets are point-data masks of the mesh file (1 = member). Example (sideways fall of the
proximal femur; stiffness = −reaction at the trochanter / 1 mm)::

    febone solve ../shared/data/mitkgem_proximal_femur_tet10.vtu --E-field E_MPa --nu 0.3 \\
        --fix bc_distal_uz0:z --fix bc_head_ux0:x \\
        --displace bc_trochanter_ux_minus1_uy0:x=-1,y=0 --json femur.json --out results/
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from ..files import atomic_write_json
from ._precision import add_precision_options
from .output_folder import add_overwrite_option, run_with_outputs

__all__ = ["register", "run", "SpecError", "parse_fix", "parse_vector", "solve_file", "moduli_from_args"]

log = logging.getLogger(__name__)

_AXES = "xyz"


class SpecError(ValueError):
    """A malformed ``SET:...`` command-line specification."""


def _split_set(spec: str, option: str, example: str) -> tuple[str, str]:
    name, sep, rest = spec.rpartition(":")
    if not sep or not name.strip():
        raise SpecError(f"{option} {spec!r}: expected SET:{example.split(':', 1)[1]} (a node-set "
                        f"name, a colon, then the components), e.g. {option} {example}")
    if not rest.strip():
        raise SpecError(f"{option} {spec!r}: nothing after the colon; give the components, "
                        f"e.g. {option} {example}")
    return name.strip(), rest.strip()


def parse_fix(spec: str) -> tuple[str, str]:
    """``"SET:xz"`` -> ``("SET", "xz")``: the components of SET held at zero displacement.

    Raises:
        SpecError: missing colon or set name, or a letter other than x, y, z.
    """
    name, comps = _split_set(spec, "--fix", "bc_distal:xyz")
    comps = comps.lower()
    bad = sorted({c for c in comps if c not in _AXES})
    if bad:
        raise SpecError(f"--fix {spec!r}: unknown component letter(s) {bad}; use letters from "
                        f"'xyz', e.g. --fix {name}:xyz or --fix {name}:z")
    return name, "".join(c for c in _AXES if c in comps)


def parse_vector(spec: str, option: str, unit: str) -> tuple[str, dict[str, float]]:
    """``"SET:x=-1,y=0"`` -> ``("SET", {"x": -1.0, "y": 0.0})``.

    Args:
        spec: the command-line value.
        option: ``"--displace"`` (mm) or ``"--force"`` (total force on the set, N), for messages.
        unit: the unit of the values, for messages.

    Raises:
        SpecError: missing colon or set name, a component other than x/y/z, a repeated
            component, or a value that is not a finite number.
    """
    name, body = _split_set(spec, option, "SET:x=-1,y=0")
    values: dict[str, float] = {}
    for item in body.split(","):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise SpecError(f"{option} {spec!r}: {item.strip()!r} is not of the form "
                            f"COMPONENT=VALUE; write e.g. {option} {name}:x=-1,y=0 ({unit})")
        if key not in _AXES or len(key) != 1:
            raise SpecError(f"{option} {spec!r}: unknown component letter {key!r}; use x, y or z, "
                            f"e.g. {option} {name}:x=-1,y=0 ({unit})")
        if key in values:
            raise SpecError(f"{option} {spec!r}: component {key!r} is given twice")
        try:
            v = float(val)
        except ValueError:
            raise SpecError(f"{option} {spec!r}: value {val.strip()!r} of {key} is not a number "
                            f"({unit})") from None
        if not math.isfinite(v):
            raise SpecError(f"{option} {spec!r}: value of {key} must be finite ({unit}); got {v}")
        values[key] = v
    return name, values


def _resolve_set(mesh, name: str, option: str, spec: str) -> np.ndarray:
    from ..mesh.nodesets import NodeSetError, node_set

    try:
        return node_set(mesh, name)
    except NodeSetError as err:
        raise NodeSetError(f"{option} {spec!r}: {err}") from None


def _prescribe(method, nodes, option: str, spec: str, *args, **kwargs):
    """``bcs.fix``/``bcs.displace`` with the option that asked for it named in a conflict."""
    try:
        return method(nodes, *args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{option} {spec!r}: {err} (an earlier --fix or --displace "
                         f"prescribes the same component)") from None


def _cell_field(mesh, name: str, option: str, what: str) -> np.ndarray:
    if name not in mesh.cell_data:
        raise ValueError(f"{option} {name!r}: the mesh has no cell-data field {name!r}; available "
                         f"cell-data fields: {sorted(mesh.cell_data) or 'none'}")
    a = np.asarray(mesh.cell_data[name])
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape != (mesh.n_elements,) or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{option} {name!r}: {what} must be one number per element "
                         f"({mesh.n_elements},); the field has shape {a.shape}, dtype {a.dtype}")
    return a.astype(np.float64)


def moduli_from_args(mesh, args) -> tuple[np.ndarray, str]:
    """(n_elements,) E in MPa and a description of where it came from."""
    given = [o for o, v in (("--E-field", args.E_field), ("--E", args.E),
                            ("--density-field", args.density_field)) if v is not None]
    fields = sorted(mesh.cell_data) or "none"
    if len(given) != 1:
        what = "none was given" if not given else f"got {' and '.join(given)}"
        raise ValueError(
            f"give exactly one modulus source ({what}): --E-field NAME (cell data in MPa), "
            f"--E MPA (one modulus for all elements) or --density-field NAME --law LAW "
            f"(cell data in g/cm³); available cell-data fields: {fields}")
    if args.law is not None and args.density_field is None:
        raise ValueError("--law needs --density-field NAME (apparent density per element, g/cm³); "
                         f"available cell-data fields: {fields}")
    if args.E_field is not None:
        E = _cell_field(mesh, args.E_field, "--E-field", "Young's modulus (MPa)")
        return E, f"cell data {args.E_field!r}"
    if args.E is not None:
        return np.full(mesh.n_elements, float(args.E)), f"{args.E:g} MPa everywhere"
    from ..material.laws import LAW_NAMES, density_law

    if args.law is None:
        raise ValueError(f"--density-field needs --law LAW to turn density into modulus; choose "
                         f"one of {LAW_NAMES} or 'power:A,B' (E = A·ρ^B, MPa, g/cm³)")
    law = density_law(args.law)
    rho = _cell_field(mesh, args.density_field, "--density-field", "density (g/cm³)")
    return np.asarray(law.modulus(rho), dtype=np.float64), \
        f"{args.law} law on cell data {args.density_field!r}"


def solve_file(args) -> dict:
    """Run the solve described by parsed ``args``; returns the JSON-ready result dict.

    Also returns (under private keys ``_mesh``, ``_model``, ``_material``, ``_u``, ``_r``)
    the objects needed to write the VTU.
    """
    import febone as fb
    from ..mesh.nodesets import named_node_sets
    from ._bone import read_bone

    start = time.perf_counter()
    # parse every spec before touching the mesh file, so typos fail fast
    fixes = [(parse_fix(s), s) for s in args.fix]
    displaces = [(parse_vector(s, "--displace", "mm"), s) for s in args.displace]
    forces = [(parse_vector(s, "--force", "N, total on the set"), s) for s in args.force]
    from ..precision import precision_mode

    mode = precision_mode(getattr(args, "precision", None))
    rtol = mode.default_rtol if args.rtol is None else args.rtol
    if not (0.0 < rtol < 1.0):
        raise ValueError(f"--rtol must lie in (0, 1); got {rtol}")

    mesh = read_bone(args.mesh, args.units)
    E, source = moduli_from_args(mesh, args)
    material = fb.LinearElastic.create(E, nu=args.nu, n_elements=mesh.n_elements)

    bcs = fb.BoundaryConditions.empty(mesh.n_nodes)
    for (name, comps), spec in fixes:
        bcs = _prescribe(bcs.fix, _resolve_set(mesh, name, "--fix", spec), "--fix", spec,
                         comps, name=name)
    for (name, vals), spec in displaces:
        bcs = _prescribe(bcs.displace, _resolve_set(mesh, name, "--displace", spec),
                         "--displace", spec, name=name, **vals)
    for (name, vals), spec in forces:
        bcs = bcs.add_force(_resolve_set(mesh, name, "--force", spec), **vals)

    model = fb.FEModel.from_mesh(mesh)
    solver = fb.PCG(rtol=rtol, max_iter=args.max_iter)
    from ..solve.amg import make_preconditioner

    pre = make_preconditioner(args.preconditioner, model, material, bcs)
    sol = fb.solve(model, material, bcs, solver=solver, preconditioner=pre, precision=mode.name)
    r = np.asarray(fb.reaction_forces(model, material, bcs, sol.u))
    u = np.asarray(sol.u)

    reactions, set_sizes = {}, {}
    for name in named_node_sets(mesh):
        mask = np.asarray(mesh.point_data[name]).reshape(mesh.n_nodes, -1)[:, 0] != 0
        reactions[name] = [float(v) for v in r[mask].sum(axis=0)]
        set_sizes[name] = int(mask.sum())
    st = sol.stats
    return {
        "mesh": str(args.mesh),
        "cell_type": mesh.cell_type,
        "n_nodes": mesh.n_nodes,
        "n_elements": mesh.n_elements,
        "n_dofs": mesh.n_dofs,
        "modulus_source": source,
        "E_range_MPa": [float(E.min()), float(E.max())],
        "nu": float(args.nu),
        "rtol": float(rtol),
        "precision": mode.name,
        "preconditioner": "jacobi" if pre is None else "amg",
        "iterations": int(st.iterations),
        "residual": float(st.residual),
        "converged": bool(st.converged),
        "solve_seconds": float(st.seconds),
        "device": st.device,
        "dtype": st.dtype,
        "reactions_N": reactions,
        "node_set_sizes": set_sizes,
        "max_displacement_mm": float(np.linalg.norm(u, axis=1).max()),
        "wall_seconds": time.perf_counter() - start,
        "_mesh": mesh, "_model": model, "_material": material, "_u": u, "_r": r,
    }


def _summary(res: dict) -> str:
    lines = [
        f"mesh      {res['mesh']}: {res['cell_type']}, {res['n_nodes']} nodes, "
        f"{res['n_elements']} elements, {res['n_dofs']} dofs",
        f"material  E from {res['modulus_source']} ({res['E_range_MPa'][0]:.6g} to "
        f"{res['E_range_MPa'][1]:.6g} MPa), nu = {res['nu']:g}",
        f"solver    PCG ({res['preconditioner']}), rtol {res['rtol']:g}: "
        f"{'converged' if res['converged'] else 'NOT converged'} in {res['iterations']} "
        f"iterations, relative residual {res['residual']:.2e}",
        f"          {res['solve_seconds']:.2f} s solve (incl. compilation), "
        f"{res['wall_seconds']:.2f} s total, on {res['device']}, {res['dtype']}",
        f"max |u|   {res['max_displacement_mm']:.6g} mm",
        "",
        "Reactions (sum over each node set of K u - f_ext):",
    ]
    width = max([len("node set")] + [len(k) for k in res["reactions_N"]])
    lines.append(f"  {'node set':<{width}}  {'nodes':>6}  {'Fx [N]':>13}  {'Fy [N]':>13}  "
                 f"{'Fz [N]':>13}")
    for name, (fx, fy, fz) in res["reactions_N"].items():
        lines.append(f"  {name:<{width}}  {res['node_set_sizes'][name]:>6}  {fx:>13.6g}  "
                     f"{fy:>13.6g}  {fz:>13.6g}")
    if not res["reactions_N"]:
        lines.append("  (the mesh has no point-data node-set masks)")
    return "\n".join(lines)


def _pictures(res: dict, out: Path, bone: str) -> list[Path]:
    """PNGs of the solution (febone.viz.snapshot)."""
    from ..io_fields import solution_fields
    from ._pictures import write_pictures

    point, cell = solution_fields(res["_model"], res["_material"], res["_u"])
    return write_pictures(res["_mesh"], {"point_data": point, "cell_data": cell}, out, bone=bone)


def run(args) -> int:
    return run_with_outputs(args, _run, command="solve", expected=["solution.vtu", "*.png"])


def _run(args) -> int:
    res = solve_file(args)
    print(_summary(res))
    public = {k: v for k, v in res.items() if not k.startswith("_")}
    if args.out:
        from ..io_fields import write_solution

        path = write_solution(Path(args.out) / "solution.vtu", res["_mesh"], res["_model"],
                              res["_material"], res["_u"], reactions=res["_r"])
        public["solution_vtu"] = str(path)
        print(f"\nwrote {path}")
        pictures = _pictures(res, Path(args.out), Path(args.mesh).stem)
        if pictures:
            public["pictures"] = [str(p) for p in pictures]
            print(f"wrote {len(pictures)} pictures: {', '.join(p.name for p in pictures)}")
    if args.json:
        path = atomic_write_json(args.json, public)
        print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    from ._bone import add_units_option

    p = subparsers.add_parser(
        "solve", help="linear-elastic solve of a mesh file with node-set boundary conditions",
        description="Solve a linear-elastic mesh (tet4/tet10/hex8; mm, N, MPa). Node sets are "
                    "point-data masks of the mesh file (1 = member). Reactions are reported "
                    "for every node-set mask in the file.")
    p.add_argument("mesh", help="mesh file (.vtu, .vtk, .xdmf, .msh, .inp, ...), coordinates in "
                                "mm (or --units)")
    add_units_option(p)
    src = p.add_argument_group("modulus (give exactly one source)")
    src.add_argument("--E-field", dest="E_field", metavar="NAME",
                     help="cell-data field holding Young's modulus per element, MPa")
    src.add_argument("--E", dest="E", type=float, metavar="MPA",
                     help="one Young's modulus for every element, MPa")
    src.add_argument("--density-field", dest="density_field", metavar="NAME",
                     help="cell-data field of apparent density, g/cm³ (needs --law)")
    src.add_argument("--law", metavar="LAW",
                     help="density→modulus law, e.g. morgan-femoral-neck, morgan-pooled, "
                          "power:A,B (E = A·ρ^B)")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (default 0.3)")
    p.add_argument("--fix", action="append", default=[], metavar="SET:xyz",
                   help="hold components of a node set at zero, e.g. bc_distal_uz0:z (repeatable)")
    p.add_argument("--displace", action="append", default=[], metavar="SET:x=V,y=V,z=V",
                   help="prescribe displacement components in mm (repeatable)")
    p.add_argument("--force", action="append", default=[], metavar="SET:x=V,y=V,z=V",
                   help="total force on a node set in N, shared equally by its nodes (repeatable)")
    p.add_argument("--rtol", type=float, default=None,
                   help="CG relative residual tolerance (default 1e-8; 1e-5 with --precision "
                        "float32)")
    p.add_argument("--preconditioner", default="auto", choices=["auto", "amg", "jacobi"],
                   help="CG preconditioner: amg (smoothed aggregation, needs pyamg), jacobi, or "
                        "auto = amg when pyamg is installed (default)")
    p.add_argument("--max-iter", dest="max_iter", type=int, default=None,
                   help="CG iteration cap (default 20000)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    add_precision_options(p)
    add_overwrite_option(p)
    p.add_argument("--out", metavar="DIR", help="write DIR/solution.vtu (displacement, strain, "
                                                "stress, von Mises, principal, SED)")
    p.set_defaults(func=run)

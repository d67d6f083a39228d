"""``febone run``: the main job on a bundled or user bone.

For now it measures the bone the way a clinic and a lab would: DXA-like femoral-neck and
total-hip aBMD with T-scores, then stiffness and fracture load under single-leg stance and
a sideways fall. (Hormone-driven remodelling scenarios will run on top of this.)

    febone run                                  # bundled young-adult female femur (coarse)
    febone run --bone femur_medium_tet4 --out results/
    febone run --mesh my_femur.vtu --density-field rho --law morgan-femoral-neck
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["register", "run", "DEFAULT_BONE"]

DEFAULT_BONE = "femur_coarse_hex8"
_G = 9.81


def register(sub) -> None:
    p = sub.add_parser("run", help="the main job: densitometry, stiffness and fracture load of a femur",
                       description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--bone", default=DEFAULT_BONE,
                     help=f"bundled mesh name (default {DEFAULT_BONE}; see meshes/README.md)")
    src.add_argument("--mesh", type=Path, help="your own femur mesh in febone's standard "
                                               "orientation with the standard node sets")
    p.add_argument("--density-field", default="density_g_cm3", dest="density_field",
                   help="cell data with apparent density, g/cm³ (default density_g_cm3)")
    p.add_argument("--law", default="morgan-femoral-neck",
                   help="density→modulus law (default morgan-femoral-neck)")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (0.3)")
    p.add_argument("--cases", default="stance,sideways-fall",
                   help="comma list of load cases (default stance,sideways-fall)")
    p.add_argument("--method", default="pistoia,strain-limit",
                   help="fracture-load methods (see febone strength; default pistoia,strain-limit)")
    p.add_argument("--body-weight-kg", type=float, default=70.0, help="body weight, kg (70)")
    p.add_argument("--preconditioner", default="auto", choices=["auto", "amg", "jacobi"],
                   help="CG preconditioner (default auto: AMG when pyamg is installed)")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    p.add_argument("--out", type=Path, help="folder for the VTU fields of each load case")
    p.set_defaults(func=run)


def run(args) -> int:
    import febone as fb
    from ..bones import areal_bmd, bundled_path, dxa_rotation_deg, t_score
    from ..material.laws import density_law
    from ..strength import CASES, strength
    from .strength import _methods, _write_outputs

    start = time.perf_counter()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in ("stance", "sideways-fall")]
    if bad or not cases:
        raise ValueError(f"--cases {args.cases!r}: unknown case(s) {bad}; febone run loads a "
                         f"femur: use stance and/or sideways-fall")
    methods = _methods(args.method)
    if not args.body_weight_kg > 0:
        raise ValueError(f"--body-weight-kg must be positive; got {args.body_weight_kg}")
    path = args.mesh if args.mesh is not None else bundled_path(args.bone)
    mesh = fb.read_mesh(path)
    if args.density_field not in mesh.cell_data:
        raise ValueError(f"the mesh has no cell data {args.density_field!r} (apparent density, "
                         f"g/cm³); available: {sorted(mesh.cell_data)}")
    rho = np.asarray(mesh.cell_data[args.density_field], float).reshape(-1)
    E = np.asarray(density_law(args.law).modulus(rho))
    result = {"bone": str(path), "n_elements": mesh.n_elements, "n_dofs": mesh.n_dofs,
              "law": args.law, "regions": {}, "cases": {}}
    print(f"bone: {path} ({mesh.cell_type}, {mesh.n_elements} elements, {mesh.n_dofs} dofs)")
    for region, site in (("region_femoral_neck", "femoral_neck"), ("region_total_hip", "total_hip")):
        if region in mesh.cell_data:
            m = areal_bmd(mesh, region, rotation_deg=dxa_rotation_deg(), density=args.density_field)
            t = t_score(m.abmd_g_cm2, site)
            result["regions"][site] = {"abmd_g_cm2": m.abmd_g_cm2, "t_score": t,
                                       "vbmd_mg_cm3": m.vbmd_mg_cm3}
            print(f"  {site:13s} aBMD {m.abmd_g_cm2:.3f} g/cm²  T-score {t:+.2f}  "
                  f"vBMD {m.vbmd_mg_cm3:.0f} mg/cm³")
    bw = args.body_weight_kg * _G
    for name in cases:
        case = CASES[name]()
        print(f"  {name}: solving ...", file=sys.stderr, flush=True)
        res = strength(mesh, case, E, nu=args.nu, methods=methods, density=rho,
                       preconditioner=args.preconditioner)
        entry = res.summary()
        entry["fracture_load_BW"] = {k: v / bw for k, v in res.fracture_load_N.items()}
        if args.out:
            entry["files"] = _write_outputs(args.out / name, mesh, res)
        result["cases"][name] = entry
        loads = ", ".join(f"{k} {v:.0f} N ({v / bw:.1f} BW)" for k, v in res.fracture_load_N.items())
        print(f"  {name:13s} stiffness {res.stiffness_N_per_mm:8.0f} N/mm; fracture load {loads}")
    result["wall_seconds"] = time.perf_counter() - start
    result["device"] = fb.device_description()
    print(f"done in {result['wall_seconds']:.1f} s on {result['device']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0

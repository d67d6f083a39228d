"""Sideways-fall stiffness of a CT-derived proximal femur (MITK-GEM tutorial mesh).

The mesh file carries the CT-mapped Young's modulus per element (``E_MPa``) and three node
sets: distal shaft u_z = 0, femoral head u_x = 0, greater trochanter u_x = −1 mm, u_y = 0.
Stiffness = −(reaction on the trochanter along x) / 1 mm.

The mesh is research data read at run time from ``../shared/data`` beside the repository
(or the folder in ``$FEBONE_DATA``); it is not shipped with febone.

Run:  python examples/solve_femur.py [--small] [--out DIR]
``--small`` (or FEBONE_EXAMPLE_SMALL=1) solves the linear-tetrahedron version of the same bone
(corner nodes only, ~7× fewer dofs) for a quick look; linear tetrahedra are stiffer than the
quadratic ones, so its stiffness is higher. Units: mm, N, MPa.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # examples choose the precision; the library never does

import numpy as np  # noqa: E402

import febone as fb  # noqa: E402
from febone.mesh import remove_unused_nodes  # noqa: E402

FILE = "mitkgem_proximal_femur_tet10.vtu"
DISTAL, HEAD, TROCH = "bc_distal_uz0", "bc_head_ux0", "bc_trochanter_ux_minus1_uy0"


def data_dir() -> Path:
    """``$FEBONE_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("FEBONE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def to_tet4(mesh: fb.Mesh) -> fb.Mesh:
    """The linear-tetrahedron mesh on the corner nodes of a tet10 mesh (point data kept)."""
    corners = fb.Mesh(mesh.points, mesh.cells[:, :4], "tetra", dict(mesh.point_data),
                      dict(mesh.cell_data))
    return remove_unused_nodes(corners)


def main(small: bool = False, out: Path | None = None, path: Path | None = None) -> dict:
    """Solve the sideways fall; returns stiffness (N/mm), set reactions (N) and solver stats."""
    path = Path(path) if path else data_dir() / FILE
    mesh = fb.read_mesh(path)
    if small:
        mesh = to_tet4(mesh)
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(mesh.cell_data["E_MPa"], nu=0.3)
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes)
           .fix(fb.node_set(mesh, DISTAL), "z")
           .fix(fb.node_set(mesh, HEAD), "x")
           .displace(fb.node_set(mesh, TROCH), x=-1.0, y=0.0))
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-8))
    r = np.asarray(fb.reaction_forces(model, mat, bcs, sol.u))
    reactions = {name: r[fb.node_set(mesh, name)].sum(axis=0) for name in (DISTAL, HEAD, TROCH)}
    if out is not None:
        from febone.io_fields import write_solution

        write_solution(Path(out) / f"femur_{mesh.cell_type}.vtu", mesh, model, mat, sol.u,
                       reactions=r)
    return {"cell_type": mesh.cell_type, "n_dofs": mesh.n_dofs,
            "stiffness_N_per_mm": float(-reactions[TROCH][0] / 1.0),
            "reactions_N": {k: v.tolist() for k, v in reactions.items()},
            "total_reaction_N": r.sum(axis=0).tolist(),
            "iterations": int(sol.stats.iterations), "residual": float(sol.stats.residual),
            "seconds": sol.stats.seconds, "device": sol.stats.device}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tet4 on the corner nodes (quick)")
    parser.add_argument("--out", type=Path, help="write femur_<cell type>.vtu here")
    parser.add_argument("--mesh", type=Path, help=f"mesh file (default <data>/{FILE})")
    args = parser.parse_args()
    small = args.small or os.environ.get("FEBONE_EXAMPLE_SMALL") == "1"
    try:
        res = main(small=small, out=args.out, path=args.mesh)
    except FileNotFoundError as err:
        sys.exit(f"{err}; set FEBONE_DATA to the folder holding {FILE}")
    print(f"{res['cell_type']}, {res['n_dofs']} dofs: {res['iterations']} CG iterations, "
          f"residual {res['residual']:.1e}, {res['seconds']:.1f} s on {res['device']}")
    print(f"stiffness = {res['stiffness_N_per_mm']:.1f} N/mm")
    for name, (fx, fy, fz) in res["reactions_N"].items():
        print(f"  {name:<30} {fx:12.3f} {fy:12.3f} {fz:12.3f}  N")

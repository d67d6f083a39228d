"""Uniaxial compression of a homogeneous cube: the apparent modulus (F/A)/(δ/L).

Two support conditions, both with the bottom face held in z and the top face pushed down
by δ:

* frictionless platens (only u_z prescribed on both faces, plus the three point supports
  that stop rigid motion): a uniform uniaxial stress state, so the apparent modulus is
  exactly E, whatever the mesh;
* bonded platens (both faces fully fixed in x and y as well): the platens stop the Poisson
  expansion at the ends, so the cube looks stiffer, between E and the constrained
  (oedometric) modulus M = E(1 − ν)/((1 + ν)(1 − 2ν)).

Run:  python examples/cube_compression.py [--small] [--out DIR]
(FEBONE_EXAMPLE_SMALL=1 does the same as --small.) Units: mm, N, MPa.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # examples choose the precision; the library never does

import numpy as np  # noqa: E402

import febone as fb  # noqa: E402

E, NU = 15_000.0, 0.3  # MPa, cortical-bone-like
L = 5.0  # mm, cube edge
DELTA = 0.01 * L  # mm, 1 % nominal compression


def apparent_modulus(mesh: fb.Mesh, *, bonded: bool, out: Path | None = None) -> dict:
    """Compress ``mesh`` (a cube of edge L) by DELTA and return its apparent modulus, MPa."""
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(E, NU, n_elements=mesh.n_elements)
    bottom = fb.nodes_on_plane(mesh, "z", "min")
    top = fb.nodes_on_plane(mesh, "z", "max")
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes)
    if bonded:
        bcs = bcs.fix(bottom, "xyz").displace(top, x=0.0, y=0.0, z=-DELTA)
    else:
        origin = fb.nodes_where(mesh, lambda p: np.all(np.isclose(p, 0.0), axis=1))
        x_axis = fb.nodes_where(mesh, lambda p: np.all(np.isclose(p, [L, 0.0, 0.0]), axis=1))
        bcs = (bcs.fix(bottom, "z").fix(origin, "xy").fix(x_axis, "y")
               .displace(top, z=-DELTA))
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-10))
    reaction = np.asarray(fb.reaction_forces(model, mat, bcs, sol.u))
    force = -reaction[top, 2].sum()  # N, compressive force on the top platen
    modulus = (force / L**2) / (DELTA / L)
    if out is not None:
        from febone.io_fields import write_solution

        write_solution(Path(out) / f"cube_{'bonded' if bonded else 'frictionless'}.vtu",
                       mesh, model, mat, sol.u, reactions=reaction)
    return {"force_N": float(force), "apparent_modulus_MPa": float(modulus),
            "iterations": int(sol.stats.iterations), "n_dofs": mesh.n_dofs}


def main(small: bool = False, out: Path | None = None) -> dict:
    """Both support conditions on a tet10 cube (2³ cells if ``small``, else 8³)."""
    n = 2 if small else 8
    mesh = fb.box_mesh((n, n, n), size=(L, L, L), cell_type="tet10")
    result = {"E_MPa": E, "nu": NU,
              "constrained_modulus_MPa": E * (1 - NU) / ((1 + NU) * (1 - 2 * NU)),
              "frictionless": apparent_modulus(mesh, bonded=False, out=out),
              "bonded": apparent_modulus(mesh, bonded=True, out=out)}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a coarse mesh (seconds)")
    parser.add_argument("--out", type=Path, help="write cube_*.vtu here")
    args = parser.parse_args()
    res = main(small=args.small or os.environ.get("FEBONE_EXAMPLE_SMALL") == "1", out=args.out)
    print(f"E = {res['E_MPa']:g} MPa, nu = {res['nu']}, constrained modulus M = "
          f"{res['constrained_modulus_MPa']:.1f} MPa")
    for case in ("frictionless", "bonded"):
        r = res[case]
        print(f"{case:>12}: F = {r['force_N']:.3f} N, apparent modulus = "
              f"{r['apparent_modulus_MPa']:.2f} MPa ({r['n_dofs']} dofs, {r['iterations']} CG "
              f"iterations)")

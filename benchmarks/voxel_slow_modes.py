"""Where the voxel multigrid-CG's slow tail lives, and what shortens it (analysis, CPU).

On the LHDL trabecular sample (the specimens of ``voxel_vs_torchfem.py``: 1 % compression,
bottom clamped, E = 18 GPa, ν = 0.3), this script

1. solves to rtol 1e-11 and measures, after k = 20, 40, 60 CG iterations, which share of
   the error energy ‖u_k − u‖²_K lies in the 0.1 / 1 / 5 / 20 % of voxels that carry most
   of it;
2. erodes the bone mask by one voxel (6-neighbourhood) and labels what is left: every
   component other than the largest is a *weakly attached piece*, joined to the rest only
   through necks one or two voxels thick; it reports which share of the top-error voxels
   lies in such pieces, against their share of all voxels;
3. counts CG iterations (rtol 1e-8) when each multigrid cycle is followed by exact solves
   on the pieces' interior nodes, z ← z + Σ_p R_pᵀ A_p⁻¹ R_p (r − A z), for pieces up to
   ``--cap`` dofs. The local solves run in SciPy through a host callback, so only the
   iteration counts mean anything, not the times.

Run from the repository root: ``python benchmarks/voxel_slow_modes.py --resolution 39``
(about 4 minutes on 2 cores). ``--coarse-space trilinear`` analyses the structured trilinear
hierarchy (the default before the connectivity-following coarse levels of
:mod:`febone.voxel.pieces`), ``pieces`` (default) the current one. Results: ``benchmarks/RESULTS_voxel.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def weakly_attached_pieces(mask: np.ndarray) -> np.ndarray:
    """(nz, ny, nx) int: piece id ≥ 0 of each bone voxel in a weakly attached piece, −1 in
    the main body, −2 in void. Pieces are the eroded components other than the largest;
    each bone voxel joins the eroded component nearest to it."""
    from scipy import ndimage

    six = ndimage.generate_binary_structure(3, 1)
    core = ndimage.binary_erosion(mask, structure=six)
    labels, n = ndimage.label(core, structure=six)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    piece_of_label = -np.ones(n + 1, int)
    others = np.setdiff1d(np.arange(1, n + 1), [sizes.argmax()])
    piece_of_label[others] = np.arange(len(others))
    _, nearest = ndimage.distance_transform_edt(~core, return_indices=True)
    return np.where(mask, piece_of_label[labels[tuple(nearest)]], -2)


def node_pieces(grid, pieces: np.ndarray) -> np.ndarray:
    """(n_nodes,) piece id of each active node whose bone voxels all lie in one piece
    (its interior), else −1."""
    nz, ny, nx = pieces.shape
    pad = np.full((nz + 2, ny + 2, nx + 2), -2)
    pad[1:-1, 1:-1, 1:-1] = pieces
    around = np.stack([pad[dz:dz + nz + 1, dy:dy + ny + 1, dx:dx + nx + 1]
                       for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])
    lo = np.where(around == -2, np.iinfo(int).max, around).min(0)
    hi = np.where(around == -2, np.iinfo(int).min, around).max(0)
    return np.where((lo == hi) & (lo >= 0), lo, -1).reshape(-1)[grid.node_flat()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--resolution", type=int, default=39, choices=[156, 78, 39])
    p.add_argument("--cap", type=int, nargs="+", default=[10**9, 1000],
                   help="largest piece (dofs) given an exact local solve; one run per value")
    p.add_argument("--coarse-space", choices=["pieces", "trilinear"], default="pieces",
                   help="multigrid coarse levels: per connected piece of bone (the default of "
                        "febone compress) or structured trilinear")
    args = p.parse_args()

    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import scipy.linalg as sla
    import scipy.sparse as sps

    import febone as fb
    import voxel_vs_torchfem as bench
    from febone.solve.pcg import pcg
    from febone.voxel import Multigrid, VoxelGrid, VoxelPCG
    from febone.voxel.pieces import voxel_model
    from febone.voxel.grid import GRID_TO_VTK
    from febone.voxel.operator import apply_stiffness, element_energy, element_stiffness
    from febone.voxel.solve import _preconditioner

    seg = bench.specimen(args.resolution)
    grid = VoxelGrid.create(seg.mask, seg.voxel_size)
    # the default multigrid preconditioner of febone compress, with the chosen coarse space
    strategy = VoxelPCG(multigrid=Multigrid(coarse_space=args.coarse_space))
    model = voxel_model(grid, max_coarse_nodes=strategy.multigrid.max_coarse_nodes,
                        coarse_space=args.coarse_space)
    top, bottom = grid.plane_nodes("z", "max"), grid.plane_nodes("z", "min")
    delta = bench.STRAIN * grid.shape[0] * grid.voxel_size[0]
    bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(bottom, "xyz").displace(top, z=-delta)
    E = jnp.full(grid.n_voxels, bench.E_TISSUE)
    Ke = element_stiffness(model.voxel_size, bench.NU)
    free = ~bcs.fixed
    u_d = jnp.where(bcs.fixed, bcs.values, 0.0)

    def stiffness(v):
        return apply_stiffness(model.fine, Ke, E, v)

    def operator(x):  # free-dof stiffness, identity on fixed dofs
        return jnp.where(free, stiffness(jnp.where(free, x, 0.0)), x)

    rhs = jnp.where(free, -stiffness(u_d), 0.0)

    def solver(local=None):
        """A compiled CG (tolerance and iteration cap are arguments, so one compilation
        serves every call) preconditioned by the solver's own multigrid cycle, followed by
        the host-side local solves when given."""
        def run(rtol, max_iter):
            cycle = _preconditioner(model, E, bench.NU, bcs.fixed, strategy, E.dtype, Ke,
                                    E.dtype)

            def precondition(r):
                z = cycle(r)
                if local is None:
                    return z
                d = jnp.where(free, r - operator(z), 0.0)
                return z + jax.pure_callback(local, jax.ShapeDtypeStruct(d.shape, d.dtype), d)
            x, info = pcg(operator, rhs, precondition, jnp.zeros_like(rhs), rtol=rtol, atol=0.0,
                          max_iter=max_iter, flexible=True)
            return x + u_d, info
        compiled = jax.jit(run)
        return lambda rtol, max_iter: compiled(jnp.asarray(rtol), jnp.asarray(max_iter))

    solve = solver()

    print(f"{args.resolution} µm: {grid.n_voxels:,} voxels, {model.n_dofs:,} DOF, coarse space "
          f"{args.coarse_space} (level nodes {[lev.n_nodes for lev in model.levels]})", flush=True)
    reference, info = solve(1e-11, 5000)
    print(f"reference solve: {int(info.iterations)} iterations, relative residual "
          f"{float(info.residual):.1e}", flush=True)

    pieces = weakly_attached_pieces(grid.mask)
    voxel_piece = pieces[grid.mask]  # bone voxels in flat (z, y, x) order, the solver's order
    n_pieces = int(pieces.max()) + 1
    print(f"weakly attached pieces: {n_pieces}, holding {np.mean(voxel_piece >= 0):.1%} of the "
          f"bone voxels")
    for k in (20, 40, 60):
        u_k, _ = solve(1e-11, k)
        energy = np.asarray(element_energy(model.fine, Ke, u_k - reference))
        order = np.argsort(energy)[::-1]
        share = np.cumsum(energy[order]) / energy.sum()
        n = len(energy)
        tops = {f: share[max(1, int(n * f)) - 1] for f in (0.001, 0.01, 0.05, 0.2)}
        in_pieces = np.mean(voxel_piece[order[:max(1, n // 1000)]] >= 0)
        print(f"after {k} iterations: error energy share in the top 0.1/1/5/20 % of voxels "
              + " / ".join(f"{v:.1%}" for v in tops.values())
              + f"; top 0.1 % voxels in weakly attached pieces: {in_pieces:.1%}", flush=True)

    node_piece = node_pieces(grid, pieces)
    corners = grid.voxel_nodes()[:, GRID_TO_VTK]  # grid corner order, as Ke
    touching = (node_piece[corners] >= 0).any(axis=1)
    dofs = (3 * corners[touching][:, :, None] + np.arange(3)).reshape(-1, 24)
    ke = np.asarray(Ke) * bench.E_TISSUE
    K = sps.coo_matrix((np.tile(ke.ravel(), len(dofs)),
                        (np.repeat(dofs, 24, axis=1).ravel(), np.tile(dofs, (1, 24)).ravel())),
                       shape=(model.n_dofs,) * 2).tocsr()
    dof_piece = np.repeat(node_piece, 3)
    dof_free = np.asarray(free).reshape(-1)
    local_dofs = [np.flatnonzero((dof_piece == q) & dof_free) for q in range(n_pieces)]
    for cap in args.cap:
        blocks = [(d, sla.cho_factor(K[d][:, d].toarray())) for d in local_dofs if 0 < len(d) <= cap]

        def local(r, blocks=blocks):
            r = np.asarray(r).reshape(-1)
            out = np.zeros_like(r)
            for d, factor in blocks:
                out[d] = sla.cho_solve(factor, r[d])
            return out.reshape(-1, 3)

        _, info = solver(local)(bench.RTOL, 2000)
        size = sum(len(d) for d, _ in blocks)
        inverse_mb = sum(len(d) ** 2 for d, _ in blocks) * 4 / 1e6
        print(f"exact solves on {len(blocks)} pieces of ≤ {min(cap, max(map(len, local_dofs)))} "
              f"dofs ({size:,} dofs, dense float32 inverses {inverse_mb:.0f} MB): "
              f"{int(info.iterations)} iterations to rtol {bench.RTOL:g}", flush=True)
    _, info = solve(bench.RTOL, 2000)
    print(f"multigrid alone: {int(info.iterations)} iterations to rtol {bench.RTOL:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

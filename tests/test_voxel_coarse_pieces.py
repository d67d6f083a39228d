"""Connectivity-following multigrid coarse levels (febone.voxel.pieces): labelling against
scipy.ndimage, exact rigid motions per piece, nodal prolongation, and solves equal to the
trilinear hierarchy's with fewer CG iterations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import febone as fb
from febone.voxel import Multigrid, VoxelGrid, VoxelModel, VoxelPCG, solve_voxel
from febone.voxel.grid import GRID_CORNERS, build_levels
from febone.voxel.multigrid import child_prolongations, prolong, restrict
from febone.voxel.pieces import PieceLevel, piece_levels, voxel_model, weight_table

OFF = GRID_CORNERS[:, ::-1]  # (z, y, x) offsets of the grid-order corners
TWENTY_SIX = np.ones((3, 3, 3), bool)


def fine_voxels_of_copies(levels, L):
    """(n_copies_L,) list of the level-0 voxel ids in each level-L copy (composing the
    children maps)."""
    sets = [[i] for i in range(len(levels[0].coords))]
    for l in range(1, L + 1):
        n_below = len(sets)
        sets = [sum((sets[c] for c in row if c < n_below), []) for row in levels[l].children]
    return sets


def two_combs():
    """Two bone pieces (A: x ∈ {0, 1} and a top plate; B: x = 3, 4, 5 teeth) that never share a
    2×2×2 block but come within one voxel of each other inside coarser cells."""
    m = np.zeros((8, 8, 8), bool)
    m[:, :, 0:2] = True          # piece A: a wall
    m[:, 2:6, 3:6] = True        # piece B: a block one voxel away from A
    return m


@pytest.mark.parametrize("seed", range(6))
def test_copies_are_the_26_connected_components_of_their_cell(seed):
    """A single coarsest cell: its copies are the 26-connected components of the bone inside
    (scipy.ndimage.label), voxel by voxel; level 2 on 4³ cells, level 3 on 8³."""
    rng = np.random.default_rng(seed)
    for n, L in ((4, 2), (8, 3)):
        mask = rng.random((n, n, n)) < 0.22
        mask[0, 0, 0] = True
        levels = piece_levels(mask, max_coarse_nodes=8)
        assert len(levels) == L + 1 and len(levels[L].coords) >= 1
        labels, count = ndimage.label(mask, structure=TWENTY_SIX)
        voxel_label = labels[mask]  # flat voxel order, the cells' order on level 0
        copies = fine_voxels_of_copies(levels, L)
        assert len(copies) == count
        assert sorted(len(c) for c in copies) == sorted(np.bincount(voxel_label)[1:].tolist())
        for c in copies:
            assert np.unique(voxel_label[c]).size == 1


def test_level_one_never_splits_cells():
    """The 8 voxels of a 2×2×2 block share its centre node, so level-1 copies are the
    structured coarse voxels of build_levels, one each."""
    mask = np.random.default_rng(3).random((6, 7, 5)) < 0.3
    levels = piece_levels(mask, max_coarse_nodes=8)
    structured = build_levels(mask, max_coarse_nodes=8, max_levels=2)[1]
    assert len(levels[1].coords) == structured.n_voxels
    np.testing.assert_array_equal(levels[1].children, np.asarray(structured.children))


def test_prolongation_is_nodal_and_cellwise_trilinear():
    """Every finer node gets the same value from every cell copy holding it: prolonging a
    random coarse vector equals P_c applied to each copy's corners, for every child c."""
    mask = np.random.default_rng(1).random((9, 8, 10)) < 0.35
    levels = piece_levels(mask, max_coarse_nodes=8)
    P = child_prolongations()
    for l in range(1, len(levels)):
        coarse = PieceLevel.from_cells(levels[l], 2.0 ** l)
        xc = jnp.asarray(np.random.default_rng(l).normal(size=(levels[l].n_nodes, 3)))
        xf = np.asarray(prolong(None, coarse, xc))
        ue = np.asarray(xc)[levels[l].corners].reshape(-1, 24)
        finer = levels[l - 1]
        for q, row in enumerate(levels[l].children):
            for col, child in enumerate(row):
                if child < len(finer.coords):
                    c = levels[l].child_pos[q, col]
                    np.testing.assert_allclose(xf[finer.corners[child]].reshape(-1),
                                               P[c] @ ue[q], rtol=0, atol=1e-12)
        # restriction is the exact transpose
        rf = jnp.asarray(np.random.default_rng(7).normal(size=(finer.n_nodes, 3)))
        lhs = float(jnp.vdot(prolong(None, coarse, xc), rf))
        rhs = float(jnp.vdot(xc, restrict(None, coarse, rf)))
        assert lhs == pytest.approx(rhs, rel=1e-12)


def rigid(points, a, w):
    """(n, 3) displacement a + w × x at points (n, 3) in (x, y, z)."""
    return a[None, :] + np.cross(w[None, :], points)


def test_each_piece_moves_rigidly_on_its_own():
    """A rigid motion on the coarse nodes of one piece (zero on the other's), prolonged to the
    fine grid, is that rigid motion on every fine node of the piece and zero on the other:
    exact, since each copy's functions are trilinear and the pieces share no coarse node.
    The trilinear hierarchy cannot do this (its shared grid points mix the pieces)."""
    mask = two_combs()
    pieces, n_pieces = ndimage.label(mask, structure=TWENTY_SIX)
    assert n_pieces == 2
    levels = piece_levels(mask, max_coarse_nodes=8)
    grid = VoxelGrid.create(mask, 1.0)
    kji = grid.node_ijk()
    fine_pts = kji[:, ::-1].astype(float)  # (x, y, z), unit voxels
    voxel_piece = pieces[mask]
    corners0 = grid.voxel_nodes()
    node_piece = np.zeros(grid.active.sum(), int)
    for p in (1, 2):
        node_piece[np.unique(corners0[voxel_piece == p])] = p
    a, w = np.array([0.3, -0.2, 0.5]), np.array([0.05, 0.02, -0.04])
    for L in (2, 3):
        cells = levels[L]
        copy_piece = np.array([np.unique(voxel_piece[c]).item()
                               for c in fine_voxels_of_copies(levels, L)])
        for p in (1, 2):
            slots = cells.corners[copy_piece == p].reshape(-1)
            other = cells.corners[copy_piece != p].reshape(-1)
            assert not np.intersect1d(slots, other).size  # no coarse node shared
            pos = ((cells.coords[:, None, :] + OFF[None]) * 2 ** L)[copy_piece == p]
            xc = np.zeros((cells.n_nodes, 3))
            xc[slots] = rigid(pos.reshape(-1, 3)[:, ::-1].astype(float), a, w)
            x = jnp.asarray(xc)
            for l in range(L, 0, -1):
                x = prolong(None, PieceLevel.from_cells(levels[l], 2.0 ** l), x)
            x = np.asarray(x)
            on = node_piece == p
            np.testing.assert_allclose(x[on], rigid(fine_pts[on], a, w), rtol=0, atol=1e-12)
            np.testing.assert_allclose(x[~on], 0.0, rtol=0, atol=1e-12)
    # control: on the structured trilinear level 2 the pieces share coarse grid points
    tri = build_levels(mask, max_coarse_nodes=8, max_levels=3)
    assert len(tri) == 3
    shared = np.zeros(tri[2].n_nodes, int)
    for p in (1, 2):
        e = np.zeros((grid.active.sum(), 3))
        e[node_piece == p] = 1.0
        r = jnp.asarray(e)
        for l in range(2):
            r = restrict(tri[l], tri[l + 1], r)
        shared += np.asarray(r)[:, 0] > 0
    assert (shared == 2).any()


def weak_piece_mask():
    """A pillar (x ∈ {0, 1}) from bottom to top and a hanging block (x = 3..5) one voxel away
    from it, attached only by a one-voxel neck near the top: the block moves almost
    rigidly, the slow mode of trabecular bone."""
    m = np.zeros((12, 6, 8), bool)
    m[:, 1:5, 0:2] = True
    m[2:10, 1:5, 3:6] = True
    m[9, 2, 2] = True  # the neck
    return m


def test_weak_piece_solve_equals_trilinear_with_fewer_iterations():
    mask = weak_piece_mask()
    grid = VoxelGrid.create(mask, 0.05)
    E = np.full(grid.n_voxels, 1000.0)
    out = {}
    for space in ("trilinear", "pieces"):
        model = voxel_model(grid, max_coarse_nodes=20, coarse_space=space)
        assert len(model.levels) >= 3
        bottom, top = grid.plane_nodes("z", "min"), grid.plane_nodes("z", "max")
        bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(bottom, "xyz").displace(top, z=-0.01)
        sol = solve_voxel(model, E, bcs, nu=0.3, solver=VoxelPCG(rtol=1e-12), grid=grid)
        out[space] = (np.asarray(sol.u), int(sol.stats.iterations))
    (u_t, it_t), (u_p, it_p) = out["trilinear"], out["pieces"]
    np.testing.assert_allclose(u_p, u_t, rtol=0, atol=1e-8 * np.abs(u_t).max())
    # measured: 110 against 181 iterations to rtol 1e-12 (64 against 95 to 1e-8)
    assert it_p < 0.8 * it_t


def test_jit_per_voxel_moduli_and_gradient_match_trilinear():
    """The solve stays differentiable in per-voxel moduli on a pieces model (implicit adjoint;
    the preconditioner carries no gradient): d(compliance)/dE equals the trilinear model's."""
    mask = weak_piece_mask()
    grid = VoxelGrid.create(mask, 0.05)
    rng = np.random.default_rng(0)
    E = jnp.asarray(rng.uniform(500.0, 1500.0, grid.n_voxels))
    grads = {}
    for space in ("trilinear", "pieces"):
        model = voxel_model(grid, max_coarse_nodes=20, coarse_space=space)
        top = grid.plane_nodes("z", "max")
        bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
        bcs = bcs.add_force(top, z=-1.0 / top.size)

        @jax.jit
        def compliance(E, model=model, bcs=bcs):
            sol = solve_voxel(model, E, bcs, nu=0.3, solver=VoxelPCG(rtol=1e-12))
            return jnp.vdot(bcs.forces, sol.u)
        grads[space] = np.asarray(jax.grad(compliance)(E))
    np.testing.assert_allclose(grads["pieces"], grads["trilinear"], rtol=1e-7,
                               atol=1e-9 * np.abs(grads["trilinear"]).max())


def test_options():
    assert Multigrid().coarse_space == "pieces"
    assert Multigrid(coarse="average").model_coarse_space == "trilinear"
    with pytest.raises(ValueError, match="coarse_space"):
        Multigrid(coarse_space="aggregates")
    grid = VoxelGrid.create(two_combs(), 1.0)
    with pytest.raises(ValueError, match="coarse_space"):
        voxel_model(grid, coarse_space="blocks")
    assert weight_table().sum(axis=1) == pytest.approx(np.ones(27))


def test_cli_compress_answers_equal_for_both_coarse_spaces(tmp_path):
    """``febone compress --coarse-space pieces`` (the default) and ``trilinear`` give the same
    apparent modulus and failure load at a tight tolerance (both converge to the same FE
    answer: the coarse space only changes the preconditioner)."""
    import json

    from febone.cli import main

    np.save(tmp_path / "bone.npy", weak_piece_mask())
    out = {}
    for space in ("pieces", "trilinear"):
        assert main(["compress", str(tmp_path / "bone.npy"), "--voxel-size", "0.05", "--strain",
                     "0.01", "--rtol", "1e-12", "--quiet", "--json", str(tmp_path / "r.json"),
                     "--coarse-space", space]) == 0
        out[space] = json.loads((tmp_path / "r.json").read_text())
    for key in ("apparent_modulus_MPa", "failure_load_N", "reaction_force_N"):
        assert out["pieces"][key] == pytest.approx(out["trilinear"][key], rel=1e-8)


def test_compress_force_by_work_theorem_is_the_reaction_and_insensitive_to_rtol():
    """compress's force F = uᵀKu/δ (work theorem) equals the summed reactions of the loaded
    face at the converged solution, and at a loose tolerance stays far closer to it than the
    summed reactions do (its error is quadratic in the solver's)."""
    from febone.voxel import compress_mask, voxel_reactions

    mask = weak_piece_mask()
    E = 1000.0
    mg = Multigrid(max_coarse_nodes=20)  # several levels: CG takes 20 iterations to 1e-4
    tight = compress_mask(mask, 0.05, E=E, strain=0.01, solver=VoxelPCG(rtol=1e-12, multigrid=mg))
    loose = compress_mask(mask, 0.05, E=E, strain=0.01, solver=VoxelPCG(rtol=1e-4, multigrid=mg))
    grid = VoxelGrid.create(mask, 0.05)
    model = VoxelModel.create(grid, max_levels=1)
    top = grid.plane_nodes("z", "max")
    bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
    bcs = bcs.displace(top, z=-tight.applied_displacement_mm)
    Ev = np.full(grid.n_voxels, E)

    def summed(u):
        return -float(np.asarray(voxel_reactions(model, Ev, bcs, u, nu=0.3))[top, 2].sum())
    F = tight.reaction_force_N
    assert F == pytest.approx(summed(tight.u), rel=1e-10)
    err_work = abs(loose.reaction_force_N - F) / F
    err_summed = abs(summed(loose.u) - F) / F
    # measured: 1.9e-7 against 4.1e-5; and eᵀKe ≥ 0 makes the work force an upper bound
    assert err_work < 0.02 * err_summed and loose.reaction_force_N >= F * (1 - 1e-12)

"""Voxel operator and multigrid building blocks against independent implementations:
the unstructured hex8 path (FEModel), dense linear algebra, and transposition identities."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import febone as fb
from febone.fe.elasticity import internal_force
from febone.fe.elasticity import stiffness_diagonal as fe_diagonal
from febone.voxel import Multigrid, VoxelGrid, VoxelModel, VoxelPCG, solve_voxel, voxel_reactions
from febone.voxel.multigrid import (_apply_level, _element_matrices, _form,
                                    chebyshev_upper_bound, prolong, restrict, setup_multigrid,
                                    vcycle)
from febone.voxel.operator import apply_stiffness, element_stiffness, stiffness_diagonal

VOXEL = (0.5, 0.4, 0.3)  # (dz, dy, dx) mm, anisotropic on purpose


def porous_mask(shape, seed=1, fill=0.7):
    """A random face-connected voxel set (largest component of a random mask)."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < fill
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def as_mesh(grid):
    return fb.Mesh.create(grid.node_points(), grid.voxel_nodes(), "hexahedron")


@pytest.fixture(scope="module")
def small():
    grid = VoxelGrid.create(porous_mask((6, 5, 4)), VOXEL)
    model = VoxelModel.create(grid, max_coarse_nodes=20)
    E = 1000.0 + 500.0 * np.random.default_rng(2).random(grid.n_voxels)
    return grid, model, E


def test_operator_equals_unstructured_hex8(small):
    grid, model, E = small
    fem = fb.FEModel.from_mesh(as_mesh(grid))
    u = jnp.asarray(np.random.default_rng(3).standard_normal((model.n_nodes, 3)))
    Ke = element_stiffness(model.voxel_size, 0.3)
    ours = apply_stiffness(model.fine, Ke, jnp.asarray(E), u)
    ref = internal_force(fem, u, jnp.asarray(E), 0.3)
    # same 2x2x2 Gauss stiffness, different summation order: round-off only
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * float(jnp.abs(ref).max()))
    d_ours = stiffness_diagonal(model.fine, Ke, jnp.asarray(E))
    d_ref = fe_diagonal(fem, jnp.asarray(E), 0.3)
    np.testing.assert_allclose(d_ours, d_ref, rtol=1e-12)


@pytest.mark.parametrize("chunk", [6, 16, 41])
def test_chunked_products_equal_the_unstructured_operator(small, monkeypatch, chunk):
    """Grids larger than one voxel chunk are applied chunk by chunk, the last chunk shifted
    back to end at the last voxel with its overlap zeroed: the fine product and the
    level-1 Galerkin product equal the one-piece unstructured/dense ones, for chunk sizes
    that do and do not divide the voxel count."""
    from febone.voxel import operator as voxel_operator
    grid, model, E = small
    assert model.n_voxels > chunk
    fem = fb.FEModel.from_mesh(as_mesh(grid))
    u = jnp.asarray(np.random.default_rng(8).standard_normal((model.n_nodes, 3)))
    Ke = element_stiffness(model.voxel_size, 0.3)
    ref = internal_force(fem, u, jnp.asarray(E), 0.3)
    opts = Multigrid(dtype="float64")
    mg = setup_multigrid(model, jnp.asarray(E), 0.3, jnp.zeros((model.n_nodes, 3), bool), opts)
    coarse = model.levels[1]
    uc = jnp.asarray(np.random.default_rng(9).standard_normal((coarse.n_nodes, 3)))
    one_piece = _apply_level(coarse, "children", mg.Ke[1], mg.E[1], uc)
    monkeypatch.setattr(voxel_operator, "CHUNK", chunk)
    ours = apply_stiffness(model.fine, Ke, jnp.asarray(E), u)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * float(jnp.abs(ref).max()))
    if coarse.n_voxels > chunk:
        chunked = _apply_level(coarse, "children", mg.Ke[1], mg.E[1], uc)
        np.testing.assert_allclose(chunked, one_piece, rtol=0,
                                   atol=1e-12 * float(jnp.abs(one_piece).max()))


@pytest.mark.parametrize("preconditioner", ["multigrid", "jacobi"])
def test_solve_equals_unstructured_hex8(small, preconditioner):
    grid, model, E = small
    bottom, top = grid.plane_nodes("z", "min"), grid.plane_nodes("z", "max")
    bcs = fb.BoundaryConditions.empty(model.n_nodes).fix(bottom, "xyz").displace(top, z=-0.01)
    sol = solve_voxel(model, E, bcs, solver=VoxelPCG(rtol=1e-11, preconditioner=preconditioner),
                      grid=grid)
    fem = fb.FEModel.from_mesh(as_mesh(grid))
    mat = fb.LinearElastic.create(E, 0.3, n_elements=grid.n_voxels)
    ref = fb.solve(fem, mat, bcs, solver=fb.PCG(rtol=1e-12))
    # both solved to ~1e-11 relative residual; the stiffness condition number is < 1e4
    scale = float(jnp.abs(ref.u).max())
    np.testing.assert_allclose(sol.u, ref.u, rtol=0, atol=1e-7 * scale)
    r_ours = float(voxel_reactions(model, E, bcs, sol.u)[top, 2].sum())
    r_ref = float(fb.reaction_forces(fem, mat, bcs, ref.u)[top, 2].sum())
    assert r_ours == pytest.approx(r_ref, rel=1e-7)


def test_restriction_is_transpose_of_prolongation(small):
    _, model, _ = small
    rng = np.random.default_rng(4)
    for fine, coarse in zip(model.levels[:-1], model.levels[1:]):
        x = jnp.asarray(rng.standard_normal((coarse.n_nodes, 3)))
        y = jnp.asarray(rng.standard_normal((fine.n_nodes, 3)))
        lhs = float(jnp.vdot(prolong(fine, coarse, x), y))
        rhs = float(jnp.vdot(x, restrict(fine, coarse, y)))
        assert lhs == pytest.approx(rhs, rel=1e-12)
        # trilinear interpolation reproduces constants exactly
        ones = prolong(fine, coarse, jnp.ones((coarse.n_nodes, 3)))
        np.testing.assert_allclose(ones, 1.0, rtol=1e-14)


def _dense(apply, n):
    """Matrix of a linear map on (n, 3) arrays, column by column (one compilation)."""
    cols = jax.jit(jax.vmap(lambda e: apply(e.reshape(n, 3)).ravel()))(jnp.eye(3 * n))
    return np.asarray(cols).T


@pytest.mark.parametrize("level1", ["matrices", "children"])
def test_galerkin_levels_equal_PtAP(small, level1):
    grid, model, E = small
    opts = Multigrid(dtype="float64", level1=level1)
    no_bc = jnp.zeros((model.n_nodes, 3), bool)
    mg = setup_multigrid(model, jnp.asarray(E), 0.3, no_bc, opts)
    Ke = element_stiffness(model.voxel_size, 0.3)
    A = _dense(lambda v: apply_stiffness(model.fine, Ke, jnp.asarray(E), v), model.n_nodes)
    for l in range(1, len(model.levels)):
        fine, coarse = model.levels[l - 1], model.levels[l]
        P = np.asarray(jax.vmap(lambda e: prolong(fine, coarse, e.reshape(-1, 3)).ravel())(
            jnp.eye(3 * coarse.n_nodes))).T
        A = P.T @ A @ P  # exact Galerkin product, level by level
        ours = _dense(lambda v: _apply_level(coarse, _form(opts, l), mg.Ke[l], mg.E[l], v),
                      coarse.n_nodes)
        np.testing.assert_allclose(ours, A, rtol=0, atol=1e-10 * np.abs(A).max())


@pytest.mark.parametrize("jacobi", ["point", "block"])
def test_vcycle_is_symmetric_positive_definite(small, jacobi):
    grid, model, E = small
    bottom = grid.plane_nodes("z", "min")
    fixed = np.zeros((model.n_nodes, 3), bool)
    fixed[bottom] = True
    opts = Multigrid(dtype="float64", cycle="v", jacobi=jacobi)
    mg = setup_multigrid(model, jnp.asarray(E), 0.3, jnp.asarray(fixed), opts)
    free = np.flatnonzero(~fixed.ravel())

    def M(r):
        return vcycle(model, mg, r * jnp.asarray(~fixed), opts)

    Md = _dense(M, model.n_nodes)[np.ix_(free, free)]
    # a fixed linear operator: symmetric to round-off, positive definite (CG requirement)
    np.testing.assert_allclose(Md, Md.T, rtol=0, atol=1e-10 * np.abs(Md).max())
    assert np.linalg.eigvalsh(0.5 * (Md + Md.T)).min() > 0


def test_coarse_element_matrices_are_positive_semidefinite(small):
    _, model, E = small
    opts = Multigrid(dtype="float64")
    mg = setup_multigrid(model, jnp.asarray(E), 0.3, jnp.zeros((model.n_nodes, 3), bool), opts)
    for l in range(1, len(model.levels)):
        K = np.asarray(_element_matrices(_form(opts, l), mg.Ke[l], mg.E[l]))
        np.testing.assert_allclose(K, np.swapaxes(K, 1, 2), atol=1e-9 * np.abs(K).max())
        # six rigid-body modes per element: eigenvalues ≥ 0 up to round-off
        assert np.linalg.eigvalsh(K).min() > -1e-9 * np.abs(K).max()


@pytest.mark.parametrize("jacobi", ["point", "block"])
def test_smoother_diagonal_and_chebyshev_bound_against_dense(small, jacobi):
    """Level by level (dense Galerkin products): the smoother's D⁻¹ is the inverse of the
    nodal 3×3 diagonal blocks (or of the diagonal) of the free-dof matrix, and the
    Chebyshev interval's upper end lies above λ_max(D⁻¹A), as the smoother requires; on
    the fine level also the element bound does, and it is rigorous."""
    grid, model, E = small
    fixed = np.zeros((model.n_nodes, 3), bool)
    fixed[grid.plane_nodes("z", "min")] = True
    opts = Multigrid(dtype="float64", jacobi=jacobi)
    mg = setup_multigrid(model, jnp.asarray(E), 0.3, jnp.asarray(fixed), opts)
    Ke = element_stiffness(model.voxel_size, 0.3)
    A = _dense(lambda v: apply_stiffness(model.fine, Ke, jnp.asarray(E), v), model.n_nodes)
    for l in range(len(model.levels) - 1):
        if l > 0:
            fine, coarse = model.levels[l - 1], model.levels[l]
            P = np.asarray(jax.vmap(lambda e: prolong(fine, coarse, e.reshape(-1, 3)).ravel())(
                jnp.eye(3 * coarse.n_nodes))).T
            A = P.T @ A @ P
        free = np.asarray(mg.free[l]).ravel() > 0
        Af = A[np.ix_(free, free)]
        n = A.shape[0] // 3
        if jacobi == "block":
            D = np.zeros_like(A)
            for i in range(n):
                s_ = slice(3 * i, 3 * i + 3)
                D[s_, s_] = A[s_, s_]
            D = D[np.ix_(free, free)]
            inv = np.zeros((3 * n, 3 * n))
            blocks = np.asarray(mg.inv_diag[l])
            for i in range(n):
                inv[3 * i:3 * i + 3, 3 * i:3 * i + 3] = blocks[i]
        else:
            D = np.diag(np.diag(Af))
            inv = np.diag(np.asarray(mg.inv_diag[l]).ravel())
        # fixed rows of the stored inverse are zero; on free dofs it inverts D
        np.testing.assert_allclose(inv[np.ix_(free, free)] @ D, np.eye(free.sum()), atol=1e-9)
        assert np.abs(inv[~free]).max(initial=0.0) == 0.0
        lam = np.linalg.eigvals(np.linalg.solve(D, Af)).real.max()
        assert float(mg.upper[l]) >= lam
        if l == 0:
            assert float(chebyshev_upper_bound(model.voxel_size, 0.3, jacobi)) >= lam * (1 - 1e-12)

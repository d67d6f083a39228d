"""Voxel solves against closed forms, other solver settings, finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import febone as fb
from febone.voxel import (Multigrid, VoxelGrid, VoxelModel, VoxelPCG, compress_mask,
                          effective_strain, pistoia_failure_load, solve_voxel, voxel_reactions)

E0, NU = 1000.0, 0.3


def roller_bcs(grid, n_nodes, delta):
    """Uniaxial stress along z: bottom face on rollers (u_z = 0), rigid modes removed at two
    bottom corners, top face displaced by −delta along z, lateral faces free."""
    kji = grid.node_ijk()
    bottom = grid.plane_nodes("z", "min")
    top = grid.plane_nodes("z", "max")
    origin = np.flatnonzero((kji == 0).all(axis=1))
    x_corner = np.flatnonzero((kji[:, 0] == 0) & (kji[:, 1] == 0) & (kji[:, 2] == grid.shape[2]))
    return (fb.BoundaryConditions.empty(n_nodes).fix(bottom, "z").fix(origin, "xy")
            .fix(x_corner, "y").displace(top, z=-delta)), top


def test_homogeneous_block_matches_uniaxial_closed_form():
    nz, ny, nx = 6, 4, 5
    h = (0.3, 0.25, 0.2)
    grid = VoxelGrid.create(np.ones((nz, ny, nx), bool), h)
    model = VoxelModel.create(grid, max_coarse_nodes=30)
    L, A = nz * h[0], (ny * h[1]) * (nx * h[2])
    delta = 0.01
    bcs, top = roller_bcs(grid, model.n_nodes, delta)
    sol = solve_voxel(model, np.full(grid.n_voxels, E0), bcs, nu=NU,
                      solver=VoxelPCG(rtol=1e-12), grid=grid)
    # uniaxial stress: u = (ν ε x, ν ε y, −ε z) with ε = δ/L, reproduced exactly by hex8
    eps = delta / L
    p = grid.node_points()
    exact = np.stack([NU * eps * p[:, 0], NU * eps * p[:, 1], -eps * p[:, 2]], 1)
    np.testing.assert_allclose(sol.u, exact, rtol=0, atol=1e-9 * delta)
    force = -float(voxel_reactions(model, np.full(grid.n_voxels, E0), bcs, sol.u, nu=NU)[top, 2].sum())
    assert force == pytest.approx(E0 * A * eps, rel=1e-9)
    # effective strain √(2·SED/E) = ε everywhere, so Pistoia gives E·A·0.007 exactly
    eff = np.asarray(effective_strain(model, sol.u, nu=NU))
    np.testing.assert_allclose(eff, eps, rtol=1e-8)
    fail, eps2 = pistoia_failure_load(force, eff)
    assert fail == pytest.approx(E0 * A * 0.007, rel=1e-7)


def test_compression_of_full_block_is_bounded_and_matches_unstructured():
    """With the bottom face fully clamped the apparent modulus lies between the uniaxial-
    stress (E) and uniaxial-strain (E(1−ν)/((1+ν)(1−2ν))) moduli; the unstructured hex8
    path on the same mesh and BCs gives the same force."""
    nz, ny, nx = 6, 5, 5
    res = compress_mask(np.ones((nz, ny, nx), bool), 0.1, E=E0, nu=NU, strain=0.01,
                        solver=VoxelPCG(rtol=1e-10))
    upper = E0 * (1 - NU) / ((1 + NU) * (1 - 2 * NU))
    assert E0 < res.apparent_modulus_MPa < upper
    grid = VoxelGrid.create(np.ones((nz, ny, nx), bool), 0.1)
    mesh = fb.Mesh.create(grid.node_points(), grid.voxel_nodes(), "hexahedron")
    top = grid.plane_nodes("z", "max")
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
           .displace(top, z=-0.01 * nz * 0.1))
    fem = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(E0, NU, n_elements=mesh.n_elements)
    ref = fb.solve(fem, mat, bcs, solver=fb.PCG(rtol=1e-12))
    force = -float(fb.reaction_forces(fem, mat, bcs, ref.u)[top, 2].sum())
    assert res.reaction_force_N == pytest.approx(force, rel=1e-7)  # both solved to ≤ 1e-10


def porous(shape, seed):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    mask = field > np.quantile(field, 0.55)
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == sizes.argmax()
    mask[0] |= True  # solid end plates keep the load path (a common micro-CT test setup)
    mask[-1] |= True
    return mask


@pytest.fixture(scope="module")
def porous_case():
    grid = VoxelGrid.create(porous((12, 10, 10), 3), 0.05)
    model = VoxelModel.create(grid, max_coarse_nodes=60)
    rng = np.random.default_rng(5)
    E = 18000.0 * (0.2 + rng.random(grid.n_voxels))  # heterogeneous, contrast 6
    bcs = (fb.BoundaryConditions.empty(model.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
           .displace(grid.plane_nodes("z", "max"), z=-0.006))
    return grid, model, E, bcs


def test_multigrid_variants_and_jacobi_agree(porous_case):
    grid, model, E, bcs = porous_case
    top = grid.plane_nodes("z", "max")
    variants = {
        "jacobi": VoxelPCG(rtol=1e-10, preconditioner="jacobi"),
        "k-galerkin": VoxelPCG(rtol=1e-10),
        "k-point-lanczos": VoxelPCG(rtol=1e-10, multigrid=Multigrid(jacobi="point",
                                                                    fine_bound="lanczos")),
        "v-average-f64": VoxelPCG(rtol=1e-10, multigrid=Multigrid(cycle="v", coarse="average",
                                                                  dtype="float64")),
    }
    out = {}
    for name, solver in variants.items():
        sol = solve_voxel(model, E, bcs, solver=solver)
        out[name] = (np.asarray(sol.u), float(voxel_reactions(model, E, bcs, sol.u)[top, 2].sum()),
                     int(sol.stats.iterations))
    u_ref, f_ref, it_jacobi = out["jacobi"]
    for name, (u, f, it) in out.items():
        # rtol 1e-10 on the residual; condition number ≲ 1e5 bounds the error at ~1e-5·|u|
        np.testing.assert_allclose(u, u_ref, rtol=0, atol=1e-6 * np.abs(u_ref).max())
        assert f == pytest.approx(f_ref, rel=1e-7)
    assert out["k-galerkin"][2] < it_jacobi / 3  # the point of multigrid
    # moduli are an argument of the compiled solve: doubling them reuses the compilation,
    # leaves the displacement-driven u unchanged and doubles the reaction (linearity)
    from febone.voxel.solve import _solve_compiled

    compiled = _solve_compiled._cache_size()
    sol = solve_voxel(model, 2.0 * E, bcs, solver=variants["k-galerkin"])
    assert _solve_compiled._cache_size() == compiled
    np.testing.assert_allclose(sol.u, u_ref, rtol=0, atol=1e-6 * np.abs(u_ref).max())
    f2 = float(voxel_reactions(model, 2.0 * E, bcs, sol.u)[top, 2].sum())
    assert f2 == pytest.approx(2.0 * f_ref, rel=1e-7)


def test_mixed_precision_refinement_is_float64_accurate(porous_case):
    grid, model, E, bcs = porous_case
    ref = solve_voxel(model, E, bcs, solver=VoxelPCG(rtol=1e-11))
    mixed = solve_voxel(model, E, bcs, solver=VoxelPCG(rtol=1e-11, mixed_precision=True))
    assert mixed.u.dtype == jnp.float64
    assert float(mixed.stats.residual) <= 1e-10  # float32 alone stalls near 1e-7
    np.testing.assert_allclose(mixed.u, ref.u, rtol=0, atol=1e-8 * float(jnp.abs(ref.u).max()))


def test_gradient_wrt_voxel_moduli_matches_central_differences():
    grid = VoxelGrid.create(porous((6, 5, 5), 7), 0.1)
    model = VoxelModel.create(grid, max_coarse_nodes=30)
    top = grid.plane_nodes("z", "max")
    bcs = (fb.BoundaryConditions.empty(model.n_nodes).fix(grid.plane_nodes("z", "min"), "xyz")
           .displace(top, z=-0.01))
    E = jnp.asarray(1000.0 * (0.5 + np.random.default_rng(8).random(grid.n_voxels)))
    solver = VoxelPCG(rtol=1e-12)

    def stiffness(E):
        u = solve_voxel(model, E, bcs, solver=solver).u
        return -voxel_reactions(model, E, bcs, u)[top, 2].sum()

    g = jax.grad(stiffness)(E)
    rng = np.random.default_rng(9)
    for k in rng.choice(grid.n_voxels, 4, replace=False):
        step = 1e-3 * float(E[k])
        fd = (stiffness(E.at[k].add(step)) - stiffness(E.at[k].add(-step))) / (2 * step)
        # central differences: O(step²) truncation ≈ 1e-6 relative; CG at 1e-12
        assert float(g[k]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9 * abs(float(g.max())))
    # the reaction is linear in E for a fixed u and stiffening never softens: all ≥ 0
    assert float(g.min()) > -1e-9 * float(g.max())


@pytest.mark.slow
def test_iterations_stay_bounded_under_refinement():
    """One porous geometry at 3 resolutions (each voxel split into 2³, then 4³): multigrid
    iterations stay nearly flat while Jacobi-CG iterations grow like 1/h."""
    base = porous((6, 6, 6), 11)
    its = {"multigrid": [], "jacobi": []}
    for level, factor in enumerate((1, 2, 4)):
        mask = base.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)
        grid = VoxelGrid.create(mask, 0.1 / factor)
        model = VoxelModel.create(grid, max_coarse_nodes=40)  # ≥ 2 levels at every size
        bcs = (fb.BoundaryConditions.empty(model.n_nodes)
               .fix(grid.plane_nodes("z", "min"), "xyz")
               .displace(grid.plane_nodes("z", "max"), z=-0.008))
        E = np.full(grid.n_voxels, 18000.0)
        for name in its:
            sol = solve_voxel(model, E, bcs, solver=VoxelPCG(rtol=1e-8, preconditioner=name))
            its[name].append(int(sol.stats.iterations))
    mg, jac = its["multigrid"], its["jacobi"]
    # h-independence: no growth from the coarsest to the finest grid (the finer grids
    # even need fewer: the same geometry is better resolved), while Jacobi-CG doubles
    assert mg[-1] <= 1.25 * mg[0] and max(mg) <= 40, its
    assert jac[-1] >= 3.0 * jac[0], its

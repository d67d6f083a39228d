"""Strength on the voxel engine: a grid-aligned hex8 mesh is recognised, mapped onto a voxel
grid and solved by matrix-free multigrid CG in the load case's pose; every output equals the
unstructured path to 1e-8 (both solved to rtol 1e-12). Meshes off a grid are refused by
``solver="voxel"`` (saying why) and fall back under ``"auto"``."""
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import febone as fb
from febone.cli import main
from febone.strength import CASES, LoadCase, Support, rotation, strength
from febone.strength.engines import UnstructuredEngine, VoxelEngine, build_engine
from febone.voxel import VoxelGrid, VoxelPCG
from febone.voxel.from_mesh import NotGridAligned, mesh_grid

MESHES = Path(__file__).resolve().parents[1] / "meshes"
SPACING = (0.5, 0.6, 0.8)  # (dx, dy, dz) mm: anisotropic on purpose
TIGHT_U, TIGHT_V = fb.PCG(rtol=1e-12), VoxelPCG(rtol=1e-12)
LINEAR = ("pistoia", "pistoia-smooth", "strain-limit")
POSE = rotation("y", 20.0) @ rotation("z", 15.0)


def _block(seed=1, shape=(8, 6, 10)):
    """A porous, face-connected block of voxels as a hex8 mesh with shuffled node and
    element numbering, an offset origin, heterogeneous density (g/cm³) and face masks."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape[::-1]) < 0.8                       # (z, y, x)
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == sizes.argmax()
    grid = VoxelGrid.create(mask, SPACING[::-1])
    points, cells = grid.node_points() + np.array([3.0, -2.0, 1.5]), grid.voxel_nodes()
    node_perm = rng.permutation(len(points))                   # new id -> old id
    old_to_new = np.argsort(node_perm)
    cells = old_to_new[cells][rng.permutation(len(cells))]
    points = points[node_perm]
    z = points[:, 2]
    faces = {"face_zmin": z <= z.min() + 1e-9, "face_zmax": z >= z.max() - 1e-9}
    assert all(f.sum() > 4 for f in faces.values())
    rho = 0.2 + 1.2 * rng.random(len(cells))
    mesh = fb.Mesh.create(points, cells, "hexahedron",
                          point_data={k: v.astype(np.int8) for k, v in faces.items()},
                          cell_data={"density_g_cm3": rho})
    E = np.asarray(fb.density_law("morgan-pooled").modulus(rho))
    return mesh, E, rho


@pytest.fixture(scope="module")
def block():
    return _block()


def _tilted(supports=(Support("face_zmin", "xyz"),), loaded_fixed="y"):
    """Compression of the block in a tilted pose: the load and the constrained components
    are not along the grid's axes."""
    return LoadCase("tilted", "face_zmax", "z", -1.0, supports, loaded_fixed=loaded_fixed,
                    pose=POSE, towards="face_zmin")


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_mesh_grid_maps_a_shuffled_block(block):
    mesh, E, _ = block
    lay = mesh_grid(mesh)
    assert lay.grid.voxel_size == pytest.approx(SPACING[::-1])
    assert lay.grid.n_voxels == mesh.n_elements
    np.testing.assert_allclose(lay.origin, mesh.points.min(axis=0))
    # each mesh node sits at its grid node, each element on its voxel
    np.testing.assert_allclose(lay.grid.node_points()[lay.node_to_grid] + lay.origin,
                               mesh.points, atol=1e-12)
    np.testing.assert_allclose(lay.grid.node_points()[lay.grid.voxel_nodes()].mean(axis=1)
                               [lay.element_to_voxel] + lay.origin,
                               mesh.points[mesh.cells].mean(axis=1), atol=1e-12)
    np.testing.assert_array_equal(lay.element_values(lay.voxel_values(E)), E)
    u = np.random.default_rng(0).standard_normal((mesh.n_nodes, 3))
    np.testing.assert_array_equal(lay.mesh_nodal(lay.grid_nodal(u)), u)


@pytest.mark.parametrize("case", [
    _tilted(),                                                               # clamped, skew load
    _tilted((Support("face_zmin", "z"),), "xy"),                             # partial components
], ids=["clamped", "partial"])
def test_strength_equals_unstructured_on_a_heterogeneous_anisotropic_block(block, case):
    mesh, E, _ = block
    ref = strength(mesh, case, E, methods=LINEAR, solver=TIGHT_U)
    vox = strength(mesh, case, E, methods=LINEAR, solver=TIGHT_V)
    auto = strength(mesh, case, E, methods=("pistoia",))
    assert (ref.solver, vox.solver, auto.solver) == ("unstructured", "voxel", "voxel")
    assert _rel(vox.u, ref.u) < 1e-8
    assert vox.stiffness_N_per_mm == pytest.approx(ref.stiffness_N_per_mm, rel=1e-8)
    for method in LINEAR:
        assert vox.fracture_load_N[method] == pytest.approx(ref.fracture_load_N[method], rel=1e-8)
        np.testing.assert_array_equal(vox.failed_elements[method], ref.failed_elements[method])
    for name in ("strain", "stress", "sed", "principal_strain", "von_mises"):
        assert _rel(getattr(vox.fields, name), getattr(ref.fields, name)) < 1e-8, name
    assert _rel(vox.effective_strain, ref.effective_strain) < 1e-8
    assert vox.n_dofs == ref.n_dofs
    # the default (auto, rtol 1e-8) agrees to its tolerance
    assert auto.stiffness_N_per_mm == pytest.approx(ref.stiffness_N_per_mm, rel=1e-6)


def test_engines_equal_with_forces_and_prescribed_displacements(block):
    """Any node-set conditions: fixed and displaced components and nodal forces, all along
    the pose's axes, give the same displacement and reactions on both engines."""
    mesh, E, _ = block
    posed = _tilted().posed(mesh)
    bottom = np.flatnonzero(mesh.point_data["face_zmin"])
    top = np.flatnonzero(mesh.point_data["face_zmax"])
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes).fix(bottom, "xyz")
           .displace(top, y=0.01, z=-0.02).add_force(top, x=5.0))
    engines = [build_engine(s, mesh, posed, POSE, jnp.asarray(E), 0.3, bcs) for s in
               (TIGHT_U, TIGHT_V)]
    assert isinstance(engines[0], UnstructuredEngine) and isinstance(engines[1], VoxelEngine)
    su, sv = (e.solve(E, bcs) for e in engines)
    ru, rv = (e.reactions(E, bcs, s.u) for e, s in zip(engines, (su, sv)))
    assert _rel(sv.u, su.u) < 1e-8
    assert _rel(rv[bottom], ru[bottom]) < 1e-8
    # the 5 N along x at the top is carried: no reaction on those free components
    np.testing.assert_allclose(np.asarray(rv)[top, 0], 0.0, atol=1e-8 * np.abs(rv).max())


def test_nonlinear_failure_on_the_voxel_engine(block):
    mesh, E, rho = block
    settings = fb.strength.ProgressiveFailure(increments=8, max_displacement_mm=0.05)
    kw = dict(methods=("nonlinear",), density=rho, nonlinear=settings)
    ref = strength(mesh, _tilted(), E, solver="unstructured", **kw)
    vox = strength(mesh, _tilted(), E, solver="voxel", **kw)
    assert vox.solver == "voxel"
    # the same increments (and rejections) past yield; forces to the solves' rtol 1e-8
    assert vox.curve.rejected == ref.curve.rejected > 0
    np.testing.assert_array_equal(vox.curve.displacement_mm, ref.curve.displacement_mm)
    np.testing.assert_allclose(vox.curve.force_N, ref.curve.force_N, rtol=1e-6)
    assert vox.fracture_load_N["nonlinear"] == pytest.approx(ref.fracture_load_N["nonlinear"],
                                                             rel=1e-6)


def test_bundled_femur_sideways_fall_equals_unstructured():
    mesh = fb.read_mesh(MESHES / "femur_coarse_hex8.vtu")
    E = np.asarray(mesh.cell_data["E_MPa"], float).reshape(-1)
    case = CASES["sideways-fall"]()
    ref = strength(mesh, case, E, solver=TIGHT_U)
    vox = strength(mesh, case, E, solver=TIGHT_V)
    assert vox.solver == "voxel"
    assert _rel(vox.u, ref.u) < 1e-8
    assert vox.stiffness_N_per_mm == pytest.approx(ref.stiffness_N_per_mm, rel=1e-8)
    for method, load in ref.fracture_load_N.items():
        assert vox.fracture_load_N[method] == pytest.approx(load, rel=1e-8)


def _rotated(mesh, degrees=10.0):
    return fb.Mesh.create(mesh.points @ rotation("z", degrees).T, mesh.cells, "hexahedron",
                          point_data=dict(mesh.point_data), cell_data=dict(mesh.cell_data))


def _distorted(mesh):
    points = mesh.points.copy()
    inner = np.flatnonzero((np.abs(points - points.mean(axis=0)) < 0.3 * np.ptp(points, axis=0))
                           .all(axis=1))[0]
    points[inner] += 0.05
    return fb.Mesh.create(points, mesh.cells, "hexahedron", point_data=dict(mesh.point_data),
                          cell_data=dict(mesh.cell_data))


@pytest.mark.parametrize("make, why", [(_rotated, "off the grid"), (_distorted, "measures")],
                         ids=["rotated", "distorted"])
def test_off_grid_meshes_are_refused_by_voxel_and_fall_back_under_auto(block, make, why):
    mesh, E, _ = block
    bad = make(mesh)
    case = CASES["compression"]("z", bottom="face_zmin", top="face_zmax")
    with pytest.raises(NotGridAligned, match=why) as err:
        strength(bad, case, E, solver="voxel")
    assert "not grid-aligned" in str(err.value) and "--solver unstructured" in str(err.value)
    fallback = strength(bad, case, E, methods=("pistoia",))
    assert fallback.solver == "unstructured"


def test_tet_mesh_is_refused_and_unknown_solver_named():
    tets = fb.box_mesh((2, 2, 2), (1.0, 1.0, 1.0), "tet4")
    with pytest.raises(NotGridAligned, match="tetra, not hex8"):
        mesh_grid(tets)
    box = fb.box_mesh((2, 2, 2), (1.0, 1.0, 1.0), "hex8")
    with pytest.raises(ValueError, match="solver must be one of"):
        strength(box, CASES["compression"](), 1000.0, solver="gpu")
    with pytest.raises(ValueError, match="geometric multigrid"):
        strength(box, CASES["compression"](), 1000.0, solver="voxel", preconditioner="amg")


def test_cli_solver_option(block, tmp_path, capsys):
    mesh, E, _ = block
    good, bad = tmp_path / "block.vtu", tmp_path / "rotated.vtu"
    fb.write_mesh(good, mesh.with_cell_data(E_MPa=E))
    fb.write_mesh(bad, _rotated(mesh).with_cell_data(E_MPa=E))
    args = ["--case", "compression", "--E-field", "E_MPa", "--inferior", "face_zmin",
            "--superior", "face_zmax", "--method", "pistoia"]
    results = {}
    for solver in ("auto", "unstructured"):
        js = tmp_path / f"{solver}.json"
        assert main(["strength", str(good), *args, "--solver", solver, "--json", str(js)]) == 0
        results[solver] = json.loads(js.read_text())
    assert results["auto"]["solver"] == "voxel"
    assert results["unstructured"]["solver"] == "unstructured"
    assert results["auto"]["stiffness_N_per_mm"] == pytest.approx(
        results["unstructured"]["stiffness_N_per_mm"], rel=1e-6)
    capsys.readouterr()
    assert main(["strength", str(bad), *args, "--solver", "voxel"]) == 1
    err = capsys.readouterr().err
    assert "not grid-aligned" in err and "--solver unstructured" in err

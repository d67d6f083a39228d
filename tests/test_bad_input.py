"""Every kind of bad input fails loudly, with a message that names the problem and the fix.

One test per failure mode; each checks the exception type and the message text."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import febone as fb
from febone.commands.solve import SpecError, parse_fix, parse_vector
from febone.material import MaterialError
from febone.mesh import MeshError, remove_unused_nodes

# ---------------------------------------------------------------- meshes


def _tet4_box():
    return fb.box_mesh((1, 1, 1), cell_type="tet4")  # 6 tets


def test_inverted_element_is_named():
    mesh = _tet4_box()
    cells = mesh.cells.copy()
    cells[3, [1, 2]] = cells[3, [2, 1]]  # swapping two corners reverses the orientation
    with pytest.raises(MeshError, match=r"inverted elements \(negative Jacobian\) 3: .*"
                                        r"reorder the nodes"):
        fb.Mesh.create(mesh.points, cells, "tet4")


def test_inverted_hex_is_named():
    mesh = fb.box_mesh((2, 1, 1))
    cells = mesh.cells.copy()
    cells[1] = cells[1, [4, 5, 6, 7, 0, 1, 2, 3]]  # top and bottom faces exchanged
    with pytest.raises(MeshError, match=r"inverted elements \(negative Jacobian\) 1: "):
        fb.Mesh.create(mesh.points, cells, "hex8")


def test_degenerate_element_is_named():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], float)
    cells = np.array([[0, 1, 2, 3], [1, 4, 2, 0]])  # the second one is flat (all z = 0)
    with pytest.raises(MeshError, match=r"degenerate elements \(zero volume: collapsed or "
                                        r"flat\) 1; remove or remesh"):
        fb.Mesh.create(pts, cells, "tet4")


def test_nan_coordinate_is_named():
    mesh = _tet4_box()
    pts = mesh.points.copy()
    pts[5, 1] = np.nan
    with pytest.raises(MeshError, match=r"non-finite \(NaN/inf\) coordinates at nodes 5; fix"):
        fb.Mesh.create(pts, mesh.cells, "tet4")


def test_unused_node_is_named_and_the_fix_works():
    mesh = _tet4_box()
    pts = np.concatenate([mesh.points, [[5.0, 5.0, 5.0]]])
    with pytest.raises(MeshError, match=r"nodes 8 belong to no element.*remove_unused_nodes"):
        fb.Mesh.create(pts, mesh.cells, "tet4")
    raw = fb.Mesh.create(pts, mesh.cells, "tet4", validate=False)
    fixed = remove_unused_nodes(raw)
    fb.mesh.validate_mesh(fixed)  # the suggested fix gives a valid mesh
    np.testing.assert_array_equal(fixed.points, mesh.points)


def test_unknown_cell_type():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]], float)
    with pytest.raises(ValueError, match=r"unsupported cell type 'wedge'.*tetra \(tet4\).*"
                                         r"convert the mesh"):
        fb.Mesh.create(pts, np.arange(6)[None], "wedge")


def test_wrong_number_of_nodes_per_cell():
    mesh = _tet4_box()
    with pytest.raises(MeshError, match=r"tetra10 cells need 10 nodes each; got cells of shape "
                                        r"\(6, 4\)"):
        fb.Mesh.create(mesh.points, mesh.cells, "tet10")


def test_cell_data_of_wrong_length():
    mesh = _tet4_box()
    with pytest.raises(MeshError, match=r"cell data 'E_MPa' has 5 rows for 6 elements"):
        fb.Mesh.create(mesh.points, mesh.cells, "tet4", cell_data={"E_MPa": np.ones(5)})


# ---------------------------------------------------------------- material


@pytest.mark.parametrize("E", [0.0, -100.0])
def test_nonpositive_modulus(E):
    Es = np.full(4, 1000.0)
    Es[2] = E
    with pytest.raises(MaterialError, match=r"must be positive \(MPa\); E ≤ 0 at elements \[2\]"):
        fb.LinearElastic.create(Es, 0.3)


def test_nan_modulus():
    Es = np.full(4, 1000.0)
    Es[[1, 3]] = np.nan
    with pytest.raises(MaterialError, match=r"NaN/inf at elements \[1, 3\] \(2 in all\); fill"):
        fb.LinearElastic.create(Es, 0.3)


@pytest.mark.parametrize("nu", [0.0, -0.2, 0.5, 0.7, np.nan])
def test_poisson_ratio_outside_open_interval(nu):
    with pytest.raises(MaterialError, match=r"Poisson's ratio must lie in \(0, 0.5\).*0.3 is "
                                            r"typical"):
        fb.LinearElastic.create(1000.0, nu, n_elements=3)


def test_modulus_of_wrong_length():
    with pytest.raises(MaterialError, match=r"one value per element \(6\); got shape \(5,\)"):
        fb.LinearElastic.create(np.ones(5), 0.3, n_elements=6)


# ---------------------------------------------------------------- supports


def _cube(origin=(0.0, 0.0, 0.0)):
    mesh = fb.box_mesh((2, 2, 2), size=(2.0, 2.0, 2.0), origin=origin)
    return mesh, fb.FEModel.from_mesh(mesh), fb.LinearElastic.create(1000.0, 0.3, n_elements=8)


def test_no_supports_at_all():
    mesh, model, mat = _cube()
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes).add_force(fb.nodes_on_plane(mesh, "z", "max"),
                                                              z=-1.0)
    with pytest.raises(fb.UnderConstrainedError,
                       match=r"under-constrained: the model can move rigidly \(translation and "
                             r"rotation in every direction \(no support at all\)\); fix more"):
        fb.solve(model, mat, bcs)


def test_supports_on_one_line_leave_a_rotation():
    # every node on the x-axis through the centre fully fixed: the cube can still spin about it
    mesh, model, mat = _cube(origin=(-1.0, -1.0, -1.0))
    line = fb.nodes_where(mesh, lambda p: (p[:, 1] == 0) & (p[:, 2] == 0))
    assert line.size == 3
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes).fix(line, "xyz")
    with pytest.raises(fb.UnderConstrainedError, match=r"can move rigidly \(rotation about an axis along x\)"):
        fb.solve(model, mat, bcs)


def test_supports_on_an_edge_line_are_reported_as_a_rotation():
    mesh, model, mat = _cube()
    edge = fb.nodes_where(mesh, lambda p: (p[:, 1] == 0) & (p[:, 2] == 0))
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes).fix(edge, "xyz")
    with pytest.raises(fb.UnderConstrainedError, match=r"rotation about an axis along x"):
        fb.solve(model, mat, bcs)


def test_second_part_without_supports():
    a = fb.box_mesh((1, 1, 1))
    b = fb.box_mesh((1, 1, 1), origin=(3.0, 0.0, 0.0))  # shares no node with a
    mesh = fb.Mesh.create(np.concatenate([a.points, b.points]),
                          np.concatenate([a.cells, b.cells + a.n_nodes]), "hex8")
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(1000.0, 0.3, n_elements=2)
    bcs = fb.BoundaryConditions.empty(mesh.n_nodes).fix(np.arange(8), "xyz")  # part a only
    with pytest.raises(fb.UnderConstrainedError,
                       match=r"the mesh part containing node 8 \(8 nodes\) can move rigidly"):
        fb.solve(model, mat, bcs)


# ---------------------------------------------------------------- solver


def _compression():
    mesh, model, mat = _cube()
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes)
           .fix(fb.nodes_on_plane(mesh, "z", "min"), "xyz")
           .displace(fb.nodes_on_plane(mesh, "z", "max"), z=-0.01))
    return model, mat, bcs


def test_cg_non_convergence_raises():
    model, mat, bcs = _compression()
    with pytest.raises(fb.ConvergenceError, match=r"CG did not converge: relative residual .* > "
                                                  r"rtol 1e-08 after 2 iterations; raise "
                                                  r"PCG\(max_iter=...\)"):
        fb.solve(model, mat, bcs, solver=fb.PCG(max_iter=2))


def test_cg_non_convergence_inside_jit_gives_nan():
    model, mat, bcs = _compression()

    def u_of(E, max_iter):
        return fb.solve(model, fb.LinearElastic(E, mat.nu), bcs,
                        solver=fb.PCG(max_iter=max_iter)).u

    u_bad = jax.jit(lambda E: u_of(E, 2))(mat.E)
    assert bool(jnp.all(jnp.isnan(u_bad)))
    u_ok = jax.jit(lambda E: u_of(E, 500))(mat.E)  # the same call converges with room to iterate
    assert bool(jnp.all(jnp.isfinite(u_ok)))


def test_solver_options_are_checked():
    with pytest.raises(ValueError, match=r"rtol must lie in \(0, 1\)"):
        fb.PCG(rtol=0.0)
    with pytest.raises(ValueError, match=r"max_iter must be ≥ 1"):
        fb.PCG(max_iter=0)
    with pytest.raises(ValueError, match=r"unknown preconditioner 'ilu'; use 'jacobi' or 'none'"):
        fb.PCG(preconditioner="ilu")


def test_material_of_wrong_length_in_solve():
    model, mat, bcs = _compression()
    with pytest.raises(MaterialError, match=r"E must have shape \(8,\)"):
        fb.solve(model, fb.LinearElastic(jnp.ones(7), mat.nu), bcs)


# ---------------------------------------------------------------- command-line specs


@pytest.mark.parametrize("spec, message", [
    ("bottom", r"--fix 'bottom': expected SET:xyz"),
    (":z", r"--fix ':z': expected SET:xyz"),
    ("bottom:", r"nothing after the colon"),
    ("bottom:xw", r"unknown component letter\(s\) \['w'\]; use letters from 'xyz'"),
])
def test_bad_fix_spec(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_fix(spec)


@pytest.mark.parametrize("spec, message", [
    ("top", r"--displace 'top': expected SET:x=-1,y=0"),
    ("top:x", r"'x' is not of the form COMPONENT=VALUE"),
    ("top:w=1", r"unknown component letter 'w'; use x, y or z"),
    ("top:xy=1", r"unknown component letter 'xy'"),
    ("top:x=1,x=2", r"component 'x' is given twice"),
    ("top:x=one", r"value 'one' of x is not a number \(mm\)"),
    ("top:z=nan", r"value of z must be finite"),
])
def test_bad_displace_spec(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_vector(spec, "--displace", "mm")


def test_good_specs_parse():
    assert parse_fix("bc:zX") == ("bc", "xz")
    assert parse_fix("a:b:y") == ("a:b", "y")  # the last colon separates the components
    assert parse_vector("t:x=-1, y=0", "--force", "N") == ("t", {"x": -1.0, "y": 0.0})

"""Surface loads: consistent nodal forces of tractions and pressures (tri3, tri6, quad4 faces).

Every check here is exact for the isoparametric faces febone uses, so tolerances are
round-off (1e-12 relative): the face quadratures (3-point degree 2 on tri3, 6-point
degree 4 on tri6, 2×2 Gauss on quad4) integrate N_a·n dA exactly, because on these faces
n dA is constant (tri3), quadratic (tri6) or bilinear (quad4) in the face coordinates.
"""
import numpy as np
import pytest

import febone as fb
from meshes_for_tests import cylinder_quarter, jittered_box

CELL_TYPES = ["tet4", "tet10", "hex8"]
SIZE = np.array([3.0, 2.0, 1.5])  # mm


def _rotation(angles) -> np.ndarray:
    a, b, c = angles
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    Rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def _warped_rotated_box(cell_type: str):
    """A box whose x = Lx face nodes are moved within the face (the face's outline and
    planarity are kept, so its area stays Ly·Lz exactly), then rigidly rotated.

    Returns the mesh, the node ids of the x = Lx face, and the rotation matrix.
    """
    base = fb.box_mesh((2, 3, 2), size=tuple(SIZE), cell_type=cell_type)
    x, y, z = (base.points / SIZE).T
    bump = 0.12 * np.sin(np.pi * y) * np.sin(np.pi * z) * x  # 0 on the face outline and at x = 0
    p = base.points.copy()
    p[:, 1] += SIZE[1] * bump
    p[:, 2] += SIZE[2] * bump * np.cos(np.pi * y)
    face = np.flatnonzero(np.isclose(base.points[:, 0], SIZE[0]))
    R = _rotation((0.3, -0.7, 1.1))
    return fb.Mesh.create(p @ R.T, base.cells, base.cell_type), face, R


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_traction_resultant_equals_traction_times_area(cell_type):
    mesh, face, R = _warped_rotated_box(cell_type)
    area = SIZE[1] * SIZE[2]
    t = np.array([0.7, -1.3, 2.1])  # MPa
    f = fb.surface_load(mesh, face, traction=t)
    assert np.all(f[np.setdiff1d(np.arange(mesh.n_nodes), face)] == 0.0)
    np.testing.assert_allclose(f.sum(0), t * area, rtol=1e-12)
    # pressure on the same face: −p n A with n the rotated +x normal (outward)
    p = 2.5
    fp = fb.surface_load(mesh, face, pressure=p)
    np.testing.assert_allclose(fp.sum(0), -p * area * R[:, 0], rtol=0, atol=1e-12 * p * area)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_pressure_on_closed_surface_has_zero_resultant_and_moment(cell_type):
    mesh, _, _ = _warped_rotated_box(cell_type)
    p = 4.0
    f = fb.surface_load(mesh, fb.surface_node_set(mesh), pressure=p)
    scale = p * 2 * (SIZE[0] * SIZE[1] + SIZE[1] * SIZE[2] + SIZE[0] * SIZE[2])  # p × total area
    np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-12 * scale)
    # the moment vanishes too (∮ x × n dA = 0), exact for isoparametric faces
    moment = np.cross(mesh.points, f).sum(0)
    np.testing.assert_allclose(moment, 0.0, atol=1e-12 * scale * SIZE.max())
    # control: every surface node is loaded, and the loads are not trivially zero
    assert np.abs(f).max() > 0.01 * p


def test_pressure_on_curved_closed_tet10_surface_balances():
    """Curved tri6 faces (a mapped cylinder quarter): the closed surface still balances."""
    mesh = cylinder_quarter(10.0, 20.0, 3.0, (2, 3, 1), "tet10")
    f = fb.surface_load(mesh, fb.surface_node_set(mesh), pressure=10.0)
    np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-12 * 10.0 * 1000.0)
    # the inner surface alone pushes outwards: its resultant is p × (projected area) in
    # the +x and +y directions: p · a · H for each (quarter of a cylinder of radius a)
    inner = np.flatnonzero(np.isclose(np.linalg.norm(mesh.points[:, :2], axis=1), 10.0))
    fi = fb.surface_load(mesh, inner, pressure=10.0)
    # the curved tri6 faces interpolate the circle (not exact): the projected area of the
    # interpolated surface equals a·H exactly anyway, because its end points lie on the
    # symmetry planes at r = a (the projection of any surface spanning them is a × H)
    np.testing.assert_allclose(fi.sum(0), [10.0 * 10.0 * 3.0, 10.0 * 10.0 * 3.0, 0.0],
                               rtol=1e-12, atol=1e-10)


def test_tri6_consistent_loads_go_to_midside_nodes():
    """Uniform traction on a flat tri6: corners get 0, each mid-side node A/3 (closed form)."""
    mesh = fb.box_mesh((1, 1, 1), size=(1.0, 2.0, 3.0), cell_type="tet10")
    face = np.flatnonzero(np.isclose(mesh.points[:, 0], 1.0))
    f = fb.surface_load(mesh, face, traction=(1.0, 0.0, 0.0))[:, 0]
    tri_area = 0.5 * 2.0 * 3.0
    pts = mesh.points[face]
    corner = np.isclose(pts[:, 1] % 2.0, 0.0) & np.isclose(pts[:, 2] % 3.0, 0.0)
    np.testing.assert_allclose(f[face[corner]], 0.0, atol=1e-14)
    # edge mid-sides on the outline belong to one triangle, the diagonal's to two
    centre = np.isclose(pts[:, 1], 1.0) & np.isclose(pts[:, 2], 1.5)
    edge = ~corner & ~centre
    np.testing.assert_allclose(f[face[edge]], tri_area / 3, rtol=1e-12)
    np.testing.assert_allclose(f[face[centre]], 2 * tri_area / 3, rtol=1e-12)


def test_quad4_consistent_loads_share_area_by_quarters():
    mesh = fb.box_mesh((1, 2, 2), size=(1.0, 2.0, 4.0), cell_type="hex8")
    face = np.flatnonzero(np.isclose(mesh.points[:, 0], 1.0))
    f = fb.surface_load(mesh, face, traction=(0.0, 0.0, -3.0))[face, 2]
    a_elem = 1.0 * 2.0
    # per node: −3 × a_elem/4 × (number of face elements sharing it: 1 corner, 2 edge, 4 centre)
    y, z = mesh.points[face, 1], mesh.points[face, 2]
    shared = (1 + np.isclose(y, 1.0)) * (1 + np.isclose(z, 2.0))
    np.testing.assert_allclose(f, -3.0 * a_elem / 4 * shared, rtol=1e-12)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_uniaxial_bar_end_traction_gives_exact_stress(cell_type):
    """σ = t·e_x·e_x exactly in every element of a distorted bar pulled by an end traction."""
    L = (4.0, 1.0, 1.0)
    mesh = jittered_box((4, 2, 2), cell_type, size=L, amplitude=0.2, seed=3)
    E, nu, t = 1500.0, 0.3, 5.0
    end = fb.nodes_on_plane(mesh, "x", "max")
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes)
           .fix(fb.nodes_on_plane(mesh, "x", "min"), "x")
           .fix(fb.nodes_on_plane(mesh, "y", "min"), "y")
           .fix(fb.nodes_on_plane(mesh, "z", "min"), "z")
           .add_nodal_forces(fb.surface_load(mesh, end, traction=(t, 0.0, 0.0))))
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(E, nu=nu, n_elements=mesh.n_elements)
    sol = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-12))
    stress = np.asarray(fb.element_fields(model, mat, sol.u).stress)
    expected = np.zeros((3, 3))
    expected[0, 0] = t
    # round-off: PCG rtol 1e-12 × condition number (≲ 1e3 on 100s of dofs) relative to t
    np.testing.assert_allclose(stress, np.broadcast_to(expected, stress.shape), rtol=0,
                               atol=1e-8 * t)
    u = np.asarray(sol.u)
    x, y, z = mesh.points.T
    exact = np.stack([t * x / E, -nu * t * y / E, -nu * t * z / E], axis=1)
    np.testing.assert_allclose(u, exact, rtol=0, atol=1e-8 * t * L[0] / E)

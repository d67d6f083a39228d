"""Mesh file round trips (VTU, XDMF, Gmsh .msh, Abaqus .inp) and rejection of meshes febone
cannot solve. The reference is the mesh before writing; anything that changes points, cells,
node order or data on the way through a file fails these tests."""
import meshio
import numpy as np
import pytest

import febone as fb
from febone.mesh import MeshError

FORMATS = ["vtu", "xdmf", "msh", "inp"]
KEEPS_DATA = {"vtu", "xdmf"}  # Gmsh/Abaqus are written geometry-only by fb.write_mesh
CELL_TYPES = {"tet4": "tetra", "tet10": "tetra10", "hex8": "hexahedron"}


def _mesh(cell_type: str) -> fb.Mesh:
    """A 2×1×1 box, with tet10 midside nodes moved off the straight edges (curved elements),
    so that a swapped midside node changes element volumes instead of hiding by symmetry."""
    mesh = fb.box_mesh((2, 1, 1), size=(2.0, 1.0, 1.5), cell_type=cell_type, origin=(0.5, -1, 0))
    pts = mesh.points.copy()
    if cell_type == "tet10":
        mid = np.unique(mesh.cells[:, 4:])
        rng = np.random.default_rng(0)
        pts[mid] += 0.04 * rng.standard_normal((mid.size, 3))  # 4 % of the shortest edge
    pd = {"mask": (pts[:, 0] < 1.0).astype(np.int32), "E_node": 100.0 + pts[:, 2]}
    cd = {"E_MPa": 500.0 + np.arange(mesh.n_elements, dtype=float)}
    return fb.Mesh.create(pts, mesh.cells, cell_type, pd, cd)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cell_type", list(CELL_TYPES))
def test_round_trip(tmp_path, fmt, cell_type):
    mesh = _mesh(cell_type)
    path = fb.write_mesh(tmp_path / f"m.{fmt}", mesh)
    back = fb.read_mesh(path)  # validates: orientation, unused nodes, NaN
    assert back.cell_type == CELL_TYPES[cell_type]
    # ASCII formats print coordinates with ≥ 12 significant digits
    np.testing.assert_allclose(back.points, mesh.points, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(back.cells, mesh.cells)  # node order preserved exactly
    vol0 = fb.FEModel.from_mesh(mesh).volumes
    np.testing.assert_allclose(fb.FEModel.from_mesh(back).volumes, vol0, rtol=1e-10)
    if cell_type != "tet10":  # straight-sided elements fill the box exactly, mm³
        np.testing.assert_allclose(np.sum(vol0), 2.0 * 1.0 * 1.5, rtol=1e-12)
    if fmt in KEEPS_DATA:
        for name, a in mesh.point_data.items():
            np.testing.assert_array_equal(np.asarray(back.point_data[name]).ravel(), a)
        np.testing.assert_array_equal(np.asarray(back.cell_data["E_MPa"]).ravel(),
                                      mesh.cell_data["E_MPa"])


def test_tet10_from_gmsh_keeps_vtk_node_order(tmp_path):
    """Gmsh numbers the last two tet10 edges (2-3, 1-3) the other way round from VTK; meshio
    must permute them on both write and read. Check against the raw Gmsh file too."""
    mesh = _mesh("tet10")
    path = fb.write_mesh(tmp_path / "m.msh", mesh)
    raw = meshio.read(path)  # meshio's view, already permuted back
    back = fb.read_mesh(path)
    np.testing.assert_array_equal(back.cells, mesh.cells)
    # independent check of edge midpoints: node 8 lies on edge 1-3, node 9 on edge 2-3 (VTK);
    # midside nodes moved ≤ ~0.15 mm off the midpoint, edges here are ≥ 0.5 mm apart
    p = back.points[back.cells]
    for k, (a, b) in {4: (0, 1), 5: (1, 2), 6: (2, 0), 7: (0, 3), 8: (1, 3), 9: (2, 3)}.items():
        d = np.linalg.norm(p[:, k] - 0.5 * (p[:, a] + p[:, b]), axis=1)
        assert d.max() < 0.25, f"tet10 node {k} is not near the midpoint of edge {a}-{b}"
    assert raw.cells[0].type == "tetra10"


@pytest.mark.parametrize("fmt", ["vtu", "xdmf"])
def test_uint8_node_set_masks_survive(tmp_path, fmt):
    # meshio's XDMF writer has no uint8 type: write_mesh widens 8-bit masks to int32
    mesh = _mesh("tet4")
    mask = (mesh.points[:, 2] == 0).astype(np.uint8)
    back = fb.read_mesh(fb.write_mesh(tmp_path / f"m.{fmt}", mesh, point_data={"base": mask}))
    np.testing.assert_array_equal(fb.node_set(back, "base"), np.flatnonzero(mask))


@pytest.mark.parametrize("fmt", ["vtu", "msh"])
def test_lower_dimensional_blocks_are_ignored(tmp_path, fmt):
    mesh = _mesh("tet4")
    faces, _ = fb.mesh.boundary_faces(mesh)
    m = meshio.Mesh(mesh.points, [("triangle", faces), ("tetra", mesh.cells),
                                  ("line", faces[:, :2])],
                    cell_data={"region": [np.full(len(faces), 7), np.arange(mesh.n_elements),
                                          np.full(len(faces), 9)]})
    path = tmp_path / f"m.{fmt}"
    if fmt == "msh":
        m.cell_data = {"gmsh:physical": m.cell_data["region"],
                       "gmsh:geometrical": m.cell_data["region"]}
        meshio.write(path, m, file_format="gmsh22", binary=False)
    else:
        meshio.write(path, m)
    back = fb.read_mesh(path)
    assert back.cell_type == "tetra" and back.n_elements == mesh.n_elements
    np.testing.assert_array_equal(back.cells, mesh.cells)
    if fmt == "vtu":  # the volume block's own cell data, not the faces'
        np.testing.assert_array_equal(np.ravel(back.cell_data["region"]), np.arange(mesh.n_elements))
    else:  # gmsh bookkeeping tags are dropped
        assert not any(k.startswith("gmsh:") for k in back.cell_data)


def test_mixed_cell_types_are_rejected(tmp_path):
    tet, hexa = _mesh("tet4"), _mesh("hex8")
    # hexes shifted beside the tets, sharing no nodes
    pts = np.concatenate([tet.points, hexa.points + [10.0, 0, 0]])
    m = meshio.Mesh(pts, [("tetra", tet.cells), ("hexahedron", hexa.cells + tet.n_nodes)])
    meshio.write(tmp_path / "mixed.vtu", m)
    with pytest.raises(MeshError, match=r"mixed volume cell types \['hexahedron', 'tetra'\].*"
                                        r"split or convert"):
        fb.read_mesh(tmp_path / "mixed.vtu")


def test_unknown_cell_type_is_rejected(tmp_path):
    # one wedge (triangular prism)
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]], float)
    meshio.write(tmp_path / "wedge.vtu", meshio.Mesh(pts, [("wedge", np.arange(6)[None])]))
    with pytest.raises(MeshError, match=r"unsupported cell type\(s\) \['wedge'\].*tetra.*"
                                        r"tetra10.*hexahedron.*convert"):
        fb.read_mesh(tmp_path / "wedge.vtu")


def test_surface_only_mesh_is_rejected(tmp_path):
    mesh = _mesh("tet4")
    faces, _ = fb.mesh.boundary_faces(mesh)
    meshio.write(tmp_path / "skin.vtu", meshio.Mesh(mesh.points, [("triangle", faces)]))
    with pytest.raises(MeshError, match=r"no volume cells .*triangle.*needs tetra"):
        fb.read_mesh(tmp_path / "skin.vtu")


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "garbage.vtu"
    bad.write_text("this is not a VTU file")
    with pytest.raises((MeshError, ValueError), match="garbage.vtu"):
        fb.read_mesh(bad)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fb.read_mesh("no/such/mesh.vtu")


def test_write_solution_fields_round_trip(tmp_path):
    """febone.io_fields writes u and element fields; reading back gives the arrays written."""
    from febone.io_fields import write_solution

    mesh = _mesh("hex8")
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(mesh.cell_data["E_MPa"], 0.3)
    # an affine field u = G x: strain is sym(G) exactly in every element
    G = np.array([[1e-3, 2e-4, 0], [0, -5e-4, 1e-4], [3e-4, 0, 2e-3]])
    u = mesh.points @ G.T
    path = write_solution(tmp_path / "sol.vtu", mesh, model, mat, u)
    m = meshio.read(path)
    np.testing.assert_allclose(m.point_data["displacement_mm"], u, rtol=1e-15)
    eps = 0.5 * (G + G.T)
    voigt = [eps[0, 0], eps[1, 1], eps[2, 2], eps[1, 2], eps[0, 2], eps[0, 1]]
    np.testing.assert_allclose(m.cell_data["strain"][0], np.tile(voigt, (mesh.n_elements, 1)),
                               atol=1e-15)
    np.testing.assert_array_equal(m.cell_data["E_MPa"][0], mesh.cell_data["E_MPa"])
    np.testing.assert_array_equal(m.point_data["mask"], mesh.point_data["mask"])
    with pytest.raises(ValueError, match=r"displacements must have shape \(12, 3\)"):
        write_solution(tmp_path / "bad.vtu", mesh, model, mat, u[:5])

"""Node sets: named masks, boxes, planes, predicates and the surface, checked against node
counts of a regular grid (closed form), plus the messages for missing and empty sets."""
import numpy as np
import pytest

import febone as fb
from febone.mesh import NodeSetError, named_node_sets

SHAPE = (3, 2, 4)  # hex cells per axis
SIZE = (3.0, 2.0, 4.0)  # mm, 1 mm cells


def _grid(cell_type="hex8"):
    mesh = fb.box_mesh(SHAPE, size=SIZE, cell_type=cell_type)
    p = mesh.points
    return mesh.with_point_data(
        base=(p[:, 2] == 0).astype(np.uint8),
        nothing=np.zeros(mesh.n_nodes, dtype=np.uint8),
        density=np.full(mesh.n_nodes, 0.7),  # not a mask: values other than 0/1
        normals=np.zeros((mesh.n_nodes, 3)),  # not a mask: a vector per node
    )


def test_named_mask_selects_the_nodes_marked_one():
    mesh = _grid()
    ids = fb.node_set(mesh, "base")
    np.testing.assert_array_equal(ids, np.flatnonzero(mesh.points[:, 2] == 0))
    assert ids.size == (SHAPE[0] + 1) * (SHAPE[1] + 1)


def test_named_node_sets_lists_only_masks():
    assert named_node_sets(_grid()) == ["base", "nothing"]


def test_missing_node_set_lists_the_available_ones():
    with pytest.raises(NodeSetError, match=r"no point-data mask 'top'; available node sets: "
                                           r"\['base', 'nothing'\]"):
        fb.node_set(_grid(), "top")


def test_missing_node_set_on_a_mesh_without_masks():
    with pytest.raises(NodeSetError, match=r"no point-data mask 'base'; available node sets: none"):
        fb.node_set(fb.box_mesh((1, 1, 1)), "base")


def test_empty_node_set_is_an_error():
    with pytest.raises(NodeSetError, match=r"node set 'nothing' is empty; the mask has no "
                                           r"nonzero entry"):
        fb.node_set(_grid(), "nothing")


@pytest.mark.parametrize("value, z", [("min", 0.0), ("max", 4.0), (2.0, 2.0)])
def test_nodes_on_plane_count_a_grid_layer(value, z):
    mesh = _grid()
    ids = fb.nodes_on_plane(mesh, "z", value)
    assert ids.size == (SHAPE[0] + 1) * (SHAPE[1] + 1)
    np.testing.assert_array_equal(mesh.points[ids, 2], z)


def test_nodes_on_plane_off_the_mesh_says_where_the_mesh_is():
    with pytest.raises(NodeSetError, match=r"plane x=7.5 is empty; the mesh spans 0.0..3.0 mm "
                                           r"along x"):
        fb.nodes_on_plane(_grid(), 0, 7.5)


def test_nodes_in_box_counts_a_sub_grid():
    mesh = _grid()
    ids = fb.nodes_in_box(mesh, (0.5, -np.inf, 0.9), (2.5, np.inf, 3.1))
    assert ids.size == 2 * (SHAPE[1] + 1) * 3  # x ∈ {1,2}, all y, z ∈ {1,2,3}


def test_empty_box_is_an_error():
    with pytest.raises(NodeSetError, match=r"box .* is empty; the mesh spans"):
        fb.nodes_in_box(_grid(), (10, 10, 10), (11, 11, 11))


def test_nodes_where_and_its_checks():
    mesh = _grid()
    ids = fb.nodes_where(mesh, lambda p: p[:, 0] + p[:, 1] <= 1.0)
    # (x, y) ∈ {(0,0), (1,0), (0,1)} on each of the 5 z-layers
    assert ids.size == 3 * (SHAPE[2] + 1)
    with pytest.raises(NodeSetError, match="predicate is false everywhere"):
        fb.nodes_where(mesh, lambda p: p[:, 0] < -1)
    with pytest.raises(ValueError, match=r"must return a \(60,\) boolean mask"):
        fb.nodes_where(mesh, lambda p: p[:, :2] > 0)


@pytest.mark.parametrize("cell_type", ["hex8", "tet4"])
def test_surface_nodes_are_all_but_the_interior_grid(cell_type):
    mesh = _grid(cell_type)  # the Kuhn tet split adds no nodes
    ids = fb.surface_node_set(mesh)
    nx, ny, nz = SHAPE
    assert ids.size == mesh.n_nodes - (nx - 1) * (ny - 1) * (nz - 1)
    p = mesh.points[ids]
    on_face = np.any((p == 0) | (p == np.array(SIZE)), axis=1)
    assert on_face.all()


def test_boundary_conditions_reject_an_empty_node_list():
    bcs = fb.BoundaryConditions.empty(8)
    with pytest.raises(ValueError, match="empty node set"):
        bcs.fix(np.array([], dtype=int), "xyz")
    with pytest.raises(ValueError, match=r"node ids must lie in 0..7"):
        bcs.fix([3, 8], "z")

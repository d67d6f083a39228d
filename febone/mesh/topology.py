"""Mesh topology computed once on the host: boundary faces, connected components."""
from __future__ import annotations

import numpy as np

from .mesh import Mesh

__all__ = ["boundary_faces", "surface_nodes", "connected_components"]


def boundary_faces(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Faces that belong to exactly one element (the outer surface and inner cavities).

    Returns:
        faces: (n_faces, nodes_per_face) node ids in the face element's order, outward normal.
        owner: (n_faces,) id of the element each face belongs to.
    """
    local = mesh.element.faces  # (n_local_faces, nodes_per_face)
    n_corners = 3 if mesh.element.face_type.startswith("triangle") else 4
    faces = mesh.cells[:, local]  # (ne, nf, npf)
    nf = local.shape[0]
    flat = faces.reshape(-1, local.shape[1])
    key = np.sort(flat[:, :n_corners], axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    single = counts[inverse.ravel()] == 1
    owner = np.repeat(np.arange(mesh.n_elements), nf)
    return flat[single], owner[single]


def surface_nodes(mesh: Mesh) -> np.ndarray:
    """Sorted ids of the nodes on the boundary faces."""
    faces, _ = boundary_faces(mesh)
    return np.unique(faces)


def connected_components(cells: np.ndarray, n_nodes: int) -> np.ndarray:
    """(n_nodes,) component label per node (nodes joined through shared elements).

    Args:
        cells: (n_elements, n_en) connectivity.
        n_nodes: number of nodes.


    Labels are the smallest node id in each component; unused nodes are their own component.
    Vectorised min-label propagation with pointer jumping; converges in O(log n) sweeps for
    typical meshes.
    """
    label = np.arange(n_nodes)
    cells = np.asarray(cells)
    while True:
        cell_min = label[cells].min(axis=1)
        new = label.copy()
        np.minimum.at(new, cells.ravel(), np.repeat(cell_min, cells.shape[1]))
        new = new[new]  # pointer jumping
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new

"""Meshes: the Mesh pytree, reference elements, file I/O, validation, node sets, structured
generators."""
from .elements import ELEMENTS, ReferenceElement, element
from .io import from_meshio, read_mesh, to_meshio, write_mesh
from .mesh import Mesh
from .nodesets import (NodeSetError, named_node_sets, node_set, nodes_in_box, nodes_on_plane,
                       nodes_where, surface_node_set)
from .structured import box_mesh
from .topology import boundary_faces, connected_components
from .validate import MeshError, jacobian_determinants, remove_unused_nodes, validate_mesh

__all__ = ["Mesh", "ELEMENTS", "ReferenceElement", "element", "read_mesh", "write_mesh",
           "from_meshio", "to_meshio", "NodeSetError", "named_node_sets", "node_set",
           "nodes_in_box", "nodes_on_plane", "nodes_where", "surface_node_set", "box_mesh",
           "boundary_faces", "connected_components", "MeshError", "jacobian_determinants",
           "remove_unused_nodes", "validate_mesh"]

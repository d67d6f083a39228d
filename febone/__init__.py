"""febone: bone stiffness and strength with a differentiable JAX finite-element core.

Units throughout: mm, N, MPa, g/cm³. The package never changes global JAX flags; call
``jax.config.update("jax_enable_x64", True)`` in your script (the CLI does) for float64.
"""
from .device import device_description, runtime_info
from .fe import (BoundaryConditions, ElementFields, FEModel, element_fields, reaction_forces,
                 surface_load)
from .material import LinearElastic, PowerLaw, density_law, hu_to_density
from .mesh import (Mesh, box_mesh, node_set, nodes_in_box, nodes_on_plane, nodes_where, read_mesh,
                   surface_node_set, write_mesh)
from .solve import AMG, PCG, ConvergenceError, Solution, SolveStats, UnderConstrainedError, solve
from .voxel import compress

__version__ = "0.1.0"

__all__ = ["Mesh", "read_mesh", "write_mesh", "box_mesh", "node_set", "nodes_in_box",
           "nodes_on_plane", "nodes_where", "surface_node_set", "FEModel", "BoundaryConditions",
           "surface_load", "LinearElastic", "PowerLaw", "density_law", "hu_to_density", "solve",
           "PCG", "AMG", "Solution", "SolveStats", "ConvergenceError", "UnderConstrainedError",
           "ElementFields", "element_fields", "reaction_forces", "device_description",
           "runtime_info", "compress", "__version__"]

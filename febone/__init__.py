"""febone: bone stiffness and strength with a differentiable JAX finite-element core.

Units throughout: mm, N, MPa, g/cm³. The package never changes global JAX flags; call
``jax.config.update("jax_enable_x64", True)`` in your script (the CLI does) for float64.

Next to the FE layer (meshes, materials, boundary conditions, :func:`solve`), ``febone`` offers
the product's tasks:

* strength: :func:`febone.strength.strength`, as
  ``fb.strength.strength(mesh, fb.strength.stance())``, and :class:`StrengthResult`;
* compression of a micro-CT specimen: :func:`compress`, :class:`CompressionResult`;
* remodelling: :func:`run_scenario` (:func:`load_scenario`, :func:`protocol`),
  :func:`febone.remodel.remodel` for one bone, :class:`ScenarioResult`, :class:`RemodelResult`;
* differentiable studies: :func:`build_study`, :func:`forward`.

The packages above the FE layer (``strength``, ``remodel``, ``scenario``, ``study``) and the
names taken from them are imported on first use, so ``import febone`` stays cheap.
"""
from .device import device_description, runtime_info
from .fe import (BoundaryConditions, ElementFields, FEModel, element_fields, reaction_forces,
                 surface_load)
from .material import LinearElastic, PowerLaw, density_law, hu_to_density
from .mesh import (Mesh, box_mesh, node_set, nodes_in_box, nodes_on_plane, nodes_where, read_mesh,
                   surface_node_set, write_mesh)
from .solve import AMG, PCG, ConvergenceError, Solution, SolveStats, UnderConstrainedError, solve
from .voxel import CompressionResult, compress

__version__ = "0.1.0"

__all__ = ["Mesh", "read_mesh", "write_mesh", "box_mesh", "node_set", "nodes_in_box",
           "nodes_on_plane", "nodes_where", "surface_node_set", "FEModel", "BoundaryConditions",
           "surface_load", "LinearElastic", "PowerLaw", "density_law", "hu_to_density", "solve",
           "PCG", "AMG", "Solution", "SolveStats", "ConvergenceError", "UnderConstrainedError",
           "ElementFields", "element_fields", "reaction_forces", "device_description",
           "runtime_info", "compress", "CompressionResult", "__version__", "strength",
           "StrengthResult", "remodel", "run_scenario", "ScenarioResult", "RemodelResult",
           "scenario", "load_scenario", "protocol", "study", "build_study", "forward"]

#: names imported on first use -> the package that holds them (a package stands for itself)
_LAZY = {"strength": "strength", "StrengthResult": "strength",
         "remodel": "remodel", "run_scenario": "remodel", "ScenarioResult": "remodel",
         "RemodelResult": "remodel",
         "scenario": "scenario", "load_scenario": "scenario", "protocol": "scenario",
         "study": "study", "build_study": "study", "forward": "study"}


def __getattr__(name: str):
    """The tasks above the FE layer (see the module docstring), imported on first use."""
    # `import febone.x as package`, not `from . import x`: the latter asks this module for `x`
    # first, which would come back here
    where = _LAZY.get(name)
    if where == "strength":
        import febone.strength as package
    elif where == "remodel":
        import febone.remodel as package
    elif where == "scenario":
        import febone.scenario as package
    elif where == "study":
        import febone.study as package
    else:
        raise AttributeError(f"module 'febone' has no attribute {name!r}")
    return package if name == where else getattr(package, name)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

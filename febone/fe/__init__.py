"""Finite elements: reference elements, geometry, matrix-free elasticity, loads, fields."""
from .bc import BoundaryConditions, surface_load
from .elasticity import internal_force, stiffness_diagonal
from ..mesh.elements import ELEMENTS, element
from .model import FEModel
from .post import ElementFields, element_fields, reaction_forces, von_mises

__all__ = ["BoundaryConditions", "surface_load", "internal_force", "stiffness_diagonal",
           "ELEMENTS", "element", "FEModel", "ElementFields", "element_fields",
           "reaction_forces", "von_mises"]

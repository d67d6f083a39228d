"""Writing a solved model to a VTU file: displacements, element fields and the mesh's own data."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .fe.model import FEModel
from .fe.post import element_fields
from .material.elastic import LinearElastic
from .mesh.io import write_mesh
from .mesh.mesh import Mesh

__all__ = ["solution_fields", "write_solution"]

log = logging.getLogger(__name__)


def solution_fields(model: FEModel, material: LinearElastic, u, *, reactions=None):
    """Point and cell data describing a solution, ready for :func:`febone.write_mesh`.

    Args:
        model: the :class:`FEModel` the solution was computed on.
        material: the :class:`LinearElastic` material, ``E: (n_elements,)`` MPa.
        u: (n_nodes, 3) displacements, mm.
        reactions: optional (n_nodes, 3) nodal reaction forces, N.

    Returns:
        ``(point_data, cell_data)`` dicts of NumPy arrays:
        point data ``displacement_mm`` (n_nodes, 3) and ``reaction_N`` (n_nodes, 3) if given;
        cell data ``strain`` and ``stress_MPa`` (n_elements, 6) in Voigt order
        (xx, yy, zz, yz, xz, xy), ``von_mises_MPa`` (n_elements,), ``principal_strain`` and
        ``principal_stress_MPa`` (n_elements, 3) largest first, ``sed_MPa`` (n_elements,)
        strain energy density (MPa = mJ/mm³), and ``youngs_modulus_MPa`` (n_elements,), the
        modulus the solve used.
    """
    u = np.asarray(u, dtype=np.float64)
    if u.shape != (model.n_nodes, 3):
        raise ValueError(f"displacements must have shape ({model.n_nodes}, 3) mm; got {u.shape}")
    point_data = {"displacement_mm": u}
    if reactions is not None:
        reactions = np.asarray(reactions, dtype=np.float64)
        if reactions.shape != (model.n_nodes, 3):
            raise ValueError(f"reactions must have shape ({model.n_nodes}, 3) N; got "
                             f"{reactions.shape}")
        point_data["reaction_N"] = reactions
    cell_data = {k: np.asarray(v, dtype=np.float64)
                 for k, v in element_fields(model, material, u).as_cell_data().items()}
    cell_data["youngs_modulus_MPa"] = np.broadcast_to(
        np.asarray(material.E, dtype=np.float64), (model.n_elements,)).copy()
    return point_data, cell_data


def write_solution(path, mesh: Mesh, model: FEModel, material: LinearElastic, u, *,
                   reactions=None) -> Path:
    """Write ``mesh`` with its own point/cell data plus the solution fields to ``path``.

    Args:
        path: output file, normally ``*.vtu`` (any format :func:`febone.write_mesh` supports;
            Gmsh/Abaqus keep geometry only).
        mesh: the mesh that was solved (its data arrays are written too).
        model, material, u, reactions: as in :func:`solution_fields` (mm, MPa, N).

    Returns:
        The path written.
    """
    if mesh.n_nodes != model.n_nodes or mesh.n_elements != model.n_elements:
        raise ValueError(f"the mesh ({mesh.n_nodes} nodes, {mesh.n_elements} elements) is not "
                         f"the one the model was built from ({model.n_nodes} nodes, "
                         f"{model.n_elements} elements); pass the solved mesh")
    point_data, cell_data = solution_fields(model, material, u, reactions=reactions)
    out = write_mesh(path, mesh, point_data=point_data, cell_data=cell_data)
    log.info("wrote %s (%d nodes, %d elements)", out, mesh.n_nodes, mesh.n_elements)
    return out

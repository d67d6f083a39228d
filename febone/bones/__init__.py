"""Bundled bones: parametric generators, meshing, DXA-like densitometry and importers.

Generators return an :class:`ImplicitBone` (signed distance + density + regions + node
sets, mm and g/cm³); :func:`mesh_bone` turns one into a hex8 voxel or tet4 mesh with cell
data ``density_g_cm3``, ``E_MPa``, ``region_<name>`` and point-data node sets. The bundled
meshes in ``febone/data/meshes/`` (package data) are made by ``python -m febone.bones.build``.
Importers build the same kind of mesh from closed surfaces (STL/OBJ/PLY) and from
segmentation masks (NIfTI).
"""
from .densitometry import (ArealBMD, REFERENCE_POPULATIONS, areal_bmd, areal_bmd_implicit,
                           t_score, volumetric_bmd)
from .femur import FemurParams, dxa_rotation_deg, femur
from .implicit import ImplicitBone
from .importers import (Surface, SurfaceError, mask_to_mesh, read_mask, read_surface,
                        surface_to_mesh)
from .meshing import mesh_bone, tet4_to_tet10
from .trabecular import TrabecularParams, trabecular_cube
from .vertebra import VertebraParams, vertebra

__all__ = ["ImplicitBone", "FemurParams", "femur", "dxa_rotation_deg", "VertebraParams",
           "vertebra", "TrabecularParams", "trabecular_cube", "mesh_bone", "tet4_to_tet10",
           "ArealBMD", "REFERENCE_POPULATIONS", "areal_bmd", "areal_bmd_implicit",
           "volumetric_bmd", "t_score", "Surface", "SurfaceError", "read_surface",
           "surface_to_mesh", "read_mask", "mask_to_mesh", "load_bundled", "bundled_path"]


def bundled_path(name: str):
    """Path of a bundled mesh, e.g. ``bundled_path("femur_coarse_tet4")`` (mm)."""
    from .build import MESHES_DIR, SPECS

    names = [s.name for s in SPECS]
    stem = name[:-4] if name.endswith(".vtu") else name
    if stem not in names:
        raise ValueError(f"no bundled mesh {name!r}; choose one of {names}")
    path = MESHES_DIR / f"{stem}.vtu"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from this febone install; reinstall febone "
                                f"(pip install --force-reinstall febone), or in a source checkout "
                                f"regenerate the bundled meshes with `python -m febone.bones.build`")
    return path


def load_bundled(name: str):
    """Read a bundled mesh (see meshes/README.md) as a :class:`febone.Mesh`."""
    from ..mesh import read_mesh

    return read_mesh(bundled_path(name))

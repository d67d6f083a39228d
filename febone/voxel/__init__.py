"""Micro-CT voxel finite elements: image loading and segmentation, a structured matrix-free
hex8 operator, geometric multigrid-preconditioned CG, and the uniaxial compression test.

One model can be split over several devices in z-slabs (:mod:`febone.voxel.slabs`,
:mod:`febone.voxel.sharded`: ``compress(..., devices=N)``, :func:`solve_voxel_sharded`).

A grid-aligned hex8 mesh (the bundled bones) maps onto a grid (:func:`mesh_grid`), so
``febone.strength`` solves it here (:mod:`febone.strength.engines`).

Axis order of images: (z, y, x); voxel size (dz, dy, dx) in mm; displacement components
(x, y, z). See :mod:`febone.voxel.grid` for the node and voxel numbering.
"""
from .compress import (CompressionResult, compress, compress_mask, effective_strain,
                       pistoia_failure_load)
from .fields import voxel_fields
from .from_mesh import MeshGrid, NotGridAligned, mesh_grid
from .grid import VoxelGrid, VoxelLevel, VoxelModel
from .image import Segmentation, VoxelImage, largest_component, load_image, otsu_threshold, segment
from .multigrid import Multigrid
from .sharded import compile_sharded_solve, solve_voxel_sharded
from .slabs import Slabs, split_slabs
from .solve import VoxelPCG, check_voxel_supports, compile_voxel_solve, solve_voxel, voxel_reactions

__all__ = ["VoxelGrid", "VoxelLevel", "VoxelModel", "Multigrid", "VoxelPCG", "solve_voxel",
           "voxel_reactions", "compile_voxel_solve", "check_voxel_supports", "VoxelImage",
           "Segmentation", "load_image", "segment", "otsu_threshold", "largest_component",
           "CompressionResult", "compress", "compress_mask", "effective_strain",
           "pistoia_failure_load", "Slabs", "split_slabs", "solve_voxel_sharded",
           "compile_sharded_solve", "MeshGrid", "NotGridAligned", "mesh_grid", "voxel_fields"]

"""Whole-bone strength: load cases, stiffness, linear and nonlinear fracture loads."""
from .analysis import METHODS, StrengthResult, strength
from .geometry import (GEOMETRIC_SETS, Box, cube_node_sets, femur_node_sets,
                       resolve_node_sets, vertebra_node_sets)
from .engines import SOLVERS, UnstructuredEngine, VoxelEngine, build_engine
from .criteria import Pistoia, StrainLimits, effective_strain, failure_load, strain_limit_ratio
from .loadcases import (CASES, LoadCase, Support, rotation, sideways_fall, stance,
                        uniaxial_compression, vertebral_compression)
from .nonlinear import FailureCurve, ProgressiveFailure, progressive_failure, secant_ratio
from .quantile import exceedance_quantile, soft_exceedance_quantile
from .surrogate import fracture_load_surrogate

__all__ = ["strength", "StrengthResult", "METHODS", "Pistoia", "StrainLimits",
           "effective_strain", "failure_load", "strain_limit_ratio", "CASES", "LoadCase",
           "Support", "rotation", "sideways_fall", "stance", "uniaxial_compression",
           "vertebral_compression", "FailureCurve", "ProgressiveFailure", "progressive_failure",
           "secant_ratio", "exceedance_quantile", "soft_exceedance_quantile",
           "fracture_load_surrogate", "Box", "GEOMETRIC_SETS", "cube_node_sets",
           "femur_node_sets", "resolve_node_sets", "vertebra_node_sets", "SOLVERS",
           "UnstructuredEngine", "VoxelEngine", "build_engine"]

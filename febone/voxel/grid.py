"""Voxel geometry: a bone mask on a regular grid and the index data its operator needs.

Conventions (the same everywhere in :mod:`febone.voxel`):

* Image arrays are indexed ``[z, y, x]`` (``image.shape == (nz, ny, nx)``); the voxel size
  is ``(dz, dy, dx)`` in mm, in the same axis order.
* Nodes sit on the voxel corners: a dense node grid of shape ``(nz+1, ny+1, nx+1)``,
  flattened with x fastest (``flat = (k·(ny+1) + j)·(nx+1) + i``), the node numbering of
  :func:`febone.box_mesh` on the same box.
* Only *active* nodes (corners of at least one bone voxel) carry unknowns. Nodal vectors
  are compact ``(n_nodes, 3)`` arrays over the active nodes in flat order, with
  components ``(u_x, u_y, u_z)`` (physical x, y, z, i.e. the reversed array axes).
* Bone voxels are listed in flat (z, y, x) order; per-voxel data are ``(n_voxels,)``.

Neighbours are found by index arithmetic on the dense grid (a node's flat index plus a
fixed offset, looked up in one int32 map); no element connectivity is stored.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["VoxelGrid", "VoxelLevel", "VoxelModel", "CORNERS", "GRID_CORNERS", "GRID_TO_VTK", "AXES",
           "build_levels", "level_masks", "level_children"]

#: array axis of the (z, y, x) image for each physical axis name.
AXES = {"z": 0, "y": 1, "x": 2}

#: hex8 corner offsets (dx, dy, dz) in VTK order, the order of :mod:`febone.mesh.elements`.
CORNERS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                    [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=np.int64)

#: corner offsets (dx, dy, dz) in grid order (z, y, x lexicographic: a = 4·dz + 2·dy + dx),
#: the order the solver uses internally: corners a and a+1 are x-neighbours, hence
#: consecutive in the compact node numbering.
GRID_CORNERS = np.array([[cx, cy, cz] for cz in (0, 1) for cy in (0, 1) for cx in (0, 1)],
                        dtype=np.int64)

#: VTK corner index of each grid-order corner.
GRID_TO_VTK = np.array([int(np.flatnonzero((CORNERS == c).all(1))[0]) for c in GRID_CORNERS])


def _as_voxel_size(voxel_size) -> tuple[float, float, float]:
    v = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,)) if np.ndim(voxel_size) == 0 \
        else np.asarray(voxel_size, dtype=float)
    if v.shape != (3,):
        raise ValueError(f"voxel_size must be a scalar or (dz, dy, dx) in mm; got shape {v.shape}")
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"voxel_size must be positive and finite (mm); got {v.tolist()}")
    return tuple(float(x) for x in v)


def _active_nodes(mask: np.ndarray) -> np.ndarray:
    """(nz+1, ny+1, nx+1) bool: nodes that are a corner of at least one voxel of ``mask``."""
    nz, ny, nx = mask.shape
    act = np.zeros((nz + 1, ny + 1, nx + 1), dtype=bool)
    for cx, cy, cz in CORNERS:
        act[cz:cz + nz, cy:cy + ny, cx:cx + nx] |= mask
    return act


@dataclass(frozen=True)
class VoxelGrid:
    """A bone mask on a regular grid (host geometry, NumPy).

    Attributes:
        mask: (nz, ny, nx) bool, True in bone voxels.
        voxel_size: (dz, dy, dx) voxel edge lengths, mm.
    """

    mask: np.ndarray
    voxel_size: tuple

    @classmethod
    def create(cls, mask, voxel_size) -> "VoxelGrid":
        """Validated grid from a 3-D boolean mask (z, y, x) and a voxel size (mm).

        Raises:
            ValueError: mask not 3-D, empty, or a non-positive voxel size.
        """
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise ValueError(f"a voxel mask must be 3-D (z, y, x); got shape {mask.shape}. "
                             f"Stack 2-D slices into one (nz, ny, nx) array")
        if mask.dtype != bool:
            raise TypeError(f"a voxel mask must be boolean; got {mask.dtype}. Threshold grey "
                            f"values first (febone.voxel.segment)")
        if not mask.any():
            raise ValueError("the voxel mask is empty (no bone voxels); lower the threshold or "
                             "check the image")
        return cls(np.ascontiguousarray(mask), _as_voxel_size(voxel_size))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.mask.shape)

    @property
    def node_shape(self) -> tuple[int, int, int]:
        return tuple(s + 1 for s in self.shape)

    @property
    def n_voxels(self) -> int:
        """Number of bone voxels."""
        return int(np.count_nonzero(self.mask))

    @property
    def active(self) -> np.ndarray:
        """(nz+1, ny+1, nx+1) bool: nodes touching at least one bone voxel."""
        return _active_nodes(self.mask)

    @property
    def bv_tv(self) -> float:
        """Bone volume fraction of the grid box."""
        return float(self.mask.mean())

    def node_flat(self) -> np.ndarray:
        """(n_nodes,) flat dense indices of the active nodes (compact order)."""
        return np.flatnonzero(self.active.ravel())

    def node_ijk(self) -> np.ndarray:
        """(n_nodes, 3) integer (k, j, i) = (z, y, x) grid indices of the active nodes."""
        return np.stack(np.unravel_index(self.node_flat(), self.node_shape), axis=1)

    def node_points(self) -> np.ndarray:
        """(n_nodes, 3) coordinates (x, y, z) of the active nodes, mm (origin at the grid corner)."""
        kji = self.node_ijk()
        dz, dy, dx = self.voxel_size
        return np.stack([kji[:, 2] * dx, kji[:, 1] * dy, kji[:, 0] * dz], axis=1).astype(float)

    def plane_nodes(self, axis: str, side: str) -> np.ndarray:
        """Compact ids of the active nodes on the first (``"min"``) or last (``"max"``) node
        plane normal to ``axis`` (``"x"``, ``"y"`` or ``"z"``).

        Raises:
            ValueError: unknown axis/side, or no bone touches that plane.
        """
        if axis not in AXES:
            raise ValueError(f"axis must be 'x', 'y' or 'z'; got {axis!r}")
        if side not in ("min", "max"):
            raise ValueError(f"side must be 'min' or 'max'; got {side!r}")
        dim = AXES[axis]  # array axis of the node grid
        kji = self.node_ijk()
        target = 0 if side == "min" else self.node_shape[dim] - 1
        ids = np.flatnonzero(kji[:, dim] == target)
        if ids.size == 0:
            raise ValueError(f"no bone touches the {side} {axis}-face of the image: nothing to "
                             f"support or load there; crop the image so bone reaches both faces "
                             f"along {axis}, or choose another axis")
        return ids

    def voxel_nodes(self) -> np.ndarray:
        """(n_voxels, 8) compact node ids of each bone voxel's corners (VTK hex order).

        Host-side helper for output and tests; the solver itself recomputes these by
        index arithmetic and never stores them.
        """
        index = np.full(int(np.prod(self.node_shape)), -1, dtype=np.int64)
        flat = self.node_flat()
        index[flat] = np.arange(flat.size)
        return index[_voxel_base(self.mask)[:, None] + _corner_offsets(self.shape)[None, :]]


def _corner_offsets(shape) -> np.ndarray:
    """(8,) flat dense-node offsets of the 8 voxel corners from corner 0."""
    nz, ny, nx = shape
    return np.array([(cz * (ny + 1) + cy) * (nx + 1) + cx for cx, cy, cz in CORNERS],
                    dtype=np.int64)


def _voxel_base(mask: np.ndarray) -> np.ndarray:
    """(n_voxels,) flat dense index of corner 0 of each bone voxel, in flat voxel order."""
    nz, ny, nx = mask.shape
    k, j, i = np.nonzero(mask)
    return (k * (ny + 1) + j) * (nx + 1) + i


@dataclass(frozen=True)
class VoxelLevel:
    """Index data of one multigrid level (level 0 = the image grid).

    Attributes:
        vox_base: (n_voxels,) int32 flat dense index of corner 0 of each (non-void) voxel.
        node_index: (n_dense_nodes,) int32 dense-to-compact node map (−1 where inactive;
            never read there).
        node_flat: (n_nodes,) int32 flat dense index of each active node.
        children: (n_voxels, 8) int32 compact ids, on the finer level, of the 8 children of
            each voxel in grid order (:data:`GRID_CORNERS`), the finer level's voxel count
            where a child is void; (0, 8) on level 0.
        shape: (nz, ny, nx) voxels of this level's grid (static).
        scale: element size relative to level 0 (2^level); hex8 stiffness scales with it.
    """

    vox_base: jax.Array
    node_index: jax.Array
    node_flat: jax.Array
    children: jax.Array
    shape: tuple
    scale: float

    @property
    def n_nodes(self) -> int:
        return int(self.node_flat.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.vox_base.shape[0])

    @property
    def node_shape(self) -> tuple:
        return tuple(s + 1 for s in self.shape)

    @property
    def offsets(self) -> np.ndarray:
        """(8,) flat dense-node offsets of the voxel corners (VTK order) from corner 0."""
        return _corner_offsets(self.shape)


jax.tree_util.register_dataclass(VoxelLevel, data_fields=["vox_base", "node_index", "node_flat",
                                                          "children"],
                                 meta_fields=["shape", "scale"])


def _level_from_mask(mask: np.ndarray, scale: float, children: np.ndarray) -> VoxelLevel:
    act = _active_nodes(mask).ravel()
    node_flat = np.flatnonzero(act)
    index = np.full(act.size, -1, dtype=np.int32)
    index[node_flat] = np.arange(node_flat.size, dtype=np.int32)
    big = max(act.size, mask.size)
    if big >= 2**31 - 1:
        raise ValueError(f"grid of {big} nodes is too large for 32-bit indices; crop or "
                         f"downsample the image")
    return VoxelLevel(jnp.asarray(_voxel_base(mask), jnp.int32), jnp.asarray(index),
                      jnp.asarray(node_flat, jnp.int32), jnp.asarray(children, jnp.int32),
                      tuple(int(s) for s in mask.shape), float(scale))


def _coarsen(mask: np.ndarray) -> np.ndarray:
    """Coarse mask: a coarse voxel is non-void if any of its 2×2×2 children is (odd sizes
    are padded with void)."""
    pad = [(0, s % 2) for s in mask.shape]
    m = np.pad(mask, pad)
    nz, ny, nx = (s // 2 for s in m.shape)
    return m.reshape(nz, 2, ny, 2, nx, 2).any(axis=(1, 3, 5))


def level_masks(mask: np.ndarray, *, max_coarse_nodes: int = 700,
                max_levels: int | None = None) -> list[np.ndarray]:
    """Bone masks of the multigrid levels (host, NumPy): 2×2×2 coarsening until a level has
    at most ``max_coarse_nodes`` active nodes, ``max_levels`` levels, or one voxel along
    every axis. Arguments as :func:`build_levels`; returns (nz_l, ny_l, nx_l) bool masks,
    fine to coarse."""
    masks = [np.asarray(mask, dtype=bool)]
    cap = max_levels if max_levels is not None else 64
    while int(_active_nodes(masks[-1]).sum()) > max_coarse_nodes and len(masks) < cap \
            and max(masks[-1].shape) > 1:
        masks.append(_coarsen(masks[-1]))
    return masks


def level_children(mask: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """(n_coarse_voxels, 8) compact ids, among the bone voxels of ``mask``, of the 2×2×2
    children of every bone voxel of ``coarse = _coarsen(mask)`` in grid order; the fine
    voxel count where a child is void."""
    n_fine = int(mask.sum())
    padded = np.pad(mask, [(0, s % 2) for s in mask.shape])
    vid = np.full(padded.shape, n_fine, dtype=np.int64)
    vid[:mask.shape[0], :mask.shape[1], :mask.shape[2]][mask] = np.arange(n_fine)
    k, j, i = np.nonzero(coarse)
    return np.stack([vid[2 * k + cz, 2 * j + cy, 2 * i + cx] for cx, cy, cz in GRID_CORNERS],
                    axis=1)


def build_levels(mask: np.ndarray, *, max_coarse_nodes: int = 700,
                 max_levels: int | None = None) -> list[VoxelLevel]:
    """Multigrid hierarchy by 2×2×2 coarsening of the voxel grid (host, NumPy).

    Args:
        mask: (nz, ny, nx) bool bone voxels.
        max_coarse_nodes: stop coarsening once a level has at most this many active nodes
            (its dense Cholesky factor then has at most 3× as many rows).
        max_levels: optional cap on the number of levels (≥ 1).

    Returns:
        Levels from fine (the image) to coarse.
    """
    masks = level_masks(mask, max_coarse_nodes=max_coarse_nodes, max_levels=max_levels)
    levels = [_level_from_mask(masks[0], 1.0, np.zeros((0, 8), np.int32))]
    for fine, coarse in zip(masks[:-1], masks[1:]):
        levels.append(_level_from_mask(coarse, 2.0 * levels[-1].scale,
                                       level_children(fine, coarse)))
    return levels


@dataclass(frozen=True)
class VoxelModel:
    """Everything the compiled voxel solve needs about the geometry (built once per mask).

    Attributes:
        levels: multigrid levels, fine to coarse (:class:`VoxelLevel`).
        voxel_size: (dz, dy, dx) mm of the image grid (static).
        frame: ``None`` (displacement components along the grid's x, y, z) or a 3×3 rotation
            R as a nested tuple (static): components along the rows of R, u = R u_grid at
            every node, e.g. the loading pose of a bone whose grid stays unrotated
            (:meth:`in_frame`). Loads, conditions and answers are all in that frame.
    """

    levels: tuple
    voxel_size: tuple
    frame: tuple | None = None

    @classmethod
    def create(cls, grid: VoxelGrid, *, max_coarse_nodes: int = 700,
               max_levels: int | None = None) -> "VoxelModel":
        """Host precompute of the index maps of every multigrid level (structured, trilinear
        coarse grids; for coarse levels that follow the bone's connectivity see
        :func:`febone.voxel.pieces.voxel_model`)."""
        if not isinstance(grid, VoxelGrid):
            raise TypeError(f"VoxelModel.create expects a VoxelGrid; got {type(grid).__name__}. "
                            f"Build one with VoxelGrid.create(mask, voxel_size)")
        levels = build_levels(grid.mask, max_coarse_nodes=max_coarse_nodes,
                              max_levels=max_levels)
        return cls(tuple(levels), grid.voxel_size)

    def in_frame(self, rotation) -> "VoxelModel":
        """The same model with displacement components along the rows of ``rotation``
        ((3, 3) orthonormal, det +1; identity gives back the grid's axes).

        Raises:
            ValueError: not a proper rotation (to 1e-10).
        """
        R = np.asarray(rotation, dtype=float)
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-10, rtol=0) \
                or not np.linalg.det(R) > 0:
            raise ValueError(f"a voxel model's frame must be a 3×3 rotation (orthonormal, "
                             f"det +1); got {R.tolist()}")
        frame = None if np.array_equal(R, np.eye(3)) else tuple(tuple(float(x) for x in row)
                                                                  for row in R)
        return replace(self, frame=frame)

    @property
    def fine(self) -> VoxelLevel:
        return self.levels[0]

    @property
    def shape(self) -> tuple:
        return self.levels[0].shape

    @property
    def n_nodes(self) -> int:
        return self.levels[0].n_nodes

    @property
    def n_voxels(self) -> int:
        return self.levels[0].n_voxels

    @property
    def n_dofs(self) -> int:
        """3 × active nodes (constrained dofs included)."""
        return 3 * self.n_nodes


jax.tree_util.register_dataclass(VoxelModel, data_fields=["levels"],
                                 meta_fields=["voxel_size", "frame"])

"""One voxel model split into slabs along z, one slab per device (host precompute, NumPy).

Device ``d`` holds the voxel layers ``[d·t, (d+1)·t)`` of the image and the node layers
``d·t … (d+1)·t`` (both ends), on every multigrid level but the coarsest. Nodes of the
interface layer ``(d+1)·t`` are stored by both neighbours; nodal vectors are kept
*consistent* (both copies hold the full value), each node is *owned* by one device (the
upper one where it is active there), and dot products sum owned nodes only
(:mod:`febone.voxel.halo`).

The slab thickness ``t`` is a multiple of 2^L (L + 1 levels), so no coarse voxel of levels
0 … L straddles two slabs: every level's slab is the coarsening of the finer level's slab,
and the levels of the split model are exactly those of :class:`VoxelModel` restricted to
the slab. The coarsest level L is solved replicated: each device maps its slab of level L
to the global compact numbering (``coarse_ids``) and the dense coarse matrix and vector are
summed over the devices.

When ``nz`` is not a multiple of ``n_devices·t`` the image is padded on top with void voxel
layers, which have no nodes and no unknowns (void is never part of a voxel model), so the
global model is unchanged. Per-device arrays are padded to the largest slab: padded voxels
have modulus 0 and read node 0 (they add nothing), padded nodes lie outside the dense grid
(``node_flat`` = the dense node count) and are held fixed at zero.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .grid import (
    VoxelGrid,
    VoxelLevel,
    _active_nodes,
    _voxel_base,
    level_children,
    level_masks,
)

__all__ = ["SlabModel", "Slabs", "split_slabs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlabHalo:
    """Per-device halo data of one sharded level (arrays carry a leading device axis).

    Attributes:
        top: (n_layer,) int32 local compact id of each node of the slab's top node layer
            (dense layer order, x fastest); the padded node count where inactive.
        bottom: (n_layer,) the same for the bottom node layer.
        own: (n_nodes,) float64 1 on the nodes this device owns, 0 on interface copies
            owned by the upper neighbour and on padded nodes.
        ids: (n_nodes,) int32 global compact id of each local node on this level (the
            global node count on padded nodes).
    """

    top: jax.Array
    bottom: jax.Array
    own: jax.Array
    ids: jax.Array


jax.tree_util.register_dataclass(SlabHalo, data_fields=["top", "bottom", "own", "ids"],
                                 meta_fields=[])


@dataclass(frozen=True)
class SlabModel:
    """The device-side index data of a split model (a pytree; every array has a leading
    axis of ``n_devices``, sharded over the devices).

    Attributes:
        levels: :class:`VoxelLevel` per level 0 … L of each slab (padded, stacked).
        halos: :class:`SlabHalo` per level 0 … L (on level L only ``ids`` is used: the
            global compact ids of the replicated coarsest level).
        voxel_size: (dz, dy, dx) mm (static).
        level_nodes: active nodes of each level of the global model (static).
    """

    levels: tuple
    halos: tuple
    voxel_size: tuple
    level_nodes: tuple

    @property
    def n_coarse(self) -> int:
        """Active nodes of the global coarsest level (solved replicated)."""
        return self.level_nodes[-1]

    @property
    def n_devices(self) -> int:
        return int(self.levels[0].vox_base.shape[0])


jax.tree_util.register_dataclass(SlabModel, data_fields=["levels", "halos"],
                                 meta_fields=["voxel_size", "level_nodes"])


@dataclass(frozen=True)
class Slabs:
    """A voxel model split into z-slabs: the device index data and the host maps between
    global (compact) and per-device (padded) arrays.

    Attributes:
        model: :class:`SlabModel`.
        node_ids: (n_devices, n_nodes_max) int64 global compact node id of each local fine
            node, −1 on padding.
        voxel_ids: (n_devices, n_voxels_max) int64 global bone-voxel id, −1 on padding.
        owner: (n_devices, n_nodes_max) bool, the device stores the node and owns it.
        slab_voxels: voxel layers per slab, t.
        n_nodes, n_voxels: of the global model.
        n_levels: multigrid levels (the coarsest replicated).
    """

    model: SlabModel
    node_ids: np.ndarray
    voxel_ids: np.ndarray
    owner: np.ndarray
    slab_voxels: int
    n_nodes: int
    n_voxels: int
    n_levels: int

    @property
    def n_devices(self) -> int:
        return int(self.node_ids.shape[0])

    def split_voxels(self, values, fill=0.0) -> np.ndarray:
        """(n_voxels, ...) global per-voxel data -> (n_devices, n_voxels_max, ...)."""
        return _split(np.asarray(values), self.voxel_ids, fill)

    def split_nodes(self, values, fill=0.0) -> np.ndarray:
        """(n_nodes, ...) global nodal data -> (n_devices, n_nodes_max, ...) (interface nodes
        copied to both neighbours)."""
        return _split(np.asarray(values), self.node_ids, fill)

    def join_nodes(self, local) -> np.ndarray:
        """(n_devices, n_nodes_max, ...) consistent nodal data -> (n_nodes, ...) global."""
        local = np.asarray(local)
        out = np.zeros((self.n_nodes,) + local.shape[2:], local.dtype)
        out[self.node_ids[self.owner]] = local[self.owner]
        return out

    def join_voxels(self, local) -> np.ndarray:
        """(n_devices, n_voxels_max, ...) -> (n_voxels, ...) global."""
        local = np.asarray(local)
        real = self.voxel_ids >= 0
        out = np.zeros((self.n_voxels,) + local.shape[2:], local.dtype)
        out[self.voxel_ids[real]] = local[real]
        return out


def _split(values: np.ndarray, ids: np.ndarray, fill) -> np.ndarray:
    out = np.full(ids.shape + values.shape[1:], fill, dtype=values.dtype)
    real = ids >= 0
    out[real] = values[ids[real]]
    return out


def _compact_index(mask: np.ndarray) -> np.ndarray:
    """Dense-node -> compact-id map (−1 where inactive) of a mask, flat."""
    act = _active_nodes(mask).ravel()
    index = np.full(act.size, -1, dtype=np.int64)
    index[act] = np.arange(int(act.sum()))
    return index


def split_slabs(grid: VoxelGrid, n_devices: int, *, max_coarse_nodes: int = 700,
                max_levels: int | None = None) -> Slabs:
    """Split a voxel model into ``n_devices`` z-slabs (host precompute).

    Args:
        grid: the bone mask (its levels are those of ``VoxelModel.create(grid, ...)`` with
            the same ``max_coarse_nodes`` and ``max_levels``).
        n_devices: number of slabs (≥ 2).

    Raises:
        ValueError: fewer than 2 devices, fewer than 2 voxel layers per device, or a model
            with a single multigrid level (nothing to split: solve it on one device).
    """
    if int(n_devices) != n_devices or n_devices < 2:
        raise ValueError(f"a split model needs at least 2 devices; got {n_devices} (use the "
                         f"one-device solve, febone.voxel.solve_voxel)")
    n_devices = int(n_devices)
    nz = grid.shape[0]
    if nz < 2 * n_devices:
        raise ValueError(f"{n_devices} devices need slabs of ≥ 2 voxel layers, but the image has "
                         f"{nz} layers along z; use at most {nz // 2} devices")
    masks = level_masks(grid.mask, max_coarse_nodes=max_coarse_nodes, max_levels=max_levels)
    n_levels = len(masks)
    if n_levels < 2:
        raise ValueError(f"the model has a single multigrid level (≤ {max_coarse_nodes} active "
                         f"nodes): too small to split over devices; solve it on one device")
    step = 2 ** (n_levels - 1)
    t = step * -(-nz // (n_devices * step))
    if (n_devices - 1) * t >= nz:
        log.warning("slabs of %d voxel layers (a multiple of 2^%d for the multigrid levels): "
                    "the top slab of %d devices holds only void", t, n_levels - 1, n_devices)
    padded = np.pad(grid.mask, [(0, n_devices * t - nz), (0, 0), (0, 0)])
    gmasks = level_masks(padded, max_coarse_nodes=-1, max_levels=n_levels)
    for m, g in zip(masks, gmasks):  # void padding on top changes no level
        if not (g[:m.shape[0]] == m).all() or g[m.shape[0]:].any():
            raise RuntimeError("internal: void padding changed a multigrid level")
    voxel_vid = np.full(padded.shape, -1, dtype=np.int64)
    voxel_vid[padded] = np.arange(int(padded.sum()))

    # per level, per device: local masks and arrays before padding
    per_level = []
    for l, gm in enumerate(gmasks):
        tl = t >> l
        gindex = _compact_index(gm)
        layer = gm.shape[1] + 1, gm.shape[2] + 1
        n_layer = layer[0] * layer[1]
        subs = [gm[d * tl:(d + 1) * tl] for d in range(n_devices)]
        fine_subs = None if l == 0 else [gmasks[l - 1][d * 2 * tl:(d + 1) * 2 * tl]
                                         for d in range(n_devices)]
        rows = []
        for d, sub in enumerate(subs):
            index = _compact_index(sub)
            node_flat = np.flatnonzero(index >= 0)
            children = (np.zeros((0, 8), np.int64) if l == 0
                        else level_children(fine_subs[d], sub))
            rows.append({"index": index, "node_flat": node_flat, "vox_base": _voxel_base(sub),
                         "children": children,
                         "n_fine": 0 if l == 0 else int(fine_subs[d].sum()),
                         "ids": gindex[node_flat + d * tl * n_layer]})
        per_level.append((subs, rows, n_layer, int(gindex.max()) + 1))

    levels, halos = [], []
    max_vox_prev = None
    wide = np.dtype(jnp.result_type(float))
    for l, (subs, rows, n_layer, n_global) in enumerate(per_level):
        n_vox = max(1, max(r["vox_base"].size for r in rows))
        n_node = max(2, max(r["node_flat"].size for r in rows))
        n_dense = rows[0]["index"].size
        vox_base = np.zeros((n_devices, n_vox), np.int64)
        node_index = np.zeros((n_devices, n_dense), np.int64)
        node_flat = np.full((n_devices, n_node), n_dense, np.int64)
        children = np.full((n_devices, n_vox if l else 0, 8),
                           max_vox_prev if l else 0, np.int64)
        top = np.full((n_devices, n_layer), n_node, np.int64)
        bottom = np.full((n_devices, n_layer), n_node, np.int64)
        own = np.zeros((n_devices, n_node))
        ids = np.full((n_devices, n_node), n_global, np.int64)
        for d, r in enumerate(rows):
            nv, nn = r["vox_base"].size, r["node_flat"].size
            vox_base[d, :nv] = r["vox_base"]
            node_index[d] = np.maximum(r["index"], 0)  # padded voxels read node 0
            node_flat[d, :nn] = r["node_flat"]
            if l:
                ch = r["children"]
                children[d, :nv] = np.where(ch == r["n_fine"], max_vox_prev, ch)
            bot = r["index"][:n_layer]
            tp = r["index"][-n_layer:]
            bottom[d] = np.where(bot >= 0, bot, n_node)
            top[d] = np.where(tp >= 0, tp, n_node)
            own[d, :nn] = 1.0
            if d + 1 < n_devices:  # the upper neighbour owns the interface nodes it stores
                above = _compact_index(subs[d + 1])[:n_layer] >= 0
                own[d, tp[(tp >= 0) & above]] = 0.0
            ids[d, :nn] = r["ids"]
        shape = tuple(int(s) for s in subs[0].shape)
        # host arrays: place them with place_slabs (each device receives only its slab)
        i32 = np.int32
        levels.append(VoxelLevel(vox_base.astype(i32), node_index.astype(i32),
                                 node_flat.astype(i32), children.astype(i32), shape, float(2 ** l)))
        halos.append(SlabHalo(top.astype(i32), bottom.astype(i32), own.astype(wide),
                              ids.astype(i32)))
        max_vox_prev = n_vox
        if l == 0:
            fine_rows, fine_own, n_nodes0 = rows, own, n_global
    node_ids = np.full(fine_own.shape, -1, np.int64)
    voxel_ids = np.full((n_devices, int(levels[0].vox_base.shape[1])), -1, np.int64)
    for d, r in enumerate(fine_rows):
        node_ids[d, :r["ids"].size] = r["ids"]
        sub_vid = voxel_vid[d * t:(d + 1) * t]
        v = sub_vid[sub_vid >= 0]
        voxel_ids[d, :v.size] = v
    model = SlabModel(tuple(levels), tuple(halos), grid.voxel_size,
                      tuple(p[3] for p in per_level))
    return Slabs(model, node_ids, voxel_ids, fine_own > 0, t, n_nodes0, grid.n_voxels, n_levels)

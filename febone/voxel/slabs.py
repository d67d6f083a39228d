"""One voxel model split into slabs along z, one slab per device (host precompute, NumPy).

Device ``d`` holds the voxel layers ``[d·t, (d+1)·t)`` of the image and the node layers
``d·t … (d+1)·t`` (both ends), on the fine multigrid levels 0 … m−1. Nodes of the
interface layer ``(d+1)·t`` are stored by both neighbours; nodal vectors are kept
*consistent* (both copies hold the full value), each node is *owned* by one device (the
upper one where it is active there), and dot products sum owned nodes only
(:mod:`febone.voxel.halo`).

The slab thickness ``t`` is a multiple of 2^m, so no coarse voxel of levels 0 … m straddles
two slabs: every level's slab is the coarsening of the finer level's slab, and the split
levels are exactly those of :class:`VoxelModel` restricted to the slab. The coarse levels
m … L (``split_levels`` = m, 3 by default, at most L) are replicated: every device holds
them whole, as the one-device solve does. Each device maps its slab of level m to the
global numbering of level m (``SlabHalo.ids`` for nodes, ``SlabHalo.voxels`` for voxels);
level m's element matrices and the vectors that cross between levels m−1 and m are summed
over the devices. m trades the alignment 2^m (padding of the slabs) against the replicated
levels (level 2 holds 1/64 of the fine voxels, as 24×24 matrices; level 3, 1/512).

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
        voxels: on level m, (n_voxels,) int32 global id of each local voxel (the global
            voxel count on padding); (0,) on the other levels.
    """

    top: jax.Array
    bottom: jax.Array
    own: jax.Array
    ids: jax.Array
    voxels: jax.Array


jax.tree_util.register_dataclass(SlabHalo, data_fields=["top", "bottom", "own", "ids", "voxels"],
                                 meta_fields=[])


@dataclass(frozen=True)
class SlabModel:
    """The device-side index data of a split model (a pytree).

    Attributes:
        levels: :class:`VoxelLevel` per level 0 … m of each slab (padded; arrays with a
            leading axis of ``n_devices``, sharded over the devices).
        halos: :class:`SlabHalo` per level 0 … m, stacked like ``levels`` (on level m only
            ``ids`` and ``voxels`` are used: the map to the replicated levels).
        coarse: :class:`VoxelLevel` per level m … L of the whole model (replicated).
        voxel_size: (dz, dy, dx) mm (static).
        level_nodes: active nodes of each level 0 … L of the whole model (static).
    """

    levels: tuple
    halos: tuple
    coarse: tuple
    voxel_size: tuple
    level_nodes: tuple

    @property
    def split_levels(self) -> int:
        """m: the levels 0 … m−1 are split over the devices."""
        return len(self.levels) - 1

    @property
    def n_devices(self) -> int:
        return int(self.levels[0].vox_base.shape[0])


jax.tree_util.register_dataclass(SlabModel, data_fields=["levels", "halos", "coarse"],
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
        n_levels: multigrid levels (levels ``model.split_levels`` … n_levels−1 replicated).
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


def _whole_level(mask: np.ndarray, scale: float, children: np.ndarray) -> VoxelLevel:
    """A replicated level as host arrays (the layout of :class:`VoxelLevel`)."""
    index = _compact_index(mask)
    i32 = np.int32
    return VoxelLevel(_voxel_base(mask).astype(i32), index.astype(i32),
                      np.flatnonzero(index >= 0).astype(i32), children.astype(i32),
                      tuple(int(s) for s in mask.shape), float(scale))


def split_slabs(grid: VoxelGrid, n_devices: int, *, max_coarse_nodes: int = 700,
                max_levels: int | None = None, split_levels: int = 3) -> Slabs:
    """Split a voxel model into ``n_devices`` z-slabs (host precompute).

    Args:
        grid: the bone mask (its levels are those of ``VoxelModel.create(grid, ...)`` with
            the same ``max_coarse_nodes`` and ``max_levels``).
        n_devices: number of slabs (≥ 2).
        split_levels: m, the number of levels split over the devices (at most all but the
            coarsest); the slabs are multiples of 2^m voxel layers, the levels below are
            replicated.

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
    if int(split_levels) != split_levels or split_levels < 1:
        raise ValueError(f"split_levels must be a whole number ≥ 1; got {split_levels}")
    m = min(int(split_levels), n_levels - 1)
    step = 2 ** m
    t = step * -(-nz // (n_devices * step))
    if (n_devices - 1) * t >= nz:
        log.warning("slabs of %d voxel layers (a multiple of 2^%d for the split levels): the "
                    "top slab of %d devices holds only void; use fewer devices or "
                    "split_levels", t, m, n_devices)
    padded = np.pad(grid.mask, [(0, n_devices * t - nz), (0, 0), (0, 0)])
    gmasks = level_masks(padded, max_coarse_nodes=-1, max_levels=m + 1)
    for mk, g in zip(masks, gmasks):  # void padding on top changes no level
        if not (g[:mk.shape[0]] == mk).all() or g[mk.shape[0]:].any():
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
        vid = np.full(gm.shape, -1, dtype=np.int64)  # global voxel ids of this level
        vid[gm] = np.arange(int(gm.sum()))
        rows = []
        for d, sub in enumerate(subs):
            index = _compact_index(sub)
            node_flat = np.flatnonzero(index >= 0)
            children = (np.zeros((0, 8), np.int64) if l == 0
                        else level_children(fine_subs[d], sub))
            sub_vid = vid[d * tl:(d + 1) * tl]
            rows.append({"index": index, "node_flat": node_flat, "vox_base": _voxel_base(sub),
                         "children": children,
                         "n_fine": 0 if l == 0 else int(fine_subs[d].sum()),
                         "ids": gindex[node_flat + d * tl * n_layer],
                         "voxels": sub_vid[sub_vid >= 0]})
        per_level.append((subs, rows, n_layer, int(gindex.max()) + 1, int(gm.sum())))

    levels, halos = [], []
    max_vox_prev = None
    wide = np.dtype(jnp.result_type(float))
    for l, (subs, rows, n_layer, n_global, n_global_vox) in enumerate(per_level):
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
        voxels = np.full((n_devices, n_vox if l == m else 0), n_global_vox, np.int64)
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
            if l == m:
                voxels[d, :nv] = r["voxels"]
        shape = tuple(int(s) for s in subs[0].shape)
        # host arrays: place them with place_slabs (each device receives only its slab)
        i32 = np.int32
        levels.append(VoxelLevel(vox_base.astype(i32), node_index.astype(i32),
                                 node_flat.astype(i32), children.astype(i32), shape, float(2 ** l)))
        halos.append(SlabHalo(top.astype(i32), bottom.astype(i32), own.astype(wide),
                              ids.astype(i32), voxels.astype(i32)))
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
    coarse = [_whole_level(masks[m], 2.0 ** m, np.zeros((0, 8), np.int64))]
    for l in range(m + 1, n_levels):
        coarse.append(_whole_level(masks[l], 2.0 ** l, level_children(masks[l - 1], masks[l])))
    level_nodes = tuple(int(_active_nodes(mk).sum()) for mk in masks)
    model = SlabModel(tuple(levels), tuple(halos), tuple(coarse), grid.voxel_size, level_nodes)
    return Slabs(model, node_ids, voxel_ids, fine_own > 0, t, n_nodes0, grid.n_voxels, n_levels)

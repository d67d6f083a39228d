"""Multigrid coarse spaces that follow the bone's connectivity ("pieces").

The trilinear coarse levels of :mod:`febone.voxel.multigrid` give each coarse grid point one
unknown, shared by all bone inside the coarse cells around it: two trabeculae that pass
through one coarse cell without touching there are glued together on the coarse level, and
a piece of bone hanging on the rest by a thin neck cannot move on its own there. Here, as
in the composite / "topology-preserving" coarse grids of embedded hexahedral FE (Nesme,
Kry, Jeřábková & Faure 2009; Dick, Georgii & Westermann 2011) and the aggregates of
smoothed aggregation AMG, every coarse cell is split into *copies*, one per connected piece
of the bone inside it, and every coarse grid point into *coarse nodes*, one per piece of
bone around it:

* Level 0 is the image grid (its cells are the bone voxels, its nodes the active nodes).
* Cells of level l+1: the 2×2×2 blocks of level-l cells, split into the connected
  components of the graph "two level-l cells of one block share a level-l node".
* Nodes of level l+1: a copy Q has 8 corner *slots*. A level-l node n that is a corner
  of a cell of Q lies, in Q's coarse cell, at t ∈ {0, ½, 1}³; it is interpolated
  trilinearly from the slots of Q with nonzero weight (those on the smallest face, edge or
  vertex holding n). Wherever the same level-l node n is a corner of cells of two copies
  Q, Q', their slots at the same grid point with nonzero weight are identified; the
  equivalence classes (a union-find, ``connected_components``) are the coarse nodes.
  That is exactly what makes the prolongation P *nodal*: every level-l node gets the same
  value from every copy holding it, so Pᵀ A P is still assembled cell by cell
  (Σ_children P_cᵀ K_child P_c) and the Galerkin machinery of :mod:`.multigrid` applies
  unchanged.

Properties (tested in ``tests/test_voxel_coarse_pieces.py``): the coarse space contains the
trilinear one (give every copy of a grid point the same value); on a copy its functions are
trilinear, so a rigid motion of each copy separately (a linear field) is reproduced exactly
on the bone of that copy; bone parts that do not meet inside a coarse cell (nor through its
neighbours' shared faces) get independent coarse unknowns.

Why level 1 never splits: the 8 voxels of a 2×2×2 block all share its centre node. Splits
start at level 2 (4³ voxel blocks), where a coarse grid point's slots may already be apart.

The hierarchy is built once on the host (NumPy/SciPy: sorting and connected components,
about linear in the voxel count), like the structured levels of :mod:`.grid`. On the device
a :class:`PieceLevel` holds explicit corner ids (the structured stride arithmetic of the
fine level does not apply to copies) and the prolongation to the finer level as a gather
of 8 coarse nodes per finer node with one of 27 weight patterns.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..precision import CONTRACTION
from .grid import GRID_CORNERS, GRID_TO_VTK, VoxelGrid, VoxelModel, build_levels

__all__ = ["PieceLevel", "CoarseCells", "coarsen_cells", "fine_cells", "piece_levels",
           "piece_model", "voxel_model", "weight_table", "COARSE_SPACES"]

#: coarse spaces of the voxel multigrid: one unknown per coarse grid point (``"trilinear"``)
#: or one per piece of bone around it (``"pieces"``, this module).
COARSE_SPACES = ("trilinear", "pieces")

# corner offsets in (z, y, x) array order, grid corner order
_OFF = GRID_CORNERS[:, ::-1]


def weight_table() -> np.ndarray:
    """(27, 8) trilinear weights: row τ = t2x + 3·t2y + 9·t2z for a point at
    t = (t2x, t2y, t2z)/2 ∈ {0, ½, 1}³ of a coarse cell, column b the cell corner
    (grid order). Same convention as :func:`febone.voxel.multigrid.child_prolongations`."""
    out = np.zeros((27, 8))
    for tau in range(27):
        t = np.array([tau % 3, (tau // 3) % 3, tau // 9]) / 2.0  # (x, y, z)
        for b, cb in enumerate(GRID_CORNERS):
            out[tau, b] = np.prod(1.0 - np.abs(t - cb))
    return out


@dataclass(frozen=True)
class CoarseCells:
    """Host description of one level's cells (NumPy), the input and output of
    :func:`coarsen_cells`.

    Attributes:
        coords: (n_cells, 3) int (z, y, x) cell coordinates on this level's grid.
        corners: (n_cells, 8) int node ids of each cell's corners (grid order).
        n_nodes: nodes of the level.
        children: (n_cells, k) int ids of the finer level's cells in each cell (the finer
            cell count where unused); (n_cells, 0) on level 0.
        child_pos: (n_cells, k) int position 0..7 (grid order) of each child in the cell.
        p_idx: (n_finer_nodes, 8) int: the coarse nodes each finer node interpolates from.
        p_type: (n_finer_nodes,) int: its weight pattern τ (row of :func:`weight_table`).
        shape: (nz, ny, nx) of the level's grid.
        r_idx: (n_nodes, m) int: the entries f·8 + b of ``p_idx`` with nonzero weight that
            name each node (its restriction as a gather: fine node f, weight
            ``weight_table()[p_type[f], b]``), 8·n_finer_nodes where unused.
        incidence: (n_nodes, m') int: the entries q·8 + a of ``corners`` naming each node
            (the scatter of element vectors as a gather), 8·n_cells where unused.
    """

    coords: np.ndarray
    corners: np.ndarray
    n_nodes: int
    children: np.ndarray
    child_pos: np.ndarray
    p_idx: np.ndarray
    p_type: np.ndarray
    shape: tuple
    r_idx: np.ndarray | None = None
    incidence: np.ndarray | None = None


def fine_cells(mask: np.ndarray) -> CoarseCells:
    """Level 0: the bone voxels as cells (flat z, y, x order, the solver's voxel order)."""
    grid = VoxelGrid.create(np.asarray(mask, dtype=bool), 1.0)
    coords = np.stack(np.nonzero(grid.mask), axis=1)
    corners = grid.voxel_nodes()[:, GRID_TO_VTK]
    empty = np.zeros((len(coords), 0), np.int64)
    return CoarseCells(coords, corners, int(grid.active.sum()), empty, empty,
                       np.zeros((0, 8), np.int64), np.zeros((0,), np.int64), grid.shape)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)


def _links(keys: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining consecutive ``items`` with equal ``keys`` (int64) after sorting."""
    order = np.argsort(keys, kind="stable")
    k, it = keys[order], items[order]
    same = k[1:] == k[:-1]
    return it[:-1][same], it[1:][same]


def coarsen_cells(fine: CoarseCells) -> CoarseCells:
    """One coarsening step (host): split 2×2×2 blocks of ``fine``'s cells into connected
    copies, and coarse grid points into coarse nodes (see the module docstring).

    Returns:
        The coarse level's :class:`CoarseCells` (cells ordered by coarse cell, nodes by grid
        point), with its children and its prolongation to ``fine``'s nodes.
    """
    n = len(fine.coords)
    shape = tuple(-(-s // 2) for s in fine.shape)
    cs = np.array(shape, np.int64)
    parent = fine.coords // 2
    pos = fine.coords % 2
    cpos = 4 * pos[:, 0] + 2 * pos[:, 1] + pos[:, 2]  # grid order a = 4z + 2y + x
    cell_key = (parent[:, 0] * cs[1] + parent[:, 1]) * cs[2] + parent[:, 2]
    n_fine_nodes = int(fine.n_nodes)
    # 1. copies: components of "same coarse cell and a shared fine node"
    cell_rep = np.repeat(np.arange(n), 8)
    node_rep = fine.corners.reshape(-1).astype(np.int64)
    a, b = _links(cell_key[cell_rep] * n_fine_nodes + node_rep, cell_rep)
    _, comp = _components(n, a, b)
    # order copies by coarse cell (then by their first member) for locality
    first = np.unique(comp, return_index=True)[1]  # labels are 0..k−1: first member of each
    order = np.lexsort((first, cell_key[first]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    copy = rank[comp]
    n_copies = len(order)
    coords = parent[first[order]]
    # children: positional columns (column = position) unless a copy holds two children at
    # one position (possible from level 3 on); then listed with their positions
    seen = np.bincount(8 * copy + cpos, minlength=8 * n_copies)
    if not (seen > 1).any():
        children = np.full((n_copies, 8), n, np.int64)
        children[copy, cpos] = np.arange(n)
        child_pos = np.broadcast_to(np.arange(8), (n_copies, 8)).copy()
    else:
        by = np.lexsort((cpos, copy))
        counts = np.bincount(copy, minlength=n_copies)
        slot = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        children = np.full((n_copies, int(counts.max())), n, np.int64)
        child_pos = np.zeros_like(children)
        children[copy[by], slot] = by
        child_pos[copy[by], slot] = cpos[by]
    # 2. coarse nodes: slots (copy, corner b) joined where one fine node interpolates from
    #    them with nonzero weight (at the same grid point). Only fine nodes held by two
    #    copies or more join anything; a (node, copy) pair has one position in the copy.
    tau_all = (_OFF[cpos][:, None, :] + _OFF[None, :, :]) @ np.array([9, 3, 1])  # (n, 8)
    pair = node_rep * n_copies + copy[cell_rep]
    upair, first_pair = np.unique(pair, return_index=True)
    p_node = upair // n_copies
    shared = np.bincount(p_node, minlength=n_fine_nodes)[p_node] > 1
    p_node, p_copy = p_node[shared], (upair % n_copies)[shared]
    p_tau = tau_all.reshape(-1)[first_pair[shared]]
    W = weight_table()
    j, b_c = np.nonzero(W[p_tau] > 0)
    gpt = coords[p_copy[j]] + _OFF[b_c]  # grid point of the slot, (m, 3)
    gflat = (gpt[:, 0] * (cs[1] + 1) + gpt[:, 1]) * (cs[2] + 1) + gpt[:, 2]
    n_gpts = int(np.prod(cs + 1))
    a, b = _links(p_node[j] * n_gpts + gflat, 8 * p_copy[j] + b_c)
    _, cls = _components(8 * n_copies, a, b)
    # number coarse nodes by grid point
    slot_g = ((coords[:, None, :] + _OFF[None]) * np.array([(cs[1] + 1) * (cs[2] + 1),
                                                             cs[2] + 1, 1])).sum(-1).reshape(-1)
    n_cls = cls.max() + 1
    cls_g = np.zeros(n_cls, np.int64)
    cls_g[cls] = slot_g
    cls_first = np.unique(cls, return_index=True)[1]
    norder = np.lexsort((cls_first, cls_g))
    nrank = np.empty_like(norder)
    nrank[norder] = np.arange(n_cls)
    corners = nrank[cls].reshape(n_copies, 8)
    # 3. prolongation: each fine node from the first (cell, corner) holding it
    fc = fine.corners.reshape(-1)
    _, first_entry = np.unique(fc, return_index=True)
    if len(first_entry) != n_fine_nodes:
        raise ValueError("a fine node is no corner of any cell: the level is inconsistent")
    i_f, a_f = first_entry // 8, first_entry % 8
    p_idx = corners[copy[i_f]]
    p_type = tau_all[i_f, a_f]
    live = (weight_table()[p_type] > 0).reshape(-1)
    entries = np.flatnonzero(live)
    r_idx = _ragged(p_idx.reshape(-1)[entries], entries, int(n_cls), 8 * n_fine_nodes)
    incidence = _ragged(corners.reshape(-1), np.arange(8 * n_copies), int(n_cls), 8 * n_copies)
    return CoarseCells(coords, corners, int(n_cls), children, child_pos, p_idx, p_type, shape,
                       r_idx, incidence)


def _ragged(rows: np.ndarray, values: np.ndarray, n_rows: int, pad: int) -> np.ndarray:
    """(n_rows, max count) table of ``values`` grouped by ``rows``, ``pad`` where unused."""
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n_rows)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((n_rows, int(counts.max())), pad, np.int64)
    out[rows[order], slot] = values[order]
    return out


def piece_levels(mask: np.ndarray, *, max_coarse_nodes: int = 700,
                 max_levels: int | None = None) -> list[CoarseCells]:
    """Host hierarchy of connectivity-following levels, fine to coarse: coarsen until a level
    has at most ``max_coarse_nodes`` nodes, ``max_levels`` levels, or one cell along every
    axis (the criteria of :func:`febone.voxel.grid.build_levels`)."""
    levels = [fine_cells(mask)]
    cap = max_levels if max_levels is not None else 64
    while levels[-1].n_nodes > max_coarse_nodes and len(levels) < cap \
            and max(levels[-1].shape) > 1:
        levels.append(coarsen_cells(levels[-1]))
    return levels


@dataclass(frozen=True)
class PieceLevel:
    """Device index data of a connectivity-following coarse level (levels ≥ 1).

    Attributes:
        corners: (n_cells, 8) int32 node ids of each cell copy's corners (grid order).
        children: (n_cells, k) int32 ids of the finer level's cells in each copy, the finer
            level's cell count where unused; k = 8 and column = position when
            ``positional``.
        child_pos: (n_cells, k) int32 position 0..7 (grid order) of each child.
        p_idx: (8, n_finer_nodes) int32 coarse nodes each finer node interpolates from
            (index tables are stored index-major: one contiguous row per gather).
        p_type: (n_finer_nodes,) int32 weight pattern (row of :func:`weight_table`).
        r_node: (m, n_nodes) int32 finer nodes restricted onto each node (n_finer_nodes
            where unused: a zero row), the restriction as a gather (XLA's scatter-add is slow
            on CPUs).
        r_code: (m, n_nodes) uint8 their weights' codes τ·8 + b in :func:`weight_table`.
        incidence: (m', n_nodes) int32 entries q·8 + a of ``corners`` naming each node.
        n_nodes_: number of nodes (static).
        shape: (nz, ny, nx) of the level's grid (static).
        scale: cell size relative to level 0 (static).
        positional: children in position columns (static).
    """

    corners: jax.Array
    children: jax.Array
    child_pos: jax.Array
    p_idx: jax.Array
    p_type: jax.Array
    r_node: jax.Array
    r_code: jax.Array
    incidence: jax.Array
    n_nodes_: int
    shape: tuple
    scale: float
    positional: bool

    @property
    def n_nodes(self) -> int:
        return int(self.n_nodes_)

    @property
    def n_voxels(self) -> int:
        return int(self.corners.shape[0])

    @property
    def node_shape(self) -> tuple:
        return tuple(s + 1 for s in self.shape)

    @classmethod
    def from_cells(cls, cells: CoarseCells, scale: float) -> "PieceLevel":
        positional = cells.children.shape[1] == 8 and bool(
            (cells.child_pos == np.arange(8)[None]).all())
        def dev(a, dtype=np.int32):  # cast on the host: a device-side cast compiles a program
            return jax.device_put(np.ascontiguousarray(a, dtype))
        return cls(dev(cells.corners), dev(cells.children), dev(cells.child_pos),
                   dev(cells.p_idx.T), dev(cells.p_type), dev(cells.r_idx.T // 8),
                   dev(_codes(cells).T, np.uint8), dev(cells.incidence.T), int(cells.n_nodes),
                   tuple(cells.shape), float(scale), positional)


jax.tree_util.register_dataclass(PieceLevel,
                                 data_fields=["corners", "children", "child_pos", "p_idx",
                                              "p_type", "r_node", "r_code", "incidence"],
                                 meta_fields=["n_nodes_", "shape", "scale", "positional"])


def _codes(cells: CoarseCells) -> np.ndarray:
    """(n_nodes, m) weight codes τ·8 + b of the restriction entries (0 where unused)."""
    n_f = len(cells.p_type)
    f, b = cells.r_idx // 8, cells.r_idx % 8
    tau = np.concatenate([cells.p_type, [0]])[f]
    return np.where(f < n_f, 8 * tau + b, 0)


def piece_model(grid: VoxelGrid, *, max_coarse_nodes: int = 700,
                max_levels: int | None = None) -> VoxelModel:
    """A :class:`VoxelModel` whose coarse levels follow the bone's connectivity: level 0 is
    the structured image level of :meth:`VoxelModel.create`, levels ≥ 1 are
    :class:`PieceLevel`. Solve with it as with any model (``solve_voxel``,
    ``compile_voxel_solve``, ``setup_multigrid``: Galerkin coarse operators only)."""
    if not isinstance(grid, VoxelGrid):
        raise TypeError(f"piece_model expects a VoxelGrid; got {type(grid).__name__}")
    cells = piece_levels(grid.mask, max_coarse_nodes=max_coarse_nodes, max_levels=max_levels)
    fine = build_levels(grid.mask, max_levels=1)[0]
    levels = [fine] + [PieceLevel.from_cells(c, 2.0 ** l) for l, c in enumerate(cells) if l > 0]
    return VoxelModel(tuple(levels), grid.voxel_size)


def voxel_model(grid: VoxelGrid, *, coarse_space: str = "trilinear", max_coarse_nodes: int = 700,
                max_levels: int | None = None) -> VoxelModel:
    """The :class:`VoxelModel` of ``grid`` with the chosen coarse space: ``"trilinear"``
    (structured coarse grids, :meth:`VoxelModel.create`) or ``"pieces"`` (coarse unknowns per
    connected piece of bone, :func:`piece_model`; fewer CG iterations on trabecular bone).

    Raises:
        ValueError: an unknown ``coarse_space``.
    """
    if coarse_space == "pieces":
        return piece_model(grid, max_coarse_nodes=max_coarse_nodes, max_levels=max_levels)
    if coarse_space != "trilinear":
        raise ValueError(f"coarse_space must be one of {COARSE_SPACES}; got {coarse_space!r}")
    return VoxelModel.create(grid, max_coarse_nodes=max_coarse_nodes, max_levels=max_levels)


# ---------------------------------------------------------------------------------------
# device operations on a PieceLevel


def gather(level: PieceLevel, x: jax.Array) -> jax.Array:
    """(n_nodes, 3) -> (n_cells, 24) corner values (grid order)."""
    return x[level.corners].reshape(-1, 24)


def scatter(level: PieceLevel, fe: jax.Array) -> jax.Array:
    """(n_cells, 24) -> (n_nodes, 3), summed over shared nodes (as a gather)."""
    f = jnp.concatenate([fe.reshape(-1, 3), jnp.zeros((1, 3), fe.dtype)])
    return _sum_rows(f, level.incidence)


def _sum_rows(f: jax.Array, idx: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """Σ_j w[j] f[idx[j]]: (n, 3) from a (m, 3) table, (k, n) indices and optional (k, n)
    weights, one index row per step of a ``fori_loop``: one gather in the compiled program
    (few kernels, quick compilation) and no (n, k, 3) temporary. Measured on the 39 µm LHDL
    level 0→1 restriction: a (n, k, 3) gather fused into its sum ran 3-20× slower."""
    def step(j, out):
        rows = f[lax.dynamic_index_in_dim(idx, j, keepdims=False)]
        if w is None:
            return out + rows
        return out + lax.dynamic_index_in_dim(w, j, keepdims=False)[:, None] * rows
    return lax.fori_loop(0, idx.shape[0], step, jnp.zeros((idx.shape[1], 3), f.dtype))


def prolong(level: PieceLevel, xc: jax.Array) -> jax.Array:
    """(level.n_nodes, 3) -> (n_finer_nodes, 3): trilinear on each copy."""
    W = jnp.asarray(weight_table().T, xc.dtype)[:, level.p_type]  # (8, n_f)
    return _sum_rows(xc, level.p_idx, W)


def restrict(level: PieceLevel, r: jax.Array) -> jax.Array:
    """(n_finer_nodes, 3) -> (level.n_nodes, 3): the exact transpose of :func:`prolong`."""
    W = jnp.asarray(weight_table().reshape(-1), r.dtype)  # (216,) by code τ·8 + b
    rp = jnp.concatenate([r, jnp.zeros((1, 3), r.dtype)])
    return _sum_rows(rp, level.r_node, W[level.r_code])


def apply_children(level: PieceLevel, Kc: jax.Array, E: jax.Array, x: jax.Array) -> jax.Array:
    """Σ_c E_c (P_cᵀ Ke P_c) uᵉ per cell copy, matrix-free (Galerkin level 1 from the 8 child
    moduli ``E``: (n_cells, 8); ``Kc``: (8, 24, 24)). One (n, 24) @ (24, 24) product per
    child: as fast as one (n, 24) @ (24, 192) product on the 39 µm LHDL level 1 (2-core
    CPU) without its (n, 192) temporary, so no chunking is needed."""
    ue = gather(level, x)
    E = E.astype(x.dtype)
    K = Kc.astype(x.dtype)
    fe = E[:, 0:1] * jnp.matmul(ue, K[0], precision=CONTRACTION)
    for c in range(1, 8):
        fe = fe + E[:, c:c + 1] * jnp.matmul(ue, K[c], precision=CONTRACTION)
    return scatter(level, fe)


def galerkin_listed(level: PieceLevel, child, P) -> jax.Array:
    """(n_cells, 24, 24) Σ_children P_posᵀ K_child P_pos for listed (non-positional)
    children; ``child``: (n_finer_cells, 24, 24) element matrices of the finer level."""
    child = jnp.concatenate([child, jnp.zeros((1, 24, 24), child.dtype)])
    P = P.astype(child.dtype)

    def add(j, out):
        rows = lax.dynamic_index_in_dim(level.children, j, axis=1, keepdims=False)
        pos = lax.dynamic_index_in_dim(level.child_pos, j, axis=1, keepdims=False)
        Pj = P[pos]
        return out + jnp.einsum("nai,nab,nbj->nij", Pj, child[rows], Pj, precision=CONTRACTION)
    return lax.fori_loop(0, level.children.shape[1], add,
                         jnp.zeros((level.n_voxels, 24, 24), child.dtype))

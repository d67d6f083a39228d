"""Uniaxial compression of a micro-CT specimen: apparent modulus and Pistoia failure load.

The first node plane along the load axis is held in all components; the last plane is
displaced along the axis only (free lateral expansion). Apparent modulus
E_app = (F/A)/(δ/L) with A the full cross-section of the image box and L its length;
failure load (Pistoia et al. 2002) F_fail = F · 0.007 / ε₂%, where ε₂% is the effective
strain √(2·SED/E) exceeded by 2 % of the bone tissue volume.
"""
from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..device import device_description
from ..fe.bc import BoundaryConditions
from .grid import AXES, VoxelGrid, VoxelModel
from .pieces import voxel_model
from .image import Segmentation, VoxelImage, load_image, segment
from .operator import center_gradient, element_energy, element_stiffness, gather_corners, lame_unit
from .solve import VoxelPCG, compile_voxel_solve, resolve_precision

__all__ = ["CompressionResult", "compress", "compress_mask", "supported_pieces", "effective_strain",
           "pistoia_failure_load", "work_force", "PISTOIA_STRAIN", "PISTOIA_FRACTION"]

log = logging.getLogger(__name__)

#: Pistoia 2002: critical effective strain and the tissue fraction that must exceed it.
PISTOIA_STRAIN = 0.007
PISTOIA_FRACTION = 0.02


@dataclass(frozen=True)
class CompressionResult:
    """Outcome of a voxel compression test (units: N, MPa, mm, s, bytes).

    Attributes:
        reaction_force_N: axial force on the loaded face, N (positive in compression), from
            the work theorem F·δ = uᵀKu (:func:`work_force`): equal to the summed reactions
            of the loaded face at the exact FE solution, with an error quadratic in the
            solver's (3e-12 against 1.6e-7 for the summed reactions at rtol 1e-8 on the 39 µm
            LHDL sample), so the answer hardly depends on the preconditioner.
        apparent_modulus_MPa: (F/A)/(δ/L).
        failure_load_N: Pistoia 2002 estimate.
        effective_strain_2pct: effective strain exceeded by 2 % of the bone volume.
        bv_tv_model: bone volume fraction of the box in the model (after removing the
            unsupported pieces).
        bv_tv_image: bone volume fraction of the segmented image (before that removal).
        removed_voxels: bone voxels removed as unsupported (pieces not touching the fixed
            plane), 0 for a mask given to :func:`compress_mask`.
        n_dofs: 3 × active nodes (constrained ones included).
        n_voxels: bone voxels.
        iterations: CG iterations.
        residual: final relative residual.
        solve_seconds: the compiled solve (excluding compilation), s.
        compile_seconds: compilation of the solve, s.
        wall_seconds: the whole call (loading, segmentation, setup, solve, post), s.
        device: where it ran.
        peak_memory_bytes: XLA's buffer estimate of the solve (arguments + temporaries +
            outputs), summed over the devices; ``peak_rss_bytes`` is the process high-water
            mark for comparison.
        peak_rss_bytes: process peak resident memory, bytes (includes the JAX runtime).
        voxel_size_mm: (dz, dy, dx) of the solved grid.
        shape: (nz, ny, nx) of the solved grid.
        axis: load axis.
        applied_displacement_mm: shortening δ.
        threshold: segmentation threshold (None for masks).
        u: (n_nodes, 3) displacements of the active nodes, mm.
        effective_strain: (n_voxels,) √(2·SED/E) per bone voxel.
        precision: the precision mode of the solve (:mod:`febone.precision`).
        devices: devices the model was split over (z-slabs, :mod:`febone.voxel.sharded`).
        per_device_peak_memory_bytes: XLA's buffer estimate of the solve on one device.
    """

    reaction_force_N: float
    apparent_modulus_MPa: float
    failure_load_N: float
    effective_strain_2pct: float
    bv_tv_model: float
    bv_tv_image: float
    removed_voxels: int
    n_dofs: int
    n_voxels: int
    iterations: int
    residual: float
    solve_seconds: float
    compile_seconds: float
    wall_seconds: float
    device: str
    peak_memory_bytes: int | None
    peak_rss_bytes: int
    voxel_size_mm: tuple
    shape: tuple
    axis: str
    applied_displacement_mm: float
    threshold: float | None
    u: jax.Array
    effective_strain: jax.Array
    precision: str = "float64"
    devices: int = 1
    per_device_peak_memory_bytes: int | None = None

    def summary(self) -> dict:
        """The scalar results, JSON-ready (the name every febone result uses)."""
        keys = ["reaction_force_N", "apparent_modulus_MPa", "bv_tv_model", "bv_tv_image",
                "removed_voxels", "n_dofs", "iterations",
                "solve_seconds", "wall_seconds", "device", "peak_memory_bytes",
                "failure_load_N", "effective_strain_2pct", "compile_seconds", "residual",
                "n_voxels", "peak_rss_bytes", "axis", "applied_displacement_mm", "threshold",
                "precision", "devices", "per_device_peak_memory_bytes"]
        out = {k: getattr(self, k) for k in keys}
        out["voxel_size_mm"] = list(self.voxel_size_mm)
        out["shape"] = list(self.shape)
        out["bytes_per_dof"] = (None if self.peak_memory_bytes is None
                                else self.peak_memory_bytes / self.n_dofs)
        return out


_META = [f for f in CompressionResult.__dataclass_fields__ if f not in ("u", "effective_strain")]
jax.tree_util.register_dataclass(CompressionResult, data_fields=["u", "effective_strain"],
                                 meta_fields=_META)


@jax.jit
def _effective_strain(model: VoxelModel, nu, u):
    """(n_voxels,) √(uᵉᵀ Ke uᵉ / V) = √(2·SED/E) for unit-modulus Ke."""
    Ke = element_stiffness(model.voxel_size, nu, u.dtype)
    volume = float(np.prod(model.voxel_size))
    return jnp.sqrt(jnp.maximum(element_energy(model.fine, Ke, u), 0.0) / volume)


def effective_strain(model: VoxelModel, u, *, nu=0.3) -> jax.Array:
    """Effective strain √(2·SED/E) of every bone voxel (SED: voxel-average strain energy
    density of the hex8 field, the 2×2×2 Gauss integral of the stiffness)."""
    return _effective_strain(model, jnp.asarray(nu, jnp.asarray(u).dtype), jnp.asarray(u))


def work_force(E_vox, eff_strain, voxel_size, delta: float) -> float:
    """Axial force of a compression test from the work theorem, N: F = uᵀKu / δ with
    uᵀKu = Σ_e E_e ε_eff,e² V (ε_eff = √(uᵉᵀKe uᵉ / V) for unit-modulus Ke, V the voxel
    volume). Valid when the only nonzero prescribed displacement is δ along the axis on
    the loaded face and no external forces act (the tests of this module): then Σ_i F_i u_i
    = F·δ = uᵀKu. Where u carries a solver error e (zero on prescribed dofs, K u* zero on
    free ones) the estimate is off by eᵀKe/δ ≥ 0 only, quadratic in e, while the summed
    reactions are off linearly.

    Args:
        E_vox: (n_voxels,) moduli, MPa.
        eff_strain: (n_voxels,) effective strains (:func:`effective_strain`).
        voxel_size: (dz, dy, dx) mm.
        delta: shortening, mm (> 0).
    """
    e = np.asarray(eff_strain, dtype=float)
    energy = float(np.sum(np.asarray(E_vox, dtype=float) * e * e)) * float(np.prod(voxel_size))
    return energy / float(delta)


def pistoia_failure_load(force, eff_strain, *, critical: float = PISTOIA_STRAIN,
                         fraction: float = PISTOIA_FRACTION) -> tuple[float, float]:
    """Pistoia et al. (2002): failure load = F · critical / ε, where ε is exceeded by
    ``fraction`` of the (equal-volume) bone voxels.

    Returns:
        (failure load N, ε at the ``1 − fraction`` quantile).
    """
    e = np.asarray(eff_strain, dtype=float)
    if e.size == 0:
        raise ValueError("no bone voxels: cannot evaluate the Pistoia criterion")
    eps = float(np.quantile(e, 1.0 - fraction))
    if not eps > 0:
        raise ValueError("the effective strain is zero in ≥ 98 % of the bone: no load reaches "
                         "the tissue (check the boundary conditions)")
    return float(abs(force)) * critical / eps, eps


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _pieces(mask: np.ndarray, axis: str) -> tuple[np.ndarray, int, np.ndarray]:
    """Face-connected pieces of bone: (labels, count, (count,) bool: touches the fixed plane,
    the first node plane along ``axis``)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)  # default structure: 6-connectivity in 3-D
    first = np.unique(np.take(labels, 0, axis=AXES[axis]))
    supported = np.isin(np.arange(1, n + 1), first)
    return labels, int(n), supported


def supported_pieces(mask, axis: str = "z") -> tuple[np.ndarray, int, int]:
    """Keep every face-connected piece of bone that touches the fixed plane (the first node
    plane along ``axis``, held in all components); drop the others, which would be
    unconstrained: pieces touching only the loaded plane slide sideways, floating ones move
    freely. Every piece that connects the two loaded planes is kept, so two load-bearing
    pieces both carry load.

    Returns:
        (mask, number of pieces before, voxels removed).
    """
    mask = np.asarray(mask, dtype=bool)
    if axis not in AXES:
        raise ValueError(f"axis must be 'x', 'y' or 'z'; got {axis!r}")
    labels, n, supported = _pieces(mask, axis)
    keep = np.isin(labels, 1 + np.flatnonzero(supported))
    return keep, n, int(mask.sum() - keep.sum())


def _check_supported(mask: np.ndarray, axis: str) -> None:
    labels, n, supported = _pieces(mask, axis)
    if not supported.all():
        sizes = np.sort(np.bincount(labels.ravel())[1:][~supported])[::-1]
        raise ValueError(f"the bone mask has {n} face-connected pieces, {sizes.size} of which "
                         f"(sizes {sizes[:5].tolist()}{' ...' if sizes.size > 5 else ''} voxels) "
                         f"do not touch the fixed first {axis}-plane: they have no support and "
                         f"make the stiffness singular. Remove them (compress(..., "
                         f"keep_islands=False), the CLI default; febone.voxel.compress."
                         f"supported_pieces) or clean the mask")


def _check_load_path(mask: np.ndarray, axis: str) -> None:
    dim = AXES[axis]
    first = np.take(mask, 0, axis=dim).any()
    last = np.take(mask, mask.shape[dim] - 1, axis=dim).any()
    if not (first and last):
        which = "first" if not first else "last"
        raise ValueError(f"the bone does not reach the {which} {axis}-face of the image (no "
                         f"piece of it connects the two faces): the load path along {axis} is "
                         f"void, so the specimen cannot be compressed; crop the image to the "
                         f"bone or choose another --axis")


def compress_mask(mask, voxel_size, *, E=18000.0, nu=0.3, displacement: float | None = None,
                  strain: float | None = None, axis: str = "z",
                  solver: VoxelPCG | None = None, out: str | Path | None = None,
                  segmentation: Segmentation | None = None, removed_voxels: int = 0,
                  start: float | None = None, precision: str | None = None,
                  devices: int = 1) -> CompressionResult:
    """Compression test of a bone mask (see :func:`compress` for the arguments).

    Args:
        mask: (nz, ny, nx) bool; every face-connected piece must touch the fixed first plane
            along ``axis`` (:func:`supported_pieces` keeps those).
        E: tissue modulus, MPa: scalar, or (nz, ny, nx) / (n_voxels,) per voxel.
        displacement, strain: shortening (mm) or apparent compressive strain, both positive
            (a negative value, tension, is refused).
        removed_voxels: voxels the caller removed before (reported in the result).
        precision: ``"float64"``, ``"mixed"`` or ``"float32"`` (:mod:`febone.precision`);
            ``None``: from the solver and JAX's x64 setting.
        devices: split the model over this many devices (see :func:`compress`).
    """
    start = time.perf_counter() if start is None else start
    if axis not in AXES:
        raise ValueError(f"axis must be 'x', 'y' or 'z'; got {axis!r}")
    if (displacement is None) == (strain is None):
        raise ValueError("give exactly one of displacement (mm shortening) or strain "
                         "(apparent strain, e.g. 0.01)")
    given, value = (("displacement", displacement) if displacement is not None
                    else ("strain", strain))
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{given} {value:g}: a compression test takes the shortening as a "
                         f"finite positive number (strain 0.01 = 1 % shorter); a negative value "
                         f"would be tension, which febone compress does not model (the Pistoia "
                         f"failure load is a compressive criterion)")
    grid = VoxelGrid.create(np.asarray(mask), voxel_size)
    _check_supported(grid.mask, axis)
    _check_load_path(grid.mask, axis)
    dim = AXES[axis]
    length = grid.shape[dim] * grid.voxel_size[dim]
    delta = float(displacement) if displacement is not None else float(strain) * length
    area = float(np.prod([grid.shape[d] * grid.voxel_size[d] for d in range(3) if d != dim]))
    E_arr = np.asarray(E, dtype=float)
    if E_arr.ndim == 0:
        E_vox = np.full(grid.n_voxels, float(E_arr))
    elif E_arr.shape == grid.shape:
        E_vox = E_arr[grid.mask]
    elif E_arr.shape == (grid.n_voxels,):
        E_vox = E_arr
    else:
        raise ValueError(f"E must be a scalar, the image shape {grid.shape} or one value per "
                         f"bone voxel ({grid.n_voxels},); got {E_arr.shape}")
    solver, mode = resolve_precision(solver, precision)
    mg = solver.multigrid
    bottom = grid.plane_nodes(axis, "min")
    top = grid.plane_nodes(axis, "max")
    bcs = BoundaryConditions.empty(int(grid.active.sum())).fix(bottom, "xyz")
    bcs = bcs.displace(top, **{axis: -delta})
    t0 = time.perf_counter()
    if devices != 1:  # z-slabs, one per device; the global model is never built
        from .sharded import compress_on_slabs

        if mode.name != "float64":
            raise ValueError(f"--devices {devices} solves in float64 only; drop --precision "
                             f"{mode.name} or use one device")
        sol, _, eff, per_device, compile_seconds = compress_on_slabs(
            grid, E_vox, bcs, nu=nu, solver=solver, n_devices=devices)
        memory = None if per_device is None else per_device * devices
        model = VoxelModel.create(grid, max_levels=1) if out is not None else None
    else:
        model = voxel_model(grid, max_coarse_nodes=mg.max_coarse_nodes,
                            max_levels=mg.max_levels, coarse_space=mg.model_coarse_space)
        log.info("compress: %d bone voxels, %d dofs, %d levels, δ = %.4g mm along %s",
                 grid.n_voxels, model.n_dofs, len(model.levels), delta, axis)
        run, memory = compile_voxel_solve(model, E_vox, bcs, nu=nu, solver=solver,
                                          precision=mode.name)
        compile_seconds = time.perf_counter() - t0
        sol = run(E_vox, bcs, nu=nu)
        eff = effective_strain(model, sol.u, nu=nu)
        per_device = memory
    force = work_force(E_vox, eff, grid.voxel_size, delta)  # F·δ = uᵀKu: see work_force
    modulus = (force / area) / (delta / length)
    fail, eps2 = pistoia_failure_load(force, eff)
    if out is not None:
        write_fields(out, grid, model, E_vox, nu, sol.u, eff)
    result = CompressionResult(
        reaction_force_N=force, apparent_modulus_MPa=float(modulus), failure_load_N=fail,
        effective_strain_2pct=eps2, bv_tv_model=grid.bv_tv,
        bv_tv_image=grid.bv_tv if segmentation is None else segmentation.bv_tv,
        removed_voxels=removed_voxels, n_dofs=3 * bcs.n_nodes,
        n_voxels=grid.n_voxels, iterations=int(sol.stats.iterations),
        residual=float(sol.stats.residual), solve_seconds=float(sol.stats.seconds),
        compile_seconds=compile_seconds, wall_seconds=0.0, device=device_description(),
        peak_memory_bytes=memory, peak_rss_bytes=_peak_rss(), voxel_size_mm=grid.voxel_size,
        shape=grid.shape, axis=axis, applied_displacement_mm=delta,
        threshold=None if segmentation is None else segmentation.threshold, u=sol.u,
        effective_strain=eff, precision=mode.name, devices=int(devices),
        per_device_peak_memory_bytes=per_device)
    return replace(result, wall_seconds=time.perf_counter() - start)


def compress(image, voxel_size=None, *, threshold: float | str | None = "otsu",
             sigma: float = 0.0, resample: int = 1, calibration: tuple | None = None,
             keep_islands: bool = False, E=18000.0, nu=0.3, displacement: float | None = None,
             strain: float | None = None, axis: str = "z", solver: VoxelPCG | None = None,
             out: str | Path | None = None, key: str | None = None,
             precision: str | None = None, devices: int = 1) -> CompressionResult:
    """Uniaxial compression test of a micro-CT image.

    Args:
        image: path (.npy/.npz/.tif/.nii[.gz]), (nz, ny, nx) array (z, y, x) or
            :class:`VoxelImage`: boolean mask, grey values or HU (with ``calibration``).
        voxel_size: (dz, dy, dx) or scalar, mm (read from the file when it has one).
        threshold, sigma, resample, calibration: segmentation (:func:`febone.voxel.segment`).
        keep_islands: keep pieces of bone that do not touch the fixed plane (then an error);
            by default they are removed (:func:`supported_pieces`) and the count reported
            in ``removed_voxels``; every piece touching the fixed plane is kept.
        E: tissue Young's modulus, MPa (scalar; or per voxel of the segmented grid).
        nu: Poisson's ratio.
        displacement: shortening of the specimen, mm; or ``strain``: apparent strain.
        axis: load axis ``"x"``, ``"y"`` or ``"z"``.
        solver: :class:`VoxelPCG` (multigrid CG, rtol 1e-8 by default).
        out: directory for ``compression.vtu`` (displacement, moduli, effective strain,
            SED, von Mises stress per voxel).
        key: array name inside an .npz file.
        precision: ``"float64"`` (rtol ≥ 1e-12), ``"mixed"`` (float32 iterations, float64
            answers) or ``"float32"`` (rtol ≥ 1e-5, default 1e-5); :mod:`febone.precision`.
        devices: split the one model over this many devices: z-slabs with one node layer of
            halo (:mod:`febone.voxel.sharded`; float64; the answer equals one device's to
            round-off, each device holds about 1/devices of the memory). 1 (default): the
            default device.

    Returns:
        :class:`CompressionResult`.
    """
    start = time.perf_counter()
    if isinstance(image, (str, Path)):
        image = load_image(image, key=key)
    elif not isinstance(image, VoxelImage):
        image = VoxelImage(np.asarray(image), None, "image")
    seg = segment(image, voxel_size, sigma=sigma, resample=resample, threshold=threshold,
                  calibration=calibration, keep_largest=False)
    mask, removed = seg.mask, 0
    if not keep_islands:
        mask, n, removed = supported_pieces(seg.mask, axis)
        if removed:
            log.warning("removed %d bone voxels (%.2f %% of the bone) in pieces of bone that do "
                        "not touch the fixed %s-plane (unsupported; %d pieces in all)", removed,
                        100.0 * removed / seg.mask.sum(), axis, n)
    return compress_mask(mask, seg.voxel_size, E=E, nu=nu, displacement=displacement,
                         strain=strain, axis=axis, solver=solver, out=out, segmentation=seg,
                         removed_voxels=removed, start=start, precision=precision,
                         devices=devices)


def write_fields(out, grid: VoxelGrid, model: VoxelModel, E_vox, nu, u, eff) -> Path:
    """Write ``out/compression.vtu``: bone voxels as hex8 cells with point data
    ``displacement_mm`` and cell data ``E_MPa``, ``effective_strain``, ``sed_MPa``,
    ``von_mises_MPa`` (voxel-average stress)."""
    from ..mesh.io import write_mesh
    from ..mesh.mesh import Mesh

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    E_vox = np.asarray(E_vox, dtype=float)
    eff = np.asarray(eff, dtype=float)
    g = center_gradient(model.voxel_size)  # (8, 3)
    ue = np.asarray(gather_corners(model.fine, jnp.asarray(u))).reshape(-1, 8, 3)
    H = np.einsum("eai,aj->eij", ue, g)  # du_i/dx_j, voxel average
    eps = 0.5 * (H + np.swapaxes(H, 1, 2))
    lam, mu = lame_unit(float(nu))
    tr = np.trace(eps, axis1=1, axis2=2)
    sig = E_vox[:, None, None] * (lam * tr[:, None, None] * np.eye(3) + 2 * mu * eps)
    dev = sig - np.trace(sig, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
    vm = np.sqrt(1.5 * np.sum(dev * dev, axis=(1, 2)))
    mesh = Mesh.create(grid.node_points(), grid.voxel_nodes(), "hexahedron", validate=False)
    path = out / "compression.vtu"
    write_mesh(path, mesh, point_data={"displacement_mm": np.asarray(u)},
               cell_data={"E_MPa": E_vox, "effective_strain": eff,
                          "sed_MPa": 0.5 * E_vox * eff ** 2, "von_mises_MPa": vm})
    return path

"""Clinical CT (QCT) to a bone model: HU → density → bone voxels → hex8 mesh with densities.

The route of ``febone strength CT.nii.gz --calibration A B ...`` and of a scenario's
``[bone] image = ...``:

1. **Read** the CT (:func:`read_ct`): NIfTI, a DICOM series (folder) or a TIFF stack
   (voxel size given), in RAS+ axes (:func:`febone.voxel.image.load_image` with
   ``canonical=True``): a right femur then lies in febone's standard orientation (shaft along
   +z, greater trochanter at +x, head at −x; a left femur is told and mirrored by the load
   cases), so the load cases find their node sets from the geometry as for meshes.
2. **Calibrate**: ρ = A + B·HU, g/cm³ (:class:`CTCalibration`; A g/cm³, B g/cm³ per HU, from
   the phantom scanned with the patient). ``kind`` says what that ρ is:

   * ``"apparent"`` (default): apparent (wet) density ρ_app, the density of the Morgan et al.
     (2003) laws and of the bundled bones' ``density_g_cm3``; used as it is.
   * ``"ash"``: ash density; ρ_app = ρ_ash / 0.6 (ash fraction 0.6, Keyak et al. 1994,
     Schileo et al. 2008; :data:`febone.bones.densitometry.ASH_FRACTION`).
   * ``"qct"``: equivalent mineral density of a K₂HPO₄ (or hydroxyapatite) phantom;
     ρ_ash = 0.877·ρ_QCT + 0.0789 (Schileo et al. 2008, J Biomech 41:2483), then as ash.

3. **Resample** (optional, integer factor K): ρ averaged over K×K×K blocks. ρ is linear in
   HU, so this is also the block mean of HU, and it conserves bone mass (Σ ρ·V): what a
   scanner with K-fold larger voxels would measure (partial volume). Moduli are not
   averaged: E is a convex power of ρ, and the mean of E over a block would stiffen the
   coarse model beyond the scan's information.
4. **Bone voxels**: ρ > threshold (g/cm³ of the calibrated density, after resampling), or a
   given mask (same grid as the CT, non-zero = bone); then the largest face-connected
   component (islands would be unsupported rigid bodies). Voxels below the threshold inside
   the bone (marrow) are left out, as they would be in a micro-CT model.
5. **Mesh**: one hex8 element per bone voxel, nodes in world mm (the grid-aligned mesh the
   voxel engine solves, :mod:`febone.voxel.from_mesh`), cell data ``density_g_cm3``
   (apparent, for the density laws), ``ct_density_g_cm3`` (the calibrated ρ) and ``hu``.

E per voxel then follows from a density law (``febone.material.laws``), as for a mesh's
density field.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..bones.densitometry import ASH_FRACTION
from ..mesh.mesh import Mesh
from .grid import VoxelGrid, _as_voxel_size
from .image import VoxelImage, _block_mean, is_image_path, largest_component, load_image

__all__ = ["CTCalibration", "CTBone", "DENSITY_KINDS", "DEFAULT_THRESHOLD", "read_ct",
           "ct_bone", "ct_bone_file", "synthetic_ct", "save_nifti", "QCT_TO_ASH", "ASH_TO_APPARENT"]

log = logging.getLogger(__name__)

#: what the calibrated density A + B·HU is: apparent, ash or QCT-equivalent mineral density
DENSITY_KINDS = ("apparent", "ash", "qct")

#: ρ_ash = a + b·ρ_QCT, g/cm³ (Schileo et al. 2008, J Biomech 41:2483, K₂HPO₄ phantom)
QCT_TO_ASH = (0.0789, 0.877)

#: ρ_ash / ρ_app (Keyak et al. 1994; Schileo et al. 2008)
ASH_TO_APPARENT = ASH_FRACTION

#: default bone threshold, g/cm³ of the calibrated density: above soft tissue (muscle
#: 40–60 HU, 0.03–0.05 g/cm³ under usual calibrations) and below most trabecular bone
DEFAULT_THRESHOLD = 0.1


@dataclass(frozen=True)
class CTCalibration:
    """ρ = intercept + slope·HU (g/cm³) and what kind of density that is.

    Attributes:
        intercept: A, g/cm³.
        slope: B, g/cm³ per HU (positive).
        kind: ``"apparent"``, ``"ash"`` or ``"qct"`` (module docstring).
    """

    intercept: float
    slope: float
    kind: str = "apparent"

    def __post_init__(self):
        if not (np.isfinite(self.intercept) and np.isfinite(self.slope)):
            raise ValueError(f"CT calibration A, B must be finite; got {self.intercept}, "
                             f"{self.slope}")
        if not self.slope > 0:
            raise ValueError(
                f"CT calibration slope B must be positive (g/cm³ per HU; denser bone has more "
                f"HU); got {self.slope}. Give ρ = A + B·HU with B about 0.0006–0.001 g/cm³ per "
                f"HU (e.g. --calibration 0.0 0.0008)")
        if self.slope > 0.01:
            log.warning("CT calibration slope %g g/cm³ per HU is unusually large (typical "
                        "0.0006–0.001); is it in mg/cm³? febone takes g/cm³", self.slope)
        if self.kind not in DENSITY_KINDS:
            raise ValueError(f"CT density kind must be one of {list(DENSITY_KINDS)}; got "
                             f"{self.kind!r}")

    def density(self, hu):
        """Calibrated ρ (g/cm³, of this kind) for HU, any shape (float64)."""
        return self.intercept + self.slope * np.asarray(hu, dtype=np.float64)

    def apparent(self, rho):
        """Apparent density ρ_app (g/cm³) of calibrated densities ``rho`` of this kind."""
        rho = np.asarray(rho, dtype=np.float64)
        if self.kind == "apparent":
            return rho
        if self.kind == "qct":
            rho = QCT_TO_ASH[0] + QCT_TO_ASH[1] * rho
        return rho / ASH_TO_APPARENT

    def calibrated(self, rho_app):
        """The inverse of :meth:`apparent`: calibrated ρ (g/cm³, this kind) of ρ_app."""
        rho = np.asarray(rho_app, dtype=np.float64)
        if self.kind == "apparent":
            return rho
        rho = rho * ASH_TO_APPARENT
        if self.kind == "qct":
            rho = (rho - QCT_TO_ASH[0]) / QCT_TO_ASH[1]
        return rho

    def hu(self, rho):
        """HU of calibrated densities ``rho`` (g/cm³): (ρ − A) / B."""
        return (np.asarray(rho, dtype=np.float64) - self.intercept) / self.slope


@dataclass(frozen=True)
class CTBone:
    """A bone model built from a CT.

    Attributes:
        mesh: hex8 mesh of the bone voxels, world mm (RAS+); cell data ``density_g_cm3``
            (apparent, g/cm³), ``ct_density_g_cm3`` (calibrated, g/cm³) and ``hu`` (mean HU
            of the voxel after resampling).
        source: the image's path.
        calibration: the :class:`CTCalibration`.
        threshold: the bone threshold, g/cm³ of the calibrated density (None with a mask).
        resample: the block-averaging factor K.
        voxel_size: (dz, dy, dx) mm of the model's voxels.
        n_components: face-connected bone components before the largest was kept.
        removed_voxels: voxels dropped with the smaller components.
    """

    mesh: Mesh
    source: str
    calibration: CTCalibration
    threshold: float | None
    resample: int
    voxel_size: tuple
    n_components: int
    removed_voxels: int

    def summary(self) -> dict:
        """JSON-ready description (``febone strength --json``'s ``ct``)."""
        rho = np.asarray(self.mesh.cell_data["density_g_cm3"], float)
        return {"image": self.source, "calibration": asdict(self.calibration),
                "threshold_g_cm3": self.threshold, "resample": self.resample,
                "voxel_size_mm": list(self.voxel_size), "voxels": int(self.mesh.n_elements),
                "bone_volume_mm3": float(self.mesh.n_elements * np.prod(self.voxel_size)),
                "apparent_density_g_cm3": {"min": float(rho.min()), "mean": float(rho.mean()),
                                           "max": float(rho.max())},
                "components": self.n_components, "removed_voxels": self.removed_voxels}


def read_ct(path, *, voxel_size=None) -> VoxelImage:
    """A CT in RAS+ axes, values in HU (the file's dtype; DICOM float32).

    Args:
        path: ``.nii``/``.nii.gz``, a folder holding one DICOM series, ``.tif``/``.tiff``
            stack (slices along z), or ``.npy``/``.npz``.
        voxel_size: (dz, dy, dx) or scalar mm, for files without one (TIFF, NumPy); a NIfTI
            or DICOM header's own size wins, and a different one given here is refused.

    Raises:
        ValueError: not an image file; no voxel size; a voxel size that contradicts the header.
    """
    path = Path(path)
    if not is_image_path(path):
        raise ValueError(f"{path}: not a CT image; give a .nii/.nii.gz file, a folder holding "
                         f"one DICOM series, or a .tif/.tiff stack (with its voxel size)")
    img = load_image(path, canonical=True)
    if img.data.dtype == bool:
        raise ValueError(f"{path}: a boolean image is a mask, not a CT in HU; give the CT, and "
                         f"this file as its mask (CLI: --mask; scenario: [bone] mask)")
    size = img.voxel_size
    if voxel_size is not None:
        given = _as_voxel_size(voxel_size)
        if size is not None and not np.allclose(given, size, rtol=1e-6):
            raise ValueError(f"{path}: its header gives the voxel size {list(size)} mm (dz, dy, "
                             f"dx), not the {list(given)} given; drop the voxel size option")
        size = given
    if size is None:
        raise ValueError(f"{path}: the file holds no voxel size; give it in mm (CLI: "
                         f"--voxel-size DZ DY DX, or one value for cubic voxels; scenario: "
                         f"[bone] voxel_size_mm)")
    return VoxelImage(img.data, tuple(size), img.source, img.origin)


def _mask_of(mask, image: VoxelImage) -> np.ndarray:
    """A given bone mask (path, VoxelImage or array) on the CT's grid, as bool."""
    if isinstance(mask, (str, os.PathLike)):
        m = load_image(mask, canonical=True)
        if m.origin is not None and image.origin is not None and \
                not np.allclose(m.origin, image.origin, atol=1e-3):
            raise ValueError(f"mask {m.source}: its first voxel lies at {list(m.origin)} mm, the "
                             f"CT's at {list(image.origin)} mm; give a mask on the CT's grid")
        source, data = m.source, m.data
    else:
        source, data = "mask", np.asarray(mask.data if isinstance(mask, VoxelImage) else mask)
    if data.shape != image.data.shape:
        raise ValueError(f"{source}: shape {data.shape} (z, y, x) differs from the CT's "
                         f"{image.data.shape}; give a mask on the CT's grid")
    return np.asarray(data) != 0


def ct_bone(image, calibration: CTCalibration, *, threshold: float | None = DEFAULT_THRESHOLD,
            resample: int = 1, mask=None, keep_largest: bool = True) -> CTBone:
    """The bone model of a CT (module docstring, steps 2–5).

    Args:
        image: :class:`VoxelImage` from :func:`read_ct` (HU, voxel size, origin), or a path.
        calibration: :class:`CTCalibration`.
        threshold: bone above this calibrated density, g/cm³ (ignored with ``mask``).
        resample: integer block-averaging factor K (≥ 1); the image is cropped to a multiple.
        mask: bone mask on the CT's grid (path, :class:`VoxelImage` or (nz, ny, nx) array,
            non-zero = bone) instead of the threshold.
        keep_largest: keep only the largest face-connected component.

    Raises:
        ValueError: bad resample factor or threshold; no bone voxel; a calibration that gives
            negative densities inside the bone (with a mask or a negative threshold).
    """
    if not isinstance(image, VoxelImage):
        image = read_ct(image)
    source = image.source or "CT"
    if image.voxel_size is None:
        raise ValueError(f"{source}: the voxel size is unknown; read it with read_ct(path, "
                         f"voxel_size=...)")
    if isinstance(resample, bool) or int(resample) != resample or resample < 1:
        raise ValueError(f"resample must be a positive integer factor (2 doubles the voxel "
                         f"size); got {resample}")
    k = int(resample)
    if mask is None and (threshold is None or not np.isfinite(threshold)):
        raise ValueError(f"give a bone threshold in g/cm³ (e.g. {DEFAULT_THRESHOLD}) or a mask")
    h = np.asarray(image.voxel_size, float) * k                     # (dz, dy, dx)
    rho = calibration.density(image.data)
    given = None if mask is None else _mask_of(mask, image)
    if k > 1:
        rho = _block_mean(rho, k, np.float64)
        if given is not None:
            given = _block_mean(given, k) >= 0.5
    if given is None:
        bone = rho > threshold
        if not bone.any():
            raise ValueError(f"{source}: no voxel's density exceeds the threshold {threshold:g} "
                             f"g/cm³ (densities A + B·HU span {rho.min():.4g}..{rho.max():.4g} "
                             f"g/cm³); lower the threshold or check the calibration A, B "
                             f"(g/cm³ and g/cm³ per HU) and that the image is in HU")
    else:
        bone = given
        threshold = None
        if not bone.any():
            raise ValueError(f"{source}: the bone mask is empty (no non-zero voxel"
                             f"{' after resampling' if k > 1 else ''}); check the mask file")
    n_comp, removed = 1, 0
    if keep_largest:
        bone, n_comp, removed = largest_component(bone)
        if removed:
            log.info("CT: kept the largest of %d bone components, dropped %d voxels", n_comp,
                     removed)
    inside = rho[bone]
    if inside.min() < 0:
        raise ValueError(f"{source}: the calibration ρ = {calibration.intercept:g} + "
                         f"{calibration.slope:g}·HU gives negative densities in "
                         f"{int((inside < 0).sum())} bone voxels (down to {inside.min():.4g} "
                         f"g/cm³); check A and B (g/cm³, g/cm³ per HU) and that the image is in "
                         f"HU, or exclude those voxels from the mask (or raise the threshold)")
    # crop to the bone's bounding box; the origin moves with it
    lo = np.array([np.flatnonzero(bone.any(axis=tuple(a for a in range(3) if a != d))).min()
                   for d in range(3)])
    hi = np.array([np.flatnonzero(bone.any(axis=tuple(a for a in range(3) if a != d))).max()
                   for d in range(3)]) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    bone, rho = bone[box], rho[box]
    h0 = np.asarray(image.voxel_size, float)
    centre0 = np.zeros(3) + h0[::-1] / 2 if image.origin is None else np.asarray(image.origin)
    # node (0, 0, 0): the low corner of the first coarse voxel of the crop, world (x, y, z)
    corner = centre0 - h0[::-1] / 2 + lo[::-1] * h[::-1]
    grid = VoxelGrid.create(bone, tuple(h))
    points = grid.node_points() + corner[None, :]
    rho_ct = rho[bone]
    cell_data = {"density_g_cm3": calibration.apparent(rho_ct), "ct_density_g_cm3": rho_ct,
                 "hu": (rho_ct - calibration.intercept) / calibration.slope}
    mesh = Mesh.create(points, grid.voxel_nodes(), "hexahedron", cell_data=cell_data,
                       validate=False)
    return CTBone(mesh, source, calibration, None if threshold is None else float(threshold), k,
                  tuple(float(v) for v in h), n_comp, removed)


def synthetic_ct(mesh: Mesh, calibration: CTCalibration, *, density: str = "density_g_cm3",
                 pad: int = 3, soft_tissue_hu: float = 40.0, air_hu: float = -1000.0,
                 dtype=np.int16) -> VoxelImage:
    """The CT a scanner calibrated by ``calibration`` would take of a grid-aligned hex8 mesh's
    density field (a phantom for checking the CT route against the mesh route).

    Bone voxels get HU = (ρ − A)/B of their element's apparent density (converted to the
    calibration's kind); ``pad`` voxels of soft tissue surround the bone's box, the outermost
    layer air. Values are rounded to ``dtype`` (int16: 1 HU steps, as scanners store them).

    Returns:
        :class:`VoxelImage` (z, y, x) in HU with voxel size and world origin (voxel centre).
    """
    from .from_mesh import mesh_grid

    lay = mesh_grid(mesh)
    g = lay.grid
    rho = np.asarray(mesh.cell_data[density], float).reshape(-1)
    inner = np.zeros(g.mask.size)
    inner[np.flatnonzero(g.mask.ravel())] = calibration.hu(
        calibration.calibrated(np.asarray(lay.voxel_values(rho))))
    hu = np.full(tuple(s + 2 * pad for s in g.shape), float(soft_tissue_hu))
    box = tuple(slice(pad, pad + s) for s in g.shape)
    hu[box] = np.where(g.mask, inner.reshape(g.shape), soft_tissue_hu)
    if pad > 0:
        for axis in range(3):
            hu[(slice(None),) * axis + (0,)] = air_hu
            hu[(slice(None),) * axis + (-1,)] = air_hu
    if np.issubdtype(np.dtype(dtype), np.integer):
        hu = np.rint(hu)
    h = np.asarray(g.voxel_size, float)[::-1]                    # (dx, dy, dz)
    centre0 = np.asarray(lay.origin, float) - (pad - 0.5) * h
    return VoxelImage(hu.astype(dtype), tuple(g.voxel_size), "synthetic CT",
                      tuple(float(v) for v in centre0))


def save_nifti(image: VoxelImage, path, *, flip_x: bool = False) -> Path:
    """Write a (z, y, x) image with its voxel size and world origin as NIfTI (RAS+ affine,
    mm); ``flip_x`` stores x reversed (an LAS file) with the affine that keeps every voxel in
    place (to check that readers orient it back). Returns the path."""
    import nibabel

    xyz = np.transpose(np.asarray(image.data), (2, 1, 0))
    dz, dy, dx = image.voxel_size
    origin = np.zeros(3) if image.origin is None else np.asarray(image.origin, float)
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:3, 3] = origin
    if flip_x:
        xyz = xyz[::-1]
        affine[0, 0] = -dx
        affine[0, 3] = origin[0] + (xyz.shape[0] - 1) * dx
    img = nibabel.Nifti1Image(np.ascontiguousarray(xyz), affine)
    img.header.set_xyzt_units("mm")
    nibabel.save(img, path)
    return Path(path)


def _digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents)."""
    sha = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for p in files:
        sha.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()


def cache_dir() -> Path:
    """Where built CT bones are kept: ``$FEBONE_CACHE``, else ``$XDG_CACHE_HOME/febone``, else
    ``~/.cache/febone``."""
    if os.environ.get("FEBONE_CACHE"):
        return Path(os.environ["FEBONE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "febone"


def ct_bone_file(path, calibration: CTCalibration, *, threshold: float | None = DEFAULT_THRESHOLD,
                 resample: int = 1, mask=None, voxel_size=None, folder=None, finish=None,
                 finish_tag: str = "") -> Path:
    """The CT's bone model as a mesh file (VTU), built once and kept in ``folder``
    (default :func:`cache_dir`/ct) under a name fixed by the image's and the mask's contents
    and the options: the form a remodelling scenario's ``[bone]`` takes.

    Args:
        finish: Mesh → Mesh applied before writing (e.g. adding node-set masks), named by
            ``finish_tag`` in the file's key.

    Returns:
        Path of ``ct_<hash>.vtu`` (hex8, mm; cell data as :attr:`CTBone.mesh`).
    """
    from ..mesh.io import write_mesh

    path = Path(path)
    key = {"image": _digest(path), "mask": None if mask is None else _digest(Path(mask)),
           "calibration": asdict(calibration), "threshold": threshold, "resample": resample,
           "voxel_size": None if voxel_size is None else list(_as_voxel_size(voxel_size)),
           "finish": finish_tag, "version": 1}
    name = "ct_" + hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:20] + ".vtu"
    out = Path(folder) if folder is not None else cache_dir() / "ct"
    target = out / name
    if target.is_file():
        return target
    bone = ct_bone(read_ct(path, voxel_size=voxel_size), calibration, threshold=threshold,
                   resample=resample, mask=mask)
    mesh = bone.mesh if finish is None else finish(bone.mesh)
    tmp = out / f".{name}.{os.getpid()}.vtu"
    write_mesh(tmp, mesh)
    os.replace(tmp, target)
    log.info("CT %s: bone model of %d voxels written to %s", path, bone.mesh.n_elements, target)
    return target

"""DXA-like areal BMD, volumetric BMD and T-scores of meshes and implicit bones.

Mineral-density convention: DXA and QCT measure bone *mineral*; febone's fields hold the
apparent (wet) density ρ_app. We take mineral density = ash density ρ_ash = 0.6·ρ_app
(science.md §5; ash fraction of wet bone ≈ 0.6, Keller 1994 / Schileo 2008 use
ρ_ash/ρ_app ≈ 0.6), changeable with ``ash_fraction``.

* aBMD (g/cm²) = projected mineral mass / projected bone area, projecting along the
  antero-posterior axis (``y``) after an optional internal rotation about ``+z`` (hip DXA
  rotates the leg so that the femoral neck is parallel to the detector; see
  :func:`febone.bones.femur.dxa_rotation_deg`). The projected area is the number of
  detector pixels (``pixel_mm``) that see bone of the region.
* vBMD (mg/cm³) = mineral mass / bone volume of the region.
* T-score = (aBMD − young-adult mean) / young-adult SD.

Meshes are projected exactly: each element (hexahedra split into 6 tetrahedra, tet10 by
their corner tetrahedron) is intersected with the detector rays through the pixel centres,
so the same code measures hex8, tet4 and tet10 meshes.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from ..mesh import Mesh

__all__ = ["ArealBMD", "REFERENCE_POPULATIONS", "ASH_FRACTION", "areal_bmd", "areal_bmd_implicit",
           "volumetric_bmd", "t_score", "project_columns", "column_chords", "ColumnChords",
           "dxa_scan", "DXAScan", "element_density"]

#: mineral (ash) density / apparent density
ASH_FRACTION = 0.6

#: young-adult reference means and SDs of DXA aBMD, g/cm²
REFERENCE_POPULATIONS = {
    "femoral_neck": (0.858, 0.120, "NHANES III non-Hispanic white women 20–29 y, femoral neck "
                                   "(Looker et al. 1998, Osteoporos Int 8:468) (verify)"),
    "total_hip": (0.942, 0.122, "NHANES III non-Hispanic white women 20–29 y, total hip "
                                "(Looker et al. 1998) (verify)"),
    # a PA lumbar-spine scan: the vertebral body's ROI in the posterior–anterior projection (the
    # posterior elements behind it included, as on a clinical scan)
    "vertebral_body": (1.047, 0.110, "Hologic young-adult women, PA lumbar spine L1–L4 "
                                     "(Kelly 1990, the manufacturer's reference) (verify)"),
}


@dataclass(frozen=True)
class ArealBMD:
    """A DXA-like measurement of one region.

    Attributes:
        abmd_g_cm2: areal BMD, g/cm².
        bmc_g: projected mineral content, g.
        area_cm2: projected area, cm².
        volume_cm3: bone volume of the region, cm³.
        vbmd_mg_cm3: mineral mass / bone volume, mg/cm³.
    """

    abmd_g_cm2: float
    bmc_g: float
    area_cm2: float
    volume_cm3: float
    vbmd_mg_cm3: float


jax.tree_util.register_dataclass(
    ArealBMD, data_fields=["abmd_g_cm2", "bmc_g", "area_cm2", "volume_cm3", "vbmd_mg_cm3"],
    meta_fields=[])


def _rotation(deg: float) -> np.ndarray:
    """Rotation about +z by ``deg`` (internal rotation of a right femur in febone's frame)."""
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_KUHN = np.array([[0, 1, 2, 6], [0, 2, 3, 6], [0, 3, 7, 6], [0, 7, 4, 6], [0, 4, 5, 6],
                  [0, 5, 1, 6]])


def _corner_tets(mesh: Mesh, elements: np.ndarray):
    """(n_tets, 4) corner tetrahedra of the chosen elements and their element ids."""
    cells = mesh.cells[elements]
    if mesh.cell_type == "hexahedron":
        return cells[:, _KUHN].reshape(-1, 4), np.repeat(elements, 6)
    return cells[:, :4], elements


@dataclass(frozen=True)
class ColumnChords:
    """The chords of the detector rays through a set of elements (geometry only).

    Attributes:
        pixel: (n_hits,) flat pixel index (row-major in an (nz, nx) grid) of each chord.
        element: (n_hits,) element id of each chord.
        length: (n_hits,) chord length, mm.
        shape: (nz, nx) detector grid.
        origin: (x, z) of the grid's corner in the rotated frame, mm.
    """

    pixel: np.ndarray
    element: np.ndarray
    length: np.ndarray
    shape: tuple
    origin: np.ndarray

    def integrate(self, values) -> np.ndarray:
        """(n_fields, nz, nx) line integrals (value·mm) of element fields ``values``
        ((n_fields, n_elements) or (n_elements,))."""
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        size = int(np.prod(self.shape))
        return np.stack([np.bincount(self.pixel, weights=self.length * v[self.element],
                                     minlength=size).reshape(self.shape) for v in values])

    def total_length(self) -> np.ndarray:
        """(nz, nx) chord length through all the elements, mm."""
        return np.bincount(self.pixel, weights=self.length,
                           minlength=int(np.prod(self.shape))).reshape(self.shape)


def column_chords(mesh: Mesh, elements, *, spacing: float = 0.5,
                  rotation_deg: float = 0.0) -> ColumnChords:
    """Exact intersections of the chosen elements with the lines y ↦ (x_i, y, z_k) through the
    centres of a grid of detector pixels in the rotated frame (hexahedra split into 6
    tetrahedra, tet10 by their corner tetrahedron).

    Args:
        mesh: hex8/tet4/tet10 mesh, mm.
        elements: (m,) ids of the elements to project.
        spacing: pixel size, mm.
        rotation_deg: internal rotation about +z applied to the mesh first.
    """
    if not spacing > 0:
        raise ValueError(f"spacing must be positive (mm); got {spacing}")
    elements = np.asarray(elements)
    if elements.size == 0:
        raise ValueError("no elements to project: the region is empty")
    pts = mesh.points @ _rotation(rotation_deg).T
    tets, owner = _corner_tets(mesh, elements)
    x = pts[tets]  # (nt, 4, 3)
    xz = x[:, :, [0, 2]]
    lo, hi = xz.min(axis=(0, 1)), xz.max(axis=(0, 1))
    origin = np.floor(lo / spacing) * spacing - spacing
    n = np.ceil((hi - origin) / spacing).astype(np.int64) + 1
    shape = (int(n[1]), int(n[0]))
    i0 = np.ceil((xz.min(axis=1) - origin) / spacing - 0.5).astype(np.int64)
    i1 = np.floor((xz.max(axis=1) - origin) / spacing - 0.5).astype(np.int64)
    K = np.maximum(i1 - i0 + 1, 0).max(axis=0)
    pixels, owners, chords = [], [], []
    if np.any(K == 0):
        return ColumnChords(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), shape,
                            origin)
    T = np.stack([x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]], axis=2)
    ok = np.abs(np.linalg.det(T)) > 1e-14 * spacing**3
    Tinv = np.zeros_like(T)
    Tinv[ok] = np.linalg.inv(T[ok])
    gk, gi = np.meshgrid(np.arange(K[1]), np.arange(K[0]), indexing="ij")
    offs = np.stack([gi.ravel(), gk.ravel()], axis=1)  # (nk, 2): (x, z) offsets
    b = Tinv[:, :, 1]                                      # dλ/dy, (nt, 3)
    b_all = np.concatenate([-b.sum(axis=1, keepdims=True), b], axis=1)  # λ0..λ3
    batch = max(1, 2_000_000 // len(offs))
    big = np.inf
    for s0 in range(0, len(tets), batch):
        sl = slice(s0, s0 + batch)
        idx = i0[sl, None, :] + offs[None]                            # (nb, nk, 2)
        valid = np.all(idx <= i1[sl, None, :], axis=2) & ok[sl, None]
        # rays run a hair (1e-7 pixel, irrational ratio) off the pixel centres so that
        # none lies exactly in a face shared by two tetrahedra (it would count twice)
        cx = origin[0] + (idx[..., 0] + 0.5 + 1.4142135e-7) * spacing
        cz = origin[1] + (idx[..., 1] + 0.5 + 1.7320508e-7) * spacing
        x0 = x[sl, 0]
        w0 = np.stack([cx - x0[:, None, 0], -np.broadcast_to(x0[:, None, 1], cx.shape),
                       cz - x0[:, None, 2]], axis=2)                   # (nb, nk, 3)
        a = np.einsum("tij,tkj->tki", Tinv[sl], w0)                   # λ1..3 at y = 0
        a_all = np.concatenate([1.0 - a.sum(axis=2, keepdims=True), a], axis=2)
        bb = b_all[sl, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            root = -a_all / bb
        lower = np.where(bb > 0, root, -big).max(axis=2)
        upper = np.where(bb < 0, root, big).min(axis=2)
        never = np.any((bb == 0) & (a_all < 0), axis=2)
        chord = np.where(valid & ~never, np.clip(upper - lower, 0.0, None), 0.0)
        chord = np.where(np.isfinite(chord), chord, 0.0)
        t_id, k_id = np.nonzero(chord > 0)
        if t_id.size == 0:
            continue
        ii = idx[t_id, k_id]
        pixels.append(ii[:, 1] * n[0] + ii[:, 0])
        owners.append(owner[sl][t_id])
        chords.append(chord[t_id, k_id])
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)
    return ColumnChords(cat(pixels, np.int64), cat(owners, np.int64), cat(chords, np.float64),
                        shape, origin)


def project_columns(mesh: Mesh, elements, values: np.ndarray, *, spacing: float = 0.5,
                    rotation_deg: float = 0.0):
    """Exact line integrals of element-wise constant fields along y, on a grid of columns
    (:func:`column_chords`).

    Args:
        mesh: hex8/tet4/tet10 mesh, mm.
        elements: (m,) ids of the elements to project.
        values: (n_fields, n_elements) element values to integrate.
        spacing: pixel size, mm.
        rotation_deg: internal rotation about +z applied to the mesh first.

    Returns:
        (integrals (n_fields, nz, nx) in value·mm, chord length (nz, nx) mm, origin (x, z) mm).
    """
    chords = column_chords(mesh, elements, spacing=spacing, rotation_deg=rotation_deg)
    return chords.integrate(values), chords.total_length(), chords.origin


def _measure(mass: np.ndarray, bone_len: np.ndarray, region_len: np.ndarray,
             spacing: float) -> ArealBMD:
    """aBMD from per-column projections along y (mass in g/cm³·mm, lengths in mm).

    The region of interest is two-dimensional, as in DXA: a detector pixel belongs to it
    when most of the bone it sees belongs to the region (this removes the jagged edges of
    element-wise 3-D region masks); all bone mineral projected into it counts.
    """
    roi = (bone_len > 0) & (2 * region_len > bone_len)
    columns = int(roi.sum())
    if columns == 0:
        raise ValueError(f"the DXA region holds no bone at {spacing:g} mm pixels (projected "
                         f"bone: {int((bone_len > 0).sum())} pixels): the bone is smaller than a "
                         f"pixel, so its coordinates are probably not in mm (a mesh in metres?), "
                         f"or the region mask is empty; check the mesh units and its region_* "
                         f"cell data (Python API: a smaller pixel_mm)")
    pixel_cm2 = (spacing / 10.0) ** 2
    bmc = float(mass[roi].sum() / 10.0 * pixel_cm2)  # g/cm³·mm -> g/cm², times cm²
    area = columns * pixel_cm2
    volume = float(bone_len[roi].sum() / 10.0 * pixel_cm2)
    return ArealBMD(bmc / area, bmc, area, volume, 1000.0 * bmc / volume)


def _region_mask(mesh: Mesh, region) -> np.ndarray:
    if region is None:
        return np.ones(mesh.n_elements, dtype=bool)
    if isinstance(region, str):
        key = region if region.startswith("region_") else f"region_{region}"
        if key not in mesh.cell_data:
            have = sorted(k[len("region_"):] for k in mesh.cell_data if k.startswith("region_"))
            raise ValueError(f"the mesh has no cell-data mask {key!r}; regions present: "
                             f"{have or 'none'} (bundled meshes carry region_<name> masks)")
        return np.asarray(mesh.cell_data[key]).reshape(mesh.n_elements) != 0
    mask = np.asarray(region)
    if mask.shape != (mesh.n_elements,):
        raise ValueError(f"a region mask must have shape (n_elements,) = ({mesh.n_elements},); "
                         f"got {mask.shape}")
    return mask.astype(bool)


def element_density(mesh: Mesh, density="density_g_cm3") -> np.ndarray:
    """The apparent density of every element, (n_elements,) g/cm³, checked.

    Args:
        mesh: the mesh.
        density: the name of a cell-data field of ``mesh`` or an (n_elements,) array, g/cm³.

    Raises:
        ValueError: a missing field, a wrong shape, negative or non-finite values, or values
            above 3 g/cm³ (mg/cm³ or HU by mistake), each with the fix.
    """
    if isinstance(density, str):
        if density not in mesh.cell_data:
            raise ValueError(f"the mesh has no cell data {density!r} (apparent density, "
                             f"g/cm³); pass density=<(n_elements,) array> or add the field")
        rho = np.asarray(mesh.cell_data[density], dtype=np.float64).reshape(mesh.n_elements)
    else:
        rho = np.asarray(density, dtype=np.float64)
        if rho.shape != (mesh.n_elements,):
            raise ValueError(f"density must have shape ({mesh.n_elements},); got {rho.shape}")
    if np.any(rho < 0) or not np.all(np.isfinite(rho)):
        raise ValueError("density must be finite and non-negative (g/cm³)")
    if rho.max() > 3.0:
        raise ValueError(f"densities up to {rho.max():.4g} look like mg/cm³ or HU, not g/cm³ "
                         f"(bone tissue is ≤ 2.1 g/cm³); convert them first")
    return rho


def areal_bmd(mesh: Mesh, region=None, *, rotation_deg: float = 0.0, pixel_mm: float = 0.5,
              density="density_g_cm3", ash_fraction: float = ASH_FRACTION) -> ArealBMD:
    """DXA-like aBMD of a region of a mesh, projected along y after internal rotation.

    Args:
        mesh: hex8/tet4/tet10 mesh in mm.
        region: ``None`` (whole mesh), a region name (cell data ``region_<name>``) or an
            (n_elements,) boolean mask.
        rotation_deg: internal rotation about +z before projecting (the femur's anteversion
            for a hip scan, 0 for the spine).
        pixel_mm: detector pixel = rasterisation voxel size, mm.
        density: cell-data name or (n_elements,) apparent density, g/cm³.
        ash_fraction: mineral (ash) density / apparent density.

    Returns:
        :class:`ArealBMD` (g/cm², g, cm², cm³, mg/cm³).
    """
    return dxa_scan(mesh, region, rotation_deg=rotation_deg, pixel_mm=pixel_mm).measure(
        density, ash_fraction=ash_fraction)


@dataclass(frozen=True)
class DXAScan:
    """The geometry of a DXA-like scan of one region of a mesh (:func:`dxa_scan`): measure it
    for any density field without projecting again (what remodelling runs do at every output).

    Attributes:
        mesh: the mesh.
        chords: :class:`ColumnChords` of every element whose projection can overlap the region.
        bone_len, region_len: (nz, nx) chord length through all bone and through the region, mm.
        pixel_mm: detector pixel size, mm.
    """

    mesh: Mesh
    chords: ColumnChords
    bone_len: np.ndarray
    region_len: np.ndarray
    pixel_mm: float

    def measure(self, density="density_g_cm3", *, ash_fraction: float = ASH_FRACTION) -> ArealBMD:
        """:class:`ArealBMD` for ``density`` (cell-data name or (n_elements,) g/cm³)."""
        if not 0 < ash_fraction <= 1:
            raise ValueError(f"ash_fraction must lie in (0, 1]; got {ash_fraction}")
        rho = element_density(self.mesh, density)
        (mass,) = self.chords.integrate(ash_fraction * rho)
        return _measure(mass, self.bone_len, self.region_len, self.pixel_mm)


def dxa_scan(mesh: Mesh, region=None, *, rotation_deg: float = 0.0,
             pixel_mm: float = 0.5) -> DXAScan:
    """Project the geometry of a DXA-like scan once (arguments as in :func:`areal_bmd`)."""
    mask = _region_mask(mesh, region)
    if not mask.any():
        raise ValueError(f"region {region!r} selects no element")
    # project every element whose projection can overlap the region's projection
    pts = mesh.points @ _rotation(rotation_deg).T
    corners = pts[mesh.cells[:, : mesh.element.n_corners]]
    elo, ehi = corners.min(axis=1), corners.max(axis=1)
    rlo, rhi = elo[mask].min(axis=0), ehi[mask].max(axis=0)
    overlap = np.all((ehi[:, [0, 2]] >= rlo[[0, 2]]) & (elo[:, [0, 2]] <= rhi[[0, 2]]), axis=1)
    chords = column_chords(mesh, np.flatnonzero(overlap), spacing=pixel_mm,
                           rotation_deg=rotation_deg)
    (region_len,) = chords.integrate(mask.astype(np.float64))
    return DXAScan(mesh, chords, chords.total_length(), region_len, pixel_mm)


def areal_bmd_implicit(bone, region: str | None = None, *, rotation_deg: float = 0.0,
                       pixel_mm: float = 0.3, ash_fraction: float = ASH_FRACTION) -> ArealBMD:
    """Reference aBMD of an :class:`ImplicitBone`, sampled directly (no mesh) on a grid of
    ``pixel_mm`` in the rotated frame: the value meshes converge to."""
    R = _rotation(rotation_deg)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    box = np.where(corners, bone.upper, bone.lower) @ R.T
    lo, hi = box.min(axis=0), box.max(axis=0)

    def sample(lo, hi, s):
        ax = [np.arange(lo[i] + 0.5 * s, hi[i], s) for i in range(3)]
        z, y, x = np.meshgrid(ax[2], ax[1], ax[0], indexing="ij")
        pr = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
        return pr @ R, (len(ax[2]), len(ax[1]), len(ax[0])), ax  # back to the bone frame

    def select(p):
        inside = bone.sdf(p) < 0
        if region is None:
            return inside, inside
        regs = bone.regions(p)
        if region not in regs:
            raise ValueError(f"unknown region {region!r}; {bone.name} has {sorted(regs)}")
        return inside, inside & regs[region]

    # coarse pass (2 mm) to find the region's box, then the fine pass over its columns
    p, shape, ax = sample(lo, hi, 2.0)
    sel = select(p)[1].reshape(shape)
    if not sel.any():
        raise ValueError(f"region {region!r} of {bone.name!r} is empty")
    kz, _, kx = np.nonzero(sel)
    flo = np.array([ax[0][kx.min()] - 3.0, lo[1], ax[2][kz.min()] - 3.0])
    fhi = np.array([ax[0][kx.max()] + 3.0, hi[1], ax[2][kz.max()] + 3.0])
    p, shape, _ = sample(flo, fhi, pixel_mm)
    parts = [select(p[i:i + 500_000]) for i in range(0, len(p), 500_000)]
    inside = np.concatenate([a for a, _ in parts])
    in_region = np.concatenate([b for _, b in parts])
    rho = np.zeros(len(p))
    rho[inside] = np.concatenate([bone.density(q) for q in np.array_split(
        p[inside], max(1, inside.sum() // 500_000 + 1))])
    s = pixel_mm
    mass = (ash_fraction * rho).reshape(shape).sum(axis=1) * s
    return _measure(mass, inside.reshape(shape).sum(axis=1) * s,
                    in_region.reshape(shape).sum(axis=1) * s, s)


def volumetric_bmd(mesh: Mesh, region=None, *, density="density_g_cm3",
                   ash_fraction: float = ASH_FRACTION, volumes=None) -> float:
    """Mineral mass / bone volume of a region (mg/cm³), from element volumes (exact for
    tet4/hex8 parallelepipeds; tet10 integrated by its quadrature; or the (n_elements,) mm³
    ``volumes`` given, e.g. an FE model's, when measuring many density fields)."""
    mask = _region_mask(mesh, region)
    if not mask.any():
        raise ValueError(f"region {region!r} selects no element")
    rho = element_density(mesh, density)
    if volumes is None:
        from ..mesh.validate import jacobian_determinants

        ref = mesh.element
        vol = jacobian_determinants(mesh)[:, : len(ref.quad_weights)] @ ref.quad_weights
    else:
        vol = np.asarray(volumes, dtype=np.float64)
        if vol.shape != (mesh.n_elements,):
            raise ValueError(f"volumes must have shape ({mesh.n_elements},); got {vol.shape}")
    return float(1000.0 * ash_fraction * np.sum(rho[mask] * vol[mask]) / np.sum(vol[mask]))


def t_score(abmd_g_cm2: float, site: str = "femoral_neck") -> float:
    """T-score against the young-adult reference of ``site`` (see REFERENCE_POPULATIONS)."""
    if site not in REFERENCE_POPULATIONS:
        raise ValueError(f"no reference population for site {site!r}; known: "
                         f"{sorted(REFERENCE_POPULATIONS)}")
    mean, sd, _ = REFERENCE_POPULATIONS[site]
    return (float(abmd_g_cm2) - mean) / sd

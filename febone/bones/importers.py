"""Bring your own bone: closed surfaces (STL/OBJ/PLY) and segmentation masks (NIfTI).

* :func:`read_surface` reads a triangle surface with meshio, converts it to mm, checks it
  and makes the documented repairs (:func:`febone.bones.surface.clean_surface`).
* :func:`surface_to_mesh` voxelises it (hex8) or builds a surface-fitted tet4 mesh, with a
  uniform density or a cortical shell of chosen thickness around a trabecular core.
* :func:`read_mask` / :func:`mask_to_mesh` turn a label map into one hex8 voxel mesh per
  label (voxels placed by the image affine, in mm), the label kept as cell data.

Units: febone works in mm. ``units="m"`` (OpenSim geometry is in metres), ``"cm"``,
``"mm"``, or ``"auto"`` (metres when the object would otherwise be smaller than 5 mm).
With explicit units, an object whose size is not that of a bone (5–2000 mm) is an error
that names the likely unit mistake.

Dependencies: meshio (required by febone) reads the surfaces; NIfTI needs ``nibabel``
(optional; imported inside :func:`read_mask`). pyvista is not needed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..mesh import Mesh
from .meshing import _fit_surface, _surface_nodes, boundary_face_keys, hex_to_tets
from .surface import Surface, SurfaceError, clean_surface, closest_points, voxelize_surface
from .voxels import keep_largest_component, make_well_composed, mask_hex_cells

__all__ = ["read_surface", "surface_to_mesh", "read_mask", "mask_to_mesh", "Surface",
           "SurfaceError", "UNIT_SCALE"]

log = logging.getLogger(__name__)

UNIT_SCALE = {"mm": 1.0, "m": 1000.0, "cm": 10.0, "um": 1e-3}
_BONE_SIZE_MM = (5.0, 2000.0)


def _scale_for_units(size_native: float, units: str, what: str) -> float:
    """mm per file unit, checking that the object then has a bone's size."""
    if units == "auto":
        for u in ("mm", "m"):
            if _BONE_SIZE_MM[0] <= size_native * UNIT_SCALE[u] <= _BONE_SIZE_MM[1]:
                if u != "mm":
                    log.info("%s: size %.4g in file units: taking the units to be metres",
                             what, size_native)
                return UNIT_SCALE[u]
        raise SurfaceError(f"{what}: cannot guess the units: its size is {size_native:.4g} "
                           f"file units, not a bone's 5–2000 mm in mm or in metres; pass "
                           f"units='mm', 'cm' or 'm' explicitly")
    if units not in UNIT_SCALE:
        raise ValueError(f"units must be one of {sorted(UNIT_SCALE)} or 'auto'; got {units!r}")
    size = size_native * UNIT_SCALE[units]
    if not _BONE_SIZE_MM[0] <= size <= _BONE_SIZE_MM[1]:
        guess = [u for u in ("m", "cm", "mm") if u != units
                 and _BONE_SIZE_MM[0] <= size_native * UNIT_SCALE[u] <= _BONE_SIZE_MM[1]]
        hint = f"the file is probably in {guess[0]!r}: pass units={guess[0]!r}" if guess else \
            "check the file's units"
        raise SurfaceError(f"{what} is {size:.4g} mm across when read in {units!r}, not the "
                           f"size of a bone (5–2000 mm); {hint} (or units='auto')")
    return UNIT_SCALE[units]


def read_surface(path, *, units: str = "mm", repair: bool = True) -> Surface:
    """Read a closed triangle surface (STL, OBJ, PLY, OFF, VTK, ...) in mm.

    Args:
        path: surface file (quads and polygons are split into triangles).
        units: the file's length unit (``"mm"``, ``"cm"``, ``"m"``) or ``"auto"``.
        repair: allow the documented repairs (else they are errors).

    Raises:
        FileNotFoundError, SurfaceError (open / non-manifold / empty / wrong units).
    """
    import meshio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"surface file {str(path)!r} does not exist")
    try:
        m = meshio.read(path)
    except Exception as err:  # meshio raises several types for unreadable files
        raise SurfaceError(f"could not read {str(path)!r} as a surface: {err}") from err
    tris = []
    for block in m.cells:
        d = np.asarray(block.data)
        if block.type == "triangle":
            tris.append(d)
        elif block.type == "quad":
            tris += [d[:, [0, 1, 2]], d[:, [0, 2, 3]]]
        elif block.type.startswith("polygon"):
            tris += [d[:, [0, i, i + 1]] for i in range(1, d.shape[1] - 1)]
    if not tris:
        raise SurfaceError(f"{path.name} holds no surface triangles (cell blocks: "
                           f"{[b.type for b in m.cells]})")
    pts = np.asarray(m.points, dtype=np.float64)[:, :3]
    size = float(np.linalg.norm(pts.max(0) - pts.min(0)))
    scale = _scale_for_units(size, units, path.name)
    return clean_surface(pts * scale, np.concatenate(tris), source=path.name, repair=repair)


def _shell_density(depth, thickness, rho_cortical, rho_trabecular):
    """Cortical within ``thickness`` of the surface, trabecular deeper, 0.5 mm blend."""
    from .shapes import smoothstep

    shell = 1.0 - smoothstep((depth - thickness + 0.25) / 0.5)
    return rho_trabecular + (rho_cortical - rho_trabecular) * shell


def _densities(sub: np.ndarray, surface: Surface, density: str, rho: float, thickness: float,
               rho_cortical: float, rho_trabecular: float, deep=None) -> np.ndarray:
    """(n_el,) mean density over each element's sub-points; ``deep`` (n_el,) marks elements
    known to lie deeper than the shell (trabecular, no distance computed)."""
    n_el, n_s, _ = sub.shape
    if density == "uniform":
        return np.full(n_el, float(rho))
    out = np.full(n_el, float(rho_trabecular))
    near = np.ones(n_el, dtype=bool) if deep is None else ~np.asarray(deep)
    if near.any():
        _, depth = closest_points(surface, sub[near].reshape(-1, 3), thickness + 1.0)
        r = _shell_density(depth, thickness, rho_cortical, rho_trabecular)
        out[near] = r.reshape(-1, n_s).mean(axis=1)
    return out


def _deep_voxels(mask: np.ndarray, layers: int) -> np.ndarray:
    """Voxels more than ``layers`` face-neighbour steps inside the mask (erosion)."""
    m = np.asarray(mask, bool)
    for _ in range(layers):
        p = np.pad(m, 1)
        m = (p[1:-1, 1:-1, 1:-1] & p[:-2, 1:-1, 1:-1] & p[2:, 1:-1, 1:-1] & p[1:-1, :-2, 1:-1]
             & p[1:-1, 2:, 1:-1] & p[1:-1, 1:-1, :-2] & p[1:-1, 1:-1, 2:])
    return m


def _layers(thickness: float, h: float) -> int:
    """Erosion steps after which a voxel is surely deeper than the shell's reach.

    k face-neighbour erosions keep voxels whose nearest outside voxel is more than k steps
    away in the L1 sense, hence more than k·h/√3 in Euclidean distance; the surface lies
    within one voxel of the mask boundary and the shell reaches thickness + 1 mm.
    """
    return int(np.ceil(np.sqrt(3.0) * (thickness + 1.0 + h) / h))


def _hex_sub_points(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(n_hex, 8, 3) points of the 2×2×2 Gauss rule mapped trilinearly (any hexahedron)."""
    from ..mesh.elements import element

    ref = element("hexahedron")
    N = ref.shape_at_quadrature()  # (8 quadrature points, 8 nodes)
    return np.einsum("qa,eai->eqi", N, points[cells])


def _check_density_args(density, rho, thickness, rho_cortical, rho_trabecular):
    if density not in ("uniform", "shell"):
        raise ValueError(f"density must be 'uniform' or 'shell'; got {density!r}")
    for name, v in (("rho", rho), ("rho_cortical", rho_cortical),
                    ("rho_trabecular", rho_trabecular)):
        if not (np.isfinite(v) and 0 < v <= 2.2):
            raise ValueError(f"{name} must be an apparent density in (0, 2.2] g/cm³; got {v} "
                             f"(mg/cm³ or HU must be converted first)")
    if not (np.isfinite(thickness) and thickness > 0):
        raise ValueError(f"cortical_thickness_mm must be positive; got {thickness}")


def _modulus(law: str, rho: np.ndarray) -> np.ndarray:
    from ..material import density_law

    L = density_law(law)
    return L.a * np.maximum(rho, L.rho_min) ** L.b


def surface_to_mesh(surface, h: float, *, cell_type: str = "hexahedron",
                    density: str = "shell", rho: float = 1.0,
                    cortical_thickness_mm: float = 2.0, rho_cortical: float = 1.8,
                    rho_trabecular: float = 0.3, law: str = "morgan-femoral-neck",
                    units: str = "mm") -> Mesh:
    """Volume mesh of a closed surface with a density field.

    Args:
        surface: a :class:`Surface` or a path (read with ``units``).
        h: voxel size, mm.
        cell_type: ``"hexahedron"``/``"hex8"`` (voxels whose centre is inside) or
            ``"tetra"``/``"tet4"`` (their Kuhn split with surface nodes moved onto the
            surface, element quality kept ≥ 0.2; see :mod:`febone.bones.meshing`).
        density: ``"uniform"`` (``rho`` everywhere) or ``"shell"``: ``rho_cortical`` within
            ``cortical_thickness_mm`` of the surface (0.5 mm blend), ``rho_trabecular`` inside;
            element values are means over sub-sample points (partial volume).
        law: density→modulus law for ``E_MPa`` (default Morgan 2003 femoral neck, which gives
            ≈ 16 GPa at 1.8 g/cm³; ``"morgan-vertebra"`` for vertebrae).

    Returns:
        A validated mesh with cell data ``density_g_cm3``, ``E_MPa`` and point data
        ``surface`` (1 on the outer surface).
    """
    from ..mesh.elements import ALIASES
    from .meshing import _sub_points_hex, _sub_points_tet

    if not isinstance(surface, Surface):
        surface = read_surface(surface, units=units)
    name = ALIASES.get(cell_type, cell_type)
    if name not in ("hexahedron", "tetra"):
        raise ValueError(f"cell_type must be 'hexahedron' (hex8) or 'tetra' (tet4); got "
                         f"{cell_type!r}")
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"voxel size h must be positive (mm); got {h}")
    _check_density_args(density, rho, cortical_thickness_mm, rho_cortical, rho_trabecular)
    extent = float((surface.upper - surface.lower).min())
    if h > 0.5 * extent:
        raise ValueError(f"voxel size {h} mm is too coarse for an object {extent:.3g} mm thin; "
                         f"use h ≤ {0.25 * extent:.3g} mm")
    mask, origin = voxelize_surface(surface, h)
    if not mask.any():
        raise SurfaceError(f"no voxel centre of size {h} mm lies inside {surface.source!r}; "
                           f"use a smaller h")
    mask = make_well_composed(keep_largest_component(mask))
    points, hexes, vox = mask_hex_cells(mask, origin, h)
    deep = _deep_voxels(mask, _layers(cortical_thickness_mm, h)).ravel()[vox]
    if name == "hexahedron":
        cells = hexes
        sub = _sub_points_hex(points, cells, 2)
    else:
        cells = hex_to_tets(hexes)
        nodes = np.flatnonzero(_surface_nodes(points, cells, "tetra"))

        def project(p):
            target, _ = closest_points(surface, p, 0.9 * h)
            return target

        points, alpha = _fit_surface(points, cells, nodes, project)
        log.info("snapped %d surface nodes (%.1f%% fully)", len(nodes), 100 * np.mean(alpha == 1))
        sub = _sub_points_tet(points, cells)
        deep = np.repeat(deep, 6)  # the 6 Kuhn tetrahedra of each voxel
    rho_el = _densities(sub, surface, density, rho, cortical_thickness_mm, rho_cortical,
                        rho_trabecular, deep)
    on = _surface_nodes(points, cells, name)
    return Mesh.create(points, cells, name, {"surface": on.astype(np.uint8)},
                       {"density_g_cm3": rho_el, "E_MPa": _modulus(law, rho_el)})


def _mask_shell_density(m, vox, pts, cells, affine, what, lab, thickness, rho_cortical,
                        rho_trabecular):
    """Shell density of a voxel mask: depth of each voxel centre below the voxel surface.

    With SciPy: its exact Euclidean distance transform (voxel spacing from the affine's
    column lengths; exact for orthogonal voxel axes) minus half a voxel. Without SciPy:
    exact distances to the triangulated voxel surface (slower).
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[::-1]  # mask axes are (k, j, i)
    try:
        from scipy.ndimage import distance_transform_edt
    except ImportError:  # optional: fall back to exact point-surface distances
        faces, _ = boundary_face_keys(cells, "hexahedron", len(pts))
        tris = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
        surf = Surface(pts, tris, (), f"{what} label {lab}")
        deep = _deep_voxels(m, _layers(thickness, float(spacing.min()))).ravel()[vox]
        return _densities(_hex_sub_points(pts, cells), surf, "shell", 1.0, thickness,
                          rho_cortical, rho_trabecular, deep)
    dist = distance_transform_edt(np.pad(m, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    depth = dist.ravel()[vox] - 0.5 * float(spacing.min())
    return _shell_density(depth, thickness, rho_cortical, rho_trabecular)


_NIFTI_UNITS = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3}


def read_mask(path, *, units: str = "auto"):
    """Read a NIfTI label map.

    Args:
        path: ``.nii`` / ``.nii.gz`` file.
        units: ``"auto"`` takes the header's spatial unit (mm, metre or micron; "unknown" is
            read as mm), or force ``"mm"``, ``"cm"``, ``"m"``, ``"um"``.

    Returns:
        (labels (ni, nj, nk) int array, affine (4, 4) voxel index → world mm).

    Raises:
        ImportError: nibabel is not installed (``pip install nibabel``).
        ValueError: not a 3-D integer label map, or an implausible voxel size (units).
    """
    try:
        import nibabel as nib
    except ImportError as err:  # optional dependency
        raise ImportError("reading NIfTI masks needs nibabel: pip install nibabel") from err
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mask file {str(path)!r} does not exist")
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path.name}: a label map must be 3-D; got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise ValueError(f"{path.name} holds non-integer values: it is an image, not a "
                             f"label map; segment it first")
        data = np.round(data).astype(np.int64)
    affine = np.asarray(img.affine, dtype=np.float64)
    if units == "auto":
        space = img.header.get_xyzt_units()[0]
        scale = _NIFTI_UNITS.get(space, 1.0)
        if space not in _NIFTI_UNITS:
            log.info("%s: spatial unit %r read as mm", path.name, space)
    elif units in UNIT_SCALE:
        scale = UNIT_SCALE[units]
    else:
        raise ValueError(f"units must be 'auto' or one of {sorted(UNIT_SCALE)}; got {units!r}")
    affine[:3] *= scale
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all((voxel >= 0.005) & (voxel <= 10.0)):
        raise ValueError(f"{path.name}: voxel size {np.round(voxel, 6).tolist()} mm is not that "
                         f"of a CT/MR/micro-CT image (0.005–10 mm); the header's units are "
                         f"probably wrong: pass units='m', 'mm' or 'um' to read_mask/mask_to_mesh")
    return data.astype(np.int64), affine


def mask_to_mesh(source, *, labels=None, affine=None, units: str = "auto",
                 keep_largest: bool = True, density: str = "uniform", rho: float = 1.0,
                 cortical_thickness_mm: float = 1.0, rho_cortical: float = 1.8,
                 rho_trabecular: float = 0.3, law: str = "morgan-vertebra") -> dict[int, Mesh]:
    """One hex8 voxel mesh per label of a segmentation.

    Args:
        source: a NIfTI path, or an (ni, nj, nk) integer array with ``affine``.
        labels: labels to mesh (default: every non-zero label present).
        affine: (4, 4) voxel index → world mm (arrays only; default identity = 1 mm voxels).
        keep_largest: keep each label's largest face-connected component (drops stray
            voxels; logged).
        density: ``"uniform"`` or ``"shell"``: cortical where the voxel centre lies within
            ``cortical_thickness_mm`` of the label's voxel surface (0.5 mm blend), trabecular
            deeper; depths by SciPy's Euclidean distance transform when SciPy is installed
            (optional), else by exact distances to the voxel surface.
        law: density→modulus law for ``E_MPa``.

    Returns:
        {label: Mesh} with cell data ``label`` (int32), ``density_g_cm3``, ``E_MPa`` and
        point data ``surface``. Hexahedra follow the image axes (possibly oblique); a
        mirrored affine (negative determinant) is handled by reordering the corners.

    Raises:
        ValueError: requested labels that have no voxel (the message lists those present),
            an empty mask, a bad affine.
    """
    if isinstance(source, (str, Path)):
        data, affine = read_mask(source, units=units)
        what = Path(source).name
    else:
        data = np.asarray(source)
        what = "the mask"
        if data.ndim != 3 or not np.issubdtype(data.dtype, np.integer):
            raise ValueError(f"a label map must be a 3-D integer array; got {data.dtype} "
                             f"{data.shape}")
        affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"affine must be an invertible (4, 4) voxel→mm matrix; got "
                         f"{affine.shape}")
    _check_density_args(density, rho, cortical_thickness_mm, rho_cortical, rho_trabecular)
    present = sorted(int(v) for v in np.unique(data) if v != 0)
    if not present:
        raise ValueError(f"{what} has no labelled voxel (all zero)")
    wanted = present if labels is None else [int(v) for v in np.atleast_1d(labels)]
    missing = [v for v in wanted if v not in present]
    if missing:
        raise ValueError(f"{what} has no voxel with label(s) {missing}; labels present: "
                         f"{present}")
    mirrored = np.linalg.det(affine[:3, :3]) < 0
    out = {}
    for lab in wanted:
        m = np.transpose(data == lab, (2, 1, 0))  # (nk, nj, ni): i fastest
        if keep_largest:
            m = keep_largest_component(m)
        idx_pts, cells, vox = mask_hex_cells(m, (-0.5, -0.5, -0.5), 1.0)
        pts = idx_pts @ affine[:3, :3].T + affine[:3, 3]
        if mirrored:
            cells = cells[:, [0, 3, 2, 1, 4, 7, 6, 5]]
        if density == "uniform":
            rho_el = np.full(len(cells), float(rho))
        else:
            rho_el = _mask_shell_density(m, vox, pts, cells, affine, what, lab,
                                         cortical_thickness_mm, rho_cortical, rho_trabecular)
        on = _surface_nodes(pts, cells, "hexahedron")
        out[lab] = Mesh.create(pts, cells, "hexahedron", {"surface": on.astype(np.uint8)},
                               {"label": np.full(len(cells), lab, dtype=np.int32),
                                "density_g_cm3": rho_el, "E_MPa": _modulus(law, rho_el)})
        log.info("%s label %d: %d voxels", what, lab, len(cells))
    return out

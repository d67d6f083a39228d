"""Reading and writing meshes through meshio (VTU, XDMF, Gmsh .msh, Abaqus .inp, ...)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .elements import ELEMENTS
from .mesh import Mesh
from .validate import MeshError

__all__ = ["read_mesh", "write_mesh", "from_meshio", "to_meshio"]

log = logging.getLogger(__name__)

_SURFACE_OR_LINE = {"vertex", "line", "line3", "triangle", "triangle6", "quad", "quad8", "quad9"}


def from_meshio(m, *, validate: bool = True) -> Mesh:
    """Convert a ``meshio.Mesh``. Lower-dimensional blocks (boundary faces, lines) are dropped;
    several blocks of one supported volume type are concatenated with their cell data.

    Raises:
        MeshError: no volume cells, an unsupported volume type, or mixed volume types.
    """
    volume = [(i, b) for i, b in enumerate(m.cells) if b.type not in _SURFACE_OR_LINE]
    if not volume:
        raise MeshError(f"the mesh has no volume cells (blocks: {[b.type for b in m.cells]}); "
                        f"febone needs tetra, tetra10 or hexahedron cells")
    types = sorted({b.type for _, b in volume})
    unsupported = [t for t in types if t not in ELEMENTS]
    if unsupported:
        raise MeshError(f"unsupported cell type(s) {unsupported}: febone solves tetra (tet4), "
                        f"tetra10 (tet10) and hexahedron (hex8); convert the mesh first")
    if len(types) > 1:
        raise MeshError(f"mixed volume cell types {types}: febone meshes hold one type; split "
                        f"or convert the mesh (e.g. all tetra10)")
    dropped = [b.type for b in m.cells if b.type in _SURFACE_OR_LINE]
    if dropped:
        log.info("ignoring lower-dimensional cell blocks %s", sorted(set(dropped)))
    cells = np.concatenate([b.data for _, b in volume])
    cell_data = {}
    for name, blocks in m.cell_data.items():
        if name.startswith("gmsh:") or name.startswith("medit:"):
            continue
        cell_data[name] = np.concatenate([np.asarray(blocks[i]) for i, _ in volume])
    point_data = {k: np.asarray(v) for k, v in m.point_data.items()}
    return Mesh.create(m.points, cells, types[0], point_data, cell_data, validate=validate)


def to_meshio(mesh: Mesh, point_data=None, cell_data=None):
    """A ``meshio.Mesh`` with the mesh's own data plus extra point/cell fields."""
    import meshio

    pd = {**mesh.point_data, **(point_data or {})}
    cd = {**mesh.cell_data, **(cell_data or {})}
    return meshio.Mesh(
        mesh.points, [(mesh.cell_type, mesh.cells)],
        point_data={k: np.asarray(v) for k, v in pd.items()},
        cell_data={k: [np.asarray(v)] for k, v in cd.items()},
    )


def read_mesh(path, *, validate: bool = True) -> Mesh:
    """Read a mesh file (any format meshio reads: .vtu, .vtk, .xdmf, .msh, .inp, ...).

    Args:
        path: file path; coordinates are taken to be in mm.
        validate: check orientation, unused nodes, NaNs (see :func:`validate_mesh`).
    """
    import meshio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file {str(path)!r} does not exist")
    try:
        m = meshio.read(path)
    except (Exception, SystemExit) as err:
        # a damaged file fails inside meshio's parsers with whatever they raise (XML, struct,
        # zlib, index, attribute errors; sys.exit() for some): one error naming the file.
        # File-system faults (an OSError with an errno: permissions, a folder) pass unchanged.
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise MeshError(f"could not read mesh file {str(path)!r} ({type(err).__name__}: {err}); "
                        f"check that it is a complete {path.suffix or 'mesh'} file meshio can "
                        f"read (VTU, XDMF, Gmsh .msh, Abaqus .inp, ...)") from None
    return from_meshio(m, validate=validate)


def write_mesh(path, mesh: Mesh, point_data=None, cell_data=None) -> Path:
    """Write the mesh with extra fields; the format follows the file extension.

    Formats without general field support (Gmsh, Abaqus) get geometry only. XDMF is
    written with XML-embedded data (meshio still imports h5py, a core dependency); 8-bit and
    boolean arrays are widened to int32, which XDMF can describe.
    """
    import meshio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = to_meshio(mesh, point_data, cell_data)
    suffix = path.suffix.lower()
    if suffix in (".msh", ".inp"):
        m = meshio.Mesh(m.points, m.cells)
        if suffix == ".msh":
            meshio.write(path, m, file_format="gmsh22", binary=False)
            return path
    if suffix in (".xdmf", ".xmf"):
        def widen(a):
            a = np.asarray(a)
            return a.astype(np.int32) if a.dtype.itemsize == 1 or a.dtype == bool else a

        m.point_data = {k: widen(v) for k, v in m.point_data.items()}
        m.cell_data = {k: [widen(b) for b in v] for k, v in m.cell_data.items()}
        meshio.xdmf.write(path, m, data_format="XML")
        return path
    meshio.write(path, m)
    return path

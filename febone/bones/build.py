"""Regenerate the bundled meshes in ``febone/data/meshes/`` (bit for bit on one platform).

Usage::

    python -m febone.bones.build              # all meshes + meshes/README.md
    python -m febone.bones.build --only femur_coarse --out /tmp/meshes

Everything is deterministic: the generators are closed-form (the trabecular cube draws its
waves from a fixed PCG64 seed), the meshers are plain NumPy, and the VTU files are written
by meshio (binary, zlib) with int32 connectivity and uint8 masks to keep ``meshes/``
small (finer tetrahedral meshes are left out of ``meshes/`` for size; make them with
``mesh_bone(femur(), 1.25, "tet4")``). Floating-point results can differ in the last bits
between CPU architectures or
NumPy versions; the README records the versions used.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import MESHES_DIR
from ..mesh import Mesh
from .densitometry import REFERENCE_POPULATIONS, areal_bmd, areal_bmd_implicit, t_score, \
    volumetric_bmd
from .femur import dxa_rotation_deg, femur
from .implicit import ImplicitBone
from .meshing import mesh_bone
from .trabecular import trabecular_cube
from .vertebra import vertebra

__all__ = ["MeshSpec", "SPECS", "build_mesh", "write_bundled", "build", "main", "MESHES_DIR"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshSpec:
    """One bundled file: ``<name>.vtu`` from ``generator()`` at voxel size ``h`` (mm)."""

    name: str
    generator: Callable[[], ImplicitBone]
    h: float
    cell_type: str
    purpose: str


SPECS = (
    MeshSpec("femur_coarse_hex8", femur, 3.0, "hexahedron", "CI, default runs"),
    MeshSpec("femur_coarse_tet4", femur, 3.0, "tetra", "CI, default runs"),
    MeshSpec("femur_medium_hex8", femur, 2.0, "hexahedron", "examples"),
    MeshSpec("femur_medium_tet4", femur, 2.0, "tetra", "examples"),
    MeshSpec("femur_fine_hex8", femur, 1.25, "hexahedron", "benchmarks"),
    MeshSpec("vertebra_coarse_hex8", vertebra, 1.5, "hexahedron", "CI, default runs"),
    MeshSpec("vertebra_coarse_tet4", vertebra, 1.5, "tetra", "CI, default runs"),
    MeshSpec("vertebra_medium_hex8", vertebra, 1.0, "hexahedron", "benchmarks"),
    MeshSpec("trabecular_080um_hex8", trabecular_cube, 0.08, "hexahedron", "CI, micro-FE demos"),
    MeshSpec("trabecular_050um_hex8", trabecular_cube, 0.05, "hexahedron", "benchmarks"),
)


def build_mesh(spec: MeshSpec) -> Mesh:
    """The mesh of one spec (no file written)."""
    return mesh_bone(spec.generator(), spec.h, spec.cell_type)


def write_bundled(path, mesh: Mesh) -> Path:
    """Write a mesh compactly: int32 connectivity, uint8 masks, float64 fields (VTU, zlib)."""
    import meshio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mesh.n_nodes >= 2**31:
        raise ValueError("too many nodes for int32 connectivity")
    m = meshio.Mesh(mesh.points, [(mesh.cell_type, mesh.cells.astype(np.int32))],
                    point_data={k: np.asarray(v) for k, v in mesh.point_data.items()},
                    cell_data={k: [np.asarray(v)] for k, v in mesh.cell_data.items()})
    meshio.write(path, m, file_format="vtu", binary=True, compression="zlib")
    return path


def _volume(mesh: Mesh) -> np.ndarray:
    from ..mesh.validate import jacobian_determinants

    ref = mesh.element
    return jacobian_determinants(mesh)[:, : len(ref.quad_weights)] @ ref.quad_weights


def _stats(spec: MeshSpec, mesh: Mesh, path: Path) -> dict:
    vol = _volume(mesh)
    rho = np.asarray(mesh.cell_data["density_g_cm3"])
    E = np.asarray(mesh.cell_data["E_MPa"])
    row = {"file": path.name, "h": spec.h, "type": {"hexahedron": "hex8", "tetra": "tet4"}[
        mesh.cell_type], "nodes": mesh.n_nodes, "elements": mesh.n_elements,
        "volume_cm3": vol.sum() / 1000.0, "rho_min": rho.min(),
        "rho_mean": np.sum(rho * vol) / vol.sum(),
        "rho_max": rho.max(), "E_min": E.min(), "E_max": E.max(),
        "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "purpose": spec.purpose,
        "sets": {k: int(np.sum(v)) for k, v in mesh.point_data.items()}}
    bone = mesh.cell_data
    if "region_femoral_neck" in bone:
        rot = dxa_rotation_deg()
        row["fn_abmd"] = areal_bmd(mesh, "femoral_neck", rotation_deg=rot).abmd_g_cm2
        row["th_abmd"] = areal_bmd(mesh, "total_hip", rotation_deg=rot).abmd_g_cm2
    if "region_vertebral_body" in bone:
        row["ap_abmd"] = areal_bmd(mesh, None).abmd_g_cm2
        row["body_vbmd"] = volumetric_bmd(mesh, "vertebral_body")
    if mesh.cell_type == "hexahedron" and spec.generator is trabecular_cube:
        size = trabecular_cube().info["params"]["size_mm"]
        row["bv_tv"] = vol.sum() / size**3
    return row


def _readme(rows: list[dict], refs: dict) -> str:
    import meshio

    lines = [
        "# Bundled bones",
        "",
        "Generated by febone's own code (`febone/bones/`); regenerate bit for bit with",
        "",
        "    python -m febone.bones.build",
        "",
        f"This README and the files were written by that command with numpy {np.__version__}, "
        f"meshio {meshio.__version__}, Python {platform.python_version()} on "
        f"{platform.machine()} ({platform.system()}, {os.cpu_count()} CPU cores); "
        f"floating-point results may differ in the last bits on other platforms or library "
        f"versions.",
        "",
        "Units: mm, g/cm³ (apparent density), MPa. All files are VTU (binary, zlib), read them",
        "with `febone.read_mesh(path)` (or ParaView).",
        "",
        "## Files",
        "",
        "| file | h (mm) | cells | nodes | elements | volume (cm³) "
        "| ρ min / mean / max (g/cm³) | E range (MPa) | size | use |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['file']}` | {r['h']:g} | {r['type']} | {r['nodes']:,} | {r['elements']:,} | "
            f"{r['volume_cm3']:.4g} | "
            f"{r['rho_min']:.3f} / {r['rho_mean']:.3f} / {r['rho_max']:.3f} | "
            f"{r['E_min']:.0f}–{r['E_max']:.0f} | {r['bytes'] / 1e6:.2f} MB | {r['purpose']} |")
    lines += ["", "Node-set sizes (point-data masks, number of nodes):", ""]
    for r in rows:
        lines.append(f"- `{r['file']}`: " + ", ".join(f"{k} {v}" for k, v in r["sets"].items()))
    fn, fn_sd, fn_src = REFERENCE_POPULATIONS["femoral_neck"]
    th, th_sd, _ = REFERENCE_POPULATIONS["total_hip"]
    lines += [
        "",
        "## Densitometry (DXA-like, ρ_ash = 0.6 ρ_app, projected along y after the femur's "
        f"{dxa_rotation_deg():g}° internal rotation)",
        "",
        f"Reference (implicit femur sampled at 0.3 mm, no mesh): femoral-neck aBMD "
        f"{refs['fn'].abmd_g_cm2:.3f} g/cm² (T = {t_score(refs['fn'].abmd_g_cm2):+.2f}; target "
        f"{fn:.3f} ± {fn_sd:.3f}, {fn_src}); total hip {refs['th'].abmd_g_cm2:.3f} g/cm² "
        f"(T = {t_score(refs['th'].abmd_g_cm2, 'total_hip'):+.2f} against {th:.3f} ± {th_sd:.3f}); "
        f"femoral-neck region bone volume {refs['fn'].volume_cm3:.1f} cm³, projected area "
        f"{refs['fn'].area_cm2:.2f} cm².",
        "",
        "| file | femoral neck aBMD (g/cm²) | total hip aBMD (g/cm²) |",
        "|---|---|---|",
    ]
    for r in rows:
        if "fn_abmd" in r:
            lines.append(f"| `{r['file']}` | {r['fn_abmd']:.3f} | {r['th_abmd']:.3f} |")
    lines += ["", "Vertebra: AP projection of the whole vertebra (body + posterior elements, no "
              "clinical L1–L4 ROI), and the mineral density of the body region:", "",
              "| file | whole-vertebra AP aBMD (g/cm²) | body vBMD (mg/cm³ mineral) |",
              "|---|---|---|"]
    for r in rows:
        if "ap_abmd" in r:
            lines.append(f"| `{r['file']}` | {r['ap_abmd']:.3f} | {r['body_vbmd']:.0f} |")
    lines += ["", "| file | BV/TV (target 0.18) |", "|---|---|"]
    for r in rows:
        if "bv_tv" in r:
            lines.append(f"| `{r['file']}` | {r['bv_tv']:.3f} |")
    lines += ["", _CONVENTIONS]
    return "\n".join(lines) + "\n"


_CONVENTIONS = """## Conventions

**Femur** (`femur_*`): a right proximal femur of a young-adult woman (dimensions and
sources in `febone/bones/femur.py`: head Ø 44 mm, neck–shaft angle 128°, anteversion 12°,
neck length 48 mm head centre → shaft axis, neck Ø 30 mm, shaft Ø 28 mm, cortex 5 mm at
the cut). Axes: `+z` proximal along the shaft axis (x = y = 0), `+x` lateral (the greater
trochanter; the head is at `−x`), `+y` anterior; `z = 0` at the head centre; distal cut at
`z = −120`. Hip DXA views the femur after an internal rotation of 12° about `+z`
(`febone.bones.dxa_rotation_deg()`), projecting along `y`.

- cell data: `density_g_cm3` (apparent density), `E_MPa` (Morgan 2003 femoral neck,
  6850 ρ^1.49), `region_head`, `region_femoral_neck` (DXA-like 15 mm neck box),
  `region_trochanter`, `region_intertrochanteric`, `region_total_hip`, `region_shaft` (0/1).
- point data (0/1 node sets): `head_contact` (35° cap of the head around the direction
  20° medial of `+z`: stance hip-contact area), `head_medial` (30° cap around `−x`:
  sideways-fall support), `trochanter_lateral` (lateral patch of the greater trochanter:
  sideways-fall impact), `distal_cut` (the cut face `z = −120`).

**Vertebra** (`vertebra_*`): an L3-like lumbar vertebra (body 45 × 33 × 26 mm, 1.5 mm
endplate concavity, 0.5 mm shell, posterior elements). Axes: `+z` cranial, `+y` anterior,
`+x` patient's right; body centred at the origin, endplate rims at `z = ±13`.

- cell data: `density_g_cm3`, `E_MPa` (Morgan 2003 vertebra, 4730 ρ^1.56),
  `region_vertebral_body`, `region_posterior`.
- point data: `endplate_superior`, `endplate_inferior` (surface nodes over the body within
  concavity + 0.75 h of the rim planes: platens or potting for axial compression).

**Trabecular cube** (`trabecular_*`): 4 mm cube of synthetic plate-like trabecular bone
(target BV/TV 0.18, structure elongated 1.5× along z), bone voxels only; every element is
tissue: `density_g_cm3` = 2.0, `E_MPa` = 18 000 (use ν = 0.3); node sets
`face_{x,y,z}{min,max}` on the cube faces.

**Meshes**: `hex8` files are the voxels (centre inside the bone) of a grid aligned with the
axes and with the distal cut / endplate rim / cube faces, repaired to a closed 2-manifold
surface (not the cube); `tet4` files split the same voxels into 6 Kuhn tetrahedra and move
the surface nodes onto the bone surface without letting any element fall below shape
quality 0.2. `febone.bones.tet4_to_tet10(mesh)` makes quadratic meshes.
"""


def build(out_dir=MESHES_DIR, *, only=None, readme: bool = True) -> list[Path]:
    """Generate the bundled meshes (and README) into ``out_dir``; ``only`` = name prefixes."""
    out_dir = Path(out_dir)
    specs = [s for s in SPECS if not only or any(s.name.startswith(o) for o in only)]
    if not specs:
        raise ValueError(f"--only {only} matches no mesh; names: {[s.name for s in SPECS]}")
    rows, paths = [], []
    for spec in specs:
        mesh = build_mesh(spec)
        path = write_bundled(out_dir / f"{spec.name}.vtu", mesh)
        paths.append(path)
        rows.append(_stats(spec, mesh, path))
        log.info("wrote %s (%d nodes, %d elements)", path, mesh.n_nodes, mesh.n_elements)
    if readme and only is None:
        b = femur()
        rot = dxa_rotation_deg()
        refs = {"fn": areal_bmd_implicit(b, "femoral_neck", rotation_deg=rot, pixel_mm=0.3),
                "th": areal_bmd_implicit(b, "total_hip", rotation_deg=rot, pixel_mm=0.3)}
        path = out_dir / "README.md"
        path.write_text(_readme(rows, refs), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m febone.bones.build",
                                     description="Regenerate febone's bundled meshes.")
    parser.add_argument("--out", help="output folder (default: febone/data/meshes/ of this "
                                       "source checkout)")
    parser.add_argument("--only", nargs="*", help="name prefixes, e.g. femur_coarse (no README)")
    args = parser.parse_args(argv)
    if args.out is None:
        if not (MESHES_DIR.parents[2] / "pyproject.toml").is_file():
            parser.error(f"this febone is installed ({MESHES_DIR.parents[1]}), not a source "
                         f"checkout: give --out DIR (a reinstall restores the bundled meshes)")
        args.out = MESHES_DIR
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for p in build(args.out, only=args.only):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())

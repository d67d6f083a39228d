"""Bring your own bone: import surfaces and a segmentation from ../shared/data.

* the OpenSim right femur surface (OBJ, in METRES) -> a tet4 mesh with a 2 mm cortical
  shell around a trabecular core;
* the OpenSim third lumbar vertebra (OBJ, metres) -> a hex8 voxel mesh with a 1 mm shell
  and the vertebral density law;
* the VerSe vertebra label map (NIfTI, labels 16–24 at 1 × 1 × 2 mm) -> one voxel mesh per
  label, the label kept as cell data.

Each mesh is validated (no inverted elements) and written as VTU to ``--out`` (open them
in ParaView); a summary is printed. Run from the repository root::

    python examples/import_shared_data.py --out out/imports

The data is read from ../shared/data and never copied into the project.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

import febone as fb
from febone.bones import mask_to_mesh, read_surface, surface_to_mesh

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def volume_cm3(mesh) -> float:
    from febone.mesh.validate import jacobian_determinants

    ref = mesh.element
    return float((jacobian_determinants(mesh)[:, : len(ref.quad_weights)]
                  @ ref.quad_weights).sum() / 1000.0)


def summary(name, mesh, extra=""):
    rho = mesh.cell_data["density_g_cm3"]
    print(f"{name:28s} {mesh.cell_type:10s} {mesh.n_nodes:7d} nodes {mesh.n_elements:7d} "
          f"elements  {volume_cm3(mesh):7.1f} cm³  ρ {rho.min():.2f}–{rho.max():.2f} g/cm³ {extra}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA), help="folder with the shared data")
    ap.add_argument("--out", default="out/imports", help="output folder for the VTU files")
    ap.add_argument("--h", type=float, default=3.0, help="voxel size for the surfaces, mm")
    ap.add_argument("--labels", type=int, nargs="*", default=None,
                    help="VerSe labels to mesh (default: all, 16–24)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        print(f"no shared data at {data}; nothing to import", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)

    femur = read_surface(data / "opensim_femur_r.obj", units="m")  # OpenSim geometry: metres
    mesh = surface_to_mesh(femur, args.h, cell_type="tet4", density="shell",
                           cortical_thickness_mm=2.0, rho_cortical=1.8, rho_trabecular=0.3)
    fb.write_mesh(out / "opensim_femur_r_tet4.vtu", mesh)
    summary("OpenSim femur (tet4)", mesh,
            f"surface {femur.volume_mm3 / 1000:.1f} cm³, "
            f"{(femur.upper - femur.lower).max():.0f} mm long")

    lumbar = read_surface(data / "opensim_lumbar3.obj", units="m")
    mesh = surface_to_mesh(lumbar, max(1.0, args.h / 2), cell_type="hex8", density="shell",
                           cortical_thickness_mm=1.0, rho_cortical=1.7, rho_trabecular=0.2,
                           law="morgan-vertebra")
    fb.write_mesh(out / "opensim_lumbar3_hex8.vtu", mesh)
    summary("OpenSim L3 (hex8)", mesh, f"surface {lumbar.volume_mm3 / 1000:.1f} cm³")

    meshes = mask_to_mesh(data / "verse004_vertebrae_mask.nii.gz", labels=args.labels,
                          density="shell", cortical_thickness_mm=1.0, rho_cortical=1.7,
                          rho_trabecular=0.2)
    for label, m in meshes.items():
        fb.write_mesh(out / f"verse004_label{label}.vtu", m)
        summary(f"VerSe label {label} (hex8)", m,
                f"label {int(np.unique(m.cell_data['label'])[0])}")
    print(f"wrote {len(meshes) + 2} VTU files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The clinical CT route against the mesh route on synthetic CTs of the bundled femurs.

For each bundled grid-aligned femur: its density field is written as a CT (int16 HU at the
calibration ρ = A + B·HU below, soft tissue 40 HU around, air outside, stored mirrored in x
with the matching affine: an LAS NIfTI), then read back through the CT route
(``febone.voxel.ct``: world axes, calibration, threshold, largest component, one hex8 per
voxel) and solved with ``febone.strength.strength`` on the voxel engine. Printed side by side
with the mesh route on the same bone: with the mesh's stored node-set masks (the default of
``febone strength MESH``) and with the node sets from the geometry (what the CT route has:
an image carries no masks). Also the CT route after 2× block resampling (coarser voxels:
partial volume at the surface), informational.

    nice -n 19 python benchmarks/ct_route.py [--meshes femur_coarse_hex8 femur_fine_hex8]
        [--cases sideways-fall stance]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

A, B = -0.005, 0.0008      # g/cm³, g/cm³ per HU
THRESHOLD = 0.035          # g/cm³: between soft tissue (40 HU: 0.027) and the least dense bone


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meshes", nargs="+", default=["femur_coarse_hex8", "femur_fine_hex8"])
    p.add_argument("--cases", nargs="+", default=["sideways-fall", "stance"])
    args = p.parse_args()
    from febone.precision import configure

    configure("float64")
    import numpy as np

    import febone as fb
    from febone.bones import bundled_path
    from febone.material.laws import density_law
    from febone.strength import CASES, strength
    from febone.voxel.ct import CTCalibration, ct_bone, read_ct, save_nifti, synthetic_ct

    law = density_law("morgan-femoral-neck")
    cal = CTCalibration(A, B)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    print(f"commit {commit}; {fb.device_description()}; load {open('/proc/loadavg').read().split()[:3]}")
    print(f"calibration ρ = {A} + {B}·HU g/cm³, threshold {THRESHOLD} g/cm³, law morgan-femoral-neck\n")
    print("| bone | case | route | voxels | stiffness (N/mm) | Pistoia (N) | Δ stiffness | Δ Pistoia | head set nodes | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.meshes:
            mesh = fb.read_mesh(bundled_path(name))
            nii = Path(tmp) / f"{name}.nii.gz"
            save_nifti(synthetic_ct(mesh, cal), nii, flip_x=True)
            t = time.perf_counter()
            img = read_ct(nii)
            ct1 = ct_bone(img, cal, threshold=THRESHOLD)
            ct2 = ct_bone(img, cal, threshold=THRESHOLD, resample=2)
            t_build = time.perf_counter() - t
            routes = [("mesh, stored masks", mesh, "auto"), ("mesh, geometric sets", mesh, "geometry"),
                      ("CT (NIfTI)", ct1.mesh, "auto"), ("CT, resample 2", ct2.mesh, "auto")]
            for case_name in args.cases:
                case = CASES[case_name]()
                ref = None
                for label, m, find in routes:
                    rho = np.asarray(m.cell_data["density_g_cm3"], float).reshape(-1)
                    t = time.perf_counter()
                    r = strength(m, case, law.modulus(rho), methods=("pistoia",), find_sets=find)
                    wall = time.perf_counter() - t
                    k, f = r.stiffness_N_per_mm, r.fracture_load_N["pistoia"]
                    if label == "mesh, geometric sets":
                        ref = (k, f)
                    dk = "" if ref is None or label.startswith("mesh") else f"{k / ref[0] - 1:+.1e}"
                    df = "" if ref is None or label.startswith("mesh") else f"{f / ref[1] - 1:+.1e}"
                    head = r.node_sets.get("head_medial", r.node_sets.get("head_contact", {}))
                    print(f"| {name} | {case_name} | {label} | {m.n_elements} | {k:,.1f} | "
                          f"{f:,.1f} | {dk} | {df} | {head.get('nodes', '')} ({head.get('source', '')}) "
                          f"| {wall:.1f} |", flush=True)
            print(f"\n({name}: CT read and both bone models built in {t_build:.2f} s)\n",
                  file=sys.stderr)
    print("\nΔ: CT route against the mesh route with the same (geometric) node sets.")


if __name__ == "__main__":
    main()

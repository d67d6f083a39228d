"""``febone compress``: uniaxial compression of a micro-CT image (voxel micro-FE).

Example (trabecular bone at 39 µm, 1 % apparent strain along z)::

    febone compress ../shared/data/trabecular_lhdl3155_19p5um.npz --sigma 1 --resample 2 \\
        --strain 0.01 --E 18000 --nu 0.3 --json result.json --out results/

The first node plane along the axis is fixed in all components, the last one displaced
along the axis only. Prints the results as JSON (and writes them to ``--json``).
``--devices N`` splits the model into N z-slabs, one per device (:mod:`febone.voxel.sharded`).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..files import atomic_write_text
from ._precision import add_precision_options
from .output_folder import add_overwrite_option, run_with_outputs

__all__ = ["register", "run"]

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compress", help="uniaxial compression of a micro-CT image (voxel FE, multigrid CG)",
        description="Voxel micro-FE compression test: apparent modulus, reaction force and "
                    "Pistoia failure load. Image axes are (z, y, x).")
    p.add_argument("image", help="image file: .npy, .npz, .tif/.tiff stack, .nii/.nii.gz")
    p.add_argument("--voxel-size", type=float, nargs="+", metavar="MM",
                   help="voxel size in mm: one value, or dz dy dx (default: from the file)")
    p.add_argument("--key", help="array name inside an .npz file")
    p.add_argument("--threshold", default="otsu",
                   help="bone threshold in image units (after --calibration), or 'otsu' "
                        "(default)")
    p.add_argument("--sigma", type=float, default=0.0,
                   help="Gaussian smoothing sigma, voxels of the input (default 0)")
    p.add_argument("--resample", type=int, default=1,
                   help="integer coarsening factor (block average; 2 doubles the voxel size)")
    p.add_argument("--calibration", type=float, nargs=2, metavar=("A", "B"),
                   help="HU calibration rho = A + B*HU (g/cm3); the threshold is then g/cm3")
    p.add_argument("--keep-islands", action="store_true",
                   help="do not remove pieces of bone that miss the fixed first plane "
                        "(unsupported; then an error). By default they are removed and counted "
                        "in removed_voxels; every piece touching that plane is kept")
    p.add_argument("--E", type=float, default=18000.0, help="tissue modulus, MPa (18000)")
    p.add_argument("--nu", type=float, default=0.3, help="Poisson's ratio (0.3)")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--displacement", type=float, metavar="MM",
                      help="shortening of the specimen along the axis, mm (positive)")
    load.add_argument("--strain", type=float, metavar="S",
                      help="apparent compressive strain, positive, e.g. 0.01 (1 %% shorter)")
    p.add_argument("--axis", choices=["x", "y", "z"], default="z", help="load axis (z)")
    p.add_argument("--rtol", type=float, default=None,
                   help="CG relative tolerance (default 1e-8; 1e-5 with --precision float32)")
    p.add_argument("--preconditioner", choices=["multigrid", "jacobi", "none"],
                   default="multigrid", help="CG preconditioner (multigrid)")
    p.add_argument("--max-iter", type=int, default=None, help="CG iteration cap")
    p.add_argument("--coarse-space", choices=["pieces", "trilinear"], default="pieces",
                   help="multigrid coarse levels: one unknown per connected piece of bone in "
                        "each coarse cell (pieces, default: 3-4x fewer CG iterations on "
                        "trabecular bone) or per coarse grid point (trilinear); "
                        "febone.voxel.pieces. --devices N > 1 always splits the trilinear "
                        "hierarchy")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="split the model over N devices: z-slabs with one node layer of halo, "
                        "the same answer as one device, about 1/N of its memory each (float64; "
                        "on a CPU, N host devices)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--out", metavar="DIR", help="write compression.vtu with the fields")
    add_precision_options(p)
    add_overwrite_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=run)


def _threshold(value: str):
    if value.lower() == "otsu":
        return "otsu"
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--threshold {value!r}: give a number or 'otsu'") from None


def _host_devices(n: int) -> None:
    """``--devices N`` on a CPU: N host devices, set before JAX starts its backend (XLA reads
    the count once; accelerators list their own devices and are unaffected)."""
    if n <= 1:
        return
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backend runs already: the split names what is missing
        log.debug("JAX's backend started before --devices %d could add host devices", n)


def run(args) -> int:
    return run_with_outputs(args, _run, command="compress", expected=["compression.vtu", "*.png"])


def _run(args) -> int:
    from ..voxel.compress import compress
    from ..voxel.multigrid import Multigrid
    from ..voxel.solve import VoxelPCG

    size = args.voxel_size
    if size is not None and len(size) not in (1, 3):
        raise ValueError(f"--voxel-size takes 1 value or 3 (dz dy dx); got {len(size)}")
    if size is not None and len(size) == 1:
        size = size[0]
    _host_devices(args.devices)
    from ..precision import precision_mode

    mode = precision_mode(args.precision)
    rtol = mode.default_rtol if args.rtol is None else args.rtol
    solver = VoxelPCG(rtol=rtol, preconditioner=args.preconditioner, max_iter=args.max_iter,
                      progress=not args.quiet, mixed_precision=mode.refine,
                      multigrid=Multigrid(coarse_space=args.coarse_space))
    result = compress(Path(args.image), size, threshold=_threshold(args.threshold),
                      sigma=args.sigma, resample=args.resample, calibration=args.calibration,
                      keep_islands=args.keep_islands, E=args.E, nu=args.nu,
                      displacement=args.displacement, strain=args.strain, axis=args.axis,
                      solver=solver, out=args.out, key=args.key, precision=mode.name,
                      devices=args.devices)
    payload = result.summary()
    if args.out:
        from ..mesh.io import read_mesh
        from ._pictures import write_pictures

        vtu = read_mesh(Path(args.out) / "compression.vtu")
        pictures = write_pictures(vtu, {"point_data": dict(vtu.point_data),
                                        "cell_data": dict(vtu.cell_data)}, args.out,
                                  bone="trabecular")
        payload["pictures"] = [str(p) for p in pictures]
    text = json.dumps(payload, indent=2)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    sys.stdout.write(text + "\n")
    return 0

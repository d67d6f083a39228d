"""``febone info``: what JAX runs on (version, backend, device, precision)."""
from __future__ import annotations

import json
import platform
from pathlib import Path

__all__ = ["register", "run", "collect"]


def collect() -> dict:
    """:func:`febone.runtime_info` plus the febone, Python and NumPy versions."""
    import numpy as np

    import febone

    info = {"febone_version": febone.__version__, "python_version": platform.python_version(),
            "numpy_version": np.__version__}
    info.update(febone.runtime_info())
    return info


def _table(info: dict) -> str:
    width = max(len(k) for k in info)
    rows = []
    for key, value in info.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        rows.append(f"{key:<{width}}  {value}")
    return "\n".join(rows)


def run(args) -> int:
    info = collect()
    print(_table(info))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2) + "\n")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="JAX version, backend, device and precision",
                              description="Print the JAX version, backend, default device and "
                                          "floating-point precision febone will use.")
    p.add_argument("--json", metavar="FILE", help="also write the information as JSON to FILE")
    p.set_defaults(func=run)

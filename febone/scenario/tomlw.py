"""A minimal TOML writer for scenario documents (``tomllib`` reads, nothing in the stdlib writes).

Handles what a scenario holds: strings, booleans, ints, finite floats, lists, tables
(``[name]``), arrays of tables (``[[name]]``) and, below the first level, inline tables.
"""
from __future__ import annotations

import json
import math

__all__ = ["dumps"]


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"TOML cannot hold the non-finite number {v!r}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def _key(k: str) -> str:
    bare = k and all(c.isascii() and (c.isalnum() or c in "-_") for c in k)
    return k if bare else json.dumps(k, ensure_ascii=False)


def _is_table_array(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, dict) for x in v)


def dumps(doc: dict, header: str = "") -> str:
    """TOML text of ``doc`` (``header`` lines are written first as comments)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict) and not _is_table_array(v)}
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in doc.items():
        if k in scalars:
            continue
        for table in (v if _is_table_array(v) else [v]):
            lines.append("")
            lines.append(f"[[{_key(k)}]]" if _is_table_array(v) else f"[{_key(k)}]")
            lines.extend(f"{_key(kk)} = {_value(vv)}" for kk, vv in table.items())
    return "\n".join(lines).lstrip("\n") + "\n"

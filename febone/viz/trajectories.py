"""Trajectory plots of a remodelling run (``febone run --json``): :func:`plot_trajectories`.

The run dict has ``time_years`` (n_times,), ``regions`` {NAME: {``vbmd_mg_cm3``, ``abmd_g_cm2``,
``t_score``, ``change_pct``}} (each (n_times,)), ``stiffness_N_per_mm``, ``fracture_load_N``
(a list per time, or {case: list} / {case: {method: list}}), ``markers`` {``ctx_rel``,
``p1np_rel``}, ``scenario``; several protocols are the same keys per protocol under
``protocols``. Missing entries are left out of the figure.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["plot_trajectories", "load_run", "protocols_of", "series"]

log = logging.getLogger(__name__)

OSTEOPENIA = (-2.5, -1.0)      # WHO T-score bands (Kanis 1994): -2.5 < T < -1 osteopenia
OSTEOPOROSIS = -2.5            # T <= -2.5 osteoporosis
_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
_PANELS = (("abmd", "areal BMD (g/cm²)"), ("t_score", "T-score"),
           ("change", "BMD change from baseline (%)"), ("fracture", "fracture load (N)"),
           ("stiffness", "stiffness (N/mm)"), ("markers", "turnover marker / baseline"))


def load_run(run) -> dict:
    """The run dict from a dict or a JSON file path.

    Raises:
        ValueError: unreadable JSON; TypeError: neither a dict nor a path.
    """
    if isinstance(run, Mapping):
        return dict(run)
    if isinstance(run, (str, Path)):
        p = Path(run)
        if not p.is_file():
            raise ValueError(f"no run JSON at {p}; pass the file written by febone run --json or "
                             f"the result dict")
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{p} is not valid JSON: {err}") from None
    raise TypeError(f"run must be a result dict or a JSON path; got {type(run).__name__}")


def _label(result: Mapping, default: str) -> str:
    sc = result.get("scenario")
    if isinstance(sc, str) and sc:
        return sc
    if isinstance(sc, Mapping):
        for key in ("name", "protocol", "title"):
            if isinstance(sc.get(key), str) and sc[key]:
                return sc[key]
        if isinstance(sc.get("protocols"), (list, tuple)) and sc["protocols"]:
            return " + ".join(map(str, sc["protocols"]))
    return default


def protocols_of(run) -> dict[str, dict]:
    """``{protocol name: result dict}`` of a single or a multi-protocol run.

    Raises:
        ValueError: a result lacks ``time_years`` or it is not increasing.
    """
    run = load_run(run)
    if isinstance(run.get("protocols"), Mapping):
        out = {str(k): dict(v) for k, v in run["protocols"].items()}
    else:
        out = {_label(run, "run"): run}
    if not out:
        raise ValueError("the run has an empty 'protocols' dict")
    for name, res in out.items():
        if "time_years" not in res:
            raise ValueError(f"protocol {name!r} has no 'time_years' (output times, years); keys: "
                             f"{sorted(res)}")
        t = np.asarray(res["time_years"], float).reshape(-1)
        if t.size == 0 or np.any(np.diff(t) <= 0):
            raise ValueError(f"protocol {name!r}: time_years must be non-empty and increasing; "
                             f"got {t.tolist()}")
    return out


def _numbers(v, n: int, what: str) -> np.ndarray:
    a = np.array([np.nan if x is None else x for x in v], dtype=float)
    if a.shape != (n,):
        raise ValueError(f"{what} has {a.size} values for {n} output times")
    return a


def series(obj, n: int, what: str, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    """Flatten a per-time quantity into ``[(label, (n,) values)]``: a list of numbers, a
    ``{key: ...}`` nest of such lists, or a list of per-time ``{key: number}`` dicts."""
    if obj is None:
        return []
    if isinstance(obj, Mapping):
        out = []
        for k, v in obj.items():
            out += series(v, n, f"{what}[{k}]", f"{prefix}{k}" if not prefix else f"{prefix}/{k}")
        return out
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, Mapping) for x in obj):
        keys = list(obj[0])
        return series({k: [x.get(k) for x in obj] for k in keys}, n, what, prefix)
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return []   # a single summary number, not a trajectory
    return [(prefix, _numbers(obj, n, what))]


def plot_trajectories(run, path=None, *, title: str | None = None, dpi: int = 120):
    """Six panels over time: aBMD, T-score with the WHO bands, % change per region, fracture
    load, stiffness and turnover markers (CTX-, P1NP-like, relative to baseline); one colour
    per protocol, one line style per region / load case / marker.

    Args:
        run: result dict of ``febone run`` (or its JSON path); a multi-protocol run has the
            same keys per protocol under ``protocols``.
        path: write the figure here (PNG, SVG, PDF by suffix).
        title: figure title (default: the protocol names).
        dpi: resolution of raster output.

    Returns:
        The ``matplotlib.figure.Figure`` (Agg canvas; no pyplot state, no window). Each data
        line has ``gid`` ``"<panel>|<protocol>|<series>"``; T-score bands are patches with gid
        ``"band|osteopenia"`` and ``"band|osteoporosis"``.

    Raises:
        ValueError: missing ``time_years``, series lengths that do not match it.
    """
    from matplotlib.figure import Figure

    protocols = protocols_of(run)
    fig = Figure(figsize=(12, 10), dpi=dpi, layout="constrained")
    axes = dict(zip([k for k, _ in _PANELS], fig.subplots(3, 2, sharex=True).ravel()))
    colours = [f"C{i % 10}" for i in range(len(protocols))]
    used = {k: False for k in axes}
    for colour, (pname, res) in zip(colours, protocols.items()):
        t = np.asarray(res["time_years"], float).reshape(-1)
        n = t.size
        regions = res.get("regions") or {}
        for k, (rname, r) in enumerate(regions.items()):
            ls = _STYLES[k % len(_STYLES)]
            for panel, key in (("abmd", "abmd_g_cm2"), ("t_score", "t_score"),
                               ("change", "change_pct")):
                if r.get(key) is None:
                    continue
                y = _numbers(r[key], n, f"{pname}: regions[{rname}][{key}]")
                if not np.isfinite(y).any():
                    continue
                axes[panel].plot(t, y, color=colour, ls=ls, label=f"{pname}: {rname}",
                                 gid=f"{panel}|{pname}|{rname}")
                used[panel] = True
        for panel, key in (("fracture", "fracture_load_N"), ("stiffness", "stiffness_N_per_mm"),
                           ("markers", "markers")):
            for k, (sname, y) in enumerate(series(res.get(key), n, f"{pname}: {key}")):
                if not np.isfinite(y).any():
                    continue
                label = f"{pname}: {sname}" if sname else pname
                axes[panel].plot(t, y, color=colour, ls=_STYLES[k % len(_STYLES)], label=label,
                                 gid=f"{panel}|{pname}|{sname}")
                used[panel] = True
    ax = axes["t_score"]
    lo = min(-3.0, *(np.nanmin(l.get_ydata()) - 0.2 for l in ax.get_lines())) \
        if ax.get_lines() else -3.5
    hi = max(0.5, *(np.nanmax(l.get_ydata()) + 0.2 for l in ax.get_lines())) \
        if ax.get_lines() else 1.0
    ax.axhspan(*OSTEOPENIA, color="#f5c542", alpha=0.25, lw=0, gid="band|osteopenia",
               label="osteopenia (−2.5 < T < −1)")
    ax.axhspan(lo - 10, OSTEOPOROSIS, color="#d9534f", alpha=0.22, lw=0, gid="band|osteoporosis",
               label="osteoporosis (T ≤ −2.5)")
    ax.set_ylim(lo, hi)
    for panel, ylabel in _PANELS:
        a = axes[panel]
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3)
        if panel in ("change",):
            a.axhline(0.0, color="0.5", lw=0.8, gid="ref|zero")
        if panel == "markers":
            a.axhline(1.0, color="0.5", lw=0.8, gid="ref|baseline")
        if used[panel] or panel == "t_score":
            a.legend(fontsize=7, loc="best")
        else:
            a.text(0.5, 0.5, "not in this run", ha="center", va="center", transform=a.transAxes,
                   color="0.5")
    for a in (axes["stiffness"], axes["markers"]):
        a.set_xlabel("time (years)")
    fig.suptitle(title or " vs ".join(protocols))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        log.info("wrote %s", path)
    return fig


"""A Markdown + HTML report of a run: results tables and pictures (:func:`write_report`)."""
from __future__ import annotations

import html
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..files import atomic_write_text
from .trajectories import load_run, plot_trajectories, protocols_of, series

__all__ = ["write_report", "results_rows"]

log = logging.getLogger(__name__)


def _first_last(values) -> tuple[float, float]:
    if values is None:
        return (math.nan, math.nan)
    a = np.array([np.nan if v is None else v for v in values], dtype=float)
    ok = a[np.isfinite(a)]
    return (float(ok[0]), float(ok[-1])) if ok.size else (math.nan, math.nan)


def _fmt(x: float, spec: str) -> str:
    return "–" if not math.isfinite(x) else format(x, spec)


def results_rows(run) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The two results tables as strings: ``(bmd_header, bmd_rows, mech_header, mech_rows)``.

    BMD table: protocol, region, aBMD at start and end (g/cm²), T-score at start and end,
    change at the end (%). Mechanics table: protocol, quantity (stiffness or fracture load per
    load case/method), start, end and change (%), plus the final CTX/P1NP ratios.
    """
    protocols = protocols_of(run)
    bmd_h = ["protocol", "region", "aBMD start (g/cm²)", "aBMD end (g/cm²)", "T start", "T end",
             "change end (%)", "vBMD end (mg/cm³)", "cortical vBMD change (%)",
             "trabecular vBMD change (%)"]
    mech_h = ["protocol", "quantity", "start", "end", "change (%)"]
    bmd, mech = [], []
    for pname, res in protocols.items():
        n = len(res["time_years"])
        t0, t1 = _first_last(res["time_years"])
        for rname, r in (res.get("regions") or {}).items():
            a0, a1 = _first_last(r.get("abmd_g_cm2"))
            s0, s1 = _first_last(r.get("t_score"))
            _, c1 = _first_last(r.get("change_pct"))
            _, v1 = _first_last(r.get("vbmd_mg_cm3"))
            _, cc1 = _first_last(r.get("cortical_change_pct"))
            _, tc1 = _first_last(r.get("trabecular_change_pct"))
            bmd.append([pname, rname, _fmt(a0, ".3f"), _fmt(a1, ".3f"), _fmt(s0, "+.2f"),
                        _fmt(s1, "+.2f"), _fmt(c1, "+.1f"), _fmt(v1, ".0f"), _fmt(cc1, "+.1f"),
                        _fmt(tc1, "+.1f")])
        for key, unit in (("stiffness_N_per_mm", "N/mm"), ("fracture_load_N", "N")):
            what = "stiffness" if key.startswith("stiff") else "fracture load"
            for sname, y in series(res.get(key), n, f"{pname}: {key}"):
                y0, y1 = _first_last(y)
                ch = 100.0 * (y1 / y0 - 1.0) if y0 else math.nan
                label = f"{what} {sname} ({unit})" if sname else f"{what} ({unit})"
                mech.append([pname, label, _fmt(y0, ".0f"), _fmt(y1, ".0f"), _fmt(ch, "+.1f")])
        for sname, y in series(res.get("markers"), n, f"{pname}: markers"):
            y0, y1 = _first_last(y)
            mech.append([pname, f"{sname} (relative to baseline)", _fmt(y0, ".2f"),
                         _fmt(y1, ".2f"), _fmt(100.0 * (y1 / y0 - 1.0) if y0 else math.nan,
                                               "+.0f")])
        mech.append([pname, "simulated time (years)", _fmt(t0, ".2f"), _fmt(t1, ".2f"), ""])
    return bmd_h, bmd, mech_h, mech


def _md_table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pictures(out_dir: Path, pictures) -> list[tuple[str, str]]:
    """[(caption, path relative to out_dir)], copying pictures from elsewhere into out_dir."""
    if pictures is None:
        return []
    if isinstance(pictures, (str, os.PathLike)):
        raise TypeError("pictures must be a list of paths or a {caption: path} dict, not one path")
    items = list(pictures.items()) if isinstance(pictures, Mapping) else \
        [(Path(p).stem.replace("_", " "), p) for p in pictures]
    out = []
    for caption, p in items:
        p = Path(p)
        if not p.is_file():
            raise ValueError(f"picture {p} does not exist")
        try:
            rel = p.resolve().relative_to(out_dir.resolve())
        except ValueError:
            dest = out_dir / "pictures" / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
            rel = dest.relative_to(out_dir)
        out.append((str(caption), rel.as_posix()))
    return out


def write_report(out_dir, run_result, pictures: Sequence | Mapping | None = None, *,
                 title: str = "febone remodelling report", trajectories: bool = True) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/report.html``.

    Args:
        out_dir: folder (created).
        run_result: the ``febone run`` result dict or its JSON path (single or ``protocols``).
        pictures: PNG/GIF paths (captions from file names) or ``{caption: path}``; files
            outside ``out_dir`` are copied into ``out_dir/pictures/``.
        title: report heading.
        trajectories: also draw ``out_dir/trajectories.png`` with :func:`plot_trajectories`
            and show it first.

    Returns:
        The Markdown path (the HTML file lies beside it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = load_run(run_result)
    protocols = protocols_of(run)
    pics = _pictures(out_dir, pictures)
    if trajectories:
        plot_trajectories(run, out_dir / "trajectories.png")
        pics.insert(0, ("BMD, T-score, fracture load, stiffness and markers over time",
                        "trajectories.png"))
    bmd_h, bmd, mech_h, mech = results_rows(run)
    meta = []
    for key, label in (("wall_seconds", "wall time (s)"), ("device", "device")):
        vals = {p: r.get(key, run.get(key)) for p, r in protocols.items()}
        vals = {p: v for p, v in vals.items() if v is not None}
        if vals:
            shown = {(f"{v:.1f}" if isinstance(v, float) else str(v)) for v in vals.values()}
            meta.append(f"{label}: {', '.join(sorted(shown))}")
    md = [f"# {title}", "", f"Protocols: {', '.join(protocols)}.", ""]
    md += [f"- {m}" for m in meta] + ([""] if meta else [])
    md += ["## Bone mineral density", ""] + _md_table(bmd_h, bmd) + [""]
    md += ["## Mechanics and turnover", ""] + _md_table(mech_h, mech) + [""]
    if pics:
        md += ["## Pictures", ""]
        for caption, rel in pics:
            md += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
    md_path = out_dir / "report.md"
    atomic_write_text(md_path, "\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
             "padding:3px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
             "img{max-width:100%}figure{margin:1.5em 0}")
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>Protocols: {html.escape(', '.join(protocols))}.</p>"]
    body += [f"<p>{html.escape(m)}</p>" for m in meta]
    body += ["<h2>Bone mineral density</h2>", _html_table(bmd_h, bmd),
             "<h2>Mechanics and turnover</h2>", _html_table(mech_h, mech)]
    if pics:
        body.append("<h2>Pictures</h2>")
        body += [f'<figure><img src="{html.escape(rel)}" alt="{html.escape(c)}">'
                 f"<figcaption>{html.escape(c)}</figcaption></figure>" for c, rel in pics]
    atomic_write_text(
        out_dir / "report.html",
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    log.info("wrote %s and report.html", md_path)
    return md_path

"""The report page: one self-contained HTML file (inline CSS, embedded figures, no scripts, no network).

The page is rendered from ``templates/report.html.j2`` (Jinja2, autoescaped); the sections bring their bodies as
HTML fragments built with :mod:`.report_html` (HTML tables, embedded figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from .report_builder import ReportBuilder
from .report_config import MIN_CELLS_FOR_INTERVALS
from .report_templates import environment

#: the page's only style sheet (inline: the report opens offline). Wide tables scroll inside themselves, long words
#: and code wrap, so no text runs off the page.
CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.45;color:#222;"
       "overflow-wrap:break-word}"
       "table.t{border-collapse:collapse;font-size:12px;margin:.6em 0;display:block;max-width:100%;overflow-x:auto}"
       "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
       "table.t th{background:#f3f3f3}table.t td:first-child,table.t th:first-child{text-align:left}"
       "img{max-width:100%;height:auto}figure{margin:.8em 0}figcaption{font-size:12px;color:#555}"
       "code{overflow-wrap:anywhere}pre{white-space:pre-wrap;overflow-wrap:anywhere}"
       ".warn,.warning{background:#fff4ce;border-left:4px solid #e0a800;padding:.3em .6em;margin:.4em 0}"
       ".banner{background:#ffe3e0;border:2px solid #c0392b;color:#5a1208;padding:.7em 1em;margin:0 0 1em 0;"
       "border-radius:6px;font-size:1.05em}"
       "#findings{background:#eef5ff;padding:.6em 1.2em;border-radius:6px}nav ol{columns:2}")




def small_sample_banner(ncell: int) -> dict[str, str] | None:
    """The banner of a report whose sample is too small for its statistics (``None`` when it is large enough)."""
    if ncell >= MIN_CELLS_FOR_INTERVALS:
        return None
    return {"title": f"Smoke test: {ncell} cells.",
            "text": f"Correlations, intervals, top-k precision and predictors need about {MIN_CELLS_FOR_INTERVALS}+ "
                    "cells; with fewer, every number below shows that the analysis runs, not what is true of the "
                    "search space."}


def write_html(path: Path, ds: xr.Dataset, summary: dict[str, Any], rep: ReportBuilder,
               min_clean: float | None) -> None:
    """Write the self-contained report page: banner, header, findings and warnings, contents, sections, files."""
    attrs = {k: ds.attrs[k] for k in ("source", "dataset", "imported_from", "created") if k in ds.attrs}
    ncell = summary["cells"]
    page = environment().get_template("report.html.j2").render(
        css=CSS,
        ncell=ncell,
        banner=small_sample_banner(ncell),
        what=", ".join(f"{k} {v}" for k, v in attrs.items()),
        n_targets=len(summary["targets"]),
        features=", ".join(summary["features"]),
        min_clean=min_clean,
        n_low=ncell - summary.get("cells_min_clean", ncell),
        scope=rep.scope,
        findings=list(rep.findings),
        warnings=list(rep.warnings),
        section_ids={sid for sid, _, _ in rep.sections},
        sections=list(rep.sections),
        files=list(dict.fromkeys(rep.files)),
        timings=", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()),
    )
    path.write_text(page, encoding="utf-8")


__all__ = ["CSS", "small_sample_banner", "write_html"]

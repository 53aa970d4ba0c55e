"""The report page: one self-contained HTML file (inline CSS, embedded figures, no scripts, no network)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import xarray as xr

from .report_builder import ReportBuilder

#: the page's only style sheet (inline: the report opens offline)
CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.45;color:#222}"
        "table.t{border-collapse:collapse;font-size:12px;margin:.6em 0}"
        "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "img{max-width:100%}figure{margin:.8em 0}figcaption{font-size:12px;color:#555}"
        ".warn{background:#fff4ce;border-left:4px solid #e0a800;padding:.3em .6em;margin:.4em 0}"
        "#findings{background:#eef5ff;padding:.6em 1.2em;border-radius:6px}nav ol{columns:2}")


def write_html(path: Path, ds: xr.Dataset, summary: dict[str, Any], rep: ReportBuilder,
               min_clean: float | None) -> None:
    """Write the self-contained report page: header, findings and warnings, contents, the sections, the files."""
    attrs = {k: ds.attrs[k] for k in ("source", "dataset", "imported_from", "created") if k in ds.attrs}
    what = ", ".join(f"{k} {v}" for k, v in attrs.items())
    ncell = summary["cells"]
    findings = "".join(f"<li>{f}</li>" for f in rep.findings) or "<li>No analysis produced a finding.</li>"
    ids = {sid for sid, _, _ in rep.sections}

    def where(sec: str) -> str:
        return f'<a href="#{sec}">{html.escape(sec)}</a>' if sec in ids else html.escape(sec)

    allwarn = "".join(f"<li>{where(s)}: {html.escape(t)}</li>" for s, t in rep.warnings)
    toc = "".join(f'<li><a href="#{sid}">{html.escape(title)}</a></li>' for sid, title, _ in rep.sections)
    toc += '<li><a href="#files">Files</a></li>'
    files = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a>: {html.escape(w)}</li>'
                    for p, w in dict.fromkeys(rep.files))  # fmt: skip
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>robustbench-nas analysis ({ncell} cells)"
        f"</title><style>{CSS}</style></head><body>",
        f"<h1>Robustness analysis: {ncell} cells</h1>",
        f"<p>{html.escape(what)}. {len(summary['targets'])} targets, features: "
        f"{html.escape(', '.join(summary['features']) or 'none')}. Accuracies are fractions in [0, 1]; eps in units "
        "of 1/255; parameters and FLOPs in millions."
        + (f" Cells with clean accuracy below {min_clean:g} ({ncell - summary['cells_min_clean']} of {ncell}) are "
           "left out of the best lists (<code>--min-clean</code>)." if min_clean is not None else "") + "</p>",
        f'<section id="findings"><h2>Summary of findings</h2><ul>{findings}</ul>'
        + (f"<p><b>Warnings</b> ({len(rep.warnings)}):</p><ul>{allwarn}</ul>" if rep.warnings else "")
        + "</section>",
        f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>",
    ]
    for i, (sid, title, body) in enumerate(rep.sections, start=1):
        parts.append(f'<section id="{sid}"><h2>{i}. {html.escape(title)}</h2>{body}</section>')
    parts.append(f'<section id="files"><h2>Files</h2><ul>{files}</ul><p>Figures: <code>figures/*.png</code>, each '
                 "with the data behind it as <code>figures/*.csv</code>. Timings (s): "
                 + html.escape(", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items())) + "</p></section>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")


__all__ = ["CSS", "write_html"]

"""HTML fragments of the report: numbers with intervals, embedded figures, tables, file-name-safe target names."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def fmt(v: Any, d: int = 3, signed: bool = False) -> str:
    """``v`` with ``d`` decimals (``signed``: with its sign); ``"-"`` for a missing or non-finite value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"


def ci(row: pd.Series, stat: str = "spearman") -> str:
    """``row[stat]`` with its 95 % interval (``<stat>_lo``, ``<stat>_hi``) when the row has a finite one."""
    lo, hi = row.get(f"{stat}_lo"), row.get(f"{stat}_hi")
    if lo is None or not np.isfinite(lo):
        return fmt(row[stat], 2, True)
    return f"{fmt(row[stat], 2, True)} [{fmt(lo, 2, True)}, {fmt(hi, 2, True)}]"


def safe_name(name: str) -> str:
    """``name`` as a file-name part: every character but letters, digits and ``-_.`` becomes ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def img(png: Path, caption: str = "", data_href: str | None = None) -> str:
    """A figure embedded as a base64 PNG (``report.html`` alone shows it, offline), captioned, naming the data behind
    it (``data_href``: its CSV relative to the report; default ``figures/<stem>.csv``)."""
    png = Path(png)
    data = base64.b64encode(png.read_bytes()).decode()
    stem = html.escape(png.stem)
    href = html.escape(data_href or f"figures/{png.stem}.csv")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{stem}"><figcaption>{html.escape(caption)} '
            f'(data: <a href="{href}">{href}</a>)</figcaption></figure>')


def figure(png: Path, caption: str = "", data_href: str | None = None) -> dict[str, str]:
    """A figure for the ``figure`` macro of the section partials: the PNG as a base64 data URI (``report.html``
    alone shows it, offline), its caption and the data behind it (``data_href``: its CSV relative to the report;
    default ``figures/<stem>.csv``)."""
    png = Path(png)
    return {"src": "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(), "alt": png.stem,
            "caption": caption, "href": data_href or f"figures/{png.stem}.csv"}


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.3f}"
    return str(v)


def table_data(df: pd.DataFrame) -> dict[str, list]:
    """``df`` for the ``table`` macro of the section partials: column names and rows of text (3 decimals, ``-``
    for a missing value)."""
    return {"columns": [str(c) for c in df.columns],
            "rows": [[_cell(v) for v in row] for row in df.itertuples(index=False)]}


def table(df: pd.DataFrame) -> str:
    """A compact HTML table of ``df`` (3 decimals, ``-`` for missing values)."""
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", border=0, classes="t")


__all__ = ["ci", "figure", "fmt", "img", "safe_name", "table", "table_data"]

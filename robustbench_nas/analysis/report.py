"""``rbnas analyze``: run every analysis on a store and write tables, figures and one self-contained HTML report.

This module runs the report (:func:`run_analysis`); its parts each live in their own module: the configuration
(:mod:`.report_config`), target names (:mod:`.target_names`), the section registry and the built-in sections
(:mod:`.sections`), the studies that register sections of their own (:mod:`.proxy_study`, :mod:`.twins`), the
builder the sections write to (:mod:`.report_builder`), HTML fragments (:mod:`.report_html`) and the page
(:mod:`.report_page`). It imports the section modules; no section imports it.

The report reads like a paper's results section: a summary of what was found first (the best robustness predictors
with their intervals, what in the architecture drives robustness, how well robustness can be learned from a few
cells), a table of contents, then one section per question with one figure each, short tables, and links to the
full CSVs. Statistics computed on too few cells carry a warning where they are shown. The HTML needs no network
(figures are embedded PNGs, no scripts, no external style sheets).

Output folder layout::

    OUT/report.html                  the report (open it in any browser, offline)
    OUT/targets.csv                  one row per cell, one column per target
    OUT/ranking.csv, ranking.md      full proxy / measure ranking (all cells and clean >= min-clean)
    OUT/ranking_best.csv             the best feature per target (largest |rho|, sign kept)
    OUT/prediction.csv, _summary.csv held-out scores per (target, feature group, model, train size, repeat)
    OUT/importance_<target>.csv      permutation importance
    OUT/op_edge_effects.csv, best_cells.csv, by_params_<target>.csv
    OUT/figures/<name>.png + .csv    every figure and the data behind it
    OUT/search_regret.csv            regret curves of random / local search / regularised evolution
    OUT/summary.json                 headline numbers and warnings (machine-readable)
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

# the section modules register themselves on import, in report order (see each one's ``order``)
from . import proxy_study as _proxy_study  # noqa: F401  (registers the proxy_study section)
from . import twins as _twins  # noqa: F401  (registers the target_reliability section)
from .ranking import to_markdown
from .report_builder import ReportBuilder
from .report_config import (
    MIN_CELLS_FOR_INTERVALS,
    MIN_GROUP_CELLS,
    MIN_TOPK_CELLS,
    AnalysisConfig,
    resolve_min_clean,
)
from .report_page import write_html
from .sections import (
    SectionContext,
    list_sections,
    ordered_sections,
    register_section,
)
from .sections import architecture as _architecture  # noqa: F401  (registers the built-in sections)
from .sections import prediction as _prediction  # noqa: F401
from .sections import ranking as _ranking  # noqa: F401
from .sections import search as _search  # noqa: F401
from .stats import spearman
from .target_names import (
    default_predict_targets,
    parse_target,
    pretty_target,
    sort_targets,
)
from .targets import features_table, store_space, targets_table


def dedupe_features(F: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop ``proxy:<c>`` when a column ``<c>`` exists and orders the cells identically (e.g. ``proxy:params`` and
    the stored ``params``): a duplicate row in every table otherwise. Returns the table and the dropped names."""
    drop = []
    for c in F.columns:
        if c.startswith("proxy:") and c[len("proxy:"):] in F.columns:
            other = c[len("proxy:"):]
            ok = F[c].notna() & F[other].notna()
            a, b = F.loc[ok, c], F.loc[ok, other]
            same = ok.sum() < 3 or np.allclose(a, b) or abs(spearman(a.to_numpy(), b.to_numpy())) > 0.9999
            if same:
                drop.append(c)
    return F.drop(columns=drop), drop


def run_analysis(ds: xr.Dataset, out_dir: str | Path, config: AnalysisConfig | None = None, *,
                 progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the configured analyses on ``ds`` (a store opened with :func:`.targets.load_store`) into ``out_dir``.

    Arguments:
        progress: one progress bar over the steps, on stderr.

    Returns:
        The headline summary (also written as ``summary.json``), with ``warnings``.
    """
    cfg = config or AnalysisConfig()
    out = Path(out_dir)
    fig_dir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    rep = ReportBuilder(out)
    T = targets_table(ds)
    T = T[sort_targets(list(T.columns))]
    T.to_csv(out / "targets.csv")
    rep.file("targets.csv", "every target of every cell")
    F_rank, dropped = dedupe_features(features_table(ds))
    # the one ranking's features: the ``rank_encodings`` columns beside costs, proxies and measures (the prediction
    # section builds its own, with ``encodings``, exactly as rbnas predict does)
    F_all = features_table(ds, encodings=cfg.rank_encodings) if cfg.rank_encodings else F_rank
    F_all = F_all.drop(columns=[c for c in dropped if c in F_all])
    if cfg.proxies:  # the proxy table's proxies join the one ranking (NaN on the cells it does not cover)
        from .proxy_table import load_table

        P = load_table(cfg.proxies).reindex(F_all.index)
        P = P[[c for c in P.columns if c not in F_all.columns]]
        F_rank, F_all = pd.concat([F_rank, P], axis=1), pd.concat([F_all, P], axis=1)
    min_clean = resolve_min_clean(T, cfg.min_clean)
    keep = T["clean"] >= min_clean if min_clean is not None else pd.Series(True, index=T.index)
    headline = default_predict_targets(T) + (["corruption_mean"] if "corruption_mean" in T else [])
    summary: dict[str, Any] = {"cells": len(T), "search_space": store_space(ds), "targets": list(T.columns),
                               "features": list(F_rank.columns),
                               "min_clean": min_clean, "cells_min_clean": int(keep.sum()),
                               "config": _jsonable(asdict(cfg)), "seconds": {}}  # fmt: skip
    if dropped:
        summary["features_dropped_as_duplicates"] = dropped

    ctx = SectionContext(ds, T, F_all, cfg, min_clean, out, fig_dir, rep, summary, rank_features=F_rank, keep=keep,
                         headline=headline)
    # every section decides whether it runs before any runs (a "no ranking" warning comes first, as it always did)
    steps = [(s.name, lambda s=s: s.run(ctx)) for s in ordered_sections()
             if (cfg.sections is None or s.name in cfg.sections) and (s.ready is None or s.ready(ctx))]
    bar = tqdm(steps, desc="analyze", unit="part", disable=not progress)
    for name, fn in bar:
        bar.set_postfix_str(name)
        t0 = time.time()
        fn()
        summary["seconds"][name] = round(time.time() - t0, 3)
    t0 = time.time()
    summary["warnings"] = [{"section": s, "text": t} for s, t in rep.warnings]
    summary["findings"] = [html.unescape(re.sub("<[^>]+>", "", f)) for f in rep.findings]
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
    rep.file("summary.json", "headline numbers, warnings and the configuration (machine-readable)")
    write_html(out / "report.html", ds, summary, rep, min_clean)
    summary["seconds"]["report"] = round(time.time() - t0, 3)
    return summary


def _jsonable(o: Any) -> Any:
    """``o`` with numpy scalars as Python numbers and non-finite floats as ``None`` (plain JSON)."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.bool_):
        return bool(o)
    return o


__all__ = [
    "MIN_CELLS_FOR_INTERVALS", "MIN_GROUP_CELLS", "MIN_TOPK_CELLS", "AnalysisConfig", "ReportBuilder",
    "SectionContext", "dedupe_features", "list_sections", "parse_target", "pretty_target", "register_section",
    "resolve_min_clean", "run_analysis", "sort_targets", "to_markdown",
]

"""Proxy ranking: how well each zero-cost proxy / measure orders cells by each robustness target.

For every (feature, target, subset) the table holds Spearman's rho and Kendall's tau-b with percentile bootstrap
intervals over cells, and the top-k% precision (the fraction of the true top-k% of cells that the feature's top-k%
contains). Subsets: ``all`` cells, and ``clean>=T`` (cells whose clean accuracy is at least ``T``: it removes the
collapsed and badly trained cells, which make every proxy look better than it is among good cells).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .stats import correlation_ci, topk_precision


@dataclass
class RankingConfig:
    """Settings of :func:`rank_features`.

    Attributes:
        n_boot: bootstrap resamples for Spearman (vectorised, cheap).
        n_boot_kendall: resamples for Kendall (one scipy call each: keep it smaller on thousands of cells).
        confidence: interval level.
        topk: fraction of cells for top-k precision.
        clean_threshold: clean-accuracy threshold of the second subset (``None``: only ``all``).
        seed: seed of the bootstrap.
    """

    n_boot: int = 1000
    n_boot_kendall: int = 200
    confidence: float = 0.95
    topk: float = 0.1
    clean_threshold: float | None = 0.8
    seed: int = 0


def rank_features(
    features: pd.DataFrame,
    targets: pd.DataFrame,
    config: RankingConfig | None = None,
    *,
    target_names: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """The ranking table of ``features`` against ``targets``.

    Arguments:
        features: ``(cells, F)`` table indexed by ``arch``.
        targets: ``(cells, T)`` table indexed by ``arch`` (needs a ``clean`` column for the threshold subset).
        config: statistics settings.
        target_names: restrict to these targets (default: all columns).
        progress: show a progress bar.

    Returns:
        One row per (feature, target, subset) with ``n``, ``spearman``, ``spearman_lo``, ``spearman_hi``,
        ``kendall``, ``kendall_lo``, ``kendall_hi``, ``topk_precision``, sorted by target, subset and
        descending ``|spearman|``.
    """
    cfg = config or RankingConfig()
    common = features.index.intersection(targets.index)
    if len(common) == 0:
        raise ValueError("features and targets share no cells (compare their 'arch' indices)")
    F = features.loc[common]
    T = targets.loc[common]
    names = list(T.columns if target_names is None else target_names)
    missing = [t for t in names if t not in T.columns]
    if missing:
        raise KeyError(f"unknown target(s) {missing}; available: {list(T.columns)}")
    subsets: list[tuple[str, np.ndarray]] = [("all", np.ones(len(common), dtype=bool))]
    if cfg.clean_threshold is not None and "clean" in T.columns:
        subsets.append((f"clean>={cfg.clean_threshold:g}", (T["clean"] >= cfg.clean_threshold).to_numpy()))
    rows = []
    jobs = [(f, t, s) for t in names for s in subsets for f in F.columns]
    for feat, tgt, (sname, mask) in tqdm(jobs, desc="ranking", disable=not progress):
        x = F[feat].to_numpy(np.float64)[mask]
        y = T[tgt].to_numpy(np.float64)[mask]
        seed = cfg.seed
        sp = correlation_ci(x, y, "spearman", n_resamples=cfg.n_boot, confidence=cfg.confidence, seed=seed)
        kd = correlation_ci(x, y, "kendall", n_resamples=cfg.n_boot_kendall, confidence=cfg.confidence, seed=seed)
        rows.append(
            {
                "feature": feat, "target": tgt, "subset": sname, "n": sp.n,
                "spearman": sp.value, "spearman_lo": sp.low, "spearman_hi": sp.high,
                "kendall": kd.value, "kendall_lo": kd.low, "kendall_hi": kd.high,
                "topk_precision": topk_precision(x, y, cfg.topk),
            }
        )  # fmt: skip
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_abs"] = out["spearman"].abs()
    order = {t: i for i, t in enumerate(names)}
    out["_t"] = out["target"].map(order)
    out = out.sort_values(["_t", "subset", "_abs"], ascending=[True, True, False], na_position="last")
    return out.drop(columns=["_abs", "_t"]).reset_index(drop=True)


def to_markdown(df: pd.DataFrame, *, floatfmt: str = "{:.3f}") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (floats formatted, NaN shown as ``-``)."""

    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return "-" if not np.isfinite(v) else floatfmt.format(float(v))
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_ranking(df: pd.DataFrame, out_dir: str | Path, name: str = "ranking") -> tuple[Path, Path]:
    """Write the ranking table as ``<name>.csv`` and ``<name>.md`` under ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / f"{name}.csv", out / f"{name}.md"
    df.to_csv(csv, index=False)
    md.write_text(to_markdown(df))
    return csv, md

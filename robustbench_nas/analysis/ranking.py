"""Proxy ranking: how well each zero-cost proxy / measure orders cells by each robustness target.

For every (feature, target, subset) the table holds Spearman's rho with a percentile bootstrap interval over cells,
Kendall's tau-b with an interval (bootstrap on small sets, Fisher z with the Fieller-Hartley-Pearson variance on
large ones: column ``kendall_ci``), and the top-k% precision (the fraction of the true top-k% of cells that the
feature's top-k% contains; ``topk_k`` cells). Subsets: ``all`` cells, and ``clean>=T`` (cells whose clean accuracy
is at least ``T``: it removes the collapsed and badly trained cells, which make every proxy look better than it is
among good cells); the subset is left out when every cell passes (it would repeat ``all``).

Speed: the pairs that share the same cells (the usual case: every target is finite wherever a feature is) are
computed together: one draw of resample counts, each column ranked once per resample, and all rank products as
one matrix product (:func:`.stats.spearman_matrix_ci`): on the 6466-cell release 2 x 50 x 2 pairs with 1000
resamples take seconds instead of minutes, with the same numbers as :func:`.stats.correlation_ci` pair by pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .stats import correlation_ci, fisher_z_interval, kendall, spearman_matrix_ci


@dataclass
class RankingConfig:
    """Settings of :func:`rank_features`.

    Attributes:
        n_boot: bootstrap resamples for Spearman (vectorised over all pairs, cheap).
        n_boot_kendall: resamples for a Kendall bootstrap (one scipy call each, so only on small sets).
        kendall_boot_max_n: largest number of cells with a Kendall bootstrap; above it the interval is Fisher's z
            with the Fieller-Hartley-Pearson variance 0.437 / (n - 4).
        kendall_boot_max_pairs: most (feature, target) pairs with a Kendall bootstrap (one scipy call per resample
            and pair); a larger table (e.g. hundreds of encoding columns) gets Fisher's z for every pair.
        confidence: interval level.
        topk: fraction of cells for top-k precision.
        clean_threshold: clean-accuracy threshold of the second subset (``None``: only ``all``).
        seed: seed of the bootstrap.
    """

    n_boot: int = 1000
    n_boot_kendall: int = 200
    kendall_boot_max_n: int = 200
    kendall_boot_max_pairs: int = 2000
    confidence: float = 0.95
    topk: float = 0.1
    clean_threshold: float | None = 0.8
    seed: int = 0


def ranking_subsets(targets: pd.DataFrame, threshold: float | None) -> list[tuple[str, np.ndarray]]:
    """``[("all", mask), ("clean>=T", mask)]``; the second only when it is a proper, non-empty subset."""
    subsets: list[tuple[str, np.ndarray]] = [("all", np.ones(len(targets), dtype=bool))]
    if threshold is not None and "clean" in targets.columns:
        m = (targets["clean"] >= threshold).to_numpy()
        if 0 < m.sum() < len(m):
            subsets.append((f"clean>={threshold:g}", m))
    return subsets


def _topk_members(V: np.ndarray, k: int) -> np.ndarray:
    """``(n, K)`` bool: the top ``k`` rows of every column (descending, ties by row order as a stable sort)."""
    order = np.argsort(-V, axis=0, kind="stable")[:k]
    M = np.zeros(V.shape, dtype=bool)
    np.put_along_axis(M, order, True, axis=0)
    return M


def rank_features(
    features: pd.DataFrame,
    targets: pd.DataFrame,
    config: RankingConfig | None = None,
    *,
    target_names: Sequence[str] | None = None,
    progress: bool = False,
    kendall_boot_features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The ranking table of ``features`` against ``targets``.

    Arguments:
        features: ``(cells, F)`` table indexed by ``arch``.
        targets: ``(cells, T)`` table indexed by ``arch`` (needs a ``clean`` column for the threshold subset).
        config: statistics settings.
        target_names: restrict to these targets (default: all columns).
        progress: show a progress bar (stderr).
        kendall_boot_features: only these features may get a Kendall bootstrap interval (one scipy call per
            resample and pair: the ranking's cost on small stores), the others Fisher's z (``kendall_ci`` says
            which); ``None``: every feature.

    Returns:
        One row per (feature, target, subset) with ``n``, ``spearman``, ``spearman_lo``, ``spearman_hi``,
        ``kendall``, ``kendall_lo``, ``kendall_hi``, ``kendall_ci``, ``topk_precision``, ``topk_k``, sorted by
        target, subset and descending ``|spearman|``. Pairs with a NaN on either side are dropped (``n`` counts
        the rest).
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
    Fv = F.to_numpy(np.float64)
    Tv = T[names].to_numpy(np.float64)
    fin_f, fin_t = np.isfinite(Fv), np.isfinite(Tv)
    feats = list(F.columns)
    rows = []
    boot_feats = set(feats if kendall_boot_features is None else kendall_boot_features)
    boot_ok = len(boot_feats & set(feats)) * len(names) <= cfg.kendall_boot_max_pairs
    bar = tqdm(total=len(feats) * len(names) * 2, desc="ranking", unit="pair", disable=not progress)
    for sname, mask in ranking_subsets(T, cfg.clean_threshold):
        # pairs grouped by the cells they use: one vectorised computation per group
        buckets: dict[bytes, tuple[np.ndarray, list[tuple[int, int]]]] = {}
        for f in range(len(feats)):
            fm = fin_f[:, f] & mask
            for t in range(len(names)):
                m = fm & fin_t[:, t]
                buckets.setdefault(m.tobytes(), (m, []))[1].append((f, t))
        for m, pairs in buckets.values():
            fs = sorted({f for f, _ in pairs})
            ts = sorted({t for _, t in pairs})
            X, Y = Fv[m][:, fs], Tv[m][:, ts]
            n = int(m.sum())
            rho, lo, hi = spearman_matrix_ci(X, Y, n_resamples=cfg.n_boot, confidence=cfg.confidence, seed=cfg.seed)
            k = max(1, math.ceil(cfg.topk * n)) if n else 0
            prec = (_topk_members(X, k).T.astype(np.float64) @ _topk_members(Y, k) / k) if n else None
            fpos, tpos = {f: i for i, f in enumerate(fs)}, {t: j for j, t in enumerate(ts)}
            for f, t in pairs:
                i, j = fpos[f], tpos[t]
                x, y = X[:, i], Y[:, j]
                tau = kendall(x, y)
                if boot_ok and n <= cfg.kendall_boot_max_n and feats[f] in boot_feats:
                    kd = correlation_ci(x, y, "kendall", n_resamples=cfg.n_boot_kendall, confidence=cfg.confidence,
                                        seed=cfg.seed)  # fmt: skip
                    klo, khi, kmethod = kd.low, kd.high, "bootstrap"
                else:
                    (klo, khi), kmethod = fisher_z_interval(tau, n, "kendall", cfg.confidence), "fisher-z"
                rows.append({
                    "feature": feats[f], "target": names[t], "subset": sname, "n": n,
                    "spearman": float(rho[i, j]), "spearman_lo": float(lo[i, j]), "spearman_hi": float(hi[i, j]),
                    "kendall": tau, "kendall_lo": klo, "kendall_hi": khi, "kendall_ci": kmethod,
                    "topk_precision": float(prec[i, j]) if prec is not None else float("nan"), "topk_k": k,
                })  # fmt: skip
            bar.update(len(pairs))
    bar.close()
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_abs"] = out["spearman"].abs()
    order = {t: i for i, t in enumerate(names)}
    out["_t"] = out["target"].map(order)
    out["_s"] = (out["subset"] != "all").astype(int)
    out = out.sort_values(["_t", "_s", "_abs"], ascending=[True, True, False], na_position="last", kind="stable")
    return out.drop(columns=["_abs", "_t", "_s"]).reset_index(drop=True)


def best_per_target(ranking: pd.DataFrame, subset: str = "all") -> pd.DataFrame:
    """The feature with the largest ``|spearman|`` per target in ``subset`` (sign kept), one row per target in
    the ranking's order. A negative rho is as useful as a positive one (flip the proxy), so ``best`` is by
    magnitude; ``sign`` says which way."""
    r = ranking[(ranking["subset"] == subset) & ranking["spearman"].notna()]
    if r.empty:
        return r.assign(sign=pd.Series(dtype=str))
    idx = r["spearman"].abs().groupby(r["target"], sort=False).idxmax()
    best = r.loc[idx.to_numpy()].copy()
    best["sign"] = np.where(best["spearman"] >= 0, "+", "-")
    return best.reset_index(drop=True)


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

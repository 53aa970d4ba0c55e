"""The proxy study: every zero-cost proxy against every robustness target of a store (e.g. the imported release).

Parts (each a pure function of a proxies table and a targets table, both indexed by ``arch`` = uid):

* :func:`study_targets`: the targets (clean, every attack x eps, adv / corruption means, each corruption averaged
  over severities, each corruption x severity, HRS of FGSM 8/255 as CRoZe reports it).
* :func:`rank_proxies`: Spearman (and Kendall) of every proxy with every target, bootstrap 95 % intervals over
  cells (:func:`.ranking.rank_features`), on all cells and on the high-clean subset.
* :func:`complementarity`: random forests (100 trees, as Lukasik et al. 2023) on one proxy, on all proxies, on the
  cell encodings and on proxies + encodings, 3-fold cross-validated R^2 and Spearman per target, plus permutation
  importance of the all-proxies forest.
* :func:`published_comparison`: the published finding (protocols.md, Lukasik et al. 2023: clean accuracy can be
  regressed from one proxy, robust accuracy needs several) checked on these numbers.
* :func:`plot_proxy_heatmap`: the proxies x targets Spearman heat map (each cell's interval in its CSV).

:func:`run_proxy_study` writes everything under ``OUT/proxy_study/`` and returns an HTML fragment for the report;
``rbnas analyze IMPORTED --proxies shipped --out OUT`` runs it on the shipped table. The fragment is
``templates/sections/proxy_study.html.j2``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .sections import SectionContext, register_section

#: Targets shown in the heat map (those present), in this order.
HEATMAP_TARGETS = (
    "clean", "fgsm@Linf@1/255", "fgsm@Linf@4/255", "fgsm@Linf@8/255", "pgd@Linf@0.5/255", "pgd@Linf@1/255",
    "pgd@Linf@2/255", "aa_apgd-ce@Linf@1/255", "aa_square@Linf@1/255", "aa_square@Linf@4/255", "adv_mean",
    "hrs@fgsm@Linf@8/255", "corruption_mean", "corruption:gaussian_noise", "corruption:fog", "corruption:contrast",
)  # fmt: skip
#: Targets of the complementarity forests.
FOREST_TARGETS = ("clean", "fgsm@Linf@1/255", "pgd@Linf@1/255", "aa_apgd-ce@Linf@1/255", "aa_square@Linf@1/255",
                  "corruption_mean")  # fmt: skip


@dataclass
class ProxyStudyConfig:
    """Settings of :func:`run_proxy_study`.

    Attributes:
        n_boot: bootstrap resamples (Spearman intervals); n_boot_kendall: for Kendall.
        clean_threshold: clean accuracy of the high-clean subset (0.91 is about the release's median, 0.914).
        folds: cross-validation folds of the forests; trees: trees per forest.
        seed: seed of bootstraps, folds and forests.
        encodings: cell encodings for the proxies + encodings forest.
        topk_fractions: fractions of cells for the top-k precision columns (``top1%_precision`` ...): on the
            complete table (6466 cells) the top 1 % is 65 cells, a statement the 500-cell sample could not make.
    """

    n_boot: int = 1000
    n_boot_kendall: int = 0
    clean_threshold: float = 0.91
    folds: int = 3
    trees: int = 100
    seed: int = 0
    encodings: tuple[str, ...] = ("opcount", "graf")
    topk_fractions: tuple[float, ...] = (0.01, 0.05)


def study_targets(ds: xr.Dataset) -> pd.DataFrame:
    """:func:`.targets.targets_table` plus each corruption x severity and CRoZe's HRS of FGSM at 8/255."""
    from .targets import _arch_index, _reduce_extra, find_var, targets_table

    T = targets_table(ds)
    cor = find_var(ds, "corruption")
    if cor is not None:
        cor = _reduce_extra(cor, ("arch", "corruption", "severity")).transpose("arch", "corruption", "severity")
        vals = cor.values.astype(np.float64)
        idx = _arch_index(ds)
        extra = {f"corruption:{c}@s{int(s)}": vals[:, i, j] for i, c in enumerate(cor["corruption"].values)
                 for j, s in enumerate(cor["severity"].values) if np.isfinite(vals[:, i, j]).any()}  # fmt: skip
        T = pd.concat([T, pd.DataFrame(extra, index=idx)], axis=1)
    if "clean" in T and "fgsm@Linf@8/255" in T:  # harmonic robustness score, 2CR/(C+R), as CRoZe evaluates
        c, r = T["clean"], T["fgsm@Linf@8/255"]
        T["hrs@fgsm@Linf@8/255"] = 2 * c * r / (c + r)
    return T


def topk_column(frac: float) -> str:
    """The ranking column of the top-k precision at ``frac`` of the cells, e.g. ``top1%_precision``."""
    return f"top{frac * 100:g}%_precision"


def rank_proxies(P: pd.DataFrame, T: pd.DataFrame, cfg: ProxyStudyConfig) -> pd.DataFrame:
    """Spearman / Kendall with bootstrap intervals of every proxy column of ``P`` with every target of ``T``, and
    the top-k precision at each of ``cfg.topk_fractions`` (:func:`.stats.topk_precision`: the share of the target's
    top ``ceil(frac * n)`` cells among the proxy's top as many, higher = better on both sides, on the pair's finite
    cells of the row's subset; column :func:`topk_column`)."""
    from .ranking import RankingConfig, rank_features, ranking_subsets
    from .stats import topk_precision

    rc = RankingConfig(n_boot=cfg.n_boot, n_boot_kendall=cfg.n_boot_kendall, clean_threshold=cfg.clean_threshold,
                       seed=cfg.seed)  # fmt: skip
    R = rank_features(P, T, rc)
    common = P.index.intersection(T.index)
    masks = dict(ranking_subsets(T.loc[common], cfg.clean_threshold))
    Pv, Tv = P.loc[common], T.loc[common]
    for frac in cfg.topk_fractions:
        R[topk_column(frac)] = [
            topk_precision(Pv[f].to_numpy(np.float64)[masks[s]], Tv[t].to_numpy(np.float64)[masks[s]], frac)
            for f, t, s in zip(R["feature"], R["target"], R["subset"])]  # fmt: skip
    R["feature"] = R["feature"].str.removeprefix("proxy:")
    return R


def signed_log(df: pd.DataFrame) -> pd.DataFrame:
    """``sign(x) log(1 + |x|)``: monotone (ranks and tree splits unchanged), and keeps synflow (~1e49) and CRoZe
    inside float32, which scikit-learn's trees cast to. ``-inf`` / ``+inf`` (nwot and zen of a cell whose output
    ignores its input, as their references compute them) become one unit below / above the column's finite values,
    which keeps their rank and makes them usable by the trees; NaN stays NaN."""
    out = np.sign(df) * np.log1p(df.abs())
    for c in out.columns:
        col = out[c].to_numpy(dtype=np.float64, copy=True)
        inf = np.isinf(col)
        if inf.any():
            fin = col[np.isfinite(col)]
            lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 0.0)
            neg, pos = inf & (col < 0), inf & (col > 0)
            col[neg], col[pos] = lo - 1.0, hi + 1.0
            out[c] = col
    return out


def _cv(X: np.ndarray, y: np.ndarray, cfg: ProxyStudyConfig) -> dict[str, float]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    from .stats import spearman

    pred = np.full_like(y, np.nan)
    for tr, te in KFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(X):
        m = RandomForestRegressor(cfg.trees, random_state=cfg.seed, n_jobs=1).fit(X[tr], y[tr])
        pred[te] = m.predict(X[te])
    return {"r2": float(r2_score(y, pred)), "spearman": spearman(pred, y)}


def complementarity(P: pd.DataFrame, E: pd.DataFrame, T: pd.DataFrame, cfg: ProxyStudyConfig,
                    R: pd.DataFrame | None = None,
                    targets: Sequence[str] = FOREST_TARGETS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-validated forests per target on: the best single proxy, all proxies, encodings, proxies + encodings.

    "Best single" is the proxy with the largest |Spearman| with the target on all cells (from ``R``, the ranking;
    chosen on the same cells, so an optimistic figure for one proxy, which only makes "several proxies beat the
    best single one" harder to show).

    Returns:
        ``(scores, importance)``: one row per (target, features) with ``r2``, ``spearman``, ``n``; and the
        permutation importance (drop in held-out R^2, one 80/20 split) of every proxy in the all-proxies forest.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    common = P.index.intersection(T.index).intersection(E.index)
    P, E, T = P.loc[common], E.loc[common], T.loc[common]
    Pf = signed_log(P.fillna(P.median()))
    rows, imps = [], []
    for t in [t for t in targets if t in T]:
        ok = T[t].notna().to_numpy()
        y = T[t].to_numpy(np.float64)[ok]
        if R is not None and len(r := R[(R["target"] == t) & (R["subset"] == "all")]):
            best = "proxy:" + str(r.loc[r["spearman"].abs().idxmax(), "feature"])
        else:
            best = str(P.columns[0])
        rows.append({"target": t, "features": f"best single ({best.removeprefix('proxy:')})",
                     **_cv(Pf[[best]].to_numpy()[ok], y, cfg)})
        for name, X in (("all proxies", Pf.to_numpy()), ("encodings", E.to_numpy()),
                        ("proxies + encodings", np.hstack([Pf.to_numpy(), E.to_numpy()]))):
            rows.append({"target": t, "features": name, **_cv(X[ok], y, cfg)})
        rng = np.random.default_rng(cfg.seed)
        perm = rng.permutation(int(ok.sum()))
        k = int(0.8 * len(perm))
        X = Pf.to_numpy()[ok]
        m = RandomForestRegressor(cfg.trees, random_state=cfg.seed, n_jobs=1).fit(X[perm[:k]], y[perm[:k]])
        pi = permutation_importance(m, X[perm[k:]], y[perm[k:]], n_repeats=5, random_state=cfg.seed, n_jobs=1)
        imps.append(pd.DataFrame({"target": t, "proxy": [c.removeprefix("proxy:") for c in P.columns],
                                  "importance_mean": pi.importances_mean, "importance_std": pi.importances_std}))
    scores = pd.DataFrame(rows)
    scores["n"] = len(common)
    imp = pd.concat(imps, ignore_index=True) if imps else pd.DataFrame()
    return scores, imp


def published_comparison(R: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The published findings next to ours (one row per claim, with the numbers behind our verdict)."""
    rows = []
    allc = R[R["subset"] == "all"]

    def best(t: str) -> tuple[str, float]:
        r = allc[allc["target"] == t]
        if r.empty:
            return "-", float("nan")
        i = r["spearman"].abs().idxmax()
        return str(r.loc[i, "feature"]), float(r.loc[i, "spearman"])

    for t, lit in (("clean", "0.79 (nwot, NASLib 725-cell sample); jacob_cov 0.77, synflow 0.74"),
                   ("pgd@Linf@1/255", "about 0.3 at best"), ("aa_apgd-ce@Linf@1/255", "slightly negative"),
                   ("fgsm@Linf@8/255", "CRoZe reports its best agreement on FGSM / HRS")):  # fmt: skip
        f, v = best(t)
        rows.append({"claim": f"best single-proxy Spearman, {t}", "published": lit, "ours": f"{v:.3f} ({f})"})
    for t in ("clean", "pgd@Linf@1/255", "fgsm@Linf@1/255"):
        s = scores[scores["target"] == t].set_index("features")["r2"]
        if s.empty:
            continue
        single = s[[i for i in s.index if i.startswith("best single")]].iloc[0]
        rows.append({"claim": f"R^2 of a forest on one proxy vs on all proxies, {t}",
                     "published": "clean: one proxy is enough; robust: several proxies needed (Lukasik et al. 2023)",
                     "ours": f"{single:.3f} vs {s['all proxies']:.3f} (gain {s['all proxies'] - single:+.3f})"})  # fmt: skip
    return pd.DataFrame(rows)


def plot_proxy_heatmap(R: pd.DataFrame, out: Path, name: str = "proxy_heatmap", subset: str = "all",
                       targets: Sequence[str] = HEATMAP_TARGETS) -> Path:
    """Proxies x targets heat map of Spearman, each cell annotated with the value and its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import _save

    S = R[R["subset"] == subset]
    tg = [t for t in targets if t in set(S["target"])]
    piv = S.pivot(index="feature", columns="target", values="spearman")[tg]
    lo = S.pivot(index="feature", columns="target", values="spearman_lo")[tg]
    hi = S.pivot(index="feature", columns="target", values="spearman_hi")[tg]
    order = piv.abs().mean(axis=1).sort_values(ascending=False).index
    piv, lo, hi = piv.loc[order], lo.loc[order], hi.loc[order]
    v = piv.to_numpy(np.float64)
    # sized to be read at the report's width (about 1100 px): the value in each cell, its interval in the CSV
    fig, ax = plt.subplots(figsize=(0.62 * len(tg) + 2.6, 0.34 * len(order) + 2.2))
    im = ax.imshow(v, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(tg)), tg, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), list(order), fontsize=8)
    from .figures import cell_text_color

    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, f"{v[i, j]:+.2f}", ha="center", va="center", fontsize=7.5,
                        color=cell_text_color(im.cmap(im.norm(v[i, j]))))  # fmt: skip
    n = int(S["n"].max()) if len(S) else 0
    fig.colorbar(im, ax=ax, label="Spearman")
    ax.set_title(f"zero-cost proxies vs published robustness ({subset}, {n} cells; Spearman, 95 % intervals in the CSV)",
                 fontsize=9)
    table = pd.concat({"spearman": piv, "spearman_lo": lo, "spearman_hi": hi}, axis=1)  # the figure's data
    return _save(fig, table, out, name, index=True)


def seed_noise_table(noise: dict[str, dict[str, Any]] | None) -> pd.DataFrame:
    """The proxy table's seed-noise figures (its JSON's ``seed_noise``) as rows, noisiest proxy last.

    Columns: ``proxy``, ``cells``, ``seeds``, ``spearman_between_seeds`` (mean over seed pairs of the cells' rank
    agreement), ``noise_ratio`` (within-cell std over seeds / std over cells; about 1 = the ranking is noise).
    """
    if not noise:
        return pd.DataFrame(columns=["proxy", "cells", "seeds", "spearman_between_seeds", "noise_ratio"])
    rows = [{"proxy": k, "cells": v.get("cells"), "seeds": ",".join(str(s) for s in v.get("seeds", [])),
             "spearman_between_seeds": v.get("spearman_between_seeds"), "noise_ratio": v.get("noise_ratio")}
            for k, v in noise.items()]  # fmt: skip
    return pd.DataFrame(rows).sort_values("noise_ratio", kind="stable").reset_index(drop=True)


def run_proxy_study(ds: xr.Dataset, proxies: pd.DataFrame, out_dir: str | Path,
                    cfg: ProxyStudyConfig | None = None,
                    seed_noise: dict[str, dict[str, Any]] | None = None,
                    seed_noise_note: str | None = None) -> tuple[str, dict[str, Any]]:
    """Join ``proxies`` (indexed by uid, ``proxy:*`` columns) onto ``ds``'s cells and write the study.

    ``seed_noise``: the table's per-proxy seed noise (``table_meta(...)["seed_noise"]``), shown beside the ranking;
    ``seed_noise_note``: the table's caveat on it (``table_meta(...)["seed_noise_note"]``: e.g. seeds evaluated on
    other images), shown instead of "same batch".

    Returns:
        ``(html fragment, summary)``; files in ``out_dir/proxy_study/``.
    """
    from .targets import features_table

    cfg = cfg or ProxyStudyConfig()
    t0 = time.time()
    out = Path(out_dir) / "proxy_study"
    out.mkdir(parents=True, exist_ok=True)
    T = study_targets(ds)
    common = proxies.index.intersection(T.index)
    if len(common) < 6:
        raise ValueError(f"the proxy table shares {len(common)} cells with the store (need >= 6): are both NB201 "
                         "with uids as 'arch' (an imported Jung et al. release)?")
    P = proxies.loc[common]
    T = T.loc[common]
    R = rank_proxies(P, T, cfg)
    R.to_csv(out / "proxy_ranking.csv", index=False)
    E = features_table(ds, encodings=list(cfg.encodings), costs=False).loc[common]
    scores, imp = complementarity(P, E, T, cfg, R)
    scores.to_csv(out / "complementarity.csv", index=False)
    imp.to_csv(out / "permutation_importance.csv", index=False)
    comp = published_comparison(R, scores)
    comp.to_csv(out / "published_comparison.csv", index=False)
    figs = [plot_proxy_heatmap(R, out, "proxy_heatmap_all", "all")]
    hc = [s for s in R["subset"].unique() if s != "all"]
    if hc:
        figs.append(plot_proxy_heatmap(R, out, "proxy_heatmap_high_clean", hc[0]))
    best = {}
    for t in ("clean", "fgsm@Linf@1/255", "pgd@Linf@1/255", "aa_apgd-ce@Linf@1/255", "aa_square@Linf@1/255",
              "corruption_mean"):  # fmt: skip
        r = R[(R["subset"] == "all") & (R["target"] == t)]
        if len(r):
            i = r["spearman"].idxmax()
            best[t] = {k: (float(r.loc[i, k]) if k != "feature" else str(r.loc[i, k]))
                       for k in ("feature", "spearman", "spearman_lo", "spearman_hi",
                                 *(topk_column(f) for f in cfg.topk_fractions))}
    noise = seed_noise_table(seed_noise)
    if len(noise):
        noise.to_csv(out / "seed_noise.csv", index=False)
    summary = {"cells": int(len(common)), "best_proxy": best, "seconds": time.time() - t0,
               "seed_noise_cells": int(noise["cells"].max()) if len(noise) else 0}
    from .report_html import figure, table_data
    from .report_templates import render_partial

    top = R[R["target"].isin(["clean", "pgd@Linf@1/255", "aa_apgd-ce@Linf@1/255", "fgsm@Linf@1/255"])]
    top = top.groupby(["target", "subset"], sort=False).head(3)[
        ["target", "subset", "feature", "n", "spearman", "spearman_lo", "spearman_hi",
         *(topk_column(f) for f in cfg.topk_fractions)]]
    few = len(common) < 100
    summary["warning"] = f"only {len(common)} cells with proxies" if few else ""
    body = str(render_partial(
        "proxy_study", warnings=[], cells=len(common), few=few,
        figures=[figure(p, f"Spearman of every proxy with every target ({p.stem.rsplit('_', 1)[-1]} cells)",
                        data_href=f"proxy_study/{p.stem}.csv") for p in figs],
        top=table_data(top), scores=table_data(scores), published=table_data(comp),
        noise=table_data(noise.round(3)) if len(noise) else None, noise_note=seed_noise_note))  # fmt: skip
    return body, summary


@register_section("proxy_study", order=100)
def proxy_study_section(ctx: SectionContext) -> None:
    """The report section: runs when ``AnalysisConfig.proxies`` names a table (``rbnas analyze --proxies``)."""
    if not ctx.config.proxies:
        return
    from .proxy_table import load_table, table_meta

    # the report's one filter (``--min-clean``) for the high-clean subset, not a cut of its own
    pcfg = ProxyStudyConfig(seed=ctx.config.seed, **({} if ctx.min_clean is None else
                                                     {"clean_threshold": ctx.min_clean}))  # fmt: skip
    body, summary = run_proxy_study(ctx.ds, load_table(ctx.config.proxies), ctx.out, pcfg,
                                    seed_noise=table_meta(ctx.config.proxies).get("seed_noise"),
                                    seed_noise_note=table_meta(ctx.config.proxies).get("seed_noise_note"))
    ctx.summary["proxy_study"] = summary
    if summary.get("warning"):
        ctx.report.warn("proxy_study", f"{summary['warning']}: intervals are wide, read the values as provisional")
    # no findings of its own: the table's proxies are in the summary's one ranking (sections/ranking.py), on the
    # same cells and filter as every other feature; this section is the detail
    for name, what in (("proxy_ranking.csv", "every proxy vs every target, Spearman/Kendall with intervals"),
                       ("complementarity.csv", "forests on one proxy / all proxies / encodings / both"),
                       ("permutation_importance.csv", "permutation importance of the proxies"),
                       ("published_comparison.csv", "published findings next to ours"),
                       ("seed_noise.csv", "each proxy's seed noise (from the table's JSON)")):  # fmt: skip
        if name != "seed_noise.csv" or summary.get("seed_noise_cells"):
            ctx.report.file(f"proxy_study/{name}", what)
    ctx.report.section("proxy_study", "Zero-cost proxies vs the published robustness", body)


__all__ = ["ProxyStudyConfig", "proxy_study_section", "complementarity", "plot_proxy_heatmap", "published_comparison", "rank_proxies",
           "run_proxy_study", "seed_noise_table", "study_targets", "topk_column"]

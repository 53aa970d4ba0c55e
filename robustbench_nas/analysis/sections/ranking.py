"""The report section "ranking": which zero-cost features predict robustness: Spearman / Kendall of every feature
(costs, cell encodings, proxies, measures) with every target on one stated cell set and one stated filter
(:mod:`..ranking_scope`), bootstrap intervals, the best feature per target, rho against eps per attack and per
corruption. Its body is ``templates/sections/ranking.html.j2``."""

from __future__ import annotations

import html
from dataclasses import asdict

import numpy as np
import pandas as pd

from ..figures import plot_heatmap, plot_rank_vs_eps
from ..ranking import RankingConfig, best_per_target, rank_features, write_ranking
from ..ranking_scope import RankingScope, describe_scope, feature_kind, ranking_scope
from ..report_config import MIN_CELLS_FOR_INTERVALS, MIN_TOPK_CELLS
from ..report_html import ci, figure, fmt, table_data
from ..target_names import parse_target, pretty_target, sort_targets
from .registry import SectionContext, register_section


def has_features(ctx: SectionContext) -> bool:
    """Whether the store has anything to rank (proxies, measures, costs, encodings); warns when it has not."""
    if ctx.features.shape[1]:
        return True
    ctx.report.warn("ranking", "the store has no proxies, measures, params/FLOPs or encodings: no ranking")
    return False


def _filtered(R: pd.DataFrame) -> str:
    """The ranking's filtered subset (``clean>=T``) or ``all`` when the filter removes no cell of its cell set."""
    subsets = list(dict.fromkeys(R["subset"]))
    return subsets[1] if len(subsets) > 1 else "all"


def best_table(R: pd.DataFrame, R_free: pd.DataFrame | None) -> pd.DataFrame:
    """The best feature per target in the filtered subset of ``R`` (the one cell set); with ``R_free`` (the free
    features on every cell, same filter) its best beside it (``free_feature_all_cells``, ``spearman_all_cells``,
    ``n_all_cells``)."""
    best = best_per_target(R, _filtered(R))
    if R_free is not None and len(R_free):
        bf = best_per_target(R_free, _filtered(R_free))[["target", "feature", "spearman", "n"]]
        bf = bf.rename(columns={"feature": "free_feature_all_cells", "spearman": "spearman_all_cells",
                                "n": "n_all_cells"})  # fmt: skip
        best = best.merge(bf, on="target", how="left")
    return best


@register_section("ranking", order=10, ready=has_features)
def ranking_section(ctx: SectionContext) -> None:
    """Add the ranking section to ``ctx.report`` (figures under ``ctx.fig_dir``, tables under ``ctx.out``)."""
    rep, cfg, T, F = ctx.report, ctx.config, ctx.targets, ctx.features
    min_clean, headline, summary, fig_dir = ctx.min_clean, ctx.headline, ctx.summary, ctx.fig_dir
    rcfg = RankingConfig(**{**asdict(cfg.ranking), "clean_threshold": min_clean})
    names = sort_targets(cfg.rank_targets or list(T.columns))
    scope = ranking_scope(F, T, min_clean)
    if len(scope.cells) < 3:
        rep.warn("ranking", f"only {len(scope.cells)} cells have every feature: no ranking (rank fewer features, "
                            "e.g. a proxy table covering more cells)")  # fmt: skip
        return
    # a column constant on the cell set orders nothing (e.g. most one-hot columns on a few cells): not ranked
    Fc = F.loc[scope.cells, scope.features]
    Fc = Fc.loc[:, Fc.nunique(dropna=True) > 1]
    # Kendall bootstraps (a scipy call per resample and pair) for costs, proxies and measures only: the encodings'
    # columns (dozens of op counts and GRAF features) get Fisher's z, (all of them bootstrapped made the 8-cell tiny report's ranking several times slower)
    boot = [c for c in Fc.columns if feature_kind(c) != "encoding"]
    R = rank_features(Fc, T.loc[scope.cells], rcfg, target_names=names, kendall_boot_features=boot)
    write_ranking(R, rep.out)
    R_free = None
    if not scope.complete and scope.free:
        Ff = F[scope.free]
        R_free = rank_features(Ff.loc[:, Ff.nunique(dropna=True) > 1], T, rcfg, target_names=names,
                               kendall_boot_features=boot)
        R_free.to_csv(rep.out / "ranking_free_all_cells.csv", index=False)
    filt = _filtered(R)
    if min_clean is not None and filt == "all":
        rep.warn("ranking", f"every cell of the ranking has clean accuracy >= {min_clean:g}: the filtered subset "
                            "equals all cells and is not repeated")  # fmt: skip
    n_min = int(R["n"].min())
    if n_min < MIN_CELLS_FOR_INTERVALS:
        rep.warn("ranking", f"correlations on as few as {n_min} cells: their 95 % intervals are too wide to order the "
                            f"proxies (a rank correlation needs about {MIN_CELLS_FOR_INTERVALS}+ cells); read the "
                            "ranking as a smoke test, not a finding")  # fmt: skip
    if int(R["topk_k"].min()) < MIN_TOPK_CELLS:
        rep.warn("ranking", f"top-{cfg.ranking.topk:.0%} precision rests on {int(R['topk_k'].min())} cell(s) per "
                            "target: close to a yes/no answer")  # fmt: skip
    best = best_table(R, R_free)
    best.to_csv(rep.out / "ranking_best.csv", index=False)
    summary["ranking_scope"] = scope.as_dict()
    summary["ranking_best"] = {r["target"]: {"feature": r["feature"], "spearman": r["spearman"],
                                             "spearman_lo": r["spearman_lo"], "spearman_hi": r["spearman_hi"],
                                             "n": int(r["n"]), "subset": r["subset"],
                                             **({"free_feature_all_cells": r["free_feature_all_cells"],
                                                 "spearman_all_cells": r["spearman_all_cells"],
                                                 "n_all_cells": r["n_all_cells"]}
                                                if "free_feature_all_cells" in r else {})}
                               for _, r in best.iterrows()}  # fmt: skip
    rep.scope = describe_scope(scope)
    for t in headline:  # findings: the best predictor of each headline target, on the one cell set and filter
        b = best[best["target"] == t]
        if not b.empty:
            rep.finding(_finding(t, b.iloc[0], scope))
    figures = []
    # rho vs eps per attack (one readable panel per attack instead of a 55-column heat map)
    adv = R[(R["subset"] == filt) & R["target"].map(lambda t: parse_target(t) is not None)].copy()
    if not adv.empty:
        adv["attack"] = adv["target"].map(lambda t: parse_target(t)[0])
        adv["eps_255"] = adv["target"].map(lambda t: parse_target(t)[1])
        top = (adv.assign(a=adv["spearman"].abs()).groupby("feature")["a"].mean().sort_values(ascending=False)
               .index[:6])  # fmt: skip
        png = plot_rank_vs_eps(adv[adv["feature"].isin(top)], fig_dir, "ranking_vs_eps",
                               title=f"Spearman rho vs eps ({_cells_words(scope)}; top {len(top)} features)")
        figures.append(figure(png, "How well each feature ranks cells under each attack, as eps grows "
                                   "(band: 95 % interval)."))  # fmt: skip
    corruption = None
    cor = R[(R["subset"] == filt) & R["target"].str.startswith("corruption:")]
    if not cor.empty:
        piv = cor.pivot(index="feature", columns="target", values="spearman")
        piv = piv.loc[piv.abs().mean(axis=1).sort_values(ascending=False).index[:20]]  # the 20 best features
        piv.columns = [c.split(":", 1)[1] for c in piv.columns]
        png = plot_heatmap(piv, fig_dir, "ranking_corruptions", title=f"Spearman rho per corruption ({filt})")
        corruption = figure(png, "Spearman rho of the 20 best features with the accuracy under each corruption "
                                 "(mean over severities).")  # fmt: skip
    cols = ["target", "feature", "sign", "spearman", "spearman_lo", "spearman_hi", "kendall", "n", "topk_precision"]
    cols += [c for c in ("free_feature_all_cells", "spearman_all_cells", "n_all_cells") if c in best]
    tab = best[cols].copy()
    # trimmed: the headline targets and each attack at 1/255 and 8/255 (every target is in ranking_best.csv)
    shown = tab["target"].map(lambda t: t in headline or (parse_target(t) or ("", -1.0))[1] in (1.0, 8.0))
    if shown.sum() >= 3:
        tab = tab[shown]
    if (tab["n"] < MIN_CELLS_FOR_INTERVALS).any():
        tab.insert(0, "flag", np.where(tab["n"] < MIN_CELLS_FOR_INTERVALS, "few cells", ""))
    files = ["ranking.csv", "ranking.md", "ranking_best.csv"]
    for f, what in zip(files, ("the full ranking table (every feature x target x subset)", "the same as Markdown",
                               "the best feature per target")):
        rep.file(f, what)
    if R_free is not None:
        rep.file("ranking_free_all_cells.csv", "the free features ranked on every cell of the store")
    rep.render_section("ranking", "Which zero-cost features predict robustness", scope=describe_scope(scope),
                       n_boot=cfg.ranking.n_boot, filtered=filt != "all", min_clean=min_clean,
                       cells_words=_cells_words(scope), figures=figures, corruption=corruption,
                       best=table_data(tab), has_free=R_free is not None, files=files)  # fmt: skip


def _cells_words(scope: RankingScope) -> str:
    """``"the 35 cells with clean >= 0.72 of the 40 with every feature"`` and the like (the one cell set)."""
    where = "every cell" if scope.complete else f"the {len(scope.cells)} cells with every feature"
    if scope.min_clean is None:
        return f"{where}, {len(scope.cells)} cells"
    return f"{scope.n_filtered} cells with clean >= {scope.min_clean:g}, of {where}"


def _finding(target: str, r: pd.Series, scope: RankingScope) -> str:
    """The summary bullet of a headline target: its best feature on the one cell set and filter (markup)."""
    small = " &#9888; few cells" if r["n"] < MIN_CELLS_FOR_INTERVALS else ""
    filt = f" with clean >= {scope.min_clean:g}" if scope.min_clean is not None and r["subset"] != "all" else ""
    where = "" if scope.complete else f" (of the {len(scope.cells)} with every feature)"
    text = (f"Best predictor of <b>{html.escape(pretty_target(target))}</b>: <b>{html.escape(r['feature'])}</b>, "
            f"Spearman {ci(r)} over {int(r['n'])} cells{filt}{where}")  # fmt: skip
    if "free_feature_all_cells" in r and isinstance(r["free_feature_all_cells"], str):
        text += (f"; best free feature on all {int(r['n_all_cells'])} cells{filt}: "
                 f"{html.escape(r['free_feature_all_cells'])} {fmt(r['spearman_all_cells'], 2, True)}")
    return text + f"{small}."


__all__ = ["best_table", "has_features", "ranking_section"]

"""The report section "ranking": which zero-cost features predict robustness: Spearman / Kendall of every feature with
every target (bootstrap intervals), the best feature per target, rho against eps per attack and per corruption."""

from __future__ import annotations

import html
from dataclasses import asdict

import numpy as np

from ..figures import plot_heatmap, plot_rank_vs_eps
from ..ranking import RankingConfig, best_per_target, rank_features, write_ranking
from ..report_config import MIN_CELLS_FOR_INTERVALS, MIN_TOPK_CELLS
from ..report_html import ci, fmt, img, table
from ..target_names import parse_target, pretty_target, sort_targets
from .registry import SectionContext, register_section


def has_features(ctx: SectionContext) -> bool:
    """Whether the store has anything to rank (proxies, measures, params / FLOPs); warns when it has not."""
    if ctx.rank_features.shape[1]:
        return True
    ctx.report.warn("ranking", "the store has no proxies, measures or params/FLOPs: no ranking")
    return False


@register_section("ranking", order=10, ready=has_features)
def ranking_section(ctx: SectionContext) -> None:
    """Add the ranking section to ``ctx.report`` (figures under ``ctx.fig_dir``, tables under ``ctx.out``)."""
    rep, cfg, T, F = ctx.report, ctx.config, ctx.targets, ctx.rank_features
    min_clean, headline, summary, fig_dir = ctx.min_clean, ctx.headline, ctx.summary, ctx.fig_dir
    rcfg = RankingConfig(**{**asdict(cfg.ranking), "clean_threshold": min_clean})
    names = sort_targets(cfg.rank_targets or list(T.columns))
    R = rank_features(F, T, rcfg, target_names=names)
    write_ranking(R, rep.out)
    subsets = list(dict.fromkeys(R["subset"]))
    filt = subsets[1] if len(subsets) > 1 else "all"
    if min_clean is not None and len(subsets) == 1:
        rep.warn("ranking", f"every cell has clean accuracy >= {min_clean:g}: the filtered subset equals all cells "
                            "and is not repeated")  # fmt: skip
    n_min = int(R["n"].min())
    if n_min < MIN_CELLS_FOR_INTERVALS:
        rep.warn("ranking", f"correlations on as few as {n_min} cells: their 95 % intervals are too wide to order the "
                            f"proxies (a rank correlation needs about {MIN_CELLS_FOR_INTERVALS}+ cells); read the "
                            "ranking as a smoke test, not a finding")  # fmt: skip
    if int(R["topk_k"].min()) < MIN_TOPK_CELLS:
        rep.warn("ranking", f"top-{cfg.ranking.topk:.0%} precision rests on {int(R['topk_k'].min())} cell(s) per "
                            "target: close to a yes/no answer")  # fmt: skip
    best_all = best_per_target(R, "all")
    best_f = best_per_target(R, filt)
    best = best_f.merge(best_all[["target", "feature", "spearman"]], on="target", how="left", suffixes=("", "_all"))
    best.to_csv(rep.out / "ranking_best.csv", index=False)
    summary["ranking_best"] = {r["target"]: {"feature": r["feature"], "spearman": r["spearman"],
                                             "spearman_lo": r["spearman_lo"], "spearman_hi": r["spearman_hi"],
                                             "n": int(r["n"]), "subset": r["subset"]}
                               for _, r in best.iterrows()}  # fmt: skip
    # findings: the best predictor of each headline target, with its interval
    for t in headline:
        b = best[best["target"] == t]
        if b.empty:
            continue
        r = b.iloc[0]
        extra = "" if r["subset"] == "all" else (f" (all {len(T)} cells: {r['feature_all']} "
                                                 f"{fmt(r['spearman_all'], 2, True)})")  # fmt: skip
        small = " &#9888; few cells" if r["n"] < MIN_CELLS_FOR_INTERVALS else ""
        where_txt = f" with clean >= {min_clean:g}" if min_clean is not None else ""
        rep.findings.append(
            f"Best predictor of <b>{html.escape(pretty_target(t))}</b>: <b>{html.escape(r['feature'])}</b>, Spearman "
            f"{ci(r)} over {int(r['n'])} cells{where_txt if r['subset'] != 'all' else ''}"
            f"{html.escape(extra)}{small}.")  # fmt: skip
    body = ("<p>Spearman's rho between each zero-cost feature and each target, with 95 % bootstrap intervals "
            f"({cfg.ranking.n_boot} resamples over cells). \"Best\" is the largest |rho|: a negative rho ranks as well "
            "when the proxy is flipped, and the sign is shown."
            + (f" The best lists use the {int((T['clean'] >= min_clean).sum())} cells with clean accuracy >= "
               f"{min_clean:g} (collapsed and badly trained cells make every proxy look better than it is)."
               if filt != "all" else "") + "</p>")  # fmt: skip
    body += rep.warnings_html("ranking")
    # figure: rho vs eps per attack (one readable panel per attack instead of a 55-column heat map)
    adv = R[(R["subset"] == filt) & R["target"].map(lambda t: parse_target(t) is not None)].copy()
    if not adv.empty:
        adv["attack"] = adv["target"].map(lambda t: parse_target(t)[0])
        adv["eps_255"] = adv["target"].map(lambda t: parse_target(t)[1])
        top = (adv.assign(a=adv["spearman"].abs()).groupby("feature")["a"].mean().sort_values(ascending=False)
               .index[:6])  # fmt: skip
        png = plot_rank_vs_eps(adv[adv["feature"].isin(top)], fig_dir, "ranking_vs_eps",
                                    title=f"Spearman rho vs eps ({filt} cells; top {len(top)} features)")
        body += img(png, "How well each feature ranks cells under each attack, as eps grows (band: 95 % interval).")
    cor = R[(R["subset"] == filt) & R["target"].str.startswith("corruption:")]
    if not cor.empty:
        piv = cor.pivot(index="feature", columns="target", values="spearman")
        piv.columns = [c.split(":", 1)[1] for c in piv.columns]
        png = plot_heatmap(piv, fig_dir, "ranking_corruptions", title=f"Spearman rho per corruption ({filt})")
        body += "<h3>Common corruptions</h3>" + img(png, "Spearman rho of each feature with the accuracy under each "
                                                          "corruption (mean over severities).")  # fmt: skip
    tab = best[["target", "feature", "sign", "spearman", "spearman_lo", "spearman_hi", "kendall", "n",
                "topk_precision", "feature_all", "spearman_all"]].copy()  # fmt: skip
    # trimmed: the headline targets and each attack at 1/255 and 8/255 (every target is in ranking_best.csv)
    shown = tab["target"].map(lambda t: t in headline or (parse_target(t) or ("", -1.0))[1] in (1.0, 8.0))
    if shown.sum() >= 3:
        tab = tab[shown]
    if (tab["n"] < MIN_CELLS_FOR_INTERVALS).any():
        tab.insert(0, "flag", np.where(tab["n"] < MIN_CELLS_FOR_INTERVALS, "few cells", ""))
    body += (f"<h3>Best feature per target ({filt} cells)</h3>" + table(tab)
             + f"<p>Full table (every feature x target x subset, with Kendall's tau and intervals): "
               f"{rep.file('ranking.csv', 'the full ranking table')} "
               f"({rep.file('ranking.md', 'the same as Markdown')}); "
               f"best per target: {rep.file('ranking_best.csv', 'the best feature per target')}.</p>")  # fmt: skip
    rep.sections.append(("ranking", "Which zero-cost features predict robustness", body))


__all__ = ["ranking_section"]

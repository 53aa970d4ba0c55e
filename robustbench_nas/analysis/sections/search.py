"""The report section "search": searching the dataset: regret of random search, local search, regularised evolution
and BANANAS (predictor-guided) on the tabulated targets. Its body is ``templates/sections/search.html.j2``."""

from __future__ import annotations

import pandas as pd

from .. import figures as figs
from ..report_html import figure, table_data
from ..search import Objective, run_searches, summarize_regret
from ..target_names import default_predict_targets, pretty_target
from .registry import SectionContext, register_section


def has_budget(ctx: SectionContext) -> bool:
    """Whether a search was asked for (``AnalysisConfig.search_budget`` > 0)."""
    return ctx.config.search_budget > 0


#: The searches compared in the report (issue 26: the predictor-guided one beside the three baselines).
REPORT_SEARCHES = ("random", "local", "evolution", "bananas")


@register_section("search", order=40, ready=has_budget)
def search_section(ctx: SectionContext) -> None:
    """Add the search section to ``ctx.report`` (figures under ``ctx.fig_dir``, tables under ``ctx.out``)."""
    rep, cfg, T, summary, fig_dir = ctx.report, ctx.config, ctx.targets, ctx.summary, ctx.fig_dir
    from ...search_spaces import get_search_space

    if not get_search_space(summary["search_space"]).enumerable:  # mutations leave a sampled store's cells
        rep.render_section("search", "Searching the dataset", sampled=summary["search_space"])
        return
    objs = default_predict_targets(T)
    budget = min(cfg.search_budget, len(T))
    if budget < cfg.search_budget:
        rep.warn("search", f"search budget {cfg.search_budget} exceeds the {len(T)} cells: used {budget}")
    C = pd.concat([run_searches(Objective.from_series(T[t], summary["search_space"]), REPORT_SEARCHES, budget=budget,
                                repeats=cfg.search_repeats, seed=cfg.seed) for t in objs], ignore_index=True)  # fmt: skip
    C.to_csv(rep.out / "search_regret.csv", index=False)
    Sg = summarize_regret(C)
    Sg["objective"] = Sg["objective"].map(pretty_target)
    png = figs.plot_lines(Sg, "queries", "mean", ["algorithm"], fig_dir, "search_regret", err="std", nonneg=True,
                          logy=True, panel="objective", title="regret (mean +- std over runs)")  # fmt: skip
    final = Sg[Sg["queries"] == budget]
    summary["search_final_regret"] = final[["objective", "algorithm", "mean", "std"]].to_dict(orient="records")
    rep.file("search_regret.csv", "regret curves per run")
    rep.render_section("search", "Searching the dataset", sampled=None, budget=budget, runs=cfg.search_repeats,
                       figure=figure(png, "Regret vs queries."), table=table_data(final))


__all__ = ["search_section"]

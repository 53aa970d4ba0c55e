"""The report section "prediction": predicting robustness from a few cells: held-out Spearman of regressors on
zero-cost features against the number of training cells, and the permutation importance of the features."""

from __future__ import annotations

import html
from dataclasses import asdict

import pandas as pd

from .. import figures as figs
from ..prediction import (
    PredictionConfig,
    feature_groups,
    feature_importance,
    summarize_curve,
    train_size_curve,
)
from ..report_html import img, safe_name, table
from ..target_names import default_predict_targets, pretty_target
from .registry import SectionContext, register_section


@register_section("prediction", order=30)
def prediction_section(ctx: SectionContext) -> None:
    """Add the prediction section to ``ctx.report`` (figures under ``ctx.fig_dir``, tables under ``ctx.out``)."""
    rep, cfg, T, F, summary, fig_dir = ctx.report, ctx.config, ctx.targets, ctx.features, ctx.summary, ctx.fig_dir
    groups: dict[str, list[str]] = {}
    for g, cols in feature_groups(F).items():  # a group with the same columns as an earlier one is a duplicate
        if sorted(cols) not in [sorted(c) for c in groups.values()]:
            groups[g] = cols
    targets = list(cfg.predict_targets or default_predict_targets(T))
    missing = [t for t in targets if t not in T]
    if missing:
        raise KeyError(f"unknown prediction target(s) {missing}; available: {list(T.columns)}")
    n = int(min(T[t].notna().sum() for t in targets)) if targets else 0
    asked = tuple(cfg.prediction.train_sizes)
    sizes = tuple(s for s in asked if s < n - 1)
    if len(sizes) < len(asked):
        too_big = [s for s in asked if s not in sizes]
        fallback = () if sizes else (max(2, n // 2),)
        rep.warn("prediction", f"train size(s) {', '.join(map(str, too_big))} need more than the {n} cells available"
                               + (f"; used {fallback[0]} (half the cells) instead" if fallback else "; left out"))
        sizes = sizes or fallback
    pcfg = PredictionConfig(**{**asdict(cfg.prediction), "train_sizes": sizes})
    if n < 50:
        rep.warn("prediction", f"held-out scores on {n} cells in all: expect large variation between splits")
    curves = pd.concat([train_size_curve(F, T[t], groups, pcfg) for t in targets], ignore_index=True)
    curves.to_csv(rep.out / "prediction.csv", index=False)
    S = summarize_curve(curves)
    S.to_csv(rep.out / "prediction_summary.csv", index=False)
    summary["prediction"] = S.to_dict(orient="records")
    multi = S[~S["group"].str.startswith("single:") | (S["group"] == "single:params")]
    png = figs.plot_lines(multi.assign(target=multi["target"].map(pretty_target)), "train_size", "spearman_mean",
                          ["group", "model"], fig_dir, "prediction_curves", err="spearman_std", logx=True,
                          panel="target", title="held-out Spearman vs training cells (mean +- std over splits)")
    for t in targets:
        st_ = S[(S["target"] == t) & ~S["group"].str.startswith("single:")]
        if st_.empty:
            continue
        big = st_.sort_values("train_size").groupby("group")["spearman_mean"].last().idxmax()
        c = st_[st_["group"] == big].sort_values("train_size")
        pts = ", ".join(f"{r['spearman_mean']:.2f} at {int(r['train_size'])}" for _, r in c.iterrows())
        rep.findings.append(f"Learning <b>{html.escape(pretty_target(t))}</b> from zero-cost features ({big}, "
                            f"{c['model'].iloc[0]}): held-out Spearman {pts} training cells.")  # fmt: skip
    body = ("<p>Regressors trained on a few cells' zero-cost features (proxies, measures, cell encodings) and scored "
            f"on held-out cells ({pcfg.repeats} random splits per size"
            + (f", {pcfg.n_estimators} trees" if pcfg.n_estimators else "") + ").</p>")
    body += rep.warnings_html("prediction") + img(png, "Held-out Spearman vs number of training cells.")
    tab = multi[["target", "group", "model", "train_size", "spearman_mean", "spearman_std", "r2_mean", "repeats"]]
    body += table(tab) + (f"<p>Every group (single features included): "
                           f"{rep.file('prediction_summary.csv', 'prediction scores, mean/std over splits')}, "
                           f"per split: "
                           f"{rep.file('prediction.csv', 'prediction scores per split')}.</p>")  # fmt: skip
    gbig = "all" if "all" in groups else ("encodings" if "encodings" in groups else next(iter(groups), None))
    if gbig is not None and targets:
        t = targets[min(1, len(targets) - 1)]  # the first robustness target (clean is targets[0])
        ok = int(T[t].notna().sum())
        size = max(1, min(cfg.importance_train_size, int(0.8 * ok)))
        if size < cfg.importance_train_size:
            rep.warn("prediction", f"permutation importance trained on {size} cells (80 % of the {ok} available), "
                                   f"not {cfg.importance_train_size}")  # fmt: skip
        res = feature_importance(F, T[t], groups[gbig], model=pcfg.models[0], train_size=size, seed=cfg.seed,
                                 n_repeats=3, n_estimators=pcfg.n_estimators, max_test=pcfg.max_test)  # fmt: skip
        res.table.to_csv(rep.out / f"importance_{safe_name(t)}.csv", index=False)
        png = figs.plot_bars(res.table, "feature", "importance_mean", fig_dir, f"importance_{safe_name(t)}",
                             err="importance_std", title=f"permutation importance: {t}")  # fmt: skip
        body += (f"<h3>Which features the model uses: {html.escape(pretty_target(t))}</h3>"
                 + img(png, "Drop in held-out R^2 when one feature is shuffled (top 20).")
                 + f"<p>All features: {rep.file(f'importance_{safe_name(t)}.csv', 'permutation importance')}.</p>")
    rep.sections.append(("prediction", "Predicting robustness from a few cells", body))


__all__ = ["prediction_section"]

"""The report section "prediction": predicting robustness from a few cells, with ``rbnas predict``'s protocol.

Every score is :func:`..heldout.heldout_scores` on the features of :func:`..heldout.heldout_inputs`, the function
and features ``rbnas predict`` uses, under the report's :class:`..predict_protocol.PredictProtocol` (the same
defaults): each row names the ``rbnas predict`` command that prints the same numbers. Then the permutation
importance of a random forest's features. Its body is ``templates/sections/prediction.html.j2``.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import replace

import pandas as pd

from .. import figures as figs
from ..heldout import heldout_inputs, heldout_scores, predict_command
from ..prediction import feature_importance
from ..report_html import figure, safe_name, table_data
from ..target_names import default_predict_targets, pretty_target
from .registry import SectionContext, register_section


@register_section("prediction", order=30)
def prediction_section(ctx: SectionContext) -> None:
    """Add the prediction section to ``ctx.report`` (figures under ``ctx.fig_dir``, tables under ``ctx.out``)."""
    rep, cfg, summary, fig_dir = ctx.report, ctx.config, ctx.summary, ctx.fig_dir
    inputs = heldout_inputs(ctx.ds, encodings=cfg.encodings, proxy_table=cfg.proxies)
    T, F = inputs.targets, inputs.features
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
    protocol = replace(cfg.prediction, train_sizes=sizes)
    if n < 50:
        rep.warn("prediction", f"held-out scores on {n} cells in all: expect large variation between splits")
    rows, per_split = [], []
    for t in targets:
        for size in sizes:
            res = heldout_scores(inputs, t, size, protocol)
            cmd = predict_command("STORE", t, size, protocol, encodings=cfg.encodings, proxy_table=cfg.proxies)
            models = Counter(res["models"]).most_common()
            rows.append({"target": t, "train_size": size, "spearman_mean": res["spearman_mean"],
                         "spearman_std": res["spearman_std"], "kendall_mean": res["kendall_mean"],
                         "r2_mean": res["r2_mean"], "n_test": res["n_test"], "repeats": res["repeats"],
                         "models": ", ".join(f"{m} x{k}" if k > 1 else m for m, k in models),
                         "features": res["features"], "command": cmd})  # fmt: skip
            per_split += [{"target": t, "train_size": size, "repeat": r, "model": m, **sc}
                          for r, (m, sc) in enumerate(zip(res["models"], res["per_repeat"]))]  # fmt: skip
    S = pd.DataFrame(rows)
    S.to_csv(rep.out / "prediction_summary.csv", index=False)
    pd.DataFrame(per_split).to_csv(rep.out / "prediction.csv", index=False)
    summary["prediction"] = S.to_dict(orient="records")
    summary["prediction_protocol"] = {"model": protocol.model, "train_sizes": list(sizes), "repeats": protocol.repeats,
                                      "seed": protocol.seed, "train_select": protocol.train_select,
                                      "selection": protocol.selection, "encodings": cfg.encodings}  # fmt: skip
    png = figs.plot_lines(S.assign(target=S["target"].map(pretty_target)), "train_size", "spearman_mean", ["target"],
                          fig_dir, "prediction_curves", err="spearman_std", logx=len(sizes) > 1,
                          title="held-out Spearman vs training cells (mean +- std over splits)")  # fmt: skip
    for t in targets:
        c = S[S["target"] == t].sort_values("train_size")
        pts = ", ".join(f"{r['spearman_mean']:.3f} at {int(r['train_size'])}" for _, r in c.iterrows())
        rep.finding(f"Learning <b>{html.escape(pretty_target(t))}</b> from free features (model "
                    f"{html.escape(protocol.model)}, {protocol.repeats} splits, as <code>rbnas predict</code>): "
                    f"held-out Spearman {pts} training cells.")  # fmt: skip
    importance = None
    if targets and F.shape[1]:
        t = targets[min(1, len(targets) - 1)]  # the first robustness target (clean is targets[0])
        ok = int(T[t].notna().sum())
        size = max(1, min(cfg.importance_train_size, int(0.8 * ok)))
        if size < cfg.importance_train_size:
            rep.warn("prediction", f"permutation importance trained on {size} cells (80 % of the {ok} available), "
                                   f"not {cfg.importance_train_size}")  # fmt: skip
        res = feature_importance(F, T[t], list(F.columns), model="rf", train_size=size, seed=cfg.seed, n_repeats=3,
                                 n_estimators=cfg.importance_trees, max_test=2000)  # fmt: skip
        name = f"importance_{safe_name(t)}"
        res.table.to_csv(rep.out / f"{name}.csv", index=False)
        png_imp = figs.plot_bars(res.table, "feature", "importance_mean", fig_dir, name, err="importance_std",
                                 title=f"permutation importance: {t}")  # fmt: skip
        rep.file(f"{name}.csv", "permutation importance")
        importance = {"target": pretty_target(t), "size": size, "trees": cfg.importance_trees, "csv": f"{name}.csv",
                      "figure": figure(png_imp, "Drop in held-out R^2 when one feature is shuffled (top 20).")}
    rep.file("prediction_summary.csv", "held-out scores per target and training size, with the rbnas predict command")
    rep.file("prediction.csv", "held-out scores per split")
    shown = S[["target", "train_size", "spearman_mean", "spearman_std", "kendall_mean", "n_test", "models"]]
    rep.render_section("prediction", "Predicting robustness from a few cells", protocol=protocol,
                       encodings=", ".join(cfg.encodings) if cfg.encodings else "none", n_features=int(F.shape[1]),
                       figure_curves=figure(png, "Held-out Spearman vs number of training cells."),
                       scores=table_data(shown), commands=list(S["command"]), importance=importance)  # fmt: skip


__all__ = ["prediction_section"]

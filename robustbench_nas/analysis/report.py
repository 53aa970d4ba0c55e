"""``rbnas analyze``: run every analysis on a store and write tables, figures and one self-contained HTML report.

Output folder layout::

    OUT/targets.csv                  one row per cell, one column per target
    OUT/ranking.csv, ranking.md      proxy / measure ranking table (all cells and clean >= threshold)
    OUT/prediction.csv, _summary.csv held-out scores per (target, feature group, model, train size, repeat)
    OUT/importance_<target>.csv      permutation importance
    OUT/figures/<name>.png + .csv    every figure and the data behind it
    OUT/search_regret.csv            regret curves of random / local search / regularised evolution
    OUT/summary.json                 headline numbers
    OUT/report.html                  everything above in one file (figures embedded)
"""

from __future__ import annotations

import base64
import html
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import architecture as arch
from . import figures as figs
from .prediction import PredictionConfig, feature_groups, feature_importance, summarize_curve, train_size_curve
from .ranking import RankingConfig, rank_features, to_markdown, write_ranking
from .search import Objective, run_searches, summarize_regret
from .targets import features_table, store_space, targets_table, target_name

log = logging.getLogger(__name__)


@dataclass
class AnalysisConfig:
    """What ``rbnas analyze`` computes.

    Attributes:
        ranking: statistics of the ranking table.
        rank_targets: targets of the ranking table (``None``: every target).
        prediction: models / train sizes / repeats of the prediction curves.
        predict_targets: targets to predict (``None``: clean, PGD or the first attack at 1/255, adv_mean).
        encodings: architecture encodings used as features (``None``: none; ``default``: the store's search
            space's default set, NB201 ``opcount, graf``, NATS-Bench SSS ``channels, width``).
        importance_train_size: training cells of the permutation-importance model.
        search_budget, search_repeats: NAS on the dataset (0 budget: skipped).
        top_k: best cells listed per target.
        seed: seed of every random step.
        sections: which parts to run (``ranking``, ``prediction``, ``architecture``, ``search``).
    """

    ranking: RankingConfig = field(default_factory=RankingConfig)
    rank_targets: list[str] | None = None
    prediction: PredictionConfig = field(default_factory=lambda: PredictionConfig(models=("rf",), repeats=2))
    predict_targets: list[str] | None = None
    encodings: list[str] | None = field(default_factory=lambda: ["default"])
    importance_train_size: int = 1000
    search_budget: int = 300
    search_repeats: int = 10
    top_k: int = 10
    seed: int = 0
    sections: tuple[str, ...] = ("ranking", "prediction", "architecture", "search")


def _default_predict_targets(T: pd.DataFrame) -> list[str]:
    out = ["clean"] if "clean" in T else []
    for a in ("pgd@Linf", "fgsm@Linf"):
        if target_name(a, 1 / 255) in T:
            out.append(target_name(a, 1 / 255))
            break
    else:
        adv = [c for c in T.columns if "@" in c and "/255" in c]
        out += adv[:1]
    if "adv_mean" in T:
        out.append("adv_mean")
    return out


def run_analysis(ds: xr.Dataset, out_dir: str | Path, config: AnalysisConfig | None = None, *,
                 progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the configured analyses on ``ds`` (a store opened with :func:`.targets.load_store`) into ``out_dir``.

    Returns:
        The headline summary (also written as ``summary.json``).
    """
    cfg = config or AnalysisConfig()
    out = Path(out_dir)
    fig_dir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    space = store_space(ds)
    T = targets_table(ds)
    T.to_csv(out / "targets.csv")
    F_rank = features_table(ds)
    F_all = features_table(ds, encodings=cfg.encodings) if cfg.encodings else F_rank
    summary: dict[str, Any] = {"cells": len(T), "search_space": space, "targets": list(T.columns),
                               "features": list(F_rank.columns),
                               "config": _jsonable(asdict(cfg)), "seconds": {}}  # fmt: skip
    sections: list[tuple[str, str]] = []

    if "ranking" in cfg.sections and F_rank.shape[1]:
        t0 = time.time()
        R = rank_features(F_rank, T, cfg.ranking, target_names=cfg.rank_targets, progress=progress)
        write_ranking(R, out)
        all_ = R[R["subset"] == "all"]
        heat = all_.pivot(index="feature", columns="target", values="spearman")[list(dict.fromkeys(all_["target"]))]
        png = figs.plot_heatmap(heat, fig_dir, "ranking_spearman", title="Spearman, all cells")
        best = all_.loc[all_.groupby("target")["spearman"].idxmax()].set_index("target")
        summary["ranking_best"] = {t: {"feature": r["feature"], "spearman": r["spearman"]} for t, r in best.iterrows()}
        sections.append(("Proxy ranking", _table(R.head(60)) + _img(png)))
        summary["seconds"]["ranking"] = time.time() - t0

    if "prediction" in cfg.sections:
        t0 = time.time()
        groups = feature_groups(F_all)
        targets = cfg.predict_targets or _default_predict_targets(T)
        n = len(T)
        sizes = tuple(s for s in cfg.prediction.train_sizes if s < n - 1) or (max(2, n // 2),)
        pcfg = PredictionConfig(**{**asdict(cfg.prediction), "train_sizes": sizes})
        curves = pd.concat([train_size_curve(F_all, T[t], groups, pcfg, progress=progress) for t in targets],
                           ignore_index=True)  # fmt: skip
        curves.to_csv(out / "prediction.csv", index=False)
        S = summarize_curve(curves)
        S.to_csv(out / "prediction_summary.csv", index=False)
        png = figs.plot_lines(S[~S["group"].str.startswith("single:") | (S["group"] == "single:params")],
                              "train_size", "spearman_mean", ["target", "group", "model"], fig_dir, "prediction_curves",
                              err="spearman_std", logx=True, title="held-out Spearman vs training cells")  # fmt: skip
        body = _table(S) + _img(png)
        summary["prediction"] = S.to_dict(orient="records")
        imp_tables = []
        big = "all" if "all" in groups else ("encodings" if "encodings" in groups else next(iter(groups), None))
        if big is not None:
            for t in targets:
                # at most 80 % of the cells for training: the importance is measured on the held-out rest
                size = max(1, min(cfg.importance_train_size, int(0.8 * T[t].notna().sum())))
                res = feature_importance(F_all, T[t], groups[big], model=cfg.prediction.models[0], train_size=size,
                                         seed=cfg.seed, n_repeats=3)  # fmt: skip
                res.table.to_csv(out / f"importance_{_safe(t)}.csv", index=False)
                imp_tables.append(res.table.head(15))
                png = figs.plot_bars(res.table, "feature", "importance_mean", fig_dir, f"importance_{_safe(t)}",
                                     err="importance_std", title=f"permutation importance: {t}")  # fmt: skip
                body += f"<h3>Permutation importance: {html.escape(t)}</h3>" + _img(png)
        if imp_tables:
            body += _table(pd.concat(imp_tables, ignore_index=True))
        sections.append(("Prediction", body))
        summary["seconds"]["prediction"] = time.time() - t0

    if "architecture" in cfg.sections:
        t0 = time.time()
        body = ""
        try:
            curves = arch.eps_curves(ds)
            body += _img(figs.plot_eps_curves(curves, fig_dir))
        except ValueError as e:
            log.info("no eps curves: %s", e)
        key = "adv_mean" if "adv_mean" in T else ("clean" if "clean" in T else T.columns[0])
        if "params" in F_rank:
            by = arch.robustness_by_params(T, F_rank["params"], key)
            if by["n"].sum() < 0.5 * T[key].notna().sum():
                # equal counts are rare (e.g. NATS-Bench SSS): match parameters within 2 % instead
                by = arch.robustness_by_params(T, F_rank["params"], key, rel_width=0.02)
                summary["same_params_rule"] = "within 2 % (log-spaced bins)"
            by.to_csv(out / f"by_params_{_safe(key)}.csv", index=False)
            body += _img(figs.plot_scatter(F_rank["params"] / 1e6, T[key], fig_dir, f"params_vs_{_safe(key)}",
                                           color=T["clean"] if "clean" in T else None, xlabel="params (M)",
                                           ylabel=key))  # fmt: skip
            if len(by):
                widest = by.sort_values("range").iloc[-1]
                summary["same_params_spread"] = {k: (float(v) if k != "target" else v) for k, v in widest.items()}
                body += _table(by.sort_values("n", ascending=False).head(15))
        eff_targets = _default_predict_targets(T) + (["corruption_mean"] if "corruption_mean" in T else [])
        eff = arch.choice_effects(T, eff_targets, space)
        numeric = pd.api.types.is_numeric_dtype(eff["choice"])
        for t in eff_targets:
            e_t = eff[eff["target"] == t]
            if numeric:  # e.g. NATS-Bench SSS: the target against the width of each layer
                d = e_t.rename(columns={"choice": "width (channels)", "mean": f"mean {t}", "position_label": "layer"})
                body += _img(figs.plot_lines(d, "width (channels)", f"mean {t}", ["layer"], fig_dir,
                                             f"by_width_{_safe(t)}", title=f"{t} against the width of each layer"))
            else:
                piv = e_t.pivot(index="choice", columns="position_label", values="effect")
                body += _img(figs.plot_heatmap(piv, fig_dir, f"op_edge_{_safe(t)}", title=f"op-on-edge effect: {t}",
                                               fmt="{:+.3f}"))  # fmt: skip
        if numeric:
            eff.to_csv(out / "choice_effects.csv", index=False)
        else:
            eff.rename(columns={"position": "edge", "position_label": "edge_label", "choice": "op"}).to_csv(
                out / "op_edge_effects.csv", index=False)
        best = arch.best_cells(T, eff_targets, cfg.top_k, space)
        best.to_csv(out / "best_cells.csv", index=False)
        ov = arch.top_overlap(T, eff_targets, 0.01)
        body += _img(figs.plot_heatmap(ov, fig_dir, "top1pct_overlap", title="overlap of the top 1 % cells",
                                       cmap="viridis", center=None))  # fmt: skip
        body += _table(best)
        summary["best"] = {t: float(T[t].max()) for t in eff_targets}
        sections.append(("Architecture and robustness", body))
        summary["seconds"]["architecture"] = time.time() - t0

    if "search" in cfg.sections and cfg.search_budget > 0:
        t0 = time.time()
        objs = _default_predict_targets(T)
        budget = min(cfg.search_budget, len(T))
        C = pd.concat([run_searches(Objective.from_series(T[t], space), budget=budget, repeats=cfg.search_repeats,
                                    seed=cfg.seed) for t in objs], ignore_index=True)  # fmt: skip
        C.to_csv(out / "search_regret.csv", index=False)
        Sg = summarize_regret(C)
        body = ""
        for t in objs:
            body += _img(figs.plot_lines(Sg[Sg["objective"] == t], "queries", "mean", ["algorithm"], fig_dir,
                                         f"regret_{_safe(t)}", err="std", nonneg=True,
                                         title=f"regret (mean +- std over runs): {t}"))
        final = Sg[Sg["queries"] == budget]
        summary["search_final_regret"] = final[["objective", "algorithm", "mean", "std"]].to_dict(orient="records")
        body += _table(final)
        sections.append(("Search on the dataset", body))
        summary["seconds"]["search"] = time.time() - t0

    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
    _write_html(out / "report.html", ds, summary, sections)
    return summary


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    return o


def _img(png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(png.stem)}">'
            f"<figcaption>{html.escape(png.stem)} (data: figures/{html.escape(png.stem)}.csv)</figcaption></figure>")


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", border=0, classes="t")


def _write_html(path: Path, ds: xr.Dataset, summary: dict[str, Any], sections: list[tuple[str, str]]) -> None:
    attrs = {k: ds.attrs[k] for k in ("source", "dataset", "created", "imported_from") if k in ds.attrs}
    head = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in attrs.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>robustbench-nas analysis</title><style>",
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table.t{border-collapse:collapse;font-size:12px;margin:1em 0}"
        "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}figure{display:inline-block;margin:.5em}figcaption{font-size:11px;color:#555}",
        "</style></head><body><h1>robustbench-nas analysis</h1>",
        f"<ul><li><b>cells</b>: {summary['cells']}</li>{head}</ul>",
        "<p>Accuracies are fractions in [0, 1]; eps labels are in units of 1/255 (stored in [0, 1]).</p>",
    ]
    for title, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{body}")
    parts.append(f"<h2>Summary</h2><pre>{html.escape(json.dumps(_jsonable(summary), indent=1)[:20000])}</pre>")
    parts.append("</body></html>")
    path.write_text("".join(parts))


__all__ = ["AnalysisConfig", "run_analysis", "to_markdown"]

"""``rbnas analyze``: run every analysis on a store and write tables, figures and one self-contained HTML report.

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

import base64
import html
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from . import architecture as arch
from . import figures as figs
from .prediction import PredictionConfig, feature_groups, feature_importance, summarize_curve, train_size_curve
from .ranking import RankingConfig, best_per_target, rank_features, to_markdown, write_ranking
from .search import Objective, run_searches, summarize_regret
from .stats import spearman
from .targets import features_table, store_space, target_name, targets_table

log = logging.getLogger(__name__)

#: Fewer cells than this and a rank-correlation interval is too wide to order proxies by (it is shown, flagged).
MIN_CELLS_FOR_INTERVALS = 30
#: Fewer cells than this in a group (an op on an edge, a parameter count) and no finding is drawn from it.
MIN_GROUP_CELLS = 5
#: Fewer cells than this in a "top k" set and a top-k statistic is close to a coin toss (shown, flagged).
MIN_TOPK_CELLS = 5


@dataclass
class AnalysisConfig:
    """What ``rbnas analyze`` computes.

    Attributes:
        ranking: statistics of the ranking table (its ``clean_threshold`` is replaced by the resolved ``min_clean``).
        rank_targets: targets of the ranking table (``None``: every target).
        prediction: models / train sizes / repeats of the prediction curves. The default is a fast budget (random
            forests of 100 trees, as in Lukasik et al. 2023; 2 repeats): minutes matter more than the last 0.005
            of held-out Spearman in a report.
        predict_targets: targets to predict (``None``: clean, PGD or the first attack at 1/255, adv_mean).
        encodings: architecture encodings used as features (``None``: none; ``default``: the store's search
            space's default set, NB201 ``opcount, graf``, NATS-Bench SSS ``channels, width``).
        importance_train_size: training cells of the permutation-importance model.
        search_budget, search_repeats: NAS on the dataset (0 budget: skipped).
        top_k: best cells listed per target.
        min_clean: cells with a lower clean accuracy are left out of the "best" lists (best cells, best proxies)
            and form the second ranking subset; ``None``: 80 % of the best cell's clean accuracy (drops the
            collapsed, chance-level cells and the badly trained ones); ``0``: no filter.
        seed: seed of every random step.
        sections: which parts to run (``ranking``, ``prediction``, ``architecture``, ``search`` and any
            :func:`register_section` name); ``None``: all of them.
        proxies: a proxy table for the ``proxy_study`` section, joined onto the store's cells by uid
            (``"shipped"``: the packaged NB201 CIFAR-10 table; a CSV path; ``None``: no study), see :mod:`.proxy_study`.
    """

    ranking: RankingConfig = field(default_factory=RankingConfig)
    rank_targets: list[str] | None = None
    prediction: PredictionConfig = field(
        default_factory=lambda: PredictionConfig(models=("rf",), repeats=2, n_estimators=100, max_test=2000))
    predict_targets: list[str] | None = None
    encodings: list[str] | None = field(default_factory=lambda: ["default"])
    importance_train_size: int = 1000
    search_budget: int = 300
    search_repeats: int = 10
    top_k: int = 10
    min_clean: float | None = None
    seed: int = 0
    sections: tuple[str, ...] | None = None
    proxies: str | None = None


# ---- names, order and units of targets ---------------------------------------------------------------------------
_ADV = re.compile(r"^(?P<attack>.+)@(?P<eps>[0-9.]+)/255$")


def parse_target(name: str) -> tuple[str, float] | None:
    """``"pgd@Linf@1/255" -> ("pgd@Linf", 1.0)`` (eps in units of 1/255); ``None`` for other targets."""
    m = _ADV.match(name)
    return (m["attack"], float(m["eps"])) if m else None


def sort_targets(names: list[str]) -> list[str]:
    """Targets in reading order: clean, each attack by increasing eps (numeric, not as text), adv_mean,
    corruption_mean, each corruption; attacks keep their first-seen order."""
    attacks: dict[str, int] = {}
    for n in names:
        p = parse_target(n)
        if p:
            attacks.setdefault(p[0], len(attacks))

    def key(n: str) -> tuple:
        p = parse_target(n)
        if n == "clean":
            return (0, 0, 0.0, n)
        if p:
            return (1, attacks[p[0]], p[1], n)
        if n == "adv_mean":
            return (2, 0, 0.0, n)
        if n == "corruption_mean":
            return (3, 0, 0.0, n)
        return (4, 0, 0.0, n)

    return sorted(names, key=key)


def pretty_target(name: str) -> str:
    """A target as a reader says it: ``pgd@Linf@1/255 -> "PGD (Linf) at 1/255"``."""
    p = parse_target(name)
    if p:
        attack, eps = p
        parts = attack.split("@")
        a = parts[0].replace("aa_", "").upper()
        norm = f" ({parts[1]})" if len(parts) > 1 else ""
        return f"{a}{norm} at {eps:g}/255"
    return {"clean": "clean accuracy", "adv_mean": "mean adversarial accuracy",
            "corruption_mean": "mean corruption accuracy"}.get(name, name.replace("corruption:", "corruption "))


def _default_predict_targets(T: pd.DataFrame) -> list[str]:
    out = ["clean"] if "clean" in T else []
    for a in ("pgd@Linf", "fgsm@Linf"):
        if target_name(a, 1 / 255) in T:
            out.append(target_name(a, 1 / 255))
            break
    else:
        adv = [c for c in sort_targets(list(T.columns)) if parse_target(c)]
        out += adv[:1]
    if "adv_mean" in T:
        out.append("adv_mean")
    return out


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


def resolve_min_clean(T: pd.DataFrame, min_clean: float | None) -> float | None:
    """The clean-accuracy filter in use (see :attr:`AnalysisConfig.min_clean`); ``None`` when there is none."""
    if "clean" not in T or T["clean"].notna().sum() == 0:
        return None
    if min_clean is None:
        return round(0.8 * float(T["clean"].max()), 3)
    return None if min_clean <= 0 else float(min_clean)


# ---- the report builder ------------------------------------------------------------------------------------------
@dataclass
class ReportBuilder:
    """What a section adds to the report: its HTML (:meth:`section`), findings for the summary at the top,
    warnings (shown in the section and listed under the findings), and the files it wrote (listed and linked)."""

    out: Path
    warnings: list[tuple[str, str]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (id, title, html)
    files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, what it holds)

    def warn(self, section: str, text: str) -> None:
        if (section, text) not in self.warnings:
            self.warnings.append((section, text))
            log.warning("%s: %s", section, text)

    def warnings_html(self, section: str) -> str:
        items = [t for s, t in self.warnings if s == section]
        return "".join(f'<p class="warn">&#9888; {html.escape(t)}</p>' for t in items)

    def file(self, rel: str, what: str) -> str:
        """Record ``OUT/<rel>`` in the file list; returns a link to it."""
        self.files.append((rel, what))
        return f'<a href="{html.escape(rel)}">{html.escape(rel)}</a>'

    def finding(self, html_text: str) -> None:
        """One bullet of the summary of findings (HTML; keep it to one sentence with its numbers)."""
        self.findings.append(html_text)

    def section(self, sid: str, title: str, body: str) -> None:
        """A numbered section (``sid``: its anchor); the section's warnings are put first."""
        self.sections.append((sid, title, self.warnings_html(sid) + body))

    img = staticmethod(lambda png, caption="": _img(png, caption))
    table = staticmethod(lambda df: _table(df))


@dataclass
class SectionContext:
    """Everything a registered section may use (see :func:`register_section`)."""

    ds: xr.Dataset
    targets: pd.DataFrame
    features: pd.DataFrame
    config: "AnalysisConfig"
    min_clean: float | None
    out: Path
    fig_dir: Path
    report: ReportBuilder
    summary: dict[str, Any]


_EXTRA_SECTIONS: dict[str, Callable[[SectionContext], None]] = {}


def register_section(name: str) -> Callable[[Callable[[SectionContext], None]], Callable[[SectionContext], None]]:
    """Register an extra report section ``fn(ctx)`` run by :func:`run_analysis` after the built-in ones (when
    ``name`` is in ``AnalysisConfig.sections``, which by default holds every registered name). It adds its
    HTML with ``ctx.report.section(...)`` and may add findings, warnings and files.

    Example:
        >>> @register_section("proxy_study")  # doctest: +SKIP
        ... def _study(ctx):
        ...     ctx.report.section("proxy_study", "Proxies on the release", "<p>...</p>")
    """

    def deco(fn: Callable[[SectionContext], None]) -> Callable[[SectionContext], None]:
        _EXTRA_SECTIONS[name] = fn
        return fn

    return deco


def list_sections() -> list[str]:
    """Built-in and registered section names, in report order."""
    return ["ranking", "architecture", "prediction", "search", *_EXTRA_SECTIONS]


def _wanted(cfg: "AnalysisConfig", name: str) -> bool:
    return cfg.sections is None or name in cfg.sections


def _fmt(v: Any, d: int = 3, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"


def _ci(row: pd.Series, stat: str = "spearman") -> str:
    lo, hi = row.get(f"{stat}_lo"), row.get(f"{stat}_hi")
    if lo is None or not np.isfinite(lo):
        return _fmt(row[stat], 2, True)
    return f"{_fmt(row[stat], 2, True)} [{_fmt(lo, 2, True)}, {_fmt(hi, 2, True)}]"


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
    F_all = features_table(ds, encodings=cfg.encodings) if cfg.encodings else F_rank
    F_all = F_all.drop(columns=[c for c in dropped if c in F_all])
    min_clean = resolve_min_clean(T, cfg.min_clean)
    keep = T["clean"] >= min_clean if min_clean is not None else pd.Series(True, index=T.index)
    headline = _default_predict_targets(T) + (["corruption_mean"] if "corruption_mean" in T else [])
    summary: dict[str, Any] = {"cells": len(T), "search_space": store_space(ds), "targets": list(T.columns),
                               "features": list(F_rank.columns),
                               "min_clean": min_clean, "cells_min_clean": int(keep.sum()),
                               "config": _jsonable(asdict(cfg)), "seconds": {}}  # fmt: skip
    if dropped:
        summary["features_dropped_as_duplicates"] = dropped

    steps: list[tuple[str, Callable[[], None]]] = []
    if _wanted(cfg, "ranking") and F_rank.shape[1]:
        steps.append(("ranking", lambda: _ranking(rep, cfg, T, F_rank, min_clean, headline, summary, fig_dir)))
    elif _wanted(cfg, "ranking"):
        rep.warn("ranking", "the store has no proxies, measures or params/FLOPs: no ranking")
    if _wanted(cfg, "architecture"):
        steps.append(("architecture", lambda: _architecture(rep, cfg, ds, T, F_rank, keep, min_clean, headline,
                                                            summary, fig_dir)))  # fmt: skip
    if _wanted(cfg, "prediction"):
        steps.append(("prediction", lambda: _prediction(rep, cfg, T, F_all, summary, fig_dir)))
    if _wanted(cfg, "search") and cfg.search_budget > 0:
        steps.append(("search", lambda: _search(rep, cfg, T, summary, fig_dir)))
    ctx = SectionContext(ds, T, F_all, cfg, min_clean, out, fig_dir, rep, summary)
    for name, fn in _EXTRA_SECTIONS.items():
        if cfg.sections is None or name in cfg.sections:
            steps.append((name, lambda fn=fn: fn(ctx)))
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
    _write_html(out / "report.html", ds, summary, rep, min_clean)
    summary["seconds"]["report"] = round(time.time() - t0, 3)
    return summary


def _ranking(rep: ReportBuilder, cfg: AnalysisConfig, T: pd.DataFrame, F: pd.DataFrame, min_clean: float | None,
             headline: list[str], summary: dict[str, Any], fig_dir: Path) -> None:  # fmt: skip
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
                                                 f"{_fmt(r['spearman_all'], 2, True)})")  # fmt: skip
        small = " &#9888; few cells" if r["n"] < MIN_CELLS_FOR_INTERVALS else ""
        where_txt = f" with clean >= {min_clean:g}" if min_clean is not None else ""
        rep.findings.append(
            f"Best predictor of <b>{html.escape(pretty_target(t))}</b>: <b>{html.escape(r['feature'])}</b>, Spearman "
            f"{_ci(r)} over {int(r['n'])} cells{where_txt if r['subset'] != 'all' else ''}"
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
        png = figs.plot_rank_vs_eps(adv[adv["feature"].isin(top)], fig_dir, "ranking_vs_eps",
                                    title=f"Spearman rho vs eps ({filt} cells; top {len(top)} features)")
        body += _img(png, "How well each feature ranks cells under each attack, as eps grows (band: 95 % interval).")
    cor = R[(R["subset"] == filt) & R["target"].str.startswith("corruption:")]
    if not cor.empty:
        piv = cor.pivot(index="feature", columns="target", values="spearman")
        piv.columns = [c.split(":", 1)[1] for c in piv.columns]
        png = figs.plot_heatmap(piv, fig_dir, "ranking_corruptions", title=f"Spearman rho per corruption ({filt})")
        body += "<h3>Common corruptions</h3>" + _img(png, "Spearman rho of each feature with the accuracy under each "
                                                          "corruption (mean over severities).")  # fmt: skip
    tab = best[["target", "feature", "sign", "spearman", "spearman_lo", "spearman_hi", "kendall", "n",
                "topk_precision", "feature_all", "spearman_all"]].copy()  # fmt: skip
    # trimmed: the headline targets and each attack at 1/255 and 8/255 (every target is in ranking_best.csv)
    shown = tab["target"].map(lambda t: t in headline or (parse_target(t) or ("", -1.0))[1] in (1.0, 8.0))
    if shown.sum() >= 3:
        tab = tab[shown]
    if (tab["n"] < MIN_CELLS_FOR_INTERVALS).any():
        tab.insert(0, "flag", np.where(tab["n"] < MIN_CELLS_FOR_INTERVALS, "few cells", ""))
    body += (f"<h3>Best feature per target ({filt} cells)</h3>" + _table(tab)
             + f"<p>Full table (every feature x target x subset, with Kendall's tau and intervals): "
               f"{rep.file('ranking.csv', 'the full ranking table')} "
               f"({rep.file('ranking.md', 'the same as Markdown')}); "
               f"best per target: {rep.file('ranking_best.csv', 'the best feature per target')}.</p>")  # fmt: skip
    rep.sections.append(("ranking", "Which zero-cost features predict robustness", body))


def _architecture(rep: ReportBuilder, cfg: AnalysisConfig, ds: xr.Dataset, T: pd.DataFrame, F: pd.DataFrame,
                  keep: pd.Series, min_clean: float | None, headline: list[str], summary: dict[str, Any],
                  fig_dir: Path) -> None:  # fmt: skip
    body = ""
    try:
        curves = arch.eps_curves(ds)
        body += ("<h3>Accuracy under attack</h3>"
                 + _img(figs.plot_eps_curves(curves, fig_dir), "Accuracy vs eps per attack: mean over cells, 10-90 % "
                                                                "band and the best cell (eps = 0: clean accuracy)."))
    except ValueError as e:
        log.info("no eps curves: %s", e)
    eff_targets = [t for t in headline if t in T]
    space = summary["search_space"]
    try:
        eff = arch.op_edge_effects(T, eff_targets, space)
    except (KeyError, ValueError) as e:
        eff = pd.DataFrame()
        rep.warn("architecture", f"per-position effects skipped: {e}")
    if not eff.empty and pd.api.types.is_numeric_dtype(eff["op"]):
        # a space whose positions choose a width (NATS-Bench SSS): each target against the width of each layer
        eff = eff.rename(columns={"edge": "position", "edge_label": "layer", "op": "width"})
        eff.to_csv(rep.out / "width_effects.csv", index=False)
        d = eff.assign(target=eff["target"].map(pretty_target), **{"mean over cells": eff["mean"]})
        png = figs.plot_lines(d, "width", "mean over cells", ["layer"], fig_dir, "width_effects", panel="target",
                              title="each target against the width (channels) of each layer")
        body += ("<h3>Which layer's width matters</h3>"
                 + _img(png, "Mean of each target over the cells with that width at that layer.")
                 + f"<p>Data: {rep.file('width_effects.csv', 'target vs width per layer')}.</p>")  # fmt: skip
        key = "adv_mean" if "adv_mean" in eff_targets else eff_targets[-1]
        e = eff[eff["target"] == key]
        slopes = {lay: float(np.polyfit(g["width"], g["mean"], 1)[0]) for lay, g in e.groupby("layer") if len(g) > 1}
        if slopes:
            top = max(slopes, key=lambda k: abs(slopes[k]))
            rep.findings.append(
                f"The width of layer <b>{html.escape(top)}</b> moves <b>{html.escape(pretty_target(key))}</b> most: "
                f"{_fmt(slopes[top] * 8, 3, True)} per 8 channels (slope of the per-width means).")  # fmt: skip
            summary["width_slopes_per_channel"] = {"target": key, **slopes}
        eff = pd.DataFrame()
    if not eff.empty:
        eff.to_csv(rep.out / "op_edge_effects.csv", index=False)
        panels = {pretty_target(t): eff[eff["target"] == t].pivot(index="op", columns="edge_label", values="effect")
                  for t in eff_targets}  # fmt: skip
        png = figs.plot_heatmap_panels(panels, fig_dir, "op_edge_effects")
        body += ("<h3>Which operation on which edge</h3>"
                 + _img(png, "Effect of each operation on each edge (i<-j: node i from node j): the mean of the "
                             "target over the cells with that op there, minus the mean over all cells.")
                 + f"<p>Data: {rep.file('op_edge_effects.csv', 'op-on-edge effects')}.</p>")  # fmt: skip
        key = "adv_mean" if "adv_mean" in eff_targets else eff_targets[-1]
        e = eff[(eff["target"] == key) & (eff["n"] >= MIN_GROUP_CELLS)].sort_values("effect")
        if e.empty:
            rep.warn("architecture", f"no op-on-edge group has {MIN_GROUP_CELLS}+ cells: no finding drawn from "
                                     "the effects (the figure shows them)")  # fmt: skip
        else:
            hi, lo = e.iloc[-1], e.iloc[0]
            rep.findings.append(
                f"What drives <b>{html.escape(pretty_target(key))}</b> in the cell: <b>{hi['op']}</b> on edge "
                f"{html.escape(hi['edge_label'])} raises it most ({_fmt(hi['effect'], 3, True)}, n = {int(hi['n'])}), "
                f"<b>{lo['op']}</b> on edge {html.escape(lo['edge_label'])} lowers it most "
                f"({_fmt(lo['effect'], 3, True)}, "
                f"n = {int(lo['n'])}) (mean over cells with the op, minus the mean over all cells).")  # fmt: skip
            summary["op_edge_extremes"] = {"target": key, "best": hi.to_dict(), "worst": lo.to_dict()}
    key = "adv_mean" if "adv_mean" in T else ("clean" if "clean" in T else T.columns[0])
    if "params" in F:
        by = arch.robustness_by_params(T[keep], F["params"][keep], key)
        if by["n"].sum() < 0.5 * T[key][keep].notna().sum():
            # equal counts are rare (e.g. NATS-Bench SSS): match parameters within 2 % instead
            by = arch.robustness_by_params(T[keep], F["params"][keep], key, rel_width=0.02)
            summary["same_params_rule"] = "within 2 % (log-spaced bins)"
        by = by.rename(columns={"params": "params_M"})
        by.to_csv(rep.out / f"by_params_{_safe(key)}.csv", index=False)
        png = figs.plot_scatter(F["params"], T[key], fig_dir, f"params_vs_{_safe(key)}",
                                color=T["clean"] if "clean" in T else None, xlabel="params (M)", ylabel=key)
        body += "<h3>Same size, different robustness</h3>" + _img(png, f"{pretty_target(key)} vs parameter count "
                                                                       "(colour: clean accuracy).")  # fmt: skip
        by_ok = by[by["n"] >= MIN_GROUP_CELLS]
        if len(by) and by_ok.empty:
            rep.warn("architecture", f"no parameter count is shared by {MIN_GROUP_CELLS}+ cells: no same-size "
                                     "finding")  # fmt: skip
        if len(by_ok):
            widest = by_ok.sort_values(["range", "n"]).iloc[-1]
            summary["same_params_spread"] = {k: (float(v) if k != "target" else v) for k, v in widest.items()}
            rep.findings.append(
                f"Cells of the same size differ widely: at {widest['params_M']:.3f} M parameters "
                f"({int(widest['n'])} cells{', clean >= ' + format(min_clean, 'g') if min_clean is not None else ''}),"
                f" {html.escape(pretty_target(key))} ranges from {widest['min']:.3f} to {widest['max']:.3f}.")
            body += (_table(by.sort_values("n", ascending=False).head(10))
                     + f"<p>All sizes: {rep.file(f'by_params_{_safe(key)}.csv', 'spread per parameter count')}.</p>")
    # best cells: collapsed / badly trained cells filtered (a chance-level "best cell" at 8/255 is no finding)
    Tk = T[keep]
    if len(Tk) < cfg.top_k:
        why = f"have clean accuracy >= {min_clean:g}" if min_clean is not None else "in the store"
        rep.warn("architecture", f"only {len(Tk)} cells {why}: the best-cell lists are shorter than {cfg.top_k}")
    best = arch.best_cells(Tk, eff_targets, cfg.top_k, summary["search_space"])
    if len(best):
        best["clean"] = T.loc[best["arch"], "clean"].to_numpy() if "clean" in T else np.nan
        best["params_M"] = F.loc[best["arch"], "params"].to_numpy() if "params" in F else np.nan
    best.to_csv(rep.out / "best_cells.csv", index=False)
    summary["best"] = {t: float(Tk[t].max()) for t in eff_targets if Tk[t].notna().any()}
    filt_txt = f" among the {len(Tk)} cells with clean accuracy >= {min_clean:g}" if min_clean is not None else ""
    body += (f"<h3>Best cells{filt_txt}</h3>" + _table(best[best["rank"] <= 3] if len(best) else best)
             + f"<p>Top {cfg.top_k} per target: {rep.file('best_cells.csv', 'best cells per target')}.</p>")
    ov_k = max(1, int(np.ceil(0.01 * len(T))))
    if ov_k < MIN_TOPK_CELLS:
        rep.warn("architecture", f"the top 1 % of {len(T)} cells is {ov_k} cell(s): the top-1 % overlap between "
                                 "targets is not shown")  # fmt: skip
    else:
        ov = arch.top_overlap(T, eff_targets, 0.01)
        ov.to_csv(rep.out / "top1pct_overlap.csv")
        body += (f"<p>Overlap of the top 1 % ({ov_k} cells) between targets: "
                 f"{rep.file('top1pct_overlap.csv', 'top-1 % overlap between targets')}.</p>"
                 + _table(ov.reset_index()))
    rep.sections.append(("architecture", "What in the architecture drives robustness",
                         rep.warnings_html("architecture") + body))


def _prediction(rep: ReportBuilder, cfg: AnalysisConfig, T: pd.DataFrame, F: pd.DataFrame, summary: dict[str, Any],
                fig_dir: Path) -> None:  # fmt: skip
    groups: dict[str, list[str]] = {}
    for g, cols in feature_groups(F).items():  # a group with the same columns as an earlier one is a duplicate
        if sorted(cols) not in [sorted(c) for c in groups.values()]:
            groups[g] = cols
    targets = list(cfg.predict_targets or _default_predict_targets(T))
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
    body += rep.warnings_html("prediction") + _img(png, "Held-out Spearman vs number of training cells.")
    tab = multi[["target", "group", "model", "train_size", "spearman_mean", "spearman_std", "r2_mean", "repeats"]]
    body += _table(tab) + (f"<p>Every group (single features included): "
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
        res.table.to_csv(rep.out / f"importance_{_safe(t)}.csv", index=False)
        png = figs.plot_bars(res.table, "feature", "importance_mean", fig_dir, f"importance_{_safe(t)}",
                             err="importance_std", title=f"permutation importance: {t}")  # fmt: skip
        body += (f"<h3>Which features the model uses: {html.escape(pretty_target(t))}</h3>"
                 + _img(png, "Drop in held-out R^2 when one feature is shuffled (top 20).")
                 + f"<p>All features: {rep.file(f'importance_{_safe(t)}.csv', 'permutation importance')}.</p>")
    rep.sections.append(("prediction", "Predicting robustness from a few cells", body))


def _search(rep: ReportBuilder, cfg: AnalysisConfig, T: pd.DataFrame, summary: dict[str, Any], fig_dir: Path) -> None:
    from ..search_spaces import get_search_space

    if not get_search_space(summary["search_space"]).enumerable:  # mutations leave a sampled store's cells
        rep.sections.append(("search", "Searching the dataset", f"<p>Not run: {summary['search_space']} is sampled, "
                             "not enumerated, so a search's mutations mostly reach cells the store does not hold.</p>"))
        return
    objs = _default_predict_targets(T)
    budget = min(cfg.search_budget, len(T))
    if budget < cfg.search_budget:
        rep.warn("search", f"search budget {cfg.search_budget} exceeds the {len(T)} cells: used {budget}")
    C = pd.concat([run_searches(Objective.from_series(T[t], summary["search_space"]), budget=budget, repeats=cfg.search_repeats,
                                seed=cfg.seed) for t in objs], ignore_index=True)  # fmt: skip
    C.to_csv(rep.out / "search_regret.csv", index=False)
    Sg = summarize_regret(C)
    Sg["objective"] = Sg["objective"].map(pretty_target)
    png = figs.plot_lines(Sg, "queries", "mean", ["algorithm"], fig_dir, "search_regret", err="std", nonneg=True,
                          logy=True, panel="objective", title="regret (mean +- std over runs)")  # fmt: skip
    final = Sg[Sg["queries"] == budget]
    summary["search_final_regret"] = final[["objective", "algorithm", "mean", "std"]].to_dict(orient="records")
    body = (f"<p>Random search, local search and regularised evolution with {budget} queries of the tabulated "
            f"targets, {cfg.search_repeats} runs each; regret = best value in the space minus the best found.</p>"
            + rep.warnings_html("search") + _img(png, "Regret vs queries.")
            + _table(final) + f"<p>Curves: {rep.file('search_regret.csv', 'regret curves per run')}.</p>")  # fmt: skip
    rep.sections.append(("search", "Searching the dataset", body))


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
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def _img(png: Path, caption: str = "") -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    stem = html.escape(png.stem)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{stem}"><figcaption>{html.escape(caption)} '
            f'(data: <a href="figures/{stem}.csv">figures/{stem}.csv</a>)</figcaption></figure>')


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-", border=0, classes="t")


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.45;color:#222}"
        "table.t{border-collapse:collapse;font-size:12px;margin:.6em 0}"
        "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "img{max-width:100%}figure{margin:.8em 0}figcaption{font-size:12px;color:#555}"
        ".warn{background:#fff4ce;border-left:4px solid #e0a800;padding:.3em .6em;margin:.4em 0}"
        "#findings{background:#eef5ff;padding:.6em 1.2em;border-radius:6px}nav ol{columns:2}")


def _write_html(path: Path, ds: xr.Dataset, summary: dict[str, Any], rep: ReportBuilder,
                min_clean: float | None) -> None:
    attrs = {k: ds.attrs[k] for k in ("source", "dataset", "imported_from", "created") if k in ds.attrs}
    what = ", ".join(f"{k} {v}" for k, v in attrs.items())
    ncell = summary["cells"]
    findings = "".join(f"<li>{f}</li>" for f in rep.findings) or "<li>No analysis produced a finding.</li>"
    ids = {sid for sid, _, _ in rep.sections}

    def where(sec: str) -> str:
        return f'<a href="#{sec}">{html.escape(sec)}</a>' if sec in ids else html.escape(sec)

    allwarn = "".join(f"<li>{where(s)}: {html.escape(t)}</li>" for s, t in rep.warnings)
    toc = "".join(f'<li><a href="#{sid}">{html.escape(title)}</a></li>' for sid, title, _ in rep.sections)
    toc += '<li><a href="#files">Files</a></li>'
    files = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a>: {html.escape(w)}</li>'
                    for p, w in dict.fromkeys(rep.files))  # fmt: skip
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>robustbench-nas analysis ({ncell} cells)"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>Robustness analysis: {ncell} cells</h1>",
        f"<p>{html.escape(what)}. {len(summary['targets'])} targets, features: "
        f"{html.escape(', '.join(summary['features']) or 'none')}. Accuracies are fractions in [0, 1]; eps in units "
        "of 1/255; parameters and FLOPs in millions."
        + (f" Cells with clean accuracy below {min_clean:g} ({ncell - summary['cells_min_clean']} of {ncell}) are "
           "left out of the best lists (<code>--min-clean</code>)." if min_clean is not None else "") + "</p>",
        f'<section id="findings"><h2>Summary of findings</h2><ul>{findings}</ul>'
        + (f"<p><b>Warnings</b> ({len(rep.warnings)}):</p><ul>{allwarn}</ul>" if rep.warnings else "")
        + "</section>",
        f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>",
    ]
    for i, (sid, title, body) in enumerate(rep.sections, start=1):
        parts.append(f'<section id="{sid}"><h2>{i}. {html.escape(title)}</h2>{body}</section>')
    parts.append(f'<section id="files"><h2>Files</h2><ul>{files}</ul><p>Figures: <code>figures/*.png</code>, each '
                 "with the data behind it as <code>figures/*.csv</code>. Timings (s): "
                 + html.escape(", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items())) + "</p></section>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")


__all__ = [
    "AnalysisConfig", "ReportBuilder", "SectionContext", "list_sections", "parse_target", "pretty_target",
    "register_section", "run_analysis", "sort_targets", "to_markdown",
]


from . import proxy_study as _proxy_study  # noqa: E402,F401  (registers the proxy_study section)
from . import twins as _twins  # noqa: E402,F401  (registers the target_reliability section)

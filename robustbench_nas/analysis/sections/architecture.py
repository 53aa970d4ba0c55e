"""The report section "architecture": what in the architecture drives robustness: accuracy against eps, op-on-edge (or
per-layer width) effects, cells of the same size that differ, the best cells and the overlap of the top cells
between targets. Its body is ``templates/sections/architecture.html.j2``."""

from __future__ import annotations

import html
import logging

import numpy as np
import pandas as pd

from .. import architecture as arch
from .. import figures as figs
from ..report_config import MIN_GROUP_CELLS, MIN_TOPK_CELLS
from ..report_html import figure, fmt, safe_name, table_data
from ..target_names import pretty_target, target_kind
from ..targets import clean_on_same_images
from .registry import SectionContext, register_section

log = logging.getLogger("robustbench_nas.analysis.report")  # the report's logger


@register_section("architecture", order=20)
def architecture_section(ctx: SectionContext) -> None:
    """Add the architecture section to ``ctx.report`` (figures under ``ctx.fig_dir``, tables under ``ctx.out``)."""
    rep, cfg, ds, T, F = ctx.report, ctx.config, ctx.ds, ctx.targets, ctx.rank_features
    keep, min_clean, headline, summary, fig_dir = ctx.keep, ctx.min_clean, ctx.headline, ctx.summary, ctx.fig_dir
    blocks: list[dict] = []  # each: h3, figure, table, text, links (the partial renders them in order)
    try:
        curves = arch.eps_curves(ds)
        blocks.append(_block("Accuracy under attack", figure(
            figs.plot_eps_curves(curves, fig_dir),
            "Accuracy vs eps per attack: mean over cells, 10-90 % band and the best cell (eps = 0: clean accuracy).")))
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
        rep.file("width_effects.csv", "target vs width per layer")
        blocks.append(_block("Which layer's width matters", figure(
            png, "Mean of each target over the cells with that width at that layer."), links=["width_effects.csv"]))
        key = "adv_mean" if "adv_mean" in eff_targets else eff_targets[-1]
        e = eff[eff["target"] == key]
        slopes = {lay: float(np.polyfit(g["width"], g["mean"], 1)[0]) for lay, g in e.groupby("layer") if len(g) > 1}
        if slopes:
            top = max(slopes, key=lambda k: abs(slopes[k]))
            rep.findings.append(
                f"The width of layer <b>{html.escape(top)}</b> moves <b>{html.escape(pretty_target(key))}</b> most: "
                f"{fmt(slopes[top] * 8, 3, True)} per 8 channels (slope of the per-width means).")  # fmt: skip
            summary["width_slopes_per_channel"] = {"target": key, **slopes}
        eff = pd.DataFrame()
    if not eff.empty:
        eff.to_csv(rep.out / "op_edge_effects.csv", index=False)
        panels = {pretty_target(t): eff[eff["target"] == t].pivot(index="op", columns="edge_label", values="effect")
                  for t in eff_targets}  # fmt: skip
        png = figs.plot_heatmap_panels(panels, fig_dir, "op_edge_effects")
        rep.file("op_edge_effects.csv", "op-on-edge effects")
        blocks.append(_block("Which operation on which edge", figure(
            png, "Effect of each operation on each edge (i<-j: node i from node j): the mean of the target over the "
                 "cells with that op there, minus the mean over all cells."), links=["op_edge_effects.csv"]))
        key = "adv_mean" if "adv_mean" in eff_targets else eff_targets[-1]
        e = eff[(eff["target"] == key) & (eff["n"] >= MIN_GROUP_CELLS)].sort_values("effect")
        if e.empty:
            rep.warn("architecture", f"no op-on-edge group has {MIN_GROUP_CELLS}+ cells: no finding drawn from "
                                     "the effects (the figure shows them)")  # fmt: skip
        else:
            hi, lo = e.iloc[-1], e.iloc[0]
            rep.findings.append(
                f"What drives <b>{html.escape(pretty_target(key))}</b> in the cell: <b>{hi['op']}</b> on edge "
                f"{html.escape(hi['edge_label'])} raises it most ({fmt(hi['effect'], 3, True)}, n = {int(hi['n'])}), "
                f"<b>{lo['op']}</b> on edge {html.escape(lo['edge_label'])} lowers it most "
                f"({fmt(lo['effect'], 3, True)}, "
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
        by.to_csv(rep.out / f"by_params_{safe_name(key)}.csv", index=False)
        png = figs.plot_scatter(F["params"], T[key], fig_dir, f"params_vs_{safe_name(key)}",
                                color=T["clean"] if "clean" in T else None, xlabel="params (M)", ylabel=key)
        same = _block("Same size, different robustness",
                      figure(png, f"{pretty_target(key)} vs parameter count (colour: clean accuracy)."))
        blocks.append(same)
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
            rep.file(f"by_params_{safe_name(key)}.csv", "spread per parameter count")
            same.update(table=table_data(by.sort_values("n", ascending=False).head(10)),
                        links=[f"by_params_{safe_name(key)}.csv"])
    # best cells: collapsed / badly trained cells filtered (a chance-level "best cell" at 8/255 is no finding)
    Tk = T[keep]
    if len(Tk) < cfg.top_k:
        why = f"have clean accuracy >= {min_clean:g}" if min_clean is not None else "in the store"
        rep.warn("architecture", f"only {len(Tk)} cells {why}: the best-cell lists are shorter than {cfg.top_k}")
    best = arch.best_cells(Tk, eff_targets, cfg.top_k, summary["search_space"])
    if len(best):
        best["clean"] = T.loc[best["arch"], "clean"].to_numpy() if "clean" in T else np.nan
        # a robust value beside the clean accuracy of its own images (attacks / corruptions use subsets)
        same = clean_on_same_images(ds)
        kinds = best["target"].map(target_kind)
        if any(k in same for k in kinds.dropna()):
            best["clean_same_images"] = [same.at[a, k] if k in same else np.nan for a, k in zip(best["arch"], kinds)]
        best["params_M"] = F.loc[best["arch"], "params"].to_numpy() if "params" in F else np.nan
    best.to_csv(rep.out / "best_cells.csv", index=False)
    summary["best"] = {t: float(Tk[t].max()) for t in eff_targets if Tk[t].notna().any()}
    filt_txt = f" among the {len(Tk)} cells with clean accuracy >= {min_clean:g}" if min_clean is not None else ""
    rep.file("best_cells.csv", "best cells per target")
    blocks.append(_block(f"Best cells{filt_txt}", table=table_data(best[best["rank"] <= 3] if len(best) else best),
                         text=f"Top {cfg.top_k} per target (clean: the whole evaluation split"
                              + ("; clean_same_images: the images the target was measured on, attacks and "
                                 "corruptions using subsets" if "clean_same_images" in best else "") + "):",
                         links=["best_cells.csv"]))
    ov_k = max(1, int(np.ceil(0.01 * len(T))))
    if ov_k < MIN_TOPK_CELLS:
        rep.warn("architecture", f"the top 1 % of {len(T)} cells is {ov_k} cell(s): the top-1 % overlap between "
                                 "targets is not shown")  # fmt: skip
    else:
        ov = arch.top_overlap(T, eff_targets, 0.01)
        ov.to_csv(rep.out / "top1pct_overlap.csv")
        rep.file("top1pct_overlap.csv", "top-1 % overlap between targets")
        blocks.append(_block(None, table=table_data(ov.reset_index()),
                             text=f"Overlap of the top 1 % ({ov_k} cells) between targets:",
                             links=["top1pct_overlap.csv"]))
    rep.render_section("architecture", "What in the architecture drives robustness", blocks=blocks)


def _block(h3: str | None, fig: dict | None = None, *, table: dict | None = None, text: str | None = None,
           links: list[str] | None = None) -> dict:
    """One part of the section for its partial: a heading, a figure, a table, a sentence and links to files."""
    return {"h3": h3, "figure": fig, "table": table, "text": text, "links": links or []}


__all__ = ["architecture_section"]

"""Figures of the analysis (matplotlib, Agg backend). Every figure is saved as ``<name>.png`` next to the data
behind it, ``<name>.csv``, so that it can be re-plotted or checked without rerunning the analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig: plt.Figure, data: pd.DataFrame, out: Path, name: str, index: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    data.to_csv(out / f"{name}.csv", index=index)
    return png


def series_colors(labels: Sequence[str]) -> dict[str, str]:
    """One fixed colour per label, in first-seen order (tab10, then tab20's light shades): the same label has the
    same colour in every panel of a figure, whatever order each panel draws its lines in."""
    palette = [*plt.get_cmap("tab10").colors, *plt.get_cmap("tab20").colors[1::2]]
    names = list(dict.fromkeys(str(x) for x in labels))
    return {n: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, n in enumerate(names)}


def _figure_legend(fig: plt.Figure, axes: Sequence[plt.Axes], colors: dict[str, str], *, fontsize: int = 7) -> None:
    """One legend for the whole figure that lists exactly the labels drawn in any panel, each in its fixed colour.

    The handles are proxies built from the colour map (not the last panel's lines), so a label missing from one
    panel, or drawn in another order there, cannot pick up another label's colour in the legend.
    """
    drawn = {ln.get_label() for ax in axes for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    labels = [n for n in colors if n in drawn]
    if not labels:
        return
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[n], marker="o", ms=3, label=n) for n in labels]
    right = max(ax.get_position().x1 for ax in axes)  # just right of the last panel, in figure coordinates
    fig.legend(handles=handles, labels=labels, fontsize=fontsize, loc="center left",
               bbox_to_anchor=(right + 0.01, 0.5), frameon=False)


def cell_text_color(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (relative luminance, WCAG)."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


def plot_eps_curves(curves: pd.DataFrame, out: Path, name: str = "eps_curves") -> Path:
    """Accuracy vs eps (x in units of 1/255, symlog) per attack: mean line and 10-90 % band across cells."""
    attacks = list(dict.fromkeys(curves["attack"]))
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.6 * len(attacks), 3.2), sharey=True, squeeze=False)
    for ax, a in zip(axes[0], attacks):
        c = curves[(curves["attack"] == a) & (curves["eps_255"] <= 64)].sort_values("eps")
        ax.plot(c["eps_255"], c["mean"], marker="o", ms=3, label="mean")
        if {"q10", "q90"} <= set(c.columns):
            ax.fill_between(c["eps_255"], c["q10"], c["q90"], alpha=0.25, label="10-90 %")
        ax.plot(c["eps_255"], c["max"], ls="--", lw=0.8, label="best cell")
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_title(a)
        ax.set_xlabel("eps (x/255)")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    return _save(fig, curves, out, name)


def plot_scatter(x: pd.Series, y: pd.Series, out: Path, name: str, *, color: pd.Series | None = None,
                 xlabel: str = "", ylabel: str = "", logx: bool = False) -> Path:  # fmt: skip
    """Scatter of ``y`` vs ``x`` (one dot per cell), optionally coloured."""
    data = pd.DataFrame({"x": x, "y": y, **({"color": color} if color is not None else {})}).dropna()
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    sc = ax.scatter(data["x"], data["y"], s=3, alpha=0.5, c=data["color"] if color is not None else None,
                    cmap="viridis")  # fmt: skip
    if color is not None:
        fig.colorbar(sc, ax=ax, label=str(color.name))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or str(x.name))
    ax.set_ylabel(ylabel or str(y.name))
    data.columns = [xlabel or str(x.name), ylabel or str(y.name)] + (["color"] if color is not None else [])
    return _save(fig, data.reset_index(), out, name)


def plot_heatmap(table: pd.DataFrame, out: Path, name: str, *, title: str = "", cmap: str = "RdBu_r",
                 center: float | None = 0.0, fmt: str = "{:.2f}") -> Path:  # fmt: skip
    """Heatmap of a square or rectangular numeric table (rows x columns), values written in the cells."""
    vals = table.to_numpy(np.float64)
    fig, ax = plt.subplots(figsize=(0.6 * vals.shape[1] + 2.5, 0.35 * vals.shape[0] + 1.5))
    vmax = np.nanmax(np.abs(vals)) if center is not None and np.isfinite(vals).any() else None
    im = ax.imshow(vals, cmap=cmap, vmin=-vmax if vmax else None, vmax=vmax, aspect="auto")
    ax.set_xticks(range(vals.shape[1]), [str(c) for c in table.columns], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(vals.shape[0]), [str(r) for r in table.index], fontsize=7)
    if vals.size <= 400:
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i, fmt.format(vals[i, j]), ha="center", va="center", fontsize=8,
                            color=cell_text_color(im.cmap(im.norm(vals[i, j]))))
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    return _save(fig, table, out, name, index=True)


def plot_lines(data: pd.DataFrame, x: str, y: str, hue: Sequence[str], out: Path, name: str, *,
               err: str | None = None, logx: bool = False, logy: bool = False, title: str = "",
               nonneg: bool = False, panel: str | None = None) -> Path:  # fmt: skip
    """One line per combination of the ``hue`` columns, optional error band from column ``err`` (clipped at 0
    when ``nonneg``, e.g. for regret); one panel per value of column ``panel`` (shared y axis) when given."""
    keys = list(dict.fromkeys(data[panel])) if panel else [None]
    width = 5.2 if panel is None else 3.6 * len(keys) + 1.6
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 3.6), sharey=True, squeeze=False)
    hue_label = data[list(hue)].astype(str).agg(" / ".join, axis=1)
    colors = series_colors(hue_label)
    for ax, pk in zip(axes[0], keys):
        d = data if panel is None else data[data[panel] == pk]
        for label, g in d.groupby(d[list(hue)].astype(str).agg(" / ".join, axis=1), sort=False):
            g = g.sort_values(x)
            ax.plot(g[x], g[y], marker="o" if len(g) < 20 else None, ms=3, label=str(label), color=colors[str(label)])
            if err is not None and err in g:
                lo = g[y] - g[err].fillna(0)
                ax.fill_between(g[x], lo.clip(lower=0) if nonneg else lo, g[y] + g[err].fillna(0),
                                color=colors[str(label)], alpha=0.15)
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel(x)
        ax.set_title(str(pk) if panel else title, fontsize=9)
    axes[0][0].set_ylabel(y)
    if panel and title:
        fig.suptitle(title, fontsize=10, y=1.02)
    _figure_legend(fig, axes[0], colors, fontsize=6)
    return _save(fig, data, out, name)


def plot_bars(data: pd.DataFrame, label: str, value: str, out: Path, name: str, *, err: str | None = None,
              title: str = "", top: int = 20) -> Path:  # fmt: skip
    """Horizontal bars of the ``top`` rows by ``value``."""
    d = data.sort_values(value, ascending=False).head(top)[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.25 * len(d) + 1.2))
    ax.barh(d[label].astype(str), d[value], xerr=d[err] if err else None)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_xlabel(value)
    ax.set_title(title, fontsize=9)
    return _save(fig, data, out, name)


def plot_rank_vs_eps(ranking: pd.DataFrame, out: Path, name: str = "ranking_vs_eps", *, title: str = "") -> Path:
    """Spearman's rho (with its interval as a band) against eps, one panel per attack, one line per feature.

    ``ranking`` rows: ``attack``, ``eps_255`` (numeric: the x axis is sorted by value, not by label), ``feature``,
    ``spearman``, ``spearman_lo``, ``spearman_hi``. This replaces one wide features x targets heat map.
    """
    fig = rank_vs_eps_figure(ranking, title=title)
    return _save(fig, ranking, out, name)


def rank_vs_eps_figure(ranking: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """The figure of :func:`plot_rank_vs_eps`, not saved (tests read its artists)."""
    attacks = list(dict.fromkeys(ranking["attack"]))
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(3.4 * max(1, len(attacks)), 3.2), sharey=True,
                             squeeze=False)  # fmt: skip
    colors = series_colors(ranking["feature"])  # one colour per feature in every panel
    for ax, a in zip(axes[0], attacks):
        r = ranking[ranking["attack"] == a]
        for feat, g in r.groupby("feature", sort=False):
            g = g.sort_values("eps_255")
            c = colors[str(feat)]
            ax.plot(g["eps_255"], g["spearman"], marker="o", ms=3, label=str(feat), color=c)
            ax.fill_between(g["eps_255"], g["spearman_lo"], g["spearman_hi"], color=c, alpha=0.15)
        ax.axhline(0, color="#888", lw=0.6)
        ax.set_xscale("log")  # every attack eps is > 0
        ticks = sorted(set(r["eps_255"]))
        if len(ticks) > 7:  # crowded (e.g. FGSM's 1..8 and 255): label the powers of two, and the ends
            ends = (ticks[0], ticks[-1])
            ticks = [t for t in ticks if t in ends or (float(t).is_integer() and int(t) & (int(t) - 1) == 0)]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_title(a, fontsize=9)
        ax.set_xlabel("eps (x/255)")
    axes[0][0].set_ylabel("Spearman rho")
    _figure_legend(fig, axes[0], colors)
    if title:
        fig.suptitle(title, fontsize=10, y=1.03)
    return fig


def plot_heatmap_panels(tables: dict[str, pd.DataFrame], out: Path, name: str, *, title: str = "",
                        fmt: str = "{:+.3f}", cmap: str = "RdBu_r") -> Path:  # fmt: skip
    """Small heat maps side by side with one shared, zero-centred colour scale (e.g. op x edge, one per target)."""
    keys = list(tables)
    vmax = max((np.nanmax(np.abs(t.to_numpy(np.float64))) for t in tables.values() if t.size), default=1.0) or 1.0
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys) + 1, 3.4), squeeze=False)
    im = None
    for ax, k in zip(axes[0], keys):
        t = tables[k]
        vals = t.to_numpy(np.float64)
        im = ax.imshow(vals, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(vals.shape[1]), [str(c) for c in t.columns], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(vals.shape[0]), [str(r) for r in t.index] if ax is axes[0][0] else [""] * len(t.index),
                      fontsize=7)  # fmt: skip
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i, fmt.format(vals[i, j]), ha="center", va="center", fontsize=8,
                            color=cell_text_color(im.cmap(im.norm(vals[i, j]))))
        ax.set_title(k, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    data = pd.concat({k: t for k, t in tables.items()}, names=["panel"])
    return _save(fig, data, out, name, index=True)

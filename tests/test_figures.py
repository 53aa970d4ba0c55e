"""Every figure's legend, colours and labels are right by construction: read back from the figure's own artists."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd

from robustbench_nas.analysis import figures as figs


def _ranking() -> pd.DataFrame:
    # Each panel lists its features in another order (as the report orders them by |rho| per attack), and one
    # feature is missing from the second panel: the old code's legend (taken from the last panel) mislabelled lines.
    rows = []
    values = {("fgsm", "nwot"): [-0.34, -0.30], ("fgsm", "snip"): [0.36, 0.52], ("fgsm", "params"): [0.1, 0.2],
              ("pgd", "snip"): [0.6, 0.5], ("pgd", "params"): [0.3, 0.25]}
    for (attack, feat), rhos in values.items():
        for eps, rho in zip((1.0, 8.0), rhos):
            rows.append(dict(attack=attack, eps_255=eps, feature=feat, spearman=rho, spearman_lo=rho - 0.05,
                             spearman_hi=rho + 0.05))
    df = pd.DataFrame(rows)
    # pgd panel: params first
    return pd.concat([df[df.attack == "fgsm"], df[(df.attack == "pgd") & (df.feature == "params")],
                      df[(df.attack == "pgd") & (df.feature == "snip")]], ignore_index=True)


def test_rank_vs_eps_every_labelled_line_carries_its_features_data() -> None:
    ranking = _ranking()
    fig = figs.rank_vs_eps_figure(ranking)
    colour_of: dict[str, str] = {}
    for ax in fig.axes:
        attack = ax.get_title()
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        drawn = ranking[ranking.attack == attack]
        assert sorted(ln.get_label() for ln in lines) == sorted(drawn.feature.unique())
        for ln in lines:
            want = drawn[drawn.feature == ln.get_label()].sort_values("eps_255")
            np.testing.assert_allclose(ln.get_xdata(), want.eps_255)
            np.testing.assert_allclose(ln.get_ydata(), want.spearman)
            c = mcolors.to_hex(ln.get_color())
            assert colour_of.setdefault(ln.get_label(), c) == c, f"{ln.get_label()} changes colour between panels"
    assert len(set(colour_of.values())) == len(colour_of)  # one colour per feature
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert sorted(texts) == sorted(ranking.feature.unique())  # exactly what is drawn, once each
    for t, h in zip(texts, legend.legend_handles):
        assert mcolors.to_hex(h.get_color()) == colour_of[t], t


def test_plot_lines_panels_share_colours_and_one_legend(tmp_path: Path) -> None:
    d = pd.DataFrame({"panel": ["a"] * 4 + ["b"] * 4, "hue": ["x", "x", "y", "y", "y", "y", "z", "z"],
                      "n": [1, 2] * 4, "v": [0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.3, 0.4]})
    colors = figs.series_colors(d["hue"])
    assert list(colors) == ["x", "y", "z"] and len(set(colors.values())) == 3
    png = figs.plot_lines(d, "n", "v", ["hue"], tmp_path, "lines", panel="panel")
    assert png.is_file() and (tmp_path / "lines.csv").is_file()


def test_heatmap_text_contrasts_with_its_cell() -> None:
    assert figs.cell_text_color((0.05, 0.05, 0.4, 1.0)) == "white"  # dark blue cell
    assert figs.cell_text_color((0.97, 0.97, 0.97, 1.0)) == "black"  # near-white cell

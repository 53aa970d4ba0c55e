"""Architecture vs robustness: accuracy-vs-eps curves, robustness vs parameter count, per-position choice effects
(NB201: op on each edge; NATS-Bench SSS: width of each layer), best cells.

Every function returns a tidy :class:`pandas.DataFrame` (the data behind a figure), computed from the store's
dataset or from the target / feature tables of :mod:`.targets`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..search_spaces import get_search_space
from .targets import _reduce_extra, find_var


def eps_curves(ds: xr.Dataset, quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> pd.DataFrame:
    """Accuracy vs eps per attack, spread across cells.

    Returns:
        ``attack, eps (in [0, 1]), eps_255, n, mean, std, min, max, q<p>`` (one row per evaluated pair; eps = 0 is
        the clean accuracy of the images the attacks used (``adv_clean_accuracy``) when the store has it, else the
        whole split's clean accuracy).
    """
    adv = find_var(ds, "adv")
    if adv is None:
        raise ValueError("the store has no adversarial accuracies")
    adv = _reduce_extra(adv, ("arch", "attack", "eps")).transpose("arch", "attack", "eps")
    # eps = 0 on the attacks' own images where the store has it (a subset's clean accuracy may differ from the
    # whole split's, and the curve would otherwise start at another baseline)
    same = ds["adv_clean_accuracy"] if "adv_clean_accuracy" in ds.variables else None
    clean = same if same is not None and bool(np.isfinite(same.values).any()) else find_var(ds, "clean")
    clean_v = None if clean is None else _reduce_extra(clean, ("arch",)).values.astype(np.float64)
    rows = []
    for a, attack in enumerate(adv["attack"].values):
        series = [(0.0, clean_v)] if clean_v is not None else []
        series += [(float(e), adv.values[:, a, j].astype(np.float64)) for j, e in enumerate(adv["eps"].values)]
        for eps, v in series:
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            row = {"attack": str(attack), "eps": eps, "eps_255": round(eps * 255, 4), "n": int(v.size),
                   "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}
            row.update({f"q{int(q * 100)}": float(np.quantile(v, q)) for q in quantiles})
            rows.append(row)  # fmt: skip
    return pd.DataFrame(rows)


def robustness_by_params(
    targets: pd.DataFrame, params: pd.Series, target: str = "adv_mean", *, min_cells: int = 2,
    rel_width: float | None = None,
) -> pd.DataFrame:
    """Spread of ``target`` among cells with the same parameter count.

    Arguments:
        rel_width: ``None``: cells with exactly equal counts (NB201, where many cells share one). A number: cells
            whose counts lie in the same log-spaced bin of relative width ``rel_width`` (e.g. 0.02 = within 2 %),
            for spaces where equal counts are rare (NATS-Bench SSS); ``params`` is then the bin's geometric centre.

    Returns:
        ``params, n, min, max, range, mean`` per parameter count with at least ``min_cells`` cells, sorted by
        ``params``. (Jung et al. 2023: at equal parameter count, mean adversarial accuracy ranges from 20 % to
        41 %.)
    """
    df = pd.DataFrame({"params": params, "y": targets[target]}).dropna()
    if rel_width is not None:
        if not rel_width > 0:
            raise ValueError(f"rel_width must be positive, got {rel_width}")
        step = np.log1p(rel_width)
        b = np.floor(np.log(df["params"].to_numpy(np.float64)) / step)
        df["params"] = np.exp((b + 0.5) * step)
    g = df.groupby("params")["y"]
    out = g.agg(["size", "min", "max", "mean"]).rename(columns={"size": "n"}).reset_index()
    out["range"] = out["max"] - out["min"]
    out = out[out["n"] >= min_cells].reset_index(drop=True)
    out.insert(0, "target", target)
    return out[["target", "params", "n", "min", "max", "range", "mean"]]


def choice_effects(targets: pd.DataFrame, target_names: Sequence[str], space: str = "nb201") -> pd.DataFrame:
    """Mean of each target over the cells with choice ``c`` at position ``p``, minus the mean over all cells.

    Positions and choices are the space's (:meth:`~robustbench_nas.search_spaces.SearchSpace.layer_labels`,
    ``layer_choices``): NB201's op on each edge, NATS-Bench SSS's width of each layer (then ``mean`` against
    ``choice`` is robustness against width per layer). The cells are the uids (one per isomorphism class), as in
    the published analyses.

    Returns:
        ``target, position (index), position_label ("1<-0" / "C3"), choice, n, mean, effect``.
    """
    sp = get_search_space(space)
    labels = sp.layer_labels()
    choices = sp.layer_choices([int(i) for i in targets.index])
    rows = []
    for t in target_names:
        y = targets[t].to_numpy(np.float64)
        ok = np.isfinite(y)
        base = float(y[ok].mean())
        for p, label in enumerate(labels):
            for c in dict.fromkeys(np.sort(np.unique(choices[:, p])) if choices.dtype != object
                                   else _ordered(choices[:, p], sp)):
                m = ok & (choices[:, p] == c)
                if m.any():
                    rows.append({"target": t, "position": p, "position_label": label,
                                 "choice": c.item() if isinstance(c, np.generic) else c, "n": int(m.sum()),
                                 "mean": float(y[m].mean()), "effect": float(y[m].mean()) - base})  # fmt: skip
    return pd.DataFrame(rows, columns=["target", "position", "position_label", "choice", "n", "mean", "effect"])


def _ordered(values: np.ndarray, sp: object) -> list:
    """Choices in the space's own order when it has one (NB201's ops), else sorted."""
    order = list(getattr(sp, "ops", ()))
    present = set(values.tolist())
    return [o for o in order if o in present] + sorted(present - set(order))


def op_edge_effects(targets: pd.DataFrame, target_names: Sequence[str], space: str = "nb201") -> pd.DataFrame:
    """:func:`choice_effects` with NB201's column names: ``target, edge, edge_label, op, n, mean, effect``."""
    return choice_effects(targets, target_names, space).rename(
        columns={"position": "edge", "position_label": "edge_label", "choice": "op"})


def best_cells(targets: pd.DataFrame, target_names: Sequence[str], k: int = 10, space: str = "nb201") -> pd.DataFrame:
    """The ``k`` best cells per target: ``target, rank, arch, arch_str, value``."""
    space = get_search_space(space)
    rows = []
    for t in target_names:
        s = targets[t].dropna().sort_values(ascending=False, kind="stable").head(k)
        for r, (arch, v) in enumerate(s.items(), start=1):
            rows.append({"target": t, "rank": r, "arch": int(arch), "arch_str": space.arch_str(int(arch)),
                         "value": float(v)})  # fmt: skip
    return pd.DataFrame(rows)


def top_overlap(targets: pd.DataFrame, target_names: Sequence[str], frac: float = 0.01) -> pd.DataFrame:
    """Overlap of the top ``frac`` cells between targets: ``|A & B| / k`` (a square table, 1 on the diagonal)."""
    tops = {}
    for t in target_names:
        s = targets[t].dropna()
        k = max(1, int(np.ceil(frac * len(s))))
        tops[t] = set(s.sort_values(ascending=False, kind="stable").index[:k])
    out = pd.DataFrame(index=list(target_names), columns=list(target_names), dtype=np.float64)
    for a in target_names:
        for b in target_names:
            out.loc[a, b] = len(tops[a] & tops[b]) / max(1, min(len(tops[a]), len(tops[b])))
    out.index.name = "target"
    return out

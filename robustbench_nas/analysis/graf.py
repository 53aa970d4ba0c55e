"""Our predictor against GRAF's, on the same held-out splits (issue 26).

GRAF (Kadlecova et al., ICML 2024) predicts a target with a random forest (scikit-learn defaults, model
``graf_rf``) on its graph features (NB201 encoding ``graf_exact``) plus zero-cost proxies. Here GRAF gets the
features that are free for *every* cell: its 191 graph features plus FLOPs and params (two of its proxies). The
store's other proxies exist only for a few hundred cells, and measures (``measure:*``) need a trained network, so
neither is given to either side.

Both predictors see the same training cells in every repeat (:func:`.prediction.predict_heldout` draws the split
from the seed and the cells alone, and both get the same table), so the difference is paired: its standard error is
the std over repeats of the per-repeat difference over sqrt(repeats).

Ours chooses among :data:`OURS_CANDIDATES` (the :data:`.prediction.AUTO_CANDIDATES` plus the same learners on the
``union`` of our features and GRAF's) by cross-validation inside the training cells only, folds grouped by
functional twin; GRAF's model has no choice to make.

Example:
    >>> res = compare_with_graf(F, T["pgd@Linf@1/255"], train_size=100, repeats=10, seed=1000,
    ...                         twin_keys=keys)  # doctest: +SKIP
    >>> res["diff"]["spearman_mean"], res["diff"]["spearman_se"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .prediction import AUTO_CANDIDATES, GRAF_PREFIX, predict_heldout

#: GRAF's predictor: its model on its view (graph features + params + FLOPs), see :func:`.prediction.feature_views`.
GRAF_CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {"graf": (("graf_rf", "graf"),)}

#: Ours: the automatic candidates, plus extra-trees on our features and GRAF's together (``union``), alone and
#: rank-averaged with the GP on the signal view; the inner CV decides whether GRAF's features help.
OURS_CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {
    **AUTO_CANDIDATES,
    "et:union": (("et", "union"),),
    "et:union+gp:signal": (("et", "union"), ("gp", "signal")),
}

#: Scores paired over repeats.
PAIRED_SCORES: tuple[str, ...] = ("spearman", "spearman_twin_free")


def graf_feature_columns(columns: Sequence[str]) -> list[str]:
    """GRAF's inputs among ``columns``: its graph features and the two free proxies (params, FLOPs).

    Raises:
        ValueError: ``columns`` has no GRAF feature (the table was built without the ``graf_exact`` encoding).
    """
    graf = [c for c in columns if c.startswith(GRAF_PREFIX)]
    if not graf:
        raise ValueError("no GRAF features in the table: build it with the 'graf_exact' encoding "
                         "(features_table(ds, encodings=[..., 'graf_exact']))")  # fmt: skip
    return graf + [c for c in ("params", "flops") if c in columns]


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of ``a - b`` over repeats and its standard error (std with ddof=1 / sqrt(n); NaN with one repeat).

    Repeats where either score is NaN are left out.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(d.mean()), se


def _num(v: object) -> float:
    """A per-repeat score as a float (``None``, as :func:`.prediction.predict_heldout` writes NaN, is NaN)."""
    return float("nan") if v is None else float(v)  # type: ignore[arg-type]


def compare_with_graf(features: pd.DataFrame, target: pd.Series, *, train_size: int, repeats: int = 10,
                      seed: int = 0, twin_keys: pd.Series | None = None, train_select: str = "random",
                      selection: str = "1se", union: bool = True, ours_exclude: Sequence[str] = (),
                      progress: bool = False) -> dict[str, object]:  # fmt: skip
    """Held-out scores of ours and GRAF on the same splits, and their paired difference.

    Arguments:
        features: every zero-cost feature of every cell, including GRAF's (``graf:*``) and ``params`` / ``flops``;
            ``measure:*`` columns are refused (they need a trained network).
        target: the target per cell; cells without one are dropped (from both sides alike).
        union: let ours also choose the learners on our features together with GRAF's (:data:`OURS_CANDIDATES`);
            without it ours never sees GRAF's features.
        ours_exclude: columns ours does not see (an ablation: GRAF keeps its own inputs, so the splits and GRAF's
            scores are those of the full run); unknown names raise ``KeyError``.
        train_size, repeats, seed, twin_keys, train_select, selection: as :func:`.prediction.predict_heldout`.

    Returns:
        ``{"target", "train_size", "repeats", "seed", "ours": {...}, "graf": {...}, "diff": {...}}``; ``ours`` /
        ``graf`` are :func:`.prediction.predict_heldout`'s results, ``diff`` has ``<score>_mean`` and ``<score>_se``
        (ours minus GRAF, paired over repeats) for each of :data:`PAIRED_SCORES` present.
    """
    measures = [c for c in features.columns if c.startswith("measure:")]
    if measures:
        raise ValueError(f"measures need a trained network, not zero-cost features: drop {measures[:3]}...")
    graf_feature_columns(features.columns)  # raises when GRAF's features are missing
    missing = sorted(set(ours_exclude) - set(features.columns))
    if missing:
        raise KeyError(f"ours_exclude names columns the table does not have: {missing[:5]}")
    drop = set(ours_exclude) | ({c for c in features.columns if c.startswith(GRAF_PREFIX)} if not union else set())
    ours_table = features[[c for c in features.columns if c not in drop]]
    if ours_table.shape[1] == 0:
        raise ValueError("ours_exclude leaves ours no feature")
    common = dict(train_size=train_size, repeats=repeats, seed=seed, model="auto", train_select=train_select,
                  selection=selection, twin_keys=twin_keys, progress=progress)  # fmt: skip
    ours = predict_heldout(ours_table, target, candidates=OURS_CANDIDATES if union else AUTO_CANDIDATES, **common)
    graf = predict_heldout(features, target, candidates=GRAF_CANDIDATES, **common)
    if ours["n_test"] != graf["n_test"]:  # same cells, same seed: the splits must agree
        raise RuntimeError(f"ours and GRAF were scored on different splits ({ours['n_test']} vs {graf['n_test']})")
    diff: dict[str, float] = {}
    for k in PAIRED_SCORES:
        if not any(k in row for row in ours["per_repeat"]):  # type: ignore[union-attr]
            continue  # e.g. no twin keys: no twin-free score
        # a repeat whose Spearman is undefined (a constant target on the held-out cells, or a constant prediction
        # from a constant training target: APGD-CE at 8/255 is 0 for nearly every cell) is NaN, left out of the pair
        a = [_num(row.get(k)) for row in ours["per_repeat"]]  # type: ignore[union-attr]
        b = [_num(row.get(k)) for row in graf["per_repeat"]]  # type: ignore[union-attr]
        diff[f"{k}_mean"], diff[f"{k}_se"] = paired_difference(a, b)
    return {"target": str(target.name), "train_size": int(train_size), "repeats": int(repeats), "seed": int(seed),
            "ours_excluded": len(set(ours_exclude)), "ours": ours, "graf": graf, "diff": diff}  # fmt: skip


__all__ = ["GRAF_CANDIDATES", "OURS_CANDIDATES", "compare_with_graf", "graf_feature_columns", "paired_difference"]

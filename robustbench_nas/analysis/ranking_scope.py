"""The one cell set and the one filter on which the report ranks every feature (:func:`ranking_scope`).

The report's summary compares costs, cell encodings, zero-cost proxies and measures against each target. A
comparison is only fair when every feature is scored on the same cells with the same clean-accuracy filter: a
proxy computed for 500 of 6466 cells and ranked there cannot be set beside params ranked over all 6466 (the
500 may be easier or harder to order). So:

* the **cell set** is the cells on which every feature has a value (all cells when every feature is complete;
  the proxy table's cells when proxies exist only for some);
* the **filter** is one clean-accuracy cut (``--min-clean``), applied inside that cell set;
* when the cell set is smaller than the store, the **free** features (those with a value on every cell: costs and
  encodings, usually) are also ranked on all cells with the same filter, and shown beside: what the extra cells
  say about them.

A feature with no value on any cell is left out (it would empty the cell set) and named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Feature kinds in the order the report lists them.
KINDS: tuple[str, ...] = ("cost", "encoding", "proxy", "measure")


def feature_kind(name: str) -> str:
    """``cost`` (``params``, ``flops``, ``flops_plain``), ``proxy`` (``proxy:*``), ``measure`` (``measure:*``) or
    ``encoding`` (every other column of :func:`.targets.features_table`)."""
    if name in ("params", "flops", "flops_plain"):
        return "cost"
    if name.startswith("proxy:"):
        return "proxy"
    if name.startswith("measure:"):
        return "measure"
    return "encoding"


@dataclass(frozen=True)
class RankingScope:
    """Where the report ranks features.

    Attributes:
        cells: the cells (``arch``) on which every ranked feature has a value.
        n_store: cells in the store.
        features: the ranked features (every column with a value somewhere).
        free: the features with a value on every cell of the store.
        partial: ``{feature: cells without a value}`` for the features missing on some cells.
        empty: features without a value on any cell (not ranked).
        min_clean: the clean-accuracy filter (accuracy in [0, 1]; ``None``: no filter).
        n_filtered: cells of ``cells`` that pass the filter (those with a clean accuracy >= ``min_clean``).
        n_store_filtered: cells of the store that pass the filter.
    """

    cells: pd.Index
    n_store: int
    features: list[str]
    free: list[str]
    partial: dict[str, int] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    min_clean: float | None = None
    n_filtered: int = 0
    n_store_filtered: int = 0

    @property
    def complete(self) -> bool:
        """Whether the cell set is every cell of the store (no feature is missing anywhere)."""
        return len(self.cells) == self.n_store

    def kinds(self) -> dict[str, int]:
        """Number of ranked features per kind (:data:`KINDS` order, kinds with none left out)."""
        counts = pd.Series([feature_kind(f) for f in self.features]).value_counts()
        return {k: int(counts[k]) for k in KINDS if k in counts}

    def filter_label(self) -> str:
        """The filter in words (``clean >= 0.72``, or ``no filter``)."""
        return f"clean >= {self.min_clean:g}" if self.min_clean is not None else "no filter"

    def as_dict(self) -> dict[str, object]:
        """The scope as plain JSON-ready values (``summary.json``'s ``ranking_scope``)."""
        return {"cells": len(self.cells), "cells_in_store": self.n_store, "filter": self.filter_label(),
                "min_clean": self.min_clean, "cells_filtered": self.n_filtered,
                "cells_in_store_filtered": self.n_store_filtered, "features": len(self.features),
                "feature_kinds": self.kinds(), "free_features": len(self.free), "partial_features": self.partial,
                "empty_features": self.empty}  # fmt: skip


def ranking_scope(features: pd.DataFrame, targets: pd.DataFrame, min_clean: float | None) -> RankingScope:
    """The cell set and filter of the report's one ranking (see the module docstring).

    Arguments:
        features: ``(cells, F)`` indexed by ``arch``; NaN where a feature has no value for a cell.
        targets: ``(cells, T)`` indexed by ``arch`` (the store's cells; ``clean`` for the filter).
        min_clean: the clean-accuracy filter (in [0, 1]; ``None``: none).

    Example:
        >>> F = pd.DataFrame({"params": [1.0, 2, 3, 4], "proxy:x": [1.0, None, 2, 3]}, index=[0, 1, 2, 3])
        >>> T = pd.DataFrame({"clean": [0.9, 0.9, 0.5, 0.9]}, index=[0, 1, 2, 3])
        >>> s = ranking_scope(F, T, 0.8)
        >>> list(s.cells), s.free, s.partial, s.n_filtered, s.n_store_filtered
        ([0, 2, 3], ['params'], {'proxy:x': 1}, 2, 3)
    """
    F = features.reindex(targets.index)
    have = np.isfinite(F.to_numpy(np.float64))
    empty = [c for c, any_ in zip(F.columns, have.any(axis=0)) if not any_]
    keep = [c for c in F.columns if c not in empty]
    have = have[:, [i for i, c in enumerate(F.columns) if c not in empty]]
    covered = have.all(axis=1) if keep else np.ones(len(F), dtype=bool)
    missing = (~have).sum(axis=0)
    free = [c for c, m in zip(keep, missing) if m == 0]
    partial = {c: int(m) for c, m in zip(keep, missing) if m > 0}
    if min_clean is not None and "clean" in targets:
        passes = (targets["clean"] >= min_clean).to_numpy()
    else:
        passes = np.ones(len(targets), dtype=bool)
    return RankingScope(cells=targets.index[covered], n_store=len(targets), features=keep, free=free,
                        partial=partial, empty=empty, min_clean=min_clean,
                        n_filtered=int((covered & passes).sum()), n_store_filtered=int(passes.sum()))  # fmt: skip


def describe_scope(scope: RankingScope) -> str:
    """One paragraph (plain text) stating the cell set, the filter and the features of the one ranking."""
    plural = {"proxy": "proxies"}
    kinds = ", ".join(f"{n} {plural.get(k, k + 's') if n != 1 else k}" for k, n in scope.kinds().items())
    filt = (f"filtered to clean accuracy >= {scope.min_clean:g} ({scope.n_filtered} cells)"
            if scope.min_clean is not None else "no clean-accuracy filter")  # fmt: skip
    if scope.complete:
        text = (f"One ranking: all {len(scope.features)} features ({kinds}) are ranked on the same "
                f"{len(scope.cells)} cells (every cell of the store), {filt}.")  # fmt: skip
    else:
        worst = sorted(scope.partial.items(), key=lambda kv: -kv[1])[:3]
        why = "; ".join(f"{f} is missing on {m}" for f, m in worst)
        text = (f"One ranking: all {len(scope.features)} features ({kinds}) are ranked on the same "
                f"{len(scope.cells)} of the store's {scope.n_store} cells, those with every feature ({why}), "
                f"{filt}. Beside each, the best of the {len(scope.free)} free features (a value on every cell) "
                f"on all {scope.n_store} cells with the same filter ({scope.n_store_filtered} cells).")  # fmt: skip
    if scope.empty:
        text += f" Not ranked (no value on any cell): {', '.join(scope.empty)}."
    return text


__all__ = ["KINDS", "RankingScope", "describe_scope", "feature_kind", "ranking_scope"]

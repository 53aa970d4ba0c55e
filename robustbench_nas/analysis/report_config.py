"""What ``rbnas analyze`` computes (:class:`AnalysisConfig`) and the cell counts below which a statistic is flagged."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .predict_protocol import PredictProtocol
from .ranking import RankingConfig

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
        prediction: the held-out protocol of the prediction section: model, training sizes, repeats, seed, training
            cell choice and selection rule, with ``rbnas predict``'s defaults (:class:`.predict_protocol.PredictProtocol`),
            so each number equals ``rbnas predict``'s for the command the report names beside it.
        predict_targets: targets to predict (``None``: clean, PGD or the first attack at 1/255, adv_mean).
        encodings: architecture encodings the prediction section predicts from (``None``: none; ``all``: every
            encoding of the store's space, the default of ``rbnas predict`` too; ``default``: the space's default
            set, NB201 ``opcount, graf``, NATS-Bench SSS ``channels, width``).
        rank_encodings: architecture encodings the one ranking ranks beside costs, proxies and measures (same
            names; default ``default``). Not ``all``: every column is a ranked feature with bootstrap intervals over
            each target, and ``all`` is 466 columns on NB201 (one-hot and path indicators that a forest uses together
            but that say little one by one): with them the release report did not finish in 22 minutes.
        importance_train_size: training cells of the permutation-importance model.
        importance_trees: trees of its random forest.
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
    # rbnas predict's defaults, train size 100 included: 1000 training cells under model auto (inner CV of three
    # 300-tree ensembles and a GP per repeat) cost most of an hour of CPU on the release, so they are asked for
    prediction: PredictProtocol = field(default_factory=PredictProtocol)
    predict_targets: list[str] | None = None
    encodings: list[str] | None = field(default_factory=lambda: ["all"])
    rank_encodings: list[str] | None = field(default_factory=lambda: ["default"])
    importance_train_size: int = 1000
    importance_trees: int = 100
    search_budget: int = 300
    search_repeats: int = 10
    top_k: int = 10
    min_clean: float | None = None
    seed: int = 0
    sections: tuple[str, ...] | None = None
    proxies: str | None = None


def resolve_min_clean(T: pd.DataFrame, min_clean: float | None) -> float | None:
    """The clean-accuracy filter in use (see :attr:`AnalysisConfig.min_clean`); ``None`` when there is none."""
    if "clean" not in T or T["clean"].notna().sum() == 0:
        return None
    if min_clean is None:
        return round(0.8 * float(T["clean"].max()), 3)
    return None if min_clean <= 0 else float(min_clean)


__all__ = ["MIN_CELLS_FOR_INTERVALS", "MIN_GROUP_CELLS", "MIN_TOPK_CELLS", "AnalysisConfig", "resolve_min_clean"]

"""Analysis of robustness datasets: import of the published Jung 2023 data, proxy ranking, prediction, architecture
vs robustness, search on the dataset, figures and an HTML report.

Command line::

    rbnas import jung2023 ../shared/data/jung2023 --store runs/jung2023_cifar10.zarr
    rbnas analyze runs/jung2023_cifar10.zarr --out runs/analysis

Python::

    from robustbench_nas.analysis import load_store, targets_table, features_table, rank_features
    ds = load_store("runs/tiny.zarr")                  # any store: a pipeline run or an imported release
    T = targets_table(ds)                              # cells x targets (clean, <attack>@<eps>/255, adv_mean, ...)
    F = features_table(ds, encodings=["graf"])         # proxies, measures, params/FLOPs, cell encodings
    R = rank_features(F, T)                            # Spearman / Kendall with bootstrap CIs, top-10 % precision

Modules: ``jung2023`` (release reader), ``importer`` (release -> store), ``targets`` (tidy tables), ``stats``
(rank statistics), ``ranking``, ``encodings`` (one-hot, op counts, paths, GRAF-style features, exact params/FLOPs),
``prediction`` (random forest / gradient boosting, train-size curves, permutation importance), ``architecture``,
``search`` (random, local, regularised evolution; regret), ``bananas`` (BANANAS, the predictor-guided search),
``figures``, ``report`` (``run_analysis``).
"""

from . import bananas as _bananas  # noqa: F401  (registers the search "bananas")
from .encodings import arch_costs, encode, list_encodings, register_encoding
from .importer import import_jung2023
from .jung2023 import ReleaseFormatError, ReleaseReport, read_meta, read_release
from .prediction import (
    PredictionConfig,
    feature_groups,
    feature_importance,
    kfold_scores,
    list_models,
    register_model,
    summarize_curve,
    train_size_curve,
)
from .ranking import RankingConfig, rank_features, to_markdown, write_ranking
from .report import AnalysisConfig, run_analysis
from .search import Objective, list_searches, register_search, run_searches, summarize_regret
from .stats import Correlation, correlation_ci, kendall, spearman, topk_precision
from .targets import features_table, load_store, target_name, targets_table

__all__ = [
    "AnalysisConfig", "Correlation", "Objective", "PredictionConfig", "RankingConfig", "ReleaseFormatError",
    "ReleaseReport", "arch_costs", "correlation_ci", "encode", "feature_groups", "feature_importance",
    "features_table", "import_jung2023", "kendall", "kfold_scores", "list_encodings", "list_models",
    "list_searches", "load_store", "rank_features", "read_meta", "read_release", "register_encoding",
    "register_model", "register_search", "run_analysis", "run_searches", "spearman", "summarize_curve",
    "summarize_regret", "target_name", "targets_table", "to_markdown", "topk_precision", "train_size_curve",
    "write_ranking",
]

"""Predicting robustness targets from zero-cost features: train-size curves, k-fold, permutation importance.

Feature groups follow issue 8: (a) each single proxy / measure, (b) all proxies and measures, (c) the cell
encodings (one-hot, op counts, paths, GRAF-style graph features, params/FLOPs), (d) everything. Models are
scikit-learn regressors registered by name (``rf``, ``gbm``, ``et``, ``ridge``). Every split is seeded: the same
seed gives the same cells, the same fits and the same scores.

Scores on the held-out cells: R^2 and Spearman's rho (and Kendall's tau-b) between predicted and true target.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..search_spaces import get_search_space, list_search_spaces
from ..utils.registry import Registry
from .predict_protocol import PredictProtocol  # noqa: F401  (re-exported: the protocol of predict_heldout)
from .stats import kendall, spearman

#: regressor factories ``factory(seed) -> regressor`` by name
MODELS: Registry[Callable[[int], RegressorMixin]] = Registry("prediction model")


def register_model(name: str) -> Callable[[Callable[[int], RegressorMixin]], Callable[[int], RegressorMixin]]:
    """Register ``factory(seed) -> regressor`` under ``name``; a name already taken raises ``ValueError``."""
    return MODELS.register(name)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names (sorted), filtered by a shell-style ``pattern`` (``"rf*"``)."""
    return MODELS.list(pattern, sort=True)


def make_model(name: str, seed: int, *, n_estimators: int | None = None) -> RegressorMixin:
    """A fresh regressor ``name`` seeded with ``seed``; ``n_estimators`` overrides the number of trees / boosting
    rounds of ensemble models (a faster budget, e.g. for ``rbnas analyze``; ignored by the others)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {list_models()}")
    model = MODELS.get(name)(seed)
    if n_estimators is not None:
        params = model.get_params()
        key = "n_estimators" if "n_estimators" in params else "max_iter" if "max_iter" in params else None
        if key is not None:
            model.set_params(**{key: int(n_estimators)})
    return model


@register_model("rf")
def _rf(seed: int) -> RegressorMixin:
    # 300 trees: the held-out Spearman is stable to ~0.005 beyond that; one job (CPU is shared)
    return RandomForestRegressor(n_estimators=300, max_features=1.0, random_state=seed, n_jobs=1)


@register_model("et")
def _et(seed: int) -> RegressorMixin:
    # 30 % of the features per split: on the published PGD@1/255 target with all cell encodings this is as good as
    # the best model we tried (held-out Spearman 0.866 at 1000 cells) and 2-3x faster than all features
    return ExtraTreesRegressor(n_estimators=300, max_features=0.3, random_state=seed, n_jobs=1)


@register_model("gbm")
def _gbm(seed: int) -> RegressorMixin:
    return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed)


@register_model("ridge")
def _ridge(seed: int) -> RegressorMixin:
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


@register_model("rf3")
def _rf3(seed: int) -> RegressorMixin:
    # 30 % of the features per split: better than all features with few training cells (rbnas predict's default)
    return RandomForestRegressor(n_estimators=300, max_features=0.3, random_state=seed, n_jobs=1)


@register_model("graf_rf")
def _graf_rf(seed: int) -> RegressorMixin:
    # GRAF's predictor (gabikadlecova/GRAF scripts/train_and_eval.py): RandomForestRegressor() with scikit-learn's
    # defaults (100 trees, every feature per split); only the seed and one job are ours
    return RandomForestRegressor(random_state=seed, n_jobs=1)


@register_model("gp")
def _gp(seed: int) -> RegressorMixin:
    # RBF + white noise on standardised features, hyper-parameters by marginal likelihood on the training cells:
    # on the published PGD@1/255 target with op counts + GRAF features the most stable model at 100 cells
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0) * RBF(5.0) + WhiteKernel(0.1)
    return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed))


@dataclass
class PredictionConfig:
    """Settings of :func:`train_size_curve`.

    Attributes:
        models: registered model names.
        train_sizes: numbers of training cells; every other cell with a finite target is held out.
        repeats: random splits per train size (seeds ``seed, seed+1, ...``).
        seed: base seed of splits and models.
        max_test: score on at most this many held-out cells (a seeded subset; ``None``: all).
        n_estimators: trees / boosting rounds of the ensemble models (``None``: each model's default).
    """

    models: tuple[str, ...] = ("rf", "gbm")
    train_sizes: tuple[int, ...] = (100, 1000)
    repeats: int = 3
    seed: int = 0
    max_test: int | None = None
    n_estimators: int | None = None


def feature_groups(
    features: pd.DataFrame, *, singles: bool = True, encoding_prefixes: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """The feature groups (a)-(d) of issue 8 present in ``features``.

    Proxy / measure columns are those named ``proxy:*`` / ``measure:*`` (and ``params``, ``flops``, two of the 13
    standard proxies); every other column is an encoding.

    Returns:
        ``{"single:<feature>": [feature], ..., "proxies": [...], "encodings": [...], "all": [...]}`` (groups that
        would be empty are left out).
    """
    cols = list(features.columns)
    prox = [c for c in cols if c.startswith(("proxy:", "measure:")) or c in ("params", "flops")]
    enc = [c for c in cols if c not in prox]
    if encoding_prefixes is not None:
        enc = [c for c in enc if c.startswith(tuple(encoding_prefixes))]
    groups: dict[str, list[str]] = {}
    if singles:
        for c in prox:
            groups[f"single:{c}"] = [c]
    if prox:
        groups["proxies"] = prox
    if enc:
        groups["encodings"] = enc + [c for c in ("params", "flops") if c in prox]
    if prox and enc:
        groups["all"] = prox + enc
    return groups


def random_splits(n: int, train_size: int, repeats: int, seed: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(repeat, train_idx, test_idx)`` of seeded random splits of ``range(n)``."""
    if not 0 < train_size < n:
        raise ValueError(f"train size {train_size} must be between 1 and {n - 1} (cells with a finite target)")
    for r in range(repeats):
        perm = np.random.default_rng(seed + r).permutation(n)
        yield r, np.sort(perm[:train_size]), np.sort(perm[train_size:])


def representative_splits(features: np.ndarray, train_size: int, repeats: int,
                          seed: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:  # fmt: skip
    """``(repeat, train_idx, test_idx)``: training cells chosen to represent all cells, from features alone.

    Per repeat, k-means with ``k = train_size`` (one seeded initialisation, ``random_state = seed + repeat``) on the
    standardised ``features`` of every cell (labelled or not: no target is read), and the cell nearest each centroid
    is a training cell; every other cell is held out. This is how one would choose which ``train_size`` cells to
    evaluate when the rest is to be predicted (a design of experiments over the unlabeled cells), not a random
    sample: report it as such.

    Shape:
        features: ``(n_cells, n_features)``, finite.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances

    n = len(features)
    if not 0 < train_size < n:
        raise ValueError(f"train size {train_size} must be between 1 and {n - 1} (cells with a finite target)")
    Z = StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))
    for r in range(repeats):
        km = KMeans(n_clusters=train_size, n_init=1, random_state=seed + r).fit(Z)
        chosen = []
        for k in range(train_size):
            members = np.flatnonzero(km.labels_ == k)
            if members.size:
                chosen.append(members[np.argmin(((Z[members] - km.cluster_centers_[k]) ** 2).sum(1))])
        tr = np.unique(np.asarray(chosen, dtype=int))
        if tr.size < train_size:  # empty clusters (many identical feature rows): top up with the farthest cells
            rest = np.setdiff1d(np.arange(n), tr)
            far = pairwise_distances(Z[rest], Z[tr]).min(axis=1)
            tr = np.sort(np.concatenate([tr, rest[np.argsort(-far, kind="stable")[: train_size - tr.size]]]))
        yield r, tr, np.setdiff1d(np.arange(n), tr)


def variance_reduction_design(features: np.ndarray, train_size: int, *, noise: float = 0.1, seed: int = 0,
                              max_entries: int = 50_000_000) -> np.ndarray:  # fmt: skip
    """The ``train_size`` cells whose labels would most reduce a Gaussian process's total predictive variance over
    all cells, chosen greedily from features alone (transductive experimental design: Yu, Bi & Tresp, ICML 2006;
    Seo et al., IJCNN 2000, for the GP form).

    The GP: RBF kernel of unit variance on the standardised ``features``, squared lengthscale the median squared
    distance between cells (the median heuristic), observation noise ``noise`` (relative to the kernel variance).
    Step by step the cell ``x`` maximising ``sum_j cov(j, x)^2 / (var(x) + noise)`` (the drop of the summed
    posterior variance over the reference cells ``j`` if ``x`` were observed) is taken and the posterior updated, as
    a GP would be after seeing its label: no target is read. Deterministic; the reference cells are all cells, or a
    ``seed``-ed subset when ``n_cells^2`` exceeds ``max_entries`` (memory ``8 * n_cells * n_ref`` bytes).

    Shape:
        features: ``(n_cells, n_features)``, finite. Returns the sorted training positions, ``(train_size,)``.
    """
    from scipy.linalg.blas import dger

    Z = StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))
    n = len(Z)
    if not 0 < train_size < n:
        raise ValueError(f"train size {train_size} must be between 1 and {n - 1} (cells with a finite target)")
    m = min(n, max(1, max_entries // n))
    ref = np.arange(n) if m == n else np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    sq = (Z**2).sum(1)

    def sqdist(rows: np.ndarray | slice, cols: np.ndarray) -> np.ndarray:
        return np.maximum(sq[rows][:, None] + sq[cols][None, :] - 2.0 * Z[rows] @ Z[cols].T, 0.0)

    C = sqdist(slice(None), ref)  # (n, m): squared distances, then the posterior covariance in place
    off = np.ones(C.shape, dtype=bool)
    off[ref, np.arange(m)] = False  # a cell's distance to itself is no pair
    ell2 = float(np.median(C[off][::97])) or 1.0  # every 97th pair: the median to <1e-3, 100x less sorting
    del off
    np.exp(C / (-2.0 * ell2), out=C)
    var = np.ones(n)
    gain = np.einsum("ij,ij->i", C, C)  # sum_j cov(x, j)^2, kept up to date below (no n x m temporaries)
    chosen: list[int] = []
    factors: list[np.ndarray] = []  # one column per chosen cell: posterior cov = prior - sum_f f f^T
    Ct = C.T  # Fortran-ordered view, so BLAS updates C in place
    for _ in range(train_size):
        score = gain / (var + noise)
        score[chosen] = -np.inf
        x = int(np.argmax(score))
        chosen.append(x)
        col = np.exp(sqdist(np.array([x]), np.arange(n))[0] / (-2.0 * ell2))  # prior cov of every cell with x
        for f in factors:  # minus what the cells chosen before explain: the posterior cov with x
            col -= f * f[x]
        col /= np.sqrt(var[x] + noise)
        cr = col[ref]
        # C' = C - col cr^T, so sum_j C'(x, j)^2 = gain - 2 col (C cr) + col^2 |cr|^2
        gain += col * (col * float(cr @ cr) - 2.0 * (C @ cr))
        Ct = dger(-1.0, cr, col, a=Ct, overwrite_a=True)
        var -= col**2
        factors.append(col)
    return np.sort(np.asarray(chosen, dtype=np.int64))


def variance_splits(features: np.ndarray, train_size: int, repeats: int,
                    seed: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:  # fmt: skip
    """``(repeat, train_idx, test_idx)`` with the training cells of :func:`variance_reduction_design` (the same
    cells in every repeat: the design is deterministic, so repeats differ in the models' seeds only)."""
    tr = variance_reduction_design(features, train_size, seed=seed)
    te = np.setdiff1d(np.arange(len(features)), tr)
    for r in range(repeats):
        yield r, tr, te


#: How :func:`predict_heldout` chooses the training cells: ``random`` (the default: seeded random cells),
#: ``kmeans`` (:func:`representative_splits`) or ``variance`` (:func:`variance_splits`), both on the ``signal``
#: feature view.
TRAIN_SELECTIONS: tuple[str, ...] = ("random", "kmeans", "variance")


def kfold_splits(n: int, k: int, seed: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(fold, train_idx, test_idx)`` of a seeded k-fold partition of ``range(n)``."""
    if not 2 <= k <= n:
        raise ValueError(f"k must be in 2..{n}, got {k}")
    perm = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(perm, k)
    for f in range(k):
        test = np.sort(folds[f])
        train = np.sort(np.concatenate([folds[g] for g in range(k) if g != f]))
        yield f, train, test


def _score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "spearman": spearman(y_pred, y_true),
        "kendall": kendall(y_pred, y_true),
    }


def _xy(features: pd.DataFrame, target: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    common = features.index.intersection(target.index)
    y = target.loc[common].to_numpy(np.float64)
    ok = np.isfinite(y)
    X = features.loc[common[ok]]
    return X, y[ok]


def train_size_curve(
    features: pd.DataFrame,
    target: pd.Series,
    groups: dict[str, list[str]],
    config: PredictionConfig | None = None,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """Held-out scores of every (group, model, train size, repeat).

    Arguments:
        features: ``(cells, F)`` indexed by ``arch``; NaN features are filled with the training median.
        target: one value per cell (``arch`` index); cells with NaN are dropped.
        groups: name -> feature columns (see :func:`feature_groups`).
        config: models, sizes, repeats, seed.

    Returns:
        Long table with ``group``, ``model``, ``train_size``, ``repeat``, ``n_test``, ``r2``, ``spearman``,
        ``kendall``, ``target``.

    Example:
        >>> curve = train_size_curve(F, T["pgd@Linf@1/255"], {"graf": graf_cols})  # doctest: +SKIP
        >>> curve.groupby(["group", "model", "train_size"]).spearman.mean()  # doctest: +SKIP
    """
    cfg = config or PredictionConfig()
    X, y = _xy(features, target)
    rows = []
    jobs = [(g, m, s) for g in groups for m in cfg.models for s in cfg.train_sizes]
    for gname, mname, size in tqdm(jobs, desc=f"predict {target.name}", disable=not progress):
        Xg = X[groups[gname]].to_numpy(np.float64)
        for r, tr, te in random_splits(len(y), size, cfg.repeats, cfg.seed):
            if cfg.max_test is not None and te.size > cfg.max_test:
                te = np.sort(np.random.default_rng(cfg.seed + 10_000 + r).choice(te, cfg.max_test, replace=False))
            Xtr, Xte = _impute(Xg[tr], Xg[te])
            model = make_model(mname, cfg.seed + r, n_estimators=cfg.n_estimators).fit(Xtr, y[tr])
            s = _score(y[te], model.predict(Xte))
            rows.append({"target": target.name, "group": gname, "model": mname, "train_size": size, "repeat": r,
                         "n_test": int(te.size), **s})  # fmt: skip
    return pd.DataFrame(rows)


def kfold_scores(
    features: pd.DataFrame, target: pd.Series, groups: dict[str, list[str]], *, models: Sequence[str] = ("rf",),
    k: int = 5, seed: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """k-fold cross-validated held-out scores of every (group, model, fold); columns as :func:`train_size_curve`."""
    X, y = _xy(features, target)
    rows = []
    for gname, cols in groups.items():
        Xg = X[cols].to_numpy(np.float64)
        for mname in models:
            for f, tr, te in kfold_splits(len(y), k, seed):
                Xtr, Xte = _impute(Xg[tr], Xg[te])
                model = make_model(mname, seed + f).fit(Xtr, y[tr])
                rows.append({"target": target.name, "group": gname, "model": mname, "train_size": int(tr.size),
                             "repeat": f, "n_test": int(te.size), **_score(y[te], model.predict(Xte))})  # fmt: skip
    return pd.DataFrame(rows)


def _impute(Xtr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN with the training column median (0 when the column is all NaN): a proxy can fail on a cell."""
    if not (np.isnan(Xtr).any() or np.isnan(Xte).any()):
        return Xtr, Xte
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(np.isnan(Xtr).all(axis=0), 0.0, Xtr), axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    return np.where(np.isnan(Xtr), med, Xtr), np.where(np.isnan(Xte), med, Xte)


def summarize_curve(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over repeats of every (target, group, model, train size)."""
    g = curve.groupby(["target", "group", "model", "train_size"], sort=False)
    out = g[["r2", "spearman", "kendall"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["repeats"] = g.size()
    return out.reset_index()


@dataclass
class ImportanceResult:
    """Permutation importance of the features of one fitted model on held-out cells."""

    table: pd.DataFrame
    score: dict[str, float] = field(default_factory=dict)


def feature_importance(
    features: pd.DataFrame, target: pd.Series, columns: Sequence[str], *, model: str = "rf",
    train_size: int = 1000, n_repeats: int = 5, seed: int = 0, max_test: int | None = 2000,
    n_estimators: int | None = None,
) -> ImportanceResult:  # fmt: skip
    """Permutation importance (drop in held-out R^2 when a feature is shuffled) of ``columns`` for ``target``.

    Returns:
        :class:`ImportanceResult` with a table (``feature``, ``importance_mean``, ``importance_std``, sorted
        descending) and the held-out scores of the fitted model.
    """
    X, y = _xy(features, target)
    Xg = X[list(columns)].to_numpy(np.float64)
    _, tr, te = next(random_splits(len(y), min(train_size, len(y) - 1), 1, seed))
    if max_test is not None and te.size > max_test:
        te = np.sort(np.random.default_rng(seed + 10_000).choice(te, max_test, replace=False))
    Xtr, Xte = _impute(Xg[tr], Xg[te])
    m = make_model(model, seed, n_estimators=n_estimators).fit(Xtr, y[tr])
    pi = permutation_importance(m, Xte, y[te], n_repeats=n_repeats, random_state=seed, scoring="r2", n_jobs=1)
    table = pd.DataFrame(
        {"feature": list(columns), "importance_mean": pi.importances_mean, "importance_std": pi.importances_std}
    ).sort_values("importance_mean", ascending=False, ignore_index=True)
    table.insert(0, "target", target.name)
    return ImportanceResult(table=table, score=_score(y[te], m.predict(Xte)))


# ---- rbnas predict: one target, held-out cells, model chosen by cross-validation inside the training cells --------
#: Candidates of ``model="auto"``: name -> ((model, feature view), ...); several members are rank-averaged.
#: Views (:func:`feature_views`): ``signal`` = the route and propagation features of the cell (``route_*``,
#: ``prop_*``: per-path conv counts, effective depth, the mean-field perturbation-to-signal ratios) and its costs;
#: ``compact`` = every feature but the one-hot and path encodings (op counts, GRAF, route, propagation, costs,
#: proxies); ``all``. On PGD@1/255 of the published release (seeded splits, held-out Spearman,
#: docs/results/predictor_experiments.json) extra-trees on the signal view is the best single model at 100 cells
#: (0.770 vs 0.692 for a forest on op counts + GRAF + costs) and on the compact view at 1000 (0.886 vs 0.866 for
#: extra-trees on every former encoding); their rank average with a GP is the steadiest. Which one a run uses is
#: chosen by inner cross-validation only (``select_model``).
AUTO_CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {
    "et": (("et", "compact"),),
    "et:signal": (("et", "signal"),),
    "gp:signal": (("gp", "signal"),),
    "rf3": (("rf3", "compact"),),
    "et:signal+gp:signal": (("et", "signal"), ("gp", "signal")),
    "et+et:signal+gp:signal": (("et", "compact"), ("et", "signal"), ("gp", "signal")),
    "et+gp:signal": (("et", "compact"), ("gp", "signal")),
}

@functools.lru_cache(maxsize=None)
def _view_columns(spaces: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The (sparse, signal) encoding columns the search spaces declare (``SearchSpace.sparse_encodings`` and
    ``signal_encodings``): each space knows its own encodings' columns, so no column name is matched here."""
    sparse: set[str] = set()
    signal: set[str] = set()
    for name in spaces:
        space = get_search_space(name)
        sparse.update(space.encoding_columns(space.sparse_encodings))
        signal.update(space.encoding_columns(space.signal_encodings))
    return frozenset(sparse), frozenset(signal)


#: Column prefix of GRAF's exact features (the NB201 ``graf_exact`` encoding), see :func:`feature_views`.
GRAF_PREFIX: str = "graf:"


def feature_views(columns: Sequence[str], spaces: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Column positions of each feature view (see :data:`AUTO_CANDIDATES`).

    ``compact`` leaves out the sparse encodings' columns, ``signal`` keeps the signal encodings' columns and the
    costs, as the search spaces ``spaces`` (default: every registered one) declare them. A view that would be
    empty (a store without these encodings, another search space) falls back to ``compact``, and ``compact`` to
    ``all``, so every candidate is defined on every table.
    """
    cols = list(columns)
    sparse_cols, signal_cols = _view_columns(tuple(sorted(spaces if spaces is not None else list_search_spaces())))
    # GRAF's exact features (graf_exact) are the baseline's: kept out of our views, so that adding them to a table
    # changes ours only through the ``union`` view (compact + GRAF), a candidate the inner CV may pick
    graf = [c.startswith(GRAF_PREFIX) for c in cols]
    compact = [i for i, c in enumerate(cols) if not (c in sparse_cols or graf[i])]
    compact_idx = np.array(compact or range(len(cols)), dtype=int)
    signal = [i for i, c in enumerate(cols) if c in signal_cols or c in ("params", "flops")]
    has_signal = any(c in signal_cols for c in cols)
    union = [i for i, c in enumerate(cols) if c not in sparse_cols]
    graf_view = [i for i, c in enumerate(cols) if graf[i] or c in ("params", "flops")]
    return {"all": np.arange(len(cols)), "compact": compact_idx,
            "signal": np.array(signal, dtype=int) if has_signal else compact_idx,
            "union": np.array(union, dtype=int) if any(graf) else compact_idx,
            "graf": np.array(graf_view, dtype=int) if any(graf) else compact_idx}  # fmt: skip


def _rank(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v) / len(v)


def _combine(preds: Sequence[np.ndarray]) -> np.ndarray:
    """One prediction as it is; several: the mean of their ranks (an ensemble predicting an order)."""
    return preds[0] if len(preds) == 1 else np.mean([_rank(p) for p in preds], axis=0)


def _fit_predict(members: Sequence[tuple[str, str]], views: dict[str, np.ndarray], Xtr: np.ndarray, ytr: np.ndarray,
                 Xte: np.ndarray, seed: int) -> np.ndarray:  # fmt: skip
    return _combine([make_model(m, seed).fit(Xtr[:, views[v]], ytr).predict(Xte[:, views[v]]) for m, v in members])


#: Selection rules of :func:`select_model`.
SELECTION_RULES: tuple[str, ...] = ("1se", "best")


def select_model(X: np.ndarray, y: np.ndarray, candidates: dict[str, tuple[tuple[str, str], ...]],
                 views: dict[str, np.ndarray] | None = None, *, folds: int = 5, seed: int = 0,
                 rule: str = "1se", groups: np.ndarray | None = None) -> tuple[str, dict[str, float]]:  # fmt: skip
    """A candidate chosen by ``folds``-fold CV (mean Spearman) on (``X``, ``y``): the training cells only.

    ``rule="best"``: the best CV mean. ``rule="1se"`` (default): the one-standard-error rule (Breiman et al. 1984;
    Hastie et al., ESL 7.10) in its averaging form: among the candidates whose CV mean is within one standard error
    (over folds) of the best, the one that averages the most models (ties: the better mean). With 100 cells the
    fold scores are noisy (SE ~0.03) and the best mean is often a lucky single model; the rule prefers the
    steadier rank average when the data cannot tell them apart.

    ``groups`` (one label per row, e.g. the functional key): rows of a group stay in one fold (:func:`group_folds`),
    so a candidate is never scored on a cell whose functional twin it was fitted on.
    """
    from sklearn.model_selection import KFold

    if rule not in SELECTION_RULES:  # before the fits
        raise KeyError(f"unknown selection rule {rule!r}; known: {', '.join(SELECTION_RULES)}")
    views = views or {v: np.arange(X.shape[1]) for v in ("all", "compact", "signal", "union", "graf")}
    cv: dict[str, list[float]] = {k: [] for k in candidates}
    members = sorted({mv for ms in candidates.values() for mv in ms})
    if groups is None:
        fold_iter = list(KFold(min(folds, len(y)), shuffle=True, random_state=seed).split(X))
    else:
        fold_iter = group_folds(groups, folds, seed)
    for tr, te in fold_iter:
        single = {(m, v): make_model(m, seed).fit(X[tr][:, views[v]], y[tr]).predict(X[te][:, views[v]])
                  for m, v in members}  # fmt: skip
        for name, ms in candidates.items():
            cv[name].append(spearman(_combine([single[mv] for mv in ms]), y[te]))
    return choose_candidate(cv, {n: len(ms) for n, ms in candidates.items()}, rule), _cv_means(cv)


def group_folds(groups: Sequence[object], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` positions of a seeded k-fold partition that keeps every group in one fold.

    Groups are shuffled (``seed``) and dealt to the folds largest first, each to the fold with the fewest rows so
    far, so fold sizes stay even when a few groups are large. ``None`` / NaN labels are groups of one row. Folds that
    would be empty (fewer groups than ``folds``) are dropped.
    """
    labels = [g if isinstance(g, str) else f"\0row{i}" for i, g in enumerate(groups)]
    uniq, inv = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    sizes = np.bincount(inv)
    order = np.random.default_rng(seed).permutation(len(uniq))
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, ties in shuffled order
    k = max(2, min(folds, len(uniq)))
    load = np.zeros(k, dtype=int)
    fold_of = np.empty(len(uniq), dtype=int)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    row_fold = fold_of[inv]
    n = np.arange(len(labels))
    return [(n[row_fold != f], n[row_fold == f]) for f in range(k) if (row_fold == f).any() and (row_fold != f).any()]


def _cv_means(cv: dict[str, Sequence[float]]) -> dict[str, float]:
    """Mean fold score per candidate, NaN folds left out; -2 (below any Spearman) when every fold is NaN."""
    return {n: float(np.nan_to_num(np.nanmean(np.asarray(v, dtype=np.float64)), nan=-2.0)) for n, v in cv.items()}


def choose_candidate(cv: dict[str, Sequence[float]], n_members: dict[str, int], rule: str = "1se") -> str:
    """The choice of :func:`select_model` from per-fold CV scores (``cv``: name -> one score per fold, NaN allowed).

    ``best``: the best mean (ties: fewer members). ``1se``: among the candidates whose mean is at least the best
    mean minus the standard error of the best's fold scores (std with ddof=1 over sqrt(folds)), the one with the
    most members (ties: the better mean).
    """
    if rule not in SELECTION_RULES:
        raise KeyError(f"unknown selection rule {rule!r}; known: {', '.join(SELECTION_RULES)}")
    means = _cv_means(cv)
    best = max(means, key=lambda n: (means[n], -n_members[n]))
    if rule == "best":
        return best
    scores = np.asarray(cv[best], dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    se = float(np.std(scores, ddof=1) / np.sqrt(scores.size)) if scores.size > 1 else 0.0
    near = [n for n in cv if means[n] >= means[best] - se]
    return max(near, key=lambda n: (n_members[n], means[n]))


#: Fewest held-out cells an inner-CV fold of ``model="auto"`` needs to score a candidate: a Spearman over fewer
#: than 5 cells takes a handful of values (4 cells: 24 orderings; its standard error is about 0.5), so the folds
#: cannot order the candidates and the choice would be noise. Below ``folds * MIN_CV_FOLD_CELLS`` training cells
#: (25 with the default 5 folds) :func:`predict_heldout` skips the inner CV (see :func:`auto_without_cv`).
MIN_CV_FOLD_CELLS: int = 5


def auto_without_cv(candidates: dict[str, tuple[tuple[str, str], ...]]) -> str:
    """The candidate ``model="auto"`` takes without inner CV (too few training cells, see
    :data:`MIN_CV_FOLD_CELLS`): the one averaging the most models (ties: the first), which is what the ``1se`` rule
    picks when the folds cannot tell the candidates apart (every mean within one standard error of the best).

    Example:
        >>> auto_without_cv({"a": (("et", "all"),), "b": (("et", "all"), ("gp", "all")), "c": (("rf", "all"),)})
        'b'
    """
    return max(candidates, key=lambda n: len(candidates[n]))  # max keeps the first of equal ones


def predict_heldout(features: pd.DataFrame, target: pd.Series, *, train_size: int, repeats: int = 5,
                    seed: int = 0, model: str = "auto", folds: int = 5, train_select: str = "random",
                    selection: str = "1se", twin_keys: pd.Series | None = None, progress: bool = False,
                    candidates: dict[str, tuple[tuple[str, str], ...]] | None = None) -> dict[str, object]:  # fmt: skip
    """Train on ``train_size`` cells (random or chosen), score on every other cell with a target; mean of repeats.

    Each cell is one isomorphism class (the store's ``arch`` = uid), so held-out cells are held-out uids. With
    ``model="auto"`` the model (:data:`AUTO_CANDIDATES`) is chosen per repeat by ``folds``-fold cross-validation
    inside the training cells (each candidate on its feature view, see :data:`AUTO_CANDIDATES`; ``selection``: the
    rule of :func:`select_model`); the held-out cells are never used for a choice. With fewer than
    ``folds * MIN_CV_FOLD_CELLS`` training cells (25) the folds are too small to choose by and ``auto`` takes
    :func:`auto_without_cv`'s candidate (the widest rank average) without inner CV. A named ``model`` uses every
    feature. ``train_select`` (:data:`TRAIN_SELECTIONS`): ``random`` training cells, ``kmeans``: the cells that
    represent all of them in the ``signal`` view (:func:`representative_splits`), or ``variance``: the cells that
    most reduce a GP's predictive variance over all of them (:func:`variance_splits`); both designs are chosen from
    features only, before any target is read. ``twin_keys`` (each cell's functional key, indexed like ``features``, see
    :func:`.twins.functional_keys`): also score on the held-out cells none of whose functional twins is a
    training cell (a twin is another measurement of the same function, so a held-out twin is not quite unseen); the
    inner CV's folds then keep twins together. ``candidates``: those of ``model="auto"`` (default
    :data:`AUTO_CANDIDATES`).

    Returns:
        ``spearman_mean``, ``spearman_std``, ``kendall_mean``, ``kendall_std``, ``r2_mean``, ``r2_std``,
        ``train_size``, ``n_test``, ``repeats``, ``models`` (chosen per repeat), ``features`` (count), ``target``;
        with ``twin_keys`` also ``spearman_twin_free_mean`` / ``_std``, ``kendall_twin_free_mean`` and
        ``n_test_twin_free`` (mean over repeats).
    """
    X_df, y = _xy(features, target)
    X = X_df.to_numpy(np.float64)
    views = feature_views(X_df.columns)
    keys = None if twin_keys is None else twin_keys.reindex(X_df.index).to_numpy(object)
    if model != "auto" and model not in MODELS:
        raise KeyError(f"unknown model {model!r}; known: auto, {', '.join(list_models())}")
    if train_select == "random":
        splits = list(random_splits(len(y), train_size, repeats, seed))
    elif train_select in ("kmeans", "variance"):
        Xs = X[:, views["signal"]]
        design = representative_splits if train_select == "kmeans" else variance_splits
        splits = list(design(np.where(np.isfinite(Xs), Xs, np.nanmedian(Xs, axis=0)), train_size, repeats, seed))
    else:
        raise KeyError(f"unknown train selection {train_select!r}; known: {', '.join(TRAIN_SELECTIONS)}")
    scores: list[dict[str, float]] = []
    chosen: list[str] = []
    n_test = 0
    with warnings.catch_warnings():  # GP noise level at its bound on some splits: harmless, and noisy on stderr
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, tr, te in tqdm(splits, desc=f"predict {target.name}", disable=not progress):
            Xtr, Xte = _impute(X[tr], X[te])
            cands = candidates or AUTO_CANDIDATES
            if model == "auto" and len(cands) == 1:  # nothing to choose: no inner CV
                name, members = next(iter(cands.items()))
            elif model == "auto" and len(tr) < folds * MIN_CV_FOLD_CELLS:  # folds too small to choose by
                name = auto_without_cv(cands)
                members = cands[name]
            elif model == "auto":
                name, _cv = select_model(Xtr, y[tr], cands, views, folds=folds, seed=seed + r, rule=selection,
                                         groups=None if keys is None else keys[tr])
                members = cands[name]
            else:
                name, members = model, ((model, "all"),)
            chosen.append(name)
            pred = _fit_predict(members, views, Xtr, y[tr], Xte, seed + r)
            sc = _score(y[te], pred)
            if len(members) > 1:
                sc["r2"] = float("nan")  # an ensemble of ranks predicts an order, not accuracies
            if keys is not None:
                seen = {k for k in keys[tr] if isinstance(k, str)}
                free = np.array([not (isinstance(k, str) and k in seen) for k in keys[te]])
                sc.update(spearman_twin_free=spearman(pred[free], y[te][free]),
                          kendall_twin_free=kendall(pred[free], y[te][free]), n_test_twin_free=float(free.sum()))
            scores.append(sc)
            n_test = int(te.size)
    df = pd.DataFrame(scores)
    out: dict[str, object] = {"target": str(target.name)}
    for k in ("spearman", "kendall", "r2"):
        out[f"{k}_mean"] = float(df[k].mean())
        out[f"{k}_std"] = float(df[k].std(ddof=1)) if len(df) > 1 else 0.0
        if k == "r2" and df[k].isna().any():
            out["r2_mean"] = out["r2_std"] = float("nan")
    if keys is not None:
        out["spearman_twin_free_mean"] = float(df["spearman_twin_free"].mean())
        out["spearman_twin_free_std"] = float(df["spearman_twin_free"].std(ddof=1)) if len(df) > 1 else 0.0
        out["kendall_twin_free_mean"] = float(df["kendall_twin_free"].mean())
        out["n_test_twin_free"] = float(df["n_test_twin_free"].mean())
    out.update({"train_size": int(train_size), "n_test": n_test, "repeats": int(repeats), "models": chosen,
                "train_select": train_select, "selection": selection if model == "auto" else None,
                "features": int(X.shape[1]),
                "per_repeat": [{k: (None if v != v else v) for k, v in row.items()} for row in df.to_dict("records")]})
    return out

"""Rank statistics used by the analysis: Spearman / Kendall with bootstrap intervals, top-k precision.

Correlations come from :mod:`scipy.stats`. Intervals are paired percentile bootstraps over cells with a seeded
generator (same seed, same interval): Kendall through :func:`scipy.stats.bootstrap`; Spearman through
:func:`spearman_resamples`, which ranks each resample from counts instead of sorting it (checked equal to
``scipy.stats.spearmanr`` on every resample in the tests; ``benchmarks/bench_analysis.py`` times it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st


@dataclass(frozen=True)
class Correlation:
    """A correlation with its bootstrap interval.

    Attributes:
        value: the statistic on all (non-NaN) pairs.
        low, high: bounds of the ``confidence`` percentile bootstrap interval (NaN when not computed).
        n: number of pairs used.
    """

    value: float
    low: float
    high: float
    n: int


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _spearman_axis(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis`` (average ranks for ties), vectorised over the other axes."""
    rx = st.rankdata(x, axis=axis)
    ry = st.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=axis) / np.where(den > 0, den, 1.0), np.nan)


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(st.kendalltau(x, y).statistic)  # tau-b: the ties in accuracies (e.g. collapsed cells) count


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of the finite pairs (NaN when either side is constant)."""
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(st.spearmanr(x, y).statistic)


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of the finite pairs (NaN when either side is constant)."""
    x, y = _finite_pairs(x, y)
    if x.size < 3:
        return float("nan")
    return _kendall(x, y)


def correlation_ci(
    x: np.ndarray,
    y: np.ndarray,
    method: str = "spearman",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Correlation of ``x`` and ``y`` with a paired percentile bootstrap interval over cells.

    Arguments:
        x, y: one value per cell, shape ``(n,)``; pairs with a NaN are dropped.
        method: ``"spearman"`` or ``"kendall"`` (tau-b).
        n_resamples: bootstrap resamples (0 skips the interval: ``low = high = NaN``).
        confidence: level of the two-sided interval.
        seed: seed of the resampling generator.

    Example:
        >>> r = correlation_ci(np.arange(50.0), np.arange(50.0) ** 2, n_resamples=200)
        >>> round(r.value, 6), r.low, r.high
        (1.0, 1.0, 1.0)
    """
    if method not in ("spearman", "kendall"):
        raise ValueError(f"unknown correlation {method!r}; use 'spearman' or 'kendall'")
    x, y = _finite_pairs(x, y)
    n = int(x.size)
    value = spearman(x, y) if method == "spearman" else kendall(x, y)
    if n_resamples <= 0 or n < 3 or not math.isfinite(value):
        return Correlation(value, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    if method == "spearman":
        boot = np.concatenate([spearman_resamples(x, y, idx) for idx in bootstrap_indices(n, n_resamples, rng)])
        lo, hi = np.nanpercentile(boot, [100 * alpha, 100 * (1 - alpha)])
        return Correlation(value, float(lo), float(hi), n)

    def stat(a: np.ndarray, b: np.ndarray) -> float:
        return _kendall(a, b)

    res = st.bootstrap(
        (x, y),
        stat,
        paired=True,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=rng,
    )
    lo, hi = res.confidence_interval
    return Correlation(value, float(lo), float(hi), n)


def bootstrap_indices(n: int, n_resamples: int, rng: np.random.Generator, batch: int = 200):
    """Yield index matrices ``(b, n)`` of resamples with replacement, ``n_resamples`` rows in all."""
    done = 0
    while done < n_resamples:
        b = min(batch, n_resamples - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def spearman_resamples(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman's rho of every resample ``(x[idx[b]], y[idx[b]])`` without sorting each resample.

    A resample is a multiset of the original cells: with ``c_i`` copies of cell ``i``, the (average, 1-based) rank
    of a value is the number of drawn values below it plus (copies of it + 1) / 2. Counting per distinct value
    (ties in the original data included) gives every rank in O(n) per resample instead of O(n log n), and rho is
    the count-weighted Pearson correlation of the ranks (their mean is (n + 1) / 2).

    Arguments:
        x, y: finite values, shape ``(n,)``.
        idx: resample indices, shape ``(B, n)``.

    Returns:
        rho per resample, shape ``(B,)`` (NaN where a resample is constant on either side).
    """
    B, n = idx.shape
    rows = np.arange(B)[:, None]
    C = np.bincount((idx + rows * n).ravel(), minlength=B * n).reshape(B, n).astype(np.float64)

    def centred_ranks(v: np.ndarray) -> np.ndarray:
        _, g = np.unique(v, return_inverse=True)
        G = int(g.max()) + 1
        Cg = np.bincount((g[None, :] + rows * G).ravel(), weights=C.ravel(), minlength=B * G).reshape(B, G)
        rank_g = np.cumsum(Cg, axis=1) - Cg + (Cg + 1) / 2
        return rank_g[:, g] - (n + 1) / 2

    rx, ry = centred_ranks(x), centred_ranks(y)
    num = (C * rx * ry).sum(axis=1)
    den = np.sqrt((C * rx * rx).sum(axis=1) * (C * ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def topk_precision(score: np.ndarray, target: np.ndarray, frac: float = 0.1) -> float:
    """Fraction of the true top ``frac`` of cells (by ``target``) found in the top ``frac`` by ``score``.

    ``k = ceil(frac * n)`` over the finite pairs; higher is better on both sides; ties are broken by the
    order of the cells (stable sort), so the result is deterministic.

    Example:
        >>> topk_precision(np.array([4, 3, 2, 1.0]), np.array([4, 1, 2, 3.0]), frac=0.5)
        0.5
    """
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    s, t = _finite_pairs(score, target)
    if s.size == 0:
        return float("nan")
    k = max(1, math.ceil(frac * s.size))
    top_s = np.argsort(-s, kind="stable")[:k]
    top_t = np.argsort(-t, kind="stable")[:k]
    return len(np.intersect1d(top_s, top_t)) / k


def spearman_matrix_ci(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_bytes: int = 96 * 2**20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spearman's rho and its percentile bootstrap interval for every column pair of ``X`` and ``Y`` at once.

    The same numbers as :func:`correlation_ci` (``method="spearman"``, the same ``seed``) on each pair: the resample
    indices come from the same generator in the same batches, so every pair sees the same resamples it would see
    alone. The work is shared: the resample counts are drawn once, every column is ranked once per resample (the
    count trick of :func:`spearman_resamples`), and the weighted rank products of all pairs are one batched matrix
    product per chunk of resamples.

    Arguments:
        X: ``(n, F)`` finite values (e.g. the features), n cells.
        Y: ``(n, T)`` finite values (e.g. the targets).
        n_resamples: bootstrap resamples (0: no interval, NaN bounds).
        confidence: level of the two-sided interval.
        seed: seed of the resampling generator.
        max_bytes: memory bound of one chunk of ranked resamples.

    Returns:
        ``(rho, low, high)``, each ``(F, T)``; NaN where a column is constant.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must be (n, F) and (n, T) with the same n, got {X.shape} and {Y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("spearman_matrix_ci needs finite values (drop the NaN cells first)")
    n, nf = X.shape
    nt = Y.shape[1]
    rho = _spearman_axis(X[:, :, None], Y[:, None, :], axis=0) if n >= 3 else np.full((nf, nt), np.nan)
    lo = np.full((nf, nt), np.nan)
    hi = np.full((nf, nt), np.nan)
    if n_resamples <= 0 or n < 3 or nf == 0 or nt == 0:
        return rho, lo, hi
    V = np.concatenate([X, Y], axis=1)
    groups = [np.unique(V[:, k], return_inverse=True)[1].ravel() for k in range(V.shape[1])]
    rng = np.random.default_rng(seed)
    boot = np.empty((n_resamples, nf, nt))
    step = max(1, int(max_bytes // (8 * n * (V.shape[1] + 1))))
    done = 0
    for idx in bootstrap_indices(n, n_resamples, rng):
        for s0 in range(0, idx.shape[0], step):
            sub = idx[s0:s0 + step]
            b = sub.shape[0]
            rows = np.arange(b)[:, None]
            C = np.bincount((sub + rows * n).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
            R = np.empty((V.shape[1], b, n))
            for k, g in enumerate(groups):  # centred average ranks of every resample, from counts
                G = int(g.max()) + 1
                Cg = np.bincount((g[None, :] + rows * G).ravel(), weights=C.ravel(), minlength=b * G).reshape(b, G)
                R[k] = (np.cumsum(Cg, axis=1) - Cg + (Cg + 1) / 2)[:, g] - (n + 1) / 2
            var = np.einsum("bn,kbn->kb", C, R * R)
            W = (C[None] * R[:nf]).transpose(1, 0, 2)  # (b, F, n)
            num = np.matmul(W, R[nf:].transpose(1, 2, 0))  # (b, F, T)
            den = np.sqrt(var[:nf].T[:, :, None] * var[nf:].T[:, None, :])
            with np.errstate(invalid="ignore", divide="ignore"):
                boot[done:done + b] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
            done += b
    alpha = (1 - confidence) / 2
    ok = np.isfinite(rho)
    if ok.any():
        with np.errstate(all="ignore"):
            q = np.nanpercentile(boot[:, ok], [100 * alpha, 100 * (1 - alpha)], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return rho, lo, hi


def fisher_z_interval(value: float, n: int, method: str = "kendall", confidence: float = 0.95) -> tuple[float, float]:
    """Approximate interval of a rank correlation from Fisher's z with the variances of Fieller, Hartley & Pearson
    (1957): ``0.437 / (n - 4)`` for Kendall's tau, ``1.06 / (n - 3)`` for Spearman's rho (bivariate-normal
    approximations; used for Kendall on thousands of cells, where a bootstrap of tau-b costs minutes).

    Example:
        >>> lo, hi = fisher_z_interval(0.5, 1000)
        >>> round(lo, 3), round(hi, 3)
        (0.469, 0.53)
    """
    var = {"kendall": 0.437 / (n - 4), "spearman": 1.06 / (n - 3)}[method] if n > 4 else float("nan")
    if not (math.isfinite(value) and math.isfinite(var)) or abs(value) >= 1:
        return (value, value) if abs(value) == 1 else (float("nan"), float("nan"))
    z = math.atanh(value)
    h = float(st.norm.ppf(0.5 + confidence / 2)) * math.sqrt(var)
    return math.tanh(z - h), math.tanh(z + h)

"""Rank statistics checked against hand-computed values, scipy, and bootstrap coverage on a known population."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from robustbench_nas.analysis.stats import _spearman_axis, correlation_ci, kendall, spearman, topk_precision


def test_hand_computed_small_case():
    x = np.array([1.0, 2, 3, 4])
    y = np.array([1.0, 3, 2, 4])
    # one swapped neighbour pair: sum d^2 = 2 -> rho = 1 - 6*2/(4*15) = 0.8; 5 concordant, 1 discordant of 6
    assert spearman(x, y) == pytest.approx(0.8)
    assert kendall(x, y) == pytest.approx(4 / 6)


def test_matches_scipy_with_ties_and_nan():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 300).astype(float)  # many ties
    y = x + rng.integers(0, 3, 300)
    x[[3, 17]] = np.nan
    y[[40]] = np.nan
    ok = np.isfinite(x) & np.isfinite(y)
    assert spearman(x, y) == pytest.approx(st.spearmanr(x[ok], y[ok]).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(st.kendalltau(x[ok], y[ok]).statistic, abs=1e-12)


def test_vectorised_spearman_equals_scipy_rowwise():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 4, (7, 50)).astype(float)
    Y = rng.normal(size=(7, 50))
    got = _spearman_axis(X, Y, axis=-1)
    want = [st.spearmanr(a, b).statistic for a, b in zip(X, Y)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_constant_input_is_nan_not_error():
    assert math.isnan(spearman(np.ones(10), np.arange(10.0)))
    assert math.isnan(kendall(np.arange(10.0), np.ones(10)))
    r = correlation_ci(np.ones(10), np.arange(10.0), n_resamples=50)
    assert math.isnan(r.value) and math.isnan(r.low)


def test_bootstrap_ci_seeded_and_contains_estimate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=150)
    y = x + rng.normal(size=150)
    a = correlation_ci(x, y, n_resamples=300, seed=5)
    b = correlation_ci(x, y, n_resamples=300, seed=5)
    c = correlation_ci(x, y, n_resamples=300, seed=6)
    assert a == b and (a.low, a.high) != (c.low, c.high)
    assert a.low < a.value < a.high and a.n == 150


@pytest.mark.parametrize(
    "method, truth, reps, B",
    [
        # bivariate normal with r = 0.5: rho_S = 6/pi asin(r/2), tau = 2/pi asin(r) (Kendall 1948 / Pearson 1907)
        ("spearman", 6 / math.pi * math.asin(0.25), 40, 300),
        ("kendall", 2 / math.pi * math.asin(0.5), 25, 150),
    ],
)
def test_bootstrap_ci_covers_population_value(method, truth, reps, B):
    rng = np.random.default_rng(4)
    cov = [[1.0, 0.5], [0.5, 1.0]]
    hits = 0
    widths = []
    for r in range(reps):
        xy = rng.multivariate_normal([0, 0], cov, size=200)
        c = correlation_ci(xy[:, 0], xy[:, 1], method, n_resamples=B, confidence=0.95, seed=r)
        hits += c.low <= truth <= c.high
        widths.append(c.high - c.low)
    assert hits / reps >= 0.8  # nominal 95 %; a broken resampling (e.g. unpaired) covers far less
    # the 95% interval of a correlation with n=200 is roughly +-2 standard errors (~0.1 for rho at 0.48)
    assert 0.05 < np.mean(widths) < 0.4


def test_unpaired_resampling_would_fail_coverage():
    """Sanity of the coverage test itself: a deliberately wrong interval (shifted) is rejected."""
    rng = np.random.default_rng(7)
    xy = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=200)
    c = correlation_ci(xy[:, 0], xy[:, 1], n_resamples=200)
    truth = 6 / math.pi * math.asin(0.25)
    assert not (c.low + 0.3 <= truth <= c.high + 0.3)


def test_topk_precision_hand_and_brute_force():
    score = np.array([4, 3, 2, 1.0])
    target = np.array([4, 1, 2, 3.0])
    assert topk_precision(score, target, 0.5) == 0.5  # top-2: {0,1} vs {0,3}
    assert topk_precision(score, score, 0.3) == 1.0
    assert topk_precision(score, -score, 0.5) == 0.0
    rng = np.random.default_rng(8)
    s, t = rng.normal(size=103), rng.normal(size=103)
    k = math.ceil(0.1 * 103)
    want = len(set(np.argsort(-s)[:k]) & set(np.argsort(-t)[:k])) / k
    assert topk_precision(s, t, 0.1) == pytest.approx(want)
    with pytest.raises(ValueError, match="frac"):
        topk_precision(s, t, 0)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same length"):
        spearman(np.arange(3.0), np.arange(4.0))


def test_count_based_resample_spearman_equals_scipy_per_resample():
    from robustbench_nas.analysis.stats import bootstrap_indices, spearman_resamples

    rng = np.random.default_rng(9)
    x = rng.integers(0, 6, 80).astype(float)  # heavy ties in the data, and duplicates from resampling
    y = np.round(x + rng.normal(size=80), 1)
    idx = np.concatenate(list(bootstrap_indices(80, 50, np.random.default_rng(0), batch=16)))
    assert idx.shape == (50, 80)
    got = spearman_resamples(x, y, idx)
    want = [st.spearmanr(x[i], y[i]).statistic for i in idx]
    np.testing.assert_allclose(got, want, atol=1e-12)
    const = spearman_resamples(np.ones(5), np.arange(5.0), np.tile(np.arange(5), (2, 1)))
    assert np.isnan(const).all()

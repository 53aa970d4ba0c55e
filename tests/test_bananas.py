"""BANANAS (:mod:`robustbench_nas.analysis.bananas`): the ensemble learns, the search beats random search on a
synthetic objective with a known optimum, runs are reproducible, bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from robustbench_nas.analysis import bananas  # noqa: F401  (registers "bananas")
from robustbench_nas.analysis.bananas import Ensemble, bananas_search
from robustbench_nas.analysis.search import SEARCHES, Objective, list_searches
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.search_spaces.nb201 import OPS


def _edge_op_objective(seed: int = 0) -> tuple[Objective, int]:
    """An additive objective: a random weight per (edge, op), summed over the cell's six edges. Its optimum (every
    edge takes its best op) is computed independently by brute force over the unique cells."""
    space = get_search_space("nb201")
    w = np.random.default_rng(seed).normal(size=(6, len(OPS)))
    col = {op: j for j, op in enumerate(OPS)}
    vals = {u: float(sum(w[e, col[op]] for e, op in enumerate(space.cell(u).ops))) for u in space.unique_indices()}
    best = max(vals, key=vals.__getitem__)
    return Objective(vals, name="edge-op"), best


def _queries_to_optimum(queried: list[int], best: int) -> float:
    return float(queried.index(best) + 1) if best in queried else float("inf")


def test_registered():
    assert "bananas" in list_searches() and SEARCHES.get("bananas") is bananas_search


def test_ensemble_learns_a_linear_function_and_has_a_spread():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    y = 100 * (X @ np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0]))  # a scale far from 1: the target is standardised
    Xte = rng.normal(size=(200, 6))
    yte = 100 * (Xte @ np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0]))
    mean, sd = Ensemble(size=5, epochs=300, seed=0).fit(X, y).predict(Xte)
    assert mean.shape == sd.shape == (200,)
    assert st.spearmanr(mean, yte)[0] > 0.95
    assert abs(np.mean(mean) - np.mean(yte)) < 0.2 * np.std(yte)  # in the units of y
    assert (sd > 0).all() and np.isfinite(sd).all()  # members start from different weights
    a = Ensemble(size=3, epochs=20, seed=4).fit(X, y).predict(Xte)
    b = Ensemble(size=3, epochs=20, seed=4).fit(X, y).predict(Xte)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="at least 2 members"):
        Ensemble(size=1)
    with pytest.raises(RuntimeError, match="before fit"):
        Ensemble().predict(Xte)


def test_bananas_finds_the_optimum_faster_than_random_search():
    obj, best = _edge_op_objective(seed=0)
    assert obj.values[best] == obj.optimum
    budget, seeds = 80, (0, 1, 2)
    found = {"bananas": [], "random": []}
    for s in seeds:
        for alg in found:
            q = SEARCHES.get(alg)(obj, budget, np.random.default_rng(s))
            assert len(q) == budget and len(set(q)) == budget  # the budget counts distinct cells
            assert set(q) <= set(obj.candidates().tolist())
            found[alg].append(_queries_to_optimum(q, best))
    # random search hits one cell of 6466 within 80 queries with probability ~1 %; BANANAS must find it
    assert np.median(found["bananas"]) < budget
    assert np.median(found["bananas"]) < np.median(found["random"])


def test_bananas_is_reproducible_and_refuses_bad_settings():
    obj, _ = _edge_op_objective(seed=1)
    kw = dict(epochs=30, initial=5, k=5, candidates=20)
    a = bananas_search(obj, 20, np.random.default_rng(3), **kw)
    assert a == bananas_search(obj, 20, np.random.default_rng(3), **kw)
    assert a != bananas_search(obj, 20, np.random.default_rng(4), **kw)
    with pytest.raises(ValueError, match="unknown encoding 'bogus'"):
        bananas_search(obj, 20, np.random.default_rng(0), encoding="bogus")
    with pytest.raises(ValueError, match="k must be >= 1"):
        bananas_search(obj, 20, np.random.default_rng(0), k=0)
    with pytest.raises(ValueError, match="at least 2 members"):
        bananas_search(obj, 20, np.random.default_rng(0), ensemble=1)

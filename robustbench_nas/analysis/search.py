"""NAS on a robustness dataset: search algorithms run as table look-ups, with regret curves.

Each algorithm queries an :class:`Objective` (one value per cell, e.g. PGD accuracy at 1/255) for cells of a search
space (NB201 by default); isomorphic cells share their uid's value, and a query of a cell already seen costs nothing. The budget counts
distinct uids queried. Regret after ``t`` queries = (best value in the table) - (best value found so far).

Algorithms (registry ``@register_search``): ``random`` (uniform over unique cells), ``local`` (White et al. 2021:
hill climbing over all one-edge neighbours, restarting from a random cell at a local optimum), ``evolution``
(regularised evolution, Real et al. 2019: tournament selection, one-edge mutation, oldest removed); ``bananas``
(White et al. 2021: an MLP ensemble on the path encoding with Thompson sampling, in :mod:`.bananas`, registered when
the ``analysis`` package is imported).

Example:
    >>> obj = Objective.from_series(T["pgd@Linf@1/255"])  # doctest: +SKIP
    >>> curves = run_searches(obj, ["random", "local", "evolution"], budget=300, repeats=10)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..search_spaces import get_search_space
from ..utils.registry import Registry

#: search algorithms ``f(objective, budget, rng, **kw) -> [queried uids]`` by name
SEARCHES: Registry[Callable[..., list[int]]] = Registry("search algorithm")


def register_search(name: str) -> Callable[[Callable[..., list[int]]], Callable[..., list[int]]]:
    """Register ``f(objective, budget, rng, **kw) -> [queried uids in order]`` under ``name`` (taken: ``ValueError``)."""
    return SEARCHES.register(name)


def list_searches(pattern: str | None = None) -> list[str]:
    """Registered search algorithms (sorted), filtered by a shell-style ``pattern``."""
    return SEARCHES.list(pattern, sort=True)


@dataclass
class Objective:
    """Values of one target per uid; the search space ``space`` maps every index to its uid.

    Cells with NaN (not evaluated) cannot be chosen: querying one returns ``-inf`` and still costs a query.
    """

    values: dict[int, float]
    name: str = "objective"
    space_name: str = "nb201"
    _space: object = field(default=None, repr=False)
    _uid: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._space = get_search_space(self.space_name)
        self._uid = self._space.uid_table()  # type: ignore[attr-defined]
        if not any(np.isfinite(v) for v in self.values.values()):
            raise ValueError(f"objective {self.name!r} has no finite value")

    @classmethod
    def from_series(cls, s: pd.Series, space: str = "nb201") -> "Objective":
        """From a target column indexed by uid (``arch``) of search space ``space``."""
        return cls({int(k): float(v) for k, v in s.items()}, name=str(s.name), space_name=space)

    @property
    def space(self) -> object:
        return self._space

    @property
    def optimum(self) -> float:
        return float(np.nanmax(list(self.values.values())))

    def uid(self, index: int) -> int:
        return int(self._uid[index])

    def __call__(self, index: int) -> float:
        v = self.values.get(self.uid(index), float("nan"))
        return v if np.isfinite(v) else float("-inf")

    def candidates(self) -> np.ndarray:
        """uids with a finite value."""
        return np.asarray(sorted(u for u, v in self.values.items() if np.isfinite(v)))


class _Budget:
    """Counts distinct uids; ``ask(index)`` returns the value, recording the uid the first time."""

    def __init__(self, obj: Objective, budget: int) -> None:
        self.obj, self.budget = obj, budget
        self.seen: dict[int, float] = {}
        self.order: list[int] = []

    @property
    def done(self) -> bool:
        return len(self.order) >= self.budget

    def ask(self, index: int) -> float:
        u = self.obj.uid(index)
        if u not in self.seen:
            if self.done:
                return self.seen.get(u, float("-inf"))
            self.seen[u] = self.obj(index)
            self.order.append(u)
        return self.seen[u]


@register_search("random")
def random_search(obj: Objective, budget: int, rng: np.random.Generator) -> list[int]:
    """Uniform sample of unique cells without replacement."""
    cand = obj.candidates()
    return [int(u) for u in rng.choice(cand, size=min(budget, cand.size), replace=False)]


@register_search("local")
def local_search(obj: Objective, budget: int, rng: np.random.Generator) -> list[int]:
    """Best-improvement hill climbing over the space's neighbourhood (one mutation away), with random restarts."""
    b = _Budget(obj, budget)
    cand = obj.candidates()
    space = obj.space
    while not b.done:
        cur = int(rng.choice(cand))
        cur_v = b.ask(cur)
        while not b.done:
            nbrs = space.neighbours(cur)  # type: ignore[attr-defined]
            rng.shuffle(nbrs)
            best, best_v = cur, cur_v
            for n in nbrs:
                v = b.ask(n)
                if v > best_v:
                    best, best_v = n, v
                if b.done:
                    break
            if best == cur:
                break  # local optimum: restart
            cur, cur_v = best, best_v
    return b.order


@register_search("evolution")
def regularized_evolution(
    obj: Objective, budget: int, rng: np.random.Generator, *, population: int = 50, sample: int = 10
) -> list[int]:
    """Regularised (ageing) evolution: tournament of ``sample`` from a ``population`` queue, mutate the winner."""
    b = _Budget(obj, budget)
    cand = obj.candidates()
    space = obj.space
    pop: collections.deque[tuple[int, float]] = collections.deque()
    for u in rng.choice(cand, size=min(population, cand.size, budget), replace=False):
        pop.append((int(u), b.ask(int(u))))
    stall = 0
    while not b.done and stall < 100 * budget:
        picks = rng.choice(len(pop), size=min(sample, len(pop)), replace=False)
        parent = max((pop[i] for i in picks), key=lambda t: t[1])[0]
        child = space.mutate(parent, rng)  # type: ignore[attr-defined]
        n_before = len(b.order)
        pop.append((child, b.ask(child)))
        pop.popleft()
        stall = 0 if len(b.order) > n_before else stall + 1
    return b.order


def regret_curve(obj: Objective, queried: list[int], budget: int) -> np.ndarray:
    """Regret after 1..budget queries (held constant after the last query if the run stopped early)."""
    vals = np.array([obj.values.get(u, np.nan) for u in queried], dtype=np.float64)
    vals = np.where(np.isfinite(vals), vals, -np.inf)
    best = np.maximum.accumulate(vals) if vals.size else np.array([-np.inf])
    if best.size < budget:
        best = np.concatenate([best, np.full(budget - best.size, best[-1])])
    return obj.optimum - best[:budget]


def run_searches(
    obj: Objective, algorithms: list[str] | tuple[str, ...] = ("random", "local", "evolution"), *, budget: int = 300,
    repeats: int = 10, seed: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Run every algorithm ``repeats`` times (seeds ``seed + r``).

    Returns:
        Long table ``algorithm, repeat, queries (1..budget), regret, best`` (``best`` = best value found).
    """
    unknown = [a for a in algorithms if a not in SEARCHES]
    if unknown:
        raise KeyError(f"unknown search algorithm(s) {unknown}; known: {list_searches()}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    rows = []
    for alg in algorithms:
        for r in range(repeats):
            queried = SEARCHES.get(alg)(obj, budget, np.random.default_rng(seed + r))
            reg = regret_curve(obj, queried, budget)
            rows.append(pd.DataFrame({"algorithm": alg, "repeat": r, "queries": np.arange(1, budget + 1),
                                      "regret": reg, "best": obj.optimum - reg}))  # fmt: skip
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "objective", obj.name)
    return out


def summarize_regret(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean / std / median regret per (objective, algorithm, queries)."""
    g = curves.groupby(["objective", "algorithm", "queries"])["regret"]
    return g.agg(["mean", "std", "median"]).reset_index()

"""Search-space abstraction and registry."""

from __future__ import annotations

import abc
from typing import Callable, Sequence

import numpy as np

_REGISTRY: dict[str, Callable[[], "SearchSpace"]] = {}
_INSTANCES: dict[str, "SearchSpace"] = {}


class ArchitectureError(ValueError):
    """Raised for a malformed or unknown architecture (string, index or op)."""


def register_search_space(name: str) -> Callable[[type], type]:
    """Class decorator: register a search space under ``name`` (built lazily, once)."""

    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls

    return deco


def get_search_space(name: str = "nb201") -> "SearchSpace":
    """Return the (cached) search space registered under ``name``.

    Example:
        >>> space = get_search_space("nb201")
        >>> space.num_cells, space.num_unique
        (15625, 6466)
    """
    key = name.lower().replace("-", "").replace("_", "")
    aliases = {"nasbench201": "nb201", "nb201": "nb201", "natsbenchtss": "nb201"}
    key = aliases.get(key, name)
    if key not in _REGISTRY:
        raise KeyError(f"unknown search space {name!r}; known: {sorted(_REGISTRY)}")
    if key not in _INSTANCES:
        _INSTANCES[key] = _REGISTRY[key]()
    return _INSTANCES[key]


def list_search_spaces() -> list[str]:
    """Names of all registered search spaces."""
    return sorted(_REGISTRY)


class SearchSpace(abc.ABC):
    """A finite cell search space with a fixed index order and an isomorphism partition."""

    name: str

    @property
    @abc.abstractmethod
    def num_cells(self) -> int:
        """Number of cells (all, isomorphic ones included)."""

    @property
    def num_unique(self) -> int:
        """Number of isomorphism classes."""
        return len(self.unique_indices())

    @abc.abstractmethod
    def arch_str(self, index: int) -> str:
        """The architecture string of the cell at ``index``."""

    @abc.abstractmethod
    def index_of(self, arch: object) -> int:
        """Index of an architecture given as string, cell object or index."""

    @abc.abstractmethod
    def uid(self, arch: object) -> int:
        """Smallest index of the isomorphism class of ``arch``."""

    @abc.abstractmethod
    def unique_indices(self) -> list[int]:
        """Sorted uids (one representative per isomorphism class)."""

    @abc.abstractmethod
    def mutate(self, arch: object, rng: np.random.Generator) -> int:
        """Index of a random neighbour (one edge changed)."""

    @abc.abstractmethod
    def neighbours(self, arch: object) -> list[int]:
        """Indices of all cells that differ in exactly one edge."""

    def sample(self, n: int, seed: int = 0, unique: bool = True) -> list[int]:
        """``n`` distinct indices drawn without replacement (uids only if ``unique``), seeded."""
        pool = np.asarray(self.unique_indices() if unique else range(self.num_cells))
        if n > len(pool):
            raise ValueError(f"cannot sample {n} cells from {len(pool)}")
        rng = np.random.default_rng(seed)
        return sorted(int(i) for i in rng.choice(pool, size=n, replace=False))

    def resolve(self, archs: Sequence[object]) -> list[int]:
        """Indices for a list of strings / indices / cells (errors name the bad entry)."""
        return [self.index_of(a) for a in archs]

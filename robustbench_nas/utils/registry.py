"""One registry type behind every named component (search spaces, datasets, profiles, attacks, corruptions, ...).

Modelled on timm's model registry: a component module registers its items with a ``register_*`` decorator, and
the rest of the code reaches them through ``get_*`` and ``list_*`` (with an optional shell-style wildcard filter).
A duplicate name (or an alias that collides with a name or another alias) is always an error, so importing two
modules that claim the same name fails loudly at import time instead of one silently replacing the other.

Example:
    >>> from robustbench_nas.utils.registry import Registry
    >>> SOLVERS: Registry[type] = Registry("solver")
    >>> @SOLVERS.register("sgd", aliases=("plain-sgd",))
    ... class SGD: ...
    >>> SOLVERS.get("plain-sgd") is SGD
    True
    >>> SOLVERS.list("s*")
    ['sgd']
"""

from __future__ import annotations

import contextlib
import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named items of one kind, with aliases; names are case-sensitive, unique, and kept in registration order.

    Arguments:
        kind: what the items are, for error messages (``"attack"`` -> ``unknown attack 'x'; known: ...``).
        normalize: optional map applied to every name and alias on registration and look-up (e.g. ``str.lower``).
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._norm = normalize or (lambda s: s)
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------------------------------
    def add(self, name: str, item: T, *, aliases: tuple[str, ...] | list[str] = ()) -> T:
        """Register ``item`` under ``name`` (and ``aliases``); a name or alias already taken raises ``ValueError``."""
        key = self._norm(str(name))
        if not key:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        for n in (key, *map(self._norm, aliases)):
            if n in self._items or n in self._aliases:
                owner = self._aliases.get(n, n)
                raise ValueError(f"{self.kind} name {n!r} is already registered (by {owner!r}); names must be unique")
        self._items[key] = item
        for a in aliases:
            self._aliases[self._norm(a)] = key
        return item

    def register(self, name: str, *, aliases: tuple[str, ...] | list[str] = ()) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@REG.register("name")`` returns the decorated object unchanged."""

        def deco(item: T) -> T:
            return self.add(name, item, aliases=aliases)

        return deco

    def remove(self, name: str) -> T:
        """Unregister ``name`` and its aliases (tests and plugins that register temporary items)."""
        key = self.resolve(name)
        for a in [a for a, k in self._aliases.items() if k == key]:
            del self._aliases[a]
        return self._items.pop(key)

    @contextlib.contextmanager
    def replaced(self, name: str, item: T) -> Iterator[T]:
        """Within the block, ``name`` (which must exist) stands for ``item``; the original comes back afterwards.

        For tests that substitute a component (a failing stage, a training that must not run): an explicit,
        scoped substitution, unlike a second registration under a taken name, which stays an error.
        """
        key = self.resolve(name)
        original = self._items[key]
        self._items[key] = item
        try:
            yield original
        finally:
            self._items[key] = original

    # -- look-up ------------------------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """The canonical name of ``name`` (itself or the name an alias points to); unknown raises ``KeyError``."""
        key = self._norm(str(name))
        if key in self._items:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self._items) or '(none)'}")

    def get(self, name: str) -> T:
        """The item registered as ``name`` or one of its aliases; unknown raises ``KeyError`` listing the names."""
        return self._items[self.resolve(name)]

    def list(self, pattern: str | None = None, *, sort: bool = False) -> list[str]:
        """Canonical names, in registration order (``sort=True``: sorted), filtered by a shell-style ``pattern``."""
        names = list(self._items)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, self._norm(pattern))]
        return sorted(names) if sort else names

    def aliases(self) -> dict[str, str]:
        """Every alias and the canonical name it points to."""
        return dict(self._aliases)

    def items(self) -> list[tuple[str, T]]:
        """``(name, item)`` pairs in registration order."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._norm(name)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} items)"

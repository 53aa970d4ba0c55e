"""Zero-cost architecture encodings for the analysis, taken from the search space.

Each search space owns its encodings (:attr:`robustbench_nas.search_spaces.SearchSpace.encoders`): NB201 has
one-hot ops, op counts, paths and GRAF-style graph features (:mod:`robustbench_nas.search_spaces.nb201_encodings`);
NATS-Bench SSS has its channel counts, one-hot channels and width statistics
(:mod:`robustbench_nas.search_spaces.nats_sss`). This module turns them into tables, for any space by name.

``params`` and ``flops`` (two of the standard zero-cost proxies) come from the space's exact cost
(:meth:`~robustbench_nas.search_spaces.SearchSpace.cost`) in its published convention.

Example:
    >>> X = encode(["|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"], "opcount")
    >>> X.loc[0, "count_nor_conv_3x3"], X.loc[0, "count_none"]
    (1, 2)
    >>> encode(["8:16:24:32:64"], "channels", space="nats-sss").iloc[0].tolist()
    [8.0, 16.0, 24.0, 32.0, 64.0]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..search_spaces import get_search_space
from ..search_spaces.base import Encoder
from ..search_spaces.base import register_encoding as _register


def register_encoding(name: str, space: str = "nb201") -> Any:
    """Register ``f(arch object) -> {feature: value}`` as encoding ``name`` of search space ``space``."""
    return _register(name, space)


def list_encodings(space: str = "nb201", pattern: str | None = None) -> list[str]:
    """Encoding names of ``space`` (plus ``all`` and ``default``); ``pattern``: only the names it matches
    (shell-style, ``"path*"``), without ``all`` / ``default``."""
    if pattern:
        return get_search_space(space).list_encodings(pattern)
    return get_search_space(space).list_encodings() + ["all", "default"]


def encode(archs: Sequence[object], kind: str | Sequence[str] = "all", *, space: str = "nb201") -> pd.DataFrame:
    """Encode architectures (strings, indices or architecture objects) of ``space`` as a feature table.

    Arguments:
        archs: the architectures, length ``n``.
        kind: an encoding name of the space, a list of them, ``all`` or ``default`` (the space's default set).
        space: search-space name.

    Returns:
        DataFrame ``(n, F)`` indexed by the space's index (name ``arch``), one column per feature (float).
    """
    sp = get_search_space(space)
    kinds = tuple(sp.resolve_encodings(kind))
    idx = [sp.index_of(a) for a in archs]
    rows = [_cached(sp.name, kinds, i) for i in idx]
    return pd.DataFrame(rows, index=pd.Index(idx, name="arch"), dtype=np.float64)


@lru_cache(maxsize=None)
def _cached(space: str, kinds: tuple[str, ...], index: int) -> dict[str, float]:
    return get_search_space(space).encode_one(index, kinds)


def arch_costs(
    archs: Sequence[object], *, num_classes: int = 10, image_size: int = 32, space: str = "nb201", **options: Any
) -> pd.DataFrame:
    """Parameter count and FLOPs of each architecture's network (the space's exact :meth:`cost`).

    Arguments:
        options: the space's network options (NB201: ``C``, ``N``; default: the benchmark's size).

    Returns:
        DataFrame indexed by the space's index with ``params`` (count), ``flops`` (the space's published convention,
        see its ``flops_convention``) and ``flops_plain``, both in **1e6 multiply-adds** as in the store
        (``docs/storage.md``).
    """
    sp = get_search_space(space)
    idx = [sp.index_of(a) for a in archs]
    costs = [sp.cost(i, num_classes, (3, image_size, image_size), **options) for i in idx]
    vals = np.array([[c.params, c.flops.published / 1e6, c.flops.plain / 1e6] for c in costs], dtype=np.float64)
    return pd.DataFrame(vals, index=pd.Index(idx, name="arch"), columns=["params", "flops", "flops_plain"])


__all__ = ["Encoder", "arch_costs", "encode", "list_encodings", "register_encoding"]

"""GRAF's NB201 features, as its reference code computes them (encoding ``graf_exact``, 191 features).

Kadlecova et al., "Surprisingly Strong Performance Prediction with Neural Graph Features" (ICML 2024), code
gabikadlecova/GRAF (``graf_nas/features/base.py``, ``features/nasbench201.py``, ``configs/nb201.json``). Facts
taken from that code (re-implemented here, nothing copied):

- GRAF numbers the NB201 nodes 1..4 (ours 0..3, ``GRAF node = ours + 1``) and orders the edges
  (1,2) (1,3) (1,4) (2,3) (2,4) (3,4); its op list is ``skip_connect, none, nor_conv_3x3, nor_conv_1x1,
  avg_pool_3x3``. ``none`` is an op like the others: a ``none`` edge is an edge of the graph, it is only left out
  when ``none`` is not in the allowed subset.
- The config ``nb201.json`` asks for ``op_count`` (5 features) and, for each of the 31 non-empty subsets ``S`` of the
  five ops (``itertools.combinations`` order, sizes 1..5: "product" mode), ``min_path_len`` (1), ``max_op_on_path``
  (1) and ``node_degree`` (4): 5 + 31 * 6 = **191** features.
- ``min_path_len[S]``: shortest path (in edges) from node 1 to node 4 over the edges whose op is in ``S``;
  **6** (the number of edges, its default ``max_val``) when there is none. (The older zc_combine code banned the
  complement of ``S`` and used ``end + 1 = 5``: the same order, so a tree model sees the same splits.)
- ``max_op_on_path[S]``: longest path (in edges) from node 1 to node 4 over the edges whose op is in ``S``
  (Bellman-Ford with weight -1 per edge); **-1** when there is none (one GRAF revision returns 0 instead: also
  below every real length, so again the same order).
- ``node_degree[S]``: GRAF's ``in_degree`` is the number of ``S``-edges *leaving* the input node 1 and its
  ``out_degree`` the number *entering* the output node 4 (its helper names the edge lists by the other end);
  ``avg_in`` / ``avg_out`` are the mean over the 4 nodes of the outgoing / incoming ``S``-edge counts, both
  ``|E_S| / 4`` (every node is in the graph: it is built from all six edges whatever their op).

FLOPs and params, which GRAF adds as two of its zero-cost proxies, are the store's ``params`` / ``flops`` columns
(:func:`robustbench_nas.analysis.targets.features_table`), free for every cell.
"""

from __future__ import annotations

import itertools

from .base import register_encoding
from .nb201 import EDGES, Cell, NB201SearchSpace

#: GRAF's op order (its op ids 0..4), which fixes the order of the subsets and so of the features.
GRAF_OPS: tuple[str, ...] = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
#: The 31 non-empty op subsets, smallest first, as GRAF's config expands them.
GRAF_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    s for k in range(1, len(GRAF_OPS) + 1) for s in itertools.combinations(GRAF_OPS, k)
)
#: GRAF's values when node 4 cannot be reached: its ``max_val`` default (number of edges) and ``len(path) - 1``
#: of an empty path.
NO_PATH_MIN: float = 6.0
NO_PATH_MAX: float = -1.0
#: Number of GRAF features of an NB201 cell.
N_GRAF_FEATURES: int = len(GRAF_OPS) + 6 * len(GRAF_SUBSETS)
_INPUT, _OUTPUT, _NODES = 0, 3, 4  # our node ids of GRAF's nodes 1 and 4; nodes in the cell


def _name(feature: str, subset: tuple[str, ...]) -> str:
    return f"graf:{feature}_({','.join(subset)})"


def _allowed_edges(cell: Cell, subset: tuple[str, ...]) -> list[tuple[int, int]]:
    """``(source, target)`` of the edges whose op is in ``subset`` (our node ids)."""
    return [(i, j) for (j, i), op in zip(EDGES, cell.ops) if op in subset]


def _path_lengths(edges: list[tuple[int, int]]) -> tuple[float, float]:
    """Shortest and longest path length (edges) from the input to the output node; GRAF's fill values if none.

    Nodes are topologically ordered by id (every edge goes from a lower to a higher node), so one pass in node
    order relaxes every path.
    """
    shortest: list[float | None] = [0.0] + [None] * (_NODES - 1)
    longest: list[float | None] = [0.0] + [None] * (_NODES - 1)
    for node in range(1, _NODES):
        into = [i for i, j in edges if j == node and shortest[i] is not None]
        if into:
            shortest[node] = min(shortest[i] for i in into) + 1.0  # type: ignore[operator]
            longest[node] = max(longest[i] for i in into) + 1.0  # type: ignore[operator]
    lo, hi = shortest[_OUTPUT], longest[_OUTPUT]
    return (NO_PATH_MIN if lo is None else lo), (NO_PATH_MAX if hi is None else hi)


@register_encoding("graf_exact", NB201SearchSpace)
def graf_exact(cell: Cell) -> dict[str, float]:
    """GRAF's 191 NB201 features (see the module docstring), named ``graf:<feature>_(<ops>)`` as GRAF names them.

    ``graf:op_count_<op>`` (5), then per subset ``S`` of :data:`GRAF_SUBSETS`: ``graf:min_path_len_(S)``,
    ``graf:max_op_on_path_(S)``, ``graf:node_degree_(S)_in_degree`` / ``_out_degree`` / ``_avg_in`` / ``_avg_out``.
    """
    out: dict[str, float] = {f"graf:op_count_{op}": float(cell.ops.count(op)) for op in GRAF_OPS}
    lengths = {subset: _path_lengths(_allowed_edges(cell, subset)) for subset in GRAF_SUBSETS}
    for k, feature in enumerate(("min_path_len", "max_op_on_path")):  # GRAF's config order: one family at a time
        out.update({_name(feature, subset): lengths[subset][k] for subset in GRAF_SUBSETS})
    for subset in GRAF_SUBSETS:
        edges = _allowed_edges(cell, subset)
        tag = _name("node_degree", subset)
        out[f"{tag}_in_degree"] = float(sum(i == _INPUT for i, _ in edges))
        out[f"{tag}_out_degree"] = float(sum(j == _OUTPUT for _, j in edges))
        out[f"{tag}_avg_in"] = out[f"{tag}_avg_out"] = len(edges) / _NODES
    return out

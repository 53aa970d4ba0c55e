"""Zero-cost encodings of NB201 cells: one-hot ops, op counts, paths and GRAF-style graph features.

None of these needs a network: they are functions of the cell's six edge ops only.

GRAF-style features follow Kadlecova et al., "Surprisingly Strong Performance Prediction with Neural Graph Features"
(ICML 2024): for every non-empty subset S of the non-zero ops, the graph that keeps only edges with an op in S, and
its number of input->output paths, shortest and longest such path, in-degree of the output node and out-degree of the
input node.
"""

from __future__ import annotations

import itertools

from .base import register_encoding
from .nb201 import EDGES, OPS, Cell, NB201SearchSpace

_REAL_OPS: tuple[str, ...] = tuple(op for op in OPS if op != "none")
#: The four input->output paths of the NB201 cell, as edge positions (string order).
_PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
_SHORT = {"skip_connect": "skip", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "pool", "none": "none"}


@register_encoding("onehot", NB201SearchSpace)
def onehot(cell: Cell) -> dict[str, float]:
    """30 binary features ``e<k>=<op>``: the op on each of the 6 edges (edge k in string order, k=0..5)."""
    return {f"e{k}({j}<-{i})={op}": float(cell.ops[k] == op) for k, (j, i) in enumerate(EDGES) for op in OPS}


@register_encoding("opcount", NB201SearchSpace)
def opcount(cell: Cell) -> dict[str, float]:
    """5 counts ``count_<op>`` of each op over the 6 edges, and 4 counts ``live_<op>`` over live edges only.

    An edge is live when it lies on an input->output path whose edges are all non-``none`` (a dead edge cannot
    change the output).
    """
    out = {f"count_{op}": cell.ops.count(op) for op in OPS}
    live: set[int] = set()
    for path in _PATHS:
        if all(cell.ops[e] != "none" for e in path):
            live.update(path)
    for op in _REAL_OPS:
        out[f"live_{op}"] = sum(1 for e in live if cell.ops[e] == op)
    return out


@register_encoding("path", NB201SearchSpace)
def path_encoding(cell: Cell) -> dict[str, float]:
    """Path encoding (White et al., BANANAS): one binary feature per op sequence of a live input->output path.

    4 + 16 + 64 = 84 features ``path=<op>-<op>...``; a path with a ``none`` edge carries no signal.
    """
    out = {f"path={'-'.join(_SHORT[o] for o in seq)}": 0.0 for L in (1, 2, 3) for seq in itertools.product(_REAL_OPS, repeat=L)}
    for path in _PATHS:
        seq = [cell.ops[e] for e in path]
        if "none" not in seq:
            out[f"path={'-'.join(_SHORT[o] for o in seq)}"] = 1.0
    return out


def _subsets() -> list[tuple[str, ...]]:
    return [s for L in range(1, len(_REAL_OPS) + 1) for s in itertools.combinations(_REAL_OPS, L)]


@register_encoding("graf", NB201SearchSpace)
def graf(cell: Cell) -> dict[str, float]:
    """GRAF-style graph features (15 op subsets x 5 features = 75).

    For each non-empty subset S of {skip, c1, c3, pool}: ``npaths[S]`` (input->output paths using only ops in S),
    ``minlen[S]`` / ``maxlen[S]`` (their shortest / longest length in edges, 0 when there is none),
    ``indeg_out[S]`` (edges with an op in S entering the output node), ``outdeg_in[S]`` (leaving the input node).
    """
    out: dict[str, float] = {}
    for S in _subsets():
        tag = "+".join(_SHORT[o] for o in S)
        lens = [len(p) for p in _PATHS if all(cell.ops[e] in S for e in p)]
        out[f"npaths[{tag}]"] = float(len(lens))
        out[f"minlen[{tag}]"] = float(min(lens)) if lens else 0.0
        out[f"maxlen[{tag}]"] = float(max(lens)) if lens else 0.0
        out[f"indeg_out[{tag}]"] = float(sum(cell.ops[k] in S for k, (j, _i) in enumerate(EDGES) if j == 3))
        out[f"outdeg_in[{tag}]"] = float(sum(cell.ops[k] in S for k, (_j, i) in enumerate(EDGES) if i == 0))
    return out

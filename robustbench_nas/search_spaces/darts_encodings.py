"""Zero-cost encodings of DARTS genotypes: one-hot edges, op counts per cell type, adjacency, GRAF-style features.

None of these needs a network: they are functions of the two cells' edges. Edges are read in the canonical order
(each node's two edges sorted by input), so genotypes with the same index have the same features.

GRAF-style features follow Kadlecova et al. (ICML 2024) on the cell's DAG: nodes 0 and 1 (the cell inputs), the
intermediate nodes 2..5 and an output node fed by every intermediate node (the concatenation). For every non-empty
subset S of the op groups (pool, skip, sep, dil), the graph that keeps only the op edges whose op is in S: the
number of input->output paths, the shortest and longest such path (in op edges), the intermediate nodes such a path
reaches, and the out-degrees of the two cell inputs.
"""

from __future__ import annotations

import itertools

from .base import register_encoding
from .darts import DartsSearchSpace
from .darts_genotype import CELL_TYPES, DARTS_OPS, NUM_NODES, DartsCell, DartsGenotype

#: The op groups GRAF subsets are built from (4 groups: 15 subsets, against 127 subsets of the 7 ops).
OP_GROUPS: dict[str, tuple[str, ...]] = {
    "pool": ("max_pool_3x3", "avg_pool_3x3"),
    "skip": ("skip_connect",),
    "sep": ("sep_conv_3x3", "sep_conv_5x5"),
    "dil": ("dil_conv_3x3", "dil_conv_5x5"),
}
_SUBSETS: tuple[tuple[str, ...], ...] = tuple(
    s for r in range(1, len(OP_GROUPS) + 1) for s in itertools.combinations(OP_GROUPS, r))


def _cells(g: DartsGenotype) -> list[tuple[str, DartsCell]]:
    return [(kind, g.cell(kind).canonical()) for kind in CELL_TYPES]


@register_encoding("onehot", DartsSearchSpace)
def onehot(g: DartsGenotype) -> dict[str, float]:
    """Per cell and canonical edge, 7 op indicators and the input number: 2 x 8 x 8 = 128 features."""
    out: dict[str, float] = {}
    for kind, cell in _cells(g):
        for e, (op, inp) in enumerate(cell.edges):
            key = f"{kind}_n{e // 2 + 2}e{e % 2}"
            out.update({f"{key}={o}": float(op == o) for o in DARTS_OPS})
            out[f"{key}_input"] = float(inp)
    return out


@register_encoding("opcount", DartsSearchSpace)
def opcount(g: DartsGenotype) -> dict[str, float]:
    """Count of each op per cell type (14) and the parametric ops (sep / dil convolutions) per cell (2)."""
    out: dict[str, float] = {}
    for kind, cell in _cells(g):
        ops = [op for op, _ in cell.edges]
        out.update({f"{kind}_count_{o}": float(ops.count(o)) for o in DARTS_OPS})
        out[f"{kind}_parametric"] = float(sum(o.startswith(("sep", "dil")) for o in ops))
    return out


@register_encoding("adjacency", DartsSearchSpace)
def adjacency(g: DartsGenotype) -> dict[str, float]:
    """Per cell, whether node j takes input i (14 possible edges i < j, j = 2..5): 28 binary features."""
    out: dict[str, float] = {}
    for kind, cell in _cells(g):
        taken = {(i, e // 2 + 2) for e, (_op, i) in enumerate(cell.edges)}
        out.update({f"{kind}_adj_{i}->{j}": float((i, j) in taken) for j in range(2, 2 + NUM_NODES) for i in range(j)})
    return out


def _graf_cell(cell: DartsCell, keep: set[str]) -> dict[str, float]:
    n = 2 + NUM_NODES
    paths = [1, 1] + [0] * NUM_NODES  # paths from either cell input
    short = [0, 0] + [None] * NUM_NODES
    long_ = [0, 0] + [None] * NUM_NODES
    for e, (op, i) in enumerate(cell.edges):
        j = e // 2 + 2
        if op not in keep or paths[i] == 0:
            continue
        paths[j] += paths[i]
        short[j] = short[i] + 1 if short[j] is None else min(short[j], short[i] + 1)
        long_[j] = long_[i] + 1 if long_[j] is None else max(long_[j], long_[i] + 1)
    reached = [j for j in range(2, n) if paths[j]]
    return {
        "paths": float(sum(paths[j] for j in reached)),
        "min_path": float(min((short[j] for j in reached), default=0)),
        "max_path": float(max((long_[j] for j in reached), default=0)),
        "reached": float(len(reached)),
        "outdeg0": float(sum(op in keep and i == 0 for op, i in cell.edges)),
        "outdeg1": float(sum(op in keep and i == 1 for op, i in cell.edges)),
    }


@register_encoding("graf", DartsSearchSpace)
def graf(g: DartsGenotype) -> dict[str, float]:
    """GRAF-style features: 2 cells x 15 op-group subsets x 6 features = 180."""
    out: dict[str, float] = {}
    for kind, cell in _cells(g):
        for subset in _SUBSETS:
            keep = {op for grp in subset for op in OP_GROUPS[grp]}
            name = "+".join(subset)
            out.update({f"{kind}_{name}_{k}": v for k, v in _graf_cell(cell, keep).items()})
    return out


__all__ = ["OP_GROUPS", "adjacency", "graf", "onehot", "opcount"]

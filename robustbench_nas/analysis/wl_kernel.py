"""Weisfeiler-Lehman subtree features of cells (the WL graph kernel of Ru et al., ICLR 2021, "Interpretable
Neural Architecture Search via Bayesian Optimisation with Weisfeiler-Lehman Kernels").

The cell comes from its search space (``SearchSpace.cell_dag``: the op-labelled edges without the zero op, and the
output node; NB201's is node 3), so nothing here knows a space's ops or edges. A cell is turned into its
op-on-node DAG: one node for the input, one for the output and one per edge; an op node of edge ``j<-i`` is fed by
the op nodes of the edges entering node ``i`` (the input node when ``i = 0``) and feeds those leaving node ``j``
(the output node when ``j`` is the cell's output). Op nodes on no input->output route are
dropped (they cannot change the output), so isomorphic cells give the same graph. WL relabelling: at iteration ``t``
every node's label becomes its label followed by the sorted multiset of its predecessors' labels (the direction
data flows in); the feature vector counts every label of iterations ``0..h``. The WL kernel is the dot product of
two such count vectors (we normalise rows to unit length, so a cell's kernel with itself is 1).

Example:
    >>> g = op_graph("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|")
    >>> g.labels, g.preds
    (('in', 'out', 'nor_conv_3x3', 'skip_connect'), ((), (3,), (0,), (2,)))
    >>> sorted(wl_labels(g, 1))[:3]
    ['in', 'in()', 'nor_conv_3x3']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..search_spaces import SearchSpace, get_search_space


@dataclass(frozen=True)
class OpGraph:
    """A DAG with labelled nodes: ``labels[k]`` and the predecessor positions ``preds[k]`` of node ``k``."""

    labels: tuple[str, ...]
    preds: tuple[tuple[int, ...], ...]


def op_graph(arch: object, space: str | SearchSpace = "nb201") -> OpGraph:
    """The op-on-node DAG of a cell of ``space`` (string, index or cell; see the module docstring); nodes 0 / 1 are
    input / output."""
    dag = (space if isinstance(space, SearchSpace) else get_search_space(space)).cell_dag(arch)
    out = dag.output
    edges = [(k, j, i, op) for k, (j, i, op) in enumerate(dag.edges)]
    # keep only edges on an input -> output route: reachable from node 0 and reaching the output node
    fwd, bwd = {0}, {out}
    for _ in range(out):  # a route has at most ``out`` edges
        fwd |= {j for _k, j, i, _o in edges if i in fwd}
        bwd |= {i for _k, j, i, _o in edges if j in bwd}
    edges = [e for e in edges if e[2] in fwd and e[1] in bwd]
    pos = {e[0]: 2 + n for n, e in enumerate(edges)}
    labels = ["in", "out"] + [op for *_, op in edges]
    preds: list[tuple[int, ...]] = [(), tuple(pos[k] for k, j, _i, _o in edges if j == out)]
    for _k, _j, i, _op in edges:
        preds.append((0,) if i == 0 else tuple(pos[k2] for k2, j2, _i2, _o2 in edges if j2 == i))
    return OpGraph(tuple(labels), tuple(preds))


def wl_labels(graph: OpGraph, h: int) -> Counter:
    """Counts of the WL subtree labels of iterations ``0..h`` (labels are the uncompressed nested strings, so the
    same subtree gets the same name in every graph without a shared dictionary)."""
    if h < 0:
        raise ValueError(f"h must be >= 0, got {h}")
    cur = list(graph.labels)
    counts = Counter(cur)
    for _ in range(h):
        cur = [f"{cur[k]}({','.join(sorted(cur[p] for p in graph.preds[k]))})" for k in range(len(cur))]
        counts.update(cur)
    return counts


def wl_features(archs: Sequence[object], h: int = 2, *, index: Sequence[object] | None = None,
                prefix: str = "wl:", space: str | SearchSpace = "nb201") -> pd.DataFrame:  # fmt: skip
    """``(cells, labels)`` counts of WL subtree labels (iterations ``0..h``) over the labels seen in ``archs``.

    Free for every cell (a function of the architecture only); the vocabulary is that of the given cells, so pass
    every cell of the store (labelled or not) to get one table for all.
    """
    sp = space if isinstance(space, SearchSpace) else get_search_space(space)
    rows = [wl_labels(op_graph(a, sp), h) for a in archs]
    vocab = sorted(set().union(*rows)) if rows else []
    col = {lab: n for n, lab in enumerate(vocab)}
    X = np.zeros((len(rows), len(vocab)))
    for r, c in enumerate(rows):
        for lab, v in c.items():
            X[r, col[lab]] = v
    idx = pd.Index(index if index is not None else range(len(rows)), name="arch")
    return pd.DataFrame(X, index=idx, columns=[f"{prefix}{v}" for v in vocab])


def wl_kernel(A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
    """Normalised WL kernel ``k(a, b) = <a, b> / (|a| |b|)`` between rows of count matrices."""
    def unit(M: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(M, axis=1, keepdims=True)
        return M / np.where(n > 0, n, 1.0)

    a = unit(np.asarray(A, np.float64))
    b = a if B is None else unit(np.asarray(B, np.float64))
    return a @ b.T

"""Zero-cost encodings of NB201 cells: one-hot ops, op counts, paths and GRAF-style graph features.

None of these needs a network: they are functions of the cell's six edge ops only.

GRAF-style features follow Kadlecova et al., "Surprisingly Strong Performance Prediction with Neural Graph Features"
(ICML 2024): for every non-empty subset S of the non-zero ops, the graph that keeps only edges with an op in S, and
its number of input->output paths, shortest and longest such path, in-degree of the output node and out-degree of the
input node.
"""

from __future__ import annotations

import itertools

import numpy as np

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



#: Receptive-field growth of each op (kernel size - 1) and whether it has weights.
_RF_GROWTH = {"skip_connect": 0, "nor_conv_1x1": 0, "nor_conv_3x3": 2, "avg_pool_3x3": 2}
_PARAMETRIC = ("nor_conv_1x1", "nor_conv_3x3")


@register_encoding("pathstats", NB201SearchSpace)
def pathstats(cell: Cell) -> dict[str, float]:
    """What each input->output path does, and summaries over the live paths (22 features ``route_*``).

    The four paths of the cell are ``p0`` = edge 3 (3<-0), ``p1`` = edges 0, 4 (1<-0, 3<-1), ``p2`` = edges 1, 5
    (2<-0, 3<-2) and ``p3`` = edges 0, 2, 5 (1<-0, 2<-1, 3<-2). Per path: ``route_p<k>_live`` (no ``none`` edge),
    ``route_p<k>_convs`` (parametric ops on it: 1x1 / 3x3 convolutions; -1 when dead), ``route_p<k>_rf``
    (receptive-field growth in pixels: 2 per 3x3 conv or pool; -1 when dead). Over the live paths:
    ``route_eff_depth_max`` / ``route_eff_depth_min`` (most / fewest convolutions on one path: the effective depth
    counting parametric ops only), ``route_rf_max`` / ``route_rf_min``, ``route_bypass_paths`` (live paths made only
    of skip / pool: a weight-free route from input to output), ``route_bypass_only`` (1 when there are live paths and
    all are weight-free), ``route_conv_paths`` (live paths with a conv), ``route_pool_paths`` (with a pool),
    ``route_conv3_paths`` (with a 3x3 conv), ``route_live_paths``.
    """
    out: dict[str, float] = {}
    convs: list[int] = []
    rfs: list[int] = []
    pool_paths = conv3 = 0
    for k, path in enumerate(_PATHS):
        ops = [cell.ops[e] for e in path]
        live = "none" not in ops
        c = sum(o in _PARAMETRIC for o in ops)
        rf = sum(_RF_GROWTH.get(o, 0) for o in ops)
        out[f"route_p{k}_live"] = float(live)
        out[f"route_p{k}_convs"] = float(c) if live else -1.0
        out[f"route_p{k}_rf"] = float(rf) if live else -1.0
        if live:
            convs.append(c)
            rfs.append(rf)
            pool_paths += "avg_pool_3x3" in ops
            conv3 += "nor_conv_3x3" in ops
    out["route_live_paths"] = float(len(convs))
    out["route_eff_depth_max"] = float(max(convs, default=0))
    out["route_eff_depth_min"] = float(min(convs, default=0))
    out["route_rf_max"] = float(max(rfs, default=0))
    out["route_rf_min"] = float(min(rfs, default=0))
    out["route_bypass_paths"] = float(sum(c == 0 for c in convs))
    out["route_bypass_only"] = float(bool(convs) and max(convs) == 0)
    out["route_conv_paths"] = float(sum(c > 0 for c in convs))
    out["route_pool_paths"] = float(pool_paths)
    out["route_conv3_paths"] = float(conv3)
    return out


def path_gain(cell: Cell, gains: dict[str, float]) -> float:
    """Sum over the cell's four input->output paths of the product of the ops' scalar gains (``none`` = 0).

    The cell's response to a signal for which every op acts as a scalar (a linear model of the cell: nodes sum their
    inputs), e.g. skip = 1, pool = its response at one spatial frequency, conv = a gain.
    """
    g = {"none": 0.0, **gains}
    return float(sum(np.prod([g[cell.ops[e]] for e in path]) for path in _PATHS))


def propagate(cell: Cell, signal: float, perturbation: float, *, smooth: float, pool_noise: float,
              conv3_gain: float, conv1_gain: float = 1.0) -> tuple[float, float]:  # fmt: skip
    """Signal and perturbation power at the output of one cell, from their power at its input.

    A mean-field model of a batch-normalised cell: nodes sum their inputs (powers add); ``skip`` passes both;
    ``avg_pool_3x3`` keeps a share ``smooth`` of the (spatially smooth) signal's power and ``pool_noise`` of the
    (pixel-wise, high-frequency) perturbation's (1/9 for white noise under a 3x3 mean); a ReLU-conv-BN op outputs unit
    signal power whatever it gets (batch norm divides by the input's scale), so the perturbation leaves it scaled by
    ``gain / input signal power`` (``conv3_gain`` / ``conv1_gain``: how much of a pixel-wise perturbation the
    trained filter passes relative to the signal); ``none`` passes nothing. A node without signal stays at zero.
    """
    S = [signal, 0.0, 0.0, 0.0]
    D = [perturbation, 0.0, 0.0, 0.0]
    for (j, i), op in zip(EDGES, cell.ops):
        s, d = S[i], D[i]
        if op == "none" or s <= 0:
            continue
        if op == "skip_connect":
            S[j] += s
            D[j] += d
        elif op == "avg_pool_3x3":
            S[j] += s * smooth
            D[j] += d * pool_noise
        else:
            S[j] += 1.0
            D[j] += d / s * (conv3_gain if op == "nor_conv_3x3" else conv1_gain)
    return S[3], D[3]


#: Grids of :func:`propagation`'s model parameters (every combination is one feature: the learner weighs them).
PROPAGATION_SMOOTH: tuple[float, ...] = (1.0, 0.6, 0.3)
PROPAGATION_POOL_NOISE: tuple[float, ...] = (1 / 9, 1 / 3)
PROPAGATION_CONV3_GAIN: tuple[float, ...] = (1.0, 0.5, 0.25)
#: Cells of the NB201 network (3 stages of 5) and the positions of the residual reduction blocks between stages.
_NB201_CELLS, _REDUCTIONS = 15, (5, 10)
_DEAD = 10.0  # log perturbation-to-signal ratio of a cell whose output carries no signal (worse than any live one)
# (with signal at the output the perturbation power is positive too: every op passes some of both, so log D/S is finite)


@register_encoding("propagation", NB201SearchSpace)
def propagation(cell: Cell) -> dict[str, float]:
    """How the cell passes a small input perturbation relative to the signal (randomly-initialised mean-field model).

    ``prop_snr<L>[a,q,g]``: log(perturbation power / signal power) after the first ``L`` = 1 cell and after the
    whole network of 15 stacked copies (the two residual reduction blocks between stages re-normalise like a conv),
    from equal powers at the input, under :func:`propagate` with ``smooth=a``, ``pool_noise=q``, ``conv3_gain=g``
    over the grids :data:`PROPAGATION_SMOOTH` x :data:`PROPAGATION_POOL_NOISE` x :data:`PROPAGATION_CONV3_GAIN`
    (10 when no signal reaches the output); ``prop_logS[a]``: log signal power after the network (skip-heavy cells
    grow it). ``prop_gain[...]``: :func:`path_gain` with conv gain ``c`` in {0.5, 1, 2} and pool gain in {1 (a
    constant image), 1/3, 1/9 (a pixel-wise pattern)}, the conv-only routes (pool 0), the weight-free routes (conv
    0), and a high-frequency response (3x3 conv at 0.3 c, pool -1/9). 36 + 3 + 16 = 55 features.

    Why: PGD at a small eps measures how far a pixel-wise perturbation travels relative to the signal; skip
    connections carry it unchanged, pools damp it, and batch-normalised convs rescale it by the power of their input.
    """
    out: dict[str, float] = {}
    for a in PROPAGATION_SMOOTH:
        for q in PROPAGATION_POOL_NOISE:
            for g in PROPAGATION_CONV3_GAIN:
                S, D = 1.0, 1.0
                tag = f"[a={a:g},q={q:.2f},g={g:g}]"
                for c in range(_NB201_CELLS):
                    if c in _REDUCTIONS:
                        S, D = (1.0, D / S) if S > 0 else (0.0, 0.0)
                    S, D = propagate(cell, S, D, smooth=a, pool_noise=q, conv3_gain=g)
                    if c in (0, _NB201_CELLS - 1):
                        out[f"prop_snr{c + 1}{tag}"] = float(np.log(D / S)) if S > 0 else _DEAD
            out[f"prop_logS[a={a:g}]"] = float(np.log(S)) if S > 0 else -30.0
    for c in (0.5, 1.0, 2.0):
        for h in (1.0, 1 / 3, 1 / 9):
            out[f"prop_gain[c={c:g},pool={h:.2f}]"] = path_gain(cell, {"skip_connect": 1.0, "nor_conv_1x1": c,
                                                                       "nor_conv_3x3": c, "avg_pool_3x3": h})
        out[f"prop_gain[c={c:g},conv_only]"] = path_gain(cell, {"skip_connect": 1.0, "nor_conv_1x1": c,
                                                                "nor_conv_3x3": c, "avg_pool_3x3": 0.0})
        out[f"prop_gain[c={c:g},high_freq]"] = path_gain(cell, {"skip_connect": 1.0, "nor_conv_1x1": c,
                                                                "nor_conv_3x3": 0.3 * c, "avg_pool_3x3": -1 / 9})
    out["prop_gain[weight_free]"] = path_gain(cell, {"skip_connect": 1.0, "nor_conv_1x1": 0.0, "nor_conv_3x3": 0.0,
                                                     "avg_pool_3x3": 1.0})
    return out


from . import nb201_graf as _nb201_graf  # noqa: E402,F401  (registers GRAF's exact features, ``graf_exact``)

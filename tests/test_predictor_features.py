"""The predictor's cell features (pathstats, propagation), the WL subtree features, and rbnas predict's views."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from robustbench_nas.analysis.encodings import encode
from robustbench_nas.analysis.prediction import AUTO_CANDIDATES, feature_views, predict_heldout
from robustbench_nas.analysis.wl_kernel import op_graph, wl_features, wl_kernel, wl_labels
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.search_spaces.nb201 import EDGES, Cell, parse_arch
from robustbench_nas.search_spaces.nb201_encodings import (
    PROPAGATION_CONV3_GAIN, PROPAGATION_POOL_NOISE, PROPAGATION_SMOOTH, path_gain, propagate,
)  # fmt: skip


def cell(*ops: str) -> str:
    """A NB201 string from the six edge ops in string order (edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""
    return str(Cell(tuple(ops)))


NONE, SKIP, C1, C3, POOL = "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"
# 0 -skip-> 3 directly, and 0 -c3-> 1 -c1-> 3; the routes through node 2 are dead
TWO_ROUTES = cell(C3, NONE, NONE, SKIP, C1, NONE)
ALL_NONE = cell(*[NONE] * 6)


def test_pathstats_hand_worked():
    r = encode([TWO_ROUTES], "pathstats").iloc[0]
    assert r.shape[0] == 22
    assert (r["route_p0_live"], r["route_p0_convs"], r["route_p0_rf"]) == (1, 0, 0)  # the skip 3<-0
    assert (r["route_p1_live"], r["route_p1_convs"], r["route_p1_rf"]) == (1, 2, 2)  # c3 then c1
    assert (r["route_p2_live"], r["route_p2_convs"], r["route_p3_live"], r["route_p3_rf"]) == (0, -1, 0, -1)
    assert r["route_live_paths"] == 2 and r["route_eff_depth_max"] == 2 and r["route_eff_depth_min"] == 0
    assert r["route_rf_max"] == 2 and r["route_rf_min"] == 0 and r["route_bypass_paths"] == 1
    assert r["route_bypass_only"] == 0 and r["route_conv_paths"] == 1 and r["route_conv3_paths"] == 1
    pool_only = encode([cell(POOL, SKIP, NONE, POOL, SKIP, NONE)], "pathstats").iloc[0]
    assert pool_only["route_bypass_only"] == 1 and pool_only["route_pool_paths"] == 2
    assert pool_only["route_rf_max"] == 2 and pool_only["route_eff_depth_max"] == 0
    dead = encode([ALL_NONE], "pathstats").iloc[0]
    assert dead["route_live_paths"] == 0 and dead["route_bypass_only"] == 0


def test_path_gain_and_propagate_by_hand():
    all_skip = Cell((SKIP,) * 6)
    assert path_gain(all_skip, {SKIP: 1.0, C1: 1.0, C3: 1.0, POOL: 1.0}) == 4  # four input->output paths
    two = parse_arch(TWO_ROUTES)
    assert two.ops == (C3, NONE, NONE, SKIP, C1, NONE)
    assert path_gain(two, {SKIP: 1.0, C1: 2.0, C3: 3.0, POOL: 0.5}) == 1 + 3 * 2
    # skip passes both powers; c3 then c1 gives unit signal and the perturbation scaled by g / S at each conv
    S, D = propagate(two, 4.0, 2.0, smooth=0.5, pool_noise=0.1, conv3_gain=0.5, conv1_gain=2.0)
    # node 1: S = 1, D = 2 / 4 * 0.5 = 0.25; output: skip (4, 2) + c1 of node 1 (1, 0.25 / 1 * 2)
    assert (S, D) == pytest.approx((5.0, 2.5))
    pool = Cell((NONE, NONE, NONE, POOL, NONE, NONE))
    assert propagate(pool, 2.0, 3.0, smooth=0.6, pool_noise=1 / 9, conv3_gain=1.0) == pytest.approx((1.2, 1 / 3))
    assert propagate(Cell((NONE,) * 6), 1.0, 1.0, smooth=1, pool_noise=1, conv3_gain=1) == (0.0, 0.0)


def test_propagation_whole_network_closed_forms():
    # one op on the direct edge 3<-0: the ratio after L cells has a closed form (reductions keep D/S)
    def one(op: str) -> pd.Series:
        return encode([cell(NONE, NONE, NONE, op, NONE, NONE)], "propagation").iloc[0]

    skip, pool, conv = one(SKIP), one(POOL), one(C3)
    assert len(skip) == 55
    for a in PROPAGATION_SMOOTH:
        for q in PROPAGATION_POOL_NOISE:
            for g in PROPAGATION_CONV3_GAIN:
                tag = f"[a={a:g},q={q:.2f},g={g:g}]"
                assert skip[f"prop_snr1{tag}"] == pytest.approx(0, abs=1e-9)
                assert skip[f"prop_snr15{tag}"] == pytest.approx(0, abs=1e-9)
                assert pool[f"prop_snr1{tag}"] == pytest.approx(math.log(q / a))
                assert pool[f"prop_snr15{tag}"] == pytest.approx(15 * math.log(q / a))
                assert conv[f"prop_snr15{tag}"] == pytest.approx(15 * math.log(g))
        assert pool[f"prop_logS[a={a:g}]"] == pytest.approx(5 * math.log(a), abs=1e-9)  # last stage: 5 cells
    dead = encode([ALL_NONE], "propagation").iloc[0]
    assert all(dead[c] == 10.0 for c in dead.index if c.startswith("prop_snr"))
    assert all(dead[c] == 0.0 for c in dead.index if c.startswith("prop_gain"))


def _swap_12(s: str) -> str:
    """The cell with intermediate nodes 1 and 2 exchanged (isomorphic when edge 2<-1 is none)."""
    ops = dict(zip(EDGES, parse_arch(s).ops))
    assert ops[(2, 1)] == NONE
    return cell(ops[(2, 0)], ops[(1, 0)], NONE, ops[(3, 0)], ops[(3, 2)], ops[(3, 1)])


def test_isomorphic_cells_share_propagation_and_wl():
    a = cell(C3, POOL, NONE, SKIP, C1, SKIP)
    b = _swap_12(a)
    assert a != b
    pa, pb = encode([a, b], "propagation").to_numpy()
    assert np.allclose(pa, pb)
    sa, sb = encode([a, b], "pathstats").iloc
    summary = [c for c in sa.index if not c.startswith("route_p")]
    assert sa[summary].equals(sb[summary])
    assert wl_labels(op_graph(a), 3) == wl_labels(op_graph(b), 3)


def test_op_graph_drops_dead_edges():
    # 1<-0 conv1x1 and 3<-2 conv3x3 lead nowhere / come from nowhere: only the direct skip is left
    g = op_graph(cell(C1, NONE, NONE, SKIP, NONE, C3))
    assert g.labels == ("in", "out", SKIP) and g.preds == ((), (2,), (0,))
    assert op_graph(ALL_NONE).labels == ("in", "out")
    with pytest.raises(ValueError):
        wl_labels(g, -1)


def test_wl_labels_hand_worked():
    g = op_graph(TWO_ROUTES)  # in -> c3 -> c1 -> out, in -> skip -> out
    got = wl_labels(g, 1)
    assert got[C3] == got[C1] == got[SKIP] == 1 and got["in"] == 1 and got["out"] == 1
    assert got[f"{C3}(in)"] == 1 and got[f"{C1}({C3})"] == 1 and got[f"out({C1},{SKIP})"] == 1
    assert sum(got.values()) == 2 * len(g.labels)


@pytest.mark.filterwarnings("ignore:The hashes produced for directed graphs changed")
def test_wl_partition_matches_networkx():
    # two cells get the same WL count vector iff networkx's WL hash of their graphs agrees (networkx >= 3.5 refines
    # by in- and out-neighbours, ours by predecessors only: on NB201 op graphs the partitions still coincide)
    nx = pytest.importorskip("networkx")
    space = get_search_space("nb201")
    idx = np.random.default_rng(0).choice(space.num_cells, 400, replace=False)
    archs = [space.arch_str(int(i)) for i in idx]
    W = wl_features(archs, 2)
    ours = pd.Series([hash(r.tobytes()) for r in W.to_numpy()])
    theirs = []
    for a in archs:
        g = op_graph(a)
        G = nx.DiGraph()
        G.add_nodes_from((k, {"label": lab}) for k, lab in enumerate(g.labels))
        G.add_edges_from((k, p) for k, ps in enumerate(g.preds) for p in ps)  # k -> p: neighbours = predecessors
        theirs.append(nx.weisfeiler_lehman_graph_hash(G, node_attr="label", iterations=2))
    theirs = pd.Series(theirs)
    same_ours = ours.to_numpy()[:, None] == ours.to_numpy()[None]
    same_theirs = theirs.to_numpy()[:, None] == theirs.to_numpy()[None]
    assert (same_ours == same_theirs).all() and not same_ours.all()


def test_wl_kernel_normalised():
    W = wl_features([TWO_ROUTES, ALL_NONE, cell(*[C3] * 6)], 2).to_numpy()
    K = wl_kernel(W)
    assert np.allclose(np.diag(K), 1) and np.allclose(K, K.T) and (K >= 0).all() and (K <= 1 + 1e-12).all()
    assert np.allclose(wl_kernel(W[:1], W), K[:1])
    # by hand: cosine of the count vectors
    a, b = W[0], W[2]
    assert K[0, 2] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_feature_views_signal_and_fallback():
    prop = next(iter(get_search_space("nb201").encode_one(0, ["propagation"])))  # a real propagation column
    cols = ["params", "flops", "count_none", "route_p0_live", prop, "e0(1<-0)=none", "path=c3"]
    v = feature_views(cols)
    assert [cols[i] for i in v["signal"]] == ["params", "flops", "route_p0_live", prop]
    assert [cols[i] for i in v["compact"]] == cols[:5] and list(v["all"]) == list(range(7))
    plain = feature_views(["a", "b"])  # no route / propagation features: signal = compact
    assert list(plain["signal"]) == list(plain["compact"]) == [0, 1]
    assert {v for ms in AUTO_CANDIDATES.values() for _m, v in ms} <= set(v)


def test_predict_with_cell_features_is_deterministic_and_learns():
    # a target driven by the propagation model: the signal view must find it, and the same seed gives the same numbers
    space = get_search_space("nb201")
    idx = np.random.default_rng(3).choice(space.num_cells, 300, replace=False)
    X = encode([int(i) for i in idx], ["opcount", "pathstats", "propagation"])
    y = pd.Series(-X["prop_snr15[a=0.6,q=0.33,g=0.5]"].to_numpy() + 0.3 * X["route_rf_max"].to_numpy(),
                  index=X.index, name="t")  # fmt: skip
    r1 = predict_heldout(X, y, train_size=80, repeats=2, seed=0)
    r2 = predict_heldout(X, y, train_size=80, repeats=2, seed=0)
    same = json.dumps(r1, sort_keys=True) == json.dumps(r2, sort_keys=True)  # NaN-safe (an ensemble has no R^2)
    assert same and r1["spearman_mean"] > 0.9 and set(r1["models"]) <= set(AUTO_CANDIDATES)


def test_feature_views_follow_the_space_declarations():
    """The views come from the spaces' declared encodings: on every NB201 column they select what the former
    hard-coded NB201 name rules selected (one-hot ``e<k>(j<-i)=op`` / ``path=`` left out of compact; ``route_`` /
    ``prop_`` in signal), and a space without those encodings declares nothing."""
    nb = get_search_space("nb201")
    cols = ["params", "flops"] + nb.encoding_columns("all")
    v = feature_views(cols)
    old_sparse = [c.startswith("path=") or (c.startswith("e") and "=" in c and "(" in c) for c in cols]
    # GRAF's exact features (the baseline's, graf_exact) stay out of our views but for the ``union`` view
    graf = [c.startswith("graf:") for c in cols]
    assert any(graf)
    assert [cols[i] for i in v["compact"]] == [c for c, s, g in zip(cols, old_sparse, graf) if not (s or g)]
    assert [cols[i] for i in v["union"]] == [c for c, s in zip(cols, old_sparse) if not s]
    assert [cols[i] for i in v["graf"]] == [c for c, g in zip(cols, graf) if g or c in ("params", "flops")]
    assert [cols[i] for i in v["signal"]] == [c for c in cols if c.startswith(("route_", "prop_", "params", "flops"))]
    only_sss = feature_views(cols, spaces=["nats-sss"])
    not_graf = [i for i, g in enumerate(graf) if not g]  # the baseline's columns are set apart in every space
    assert list(only_sss["compact"]) == list(only_sss["signal"]) == not_graf


def test_wl_graph_comes_from_the_space():
    """op_graph reads the space's cell DAG: an index and its string give one graph; a space without a cell graph
    is a clear error."""
    nb = get_search_space("nb201")
    assert op_graph(1462) == op_graph(nb.arch_str(1462)) == op_graph(nb.decode(1462), nb)
    assert nb.cell_dag(0).output == 3 and all(op != "none" for *_, op in nb.cell_dag(1462).edges)
    with pytest.raises(ValueError, match="no cell graph"):
        op_graph("8:8:8:8:8", "nats-sss")

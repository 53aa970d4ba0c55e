"""GRAF's exact NB201 features (encoding ``graf_exact``) against cells worked out by hand.

Node numbers in the comments are GRAF's (1 = input, 4 = output; ours + 1). Every expected value below was read off
the drawn cell, not computed by the code under test.
"""

from __future__ import annotations

import itertools

import pytest

from robustbench_nas.analysis.encodings import encode, list_encodings

ALL_C3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
# 1 -c3-> 2 -skip-> 3 -pool-> 4; (1,3), (1,4), (2,4) are none
CHAIN = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"
# (1,2)=c1, (1,3)=none, (2,3)=none, (1,4)=skip, (2,4)=none, (3,4)=c3
MIXED = "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"

OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")


def _f(cell: str) -> dict[str, float]:
    return encode([cell], "graf_exact").iloc[0].to_dict()


def _s(*ops: str) -> str:
    """GRAF's subset tag: the ops in GRAF's op order."""
    return "(" + ",".join(o for o in OPS if o in ops) + ")"


def test_191_features_in_grafs_order_and_registered():
    g = _f(CHAIN)
    assert "graf_exact" in list_encodings()
    # 5 op counts + 31 subsets x (min path, max path, 4 degrees)
    assert len(g) == 191 == 5 + 31 * 6
    names = list(g)
    assert names[:5] == [f"graf:op_count_{o}" for o in OPS]
    subsets = [c for k in range(1, 6) for c in itertools.combinations(OPS, k)]
    assert names[5:36] == [f"graf:min_path_len_{_s(*s)}" for s in subsets]
    assert names[36:67] == [f"graf:max_op_on_path_{_s(*s)}" for s in subsets]
    assert names[67:71] == [f"graf:node_degree_(skip_connect)_{k}" for k in ("in_degree", "out_degree", "avg_in",
                                                                              "avg_out")]


def test_op_counts():
    g = _f(CHAIN)
    assert [g[f"graf:op_count_{o}"] for o in OPS] == [1, 3, 1, 0, 1]
    assert _f(ALL_C3)["graf:op_count_nor_conv_3x3"] == 6 and _f(ALL_NONE)["graf:op_count_none"] == 6


def test_min_path_len():
    c = _f(CHAIN)
    assert c[f"graf:min_path_len_{_s('none')}"] == 1  # a none edge is an edge: (1,4) is none
    assert c[f"graf:min_path_len_{_s('skip_connect', 'nor_conv_3x3', 'avg_pool_3x3')}"] == 3  # 1-2-3-4
    assert c[f"graf:min_path_len_{_s('nor_conv_3x3')}"] == 6  # no path: GRAF's max_val = number of edges
    assert c[f"graf:min_path_len_{_s(*OPS)}"] == 1
    m = _f(MIXED)
    assert m[f"graf:min_path_len_{_s('skip_connect')}"] == 1  # (1,4)
    assert m[f"graf:min_path_len_{_s('none', 'nor_conv_3x3')}"] == 2  # 1-3-4
    assert m[f"graf:min_path_len_{_s('nor_conv_1x1', 'nor_conv_3x3')}"] == 6  # 1-2 then stuck
    assert m[f"graf:min_path_len_{_s('nor_conv_1x1', 'none', 'nor_conv_3x3')}"] == 2  # 1-2-4 or 1-3-4
    a = _f(ALL_C3)
    assert a[f"graf:min_path_len_{_s('nor_conv_3x3')}"] == 1 and a[f"graf:min_path_len_{_s('skip_connect')}"] == 6


def test_max_op_on_path():
    c = _f(CHAIN)
    assert c[f"graf:max_op_on_path_{_s('skip_connect', 'nor_conv_3x3', 'avg_pool_3x3')}"] == 3
    assert c[f"graf:max_op_on_path_{_s('none')}"] == 1  # (1,4) only
    assert c[f"graf:max_op_on_path_{_s('none', 'nor_conv_3x3')}"] == 2  # 1-2 (c3), 2-4 (none)
    assert c[f"graf:max_op_on_path_{_s('nor_conv_3x3')}"] == -1  # no path
    m = _f(MIXED)
    assert m[f"graf:max_op_on_path_{_s('nor_conv_1x1', 'none', 'nor_conv_3x3')}"] == 3  # 1-2-3-4
    assert m[f"graf:max_op_on_path_{_s('none', 'nor_conv_3x3')}"] == 2  # 1-3-4
    assert m[f"graf:max_op_on_path_{_s('skip_connect')}"] == 1
    n = _f(ALL_NONE)
    assert n[f"graf:max_op_on_path_{_s('none')}"] == 3 and n[f"graf:max_op_on_path_{_s('skip_connect')}"] == -1


def test_node_degree():
    c = _f(CHAIN)
    t = f"graf:node_degree_{_s('none')}"
    # GRAF's "in_degree" = none-edges leaving node 1: (1,3), (1,4); "out_degree" = entering node 4: (1,4), (2,4)
    assert (c[f"{t}_in_degree"], c[f"{t}_out_degree"], c[f"{t}_avg_in"], c[f"{t}_avg_out"]) == (2, 2, 0.75, 0.75)
    t = f"graf:node_degree_{_s('nor_conv_3x3')}"
    assert (c[f"{t}_in_degree"], c[f"{t}_out_degree"], c[f"{t}_avg_in"]) == (1, 0, 0.25)
    t = f"graf:node_degree_{_s('avg_pool_3x3')}"
    assert (c[f"{t}_in_degree"], c[f"{t}_out_degree"]) == (0, 1)
    m = _f(MIXED)
    t = f"graf:node_degree_{_s('none')}"
    assert (m[f"{t}_in_degree"], m[f"{t}_out_degree"], m[f"{t}_avg_out"]) == (1, 1, 0.75)
    a = _f(ALL_C3)
    t = f"graf:node_degree_{_s('nor_conv_3x3', 'skip_connect')}"
    assert (a[f"{t}_in_degree"], a[f"{t}_out_degree"], a[f"{t}_avg_in"], a[f"{t}_avg_out"]) == (3, 3, 1.5, 1.5)


@pytest.mark.parametrize("cell", [ALL_C3, ALL_NONE, CHAIN, MIXED])
def test_against_networkx_as_grafs_code_uses_it(cell):
    """GRAF computes the paths with networkx on the edges whose op is allowed; do the same, independently."""
    nx = pytest.importorskip("networkx")
    edge_nodes = ((1, 2), (1, 3), (2, 3), (1, 4), (2, 4), (3, 4))  # our string order, GRAF node numbers
    ops = [tok.split("~")[0] for part in cell.split("+") for tok in part.strip("|").split("|")]
    g = _f(cell)
    for k in range(1, 6):
        for s in itertools.combinations(OPS, k):
            G = nx.DiGraph([e for e, o in zip(edge_nodes, ops) if o in s])
            try:
                lo = nx.shortest_path_length(G, 1, 4)
                hi = len(nx.shortest_path(G, 1, 4, weight=lambda u, v, d: -1, method="bellman-ford")) - 1
            except (nx.NodeNotFound, nx.NetworkXNoPath):
                lo, hi = 6, -1
            assert g[f"graf:min_path_len_{_s(*s)}"] == lo and g[f"graf:max_op_on_path_{_s(*s)}"] == hi, s

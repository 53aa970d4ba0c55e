"""Cell encodings: hand-worked cells, invariants, and params/FLOPs against networks built and counted directly."""

from __future__ import annotations

import numpy as np
import pytest

from robustbench_nas.analysis.encodings import arch_costs, encode, list_encodings
from robustbench_nas.models import build_model, count_flops, count_params
from robustbench_nas.search_spaces import get_search_space

ALL_C3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
CHAIN = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"  # 0 -c3-> 1 -skip-> 2 -pool-> 3
DEAD = "|nor_conv_1x1~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"  # edges 1<-0, 3<-2 are dead


def test_onehot_and_counts():
    X = encode([ALL_C3, CHAIN], ["onehot", "opcount"])
    onehot = X[[c for c in X.columns if c.startswith("e")]]
    assert onehot.shape[1] == 30 and (onehot.sum(axis=1) == 6).all()
    assert X.iloc[0]["count_nor_conv_3x3"] == 6 and X.iloc[1]["count_none"] == 3
    assert X.iloc[1]["e2(2<-1)=skip_connect"] == 1 and X.iloc[1]["e2(2<-1)=none"] == 0


def test_live_counts_ignore_dead_edges():
    X = encode([DEAD], "opcount").iloc[0]
    # only the direct 0->3 skip is on a live path: the conv1x1 on 1<-0 and conv3x3 on 3<-2 lead nowhere
    assert X["count_nor_conv_1x1"] == 1 and X["live_nor_conv_1x1"] == 0
    assert X["count_nor_conv_3x3"] == 1 and X["live_nor_conv_3x3"] == 0
    assert X["live_skip_connect"] == 1


def test_graf_hand_worked():
    g = encode([ALL_C3, ALL_NONE, CHAIN], "graf")
    a, n, c = g.iloc[0], g.iloc[1], g.iloc[2]
    assert a["npaths[c3]"] == 4 and a["minlen[c3]"] == 1 and a["maxlen[c3]"] == 3
    assert a["indeg_out[c3]"] == 3 and a["outdeg_in[c3]"] == 3 and a["npaths[skip]"] == 0
    assert (n == 0).all()
    assert c["npaths[skip+c3+pool]"] == 1 and c["minlen[skip+c3+pool]"] == 3
    assert c["npaths[skip+c3]"] == 0 and c["indeg_out[pool]"] == 1 and c["outdeg_in[c3]"] == 1


def test_path_encoding():
    p = encode([CHAIN, ALL_C3], "path")
    assert p.shape[1] == 84
    assert p.iloc[0].sum() == 1 and p.iloc[0]["path=c3-skip-pool"] == 1
    # binary presence: the two length-2 paths 0-1-3 and 0-2-3 share the sequence c3-c3
    assert p.iloc[1].sum() == 3 and p.iloc[1][["path=c3", "path=c3-c3", "path=c3-c3-c3"]].sum() == 3


def test_index_string_and_unknown_kind():
    space = get_search_space("nb201")
    X1 = encode([space.index_of(CHAIN)], "all")
    X2 = encode([CHAIN], "all")
    assert X1.equals(X2) and X1.index[0] == space.index_of(CHAIN)
    assert encode([CHAIN], ["all"]).equals(X2)
    assert "all" in list_encodings()
    with pytest.raises(ValueError, match="unknown encoding"):
        encode([CHAIN], "bogus")


def test_arch_costs_equal_direct_counts():
    space = get_search_space("nb201")
    rng = np.random.default_rng(0)
    idx = [int(i) for i in rng.choice(space.num_cells, 5, replace=False)] + [space.index_of(DEAD)]
    got = arch_costs(idx, C=4, N=1)
    for i in idx:
        m = build_model(i, C=4, N=1)
        f = count_flops(m)
        assert got.loc[i, "params"] == count_params(m)
        assert got.loc[i, "flops"] == pytest.approx(f.nb201 / 1e6, abs=1e-9)
        assert got.loc[i, "flops_plain"] == pytest.approx(f.plain / 1e6, abs=1e-9)


def test_arch_costs_published_all_conv3():
    # NAS-Bench-201's published numbers for the all-3x3 cell (CIFAR-10 head): 1.531546 M params, 222.860992 M FLOPs
    c = arch_costs([ALL_C3]).iloc[0]
    assert c["params"] == 1531546 and c["flops"] == pytest.approx(222.860992, abs=1e-9)

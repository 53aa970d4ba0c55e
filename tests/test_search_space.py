"""NB201 search space: index order and isomorphism against the published meta.json; strings; sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustbench_nas.search_spaces import (
    OPS,
    ArchitectureError,
    Cell,
    get_search_space,
    isomorphism_key,
    list_search_spaces,
    parse_arch,
)

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return get_search_space("nb201")


def test_registry():
    assert "nb201" in list_search_spaces()
    assert get_search_space("NAS-Bench-201") is get_search_space("nb201")
    with pytest.raises(KeyError, match="unknown search space"):
        get_search_space("darts-xyz")


def test_counts(space):
    assert space.num_cells == 15625 == len(OPS) ** 6
    assert space.num_unique == 6466
    assert len(set(space.arch_str(i) for i in range(space.num_cells))) == 15625


def test_order_and_isomorphism_match_published_meta(space, jung2023_root):
    meta = json.loads((jung2023_root / "meta.json").read_text())["ids"]
    assert len(meta) == 15625
    for i in range(15625):
        entry = meta[str(i)]
        assert space.arch_str(i) == entry["nb201-string"], i
        assert space.uid(i) == int(entry["isomorph"]), i
        assert space.index_of(entry["nb201-string"]) == i


def test_uid_is_smallest_index_of_its_class(space):
    uids = space.uid_table()
    assert np.all(uids <= np.arange(15625))
    assert np.all(uids[uids] == uids)  # a uid is its own representative
    assert space.unique_indices() == sorted(set(uids.tolist()))


def test_isomorphism_rule_examples():
    # Edge order does not matter where it commutes: 3<-0 conv and 3<-1 skip with node1 = skip(0).
    a = parse_arch("|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|")
    b = parse_arch("|skip_connect~0|+|none~0|none~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|")
    assert isomorphism_key(a) == isomorphism_key(b)
    # Anything reaching the output only through a zero node is zero: node 1 = none -> its subtree vanishes.
    c = parse_arch("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    d = parse_arch("|none~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|skip_connect~2|")
    # By hand: node 1 = "#"; node 2 = terms {"#", "#"} -> "#+#" (the published rule does not collapse it to "#");
    # node 3 = terms {"#", "#", skip("#+#")} -> "#+#+#+#". Both cells are the zero function and share the key.
    assert isomorphism_key(c) == "#+#+#+#" == isomorphism_key(d)
    # Different functions are different classes.
    assert isomorphism_key(parse_arch(ALL_3X3)) != isomorphism_key(parse_arch(ALL_3X3.replace("3x3~2", "1x1~2")))


@pytest.mark.parametrize("index", [0, 1, 1462, 15624])
def test_string_round_trip(space, index):
    s = space.arch_str(index)
    cell = parse_arch(s)
    assert str(cell) == s
    assert space.index_of(cell) == index == space.index_of(str(index))
    assert Cell.from_code(cell.code) == cell


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 nodes"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 inputs"),
        ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "input 0 names node 1"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "enclosed"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "not 'op~input'"),
    ],
)
def test_malformed_strings(bad, msg):
    with pytest.raises(ArchitectureError, match=msg):
        parse_arch(bad)


def test_bad_index(space):
    with pytest.raises(ArchitectureError, match="out of range"):
        space.index_of(15625)
    with pytest.raises(ArchitectureError):
        space.index_of(3.5)


def test_sampling_mutation_neighbourhood(space):
    a = space.sample(20, seed=3)
    assert a == space.sample(20, seed=3) and len(set(a)) == 20
    assert set(a) <= set(space.unique_indices())
    assert a != space.sample(20, seed=4)
    nb = space.neighbours(1462)
    assert len(nb) == 6 * 4 and len(set(nb)) == 24 and 1462 not in nb
    base = parse_arch(space.arch_str(1462)).ops
    for j in nb:
        assert sum(x != y for x, y in zip(base, parse_arch(space.arch_str(j)).ops)) == 1
    rng = np.random.default_rng(0)
    assert all(space.mutate(1462, rng) in nb for _ in range(50))
    with pytest.raises(ValueError):
        space.sample(7000, seed=0)

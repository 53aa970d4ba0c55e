"""The committed DARTS proxy tables agree with the space: indices, strings, names and the closed-form costs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from robustbench_nas.search_spaces import get_search_space

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
SPACE = get_search_space("darts")


def _rows(name: str) -> list[dict[str, str]]:
    with (RESULTS / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_all16_table_is_consistent_with_the_space():
    rows = _rows("darts_nb301_proxies_all16.csv")
    sampled = [int(i) for i in SPACE.sample(40, seed=0)]
    assert len(rows) >= 15
    seen = set()
    for row in rows:
        index = int(row["index"])
        assert index not in seen  # the driver skips done genotypes: no duplicates
        seen.add(index)
        assert row["engine"] in ("shared", "fast"), row["engine"]
        assert SPACE.index_of(row["arch_str"]) == index and SPACE.arch_str(index) == row["arch_str"]
        if row["name"]:
            assert SPACE.index_of(row["name"]) == index  # a published genotype, under its own name
        else:
            assert index in sampled  # one of the 40 sampled with seed 0
        # params (M) and FLOPs (M) as rbnas proxies measured them on the built network = the closed form at NB301's size
        cost = SPACE.cost(index, 10, (3, 32, 32), C=32, layers=8)
        assert float(row["params"]) == pytest.approx(cost.params / 1e6, abs=1e-6)
        assert float(row["flops"]) == pytest.approx(cost.flops.published / 1e6, abs=1e-6)
    # the shared-engine rows are the first 15 sampled genotypes (made before the fast engine existed)
    shared = sorted(int(r["index"]) for r in rows if r["engine"] == "shared")
    assert shared == sorted(sampled)[:15]


def test_all16_agrees_with_the_40_network_table():
    cheap = {r["arch_str"]: r for r in _rows("darts_nb301_proxies_40.csv")}
    for row in _rows("darts_nb301_proxies_all16.csv"):
        if row["name"]:
            continue
        other = cheap[row["arch_str"]]
        for col in ("params", "flops"):
            assert float(row[col]) == pytest.approx(float(other[col]), abs=1e-6)
        # synflow's seeded data-free pass is the same computation in both tables (relative: values reach 1e40)
        assert float(row["synflow"]) == pytest.approx(float(other["synflow"]), rel=1e-4)

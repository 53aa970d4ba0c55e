"""The committed DARTS proxy tables agree with the space (indices, strings, names, closed-form costs), hold every
genotype the issue asks for, and a row reproduces bit for bit through the command that made it."""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import pytest
import torch

from robustbench_nas.search_spaces import get_search_space

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
NPZ = REPO.parent / "shared" / "data" / "cifar10_test.npz"
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
        assert row["device"] == "unrecorded" or row["device"].startswith("cpu AVX"), row["device"]
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


def _driver():
    """docs/results/darts_nb301_proxies_all16.py, the script that made the table, as a module."""
    spec = importlib.util.spec_from_file_location("darts_all16_driver", RESULTS / "darts_nb301_proxies_all16.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_all16_table_holds_the_40_sampled_and_the_named_genotypes():
    rows = _rows("darts_nb301_proxies_all16.csv")
    driver = _driver()
    assert list(rows[0])[: len(driver.KEY_COLUMNS)] == list(driver.KEY_COLUMNS)
    assert sorted(int(r["index"]) for r in rows if not r["name"]) == sorted(driver.sampled_genotypes())
    named = {r["name"]: int(r["index"]) for r in rows if r["name"]}
    assert set(named) == {"DARTS_V1", "DARTS_V2", "PC_DARTS", "PDARTS"}
    # every value of every proxy is a finite number: no genotype failed silently
    for row in rows:
        for col in list(row)[len(driver.KEY_COLUMNS):]:
            assert float(row[col]) == float(row[col]) and abs(float(row[col])) != float("inf"), (row["index"], col)


@pytest.mark.slow
@pytest.mark.skipif(not NPZ.is_file(), reason="../shared/data/cifar10_test.npz not present")
def test_a_row_of_this_cpu_class_reproduces_bit_for_bit_from_its_command():
    """The cheapest fast-engine row computed on this machine's CPU class, recomputed by the driver's own
    ``rbnas proxies`` command line (NB301 size, pinned images, seed 0, one thread): every value's printed digits
    (Python's repr, i.e. every bit) equal the committed ones."""
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli
    from robustbench_nas.utils import device_label

    here = device_label("cpu")
    mine = [r for r in _rows("darts_nb301_proxies_all16.csv") if r["device"] == here and r["engine"] == "fast"]
    if not mine:
        pytest.skip(f"no row of the DARTS table was computed on this CPU class ({here})")
    row = min(mine, key=lambda r: float(r["flops"]))
    driver = _driver()
    args = driver.proxies_command(row["name"] or row["index"], "fast")[1:]
    args = [str(NPZ) if a.endswith("cifar10_test.npz") else a for a in args]
    prev = torch.get_num_threads()
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        torch.set_num_threads(prev)
    assert result.exit_code == 0, result.output
    got = next(csv.DictReader(io.StringIO(result.stdout)))
    assert got["arch_str"] == row["arch_str"]
    for col in got:
        assert got[col] == row[col], (row["index"], col, got[col], row[col])

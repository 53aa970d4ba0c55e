"""CLI contracts of `rbnas space` and `rbnas data`."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from robustbench_nas.cli.main import cli


def run(*args: str):
    res = CliRunner().invoke(cli, list(args))
    return res


def test_space_count_json():
    res = run("space", "count", "--json")
    assert res.exit_code == 0
    assert json.loads(res.output) == {"cells": 15625, "unique": 6466, "functions": 4660}


def test_space_show_json_by_string_and_index():
    a = json.loads(run("space", "show", "1462", "--json").output)
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    b = json.loads(run("space", "show", s, "--json").output)
    assert a == b
    assert a["index"] == 1462 and a["uid"] == 1462 and a["arch_str"] == s
    assert a["params"] == 1.531546 and a["flops"] == 222.860992


def test_space_list_unique_csv():
    res = run("space", "list", "--unique", "--limit", "4", "--format", "csv", "--no-progress")
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["uid"] == r["index"] for r in rows)
    assert set(rows[0]) >= {"index", "arch_str", "uid", "params", "flops"}


def test_space_show_errors():
    res = run("space", "show", "|nor_conv_3x3~0|")
    assert res.exit_code == 2 and "malformed NB201 string" in res.output
    res = run("space", "show", "99999")
    assert res.exit_code == 2 and "out of range" in res.output


def test_data_info():
    res = run("data", "info", "--json")
    info = json.loads(res.output)
    assert info["name"] == "digits" and info["splits"] == {"train": 1197, "val": 300, "test": 300}
    res = run("data", "info", "--dataset", "cifar10", "--data-root", "/nonexistent")
    assert res.exit_code == 2 and "cifar-10-batches-py" in res.output

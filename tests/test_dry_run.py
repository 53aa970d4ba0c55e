"""`rbnas run --dry-run --json`: the units a command would run and their storage blocks, creating nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.pipelines import get_protocol
from robustbench_nas.pipelines.leases import LeaseBook
from robustbench_nas.pipelines.runner import prepare_store
from robustbench_nas.storage import DONE

STAGES = ["info", "proxies", "train", "clean", "adversarial", "corruptions", "measures"]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def dry(*args: str) -> dict:
    r = CliRunner().invoke(cli, ["run", *args, "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_dry_run_of_a_new_store_lists_the_56_units_and_creates_nothing(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # nothing in the working folder either (e.g. a log file)
    try:
        plan = dry("--protocol", "tiny", "--store", str(tmp_path / "new.zarr"))
        per_task = dry("--protocol", "tiny", "--store", str(tmp_path / "new.zarr"), "--shard-cells", "3",
                       "--task", "1/3")
    finally:
        os.chdir(cwd)
    assert snapshot(tmp_path) == before == {}
    assert not plan["exists"] and plan["n_cells"] == 8 and plan["n_blocks"] == 1 and plan["blocks"] == [0]
    assert plan["n_units"] == len(plan["units"]) == 56 == 8 * len(STAGES)
    cells = sorted({u["arch"] for u in plan["units"]})
    assert len(cells) == 8 and {u["stage"] for u in plan["units"]} == set(STAGES)
    assert {(u["arch"], u["seed"], u["stage"]) for u in plan["units"]} == {(c, 0, s) for c in cells for s in STAGES}
    # 8 cells in blocks of 3 -> blocks (3, 3, 2) cells, one per task; task 1 has the uid-sorted cells 3..5
    assert per_task["task"] == "1/3" and per_task["blocks"] == [1] and per_task["cells"] == 3
    assert sorted({u["arch"] for u in per_task["units"]}) == cells[3:6]
    assert all(u["block"] == 1 for u in per_task["units"]) and per_task["n_units"] == 21
    assert per_task["task_blocks"] == {"0/3": {"blocks": [0], "cells": 3}, "1/3": {"blocks": [1], "cells": 3},
                                       "2/3": {"blocks": [2], "cells": 2}}


def test_dry_run_of_an_existing_store_lists_what_is_left_and_changes_nothing(tmp_path: Path) -> None:
    p = get_protocol("tiny", archs=[6, 1462, 12000], stages=("info", "proxies"))
    store, _ = prepare_store(tmp_path / "s.zarr", p, shard_cells=2)
    first = store.spec.archs[0]
    store.write_cell(first, 0, {}, stage="info")  # one unit done (committed), the rest pending
    before = snapshot(tmp_path)
    with LeaseBook(store.path) as other:  # another run holds the last cell
        other.acquire([store.spec.archs[2]])
        before = snapshot(tmp_path)
        plan = dry("--protocol", "tiny", "--archs", "6,1462,12000", "--set", 'stages=["info", "proxies"]',
                   "--store", str(store.path))
        assert snapshot(tmp_path) == before
    assert plan["exists"] and plan["shard_cells"] == 2 and plan["n_blocks"] == 2
    units = {(u["arch"], u["stage"]): u for u in plan["units"]}
    assert (first, "info") not in units and plan["n_units"] == 5
    assert units[(store.spec.archs[2], "info")]["block"] == 1 and units[(first, "proxies")]["block"] == 0
    assert units[(store.spec.archs[2], "proxies")]["leased_by"] == other.holder + "@" + other.host
    assert plan["leased_units"] == 2
    # the store itself said the same
    assert store.status()[0, 0, store.stage_pos("info")] == DONE
    # --force-stage info: the done unit is planned again; another block size than the store's is refused
    assert dry("--store", str(store.path), "--force-stage", "info")["n_units"] == 6
    r = CliRunner().invoke(cli, ["run", "--store", str(store.path), "--shard-cells", "3", "--dry-run"])
    assert r.exit_code == 2 and "2 cells per storage block" in r.output

"""Several client processes (``--task i/n``) writing one sharded store: no lost update, kill + resume exact.

zarr-python loses updates silently when several writers each write part of one shard (zarr-python issue 3682);
the store's write path (journal + whole-shard commits under one lock) must not. Here 4 real processes write
interleaved cells (every shard gets results from every process) in random order, one is SIGKILLed mid-run, a fifth
resumes, and every value is compared with what was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_four_clients_random_order_one_killed_then_resumed(tmp_path: Path) -> None:
    from benchmarks.bench_store import jung2023_spec, simulate_run, synthetic_results

    spec = jung2023_spec(120)
    data = synthetic_results(spec, seed=4)
    sim = simulate_run(tmp_path, spec, data, n_clients=4, seed=7, shard_cells=32)
    assert sim["killed"], sim
    assert sim["exit_codes"][1:] == [0, 0, 0, 0], sim
    assert sim["status_all_done"] and sim["agree"], sim
    assert sim["journal_left"] == 0
    assert sim["files"] < 40 * 4 + 60  # ~40 arrays x 4 shards + metadata, not one file per cell


def test_compare_catches_a_lost_update(tmp_path: Path) -> None:
    """The comparison the simulated run relies on fails when one cell's value is lost (it can fail)."""
    from benchmarks.bench_store import _store_matches, jung2023_spec, synthetic_results, write_pipeline
    from robustbench_nas.storage import open_dataset

    spec = jung2023_spec(40)
    data = synthetic_results(spec, seed=1)
    store = write_pipeline(tmp_path / "s.zarr", spec, data, list(range(40)), order_seed=3)
    back = {k: v.values for k, v in open_dataset(store.path).load().data_vars.items()}
    assert _store_matches(back, data)
    lost = {k: v.copy() for k, v in data.items()}
    lost["adv_confusion"][17, 0, 1, 2, 3, 3] += 1  # one number of one cell differs
    assert not _store_matches(back, lost)
    assert np.isnan(open_dataset(store.path).clean_accuracy.values).sum() == 0

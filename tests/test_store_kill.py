"""Kill the writer at random points of its commits: a re-run always leaves the store an uninterrupted run leaves.

The writer is the pipeline's own write path (:class:`robustbench_nas.pipelines.runner.ResultWriter`: results journalled
in batches, whole blocks committed as they complete, what ``prepare_store`` commits first on a resume) fed with
synthetic results of a small store (6 cells in 3 shard blocks, 2 seeds, 4 stages: 42 units). A forked child process
runs it with every file-system step that commits data hooked -- each ``os.write`` of a journal append, ``os.fsync``,
``os.replace`` / ``os.rename`` and ``os.unlink`` -- and ends itself with ``os._exit`` (no ``finally``, no flush,
as SIGKILL would) just before or just after the chosen step (before a journal write: after half of its bytes, a torn
record). Then a re-run in a fresh writer finishes the job, and every array (values and bookkeeping), every
coordinate and the set of files must equal those of an uninterrupted run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustbench_nas.pipelines.runner import ResultWriter  # imported before forking: children start at once
from robustbench_nas.storage import DONE, StoreSpec, create_store, open_dataset, open_store
from robustbench_nas.storage.journal import CLOCK_NAME, JOURNAL_DIR, LOCK_NAME

ARCHS = [3, 8, 15, 21, 30, 44]
STAGES = ["info", "proxies", "train", "clean"]
KILLED = 137  # the exit status of the killed child (128 + SIGKILL)


def _spec() -> StoreSpec:
    return StoreSpec(archs=ARCHS, arch_str=[f"cell{a}" for a in ARCHS], seeds=[0, 1], proxies=["snip", "nwot"],
                     num_classes=3, epochs=2, shard_cells=2, stages=STAGES)


def _result(uid: int, seed: int, stage: str) -> dict[str, Any]:
    """A deterministic synthetic result of one unit (what a worker would return)."""
    rng = np.random.default_rng([uid, seed, STAGES.index(stage)])
    values: dict[str, Any] = {
        "info": lambda: {"params": int(rng.integers(1000, 10**6)), "flops": rng.random(), "flops_plain": rng.random()},
        "proxies": lambda: {"proxy_value": rng.normal(size=2)},
        "train": lambda: {**{f"history_{h}": rng.random(2) for h in ("train_loss", "train_acc", "test_acc", "lr")},
                          "checkpoint": f"s.checkpoints/{uid}-{seed}-{rng.integers(10**6)}.pt"},
        "clean": lambda: {"clean_accuracy": rng.random(), "clean_confidence": rng.random(),
                          "clean_confidence_true": rng.random(), "clean_confusion": rng.integers(0, 9, (3, 3))},
    }[stage]()
    return {"status": "done", "seconds": float(rng.random()), "attempts": 1, "values": values, "error": "",
            "threads": 1 + uid % 3, "device": "cpu", "precision": "mkldnn.conv=ieee,mkldnn.matmul=ieee"}


def run_writer(path: Path, batch: int = 4) -> None:
    """One run: fold a killed run's journal in, then journal and commit every unit not done yet, in batches."""
    store = open_store(path, mode="r+")
    store.commit()  # as prepare_store does on a resume
    status = store.status()
    units = [(uid, seed, stage) for i, uid in enumerate(store.spec.archs) for j, seed in enumerate(store.spec.seeds)
             for s, stage in enumerate(store.spec.stages) if (stage != "info" or j == 0) and status[i, j, s] != DONE]
    writer = ResultWriter(store, units, commit_seconds=1e9)
    for k in range(0, len(units), batch):
        writer.add([(u, sd, st, _result(u, sd, st)) for u, sd, st in units[k: k + batch]])
    writer.close()


class _Killer:
    """Counts the hooked steps; ends the process at step ``at`` (``None``: never). Step ``2n`` is just before the
    n-th call, ``2n + 1`` just after it."""

    def __init__(self, at: int | None) -> None:
        self.at, self.n = at, 0

    def _tick(self, phase: int, before_exit: Any = None) -> None:
        if self.at is not None and 2 * self.n + phase == self.at:
            if before_exit is not None:
                before_exit()
            os._exit(KILLED)

    def wrap(self, name: str) -> None:
        real = getattr(os, name)

        def hooked(*args: Any, **kw: Any) -> Any:
            torn = None
            if name == "write":  # a kill mid-append leaves a torn record: half of the bytes
                fd, data = args[0], bytes(args[1])
                torn = lambda: real(fd, data[: max(1, len(data) // 2)])  # noqa: E731
            self._tick(0, torn)
            out = real(*args, **kw)
            self._tick(1)
            self.n += 1
            return out

        setattr(os, name, hooked)


HOOKED = ("write", "fsync", "replace", "rename", "unlink")


def _run_child(path: Path, at: int | None) -> tuple[int, int]:
    """Run the writer in a forked child killed at step ``at``; returns (exit status, steps the child counted)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            killer = _Killer(at)
            real_write = os.write
            for name in HOOKED:
                killer.wrap(name)
            run_writer(path)
            real_write(w, str(killer.n).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    steps = os.read(r, 64)
    os.close(r)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st), int(steps or 0)


def _snapshot(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], set[str]]:
    store = open_store(path)
    arrays = {name: store.read_array(name) for name in store.arrays}
    coords = {k: v.values for k, v in open_dataset(path).coords.items()}
    skip = {f"{JOURNAL_DIR}/{CLOCK_NAME}", f"{JOURNAL_DIR}/{LOCK_NAME}"}  # the clock's value depends on the writers
    files = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - skip
    return arrays, coords, files


def _assert_same(got: Any, ref: Any, what: str) -> None:
    arrays, coords, files = got
    ref_arrays, ref_coords, ref_files = ref
    assert files == ref_files, (what, sorted(files ^ ref_files))
    assert arrays.keys() == ref_arrays.keys() and coords.keys() == ref_coords.keys()
    for name in ref_arrays:
        np.testing.assert_array_equal(arrays[name], ref_arrays[name], err_msg=f"{what}: array {name}")
    for name in ref_coords:
        np.testing.assert_array_equal(coords[name], ref_coords[name], err_msg=f"{what}: coordinate {name}")


@pytest.mark.slow
def test_killed_at_random_points_of_its_commits_a_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    import shutil

    empty = tmp_path / "empty.zarr"
    create_store(empty, _spec())
    ref_path = tmp_path / "ref.zarr"
    shutil.copytree(empty, ref_path)
    code, steps = _run_child(ref_path, None)
    assert code == 0 and steps > 40  # appends, shard replaces, fsyncs, journal removals of 42 units
    ref = _snapshot(ref_path)
    assert (ref[0]["status"][:, 0, :] == DONE).all() and ref[0]["unit_threads"].max() == 3
    run_writer(ref_path)  # a re-run of a finished store changes nothing
    _assert_same(_snapshot(ref_path), ref, "re-run of a finished store")

    rng = np.random.default_rng(2026)
    points = sorted(rng.choice(2 * steps, size=24, replace=False).tolist())
    for at in points:
        path = tmp_path / f"killed-{at}.zarr"
        shutil.copytree(empty, path)
        code, _ = _run_child(path, at)
        assert code == KILLED, f"step {at} of {2 * steps}: the child was not killed (exit {code})"
        run_writer(path)  # the re-run, a fresh writer
        _assert_same(_snapshot(path), ref, f"killed at step {at} of {2 * steps}")
        shutil.rmtree(path)

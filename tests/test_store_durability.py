"""Durable commits and clock-free ordering of the store's journal.

Every rename or removal that commits data (a shard replaced or removed, a journal file created or folded in, the
clock file, a store or a copy renamed into place) is followed by an fsync of the folder whose entries changed, before
the call returns (checked by recording every rename, unlink and fsync in order). Records are ordered by their
writers' Lamport sequences: a writer whose wall clock is an hour off still wins or loses as causality says.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from robustbench_nas.storage import DONE, PENDING, StoreSpec, create_store, open_store
from robustbench_nas.storage.compact import compact_store
from robustbench_nas.storage.journal import CLOCK_NAME, _HEAD
from robustbench_nas.utils.atomic import rename_into_place

ARCHS = [0, 6, 12, 40, 41]


def _spec() -> StoreSpec:
    return StoreSpec(archs=ARCHS, arch_str=[f"cell{a}" for a in ARCHS], seeds=[7, 8], proxies=["snip", "nwot"],
                     num_classes=3, epochs=2, shard_cells=2, stages=["info", "proxies", "train", "clean"])


class Events:
    """Every rename, unlink and fsync of the process, in order: ``(kind, path)`` (fsync: the fd's path)."""

    def __init__(self, monkeypatch) -> None:
        self.log: list[tuple[str, str]] = []
        real_fsync, real_replace, real_rename, real_unlink = os.fsync, os.replace, os.rename, os.unlink

        def fsync(fd: int) -> None:
            self.log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(src, dst, **kw):
            real_replace(src, dst, **kw)
            self.log.append(("rename", os.path.realpath(dst)))

        def rename(src, dst, **kw):
            real_rename(src, dst, **kw)
            self.log.append(("rename", os.path.realpath(dst)))

        def unlink(path, **kw):
            real_unlink(path, **kw)
            if kw.get("dir_fd") is None:  # shutil.rmtree of a temporary works through dir fds: not a commit
                self.log.append(("unlink", os.path.realpath(path)))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "unlink", unlink)

    def clear(self) -> None:
        self.log.clear()

    def undurable(self) -> list[tuple[str, str]]:
        """Renames / unlinks whose folder was not fsync'd after them (before the end of the log)."""
        bad = []
        for k, (kind, path) in enumerate(self.log):
            if kind in ("rename", "unlink"):
                folder = str(Path(path).parent)
                if ("fsync", folder) not in self.log[k + 1:]:
                    bad.append((kind, path))
        return bad

    def kinds(self, kind: str) -> list[str]:
        return [p for k, p in self.log if k == kind]


@pytest.fixture()
def events(monkeypatch) -> Events:
    return Events(monkeypatch)


def test_every_commit_kind_fsyncs_the_folder_after_its_renames(tmp_path: Path, events: Events) -> None:
    store = create_store(tmp_path / "s.zarr", _spec())
    jdir = str((store.path / ".journal").resolve())

    # a journal append that creates the writer's file: the file, then the journal folder (the new entry)
    events.clear()
    store.write_cell(6, 7, {"clean_accuracy": 0.5}, stage="clean", commit=False)
    assert events.kinds("fsync")[-1] == jdir and events.kinds("fsync")[0].endswith(".b0.log")
    # the commit: shards replaced (file then folder), the clock file, the journal files removed (then their folder)
    events.clear()
    assert store.commit() == 1
    assert events.undurable() == []
    renamed = events.kinds("rename")
    assert any("clean_accuracy" in p for p in renamed) and any(p.endswith("status/c/0/0/0") for p in renamed)
    assert renamed[-1] == str(store.path.resolve() / ".journal" / CLOCK_NAME)
    assert [p for p in events.kinds("unlink") if p.endswith(".log")] and events.kinds("fsync")[-1] == jdir
    # a shard that becomes all fill is removed: its folder is fsync'd too
    events.clear()
    store.write_cell(6, 7, {"clean_accuracy": np.nan}, stage=None)
    assert any("/clean_accuracy/c/0" in p for p in events.kinds("unlink")), events.log
    assert events.undurable() == []
    # reset (--force-stage), failures, bulk writes into the store in use
    for act in (lambda: store.reset_stage("clean", [6]), lambda: store.mark_failed(12, 8, "train", "boom"),
                lambda: store.write_array("params", np.arange(5)), lambda: store.set_status("info", DONE)):
        events.clear()
        act()
        assert events.kinds("rename") and events.undurable() == [], events.log


def test_whole_stores_renamed_into_place_are_durable(tmp_path: Path, events: Events) -> None:
    store = create_store(tmp_path / "s.zarr", _spec())
    store.write_cell(0, 7, {"clean_accuracy": 0.25}, stage="clean")
    events.clear()
    compact_store(store.path, tmp_path / "c.zarr", shard_cells=4)
    assert events.undurable() == [] and str((tmp_path / "c.zarr").resolve()) in events.kinds("rename")
    # every file of the copy was fsync'd before the rename, the parent folder after it
    k = [i for i, (kind, p) in enumerate(events.log) if kind == "rename" and p.endswith("c.zarr")][-1]
    synced = {p for kind, p in events.log[:k] if kind == "fsync"}
    copy_files = [f for f in (tmp_path / "c.zarr").rglob("*") if f.is_file()]
    assert copy_files and all(any(s.endswith(str(f.relative_to(tmp_path / "c.zarr"))) for s in synced)
                              for f in copy_files)
    assert ("fsync", str(tmp_path.resolve())) in events.log[k:]
    # the overwrite path (old copy moved aside, new one in place)
    events.clear()
    compact_store(store.path, tmp_path / "c.zarr", shard_cells=2, overwrite=True)
    assert [b for b in events.undurable() if ".replaced-" not in b[1]] == []
    # the helper itself, as the pipeline uses it to publish a new store (a folder)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "zarr.json").write_text("{}")
    events.clear()
    rename_into_place(tmp_path / "new", tmp_path / "made")
    assert events.log[0] == ("fsync", str((tmp_path / "new" / "zarr.json").resolve()))
    assert events.log[-1] == ("fsync", str(tmp_path.resolve())) and events.undurable() == []


def _records_of(path: Path) -> list[dict]:
    raw, pos, out = path.read_bytes(), 0, []
    while pos + _HEAD.size <= len(raw):
        _, hl, pl, _ = _HEAD.unpack_from(raw, pos)
        out.append(json.loads(raw[pos + _HEAD.size: pos + _HEAD.size + hl]))
        pos += _HEAD.size + hl + pl
    return out


def test_sequences_are_persisted_and_continue_past_the_committed_clock(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", _spec())
    for uid in (0, 6, 12):
        store.write_cell(uid, 7, {"clean_accuracy": 0.5}, stage="clean", commit=False)
    store.write_cell(0, 8, {"clean_accuracy": 0.5}, stage="clean", commit=False)
    seqs = [r["q"] for f in store.journal.files() for r in _records_of(f)]
    assert sorted(seqs) == [1, 2, 3, 4]  # one counter per writer, across its block files
    assert [r["q"] for r in _records_of(store.journal.files(0)[0])] == [1, 2, 4]  # cells 0, 6: block 0
    store.commit()
    assert (store.path / ".journal" / CLOCK_NAME).read_text().strip() == "4"
    other = open_store(store.path, mode="r+")  # a new writer (another process, another host)
    other.write_cell(40, 7, {"clean_accuracy": 0.5}, stage="clean", commit=False)
    assert [r["q"] for r in _records_of(other.journal.files()[0])] == [5]


@pytest.fixture()
def clock(monkeypatch):
    """A settable offset (seconds) of the wall clock that journal time stamps read."""
    offset = {"s": 0.0}
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + int(offset["s"] * 1e9))
    return offset


def test_a_reset_after_a_result_wins_although_the_resetting_host_is_an_hour_behind(tmp_path: Path, clock) -> None:
    """Host A (clock an hour ahead) journals a result; host B sees it and resets the stage (--force-stage). Ordered
    by wall clock, A's older record would win and the stage would stay done; by sequence, the reset wins."""
    a = create_store(tmp_path / "s.zarr", _spec())
    clock["s"] = 3600.0
    a.write_cell(6, 7, {"clean_accuracy": 0.9}, stage="clean", commit=False)
    clock["s"] = 0.0
    b = open_store(a.path, mode="r+")
    assert b.is_done(6, 7, "clean")  # B has seen A's record...
    assert b.reset_stage("clean", [6]) == 1  # ...and resets it (this commit folds in both records)
    assert b.journal.files() == []  # all folded in
    assert int(open_store(a.path).read_array("status")[1, 0, 3]) == PENDING
    assert not open_store(a.path).is_done(6, 7, "clean")


def test_a_later_value_wins_although_its_host_is_an_hour_behind(tmp_path: Path, clock) -> None:
    a = create_store(tmp_path / "s.zarr", _spec())
    a.write_cell(12, 8, {"clean_accuracy": 0.1}, stage="clean", commit=False)
    clock["s"] = -3600.0
    b = open_store(a.path, mode="r+")
    assert float(b.read_cell(12, 8, "clean_accuracy")) == 0.1  # B reads A's value, then recomputes it
    b.write_cell(12, 8, {"clean_accuracy": 0.7}, stage="clean", commit=False)
    recs = b.journal.read(b.journal.files())
    assert [r.t for r in recs] != sorted(r.t for r in recs)  # wall-clock order would be the wrong one
    b.commit()
    assert float(open_store(a.path).read_array("clean_accuracy")[2, 1]) == 0.7


def test_legacy_records_without_sequence_apply_first_in_time_order(tmp_path: Path) -> None:
    from robustbench_nas.storage.journal import Record

    old1 = Record(t=2, book=[(0, 0, 3, DONE)], writer="w", seq=0, pos=0)
    old2 = Record(t=1, book=[(0, 0, 3, PENDING)], writer="v", seq=0, pos=0)
    new = Record(t=0, book=[(0, 0, 3, DONE)], writer="u", seq=1, pos=0)
    assert sorted([new, old1, old2], key=Record.order_key) == [old2, old1, new]


def test_unit_settings_are_written_with_the_result_and_checked(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.zarr", _spec())
    store.write_cell(6, 8, {"clean_accuracy": 0.5}, stage="clean", commit=False, threads=4, device="cuda:0 X",
                     precision="cuda.matmul=ieee")
    store.write_cell(6, 7, {"params": 10}, stage="info", threads=2, device="cpu", precision="mkldnn.conv=ieee")
    ran = store.unit_settings()  # the uncommitted record of (6, 8) seen through the journal overlay
    assert (ran["unit_threads"][1, 1, 3], ran["unit_device"][1, 1, 3], ran["unit_precision"][1, 1, 3]) == \
        (4, "cuda:0 X", "cuda.matmul=ieee")
    store.commit()
    committed = {k: store.read_array(k) for k in ran}
    assert committed["unit_threads"][1, :, 0].tolist() == [2, 2]  # a per-cell stage: recorded at every seed
    assert committed["unit_device"][1, 1, 3] == "cuda:0 X" and committed["unit_threads"][0].max() == -1
    with pytest.raises(ValueError, match="threads must be an int"):
        store.cell_record(6, 7, stage="clean", threads=0)


def test_a_store_made_before_unit_settings_opens_runs_and_says_not_recorded(tmp_path: Path) -> None:
    import shutil

    from robustbench_nas.pipelines.runner import unit_mix_line
    from robustbench_nas.storage.schema import UNIT_SETTINGS

    path = tmp_path / "old.zarr"
    create_store(path, _spec())
    meta = json.loads((path / "zarr.json").read_text())
    for name in UNIT_SETTINGS:  # as the previous code made it: no such arrays
        shutil.rmtree(path / name)
        del meta["consolidated_metadata"]["metadata"][name]
    (path / "zarr.json").write_text(json.dumps(meta))
    store = open_store(path, mode="r+")
    assert not set(UNIT_SETTINGS) & set(store.arrays) and store.unit_settings() == {}
    store.write_cell(6, 7, {"clean_accuracy": 0.5}, stage="clean", threads=2, device="cpu", precision="x=ieee")
    assert store.is_done(6, 7, "clean") and float(store.read_array("clean_accuracy")[1, 0]) == 0.5
    assert unit_mix_line(store) == "ran on: 1 unit not recorded"

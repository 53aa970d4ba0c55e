"""The one atomic write: old or complete new content, never a leftover temporary, data and folder fsync'd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from robustbench_nas.utils import atomic
from robustbench_nas.utils.atomic import atomic_output, write_bytes_atomic, write_text_atomic


def _spy_fsync(monkeypatch) -> list[tuple[str, bool]]:
    """Record (path, is_dir) of every fd fsync'd, by wrapping os.fsync and the fd's path (/proc/self/fd)."""
    calls: list[tuple[str, bool]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls.append((path, os.path.isdir(path)))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    return calls


def test_replaces_and_fsyncs_the_file_then_its_folder(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    calls = _spy_fsync(monkeypatch)
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p for p in tmp_path.iterdir()] == [target]  # no temporary left
    # the temporary's data first (under its hidden name, before the rename), then the folder
    assert len(calls) == 2
    assert Path(calls[0][0]).name.startswith(".out.json.tmp-") and not calls[0][1]
    assert calls[1] == (str(tmp_path), True)


def test_fsync_false_keeps_atomicity_without_fsync(tmp_path: Path, monkeypatch) -> None:
    calls = _spy_fsync(monkeypatch)
    write_bytes_atomic(tmp_path / "sub" / "b.bin", b"\x00\x01", fsync=False)
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01" and calls == []


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_a_folder_output_is_fsynced_file_by_file(tmp_path: Path, monkeypatch) -> None:
    calls = _spy_fsync(monkeypatch)
    with atomic_output(tmp_path / "dir") as tmp:
        (tmp / "a").mkdir(parents=True)
        (tmp / "a" / "x.bin").write_bytes(b"x")
    assert (tmp_path / "dir" / "a" / "x.bin").read_bytes() == b"x"
    names = [Path(p).name for p, _ in calls]
    assert names.index("x.bin") < names.index("a")  # a file before the folder holding it
    assert calls[-1] == (str(tmp_path), True)


def test_nothing_written_is_an_error_naming_the_target(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_output(tmp_path / "never.txt"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_every_writer_of_the_project_uses_it() -> None:
    """No module of the package keeps its own temporary-and-rename: os.replace appears only in utils/atomic.py."""
    import robustbench_nas
    import robustbench_nas.attacks
    import robustbench_nas.corruptions
    import robustbench_nas.pipelines

    roots = [Path(m.__file__).parent for m in (robustbench_nas, robustbench_nas.attacks, robustbench_nas.corruptions,
                                               robustbench_nas.pipelines)]
    offenders = []
    for root in roots:
        for f in root.rglob("*.py"):
            text = f.read_text()
            if f.name != "atomic.py" and ("os.replace(" in text or ".tmp-" in text):
                offenders.append(str(f))
    assert offenders == []

"""The one atomic, durable write: a unique temporary beside the target, fsync'd, renamed over it, directory fsync'd.

Readers only ever see the old or the complete new file (``os.replace`` is atomic within one file system), and
after a successful return the new content survives a machine crash: the file's data is fsync'd before the rename
and the directory entry after it (without the second fsync, a crash can bring back the old name or no file).

Every rename or removal that commits data anywhere in the project goes through this module: :func:`atomic_output`
(files written in place of others: shards, checkpoints, reports), :func:`rename_into_place` (a finished folder moved
to its final name: a new store, a compacted copy) and :func:`unlink_durably` (journal files folded into shards, shards
that became all fill). Each fsyncs the folder whose entries changed, once, after the change.

Example:
    >>> with atomic_output("out.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    >>> write_bytes_atomic(Path("blob.bin"), b"...")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temp_path_beside(target: str | os.PathLike) -> Path:
    """A fresh hidden name in ``target``'s folder (pid and a random suffix: two writers never share one)."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_temporaries(target: str | os.PathLike) -> int:
    """Remove every temporary of ``target`` (:func:`temp_path_beside` names) left by writers killed mid-write.

    Only for callers that are the sole writer of ``target`` at this moment (the store's shards and clock under its
    exclusive lock): elsewhere a temporary may be another live writer's. Returns how many were removed.
    """
    target = Path(target)
    n = 0
    try:
        stale = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.tmp-")]
    except FileNotFoundError:
        return 0
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to stable storage (a folder: every file below it, then the folders)."""
    path = Path(path)
    if path.is_dir():
        for sub in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):  # files before the folders holding them
            if sub.is_file() and not sub.is_symlink():
                _fsync_fd_of(sub, os.O_RDONLY)
            elif sub.is_dir():
                fsync_dir(sub)
        fsync_dir(path)
    else:
        _fsync_fd_of(path, os.O_RDONLY)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush the directory ``path`` itself (its entries: a rename or a new file in it becomes durable)."""
    try:
        _fsync_fd_of(Path(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - file systems or platforms that cannot fsync a directory (Windows)
        pass


def _fsync_fd_of(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a unique temporary path beside ``target``; on success it replaces ``target`` atomically.

    The block writes the temporary (a file, or a folder); on an exception it is removed and ``target`` is left as
    it was. With ``fsync`` (the default) the temporary's data is fsync'd before the rename and ``target``'s folder
    after it; ``fsync=False`` only for bulk writes into a fresh location that a crash would redo anyway (it
    keeps the atomicity, not the durability).
    """
    target = Path(target)
    tmp = temp_path_beside(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary {tmp} for {target}")
        rename_into_place(tmp, target, replace=True, fsync=fsync)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def rename_into_place(src: str | os.PathLike, dst: str | os.PathLike, *, replace: bool = False,
                      fsync: bool = True) -> None:
    """Move the finished file or folder ``src`` to ``dst`` (same file system), durably.

    With ``fsync``: ``src``'s data (every file of a folder) is fsync'd before the rename, ``dst``'s folder after it
    (and ``src``'s, when it differs): after a successful return, a machine crash can no longer bring back the old
    name or lose the new one. ``replace=False`` is :func:`os.rename` (an existing non-empty folder at ``dst`` makes it
    fail: how two creators of one store find out), ``replace=True`` is :func:`os.replace` (a file at ``dst`` is
    replaced atomically).

    Arguments:
        src: the finished temporary (beside ``dst``).
        dst: the final name.
        replace: replace an existing file at ``dst``.
        fsync: make it durable (``False``: atomic only, for bulk writes into a place a crash would redo anyway).
    """
    src, dst = Path(src), Path(dst)
    if fsync:
        fsync_file(src)
    (os.replace if replace else os.rename)(src, dst)
    if fsync:
        fsync_dir(dst.parent)
        if src.parent.resolve() != dst.parent.resolve():
            fsync_dir(src.parent)


def unlink_durably(paths: "list[Path] | tuple[Path, ...]", *, fsync: bool = True) -> None:
    """Remove the files ``paths`` (missing ones are fine), then fsync each folder that lost an entry, once.

    Used where a removal commits something: journal files whose records are in the shards (a crash that brought one
    back would apply its old records again over newer commits), shards that became all fill.
    """
    folders: dict[Path, None] = {}
    for p in paths:
        p = Path(p)
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        folders[p.parent] = None
    if fsync:
        for folder in folders:
            fsync_dir(folder)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (and durably unless ``fsync=False``); creates the folder; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = True, encoding: str = "utf-8") -> Path:
    """:func:`write_bytes_atomic` of ``text`` encoded with ``encoding``."""
    return write_bytes_atomic(path, text.encode(encoding), fsync=fsync)


__all__ = ["atomic_output", "fsync_dir", "fsync_file", "remove_stale_temporaries", "rename_into_place",
           "temp_path_beside", "unlink_durably",
           "write_bytes_atomic", "write_text_atomic"]

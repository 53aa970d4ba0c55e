"""The store's write-ahead journal: durable per-cell records, committed into whole shards under one lock.

Results reach a store in two steps. First each (cell, seed, stage) result is appended, as one self-checking record,
to a journal file of its writer and shard block (``STORE/.journal/<writer>.b<block>.log``); the append is a
single ``write`` under a shared ``flock`` of ``STORE/.journal/lock``, optionally fsync'd. Then a *commit* takes the
lock exclusively, reads every journal file of a block (all writers'), reads the block's current shards, applies the
records in time order, rewrites the block's shards whole (atomic replace; data arrays first, ``status`` last), and
only then deletes those journal files.

Why: a shard holds many cells, and zarr-python loses updates silently when several writers write parts of one
shard (zarr-python issue 3682). Here no one ever writes part of a shard, and only one process at a time writes
shards of a store, whatever the number of clients (``--task i/n`` job arrays share one store).

Guarantees: a record is either complete (length and CRC32 check) or ignored (a writer killed mid-append leaves a
torn tail, which is dropped: its unit was never acknowledged, so it is recomputed); a commit killed at any point
leaves the journal in place and is redone by the next commit (records set absolute values, so applying one twice
is harmless); a reader sees a unit as done only once its values are in the shards (status is written last) or, for
progress, in a complete journal record.

Record format (little endian): ``b"RBJ1" | u32 header length | u64 payload length | u32 crc32(header+payload) |
header (JSON) | payload (raw array bytes)``. The header holds the time stamp, the bookkeeping entries
``[i, j, s, status, seconds, error, attempts]`` (``None``: unchanged) and, per array value, its name, position,
dtype, shape and byte range in the payload (strings inline in the header). No pickle: a journal from elsewhere
cannot run code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

MAGIC = b"RBJ1"
_HEAD = struct.Struct("<4sIQI")
JOURNAL_DIR = ".journal"
LOCK_NAME = "lock"

_THREAD_LOCK = threading.RLock()  # flock excludes processes; this excludes threads of one process sharing state


@dataclass
class Record:
    """One journal record: bookkeeping entries and array values of one (cell, seed) (or a bulk status change).

    Attributes:
        t: time stamp (ns; records are applied in ``(t, writer, seq)`` order).
        book: ``[(i, j, s, status|None, seconds|None, error|None, attempts|None)]`` positions along arch/seed/stage.
        values: ``[(name, i, j|None, ndarray)]`` (``j`` None for arrays without a seed dim).
    """

    t: int
    book: list[tuple[int, int, int, Any, Any, Any, Any]] = field(default_factory=list)
    values: list[tuple[str, int, int | None, np.ndarray]] = field(default_factory=list)
    writer: str = ""
    seq: int = 0

    def encode(self) -> bytes:
        vals, strs, parts, offset = [], [], [], 0
        for name, i, j, v in self.values:
            v = np.asarray(v)
            if v.dtype.kind in "OUT":
                strs.append([name, i, j, [str(x) for x in v.ravel()], list(v.shape)])
                continue
            raw = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")).tobytes()
            vals.append([name, i, j, v.dtype.newbyteorder("<").str, list(v.shape), offset, len(raw)])
            parts.append(raw)
            offset += len(raw)
        header = json.dumps({"t": self.t, "book": [list(b) for b in self.book], "vals": vals, "strs": strs},
                            separators=(",", ":"), allow_nan=True).encode()
        payload = b"".join(parts)
        crc = zlib.crc32(payload, zlib.crc32(header))
        return _HEAD.pack(MAGIC, len(header), len(payload), crc) + header + payload


def _decode_all(raw: bytes, writer: str, with_values: bool) -> list[Record]:
    """Every complete record of one journal file (a torn or damaged tail ends the file)."""
    out, pos, n = [], 0, len(raw)
    while pos + _HEAD.size <= n:
        magic, hl, pl, crc = _HEAD.unpack_from(raw, pos)
        start, end = pos + _HEAD.size, pos + _HEAD.size + hl + pl
        if magic != MAGIC or end > n:
            break
        header = raw[start: start + hl]
        payload = memoryview(raw)[start + hl: end]
        if with_values and zlib.crc32(payload, zlib.crc32(header)) != crc:
            break
        h = json.loads(header)
        rec = Record(t=int(h["t"]), book=[tuple(b) for b in h["book"]], writer=writer, seq=len(out))
        if with_values:
            for name, i, j, dt, shape, off, nb in h["vals"]:
                rec.values.append((name, i, j, np.frombuffer(payload[off: off + nb], dtype=np.dtype(dt))
                                   .reshape(shape).astype(np.dtype(dt).newbyteorder("="))))
            for name, i, j, items, shape in h["strs"]:
                rec.values.append((name, i, j, np.asarray(items, dtype=object).reshape(shape)))
        out.append(rec)
        pos = end
    return out


class Journal:
    """The journal of one store (``STORE/.journal``): appends, scans and the commit lock.

    Arguments:
        store_path: the store folder.
        fsync: fsync every append (survives a machine crash, not only a killed process); commits always fsync
            the shards they write when this is on.
    """

    def __init__(self, store_path: Path, *, fsync: bool = True) -> None:
        self.dir = Path(store_path) / JOURNAL_DIR
        self.fsync = fsync
        self.writer = f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # ---- locking -------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, exclusive: bool) -> Iterator[bool]:
        """Hold the store's lock (shared: appends and scans; exclusive: commits). Yields False if the store has no
        journal folder and none can be made (a read-only store: nothing to lock against)."""
        with _THREAD_LOCK:
            path = self.dir / LOCK_NAME
            try:
                if exclusive or not path.exists():
                    self.dir.mkdir(exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    if exclusive:
                        raise
                    yield False
                    return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield True
            finally:
                os.close(fd)  # closing releases the flock

    # ---- writing -------------------------------------------------------------------------------------------------
    def append(self, records: dict[int, list[Record]]) -> None:
        """Append ``{block: [records]}``, one ``write`` per block file, all under one shared lock."""
        if not records:
            return
        with self.lock(exclusive=False):
            for b, recs in records.items():
                data = b"".join(r.encode() for r in recs)
                fd = os.open(self.dir / f"{self.writer}.b{b}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(data)
                    while view:  # a regular file takes it in one write; loop for the rule's sake
                        view = view[os.write(fd, view):]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)

    # ---- reading -------------------------------------------------------------------------------------------------
    def files(self, block: int | None = None) -> list[Path]:
        """Journal files (of ``block``, or all)."""
        if not self.dir.is_dir():
            return []
        suffix = f".b{block}.log" if block is not None else ".log"
        return sorted(p for p in self.dir.iterdir() if p.name.endswith(suffix))

    @staticmethod
    def block_of(path: Path) -> int:
        return int(path.name.rsplit(".b", 1)[1][: -len(".log")])

    def read(self, paths: list[Path], with_values: bool = True) -> list[Record]:
        """Complete records of ``paths`` in apply order (missing files: none)."""
        out: list[Record] = []
        for p in paths:
            try:
                raw = p.read_bytes()
            except FileNotFoundError:
                continue
            out += _decode_all(raw, p.name.rsplit(".b", 1)[0], with_values)
        out.sort(key=lambda r: (r.t, r.writer, r.seq))
        return out

    def pending(self, with_values: bool = False) -> list[Record]:
        """Every complete record not committed yet (all writers), read under the shared lock."""
        if not self.dir.is_dir():
            return []
        with self.lock(exclusive=False):
            return self.read(self.files(), with_values=with_values)


def now_ns() -> int:
    return time.time_ns()


__all__ = ["JOURNAL_DIR", "Journal", "Record", "now_ns"]

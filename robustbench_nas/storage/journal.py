"""The store's write-ahead journal: durable per-cell records, committed into whole shards under one lock.

Results reach a store in two steps. First each (cell, seed, stage) result is appended, as one self-checking record,
to a journal file of its writer and shard block (``STORE/.journal/<writer>.b<block>.log``); the append is a
single ``write`` under a shared ``flock`` of ``STORE/.journal/lock``, optionally fsync'd. Then a *commit* takes the
lock exclusively, reads every journal file of a block (all writers'), reads the block's current shards, applies the
records in sequence order (below), rewrites the block's shards whole (atomic replace, file and folder fsync'd; data
arrays first, ``status`` last), records the highest sequence applied in ``STORE/.journal/clock``, and only then
deletes those journal files (and fsyncs the journal folder: a crash must not bring a folded-in file back, or its old
records would be applied again over newer commits).

Why: a shard holds many cells, and zarr-python loses updates silently when several writers write parts of one
shard (zarr-python issue 3682). Here no one ever writes part of a shard, and only one process at a time writes
shards of a store, whatever the number of clients (``--task i/n`` job arrays share one store).

Guarantees: a record is either complete (length and CRC32 check) or ignored (a writer killed mid-append leaves a
torn tail, which is dropped: its unit was never acknowledged, so it is recomputed); a commit killed at any point
leaves the journal in place and is redone by the next commit (records set absolute values, so applying one twice
is harmless); a reader sees a unit as done only once its values are in the shards (status is written last) or, for
progress, in a complete journal record.

Order of records (which record wins when two set the same entry): every record carries its writer's id (the file
name) and a sequence number, persisted in the record, drawn from the writer's Lamport clock: each writer's counter
only grows, and before it numbers a record it is raised past every sequence the writer has seen -- the store's
``clock`` file (the highest sequence any commit has folded in) and every journal record it has read (progress,
single-cell reads, the status a run plans from). So within a writer, the later record wins; across writers, a
record wins over every record its writer could have known of when it wrote it (e.g. a ``--force-stage`` reset after
the result it resets, a result over a committed older one); records written without knowledge of each other (two
runs computing the same unit at once, which leases prevent) are ordered by ``(sequence, writer id)``: arbitrary but
the same for every reader and every commit. Wall clocks play no part (hosts' clocks disagree); the time stamp is kept
for people only. Records written before sequences existed (no ``q`` field) sort first, by their time stamps.

Record format (little endian): ``b"RBJ1" | u32 header length | u64 payload length | u32 crc32(header+payload) |
header (JSON) | payload (raw array bytes)``. The header holds the sequence ``q``, the time stamp ``t``, the
bookkeeping entries ``[i, j, s, *values of BOOK_FIELDS]`` (``None``: unchanged; shorter entries of older records
mean ``None`` for the fields they lack) and, per array value, its name, position, dtype, shape and byte range in the
payload (strings inline in the header). No pickle: a journal from elsewhere cannot run code.
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
#: the highest record sequence a commit has folded into the shards (decimal text), see the module docstring
CLOCK_NAME = "clock"
#: bookkeeping arrays set by a record's ``book`` entries, in entry order after ``(i, j, s)``: the unit's status, wall
#: time, error text and attempts, and what it ran with (torch threads, device, fp32 precision flags)
BOOK_FIELDS: tuple[str, ...] = ("status", "stage_seconds", "error", "attempts", "unit_threads", "unit_device",
                                "unit_precision")

_THREAD_LOCK = threading.RLock()  # flock excludes processes; this excludes threads of one process sharing state


@dataclass
class Record:
    """One journal record: bookkeeping entries and array values of one (cell, seed) (or a bulk status change).

    Attributes:
        t: wall-clock time stamp (ns; for people only, never used to order records of a sequence).
        book: ``[(i, j, s, *one value per BOOK_FIELDS or None)]``, positions along arch/seed/stage (entries may be
            shorter: the missing fields are ``None``, unchanged).
        values: ``[(name, i, j|None, ndarray)]`` (``j`` None for arrays without a seed dim).
        writer: the writer's id (its journal file name).
        seq: the writer's sequence number (set by :meth:`Journal.append`; 0: a record from before sequences).
        pos: position in its journal file (ties between legacy records).
    """

    t: int
    book: list[tuple[Any, ...]] = field(default_factory=list)
    values: list[tuple[str, int, int | None, np.ndarray]] = field(default_factory=list)
    writer: str = ""
    seq: int = 0
    pos: int = 0

    def order_key(self) -> tuple[int, int, str, int]:
        """The apply order (see the module docstring): sequence, then writer id; legacy records by time stamp."""
        return (self.seq, self.t if self.seq == 0 else 0, self.writer, self.pos)

    def book_entries(self) -> Iterator[tuple[int, int, int, tuple[Any, ...]]]:
        """``(i, j, s, values)`` of every book entry, ``values`` padded with ``None`` to one per :data:`BOOK_FIELDS`."""
        for entry in self.book:
            vals = tuple(entry[3:3 + len(BOOK_FIELDS)])
            yield int(entry[0]), int(entry[1]), int(entry[2]), vals + (None,) * (len(BOOK_FIELDS) - len(vals))

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
        header = json.dumps({"q": self.seq, "t": self.t, "book": [list(b) for b in self.book], "vals": vals,
                             "strs": strs},
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
        rec = Record(t=int(h["t"]), book=[tuple(b) for b in h["book"]], writer=writer, seq=int(h.get("q", 0)),
                     pos=len(out))
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
        #: this writer's Lamport clock: the highest sequence it has issued or seen
        self.clock = 0
        self._created: set[Path] = set()  # journal files this writer made (their folder entry fsync'd once)

    # ---- sequence ------------------------------------------------------------------------------------------------
    def observe(self, seq: int) -> None:
        """Raise the clock to ``seq`` (a sequence seen in a record or in the store's clock file)."""
        if seq > self.clock:
            self.clock = seq

    def committed_clock(self) -> int:
        """The highest sequence a commit has folded in (``.journal/clock``; 0 if none or unreadable)."""
        try:
            return int((self.dir / CLOCK_NAME).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def write_clock(self, seq: int) -> None:
        """Record that records up to ``seq`` are folded in (caller holds the exclusive lock; never lowers it)."""
        from ..utils.atomic import remove_stale_temporaries, write_text_atomic

        remove_stale_temporaries(self.dir / CLOCK_NAME)  # a commit killed mid-write left it (we hold the lock)
        seq = max(seq, self.committed_clock())
        write_text_atomic(self.dir / CLOCK_NAME, f"{seq}\n", fsync=self.fsync)
        self.observe(seq)

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
        """Append ``{block: [records]}``, one ``write`` per block file, all under one shared lock.

        Each record gets this writer's next sequence number here (after the clock has seen the store's committed
        clock), so the order of records is the order of appends of this writer, after everything it has seen.
        """
        if not records:
            return
        from ..utils.atomic import fsync_dir

        with self.lock(exclusive=False):
            self.observe(self.committed_clock())
            for b, recs in records.items():
                for r in recs:
                    self.clock += 1
                    r.seq, r.writer = self.clock, self.writer
                data = b"".join(r.encode() for r in recs)
                path = self.dir / f"{self.writer}.b{b}.log"
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(data)
                    while view:  # a regular file takes it in one write; loop for the rule's sake
                        view = view[os.write(fd, view):]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if self.fsync and path not in self._created:  # a new file: its folder entry must be durable too
                    fsync_dir(self.dir)
                    self._created.add(path)

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
        """Complete records of ``paths`` in apply order (missing files: none); the clock sees their sequences."""
        out: list[Record] = []
        for p in paths:
            try:
                raw = p.read_bytes()
            except FileNotFoundError:
                continue
            out += _decode_all(raw, p.name.rsplit(".b", 1)[0], with_values)
        out.sort(key=Record.order_key)
        if out:
            self.observe(out[-1].seq)
        return out

    def pending(self, with_values: bool = False) -> list[Record]:
        """Every complete record not committed yet (all writers), read under the shared lock."""
        if not self.dir.is_dir():
            return []
        with self.lock(exclusive=False):
            return self.read(self.files(), with_values=with_values)


def now_ns() -> int:
    """Wall-clock time stamp of a record (ns): informative only, see the module docstring."""
    return time.time_ns()


__all__ = ["BOOK_FIELDS", "CLOCK_NAME", "JOURNAL_DIR", "Journal", "Record", "now_ns"]

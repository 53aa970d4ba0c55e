"""Leases: each cell's units are computed by one run at a time, even when several runs share a store.

A run takes a lease on every cell whose units it is about to compute, and gives it back as soon as the cell's
last unit has its result in the store's journal (or failed), or when the run ends. A second run on the same store
skips the cells leased by a live holder (or waits for them, ``rbnas run --wait``); a lease whose holder stopped
renewing it is taken over.

Files, in ``STORE/.leases/`` (a hidden folder, ignored by Zarr readers like ``STORE/.journal``):

- ``holders/<holder>.json``: ``{"holder", "host", "pid", "expires", "ttl_s"}``, one per running holder, rewritten
  atomically by a heartbeat thread every ``ttl_s / 5`` s (``expires``: Unix seconds). One file to renew however
  many cells are leased.
- ``cell-<uid>``: ``{"holder", "host", "pid"}``; created complete and atomically: written aside, then hard-linked
  into place (``link`` fails when the name exists, on NFS and Lustre too), so two runs never both get a cell.

A holder is live while its ``expires`` lies ahead and, on this very host, while its process exists (a killed run's
cells are free at once on its own node, after ``ttl_s`` elsewhere). Taking over a dead holder's lease happens
under the lease folder's lock and re-reads the lease first, so two runs never take over the same lease; giving a
lease back checks it is still ours (one taken over meanwhile is left to its new holder).

Example:
    >>> with LeaseBook("runs/tiny.zarr") as book:              # doctest: +SKIP
    ...     mine, held = book.acquire([6, 12000])
    ...     book.release(mine)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from robustbench_nas.utils.atomic import rename_into_place, write_text_atomic

log = logging.getLogger(__name__)

#: the lease folder inside a store
LEASE_DIR = ".leases"
#: default seconds a lease lives without a heartbeat (a holder renews it every ttl / 5)
DEFAULT_TTL_S = 300.0


def _host() -> str:
    return socket.gethostname().split(".")[0]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """A run holding leases: its id, host, process id and the Unix time (s) its leases expire without renewal."""

    holder: str
    host: str
    pid: int
    expires: float

    def alive(self, now: float | None = None) -> bool:
        """Renewed recently enough, and (on this host) its process still exists."""
        if self.expires <= (time.time() if now is None else now):
            return False
        return self.host != _host() or _pid_exists(self.pid)

    def label(self) -> str:
        """``holder@host``."""
        return f"{self.holder}@{self.host}"

    def until(self) -> str:
        """The expiry as ``YYYY-MM-DD HH:MM:SS UTC``."""
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.expires))


class LeaseBook:
    """This run's leases on the cells of one store.

    Arguments:
        store_path: the store folder.
        ttl_s: seconds a lease lives without a heartbeat (> 0); the heartbeat renews every ``ttl_s / 5``.
        holder: this run's id (default: ``rbnas-<pid>-<random>``, with the SLURM job id when there is one).

    Use as a context manager (or call :meth:`close`): on exit every lease still held is given back.
    """

    def __init__(self, store_path: str | os.PathLike, *, ttl_s: float = DEFAULT_TTL_S,
                 holder: str | None = None) -> None:
        if not ttl_s > 0:
            raise ValueError(f"lease ttl_s must be > 0 seconds, got {ttl_s!r}")
        self.dir = Path(store_path) / LEASE_DIR
        self.ttl_s = float(ttl_s)
        job = os.environ.get("SLURM_JOB_ID")
        self.holder = holder or (f"rbnas-{os.getpid()}-{uuid.uuid4().hex[:6]}" + (f"-job{job}" if job else ""))
        self.host = _host()
        self.pid = os.getpid()
        self.mine: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- own holder file and heartbeat -------------------------------------------------------------------------
    @property
    def holder_file(self) -> Path:
        return self.dir / "holders" / f"{self.holder}.json"

    def _renew(self) -> None:
        body = {"holder": self.holder, "host": self.host, "pid": self.pid, "expires": time.time() + self.ttl_s,
                "ttl_s": self.ttl_s}
        self.holder_file.parent.mkdir(parents=True, exist_ok=True)  # another run's close may have removed it
        write_text_atomic(self.holder_file, json.dumps(body))

    def start(self) -> "LeaseBook":
        """Publish this holder (its leases count as live from now on) and start the heartbeat thread."""
        if self._thread is not None:
            return self
        (self.dir / "holders").mkdir(parents=True, exist_ok=True)
        self._renew()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{self.holder}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 5):
            try:
                self._renew()
            except OSError as e:  # a full or unreachable file system: the leases may expire; say so, keep trying
                log.warning("lease heartbeat of %s failed: %s", self.holder, e)

    def close(self) -> None:
        """Give back every lease still held, stop the heartbeat and remove this holder's file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.mine:
            self.release(sorted(self.mine))
        with contextlib.suppress(FileNotFoundError):
            self.holder_file.unlink()
        with contextlib.suppress(OSError):  # when empty only: another run may still use it (the lock file
            (self.dir / "holders").rmdir()  # stays: deleting a lock file others may be opening races)

    def __enter__(self) -> "LeaseBook":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -----------------------------------------------------------------------------------------------
    def _lease_path(self, uid: int) -> Path:
        return self.dir / f"cell-{int(uid)}"

    def _read_holder(self, holder: str, cache: dict[str, Holder | None]) -> Holder | None:
        if holder not in cache:
            try:
                d = json.loads((self.dir / "holders" / f"{holder}.json").read_text())
                cache[holder] = Holder(str(d["holder"]), str(d["host"]), int(d["pid"]), float(d["expires"]))
            except (OSError, ValueError, KeyError, TypeError):
                cache[holder] = None  # gone (its run ended or was cleaned up) or unreadable: not live
        return cache[holder]

    def _lease_holder(self, uid: int) -> str | None:
        """The holder id written in cell ``uid``'s lease, ``None`` when there is none (or it is unreadable)."""
        try:
            return str(json.loads(self._lease_path(uid).read_text())["holder"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return ""  # a broken lease file counts as a dead holder's: taken over

    def held_by_others(self, cells: Iterable[int]) -> dict[int, Holder]:
        """``{cell: live holder}`` for the cells leased by another live run (reads only; nothing is created)."""
        out: dict[int, Holder] = {}
        cache: dict[str, Holder | None] = {}
        now = time.time()
        for uid in cells:
            h = self._lease_holder(uid)
            if not h or h == self.holder:
                continue
            holder = self._read_holder(h, cache)
            if holder is not None and holder.alive(now):
                out[int(uid)] = holder
        return out

    # ---- taking and giving back --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The lease folder's lock: for takeovers and give-backs, which must re-read a lease and change it as one."""
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _body(self) -> str:
        return json.dumps({"holder": self.holder, "host": self.host, "pid": self.pid})

    def acquire(self, cells: Iterable[int]) -> tuple[list[int], dict[int, Holder]]:
        """Lease every free cell of ``cells`` (and take over those of dead holders).

        Returns:
            ``(cells now leased by this run, {cell: live holder} for the cells another run holds)``.
        """
        self.start()
        got: list[int] = []
        held: dict[int, Holder] = {}
        stale: list[int] = []
        cache: dict[str, Holder | None] = {}
        tmp = self.dir / f".new-{self.holder}"
        tmp.write_text(self._body())
        try:
            for uid in map(int, cells):
                if uid in self.mine:
                    got.append(uid)
                    continue
                try:
                    os.link(tmp, self._lease_path(uid))  # atomic, complete, and fails if the cell is leased
                    self.mine.add(uid)
                    got.append(uid)
                    continue
                except FileExistsError:
                    pass
                h = self._lease_holder(uid)
                if h == self.holder:  # ours already (e.g. taken over by this holder before): keep it
                    self.mine.add(uid)
                    got.append(uid)
                    continue
                holder = self._read_holder(h, cache) if h else None
                if h is None:
                    stale.append(uid)  # given back between link and read: try again below
                elif holder is not None and holder.alive():
                    held[uid] = holder
                else:
                    stale.append(uid)
            if stale:
                with self._locked():
                    for uid in stale:
                        h = self._lease_holder(uid)  # again, under the lock: someone may have taken it meanwhile
                        holder = self._read_holder(h, {}) if h else None
                        if h and holder is not None and holder.alive():
                            held[uid] = holder
                            continue
                        if h is None:  # no lease now: link (a run linking meanwhile must not be overwritten)
                            try:
                                os.link(tmp, self._lease_path(uid))
                            except FileExistsError:
                                h2 = self._lease_holder(uid)
                                h2_holder = self._read_holder(h2, {}) if h2 else None
                                if h2_holder is not None:
                                    held[uid] = h2_holder
                                continue
                        else:  # a dead holder's lease: only ever replaced under this lock, so it is still there
                            log.info("cell %d: taking over the lease of %s (expired or its process is gone)", uid,
                                     h or "(unreadable lease)")
                            # the project's one rename helper (tests/test_atomic.py); a lease is not data: no fsync
                            rename_into_place(tmp, self._lease_path(uid), replace=True, fsync=False)
                            tmp.write_text(self._body())
                        self.mine.add(uid)
                        got.append(uid)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return sorted(got), held

    def release(self, cells: Iterable[int]) -> None:
        """Give back this run's leases on ``cells`` (a lease another run took over meanwhile stays theirs)."""
        cells = [int(c) for c in cells if int(c) in self.mine]
        if not cells:
            return
        with self._locked():
            for uid in cells:
                if self._lease_holder(uid) == self.holder:
                    with contextlib.suppress(FileNotFoundError):
                        self._lease_path(uid).unlink()
                self.mine.discard(uid)


def skipped_line(units: int, held: dict[int, Holder]) -> str:
    """The one line a run prints for the units it skips: ``skipping 56 units leased by h@host until T``."""
    by: dict[str, Holder] = {}
    for h in held.values():
        if h.holder not in by or h.expires > by[h.holder].expires:
            by[h.holder] = h
    who = ", ".join(f"{h.label()} until {h.until()}" for h in sorted(by.values(), key=lambda h: h.holder))
    return f"skipping {units} units leased by {who}"


__all__ = ["DEFAULT_TTL_S", "LEASE_DIR", "Holder", "LeaseBook", "skipped_line"]

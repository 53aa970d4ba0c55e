"""Committing: folding journal records into whole shard blocks, and bulk rewrites of whole rows.

Nothing here ever writes part of a shard: a block's shards are read, changed in memory and written back whole
(atomic replace), data arrays first and ``status`` last, so a reader never sees a cell marked done before its values
are in (see :mod:`.journal` for why and for the guarantees). The caller holds the store's exclusive journal lock
while :meth:`BlockWriter.write_rows` runs; :meth:`BlockWriter.commit` takes it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterable

import numpy as np

from ..utils.atomic import unlink_durably
from .journal import BOOK_FIELDS, Journal, Record
from .shards import ArrayLayout, read_shard, write_shard

#: bookkeeping arrays, in the order a commit writes them (``status`` last: "done" only once every value is in)
BOOKKEEPING = (*(n for n in BOOK_FIELDS if n != "status"), "status")


@dataclass(frozen=True)
class BlockWriter:
    """Rewrites whole shard blocks of one store.

    Attributes:
        root: the store folder.
        layout_of: the on-disk layout of an array, by name (the store's cached :meth:`layout`).
        shard_cells: cells per shard block along ``arch``.
        arrays: names of the arrays the store has (journal values for any other name are ignored).
    """

    root: Path
    layout_of: Callable[[str], ArrayLayout]
    shard_cells: int
    arrays: Collection[str]

    def commit(self, journal: Journal, blocks: Iterable[int] | None = None) -> int:
        """Fold the journal (every writer's records) of ``blocks`` (default: all pending) into whole shards.

        Under the store's exclusive lock, per block: read the journal files and the block's current shards, apply
        the records in sequence order (:meth:`.journal.Record.order_key`), rewrite every touched shard whole
        (atomic replace, fsync'd with the journal's ``fsync``; data first, ``status`` last), record the highest
        sequence applied in the store's clock file, then delete the journal files (folder fsync'd). Returns the
        number of records applied.
        """
        if not journal.dir.is_dir():
            return 0
        n = 0
        with journal.lock(exclusive=True):
            todo = sorted({Journal.block_of(p) for p in journal.files()} if blocks is None else set(blocks))
            for b in todo:
                files = journal.files(b)
                if not files:
                    continue
                records = journal.read(files, with_values=True)
                self.apply(b, records, fsync=journal.fsync)
                if records:  # later records of any writer must sort after these, although their files go now
                    journal.write_clock(max(r.seq for r in records))
                # the journal goes only after every shard of the block is replaced: a commit killed before this
                # line is redone from the same records by the next one (records set absolute values)
                unlink_durably(files, fsync=journal.fsync)
                n += len(records)
        return n

    def apply(self, b: int, records: list[Record], *, fsync: bool) -> None:
        """Apply ``records`` (apply order) to block ``b``'s current shards and write every touched shard whole."""
        a0 = b * self.shard_cells
        blocks: dict[str, np.ndarray] = {}

        def block(name: str) -> np.ndarray:
            if name not in blocks:
                blocks[name] = read_shard(self.root, self.layout_of(name), b).copy()
            return blocks[name]

        for r in records:
            for name, i, j, v in r.values:
                if name not in self.arrays:
                    continue  # a record for an array this store does not have: ignore rather than fail the commit
                target = block(name)
                target[(i - a0, j) if j is not None else i - a0] = v[()] if v.ndim == 0 else v
            for i, j, s, fields in r.book_entries():
                for name, value in zip(BOOK_FIELDS, fields):
                    # a store made before an array existed (unit_threads, ...) simply does not record it
                    if value is not None and name in self.arrays:
                        block(name)[i - a0, j, s] = value
        for name in [n for n in blocks if n not in BOOKKEEPING] + [n for n in BOOKKEEPING if n in blocks]:
            write_shard(self.root, self.layout_of(name), b, blocks[name], fsync=fsync)

    def write_rows(self, name: str, pos: np.ndarray, rows: np.ndarray, *, fsync: bool = False) -> None:
        """Rows ``rows`` at arch positions ``pos`` (caller holds the exclusive lock), shard by shard.

        ``fsync``: make each shard durable (bulk writes into an existing store); ``False`` for fresh stores built
        under a temporary name, which are fsync'd once as a whole when renamed into place
        (:func:`robustbench_nas.utils.atomic.rename_into_place`).
        """
        lay = self.layout_of(name)
        per = self.shard_cells
        for b in np.unique(pos // per):
            a0, a1 = lay.rows(int(b))
            sel = (pos // per) == b
            if sel.sum() == a1 - a0 and np.array_equal(np.sort(pos[sel]), np.arange(a0, a1)):
                block = np.empty((a1 - a0, *lay.shape[1:]), dtype=rows.dtype)
            else:
                block = read_shard(self.root, lay, int(b)).copy()
            block[pos[sel] - a0] = rows[sel]
            write_shard(self.root, lay, int(b), block, fsync=fsync)


__all__ = ["BOOKKEEPING", "BlockWriter"]

"""The journal overlay: what readers of bookkeeping and single cells see before a commit folds the journal in.

Progress (``status`` and friends) and :meth:`.store.RobustnessStore.read_cell` count journal records not committed
yet, so a monitor sees work as soon as it is durable; whole-array and Dataset reads show committed shards only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .journal import BOOK_FIELDS, Journal

#: position of each bookkeeping array's value in a journal book entry ``(i, j, s, *BOOK_FIELDS)``
BOOK_FIELD = {name: 3 + k for k, name in enumerate(BOOK_FIELDS)}


def overlay_book(journal: Journal, name: str, arr: np.ndarray) -> np.ndarray:
    """Bookkeeping ``name`` with the journal's uncommitted entries applied (what a finished commit will hold).

    ``arr`` is the committed ``(arch, seed, stage)`` array; it is changed in place and returned.
    """
    k = BOOK_FIELDS.index(name)
    for r in journal.pending(with_values=False):  # apply order
        for i, j, s, fields in r.book_entries():
            if fields[k] is not None:
                arr[i, j, s] = fields[k]
    return arr


def overlay_cell(journal: Journal, block: int, name: str, i: int, j: int, value: Any) -> Any:
    """``value`` (array ``name`` at arch position ``i``, seed position ``j``, as committed) with the last journal
    record of shard block ``block`` that sets it applied (``value`` itself when none does)."""
    files = journal.files(block)
    if files:
        with journal.lock(exclusive=False):
            for r in journal.read(files, with_values=True):
                for n, ii, jj, v in r.values:
                    if n == name and ii == i and (jj is None or jj == j):
                        value = v
    return value


__all__ = ["BOOK_FIELD", "overlay_book", "overlay_cell"]

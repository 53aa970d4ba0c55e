"""Array tasks (``rbnas run --task i/n``): a fixed partition of the store's storage blocks among n tasks.

A store keeps ``shard_cells`` consecutive cells (uid order) per shard file (a *storage block*,
:mod:`robustbench_nas.storage.shards`). Giving each task whole blocks means two array tasks never write the same
shard file, so the array path needs no lock shared between nodes (the store's lock stays for the rare overlap,
e.g. a re-run of a task while the old one still runs). Blocks are dealt out largest first, each to the task with
the fewest cells so far (ties: the lower task index), which keeps the tasks' cell counts within one block of each
other; the partition depends only on the number of cells, the block size and n, so a task always gets the same
cells, run after run.

Example:
    >>> task_blocks(700, 256, 2)          # blocks of 256, 256, 188 cells
    [[0, 2], [1]]
    >>> len(task_cells(range(700), (1, 2), shard_cells=256))
    256
"""

from __future__ import annotations

from typing import Iterable

#: cells per storage block of a store made by ``rbnas run`` (``StoreSpec.shard_cells``' default)
DEFAULT_SHARD_CELLS = 256


def block_sizes(n_cells: int, shard_cells: int) -> list[int]:
    """Cells in each storage block of a store of ``n_cells`` cells, ``shard_cells`` per block (the last may be short)."""
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    if isinstance(shard_cells, bool) or not isinstance(shard_cells, int) or shard_cells < 1:
        raise ValueError(f"shard_cells must be an int >= 1, got {shard_cells!r}")
    full, rest = divmod(n_cells, shard_cells)
    return [shard_cells] * full + ([rest] if rest else [])


def _check_task(task: tuple[int, int]) -> tuple[int, int]:
    i, n = task
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"task {i}/{n}: need n >= 1 and 0 <= i < n")
    return i, n


def task_blocks(n_cells: int, shard_cells: int, n_tasks: int) -> list[list[int]]:
    """The storage blocks of each of ``n_tasks`` array tasks: ``[blocks of task 0, blocks of task 1, ...]``.

    Every block goes to exactly one task; tasks' cell counts differ by at most one block (``shard_cells``).
    With more tasks than blocks, the extra tasks get none (they have nothing to do).

    Arguments:
        n_cells: cells in the store.
        shard_cells: cells per storage block (``StoreSpec.shard_cells``).
        n_tasks: array size n (>= 1).
    """
    _check_task((0, n_tasks))
    sizes = block_sizes(n_cells, shard_cells)
    load = [0] * n_tasks
    out: list[list[int]] = [[] for _ in range(n_tasks)]
    # largest first (a stable sort: equal blocks in index order), each to the least loaded task: the classic
    # greedy whose final spread is at most the last block placed, i.e. at most one block
    for b in sorted(range(len(sizes)), key=lambda b: -sizes[b]):
        t = min(range(n_tasks), key=lambda t: (load[t], t))
        out[t].append(b)
        load[t] += sizes[b]
    return [sorted(bs) for bs in out]


def task_cells(cells: Iterable[int], task: tuple[int, int] | None,
               shard_cells: int = DEFAULT_SHARD_CELLS) -> list[int]:
    """Cells of array task ``(i, n)`` (``rbnas run --task i/n``, one SLURM array task), uid-sorted.

    The cells of the whole storage blocks :func:`task_blocks` gives task i (positions ``p`` of the uid-sorted list
    with ``p // shard_cells`` in its blocks). ``None``: every cell.

    Arguments:
        cells: the store's cells (uids, any order; the store keeps them sorted).
        task: ``(i, n)``, 0-based i, or ``None``.
        shard_cells: cells per storage block of the store.
    """
    cells = sorted(cells)
    if task is None:
        return cells
    i, n = _check_task(task)
    mine = set(task_blocks(len(cells), shard_cells, n)[i])
    return [c for p, c in enumerate(cells) if p // shard_cells in mine]


def parse_task(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` (0-based i), the array task of ``rbnas run --task``."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--task {text!r}: expected i/n, e.g. 0/4") from None
    return _check_task((i, n))


__all__ = ["DEFAULT_SHARD_CELLS", "block_sizes", "parse_task", "task_blocks", "task_cells"]

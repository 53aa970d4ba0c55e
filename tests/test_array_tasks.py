"""Array tasks own whole storage blocks: ``--task i/n`` partitions the store's shard files, balanced by cells."""

from __future__ import annotations

import pytest

from robustbench_nas.pipelines.tasks import block_sizes, parse_task, task_blocks, task_cells


@pytest.mark.parametrize("n_cells, shard_cells, n", [
    (0, 256, 3), (8, 256, 3), (8, 3, 3), (257, 256, 2), (700, 256, 2), (6466, 256, 7), (6466, 256, 64),
    (15625, 256, 10), (1000, 10, 3), (1001, 10, 7), (5, 1, 5), (9, 2, 4),
])
def test_partition_covers_every_cell_once_in_disjoint_whole_blocks_balanced(n_cells: int, shard_cells: int,
                                                                              n: int) -> None:
    cells = [3 * k + 1 for k in range(n_cells)][::-1]  # uids, given unsorted: the store sorts them
    order = sorted(cells)
    block_of = {c: p // shard_cells for p, c in enumerate(order)}  # the store's block of each cell (by position)
    parts = [task_cells(cells, (i, n), shard_cells=shard_cells) for i in range(n)]
    # every cell exactly once
    flat = [c for p in parts for c in p]
    assert sorted(flat) == order and len(flat) == len(set(flat))
    # tasks' block sets are disjoint, and each task has whole blocks (all cells of each of its blocks)
    blocks = [{block_of[c] for c in p} for p in parts]
    for a in range(n):
        for b in range(a + 1, n):
            assert not blocks[a] & blocks[b], (a, b)
        assert sorted(parts[a]) == sorted(c for c in order if block_of[c] in blocks[a])
        assert blocks[a] == set(task_blocks(n_cells, shard_cells, n)[a])
    # balanced: cell counts within one block of each other
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= shard_cells, sizes


def test_block_sizes_and_examples() -> None:
    assert block_sizes(700, 256) == [256, 256, 188]
    assert block_sizes(512, 256) == [256, 256]
    assert block_sizes(0, 4) == []
    # hand-worked, largest block first to the least loaded task (ties: the lower task): 700 cells = blocks of
    # (256, 256, 188): 0 -> t0, 1 -> t1, 2 -> t0 (tie)
    assert task_blocks(700, 256, 2) == [[0, 2], [1]]
    # (256, 256, 256, 100): 0 -> t0, 1 -> t1, 2 -> t0 (tie), 3 -> t1 (256 < 512): 512 vs 356 cells
    assert task_blocks(3 * 256 + 100, 256, 2) == [[0, 2], [1, 3]]
    # more tasks than blocks: the extra tasks get nothing
    assert task_blocks(8, 256, 3) == [[0], [], []]
    assert task_cells(range(8), (2, 3)) == []


def test_bad_tasks_and_sizes_are_errors() -> None:
    assert parse_task("1/4") == (1, 4)
    for text, msg in [("4/4", "task 4/4"), ("-1/4", "task -1/4"), ("1/0", "task 1/0"), ("x", "expected i/n")]:
        with pytest.raises(ValueError, match=msg):
            parse_task(text)
    with pytest.raises(ValueError, match="shard_cells"):
        task_cells(range(4), (0, 2), shard_cells=0)
    with pytest.raises(ValueError, match="n_cells"):
        block_sizes(-1, 4)

"""``rbnas run --dry-run``: the units a command would run and the storage blocks they fall in, computing nothing.

Nothing is created or written: an existing store is opened read-only (its journal overlaid, as ``rbnas status``
reads it), a missing one is planned from the protocol's store layout with every unit pending, and leases are only
read (units another live run holds are marked with its ``holder@host``).

Example:
    >>> plan = dry_run("runs/tiny.zarr", get_protocol("tiny"), task=(0, 3))   # doctest: +SKIP
    >>> plan["n_units"], plan["blocks"]                                       # doctest: +SKIP
    (56, [0])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robustbench_nas.storage import PENDING, RobustnessStore, StoreError

from .leases import LeaseBook
from .protocol import ProtocolConfig
from .runner import check_same_protocol, plan_from_status, saved_protocol, stages_to_run
from .tasks import task_blocks, task_cells


def dry_run(
    store_path: str | os.PathLike,
    protocol: ProtocolConfig | None,
    *,
    stages: Sequence[str] | None = None,
    force_stages: Sequence[str] = (),
    task: tuple[int, int] | None = None,
    shard_cells: int | None = None,
) -> dict[str, Any]:
    """What ``run_pipeline`` with the same arguments would run, without running or writing anything.

    Arguments:
        store_path: the store (need not exist).
        protocol: the protocol (``None``: the existing store's own).
        stages, force_stages, task, shard_cells: as for :func:`~robustbench_nas.pipelines.runner.run_pipeline`.

    Returns:
        ``{"store", "exists", "protocol", "fingerprint", "n_cells", "shard_cells", "n_blocks", "task", "cells",
        "blocks", "stages", "n_units", "units": [{"arch", "seed", "stage", "block", "leased_by"}], "leased_units",
        "task_blocks"}``: ``blocks`` are the storage blocks (shard files along ``arch``) of the units; with a
        task, ``task_blocks`` gives every task of the array its blocks and cell count.
    """
    path = Path(store_path)
    exists = path.exists()
    if exists:
        store = RobustnessStore.open(path, mode="r")
        if protocol is None:
            protocol = saved_protocol(store)
        else:
            check_same_protocol(store, protocol)
        if shard_cells is not None and shard_cells != store.spec.shard_cells:
            raise StoreError(f"{path} has {store.spec.shard_cells} cells per storage block, asked --shard-cells "
                             f"{shard_cells}; a store's layout is fixed (omit --shard-cells to keep it)")
        spec = store.spec
        status = store.status()
    else:
        if protocol is None:
            raise StoreError(f"no store at {path}; pass a protocol (e.g. --protocol tiny) to plan one")
        spec = protocol.store_spec()
        if shard_cells is not None:
            import dataclasses

            spec = dataclasses.replace(spec, shard_cells=int(shard_cells))
        status = np.full((len(spec.archs), len(spec.seeds), len(spec.stages)), PENDING, dtype=np.int8)
    todo = stages_to_run(protocol, stages, force_stages)
    cells = task_cells(spec.archs, task, spec.shard_cells)
    if force_stages:  # the run resets them to pending for its cells first
        status = status.copy()
        pos = [spec.archs.index(c) for c in cells]
        for stage in force_stages:
            status[pos, :, spec.stages.index(stage)] = PENDING
    units = plan_from_status(spec.archs, spec.seeds, spec.stages, status, todo, cells)
    block = {a: p // spec.shard_cells for p, a in enumerate(sorted(spec.archs))}
    held = LeaseBook(path).held_by_others({u[0] for u in units}) if exists else {}
    rows = [{"arch": uid, "seed": seed, "stage": stage, "block": block[uid],
             "leased_by": held[uid].label() if uid in held else None} for uid, seed, stage in units]
    out: dict[str, Any] = {
        "store": str(path), "exists": exists, "protocol": protocol.name, "fingerprint": protocol.fingerprint(),
        "n_cells": len(spec.archs), "shard_cells": spec.shard_cells,
        "n_blocks": -(-len(spec.archs) // spec.shard_cells), "task": None if task is None else f"{task[0]}/{task[1]}",
        "cells": len(cells), "blocks": sorted({r["block"] for r in rows}), "stages": todo, "n_units": len(rows),
        "leased_units": sum(r["leased_by"] is not None for r in rows), "units": rows,
    }
    if task is not None:
        parts = task_blocks(len(spec.archs), spec.shard_cells, task[1])
        sizes = [min(spec.shard_cells, len(spec.archs) - b * spec.shard_cells) for b in range(out["n_blocks"])]
        out["task_blocks"] = {f"{i}/{task[1]}": {"blocks": bs, "cells": sum(sizes[b] for b in bs)}
                              for i, bs in enumerate(parts)}
    return out


__all__ = ["dry_run"]

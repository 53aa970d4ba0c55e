"""Rewrite a finished store into larger chunks (and optionally shards) for publishing.

A working store has one cell per chunk, so that many writers never share a file; that makes many small files.
:func:`compact_store` copies every array, coordinate and attribute into a new store with ``arch_chunk`` cells per
chunk (and ``shard_archs`` cells per shard file). The copy is a single-writer store: the pipeline refuses to run
on it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from .store import RobustnessStore, StoreError


def compact_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    arch_chunk: int = 256,
    shard_archs: int | None = None,
    overwrite: bool = False,
) -> RobustnessStore:
    """Copy ``src`` into a new store ``dst`` with ``arch_chunk`` cells per chunk; values and attributes unchanged.

    Arguments:
        src: a store (read only).
        dst: the new store (refused if it exists, unless ``overwrite``).
        arch_chunk: cells per chunk along ``arch``.
        shard_archs: cells per shard file (a multiple of ``arch_chunk``; ``None``: no sharding).
        overwrite: replace ``dst`` if it exists.

    Example:
        >>> compact_store("runs/tiny.zarr", "runs/tiny-pub.zarr", arch_chunk=64)   # doctest: +SKIP
    """
    source = RobustnessStore.open(src, mode="r")
    dst = Path(dst)
    if dst.resolve() == source.path.resolve():
        raise StoreError("compact_store: destination is the source; write the compacted copy elsewhere")
    if arch_chunk < 1:
        raise ValueError(f"arch_chunk must be >= 1, got {arch_chunk}")
    spec = replace(source.spec, arch_chunk=min(arch_chunk, len(source.spec.archs)))
    extra = {k: v for k, v in source.attrs.items() if k not in ("spec", "rbnas_schema")}
    extra["compacted_from"] = str(source.path)
    tmp = dst.with_name(f".{dst.name}.compacting")
    shutil.rmtree(tmp, ignore_errors=True)
    out = RobustnessStore.create(tmp, spec, extra, shard_archs=shard_archs)
    for name in source.arrays:
        values = np.asarray(source._array(name)[...])
        target = out._array(name)
        if values.size:
            target[...] = values
    if dst.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"{dst} already exists; refusing to overwrite it")
        shutil.rmtree(dst)
    os.rename(tmp, dst)  # the finished copy appears at once
    return RobustnessStore.open(dst)


__all__ = ["compact_store"]

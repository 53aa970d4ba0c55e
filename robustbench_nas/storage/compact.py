"""Copies of a store: :func:`compact_store` (another shard / inner chunk size, compression) and :func:`migrate_store` (schema 1).

The store ``rbnas run`` leaves is already the publishable layout; :func:`compact_store` only re-shards it (e.g.
1024 cells per shard, zstd-compressed confusion matrices for a smaller download). :func:`migrate_store` converts a
schema-1 store (one chunk file per cell, ``nb201_index`` coordinate) into the current schema. Both build the copy
under a unique temporary name beside the destination and rename it into place, so the destination is either absent,
the old one, or complete; neither ever modifies the source, and neither deletes a destination that is not one of
our stores.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import rename_into_place
from .root_meta import StoreError, ensure_ours, read_root_meta
from .schema import StoreSpec, array_specs
from .store import RobustnessStore


def _replace_into(tmp: Path, dst: Path, overwrite: bool) -> None:
    """Move the finished copy ``tmp`` to ``dst`` (an existing ``dst`` only if ``overwrite`` and it is ours).

    The copy's files were written without fsync; :func:`rename_into_place` fsyncs them all before the rename and the
    folder after it, so once this returns the copy survives a machine crash.
    """
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise StoreError(f"{dst} already exists; refusing to overwrite it")
        ensure_ours(dst, "overwrite")
        old = dst.with_name(f".{dst.name}.replaced-{uuid.uuid4().hex[:8]}")
        rename_into_place(dst, old, fsync=False)  # two renames: dst is never absent for long, never half-deleted
        rename_into_place(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        rename_into_place(tmp, dst)  # the finished copy appears at once


def _temp_beside(dst: Path, what: str) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    return dst.with_name(f".{dst.name}.{what}-{uuid.uuid4().hex[:8]}")


def compact_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    shard_cells: int = 1024,
    chunk_cells: int | None = None,
    compress: bool = True,
    overwrite: bool = False,
) -> RobustnessStore:
    """Copy ``src`` into a new store ``dst`` with ``shard_cells`` cells per shard; values and attributes unchanged.

    Arguments:
        src: a store (read only; journal records not committed yet are refused: finish or resume the run first).
        dst: the new store (refused if it exists, unless ``overwrite`` and it is a robustbench-nas store).
        shard_cells: cells per shard file.
        chunk_cells: cells per inner chunk (``None``: ~4 MiB per chunk; see :class:`StoreSpec`), whatever the
            source's inner chunks were (a store of one-cell chunks comes out in the new layout).
        compress: zstd-compress the large per-cell values (confusion matrices): a smaller download.
        overwrite: replace ``dst`` if it is one of our stores.

    Example:
        >>> compact_store("runs/tiny.zarr", "runs/tiny-pub.zarr", shard_cells=1024)   # doctest: +SKIP
    """
    source = RobustnessStore.open(src, mode="r")
    dst = Path(dst)
    if dst.resolve() == source.path.resolve():
        raise StoreError("compact_store: destination is the source; write the compacted copy elsewhere")
    if shard_cells < 1:
        raise ValueError(f"shard_cells must be >= 1, got {shard_cells}")
    if source.journal.files():
        raise StoreError(f"{source.path} has results not committed yet (a run in progress or killed); "
                         "resume or finish it (`rbnas run`) before copying")
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise StoreError(f"{dst} already exists; refusing to overwrite it")
    if dst.exists() or dst.is_symlink():
        ensure_ours(dst, "overwrite")  # before any work: a foreign folder is refused, untouched
    spec = replace(source.spec, shard_cells=min(shard_cells, len(source.spec.archs)), chunk_cells=chunk_cells,
                   compress=compress)
    extra = {k: v for k, v in source.attrs.items() if k not in ("spec", "rbnas_schema")}
    extra["compacted_from"] = str(source.path)
    tmp = _temp_beside(dst, "compacting")
    try:
        out = RobustnessStore.create(tmp, spec, extra)
        with out.journal.lock(exclusive=True):
            for name in source.arrays:
                out._write_rows(name, np.arange(len(spec.archs)), source.read_array(name), fsync=False)
        _replace_into(tmp, dst, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RobustnessStore.open(dst)


def migrate_store(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> RobustnessStore:
    """Convert a schema-1 store at ``src`` into a new schema-2 store at ``dst`` (``src`` is only read).

    Schema 1 kept the requested NB201 index as a coordinate ``nb201_index`` and one chunk file per cell; schema 2
    keeps it in ``spec.arch_coords["nb201_index"]`` and shards. Every array (values and bookkeeping) is copied
    exactly; checkpoint paths are rewritten relative to ``dst``'s folder. A ``src`` that is already schema 2 is
    an error (nothing to do).
    """
    import zarr

    src, dst = Path(src), Path(dst)
    meta = read_root_meta(src)
    attrs = dict(meta.get("attributes") or {})
    if attrs.get("rbnas_schema") != 1 or not isinstance(attrs.get("spec"), dict):
        version = attrs.get("rbnas_schema", "none")
        raise StoreError(f"{src} is not a schema-1 robustbench-nas store (schema {version!r}); nothing to migrate")
    if dst.resolve() == src.resolve():
        raise StoreError("migrate: NEW must be another path than OLD (the old store is kept as it is)")
    if (dst.exists() or dst.is_symlink()) and not overwrite:
        raise StoreError(f"{dst} already exists; refusing to overwrite it")
    old = dict(attrs["spec"])
    index = old.pop("nb201_index", None)
    old.pop("arch_chunk", None)
    coords: dict[str, Any] = dict(old.pop("arch_coords", None) or {})
    if index is not None:
        coords.setdefault("nb201_index", [int(i) for i in index])
    try:
        spec = StoreSpec(**old, arch_coords=coords)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{src}: its schema-1 spec cannot be converted ({e})") from None
    extra = {k: v for k, v in attrs.items() if k not in ("spec", "rbnas_schema")}
    extra["migrated_from"] = {"path": str(src.resolve()), "schema": 1}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        group = zarr.open_group(str(src), mode="r", zarr_format=3)
    tmp = _temp_beside(dst, "migrating")
    try:
        out = RobustnessStore.create(tmp, spec, extra)
        with out.journal.lock(exclusive=True):
            for name, a in array_specs(spec).items():
                if name not in group:
                    continue  # an array the old store did not have stays at its fill value
                values = np.asarray(group[name][...])
                if a.dtype == "str":
                    values = np.asarray([str(v) for v in values.ravel()], dtype=object).reshape(values.shape)
                    if name == "checkpoint":
                        values = np.asarray([os.path.relpath(src.parent / v, dst.parent) if v else v
                                             for v in values.ravel()], dtype=object).reshape(values.shape)
                out._write_rows(name, np.arange(len(spec.archs)), values.astype(np.dtype(a.dtype))
                                if a.dtype != "str" else values, fsync=False)
        _replace_into(tmp, dst, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RobustnessStore.open(dst)


__all__ = ["compact_store", "migrate_store"]

"""Reading a store as an :class:`xarray.Dataset`: a lazy backend over our own shard reader, and done-masking.

``open_dataset`` reads the same files ``xarray.open_zarr`` reads, through :mod:`.shards` (whole shards at a time,
~100x faster than zarr-python's per-chunk path on a full-size store); with dask ``chunks`` it hands over to
``xarray.open_zarr`` for out-of-core work. Only committed values are visible (see :mod:`.journal_overlay`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .root_meta import quiet_zarr, read_store_meta
from .schema import DONE
from .shards import ArrayLayout, layout_from_meta, read_array, read_row

_SHARDED_ARRAY: type | None = None


def _sharded_array(root: Path, layout: ArrayLayout) -> Any:
    """A lazily indexed array of one store array, read through :mod:`.shards` (an xarray ``BackendArray``)."""
    global _SHARDED_ARRAY
    if _SHARDED_ARRAY is None:
        from xarray.backends.common import BackendArray
        from xarray.core import indexing

        class ShardedArray(BackendArray):
            def __init__(self, root: Path, layout: ArrayLayout) -> None:
                self.root, self.layout = root, layout
                self.shape = layout.shape
                self.dtype = layout.dtype

            def __getitem__(self, key: Any) -> np.ndarray:
                return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC,
                                                          self._getitem)

            def _getitem(self, key: tuple[Any, ...]) -> np.ndarray:
                if not self.shape or self.layout.shard is None:
                    return np.asarray(read_array(self.root, self.layout)[key])
                first, rest = key[0], key[1:]
                if isinstance(first, (int, np.integer)):
                    row = read_row(self.root, self.layout, int(first) % self.shape[0])
                    return np.asarray(row[rest] if rest else row)
                start, stop, step = first.indices(self.shape[0])
                if step == 1 and stop - start == 1:
                    rows = read_row(self.root, self.layout, start)[None]
                else:
                    rows = read_array(self.root, self.layout, slice(start, max(start, stop)))[::step]
                return np.asarray(rows[(slice(None), *rest)] if rest else rows)

        _SHARDED_ARRAY = ShardedArray
    return _SHARDED_ARRAY(root, layout)


def _open_fast(path: Path, meta: dict[str, Any]) -> Any:
    """The store as an xarray Dataset of lazily indexed shard readers (``None``: a layout this reader lacks)."""
    import xarray as xr
    from xarray.core import indexing

    nodes = (meta.get("consolidated_metadata") or {}).get("metadata") or {}
    if not nodes:
        return None
    variables = {}
    for name, m in nodes.items():
        if m.get("node_type") != "array" or "/" in name:
            continue
        lay = layout_from_meta(name, m)
        if lay is None or len(lay.dims) != len(lay.shape):
            return None
        attrs = {k: v for k, v in lay.attrs.items() if k != "coordinates"}
        data = indexing.LazilyIndexedArray(_sharded_array(path, lay))
        variables[name] = xr.Variable(lay.dims, data, attrs)
    dims = {d for v in variables.values() for d in v.dims}
    coords = {n: v for n, v in variables.items() if v.dims == (n,) and n in dims}
    ds = xr.Dataset({n: v for n, v in variables.items() if n not in coords}, coords=coords,
                    attrs=dict(meta.get("attributes") or {}))
    return ds


def open_dataset(path: str | os.PathLike, *, done_only: bool = False, chunks: Any = None) -> Any:
    """Open a store as an :class:`xarray.Dataset` (coordinates ``arch_str`` and ``spec.arch_coords`` attached).

    Arguments:
        path: the store.
        done_only: mask values whose (arch, seed, stage) is not marked done.
        chunks: ``None`` (default): lazily indexed arrays read whole shards at a time by our own shard reader
            (the same bytes ``xarray.open_zarr`` reads, ~100x faster than zarr-python's per-chunk path on a
            full-size store); ``{}`` etc.: ``xarray.open_zarr`` with those dask chunks (out-of-core work).

    Only committed results are visible (``rbnas run`` commits every block as it completes and at its end);
    :meth:`RobustnessStore.status` also counts journal records not committed yet.

    Example:
        >>> ds = open_dataset("runs/tiny.zarr")                      # doctest: +SKIP
        >>> ds.adv_accuracy.sel(attack="pgd@Linf").mean("arch")      # doctest: +SKIP
    """
    import xarray as xr

    path = Path(path)
    meta = read_store_meta(path)  # clear error for a missing / foreign / other-schema store (nothing written)
    attrs = dict(meta.get("attributes") or {})
    ds = _open_fast(path, meta) if chunks is None else None
    if ds is None:
        with quiet_zarr():
            ds = xr.open_zarr(str(path), consolidated=True, chunks=chunks)
    names = ["arch_str", *(attrs["spec"].get("arch_coords") or {}), "attack_grid"]
    ds = ds.set_coords([c for c in names if c in ds.data_vars])
    if done_only:
        ds = mask_not_done(ds)
    return ds


def mask_not_done(ds: Any) -> Any:
    """Mask every stage's values where its status is not done (floats -> NaN, ints -> -1, strings -> "")."""
    import xarray as xr

    status = ds["status"]
    out = ds.copy()
    for name, var in ds.data_vars.items():
        stage = var.attrs.get("stage", "")
        if not stage or stage not in list(ds["stage"].values):
            continue
        done = status.sel(stage=stage) == DONE
        if "seed" not in var.dims:
            done = done.any("seed")
        done = done.drop_vars("stage", errors="ignore")
        if var.dtype.kind == "f":
            out[name] = var.where(done)
        elif var.dtype.kind in "iub":
            out[name] = xr.where(done, var, -1).astype(var.dtype).assign_attrs(var.attrs)
        else:
            out[name] = xr.where(done, var, "").assign_attrs(var.attrs)
    return out



__all__ = ["mask_not_done", "open_dataset"]

"""Creating a store: the group attributes, the coordinate arrays and every value array at its fill.

A new store is complete on disk before anyone writes to it: every array exists with its final shape, sharding and
fill value (NaN / -1 / pending), and the consolidated metadata that readers use as a cache is written last.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from .root_meta import StoreError, ensure_ours, quiet_zarr
from .schema import (
    SCHEMA_VERSION,
    STATUS_NAMES,
    ArraySpec,
    StoreSpec,
    array_specs,
    chunk_shape,
    eps_label,
    shard_shape,
)

#: with ``spec.compress``, per-cell values larger than this are zstd-compressed per inner chunk (confusion matrices).
#: Off by default: raw chunks read at memory speed (a full store reads ~2.5x faster than compressed, at ~2.4x size)
COMPRESS_BYTES = 4096


def software_versions() -> dict[str, str]:
    """Versions of the software that wrote a store (saved as ``attrs["software"]``)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("robustbench-nas", "torch", "numpy", "zarr", "xarray", "dask", "distributed", "torchattacks"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _zarr_dtype(a: ArraySpec) -> Any:
    """The dtype zarr-python takes for ``a`` (``str`` for variable-length strings)."""
    return str if a.dtype == "str" else a.dtype



def write_new_store(path: Path, spec: StoreSpec, attrs: dict[str, Any] | None = None, *,
                    overwrite: bool = False) -> None:
    """Write an empty store for ``spec`` at ``path`` (see :meth:`.store.RobustnessStore.create` for the arguments).

    Raises StoreError for an existing path without ``overwrite`` (or one that is not a store of ours), ValueError
    for reserved or non-JSON ``attrs``; nothing is written before those checks pass.
    """
    import shutil

    import zarr

    path = Path(path)
    spec.validate()
    if path.exists():
        if not overwrite:
            raise StoreError(f"{path} already exists; refusing to overwrite it (pass overwrite=True to replace it)")
        ensure_ours(path, "overwrite")
        shutil.rmtree(path)
    reserved = {"spec", "rbnas_schema"}
    if attrs and reserved & set(attrs):
        raise ValueError(f"attrs may not set the reserved keys {sorted(reserved & set(attrs))}")
    sizes = spec.dim_sizes()
    # the per-cell lists (archs, arch_str, arch_coords) are the coordinate arrays; keeping a second copy in the
    # group attributes would make every open parse ~100 bytes per cell of JSON (as long as reading one array)
    spec_attr = {**spec.to_dict(), "archs": "coordinate arch", "arch_str": "coordinate arch_str",
                 "arch_coords": list(spec.arch_coords), "per_arch_in_coordinates": True}
    meta = {
        "rbnas_schema": SCHEMA_VERSION,
        "spec": spec_attr,
        "title": "robustbench-nas robustness dataset",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "eps_units": "fraction of the [0, 1] pixel range (8/255 is stored as 0.0313...)",
        "status_codes": {str(k): v for k, v in STATUS_NAMES.items()},
        **(attrs or {}),
    }
    # json round trip: attributes must be plain JSON (fails here, before anything is written, if not)
    meta = json.loads(json.dumps(meta))
    coords = " ".join(["arch_str", *spec.arch_coords])
    with quiet_zarr():
        group = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=meta)
        write_coords(group, spec)
        for a in array_specs(spec).values():
            shape = tuple(sizes[d] for d in a.dims)
            chunk = chunk_shape(a, sizes, spec.shard_cells, spec.chunk_cells)
            # compression is decided per (cell, seed) value: only the large ones (confusion matrices)
            cell_bytes = int(np.prod([max(1, sizes[d]) for d in a.cell_dims])) * (
                np.dtype(a.dtype).itemsize if a.dtype != "str" else 8)
            compress = spec.compress and a.dtype != "str" and cell_bytes > COMPRESS_BYTES
            group.create_array(
                a.name,
                shape=shape,
                dtype=_zarr_dtype(a),
                chunks=chunk,
                shards=shard_shape(a, sizes, spec.shard_cells),
                compressors=zarr.codecs.ZstdCodec(level=3, checksum=False) if compress else None,
                fill_value=a.fill,
                dimension_names=list(a.dims),
                attributes={"description": a.description, "units": a.units, "stage": a.stage or "",
                            "coordinates": coords},
            )
        zarr.consolidate_metadata(str(path))

def write_coords(group: Any, spec: StoreSpec) -> None:
    """Write every coordinate array of ``spec`` (and the ``attack_grid`` mask) into the new ``group``."""

    def coord(name: str, values: Any, dtype: Any, dim: str | None = None, **attributes: Any) -> None:
        values = np.asarray(values, dtype=dtype) if dtype is not str else np.asarray(
            [str(v) for v in values], dtype=np.dtypes.StringDType())
        arr = group.create_array(
            name, shape=values.shape, dtype=dtype, chunks=(max(1, values.shape[0]),), compressors=None,
            dimension_names=[dim or name], attributes=attributes, fill_value="" if dtype is str else 0,
        )
        if values.size:
            arr[...] = values

    coord("arch", spec.archs, "int64", description=f"{spec.search_space} uid (class id of the cell)")
    coord("arch_str", spec.arch_str, str, "arch", description="architecture string")
    for name, vals in spec.arch_coords.items():
        dtype: Any = str if vals and isinstance(vals[0], str) else (
            "int64" if all(isinstance(v, (int, bool)) for v in vals) else "float64")
        coord(name, vals, dtype, "arch", description=f"per-cell coordinate {name}")
    coord("seed", spec.seeds, "int64", description="training / initialisation seed")
    coord("stage", spec.stages, str)
    coord("attack", list(spec.attacks), str)
    eps = spec.eps_values()
    coord("eps", eps, "float64", units="fraction of [0, 1] pixel range", labels=[eps_label(e) for e in eps],
          eps_255=[round(e * 255, 6) for e in eps])
    grid = group.create_array("attack_grid", shape=(len(spec.attacks), len(eps)), dtype="bool",
                              chunks=(max(1, len(spec.attacks)), max(1, len(eps))), fill_value=False,
                              compressors=None, dimension_names=["attack", "eps"],
                              attributes={"description": "True where the protocol evaluates (attack, eps)"})
    if grid.size:
        grid[...] = spec.attack_grid()
    coord("corruption", spec.corruptions, str)
    coord("severity", spec.severities, "int64")
    coord("proxy", spec.proxies, str)
    coord("measure", spec.measures, str)
    names = spec.class_names or [str(i) for i in range(spec.num_classes)]
    coord("true_class", list(range(spec.num_classes)), "int64", class_names=names)
    coord("pred_class", list(range(spec.num_classes)), "int64", class_names=names)
    coord("epoch", list(range(1, spec.epochs + 1)), "int64", description="training epoch, 1-based")

__all__ = ["COMPRESS_BYTES", "software_versions", "write_coords", "write_new_store"]

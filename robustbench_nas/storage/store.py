"""Create, write and read robustbench-nas Zarr (format 3) stores.

The writer API works without running anything (the importer of published data uses it); the pipeline uses the
same calls from its worker processes. See ``docs/storage.md`` for the layout and examples.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .schema import (
    DONE,
    FAILED,
    PENDING,
    PER_ARCH_STAGES,
    SCHEMA_VERSION,
    STATUS_NAMES,
    ArraySpec,
    StoreSpec,
    array_specs,
    as_cell_value,
    chunk_shape,
    eps_label,
)


class StoreError(RuntimeError):
    """A store that cannot be used as asked (missing, not ours, incompatible protocol, ...)."""


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    # Consolidated metadata is a zarr-python extension in format 3; it warns on every open. We rely on it only as
    # a cache of metadata that never changes after creation, so the warning carries no information here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


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
    return str if a.dtype == "str" else a.dtype


#: bookkeeping arrays stored without compression (one value per chunk)
_RAW_BOOKKEEPING = frozenset({"status", "stage_seconds", "attempts"})


def _scan_scalar_chunks(path: Path, arr: Any) -> np.ndarray | None:
    """Read a 3-d array of one-value, uncompressed chunks by listing its chunk files (``None``: not applicable).

    zarr spends about half a millisecond per chunk, present or not; a full-size store has 6466 x 7 status chunks,
    most of them never written. Listing the chunk folders and reading the few bytes of the files that exist gives
    the same array far faster. Only used when the layout is exactly that (chunks (1, 1, 1), bytes codec only,
    no shards, '/' chunk keys); anything else returns ``None`` and the caller reads through zarr.
    """
    try:
        meta = arr.metadata
        ok = (
            arr.ndim == 3 and tuple(arr.chunks) == (1, 1, 1) and arr.shards is None and not arr.compressors
            and not arr.filters and getattr(meta.chunk_key_encoding, "separator", None) == "/"
            and type(meta.chunk_key_encoding).__name__ == "DefaultChunkKeyEncoding"
        )
    except AttributeError:
        return None
    if not ok:
        return None
    dtype = np.dtype(arr.dtype).newbyteorder("<")
    out = np.full(arr.shape, arr.fill_value, dtype=dtype)
    root = path / "c"
    if not root.is_dir():
        return out.astype(np.dtype(arr.dtype))
    for di in os.scandir(root):
        for dj in os.scandir(di.path):
            for fs in os.scandir(dj.path):
                if not fs.name.isdigit():  # e.g. a writer's temporary *.partial file
                    continue
                with open(fs.path, "rb") as fh:
                    raw = fh.read()
                if len(raw) != dtype.itemsize:
                    return None  # not the layout we expect: let zarr decide
                out[int(di.name), int(dj.name), int(fs.name)] = np.frombuffer(raw, dtype=dtype)[0]
    return out.astype(np.dtype(arr.dtype))


class RobustnessStore:
    """One run's results in a Zarr v3 group.

    Create with :meth:`create`, open with :meth:`open`. Values are written per (cell, seed) with
    :meth:`write_cell` (safe from many processes at once when ``arch_chunk == 1``) or per array with
    :meth:`write_array` (one writer, fast bulk import). Read with :meth:`to_xarray` / :meth:`to_dataframe`.

    Example:
        >>> spec = StoreSpec(archs=[0], arch_str=["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
        >>> st = RobustnessStore.create("/tmp/doc.zarr", spec, overwrite=True)
        >>> st.write_cell(0, 0, {"clean_accuracy": 0.1}, stage=None)
        >>> float(st.to_xarray().clean_accuracy.sel(arch=0, seed=0))
        0.1
    """

    def __init__(self, path: str | os.PathLike, group: Any, mode: str) -> None:
        self.path = Path(path)
        self._group = group
        self.mode = mode
        attrs = dict(group.attrs)
        self.attrs: dict[str, Any] = attrs
        self.spec = StoreSpec(**attrs["spec"])
        self.arrays = array_specs(self.spec)
        self.sizes = self.spec.dim_sizes()
        self._arch_pos = {a: i for i, a in enumerate(self.spec.archs)}
        self._seed_pos = {s: i for i, s in enumerate(self.spec.seeds)}
        self._stage_pos = {s: i for i, s in enumerate(self.spec.stages)}
        self._handles: dict[str, Any] = {}

    # ---- creation / opening ------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        spec: StoreSpec,
        attrs: dict[str, Any] | None = None,
        *,
        overwrite: bool = False,
        shard_archs: int | None = None,
    ) -> "RobustnessStore":
        """Create an empty store for ``spec``: coordinates written, every value at its fill (NaN / -1 / pending).

        Arguments:
            path: folder of the store (``*.zarr`` by convention).
            spec: the coordinates (:class:`StoreSpec`).
            attrs: extra JSON-able group attributes (the pipeline saves ``protocol`` and ``protocol_fingerprint``).
            overwrite: replace an existing store; without it an existing path is an error (never overwritten).
            shard_archs: group ``shard_archs`` cells per shard file (a multiple of ``spec.arch_chunk``); for
                published, single-writer stores only -- a shard written partially by several writers is clobbered.
        """
        import zarr

        path = Path(path)
        spec.validate()
        if path.exists() and not overwrite:
            raise StoreError(f"{path} already exists; refusing to overwrite it (pass overwrite=True to replace it)")
        reserved = {"spec", "rbnas_schema"}
        if attrs and reserved & set(attrs):
            raise ValueError(f"attrs may not set the reserved keys {sorted(reserved & set(attrs))}")
        sizes = spec.dim_sizes()
        if shard_archs is not None and (shard_archs < 1 or shard_archs % spec.arch_chunk):
            raise ValueError(f"shard_archs={shard_archs} must be a positive multiple of arch_chunk={spec.arch_chunk}")
        meta = {
            "rbnas_schema": SCHEMA_VERSION,
            "spec": spec.to_dict(),
            "title": "robustbench-nas robustness dataset",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "software": software_versions(),
            "eps_units": "fraction of the [0, 1] pixel range (8/255 is stored as 0.0313...)",
            "status_codes": {str(k): v for k, v in STATUS_NAMES.items()},
            **(attrs or {}),
        }
        # json round trip: attributes must be plain JSON (fails here, before anything is written, if not)
        meta = json.loads(json.dumps(meta))
        with _quiet_zarr():
            group = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=meta)
            cls._write_coords(group, spec)
            for a in array_specs(spec).values():
                shape = tuple(sizes[d] for d in a.dims)
                chunks = chunk_shape(a, sizes, spec.arch_chunk)
                shards = None
                if shard_archs is not None:
                    # a shard: shard_archs cells (a multiple of the chunk), every seed / stage, the rest whole
                    n_arch = min(shard_archs, -(-sizes["arch"] // chunks[0]) * chunks[0])
                    shards = tuple(n_arch if d == "arch" else max(c, sizes[d]) for d, c in zip(a.dims, chunks))
                group.create_array(
                    a.name,
                    shape=shape,
                    dtype=_zarr_dtype(a),
                    chunks=chunks,
                    shards=shards,
                    # bookkeeping chunks hold one number: raw bytes, so _scan_scalar_chunks can read them fast
                    compressors=None if a.name in _RAW_BOOKKEEPING else "auto",
                    fill_value=a.fill,
                    dimension_names=list(a.dims),
                    attributes={
                        "description": a.description,
                        "units": a.units,
                        "stage": a.stage or "",
                        "coordinates": "arch_str nb201_index",
                    },
                )
            zarr.consolidate_metadata(str(path))
        return cls.open(path, mode="r+")

    @staticmethod
    def _write_coords(group: Any, spec: StoreSpec) -> None:
        def coord(name: str, values: Any, dtype: Any, dim: str | None = None, **attributes: Any) -> None:
            values = np.asarray(values, dtype=dtype) if dtype is not str else np.asarray(
                [str(v) for v in values], dtype=np.dtypes.StringDType())
            arr = group.create_array(
                name, shape=values.shape, dtype=dtype, chunks=(max(1, values.shape[0]),),
                dimension_names=[dim or name], attributes=attributes, fill_value="" if dtype is str else 0,
            )
            if values.size:
                arr[...] = values

        coord("arch", spec.archs, "int64", description=f"{spec.search_space} uid (smallest index of the class)")
        coord("arch_str", spec.arch_str, str, "arch", description="architecture string")
        coord("nb201_index", spec.nb201_index, "int64", "arch", description="index the cell was requested as")
        coord("seed", spec.seeds, "int64", description="training / initialisation seed")
        coord("stage", spec.stages, str)
        coord("attack", list(spec.attacks), str)
        eps = spec.eps_values()
        coord("eps", eps, "float64", units="fraction of [0, 1] pixel range", labels=[eps_label(e) for e in eps],
              eps_255=[round(e * 255, 6) for e in eps])
        grid = group.create_array("attack_grid", shape=(len(spec.attacks), len(eps)), dtype="bool",
                                  chunks=(max(1, len(spec.attacks)), max(1, len(eps))), fill_value=False,
                                  dimension_names=["attack", "eps"],
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

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> "RobustnessStore":
        """Open an existing store (``mode`` ``"r"`` or ``"r+"``); StoreError if it is missing or not ours."""
        import zarr

        path = Path(path)
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"no Zarr store at {path} (missing {path / 'zarr.json'})")
        try:
            with _quiet_zarr():
                group = zarr.open_group(str(path), mode=mode, zarr_format=3, use_consolidated=True)
        except (ValueError, KeyError, TypeError) as e:  # e.g. a Zarr group without consolidated metadata
            raise StoreError(f"{path} is not a robustbench-nas store ({e})") from None
        if "rbnas_schema" not in group.attrs or "spec" not in group.attrs:
            raise StoreError(f"{path} is a Zarr group but not a robustbench-nas store (no 'rbnas_schema' attribute)")
        if int(group.attrs["rbnas_schema"]) != SCHEMA_VERSION:
            raise StoreError(f"{path} has schema version {group.attrs['rbnas_schema']}; this code reads {SCHEMA_VERSION}")
        return cls(path, group, mode)

    # ---- positions ---------------------------------------------------------------------------------------------
    def arch_pos(self, arch: int) -> int:
        """Position of cell ``arch`` (its uid) along the ``arch`` dim."""
        try:
            return self._arch_pos[int(arch)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(f"cell {arch!r} is not in this store (it has {len(self._arch_pos)} cells)") from None

    def seed_pos(self, seed: int) -> int:
        """Position of ``seed`` along the ``seed`` dim."""
        try:
            return self._seed_pos[int(seed)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(f"seed {seed!r} is not in this store (seeds {self.spec.seeds})") from None

    def stage_pos(self, stage: str) -> int:
        """Position of ``stage`` along the ``stage`` dim."""
        if stage not in self._stage_pos:
            raise KeyError(f"stage {stage!r} is not in this store (stages {self.spec.stages})")
        return self._stage_pos[stage]

    def _array(self, name: str) -> Any:
        if name not in self._handles:
            with _quiet_zarr():
                self._handles[name] = self._group[name]
        return self._handles[name]

    def _check_writable(self) -> None:
        if self.mode != "r+":
            raise StoreError(f"{self.path} is open read-only; open it with mode='r+' to write")

    # ---- writing -----------------------------------------------------------------------------------------------
    def write_cell(
        self,
        arch: int,
        seed: int,
        values: dict[str, Any],
        *,
        stage: str | None = None,
        seconds: float | None = None,
    ) -> None:
        """Write one cell's values; with ``stage``, mark that stage done for the cell (last, after the values).

        Arguments:
            arch: the cell's uid (a value of the ``arch`` coordinate).
            seed: a value of the ``seed`` coordinate (ignored for arrays without a seed dim).
            values: ``{array name: value}``; each value has the array's shape without ``arch`` and ``seed``
                (e.g. ``adv_accuracy``: ``(attack, eps)``, ``clean_confusion``: ``(true_class, pred_class)``).
            stage: mark this stage done for (arch, seed) -- for a per-arch stage (``info``) at every seed.
            seconds: wall time of the stage, stored in ``stage_seconds``.

        Every value is checked before anything is written: a bad name, shape or dtype raises ``ValueError`` /
        ``KeyError`` and leaves the store untouched.
        """
        self._check_writable()
        i = self.arch_pos(arch)
        j = self.seed_pos(seed)
        s = self.stage_pos(stage) if stage is not None else None
        prepared: list[tuple[ArraySpec, np.ndarray]] = []
        for name, value in values.items():
            if name not in self.arrays:
                raise KeyError(f"no array {name!r} in this store; arrays: {sorted(self.arrays)}")
            a = self.arrays[name]
            if a.stage is None:
                raise ValueError(f"{name!r} is bookkeeping, written by the store itself, not by write_cell")
            prepared.append((a, as_cell_value(a, value, self.sizes)))
        for a, v in prepared:
            self._array(a.name)[self._cell_selection(a, i, j)] = v[(None,) * (2 if "seed" in a.dims else 1)]
        if s is not None:
            self._finish(i, j, s, stage, DONE, "", seconds)

    @staticmethod
    def _cell_selection(a: ArraySpec, i: int, j: int) -> tuple[slice, ...]:
        sel = [slice(i, i + 1)]
        if "seed" in a.dims:
            sel.append(slice(j, j + 1))
        return tuple(sel)

    def _seed_slots(self, stage: str, j: int) -> list[int]:
        return list(range(len(self.spec.seeds))) if stage in PER_ARCH_STAGES else [j]

    def _finish(self, i: int, j: int, s: int, stage: str, code: int, error: str, seconds: float | None) -> None:
        for jj in self._seed_slots(stage, j):
            sel = (slice(i, i + 1), slice(jj, jj + 1), slice(s, s + 1))
            self._array("stage_seconds")[sel] = np.full((1, 1, 1), np.nan if seconds is None else float(seconds))
            self._array("error")[sel] = np.asarray([[[error]]], dtype=np.dtypes.StringDType())
            # status goes last: a reader (or a resumed run) never sees "done" before every value is in
            self._array("status")[sel] = np.full((1, 1, 1), code, dtype=np.int8)

    def mark_failed(self, arch: int, seed: int, stage: str, error: str, seconds: float | None = None) -> None:
        """Mark (arch, seed, stage) failed with ``error`` (its values are not trusted and will be recomputed)."""
        self._check_writable()
        self._finish(self.arch_pos(arch), self.seed_pos(seed), self.stage_pos(stage), stage, FAILED,
                     str(error)[-4000:], seconds)

    def add_attempt(self, arch: int, seed: int, stage: str) -> int:
        """Count one more attempt of (arch, seed, stage); return the new total."""
        self._check_writable()
        i, j, s = self.arch_pos(arch), self.seed_pos(seed), self.stage_pos(stage)
        arr = self._array("attempts")
        n = int(arr[i, j, s]) + 1
        for jj in self._seed_slots(stage, j):
            arr[i : i + 1, jj : jj + 1, s : s + 1] = np.full((1, 1, 1), n, dtype=np.int16)
        return n

    def reset_stage(self, stage: str, archs: Iterable[int] | None = None) -> int:
        """Set ``stage`` back to pending (all seeds) for ``archs`` (default: all); return how many slots changed.

        Values stay until the stage runs again and overwrites them; only ``status`` says whether they count.
        Single writer: call it before a run starts, not while workers write.
        """
        self._check_writable()
        s = self.stage_pos(stage)
        st = self._array("status")
        current = self.status()
        pos = range(len(self.spec.archs)) if archs is None else [self.arch_pos(a) for a in archs]
        changed = 0
        for i in pos:
            for jj in np.flatnonzero(current[i, :, s] != PENDING):
                st[i : i + 1, jj : jj + 1, s : s + 1] = np.zeros((1, 1, 1), dtype=np.int8)
                changed += 1
        return changed

    def write_array(self, name: str, values: Any, *, archs: Sequence[int] | None = None) -> None:
        """Bulk-write array ``name`` for many cells at once (one writer only; the importer's fast path).

        Arguments:
            name: a data array (not bookkeeping).
            values: shape ``(len(archs), *rest)`` where ``rest`` is the array's shape without ``arch``
                (so it includes ``seed`` for per-seed arrays).
            archs: cells (uids) of the rows; default all cells in store order.
        """
        self._check_writable()
        if name not in self.arrays:
            raise KeyError(f"no array {name!r} in this store; arrays: {sorted(self.arrays)}")
        a = self.arrays[name]
        if a.stage is None:
            raise ValueError(f"{name!r} is bookkeeping; use set_status()")
        pos = list(range(len(self.spec.archs))) if archs is None else [self.arch_pos(x) for x in archs]
        rest = tuple(self.sizes[d] for d in a.dims[1:])
        arr = np.asarray(values) if a.dtype != "str" else np.asarray(values, dtype=object)
        if arr.shape != (len(pos), *rest):
            raise ValueError(f"{name}: expected shape {(len(pos), *rest)} {a.dims}, got {arr.shape}")
        rows = as_cell_value(a, arr, {**self.sizes, "arch": len(pos)}, dims=a.dims)
        target = self._array(name)
        contiguous = bool(pos) and pos == list(range(pos[0], pos[0] + len(pos)))
        if contiguous:
            target[pos[0] : pos[0] + len(pos)] = rows
        else:
            for k, i in enumerate(pos):
                target[i : i + 1] = rows[k : k + 1]

    def set_status(self, stage: str, status: int = DONE, *, archs: Sequence[int] | None = None,
                   seeds: Sequence[int] | None = None) -> None:
        """Bulk-set the status of ``stage`` (one writer only; e.g. after :meth:`write_array` imports)."""
        self._check_writable()
        if status not in STATUS_NAMES:
            raise ValueError(f"status must be one of {STATUS_NAMES}, got {status}")
        s = self.stage_pos(stage)
        pos = list(range(len(self.spec.archs))) if archs is None else [self.arch_pos(x) for x in archs]
        seed_pos = list(range(len(self.spec.seeds))) if seeds is None else [self.seed_pos(x) for x in seeds]
        st = self._array("status")
        cur = np.asarray(st[:, :, s])
        for i in pos:
            for j in seed_pos:
                cur[i, j] = status
        st[:, :, s : s + 1] = cur[:, :, None]

    # ---- reading -----------------------------------------------------------------------------------------------
    def _read_bookkeeping(self, name: str) -> np.ndarray:
        arr = self._array(name)
        fast = _scan_scalar_chunks(self.path / name, arr) if name in _RAW_BOOKKEEPING else None
        return fast if fast is not None else np.asarray(arr[...])

    def status(self) -> np.ndarray:
        """``(arch, seed, stage)`` int8 status codes (0 pending, 1 done, 2 failed)."""
        return self._read_bookkeeping("status")

    def stage_seconds(self) -> np.ndarray:
        """``(arch, seed, stage)`` float64 wall seconds of the last attempt (NaN: never ran)."""
        return self._read_bookkeeping("stage_seconds")

    def is_done(self, arch: int, seed: int, stage: str) -> bool:
        """Whether (arch, seed, stage) is marked done."""
        return int(self._array("status")[self.arch_pos(arch), self.seed_pos(seed), self.stage_pos(stage)]) == DONE

    def read_cell(self, arch: int, seed: int, name: str) -> np.ndarray:
        """One cell's value of array ``name`` (shape: the array's dims without arch and seed)."""
        a = self.arrays.get(name)
        if a is None:
            raise KeyError(f"no array {name!r} in this store; arrays: {sorted(self.arrays)}")
        i, j = self.arch_pos(arch), self.seed_pos(seed)
        sel: tuple[int, ...] = (i, j) if "seed" in a.dims else (i,)
        return np.asarray(self._array(name)[sel])

    def progress(self) -> dict[str, dict[str, int]]:
        """``{stage: {"done": n, "failed": n, "pending": n}}`` counted over (arch, seed) slots."""
        st = self.status()
        out = {}
        for s, stage in enumerate(self.spec.stages):
            col = st[:, :, s]
            if stage in PER_ARCH_STAGES:
                col = col[:, :1]
            out[stage] = {STATUS_NAMES[c]: int((col == c).sum()) for c in (DONE, FAILED, PENDING)}
        return out

    def failures(self) -> list[dict[str, Any]]:
        """Failed (arch, seed, stage) slots with their error text and attempt counts."""
        st = self.status()
        err = self._array("error")
        att = self._array("attempts")
        out = []
        for i, j, s in zip(*np.nonzero(st == FAILED)):  # few: read their details one by one
            stage = self.spec.stages[s]
            if stage in PER_ARCH_STAGES and j > 0:
                continue
            out.append({"arch": self.spec.archs[i], "arch_str": self.spec.arch_str[i], "seed": self.spec.seeds[j],
                        "stage": stage, "attempts": int(att[i, j, s]), "error": str(err[i, j, s])})
        return out

    def to_xarray(self, *, done_only: bool = False, chunks: Any = None) -> Any:
        """The store as an :class:`xarray.Dataset` (lazy), coordinates set (see :func:`open_dataset`).

        With ``done_only``, values of (arch, seed, stage) slots not marked done are masked to NaN / fill.
        """
        return open_dataset(self.path, done_only=done_only, chunks=chunks)

    def to_dataframe(self, kind: str = "long", *, done_only: bool = True) -> Any:
        """A pandas table of the results (see :func:`to_dataframe`)."""
        return to_dataframe(self.to_xarray(done_only=False), kind=kind, done_only=done_only)


# ---- readers -----------------------------------------------------------------------------------------------------
def create_store(path: str | os.PathLike, spec: StoreSpec, attrs: dict[str, Any] | None = None, *,
                 overwrite: bool = False) -> RobustnessStore:
    """Create a store (alias of :meth:`RobustnessStore.create`)."""
    return RobustnessStore.create(path, spec, attrs, overwrite=overwrite)


def open_store(path: str | os.PathLike, mode: str = "r") -> RobustnessStore:
    """Open a store (alias of :meth:`RobustnessStore.open`)."""
    return RobustnessStore.open(path, mode)


def open_dataset(path: str | os.PathLike, *, done_only: bool = False, chunks: Any = None) -> Any:
    """Open a store as an :class:`xarray.Dataset` (coordinates ``arch_str``, ``nb201_index`` attached).

    Arguments:
        path: the store.
        done_only: mask values whose (arch, seed, stage) is not marked done.
        chunks: ``None`` (default): lazily indexed arrays without dask -- reading a working store (one chunk per
            cell) this way is about 5x faster than through dask's one-task-per-chunk graph; pass ``{}`` for the
            store's own chunks as dask arrays (large compacted stores, out-of-core work).

    Example:
        >>> ds = open_dataset("runs/tiny.zarr")                      # doctest: +SKIP
        >>> ds.adv_accuracy.sel(attack="pgd@Linf").mean("arch")      # doctest: +SKIP
    """
    import xarray as xr

    RobustnessStore.open(path)  # clear error for a missing / foreign store
    with _quiet_zarr():
        ds = xr.open_zarr(str(path), consolidated=True, chunks=chunks)
    ds = ds.set_coords([c for c in ("arch_str", "nb201_index", "attack_grid") if c in ds.data_vars])
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


_LONG_SOURCES: tuple[tuple[str, str, str | None, str | None, tuple[str, ...]], ...] = (
    # (group, array prefix, name dim, level dim, metrics)
    ("clean", "clean", None, None, ("accuracy", "confidence", "confidence_true")),
    ("adversarial", "adv", "attack", "eps", ("accuracy", "confidence", "confidence_true")),
    ("corruption", "corruption", "corruption", "severity", ("accuracy", "confidence", "confidence_true")),
)


def to_dataframe(ds_or_path: Any, kind: str = "long", *, done_only: bool = True) -> Any:
    """One tidy pandas table of a store's scalar results (confusion matrices are left out).

    Arguments:
        ds_or_path: a store path or the Dataset from :func:`open_dataset`.
        kind: ``"long"``: one row per value, columns ``arch, arch_str, nb201_index, seed, group, name, level,
            level_label, metric, value`` (group: info / train / proxy / clean / adversarial / corruption /
            measure; name: attack, corruption, proxy or measure name; level: eps in [0, 1], severity or epoch).
            ``"wide"``: one row per (arch, seed), one column per (group, name, level_label, metric) joined by ``:``.
        done_only: keep only values whose stage is marked done.
    """
    import pandas as pd

    ds = open_dataset(ds_or_path) if isinstance(ds_or_path, (str, os.PathLike)) else ds_or_path
    if kind not in ("long", "wide"):
        raise ValueError(f"kind must be 'long' or 'wide', got {kind!r}")
    if done_only:
        ds = mask_not_done(ds)
    ds = ds.load()
    base = pd.DataFrame({"arch": ds["arch"].values, "arch_str": [str(v) for v in ds["arch_str"].values],
                         "nb201_index": ds["nb201_index"].values})
    frames = []

    def add(var: Any, group: str, name: str | None, name_dim: str | None, level_dim: str | None, metric: str,
            labels: dict[float, str] | None = None) -> None:
        if "seed" not in var.dims:
            var = var.expand_dims(seed=ds["seed"].values)
        df = var.to_dataframe(name="value").reset_index()
        df = df[["arch", "seed"] + [d for d in (name_dim, level_dim) if d] + ["value"]]
        df["group"] = group
        df["name"] = [str(v) for v in df.pop(name_dim)] if name_dim else (name or group)
        if level_dim:
            lv = df.pop(level_dim)
            df["level"] = lv.astype(float)
            df["level_label"] = lv.map(labels).astype(str) if labels else lv.astype(str)
        else:
            df["level"] = np.nan
            df["level_label"] = ""
        df["metric"] = metric
        frames.append(df)

    eps_labels = {float(e): eps_label(e) for e in ds["eps"].values} if "eps" in ds.dims else {}
    for name in ("params", "flops", "flops_plain"):
        if name in ds:
            var = ds[name]
            add(var.where(var >= 0) if var.dtype.kind in "iu" else var, "info", name, None, None, "value")
    for v in ds.data_vars:
        if str(v).startswith("history_"):
            add(ds[v], "train", str(v)[len("history_"):], None, "epoch", "value")
    if "proxy_value" in ds:
        add(ds["proxy_value"], "proxy", None, "proxy", None, "value")
    for group, prefix, name_dim, level_dim, metrics in _LONG_SOURCES:
        for m in metrics:
            if f"{prefix}_{m}" in ds:
                var = ds[f"{prefix}_{m}"]
                if group == "adversarial" and "attack_grid" in ds.coords:
                    var = var.where(ds["attack_grid"])
                add(var, group, None, name_dim, level_dim, m, eps_labels if level_dim == "eps" else None)
    if "measure_value" in ds:
        add(ds["measure_value"], "measure", None, "measure", None, "value")
    cols = ["arch", "arch_str", "nb201_index", "seed", "group", "name", "level", "level_label", "metric", "value"]
    if not frames:
        return pd.DataFrame(columns=cols)
    long = pd.concat(frames, ignore_index=True)
    long = long[long["value"].notna()]
    long = long.merge(base, on="arch", how="left")[cols].reset_index(drop=True)
    if kind == "long":
        return long
    key = long["group"] + ":" + long["name"] + ":" + long["level_label"] + ":" + long["metric"]
    wide = long.assign(column=key).pivot_table(index=["arch", "arch_str", "nb201_index", "seed"], columns="column",
                                               values="value", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()


__all__ = [
    "RobustnessStore", "StoreError", "create_store", "mask_not_done", "open_dataset", "open_store",
    "software_versions", "to_dataframe", "DONE", "FAILED", "PENDING",
]

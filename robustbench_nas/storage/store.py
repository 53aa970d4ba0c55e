"""The store object: opening and creating a robustbench-nas Zarr (format 3) store, and its read / write API.

The store ``rbnas run`` writes is the publishable dataset as it is: every per-cell array is sharded (``shard_cells``
cells x every seed per shard file, inner chunks of ``chunk_cells`` cells, ~4 MiB by default). Writes go through a
durable journal (:mod:`.journal`) and whole-shard commits under one lock (:mod:`.commit`); reads of whole arrays,
single cells and bookkeeping decode shards directly (:mod:`.shards`), bookkeeping and single cells with the journal
overlaid (:mod:`.journal_overlay`). The other jobs live in their own modules: the root metadata checks
(:mod:`.root_meta`), creating the files (:mod:`.create`), the xarray backend (:mod:`.xarray_backend`) and the pandas
export (:mod:`.export`). Plain ``xarray.open_zarr(path)`` reads the same files. See ``docs/storage.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .commit import BOOKKEEPING, BlockWriter
from .create import software_versions, write_new_store
from .export import to_dataframe
from .journal import Journal, Record, now_ns
from .journal_overlay import overlay_book, overlay_cell
from .root_meta import StoreError, check_schema, ensure_ours, read_store_meta
from .schema import (
    DONE,
    FAILED,
    PENDING,
    PER_ARCH_STAGES,
    STATUS_NAMES,
    UNIT_SETTINGS,
    StoreSpec,
    array_specs,
    as_cell_value,
)
from .shards import ArrayLayout, layout_from_meta, read_array, read_row
from .xarray_backend import mask_not_done, open_dataset


class RobustnessStore:
    """One run's results in a Zarr v3 group.

    Create with :meth:`create`, open with :meth:`open`. Values are written per (cell, seed) with
    :meth:`write_cell` (journal record, then a whole-shard commit; safe from many processes at once) or per array
    with :meth:`write_array` (bulk import). Read with :meth:`to_xarray` / :meth:`to_dataframe`.

    Example:
        >>> spec = StoreSpec(archs=[0], arch_str=["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
        >>> st = RobustnessStore.create("/tmp/doc.zarr", spec, overwrite=True)
        >>> st.write_cell(0, 0, {"clean_accuracy": 0.1}, stage=None)
        >>> float(st.to_xarray().clean_accuracy.sel(arch=0, seed=0))
        0.1
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any], mode: str, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.mode = mode
        attrs = dict(meta.get("attributes", {}))
        self.attrs: dict[str, Any] = attrs
        nodes = (meta.get("consolidated_metadata") or {}).get("metadata") or {}
        self._node_meta: dict[str, dict[str, Any]] = dict(nodes)
        self._meta = meta
        self._layouts: dict[str, ArrayLayout | None] = {}
        try:
            self.spec = StoreSpec(**self._full_spec(dict(attrs["spec"])))
        except (TypeError, ValueError, KeyError) as e:
            raise StoreError(f"{self.path}: the store's 'spec' attribute is not valid ({e})") from None
        self.arrays = array_specs(self.spec)
        for name in UNIT_SETTINGS:  # stores made before these arrays existed: they do not record them
            if name not in self._node_meta and not (self.path / name / "zarr.json").is_file():
                del self.arrays[name]
        self.sizes = self.spec.dim_sizes()
        self._arch_pos = {a: i for i, a in enumerate(self.spec.archs)}
        self._seed_pos = {s: i for i, s in enumerate(self.spec.seeds)}
        self._stage_pos = {s: i for i, s in enumerate(self.spec.stages)}
        self.journal = Journal(self.path, fsync=fsync)
        self._blocks = BlockWriter(self.path, self.layout, self.spec.shard_cells, self.arrays)

    def _full_spec(self, d: dict[str, Any]) -> dict[str, Any]:
        """The spec attribute with its per-cell lists, which live in the coordinate arrays (see :meth:`create`)."""
        if not d.pop("per_arch_in_coordinates", False):
            return d
        d["archs"] = [int(a) for a in read_array(self.path, self.layout("arch"))]
        d["arch_str"] = [str(a) for a in read_array(self.path, self.layout("arch_str"))]
        d["arch_coords"] = {name: read_array(self.path, self.layout(name)).tolist() for name in d.get("arch_coords", [])}
        return d

    # ---- creation / opening ------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        spec: StoreSpec,
        attrs: dict[str, Any] | None = None,
        *,
        overwrite: bool = False,
    ) -> "RobustnessStore":
        """Create an empty store for ``spec``: coordinates written, every value at its fill (NaN / -1 / pending).

        Arguments:
            path: folder of the store (``*.zarr`` by convention).
            spec: the coordinates (:class:`StoreSpec`; ``spec.shard_cells`` cells per shard file).
            attrs: extra JSON-able group attributes (the pipeline saves ``protocol`` and ``protocol_fingerprint``).
            overwrite: replace an existing store of ours; without it an existing path is an error (never overwritten).
        """
        write_new_store(Path(path), spec, attrs, overwrite=overwrite)
        return cls.open(path, mode="r+")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, fsync: bool = True) -> "RobustnessStore":
        """Open an existing store (``mode`` ``"r"`` or ``"r+"``); StoreError if it is missing, not ours, or of
        another schema version (nothing is written while checking)."""
        path = Path(path)
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        return cls(path, read_store_meta(path), mode, fsync=fsync)

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

    def block_of(self, arch: int) -> int:
        """Shard block (along ``arch``) holding cell ``arch``."""
        return self.arch_pos(arch) // self.spec.shard_cells

    @property
    def n_blocks(self) -> int:
        return -(-len(self.spec.archs) // self.spec.shard_cells)

    def layout(self, name: str) -> ArrayLayout:
        """The on-disk layout of array ``name`` (StoreError if it is not the sharded layout this code writes)."""
        if name not in self._layouts:
            meta = self._node_meta.get(name)
            if meta is None:
                try:
                    meta = json.loads((self.path / name / "zarr.json").read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    meta = None
            self._layouts[name] = layout_from_meta(name, meta) if meta else None
        lay = self._layouts[name]
        if lay is None:
            raise StoreError(f"{self.path}: array {name!r} is missing or not in this schema's layout")
        return lay

    def _check_writable(self) -> None:
        if self.mode != "r+":
            raise StoreError(f"{self.path} is open read-only; open it with mode='r+' to write")

    # ---- writing: journal records ------------------------------------------------------------------------------
    def _seed_slots(self, stage: str, j: int) -> list[int]:
        return list(range(len(self.spec.seeds))) if stage in PER_ARCH_STAGES else [j]

    def _prepare_values(self, values: dict[str, Any], i: int, j: int) -> list[tuple[str, int, int | None, np.ndarray]]:
        out = []
        for name, value in values.items():
            if name not in self.arrays:
                raise KeyError(f"no array {name!r} in this store; arrays: {sorted(self.arrays)}")
            a = self.arrays[name]
            if a.stage is None:
                raise ValueError(f"{name!r} is bookkeeping, written by the store itself, not by write_cell")
            v = as_cell_value(a, value, self.sizes)
            if a.dtype == "str":
                v = np.asarray([str(x) for x in v.ravel()], dtype=object).reshape(v.shape)
            out.append((name, i, j if "seed" in a.dims else None, v))
        return out

    def cell_record(self, arch: int, seed: int, values: dict[str, Any] | None = None, *, stage: str | None = None,
                    status: int | None = None, seconds: float | None = None, error: str | None = None,
                    attempts: int | None = None, threads: int | None = None, device: str | None = None,
                    precision: str | None = None) -> tuple[int, Record]:
        """A journal record for one (cell, seed): values checked (ValueError / KeyError naming the problem), and
        for ``stage`` the bookkeeping (``status`` etc.; per-arch stages at every seed). Returns ``(block, record)``.

        ``threads`` / ``device`` / ``precision``: what the unit ran with (arrays ``unit_threads``, ``unit_device``,
        ``unit_precision``; ``None``: unchanged), written in the same record as its values and status.
        """
        i, j = self.arch_pos(arch), self.seed_pos(seed)
        rec = Record(t=now_ns(), values=self._prepare_values(values or {}, i, j))
        if stage is not None:
            s = self.stage_pos(stage)
            if threads is not None and not (isinstance(threads, (int, np.integer)) and 1 <= threads <= 32767):
                raise ValueError(f"threads must be an int in [1, 32767], got {threads!r}")
            for jj in self._seed_slots(stage, j):
                rec.book.append((i, jj, s, status, None if seconds is None else float(seconds),
                                 None if error is None else str(error)[-4000:], attempts,
                                 None if threads is None else int(threads), None if device is None else str(device),
                                 None if precision is None else str(precision)))
        return i // self.spec.shard_cells, rec

    def append(self, records: Iterable[tuple[int, Record]]) -> None:
        """Append ``(block, record)`` pairs to this process's journal (durable; visible to :meth:`status`)."""
        self._check_writable()
        by_block: dict[int, list[Record]] = {}
        for b, r in records:
            by_block.setdefault(b, []).append(r)
        self.journal.append(by_block)

    def write_cell(
        self,
        arch: int,
        seed: int,
        values: dict[str, Any],
        *,
        stage: str | None = None,
        seconds: float | None = None,
        commit: bool = True,
        threads: int | None = None,
        device: str | None = None,
        precision: str | None = None,
    ) -> None:
        """Write one cell's values; with ``stage``, mark that stage done for the cell (after the values).

        Arguments:
            arch: the cell's uid (a value of the ``arch`` coordinate).
            seed: a value of the ``seed`` coordinate (ignored for arrays without a seed dim).
            values: ``{array name: value}``; each value has the array's shape without ``arch`` and ``seed``
                (e.g. ``adv_accuracy``: ``(attack, eps)``, ``clean_confusion``: ``(true_class, pred_class)``).
            stage: mark this stage done for (arch, seed) -- for a per-arch stage (``info``) at every seed.
            seconds: wall time of the stage, stored in ``stage_seconds``.
            commit: rewrite the cell's shard now (default); ``False``: only the durable journal record, folded
                into the shards by a later :meth:`commit` (the pipeline's way: one shard rewrite per block).
            threads, device, precision: what the stage ran with (see :meth:`cell_record`; ``None``: unchanged).

        Every value is checked before anything is written: a bad name, shape or dtype raises ``ValueError`` /
        ``KeyError`` and leaves the store untouched.
        """
        self._check_writable()
        rec = self.cell_record(arch, seed, values, stage=stage, status=DONE if stage else None, seconds=seconds,
                               error="" if stage else None, threads=threads, device=device, precision=precision)
        self.append([rec])
        if commit:
            self.commit([rec[0]])

    def mark_failed(self, arch: int, seed: int, stage: str, error: str, seconds: float | None = None, *,
                    commit: bool = True) -> None:
        """Mark (arch, seed, stage) failed with ``error`` (its values are not trusted and will be recomputed)."""
        self._check_writable()
        rec = self.cell_record(arch, seed, stage=stage, status=FAILED, seconds=seconds, error=str(error))
        self.append([rec])
        if commit:
            self.commit([rec[0]])

    def add_attempt(self, arch: int, seed: int, stage: str, *, commit: bool = True) -> int:
        """Count one more attempt of (arch, seed, stage); return the new total."""
        self._check_writable()
        i, j, s = self.arch_pos(arch), self.seed_pos(seed), self.stage_pos(stage)
        n = int(self.attempts()[i, j, s]) + 1
        rec = self.cell_record(arch, seed, stage=stage, attempts=n)
        self.append([rec])
        if commit:
            self.commit([rec[0]])
        return n

    def reset_stage(self, stage: str, archs: Iterable[int] | None = None) -> int:
        """Set ``stage`` back to pending (all seeds) for ``archs`` (default: all); return how many slots changed.

        Values stay until the stage runs again and overwrites them; only ``status`` says whether they count.
        """
        self._check_writable()
        s = self.stage_pos(stage)
        current = self.status()
        pos = range(len(self.spec.archs)) if archs is None else [self.arch_pos(a) for a in archs]
        recs = []
        for i in pos:
            for jj in np.flatnonzero(current[i, :, s] != PENDING):
                recs.append((i // self.spec.shard_cells, Record(t=now_ns(), book=[(i, int(jj), s, PENDING)])))
        self.append(recs)
        self.commit(sorted({b for b, _ in recs}))
        return len(recs)

    # ---- writing: commits --------------------------------------------------------------------------------------
    def pending_blocks(self) -> list[int]:
        """Blocks with journal records not committed yet (any writer)."""
        return sorted({Journal.block_of(p) for p in self.journal.files()})

    def commit(self, blocks: Iterable[int] | None = None) -> int:
        """Fold the journal (every writer's records) of ``blocks`` (default: all pending) into whole shards.

        Under the store's exclusive lock, per block: read the journal files and the block's current shards, apply
        the records in their writers' sequence order (never wall clock; see :mod:`.journal`), rewrite every touched
        shard whole (atomic and durable: file and folder fsync'd; data first, ``status`` last), then delete the
        journal files (folder fsync'd). Returns the number of records applied.
        """
        self._check_writable()
        return self._blocks.commit(self.journal, blocks)

    @contextlib.contextmanager
    def _bulk(self) -> Iterator[None]:
        """Exclusive access for a bulk write: pending journals folded first, then the caller rewrites blocks."""
        self._check_writable()
        self.commit()
        with self.journal.lock(exclusive=True):
            yield

    def write_array(self, name: str, values: Any, *, archs: Sequence[int] | None = None) -> None:
        """Bulk-write array ``name`` for many cells at once (whole shards; the importer's fast path).

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
        pos = np.arange(len(self.spec.archs)) if archs is None else np.asarray([self.arch_pos(x) for x in archs],
                                                                                dtype=np.int64)
        rest = tuple(self.sizes[d] for d in a.dims[1:])
        arr = np.asarray(values) if a.dtype != "str" else np.asarray(values, dtype=object)
        if arr.shape != (len(pos), *rest):
            raise ValueError(f"{name}: expected shape {(len(pos), *rest)} {a.dims}, got {arr.shape}")
        rows = as_cell_value(a, arr, {**self.sizes, "arch": len(pos)}, dims=a.dims)
        if a.dtype == "str":
            rows = np.asarray([str(x) for x in rows.ravel()], dtype=object).reshape(rows.shape)
        with self._bulk():
            self._write_rows(name, pos, rows)

    def _write_rows(self, name: str, pos: np.ndarray, rows: np.ndarray, *, fsync: bool | None = None) -> None:
        """Rows ``rows`` at arch positions ``pos`` (caller holds the exclusive lock, see :meth:`_bulk`).

        ``fsync``: default the journal's setting (a bulk write into a store in use is a commit like any other);
        ``False`` for copies built under a temporary name and made durable as a whole when renamed into place.
        """
        self._blocks.write_rows(name, pos, rows, fsync=self.journal.fsync if fsync is None else fsync)

    def set_status(self, stage: str, status: int = DONE, *, archs: Sequence[int] | None = None,
                   seeds: Sequence[int] | None = None) -> None:
        """Bulk-set the status of ``stage`` (e.g. after :meth:`write_array` imports)."""
        self._check_writable()
        if status not in STATUS_NAMES:
            raise ValueError(f"status must be one of {STATUS_NAMES}, got {status}")
        s = self.stage_pos(stage)
        pos = np.arange(len(self.spec.archs)) if archs is None else np.asarray([self.arch_pos(x) for x in archs],
                                                                                dtype=np.int64)
        seed_pos = list(range(len(self.spec.seeds))) if seeds is None else [self.seed_pos(x) for x in seeds]
        with self._bulk():
            cur = read_array(self.path, self.layout("status"))
            cur[np.ix_(pos, seed_pos, [s])] = status
            self._write_rows("status", np.arange(len(self.spec.archs)), cur)

    # ---- reading -----------------------------------------------------------------------------------------------
    def read_array(self, name: str) -> np.ndarray:
        """The whole committed array ``name`` (every cell; journal records not committed yet are not in it)."""
        if name not in self.arrays:
            raise KeyError(f"no array {name!r} in this store; arrays: {sorted(self.arrays)}")
        return read_array(self.path, self.layout(name))

    def _committed(self, name: str) -> np.ndarray:
        return read_array(self.path, self.layout(name))

    def status(self) -> np.ndarray:
        """``(arch, seed, stage)`` int8 status codes (0 pending, 1 done, 2 failed), journal included."""
        return overlay_book(self.journal, "status", self._committed("status"))

    def stage_seconds(self) -> np.ndarray:
        """``(arch, seed, stage)`` float64 wall seconds of the last attempt (NaN: never ran), journal included."""
        return overlay_book(self.journal, "stage_seconds", self._committed("stage_seconds"))

    def attempts(self) -> np.ndarray:
        """``(arch, seed, stage)`` attempts made (all runs together), journal included."""
        return overlay_book(self.journal, "attempts", self._committed("attempts"))

    def unit_settings(self) -> dict[str, np.ndarray]:
        """``{"unit_threads", "unit_device", "unit_precision": (arch, seed, stage) array}`` -- what each unit's last
        attempt ran with (journal included); empty for a store made before these were recorded."""
        return {name: overlay_book(self.journal, name, self._committed(name)) for name in UNIT_SETTINGS
                if name in self.arrays}

    def errors(self) -> np.ndarray:
        """``(arch, seed, stage)`` error text of the last failed attempt, journal included."""
        return overlay_book(self.journal, "error", self._committed("error"))

    def is_done(self, arch: int, seed: int, stage: str) -> bool:
        """Whether (arch, seed, stage) is marked done (journal included)."""
        return int(self.status()[self.arch_pos(arch), self.seed_pos(seed), self.stage_pos(stage)]) == DONE

    def read_cell(self, arch: int, seed: int, name: str) -> np.ndarray:
        """One cell's value of array ``name`` (shape: the array's dims without arch and seed), journal included."""
        a = self.arrays.get(name)
        if a is None:
            raise KeyError(f"no array {name!r} in this store; arrays: {sorted(self.arrays)}")
        i, j = self.arch_pos(arch), self.seed_pos(seed)
        row = read_row(self.path, self.layout(name), i)
        value = row[j] if "seed" in a.dims else row
        value = overlay_cell(self.journal, i // self.spec.shard_cells, name, i, j, value)
        if a.dtype == "str":
            return np.asarray(value, dtype=object)
        return np.asarray(value)

    def read_record(self, arch: int) -> dict[str, np.ndarray]:
        """One cell's full committed record: ``{array name: value}`` for every array, every seed (shape: the
        array's dims without ``arch``). Reads only that cell's inner chunks (a few byte ranges per array)."""
        i = self.arch_pos(arch)
        return {name: read_row(self.path, self.layout(name), i) for name in self.arrays}

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
        if not (st == FAILED).any():
            return []
        err, att = self.errors(), self.attempts()
        out = []
        for i, j, s in zip(*np.nonzero(st == FAILED)):
            stage = self.spec.stages[s]
            if stage in PER_ARCH_STAGES and j > 0:
                continue
            out.append({"arch": self.spec.archs[i], "arch_str": self.spec.arch_str[i], "seed": self.spec.seeds[j],
                        "stage": stage, "attempts": int(att[i, j, s]), "error": str(err[i, j, s])})
        return out

    def files(self) -> list[Path]:
        """Every file of the store (shards, metadata, journal)."""
        return [Path(d) / f for d, _, fs in os.walk(self.path) for f in fs]

    def to_xarray(self, *, done_only: bool = False, chunks: Any = None) -> Any:
        """The store as an :class:`xarray.Dataset` (lazy), coordinates set (see :func:`open_dataset`).

        With ``done_only``, values of (arch, seed, stage) slots not marked done are masked to NaN / fill.
        """
        return open_dataset(self.path, done_only=done_only, chunks=chunks)

    def to_dataframe(self, kind: str = "long", *, done_only: bool = True) -> Any:
        """A pandas table of the results (see :func:`to_dataframe`)."""
        return to_dataframe(self.to_xarray(done_only=False), kind=kind, done_only=done_only)


# ---- aliases -----------------------------------------------------------------------------------------------------
def create_store(path: str | os.PathLike, spec: StoreSpec, attrs: dict[str, Any] | None = None, *,
                 overwrite: bool = False) -> RobustnessStore:
    """Create a store (alias of :meth:`RobustnessStore.create`)."""
    return RobustnessStore.create(path, spec, attrs, overwrite=overwrite)


def open_store(path: str | os.PathLike, mode: str = "r") -> RobustnessStore:
    """Open a store (alias of :meth:`RobustnessStore.open`)."""
    return RobustnessStore.open(path, mode)


__all__ = [
    "BOOKKEEPING", "RobustnessStore", "StoreError", "check_schema", "create_store", "ensure_ours", "mask_not_done",
    "open_dataset", "open_store", "software_versions", "to_dataframe", "DONE", "FAILED", "PENDING",
]

"""Create, write and read robustbench-nas Zarr (format 3) stores.

The store ``rbnas run`` writes is the publishable dataset as it is: every per-cell array is sharded (``shard_cells``
cells x every seed per shard file, inner chunks of ``chunk_cells`` cells, ~4 MiB by default). Writes go through a durable journal and whole-
shard commits under one lock (:mod:`.journal`); reads of whole arrays, single cells and bookkeeping decode shards
directly (:mod:`.shards`). Plain ``xarray.open_zarr(path)`` reads the same files. See ``docs/storage.md``.
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

from .journal import JOURNAL_DIR, Journal, Record, now_ns
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
    shard_shape,
)
from .shards import ArrayLayout, layout_from_meta, read_array, read_row, read_shard, write_shard

#: bookkeeping arrays, in the order a commit writes them (``status`` last: "done" only once every value is in)
BOOKKEEPING = ("stage_seconds", "attempts", "error", "status")
#: with ``spec.compress``, per-cell values larger than this are zstd-compressed per inner chunk (confusion matrices).
#: Off by default: raw chunks read at memory speed (a full store reads ~2.5x faster than compressed, at ~2.4x size)
COMPRESS_BYTES = 4096


class StoreError(RuntimeError):
    """A store that cannot be used as asked (missing, not ours, incompatible protocol or schema, ...)."""


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


def read_root_meta(path: Path) -> dict[str, Any]:
    """The root ``zarr.json`` of a store (StoreError if missing or not JSON)."""
    meta_path = Path(path) / "zarr.json"
    if not meta_path.is_file():
        raise StoreError(f"no Zarr store at {path} (missing {meta_path})")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: zarr.json is not readable JSON ({type(e).__name__}); not a usable store") from None


def check_schema(path: Path, attrs: dict[str, Any]) -> None:
    """StoreError (one line, naming the fix) unless ``attrs`` say this is a store of the current schema."""
    if "rbnas_schema" not in attrs or "spec" not in attrs:
        raise StoreError(f"{path} is a Zarr group but not a robustbench-nas store (no 'rbnas_schema' attribute)")
    version = attrs["rbnas_schema"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise StoreError(f"{path}: unknown store schema version {version!r} (not a version number; this code reads "
                         f"{SCHEMA_VERSION}); the store was left untouched")
    if version == 1:
        raise StoreError(f"{path} has store schema 1 (written by an older robustbench-nas); convert it with "
                         f"`rbnas migrate {path} NEW.zarr` (the old store is left untouched)")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{path} has store schema {version}; this code reads {SCHEMA_VERSION} "
                         "(a newer robustbench-nas wrote it?); the store was left untouched")
    if not isinstance(attrs["spec"], dict):
        raise StoreError(f"{path}: the 'spec' attribute is not a mapping; not a usable store")


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
        self.sizes = self.spec.dim_sizes()
        self._arch_pos = {a: i for i, a in enumerate(self.spec.archs)}
        self._seed_pos = {s: i for i, s in enumerate(self.spec.seeds)}
        self._stage_pos = {s: i for i, s in enumerate(self.spec.stages)}
        self.journal = Journal(self.path, fsync=fsync)

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
        with _quiet_zarr():
            group = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=meta)
            cls._write_coords(group, spec)
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
        return cls.open(path, mode="r+")

    @staticmethod
    def _write_coords(group: Any, spec: StoreSpec) -> None:
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

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, fsync: bool = True) -> "RobustnessStore":
        """Open an existing store (``mode`` ``"r"`` or ``"r+"``); StoreError if it is missing, not ours, or of
        another schema version (nothing is written while checking)."""
        path = Path(path)
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        meta = read_root_meta(path)
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
            raise StoreError(f"{path} is not a Zarr v3 group; not a robustbench-nas store")
        check_schema(path, dict(meta.get("attributes") or {}))
        return cls(path, meta, mode, fsync=fsync)

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
                    attempts: int | None = None) -> tuple[int, Record]:
        """A journal record for one (cell, seed): values checked (ValueError / KeyError naming the problem), and
        for ``stage`` the bookkeeping (``status`` etc.; per-arch stages at every seed). Returns ``(block, record)``."""
        i, j = self.arch_pos(arch), self.seed_pos(seed)
        rec = Record(t=now_ns(), values=self._prepare_values(values or {}, i, j))
        if stage is not None:
            s = self.stage_pos(stage)
            for jj in self._seed_slots(stage, j):
                rec.book.append((i, jj, s, status, None if seconds is None else float(seconds),
                                 None if error is None else str(error)[-4000:], attempts))
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

        Every value is checked before anything is written: a bad name, shape or dtype raises ``ValueError`` /
        ``KeyError`` and leaves the store untouched.
        """
        self._check_writable()
        rec = self.cell_record(arch, seed, values, stage=stage, status=DONE if stage else None, seconds=seconds,
                               error="" if stage else None)
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
                recs.append((i // self.spec.shard_cells, Record(t=now_ns(), book=[(i, int(jj), s, PENDING, None,
                                                                                   None, None)])))
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
        the records in time order, rewrite every touched shard whole (atomic replace; data first, ``status``
        last), then delete the journal files. Returns the number of records applied.
        """
        self._check_writable()
        if not self.journal.dir.is_dir():
            return 0
        n = 0
        with self.journal.lock(exclusive=True):
            todo = sorted({Journal.block_of(p) for p in self.journal.files()} if blocks is None else set(blocks))
            for b in todo:
                files = self.journal.files(b)
                if not files:
                    continue
                records = self.journal.read(files, with_values=True)
                self._apply_block(b, records)
                for p in files:
                    p.unlink(missing_ok=True)
                n += len(records)
        return n

    def _apply_block(self, b: int, records: list[Record]) -> None:
        a0 = b * self.spec.shard_cells
        blocks: dict[str, np.ndarray] = {}

        def block(name: str) -> np.ndarray:
            if name not in blocks:
                blocks[name] = read_shard(self.path, self.layout(name), b).copy()
            return blocks[name]

        for r in records:
            for name, i, j, v in r.values:
                if name not in self.arrays:
                    continue  # a record for an array this store does not have: ignore rather than fail the commit
                target = block(name)
                target[(i - a0, j) if j is not None else i - a0] = v[()] if v.ndim == 0 else v
            for i, j, s, status, seconds, error, attempts in r.book:
                for name, value in (("status", status), ("stage_seconds", seconds), ("error", error),
                                    ("attempts", attempts)):
                    if value is not None:
                        block(name)[i - a0, j, s] = np.nan if value is None else value
        fsync = self.journal.fsync
        for name in [n for n in blocks if n not in BOOKKEEPING] + [n for n in BOOKKEEPING if n in blocks]:
            write_shard(self.path, self.layout(name), b, blocks[name], fsync=fsync)

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

    def _write_rows(self, name: str, pos: np.ndarray, rows: np.ndarray) -> None:
        """Rows ``rows`` at arch positions ``pos`` (caller holds the exclusive lock), shard by shard."""
        lay = self.layout(name)
        per = self.spec.shard_cells
        for b in np.unique(pos // per):
            a0, a1 = lay.rows(int(b))
            sel = (pos // per) == b
            if sel.sum() == a1 - a0 and np.array_equal(np.sort(pos[sel]), np.arange(a0, a1)):
                block = np.empty((a1 - a0, *lay.shape[1:]), dtype=rows.dtype)
            else:
                block = read_shard(self.path, lay, int(b)).copy()
            block[pos[sel] - a0] = rows[sel]
            write_shard(self.path, lay, int(b), block)  # bulk writes go to fresh stores (import, migrate): no fsync

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

    def _overlay_book(self, name: str, arr: np.ndarray) -> np.ndarray:
        """Bookkeeping ``name`` with the journal's uncommitted entries applied (what a finished commit will hold)."""
        field_of = {"status": 3, "stage_seconds": 4, "error": 5, "attempts": 6}[name]
        for r in self.journal.pending(with_values=False):
            for entry in r.book:
                if entry[field_of] is not None:
                    arr[entry[0], entry[1], entry[2]] = entry[field_of]
        return arr

    def status(self) -> np.ndarray:
        """``(arch, seed, stage)`` int8 status codes (0 pending, 1 done, 2 failed), journal included."""
        return self._overlay_book("status", self._committed("status"))

    def stage_seconds(self) -> np.ndarray:
        """``(arch, seed, stage)`` float64 wall seconds of the last attempt (NaN: never ran), journal included."""
        return self._overlay_book("stage_seconds", self._committed("stage_seconds"))

    def attempts(self) -> np.ndarray:
        """``(arch, seed, stage)`` attempts made (all runs together), journal included."""
        return self._overlay_book("attempts", self._committed("attempts"))

    def errors(self) -> np.ndarray:
        """``(arch, seed, stage)`` error text of the last failed attempt, journal included."""
        return self._overlay_book("error", self._committed("error"))

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
        files = self.journal.files(i // self.spec.shard_cells)
        if files:
            with self.journal.lock(exclusive=False):
                for r in self.journal.read(files, with_values=True):
                    for n, ii, jj, v in r.values:
                        if n == name and ii == i and (jj is None or jj == j):
                            value = v
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


def ensure_ours(path: Path, action: str) -> None:
    """StoreError unless ``path`` is a robustbench-nas store (any schema version): what may be deleted / replaced."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        raise StoreError(f"{path} exists and is not a store folder; refusing to {action} it")
    try:
        meta = read_root_meta(path)
    except StoreError:
        raise StoreError(f"{path} exists and is not a robustbench-nas store; refusing to {action} it") from None
    attrs = meta.get("attributes") or {}
    if not isinstance(attrs, dict) or "rbnas_schema" not in attrs:
        raise StoreError(f"{path} exists and is not a robustbench-nas store; refusing to {action} it")


# ---- readers -----------------------------------------------------------------------------------------------------
def create_store(path: str | os.PathLike, spec: StoreSpec, attrs: dict[str, Any] | None = None, *,
                 overwrite: bool = False) -> RobustnessStore:
    """Create a store (alias of :meth:`RobustnessStore.create`)."""
    return RobustnessStore.create(path, spec, attrs, overwrite=overwrite)


def open_store(path: str | os.PathLike, mode: str = "r") -> RobustnessStore:
    """Open a store (alias of :meth:`RobustnessStore.open`)."""
    return RobustnessStore.open(path, mode)


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
    meta = read_root_meta(path)  # clear error for a missing / foreign / other-schema store (nothing written)
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise StoreError(f"{path} is not a Zarr v3 group; not a robustbench-nas store")
    attrs = dict(meta.get("attributes") or {})
    check_schema(path, attrs)
    ds = _open_fast(path, meta) if chunks is None else None
    if ds is None:
        with _quiet_zarr():
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
        kind: ``"long"``: one row per value, columns ``arch, arch_str, <arch_coords...>, seed, group, name, level,
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
    spec = ds.attrs.get("spec") if isinstance(ds.attrs.get("spec"), dict) else {}
    named = [c for c in (spec.get("arch_coords") or {}) if c in ds.coords]
    extra = named + sorted(str(c) for c in ds.coords
                           if c not in ("arch", "arch_str", *named) and ds[c].dims == ("arch",))
    base = pd.DataFrame({"arch": ds["arch"].values, "arch_str": [str(v) for v in ds["arch_str"].values],
                         **{c: ds[c].values for c in extra}})
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
    cols = ["arch", "arch_str", *extra, "seed", "group", "name", "level", "level_label", "metric", "value"]
    if not frames:
        return pd.DataFrame(columns=cols)
    long = pd.concat(frames, ignore_index=True)
    long = long[long["value"].notna()]
    long = long.merge(base, on="arch", how="left")[cols].reset_index(drop=True)
    if kind == "long":
        return long
    key = long["group"] + ":" + long["name"] + ":" + long["level_label"] + ":" + long["metric"]
    wide = long.assign(column=key).pivot_table(index=["arch", "arch_str", *extra, "seed"], columns="column",
                                               values="value", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()


__all__ = [
    "BOOKKEEPING", "RobustnessStore", "StoreError", "check_schema", "create_store", "ensure_ours", "mask_not_done",
    "open_dataset", "open_store", "software_versions", "to_dataframe", "DONE", "FAILED", "PENDING",
]

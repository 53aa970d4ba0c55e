"""Whole-shard encode / decode of the store's Zarr v3 arrays, without zarr-python's per-chunk overhead.

Every per-cell array of a store is a Zarr v3 array with the ``sharding_indexed`` codec: one shard file holds
``shard_cells`` cells x every seed, split along ``arch`` into inner chunks of ``chunk_cells`` cells (every seed,
the other dims whole; ~4 MiB by default), so a block of cells is one file, one cell's record is a byte-range read
(here) or one inner chunk per array (zarr-python), and ``xarray.open_zarr`` has few chunks to handle (zarr-python
spends ~0.1-0.2 ms per inner chunk; stores of one (cell, seed) per chunk, which this code still reads, have ~150,000
of them at full size). This module
reads and writes the very same bytes (the Zarr v3 sharding format: encoded inner chunks, then an index of
``(offset, nbytes)`` uint64 pairs in C order of the chunk grid, then the CRC32C of the index) with a handful of
numpy calls per shard. ``xarray.open_zarr`` and zarr-python read what is written here unchanged.

Only the layouts the store creates are handled (:func:`layout_from_meta` returns ``None`` for anything else and the
caller falls back to zarr): inner codecs ``bytes`` (little endian) or ``vlen-utf8``, optionally followed by
``zstd``; index codecs ``bytes`` + ``crc32c`` at the end; default ``/`` chunk keys; and unsharded single-chunk
arrays (the coordinates).

Writes are atomic (:func:`robustbench_nas.utils.atomic.write_bytes_atomic`: a temporary file in the same folder,
then ``os.replace``; with ``fsync`` the file and then its folder are fsync'd): a reader sees the old shard or the new
one, never a mix. Writing a shard is only safe from one writer at a time (the caller holds the store's lock, see
:mod:`.journal`): zarr-python's own partial-shard writes lose updates under concurrency (zarr-python issue 3682),
which is why nothing here ever writes part of a shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import remove_stale_temporaries, unlink_durably, write_bytes_atomic

_EMPTY = np.uint64(2**64 - 1)


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


@dataclass(frozen=True)
class ArrayLayout:
    """What is needed to read / write one array's files.

    Attributes:
        name: array name (its folder in the store).
        shape: array shape.
        dtype: numpy dtype (``object`` for vlen-utf8 strings).
        fill: fill value (what a missing chunk reads as).
        shard: shard shape (``None``: an unsharded single-chunk array).
        chunk: inner chunk shape (``None`` when unsharded).
        zstd: zstd level of the inner chunks (``None``: uncompressed).
        dims: dimension names.
        attrs: the array's attributes.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fill: Any
    shard: tuple[int, ...] | None
    chunk: tuple[int, ...] | None
    zstd: int | None
    dims: tuple[str, ...]
    attrs: dict[str, Any]

    @property
    def is_str(self) -> bool:
        return self.dtype == np.dtype(object)

    @property
    def grid(self) -> tuple[int, ...]:
        """Inner chunks per shard along each dim."""
        assert self.shard is not None and self.chunk is not None
        return tuple(s // c for s, c in zip(self.shard, self.chunk))

    @property
    def rows_per_shard(self) -> int:
        return self.shard[0] if self.shard else max(1, self.shape[0] if self.shape else 1)

    def n_shards(self) -> int:
        """Shards along the first dim (the only sharded dim of our layouts)."""
        if not self.shape:
            return 1
        return -(-self.shape[0] // self.rows_per_shard) if self.shape[0] else 0

    def shard_path(self, root: Path, b: int) -> Path:
        """File of shard ``b`` (along the first dim)."""
        if self.shard is None:
            return root / self.name / "c" / Path(*(["0"] * max(1, len(self.shape))))
        return root / self.name / "c" / str(b) / Path(*(["0"] * (len(self.shape) - 1))) if len(self.shape) > 1 \
            else root / self.name / "c" / str(b)

    def rows(self, b: int) -> tuple[int, int]:
        """Rows ``[a0, a1)`` of the first dim held by shard ``b`` (in bounds)."""
        n = self.rows_per_shard
        return b * n, min(self.shape[0], (b + 1) * n)


def _fill_array(layout: ArrayLayout, shape: tuple[int, ...]) -> np.ndarray:
    if layout.is_str:
        out = np.empty(shape, dtype=object)
        out[...] = layout.fill if layout.fill is not None else ""
        return out
    return np.full(shape, layout.fill, dtype=layout.dtype)


def layout_from_meta(name: str, meta: dict[str, Any]) -> ArrayLayout | None:
    """The layout of an array from its ``zarr.json`` (``None`` if it is not one this module handles)."""
    if meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        return None
    key = meta.get("chunk_key_encoding", {})
    if key.get("name") != "default" or key.get("configuration", {}).get("separator", "/") != "/":
        return None
    if meta.get("storage_transformers"):
        return None
    dt = meta["data_type"]
    if isinstance(dt, dict):
        dt = dt.get("name")
    if dt in ("string", "str"):
        dtype = np.dtype(object)
    else:
        try:
            dtype = np.dtype(dt)
        except TypeError:
            return None
    shape = tuple(int(s) for s in meta["shape"])
    outer = tuple(int(s) for s in meta["chunk_grid"]["configuration"]["chunk_shape"])
    fill = meta.get("fill_value")
    if dtype.kind == "f" and isinstance(fill, str):
        fill = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}.get(fill)
        if fill is None:
            return None
    codecs = meta.get("codecs", [])
    common = dict(name=name, shape=shape, dtype=dtype, fill=fill, dims=tuple(meta.get("dimension_names") or ()),
                  attrs=dict(meta.get("attributes", {})))
    if len(codecs) == 1 and codecs[0]["name"] == "sharding_indexed":
        conf = codecs[0]["configuration"]
        idx = [c["name"] for c in conf.get("index_codecs", [])]
        if idx != ["bytes", "crc32c"] or conf.get("index_location", "end") != "end":
            return None
        if conf["index_codecs"][0].get("configuration", {}).get("endian", "little") != "little":
            return None
        zstd = _inner_codecs(conf["codecs"], dtype)
        if zstd is False:
            return None
        chunk = tuple(int(c) for c in conf["chunk_shape"])
        # our layouts: shards split only along the first dim; inner chunks (c, whole, .., whole) or, as stores
        # before ``chunk_cells`` were written, (1, .., 1, whole, .., whole)
        if any(o != s for o, s in zip(outer[1:], shape[1:])) or not _row_chunks(chunk, outer):
            return None
        return ArrayLayout(shard=outer, chunk=chunk, zstd=zstd, **common)
    zstd = _inner_codecs(codecs, dtype)
    if zstd is False or outer != tuple(max(1, s) for s in shape) and shape:
        return None
    return ArrayLayout(shard=None, chunk=None, zstd=zstd, **common)


def _row_chunks(chunk: tuple[int, ...], shard: tuple[int, ...]) -> bool:
    """Inner chunks are 1 along leading dims, then a divisor of the shard along one dim, then whole along the
    rest (so chunk C order is array C order); a split other than along the first dim must be whole (no padding)."""
    if len(chunk) != len(shard) or any(c < 1 or s % c for c, s in zip(chunk, shard)):
        return False
    split = next((d for d, c in enumerate(chunk) if c != 1), len(chunk))
    if split > 0 and split < len(chunk) and chunk[split] != shard[split]:
        return False
    return all(c == s for c, s in zip(chunk[split + 1:], shard[split + 1:]))


def _inner_codecs(codecs: list[dict[str, Any]], dtype: np.dtype) -> int | None | bool:
    """zstd level (``None``: no compression) of ``bytes|vlen-utf8 [, zstd]``; ``False`` if not that."""
    names = [c["name"] for c in codecs]
    first = "vlen-utf8" if dtype == np.dtype(object) else "bytes"
    if not names or names[0] != first or len(names) > 2:
        return False
    if first == "bytes" and codecs[0].get("configuration", {}).get("endian", "little") != "little" \
            and dtype.itemsize > 1:
        return False
    if len(names) == 1:
        return None
    if names[1] != "zstd":
        return False
    return int(codecs[1].get("configuration", {}).get("level", 0))


# ---- chunk codecs ------------------------------------------------------------------------------------------------
_ZSTD: dict[int, Any] = {}


def _zstd(level: int) -> Any:
    if level not in _ZSTD:
        from numcodecs import Zstd

        _ZSTD[level] = Zstd(level=level)
    return _ZSTD[level]


def _encode_chunk(layout: ArrayLayout, values: np.ndarray) -> bytes:
    if layout.is_str:
        from numcodecs import VLenUTF8

        raw = VLenUTF8().encode(np.asarray(values, dtype=object).ravel())
    else:
        raw = np.ascontiguousarray(values, dtype=layout.dtype.newbyteorder("<")).tobytes()
    return bytes(_zstd(layout.zstd).encode(raw)) if layout.zstd is not None else bytes(raw)


def _decode_chunk(layout: ArrayLayout, data: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    if layout.zstd is not None:
        data = _zstd(layout.zstd).decode(data)
    if layout.is_str:
        from numcodecs import VLenUTF8

        return np.asarray(VLenUTF8().decode(data), dtype=object).reshape(shape)
    return np.frombuffer(data, dtype=layout.dtype.newbyteorder("<")).reshape(shape).astype(layout.dtype, copy=False)


# ---- whole shards ------------------------------------------------------------------------------------------------
def _chunk_grid(layout: ArrayLayout, rows: int) -> tuple[int, int, int]:
    """``(c0, n_in, padded)`` for a shard with ``rows`` in-bounds rows: cells per inner chunk, inner chunks that
    hold in-bounds rows (they come first in C order), and those chunks' rows (``rows`` rounded up to ``c0``)."""
    assert layout.chunk is not None
    grid = layout.grid
    c0 = layout.chunk[0] if layout.chunk else 1
    per_row = int(np.prod(grid[1:])) if len(grid) > 1 else 1
    n_rows = -(-rows // c0)
    return c0, n_rows * per_row, n_rows * c0


def _pad_rows(layout: ArrayLayout, block: np.ndarray, padded: int) -> np.ndarray:
    """``block`` with fill rows appended up to ``padded`` rows (an inner chunk past the array's end is written
    whole, its out-of-bounds part at the fill value, as zarr-python does)."""
    if padded == block.shape[0]:
        return block
    pad = _fill_array(layout, (padded - block.shape[0], *block.shape[1:]))
    return np.concatenate([np.asarray(block, dtype=pad.dtype), pad])


def encode_shard(layout: ArrayLayout, block: np.ndarray) -> bytes:
    """The bytes of one shard holding ``block`` (its in-bounds rows: ``(rows, *shape[1:])``).

    Every inner chunk holding in-bounds rows is written (fill values included) in C order, so an uncompressed
    shard's data region is the block's own bytes (plus the fill rows completing the last chunk); chunks wholly past
    the end of the array are marked empty. Inner chunks are ``chunk[0]`` cells along the first dim and either whole
    along the rest or (``chunk[0] == 1``) 1 along leading dims then whole: chunk C order is array C order.
    """
    assert layout.shard is not None and layout.chunk is not None
    n_total = int(np.prod(layout.grid))
    _, n_in, padded = _chunk_grid(layout, block.shape[0])
    block = _pad_rows(layout, block, padded)
    index = np.full((n_total, 2), _EMPTY, dtype="<u8")
    if not layout.is_str and layout.zstd is None:
        data = np.ascontiguousarray(block, dtype=layout.dtype.newbyteorder("<")).tobytes()
        size = len(data) // max(1, n_in)
        index[:n_in, 0] = np.arange(n_in, dtype=np.uint64) * size
        index[:n_in, 1] = size
        parts = [data]
    else:
        chunks = block.reshape((n_in, *layout.chunk))
        parts, offset = [], 0
        for k in range(n_in):
            enc = _encode_chunk(layout, chunks[k])
            index[k] = (offset, len(enc))
            offset += len(enc)
            parts.append(enc)
    ib = index.tobytes()
    parts += [ib, _crc32c(ib).to_bytes(4, "little")]
    return b"".join(parts)


def decode_shard(layout: ArrayLayout, raw: bytes, rows: int, out: np.ndarray | None = None) -> np.ndarray:
    """The in-bounds ``rows`` of a shard from its bytes (missing chunks at the fill value), decoded into ``out``
    (a C-contiguous array of shape ``(rows, *shape[1:])``) when given."""
    assert layout.shard is not None and layout.chunk is not None
    n_total = int(np.prod(layout.grid))
    _, n_in, padded = _chunk_grid(layout, rows)
    ib = raw[len(raw) - 16 * n_total - 4: len(raw) - 4]
    if len(raw) < 16 * n_total + 4 or _crc32c(ib) != int.from_bytes(raw[-4:], "little"):
        raise ValueError(f"{layout.name}: shard index checksum mismatch (a damaged shard file)")
    index = np.frombuffer(ib, dtype="<u8").reshape(n_total, 2)[:n_in]
    shape = (rows, *layout.shard[1:])
    native = not layout.is_str and layout.dtype.newbyteorder("<") == layout.dtype
    if out is None:
        out = np.empty(shape, dtype=layout.dtype)
    size = int(np.prod(layout.chunk)) * layout.dtype.itemsize
    if not layout.is_str and n_in and (index[:, 0] != _EMPTY).all():
        if layout.zstd is None:
            expect = np.arange(n_in, dtype=np.uint64) * np.uint64(size)
            if (index[:, 1] == size).all() and (index[:, 0] == expect).all():  # our writer's layout: one copy
                # in-bounds rows are the first ones in C order; the fill rows completing the last chunk follow
                out[...] = np.frombuffer(raw, dtype=layout.dtype.newbyteorder("<"), count=out.size).reshape(shape)
                return out
        elif native and out.flags.c_contiguous:  # every chunk present: decompress straight into place
            full = out if padded == rows else np.empty((padded, *shape[1:]), dtype=layout.dtype)
            flat = full.reshape((n_in, size // layout.dtype.itemsize))
            view = memoryview(raw)
            codec = _zstd(layout.zstd)
            for k, (off, nb) in enumerate(index.tolist()):
                codec.decode(view[off: off + nb], out=flat[k])
            if full is not out:
                out[...] = full[:rows]
            return out
    full = _fill_array(layout, (padded, *shape[1:]))
    chunks = full.reshape((n_in, *layout.chunk))
    view = memoryview(raw)
    for k, (off, nb) in enumerate(index.tolist()):
        if off == int(_EMPTY):
            continue
        chunks[k] = _decode_chunk(layout, view[off: off + nb], layout.chunk)
    out[...] = full[:rows]
    return out


def read_shard(root: Path, layout: ArrayLayout, b: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows of shard ``b`` (fill values where the shard file does not exist), into ``out`` when given."""
    a0, a1 = layout.rows(b)
    try:
        raw = layout.shard_path(root, b).read_bytes()
    except FileNotFoundError:
        fill = _fill_array(layout, (a1 - a0, *layout.shape[1:]))
        if out is None:
            return fill
        out[...] = fill
        return out
    return decode_shard(layout, raw, a1 - a0, out)


def read_row(root: Path, layout: ArrayLayout, i: int) -> np.ndarray:
    """Row ``i`` (one cell, every seed) alone: the shard index, then only the byte ranges holding that cell
    (uncompressed chunks: the cell's own bytes; compressed or string chunks: the inner chunks holding it)."""
    if layout.shard is None:
        return read_array(root, layout)[i]
    assert layout.chunk is not None
    b = i // layout.rows_per_shard
    n_total = int(np.prod(layout.grid))
    c0, per_row, _ = _chunk_grid(layout, 1)
    r = i - b * layout.rows_per_shard
    k0, rr = (r // c0) * per_row, r % c0  # first inner chunk holding the cell; the cell's row in it
    shape = tuple(layout.shape[1:])
    try:
        fh = open(layout.shard_path(root, b), "rb")
    except FileNotFoundError:
        return _fill_array(layout, shape)
    with fh:
        fh.seek(-(16 * n_total + 4), os.SEEK_END)
        tail = fh.read()
        ib = tail[:-4]
        if _crc32c(ib) != int.from_bytes(tail[-4:], "little"):
            raise ValueError(f"{layout.name}: shard index checksum mismatch (a damaged shard file)")
        index = np.frombuffer(ib, dtype="<u8").reshape(n_total, 2)[k0: k0 + per_row]
        sub = layout.chunk[1:]  # one row of an inner chunk
        out = _fill_array(layout, (per_row, *sub)) if per_row else _fill_array(layout, shape)
        present = index[:, 0] != _EMPTY
        if present.any():
            raw_rows = not layout.is_str and layout.zstd is None
            row_nb = int(np.prod(sub)) * layout.dtype.itemsize
            spans = [(int(index[k, 0]) + rr * row_nb, row_nb) if raw_rows else (int(index[k, 0]), int(index[k, 1]))
                     for k in np.flatnonzero(present)]
            if raw_rows and any(int(index[k, 1]) != c0 * row_nb for k in np.flatnonzero(present)):
                raise ValueError(f"{layout.name}: inner chunk of unexpected size (a damaged shard file)")
            lo = min(o for o, _ in spans)
            hi = max(o + n for o, n in spans)
            fh.seek(lo)
            buf = memoryview(fh.read(hi - lo))
            for k, (off, nb) in zip(np.flatnonzero(present), spans):
                piece = buf[off - lo: off - lo + nb]
                out[k] = (_decode_chunk(layout, piece, sub) if raw_rows
                          else _decode_chunk(layout, piece, layout.chunk)[rr])
    return out.reshape(shape)


def read_array(root: Path, layout: ArrayLayout, rows: slice | None = None) -> np.ndarray:
    """The whole array (or rows ``rows`` of its first dim, step 1), shard by shard."""
    if layout.shard is None:
        path = layout.shard_path(root, 0)
        if not layout.shape:
            shape: tuple[int, ...] = ()
        else:
            shape = layout.shape
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            out = _fill_array(layout, shape)
        else:
            out = _decode_chunk(layout, raw, tuple(max(1, s) for s in shape) if shape else ())
            out = out[tuple(slice(0, s) for s in shape)] if shape else out
        return out[rows] if rows is not None else out
    n = layout.shape[0]
    a0, a1, _ = (rows or slice(None)).indices(n)
    a1 = max(a0, a1)
    per = layout.rows_per_shard
    out = np.empty((a1 - a0, *layout.shape[1:]), dtype=layout.dtype)
    for b in range(a0 // per, -(-a1 // per)):
        s0, s1 = layout.rows(b)
        if s0 >= a0 and s1 <= a1:
            read_shard(root, layout, b, out[s0 - a0: s1 - a0])
        else:
            block = read_shard(root, layout, b)
            out[max(a0, s0) - a0: min(a1, s1) - a0] = block[max(a0, s0) - s0: min(a1, s1) - s0]
    return out


def _all_fill(layout: ArrayLayout, block: np.ndarray) -> bool:
    if layout.is_str:
        fill = layout.fill if layout.fill is not None else ""
        return all(v == fill for v in block.ravel())
    if layout.dtype.kind == "f" and layout.fill is not None and np.isnan(layout.fill):
        return bool(np.isnan(block).all())
    return bool((block == layout.fill).all())


def write_shard(root: Path, layout: ArrayLayout, b: int, block: np.ndarray, *, fsync: bool = False) -> None:
    """Replace shard ``b`` of ``layout`` by one holding ``block`` (its in-bounds rows), atomically.

    A block that is all fill values is stored as no file at all (what Zarr reads as fill): arrays of stages that
    have not run cost nothing on disk. Removing the file is atomic too. With ``fsync`` (commits) the new file's
    data and then its folder are fsync'd (:func:`robustbench_nas.utils.atomic.write_bytes_atomic`; a removal: the
    folder), so a committed shard survives a machine crash; ``fsync=False`` only for bulk writes into a fresh store,
    which a crash makes you redo anyway."""
    a0, a1 = layout.rows(b)
    if block.shape != (a1 - a0, *layout.shape[1:]):
        raise ValueError(f"{layout.name}: shard {b} block has shape {block.shape}, expected {(a1 - a0, *layout.shape[1:])}")
    path = layout.shard_path(root, b)
    # the caller is the only writer of this shard now (the store's exclusive lock): a temporary beside it is what a
    # commit killed mid-write left, never renamed; without this the store would keep it forever
    remove_stale_temporaries(path)
    if _all_fill(layout, block):
        unlink_durably([path], fsync=fsync)
        return
    write_bytes_atomic(path, encode_shard(layout, block), fsync=fsync)


__all__ = ["ArrayLayout", "decode_shard", "encode_shard", "layout_from_meta", "read_array", "read_row",
           "read_shard", "write_shard"]

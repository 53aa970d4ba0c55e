"""Per-image random streams: random numbers that do not depend on the device or on how images are batched.

Two kinds, both computed on the CPU and only then moved to the device (torch's CUDA samplers depend on the GPU
model's SM count, so large CUDA draws differ between an A100, an H100 and the CPU):

- :class:`RowStreams` (attacks): a *counter-based* stream per row. Row ``r``'s ``k``-th number of draw call ``c``
  is ``splitmix64(key_r, c, k)``, a pure function of integers, so it is the same whatever other rows share the
  batch, in whatever order, and the draws of thousands of rows cost a few vectorised NumPy operations (Square draws
  a few numbers per row and query, 5000 queries: a torch generator per row would be far too slow).
- :class:`ImageStreams` (corruptions): one seeded CPU ``torch.Generator`` per image, because the corruptions need
  Poisson draws (shot noise), which torch samples only from a generator.

A row's key is derived with :func:`derive_key` from everything that identifies it: the cell / seed, the attack or
corruption, the radius or severity, and the image's index in the evaluated set (its dataset index when the caller
passes one); never from its position in a batch.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Sequence

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK63 = (1 << 63) - 1


def _part_bytes(p: Any) -> bytes:
    """Canonical bytes of one key part; floats by their IEEE bits (8/255 and 0.0313725... are one key)."""
    if isinstance(p, bool):
        return b"b" + bytes([int(p)])
    if isinstance(p, (int, np.integer)):
        return b"i" + str(int(p)).encode()
    if isinstance(p, (float, np.floating)):
        return b"f" + struct.pack("<d", float(p))
    if isinstance(p, str):
        return b"s" + p.encode()
    raise TypeError(f"key parts must be int, float, bool or str, got {type(p).__name__}")


def derive_key(*parts: Any) -> int:
    """A 63-bit key from ``parts`` (ints, floats, strings), the same in every process and on every machine.

    Example:
        >>> derive_key(0, "pgd@Linf", 8 / 255, 17) == derive_key(0, "pgd@Linf", 8 / 255, 17)
        True
    """
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        b = _part_bytes(p)
        h.update(len(b).to_bytes(4, "little") + b)
    return int.from_bytes(h.digest(), "little") & _MASK63


def _mix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (NumPy uint64 arithmetic wraps modulo 2**64, as intended)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _as_keys(keys: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(keys, torch.Tensor):
        keys = keys.detach().cpu().numpy()
    arr = np.asarray(keys)
    if arr.ndim != 1:
        raise ValueError(f"row keys must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"row keys must be integers, got dtype {arr.dtype}")
    return arr.astype(np.uint64)


def image_keys(base: int, ids: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    """Keys ``(N,)`` uint64 of images ``ids`` (their indices in the evaluated set or the dataset) under ``base``
    (:func:`derive_key` of what else identifies the draw: seed, attack or corruption, radius or severity).

    Raises:
        ValueError: ids that are not 1-D non-negative integers.
    """
    raw = np.asarray(ids.detach().cpu() if isinstance(ids, torch.Tensor) else ids)
    if raw.size and raw.min() < 0:
        raise ValueError("image ids must be non-negative")
    arr = _as_keys(raw)
    b = np.uint64(int(base) & _MASK63)
    with np.errstate(over="ignore"):
        return _mix(_mix(arr * _GOLDEN + np.uint64(1)) ^ b)


class RowStreams:
    """Counter-based random numbers, one independent stream per row (see the module docstring).

    Every draw method returns a CPU-computed tensor ``(B, *shape)`` moved to ``device``: row ``r`` holds numbers
    that depend only on its key and on the draw's counter. The counter advances by one per draw call, so rows that
    share a :class:`RowStreams` must make the same sequence of calls (the attack kernels do: their calls depend on
    the algorithm's position, never on the data); use :meth:`child` for a part whose number of calls can vary (a
    restart after a loop that may stop early), so that later draws never depend on how long earlier parts ran.

    Arguments:
        keys: ``(B,)`` integer keys, one per row (:func:`derive_key`).
        mean_over: number of images of the evaluated set, for the attacks whose reference averages the loss over
            a batch (FGSM, PGD: torchattacks' mean): they weight each row by ``1 / mean_over`` instead of
            ``1 / (rows in this batch)``, which would tie float rounding to the batch size. ``None``: the kernel's
            own per-batch weights.
    """

    def __init__(self, keys: Sequence[int] | np.ndarray | torch.Tensor, *, mean_over: int | None = None,
                 _counter: int = 0) -> None:
        self.keys = _as_keys(keys)
        if mean_over is not None and int(mean_over) < 1:
            raise ValueError(f"mean_over must be a positive number of images, got {mean_over!r}")
        self.mean_over = None if mean_over is None else int(mean_over)
        self.counter = int(_counter)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __repr__(self) -> str:
        return f"RowStreams(rows={len(self)}, counter={self.counter}, mean_over={self.mean_over})"

    # ---- derived streams ------------------------------------------------------------------------------------------
    def child(self, *tag: Any) -> "RowStreams":
        """New streams for the same rows, keyed by ``tag`` (e.g. ``("restart", 1)``), counter at 0."""
        t = np.uint64(derive_key(*tag))
        return RowStreams(_mix(self.keys ^ _mix(np.full_like(self.keys, t))), mean_over=self.mean_over)

    def subset(self, rows: torch.Tensor | np.ndarray | Sequence[int]) -> "RowStreams":
        """The streams of ``rows`` (indices or a boolean mask), at the same counter (draws continue in step)."""
        if isinstance(rows, torch.Tensor):
            rows = rows.detach().cpu().numpy()
        return RowStreams(self.keys[np.asarray(rows)], mean_over=self.mean_over, _counter=self.counter)

    # ---- raw bits -------------------------------------------------------------------------------------------------
    def _bits(self, per_row: int) -> np.ndarray:
        """``(B, per_row)`` uint64: splitmix64 outputs of the stream ``(key, counter)``; advances the counter."""
        c = np.array([self.counter + 1], dtype=np.uint64)
        self.counter += 1
        with np.errstate(over="ignore"):  # wrapping modulo 2**64 is the arithmetic intended
            base = _mix(self.keys ^ (c * _GOLDEN))  # (B,) a fresh, well-mixed state per (row, call)
            j = np.arange(1, per_row + 1, dtype=np.uint64)
            return _mix(base[:, None] + j[None, :] * _GOLDEN)

    # ---- draws ----------------------------------------------------------------------------------------------------
    def uniform(self, shape: Sequence[int] = (), *, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform on [0, 1), ``(B, *shape)``.

        float32: the top 24 bits times 2**-24 (exact); float64: the top 53 bits times 2**-53.
        """
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        b = self._bits(n)
        if dtype == torch.float64:
            u = (b >> np.uint64(11)).astype(np.float64) * 2.0**-53
        else:
            u = ((b >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)).astype(np.float32)
        return torch.from_numpy(u.reshape(len(self), *shape)).to(device=device, dtype=dtype)

    def normal(self, shape: Sequence[int] = (), *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``(B, *shape)`` by Box-Muller in float64 on the CPU, then cast to ``dtype``.

        (NumPy's float64 ``log``/``cos`` may differ in the last float64 bit between CPU builds; after the cast to
        float32 that can change a value only when it lies within 1e-16 of a float32 rounding boundary.)
        """
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        b = self._bits(2 * n)
        u1 = ((b[:, 0::2] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]: log is finite
        u2 = (b[:, 1::2] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return torch.from_numpy(z.reshape(len(self), *shape)).to(device=device, dtype=dtype)

    def integers(self, high: int, shape: Sequence[int] = (), *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Integers uniform on ``[0, high)`` (0 when ``high <= 0``), int64 ``(B, *shape)``.

        Computed as ``floor(high * u)`` with ``u`` a float64 uniform (bias below 2**-40 for the small ``high`` used).
        """
        u = self.uniform(shape, dtype=torch.float64)
        v = torch.floor(u * max(int(high), 0)).long()
        return v.to(device)

    def signs(self, shape: Sequence[int] = (), *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """+1 or -1 with equal odds, ``(B, *shape)`` (the reference's ``sign(2 u - 1)``, never 0 here)."""
        u = self.uniform(shape)
        return torch.where(u < 0.5, -1.0, 1.0).to(device=device, dtype=dtype)


class ImageStreams:
    """One seeded CPU ``torch.Generator`` per image (corruptions; see the module docstring).

    Arguments:
        keys: ``(N,)`` integer keys, one per image (:func:`derive_key` of the corruption cell and the image index).

    The generators advance with every draw, so the images of one batch must be drawn by one corruption call in
    the order the corruption makes its calls (as :func:`robustbench_nas.corruptions.get` does).
    """

    def __init__(self, keys: Sequence[int] | np.ndarray | torch.Tensor) -> None:
        k = _as_keys(keys)
        self.keys = k
        self.generators = []
        for key in k.tolist():
            g = torch.Generator()
            g.manual_seed(int(key) & _MASK63)
            self.generators.append(g)

    def __len__(self) -> int:
        return len(self.generators)

    def __repr__(self) -> str:
        return f"ImageStreams(images={len(self)})"


__all__ = ["ImageStreams", "RowStreams", "derive_key", "image_keys"]

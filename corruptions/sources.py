"""Where corrupted images come from: generated on the device, or read from the official CIFAR-10-C files.

Both sources answer ``source.batches(name, severity, batch_size)`` with ``(x float [0, 1] (n, C, H, W) on the
device, y int64 (n,))`` batches, so the evaluation does not care which one it has.

The official files (Hendrycks & Dietterich, zenodo records of CIFAR-10-C / CIFAR-100-C) are a folder with one
``<corruption>.npy`` per corruption, uint8 ``(5 * n, 32, 32, 3)`` HWC, severity-major (rows ``(s-1) n .. s n - 1``
hold severity ``s``), and ``labels.npy`` (``5 * n`` labels, the test labels repeated per severity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from robustbench_nas.utils.atomic import atomic_output
from robustbench_nas.utils.streams import ImageStreams, derive_key, image_keys

from .registry import cell_seed, check_images, check_severity, get

Batch = tuple[torch.Tensor, torch.Tensor]


class CorruptionSource(Protocol):
    """A source of corrupted test images (see module docstring)."""

    def num_images(self) -> int: ...

    def batches(self, name: str, severity: int, batch_size: int) -> Iterator[Batch]: ...


class GeneratedSource:
    """Corrupt ``x`` on the fly with :func:`robustbench_nas.corruptions.get`.

    Arguments:
        x: clean images, float ``(N, C, H, W)`` in [0, 1] (any device; batches are moved to ``device``).
        y: labels ``(N,)``.
        seed: base seed; each (corruption, severity) cell gets its own key from
            :func:`robustbench_nas.corruptions.registry.cell_seed`, so a cell's images do not depend on which other
            cells run.
        device: where corruptions are computed.
        image_ids: ``(N,)`` distinct non-negative ids of the images (e.g. dataset indices); default ``0 .. N-1``.

    Every image draws from its own CPU generator, keyed by the cell and the image's id
    (:class:`~robustbench_nas.utils.streams.ImageStreams`), and the numbers are moved to ``device``: an image's
    corruption depends neither on ``batch_size``, nor on the order of the images, nor on the device's random
    number generators.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, device: torch.device | str = "cpu",
                 image_ids: Sequence[int] | np.ndarray | torch.Tensor | None = None) -> None:
        check_images(x)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"expected labels (N,) matching images {tuple(x.shape)}, got {tuple(y.shape)}")
        self.x, self.y, self.seed, self.device = x, y, int(seed), torch.device(device)
        n = int(x.shape[0])
        if image_ids is None:
            ids = np.arange(n, dtype=np.int64)
        else:
            raw = image_ids.detach().cpu().numpy() if isinstance(image_ids, torch.Tensor) else np.asarray(image_ids)
            if raw.shape != (n,) or (raw.size and raw.dtype.kind not in "iu"):
                raise ValueError(f"image_ids must be {n} integers, got shape {raw.shape} dtype {raw.dtype}")
            ids = raw.astype(np.int64)
            if ids.size and (ids.min() < 0 or np.unique(ids).size != n):
                raise ValueError("image_ids must be distinct and non-negative")
        self.image_ids = ids

    def num_images(self) -> int:
        return int(self.x.shape[0])

    def batches(self, name: str, severity: int, batch_size: int) -> Iterator[Batch]:
        f = get(name)
        keys = image_keys(derive_key("corruption", cell_seed(self.seed, name, severity)), self.image_ids)
        for i in range(0, self.num_images(), batch_size):
            xb = self.x[i : i + batch_size].to(self.device, non_blocking=True)
            gen = ImageStreams(keys[i : i + batch_size])
            yield f(xb, severity, generator=gen), self.y[i : i + batch_size].to(self.device)


class CifarCFiles:
    """The official CIFAR-10-C / CIFAR-100-C ``.npy`` files under ``root`` (read lazily, memory-mapped).

    Arguments:
        root: folder with ``<corruption>.npy`` and ``labels.npy``.
        device: where batches are delivered.
        limit: use only the first ``limit`` images of each severity (all when ``None``).
        indices: use these test-set indices (same selection in every severity), e.g. the class-stratified subset
            the pipeline evaluates; overrides ``limit``.

    Example:
        >>> src = CifarCFiles("~/data/CIFAR-10-C")
        >>> x, y = src.load("fog", 3)          # uint8 (10000, 3, 32, 32), int64 (10000,)
        >>> sub = CifarCFiles("~/data/CIFAR-10-C", indices=[0, 5, 9])
    """

    def __init__(
        self,
        root: str | Path,
        *,
        device: torch.device | str = "cpu",
        limit: int | None = None,
        indices: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"CIFAR-C folder {self.root} does not exist")
        labels_path = self.root / "labels.npy"
        if not labels_path.is_file():
            raise FileNotFoundError(f"{labels_path} not found (expected the official CIFAR-10-C layout)")
        labels = np.load(labels_path, mmap_mode="r")
        if labels.ndim != 1 or labels.shape[0] % 5:
            raise ValueError(f"{labels_path}: expected 5 * n labels (severity-major), got shape {labels.shape}")
        self.per_severity = labels.shape[0] // 5
        if indices is not None:
            idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
            if idx.ndim != 1 or idx.size == 0:
                raise ValueError(f"indices must be a non-empty 1-D sequence, got shape {idx.shape}")
            if idx.min() < 0 or idx.max() >= self.per_severity:
                raise ValueError(f"indices must lie in 0..{self.per_severity - 1}, got {idx.min()}..{idx.max()}")
        elif limit is not None:
            if not 0 < limit <= self.per_severity:
                raise ValueError(f"limit must be in 1..{self.per_severity}, got {limit}")
            idx = np.arange(limit)
        else:
            idx = np.arange(self.per_severity)
        self.indices = idx
        self._labels = np.asarray(labels[: self.per_severity]).astype(np.int64)[idx]
        self.device = torch.device(device)

    def available(self) -> list[str]:
        """Corruption names with a ``.npy`` file under the root."""
        return sorted(p.stem for p in self.root.glob("*.npy") if p.stem != "labels")

    def num_images(self) -> int:
        return int(self.indices.shape[0])

    def labels(self) -> torch.Tensor:
        """Labels ``(n,)`` int64 of the selected images."""
        return torch.from_numpy(self._labels.copy())

    def _array(self, name: str) -> np.ndarray:
        path = self.root / f"{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; available: {', '.join(self.available()) or 'none'}")
        arr = np.load(path, mmap_mode="r")
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise ValueError(f"{path}: expected uint8 (5 * n, H, W, C), got {arr.dtype} {arr.shape}")
        if arr.shape[0] != 5 * self.per_severity:
            raise ValueError(f"{path}: {arr.shape[0]} images, expected 5 x {self.per_severity} to match labels.npy")
        return arr

    def load(self, name: str, severity: int, start: int = 0, stop: int | None = None) -> Batch:
        """uint8 images ``(n, C, H, W)`` and labels of one severity (selected images ``start:stop``)."""
        sev = check_severity(severity)
        arr = self._array(name)
        rows = self.indices[start:stop] + (sev - 1) * self.per_severity
        contiguous = rows.size > 0 and rows[-1] - rows[0] == rows.size - 1 and bool(np.all(np.diff(rows) == 1))
        block = np.array(arr[rows[0] : rows[-1] + 1]) if contiguous else np.asarray(arr[np.sort(rows)])
        if not contiguous:
            block = block[np.argsort(np.argsort(rows))]  # back to the requested order
        x = torch.from_numpy(block).permute(0, 3, 1, 2).contiguous()
        return x, torch.from_numpy(self._labels[start:stop].copy())

    def batches(self, name: str, severity: int, batch_size: int) -> Iterator[Batch]:
        for i in range(0, self.num_images(), batch_size):
            x, y = self.load(name, severity, i, i + batch_size)
            yield x.to(self.device).float().div_(255.0), y.to(self.device)


def write_cifar_c(root: str | Path, name: str, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write ``images`` uint8 ``(5 * n, H, W, C)`` (severity-major) as ``root/<name>.npy`` in the official layout,
    and ``labels`` ``(5 * n,)`` as ``labels.npy`` when given. The file is written to a temporary name and renamed,
    so a failure never leaves a truncated file behind."""
    root = Path(root)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] % 5:
        raise ValueError(f"expected uint8 (5 * n, H, W, C) images, got {images.dtype} {images.shape}")
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{name}.npy"
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, images)
    if labels is not None:
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
        with atomic_output(root / "labels.npy") as lt:
            with open(lt, "wb") as fh:
                np.save(fh, labels.astype(np.uint8 if labels.max() < 256 else np.int64))
    return out

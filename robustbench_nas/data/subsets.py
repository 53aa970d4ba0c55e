"""Which images an evaluation uses: the one rule from (split, size, subset seed) or explicit indices to positions.

Every place that evaluates a subset of a split (the pipeline's stages, ``rbnas proxies``, ``rbnas attack``,
``rbnas corrupt eval``, ``rbnas measures``) chooses it here, so the same settings give the same images everywhere.
An index is a position in the split (``dataset.split(name).x[index]``); for ``npz`` the split is itself a fixed
seeded part of the file (see :func:`robustbench_nas.data.sources.npz`).

The default rule does not depend on who asks (no protocol name): a class-balanced sample
(:func:`~robustbench_nas.data.base.sample_indices`) seeded by ``derive_seed("images", split, n, subset_seed)``, in
sorted order. ``n=None`` (or ``n`` at least the split's size) is the whole split in its order. Explicit indices are
used as given (their order too: a proxy's batch statistics may depend on it).

Example:
    >>> from robustbench_nas.data import get_dataset
    >>> test = get_dataset("digits").split("test")
    >>> idx = subset_indices(test.y.numpy(), "test", 10, subset_seed=0)
    >>> len(idx), bool((idx[1:] > idx[:-1]).all())
    (10, True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..utils.seeding import derive_seed
from .base import DataError, DataSplit, sample_indices

#: What a subset is for; each is one protocol field of its size and one entry of explicit indices.
PURPOSES: tuple[str, ...] = ("proxies", "clean", "attacks", "corruptions", "measures")

#: The default rule's name, recorded in stores next to the indices it gave.
SUBSET_RULE = "class-balanced sample_indices seeded by derive_seed('images', split, n, subset_seed), sorted"


def subset_seed_of(split: str, n: int, subset_seed: int) -> int:
    """The seed of the default rule's sample: ``derive_seed("images", split, n, subset_seed)`` (31 bits)."""
    return derive_seed("images", split, int(n), int(subset_seed))


def check_indices(indices: Sequence[int] | np.ndarray, size: int, where: str) -> np.ndarray:
    """Explicit indices as an int64 array, or ``DataError`` naming the problem (empty, not integers, outside
    ``0 .. size - 1``, repeated)."""
    arr = np.asarray(indices)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"{where}: explicit image indices must be a non-empty list, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{where}: explicit image indices must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= size)]
    if bad.size:
        raise DataError(f"{where}: image indices {bad[:5].tolist()} outside 0..{size - 1} "
                        f"(the split has {size} images)")
    if np.unique(arr).size != arr.size:
        vals, counts = np.unique(arr, return_counts=True)
        raise DataError(f"{where}: image indices repeated: {vals[counts > 1][:5].tolist()}")
    return arr


def subset_indices(labels: np.ndarray, split: str, n: int | None, subset_seed: int = 0,
                   indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Positions in the split of the images to use (int64).

    Arguments:
        labels: the split's labels ``(N,)`` (the class-balanced rule needs them; nothing else is read).
        split: the split's name (part of the rule's seed).
        n: number of images; ``None`` or ``>= N``: the whole split in its order.
        subset_seed: the rule's seed (a protocol field, ``--subset-seed`` on the command line).
        indices: explicit positions, used as given (then ``n``, if not ``None``, must equal their count).

    Raises:
        DataError: ``n < 1``, or explicit indices that are bad or disagree with ``n``.

    Shape:
        output ``(min(n, N),)``, or ``(len(indices),)``.
    """
    size = int(len(labels))
    if indices is not None:
        arr = check_indices(indices, size, f"split {split!r}")
        if n is not None and int(n) != arr.size:
            raise DataError(f"split {split!r}: {arr.size} explicit image indices but {n} images asked for")
        return arr
    if n is None or int(n) >= size:
        return np.arange(size, dtype=np.int64)
    if int(n) < 1:
        raise DataError(f"cannot take {n} images from split {split!r}")
    return sample_indices(np.asarray(labels), int(n), subset_seed_of(split, int(n), subset_seed)).astype(np.int64)


def take(split: DataSplit, idx: np.ndarray) -> DataSplit:
    """The images ``idx`` of ``split`` as a new :class:`DataSplit` (the same split object when ``idx`` is all of it
    in order)."""
    if idx.size == len(split) and np.array_equal(idx, np.arange(len(split))):
        return split
    t = torch.from_numpy(np.ascontiguousarray(idx))
    return DataSplit(split.name, split.x[t], split.y[t], split.info)


def images_sha256(split: DataSplit, idx: np.ndarray) -> str:
    """sha256 (hex) of the chosen images' uint8 pixels and int64 labels, in order: identifies a subset by content."""
    sub = take(split, idx)
    h = hashlib.sha256()
    h.update(f"{tuple(sub.x.shape)}".encode())
    h.update(sub.x.contiguous().numpy().tobytes())
    h.update(sub.y.to(dtype=torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def indices_sha256(idx: Sequence[int] | np.ndarray) -> str:
    """sha256 (hex) of the indices as little-endian int64: a short name of a list of positions."""
    return hashlib.sha256(np.asarray(idx, dtype="<i8").tobytes()).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes (what ``sha256sum`` prints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_sha256(dataset: str, root: str | None, splits: dict[str, DataSplit]) -> str:
    """The data's identity: sha256 of the file for a dataset read from one file (``npz``); otherwise (a folder, or
    the embedded ``digits``) sha256 of the named splits' pixels and labels, in split-name order."""
    if root is not None and Path(root).is_file():
        return file_sha256(root)
    h = hashlib.sha256(dataset.encode())
    for name in sorted(splits):
        h.update(name.encode())
        h.update(images_sha256(splits[name], np.arange(len(splits[name]))).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ImageSubset:
    """One chosen subset: where it comes from, the positions, and its content hash.

    Attributes:
        purpose: what it is for (one of :data:`PURPOSES`, or ``""`` outside the pipeline).
        split: split name.
        n: number of images.
        subset_seed: the default rule's seed (``None`` when the indices were explicit).
        indices: positions in the split (int64), in evaluation order.
        sha256: :func:`images_sha256` of the images.
        whole: the subset is the whole split in its order.
    """

    purpose: str
    split: str
    n: int
    subset_seed: int | None
    indices: np.ndarray
    sha256: str
    whole: bool

    def record(self) -> dict[str, Any]:
        """JSON-able description (stores, exported tables); a whole split is recorded as ``"indices": "all"``."""
        return {"split": self.split, "n": self.n, "subset_seed": self.subset_seed,
                "indices": "all" if self.whole else [int(i) for i in self.indices], "sha256": self.sha256}

    def describe(self) -> str:
        """``64 images (sha 1a2b3c4d5e6f)`` for one-line messages."""
        return f"{self.n} images (sha {self.sha256[:12]})"


def choose_images(split: DataSplit, n: int | None, subset_seed: int = 0,
                  indices: Sequence[int] | np.ndarray | None = None, purpose: str = "") -> ImageSubset:
    """:func:`subset_indices` on a loaded split, with the content hash: the :class:`ImageSubset` to evaluate."""
    idx = subset_indices(split.y.numpy(), split.name, n, subset_seed, indices)
    whole = idx.size == len(split) and bool(np.array_equal(idx, np.arange(len(split))))
    return ImageSubset(purpose=purpose, split=split.name, n=int(idx.size),
                       subset_seed=None if indices is not None else int(subset_seed), indices=idx,
                       sha256=images_sha256(split, idx), whole=whole)


def read_indices(text: str) -> list[int]:
    """Explicit indices from text: a comma / whitespace separated list, or ``@FILE`` (the same, ``#`` comments).

    Raises:
        DataError: a missing file, an entry that is not an integer, or no entries.
    """
    text = text.strip()
    where = "--indices"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise DataError(f"--indices file {path} not found")
        where = f"--indices file {path}"
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    items = [s for s in text.replace(",", " ").split() if s]
    try:
        out = [int(s) for s in items]
    except ValueError:
        bad = next(s for s in items if not s.lstrip("-").isdigit())
        raise DataError(f"{where}: {bad!r} is not an integer index") from None
    if not out:
        raise DataError(f"{where}: no indices given")
    return out


__all__ = [
    "ImageSubset", "PURPOSES", "SUBSET_RULE", "check_indices", "choose_images", "data_sha256", "file_sha256",
    "images_sha256", "indices_sha256", "read_indices", "subset_indices", "subset_seed_of", "take",
]

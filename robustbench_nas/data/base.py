"""Dataset abstraction: typed info, uint8 splits held as tensors, and a registry by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..utils.registry import Registry

#: dataset factories by (lower-case) name; a taken name is an error, never a silent replacement
DATASETS: Registry[Callable[..., "Dataset"]] = Registry("dataset", normalize=str.lower)


class DataError(RuntimeError):
    """A dataset root is missing, incomplete or corrupt (the message says what was expected where)."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a trainer need to know about a dataset.

    Attributes:
        name: registry name.
        num_classes: number of classes ``K``.
        channels, image_size: images are ``(channels, image_size, image_size)``.
        mean, std: per-channel normalisation constants in [0, 1] pixel units (the model's first layer applies them).
        class_names: ``K`` names.
        crop_padding: padding of the random-crop augmentation (NB201: 4 for CIFAR, 2 for ImageNet16).
        flip: whether horizontal flips preserve labels (augmentation).
    """

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    crop_padding: int = 4
    flip: bool = True


@dataclass
class DataSplit:
    """One split: ``x`` uint8 ``(N, C, H, W)``, ``y`` int64 ``(N,)``."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo = field(repr=False)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise DataError(f"split {self.name!r}: images must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise DataError(f"split {self.name!r}: {self.x.shape[0]} images but labels of shape {tuple(self.y.shape)}")
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.info.num_classes):
            raise DataError(f"split {self.name!r}: labels outside 0..{self.info.num_classes - 1}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def images(self, device: torch.device | str = "cpu", n: int | None = None) -> torch.Tensor:
        """The first ``n`` images (all if ``None``) as float32 in [0, 1] on ``device``."""
        x = self.x if n is None else self.x[:n]
        return x.to(device).float().div_(255.0)

    def labels(self, device: torch.device | str = "cpu", n: int | None = None) -> torch.Tensor:
        """The first ``n`` labels (all if ``None``) on ``device``."""
        y = self.y if n is None else self.y[:n]
        return y.to(device)

    def subset(self, n: int | None = None, seed: int | None = None, stratified: bool = True) -> "DataSplit":
        """``n`` images: the first ``n`` if ``seed`` is None, else a seeded (class-balanced) sample in sorted order."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataError(f"cannot take {n} images from split {self.name!r}")
        if seed is None:
            idx = torch.arange(n)
        else:
            idx = torch.from_numpy(sample_indices(self.y.numpy(), n, seed, stratified))
        return DataSplit(self.name, self.x[idx], self.y[idx], self.info)


def sample_indices(y: np.ndarray, n: int, seed: int, stratified: bool = True) -> np.ndarray:
    """Sorted indices of ``n`` items, seeded; round-robin over classes when ``stratified``."""
    rng = np.random.default_rng(seed)
    if not stratified:
        return np.sort(rng.choice(len(y), size=n, replace=False))
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for idx in per_class:
            if depth < len(idx) and len(picked) < n:
                picked.append(int(idx[depth]))
        depth += 1
    return np.sort(np.asarray(picked))


class Dataset:
    """A dataset: :class:`DatasetInfo` plus named splits (``train``, ``val``, ``test``, maybe more)."""

    def __init__(self, info: DatasetInfo, splits: dict[str, Callable[[], DataSplit]]) -> None:
        self.info = info
        self._loaders = splits
        self._cache: dict[str, DataSplit] = {}

    @property
    def split_names(self) -> list[str]:
        return list(self._loaders)

    def split(self, name: str) -> DataSplit:
        """Load (once) and return the split ``name``."""
        if name not in self._loaders:
            raise KeyError(f"dataset {self.info.name!r} has no split {name!r}; splits: {self.split_names}")
        if name not in self._cache:
            self._cache[name] = self._loaders[name]()
        return self._cache[name]


def register_dataset(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: register a factory ``f(root=None, download=False) -> Dataset`` under ``name`` (case-insensitive).

    A name already taken raises ``ValueError``.
    """
    return DATASETS.register(name)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Registered dataset names (sorted), filtered by a shell-style ``pattern`` (``"cifar*"``)."""
    return DATASETS.list(pattern, sort=True)


def get_dataset(name: str, root: str | None = None, download: bool = False) -> Dataset:
    """The dataset ``name`` read from ``root`` (a folder, or the file for ``npz``); ``digits`` needs no root.

    Raises:
        KeyError: unknown name.
        DataError: missing or corrupt root, with what was expected where.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {list_datasets()}")
    return DATASETS.get(name)(root=root, download=download)

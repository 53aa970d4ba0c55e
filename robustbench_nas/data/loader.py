"""GPU-friendly batching: a whole split resident on the device, augmentation done there in batches."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .base import DataSplit


def random_crop_flip(
    x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop with zero padding, then random horizontal flip, per image, in one batched op.

    Arguments:
        x: ``(B, C, H, W)`` float images on any device.
        padding: pixels of zero padding on each side before cropping back to ``H x W`` (0 disables the crop).
        flip: flip each image left-right with probability 1/2.
        generator: CPU generator for the offsets and flips (same seed, same augmentation on any device).

    Shape:
        output ``(B, C, H, W)``, same dtype and device.
    """
    b, _, h, w = x.shape
    if padding > 0:
        off = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
        xp = F.pad(x, (padding, padding, padding, padding))
        iy = off[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
        ix = off[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
        bi = torch.arange(b, device=x.device)[:, None, None]
        x = xp[bi, :, iy[:, :, None], ix[:, None, :]].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.contiguous()


class DeviceLoader:
    """Batches of a :class:`DataSplit` kept on ``device`` as uint8; float conversion and augmentation on the device.

    Arguments:
        split: the data.
        batch_size: images per batch.
        device: where images live and batches are produced.
        shuffle: new seeded permutation every epoch.
        augment: random crop (``split.info.crop_padding``) and flip (``split.info.flip``).
        generator: CPU generator driving order and augmentation (reproducible across devices).
        drop_last: drop the last incomplete batch.

    Example:
        >>> from robustbench_nas.data import get_dataset
        >>> split = get_dataset("digits").split("train")
        >>> xb, yb = next(iter(DeviceLoader(split, 64, "cpu", augment=True)))
        >>> xb.shape, float(xb.max()) <= 1.0
        (torch.Size([64, 3, 16, 16]), True)
    """

    def __init__(
        self,
        split: DataSplit,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.split = split
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator
        self.drop_last = drop_last
        self.channels_last = channels_last
        self._x = split.x.to(self.device)
        self._y = split.y.to(self.device)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self._x[idx].float().div_(255.0)
            if self.augment:
                xb = random_crop_flip(xb, self.split.info.crop_padding, self.split.info.flip, self.generator)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, self._y[idx]

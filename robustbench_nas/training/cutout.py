"""Cutout (DeVries & Taylor 2017) as DARTS applies it: one square per image, centre uniform over the image."""

from __future__ import annotations

from typing import Sequence

import torch


def cutout(x: torch.Tensor, length: int, fill: Sequence[float],
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Cover one ``length x length`` square per image (clipped at the borders) with ``fill``.

    DARTS's ``utils.Cutout`` zeroes the square after normalisation, i.e. it sets the pixels to the dataset mean; our
    networks normalise internally and take [0, 1] pixels, so the same square is filled with the mean (``fill``).

    Arguments:
        x: ``(B, C, H, W)`` images in [0, 1].
        length: side of the square in pixels (DARTS: 16).
        fill: per-channel value (the dataset mean).
        generator: CPU generator for the centres (same seed, same squares on any device).

    Shape:
        output ``(B, C, H, W)``, a new tensor.
    """
    if length < 1:
        raise ValueError(f"cutout length must be >= 1, got {length}")
    b, c, h, w = x.shape
    if len(fill) != c:
        raise ValueError(f"cutout fill has {len(fill)} values for {c} channels")
    cy = torch.randint(0, h, (b,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b,), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    # rows cy - L//2 .. cy + L//2 - 1, clipped (DARTS: np.clip(y - L // 2, 0, h) : np.clip(y + L // 2, 0, h))
    in_y = (ys >= cy[:, None] - length // 2) & (ys < cy[:, None] + length // 2)
    in_x = (xs >= cx[:, None] - length // 2) & (xs < cx[:, None] + length // 2)
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]  # (B, 1, H, W)
    value = torch.tensor(list(fill), dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return torch.where(mask, value, x)


__all__ = ["cutout"]

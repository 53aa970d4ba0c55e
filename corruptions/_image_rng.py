"""Per-image random draws for the corruptions: each image's numbers from its own seeded CPU generator.

:class:`ImageRng` answers the same calls as :class:`~robustbench_nas.corruptions._rng.Rng`, but every draw of
shape ``(..., N, ...)`` (``N`` images along ``image_axis``, 0 unless the corruption says otherwise) is made image by
image from :class:`~robustbench_nas.utils.streams.ImageStreams` on the CPU, then moved to the device. An image's
corruption then depends on its own key only: not on the device, the batch size or the other images of the batch.
"""

from __future__ import annotations

from typing import Callable

import torch

from robustbench_nas.utils.streams import ImageStreams

from ._rng import Rng


class ImageRng(Rng):
    """Per-image draws (module docstring); ``streams`` must hold one generator per image of the batch."""

    def __init__(self, streams: ImageStreams, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(torch.Generator(), device, dtype)  # the base generator is never drawn from
        self.streams = streams

    def _per_image(self, shape: tuple[int, ...], image_axis: int,
                   draw: Callable[[torch.Generator, tuple[int, ...]], torch.Tensor]) -> torch.Tensor:
        """Stack ``draw(generator_i, shape without the image axis)`` over the images along ``image_axis`` (CPU)."""
        shape = tuple(int(s) for s in shape)
        axis = image_axis % len(shape)
        if shape[axis] != len(self.streams):
            raise ValueError(f"a draw of shape {shape} has {shape[axis]} images along axis {axis}, "
                             f"but there are streams for {len(self.streams)} images")
        rest = shape[:axis] + shape[axis + 1 :]
        return torch.stack([draw(g, rest) for g in self.streams.generators], dim=axis)

    def uniform(self, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0, dtype: torch.dtype | None = None,
                image_axis: int = 0) -> torch.Tensor:
        """Uniform on ``[low, high)``, computed on the CPU (as the base class) and moved to the device."""
        dt = dtype or self.dtype
        t = self._per_image(shape, image_axis, lambda g, s: torch.rand(s, generator=g, dtype=dt))
        return self._move(t * (high - low) + low)

    def normal(self, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0, dtype: torch.dtype | None = None,
               image_axis: int = 0) -> torch.Tensor:
        """Normal ``N(mean, std^2)``."""
        dt = dtype or self.dtype
        t = self._per_image(shape, image_axis, lambda g, s: torch.randn(s, generator=g, dtype=dt))
        return self._move(t * std + mean)

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        """Poisson counts with the given rates ``(N, ...)`` (images along axis 0)."""
        r = rate.detach().cpu()
        if r.ndim == 0 or r.shape[0] != len(self.streams):
            raise ValueError(f"rates of shape {tuple(r.shape)} for {len(self.streams)} images")
        t = torch.stack([torch.poisson(r[i], generator=g) for i, g in enumerate(self.streams.generators)])
        return self._move(t)

    def integers(self, shape: tuple[int, ...], low: int, high: int, image_axis: int = 0) -> torch.Tensor:
        """Integers uniform on ``[low, high)``, int64."""
        t = self._per_image(shape, image_axis, lambda g, s: torch.randint(low, high, s, generator=g))
        return self._move(t)


__all__ = ["ImageRng"]

"""Random draws of the corruptions from one ``torch.Generator`` (:class:`Rng`); the per-image variant is
:class:`~robustbench_nas.corruptions._image_rng.ImageRng`. Its own module, below the registry and the per-image
draws, so neither imports the other back."""

from __future__ import annotations

import torch


class Rng:
    """Random draws from one ``torch.Generator``, returned on the images' device.

    Numbers are drawn on the generator's device and moved to ``device``: a CPU generator gives the same
    corruptions on CPU and GPU; a generator on the GPU keeps the draws there (faster, device-specific numbers).
    """

    def __init__(self, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> None:
        self.generator = generator
        self.device = device
        self.dtype = dtype

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device)

    def uniform(
        self, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0, dtype: torch.dtype | None = None,
        image_axis: int = 0,
    ) -> torch.Tensor:
        """Uniform on ``[low, high)``. ``image_axis``: where the images are in ``shape`` (used by the per-image
        :class:`~robustbench_nas.corruptions._image_rng.ImageRng`; one generator draws the whole shape here)."""
        t = torch.rand(shape, generator=self.generator, device=self.generator.device, dtype=dtype or self.dtype)
        return self._move(t * (high - low) + low)

    def normal(
        self, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0, dtype: torch.dtype | None = None,
        image_axis: int = 0,
    ) -> torch.Tensor:
        """Normal ``N(mean, std^2)``."""
        t = torch.randn(shape, generator=self.generator, device=self.generator.device, dtype=dtype or self.dtype)
        return self._move(t * std + mean)

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        """Poisson counts with the given rates (drawn on the generator's device)."""
        t = torch.poisson(rate.to(self.generator.device), generator=self.generator)
        return self._move(t)

    def integers(self, shape: tuple[int, ...], low: int, high: int, image_axis: int = 0) -> torch.Tensor:
        """Integers uniform on ``[low, high)`` (numpy ``randint`` semantics), int64."""
        t = torch.randint(low, high, shape, generator=self.generator, device=self.generator.device)
        return self._move(t)


__all__ = ["Rng"]

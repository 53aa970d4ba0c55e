"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise, speckle_noise.

Per-severity constants from Hendrycks & Dietterich's CIFAR generator, ``ImageNet-C/create_c/make_cifar_c.py``
in github.com/hendrycks/robustness (not the larger ImageNet-C constants of ``make_imagenet_c.py`` that the
``imagecorruptions`` package uses).
"""

from __future__ import annotations

import torch

from ._ops import quantize_floor
from .registry import Rng, register_corruption

# make_cifar_c.py: gaussian_noise c = [0.04, 0.06, .08, .09, .10] (std in [0, 1] pixel units)
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
# make_cifar_c.py: shot_noise c = [500, 250, 100, 75, 50] (photons per unit intensity)
SHOT_NOISE_RATE = (500.0, 250.0, 100.0, 75.0, 50.0)
# make_cifar_c.py: impulse_noise c = [.01, .02, .03, .05, .07] (skimage 's&p' amount)
IMPULSE_NOISE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
# make_cifar_c.py: speckle_noise c = [.06, .1, .12, .16, .2]
SPECKLE_NOISE_STD = (0.06, 0.10, 0.12, 0.16, 0.20)


@register_corruption("gaussian_noise", "noise", random=True)
def gaussian_noise(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """``x + N(0, c^2)`` per pixel and channel, c = 0.04 .. 0.10."""
    c = GAUSSIAN_NOISE_STD[severity - 1]
    return quantize_floor(x + rng.normal(tuple(x.shape), std=c))


@register_corruption("shot_noise", "noise", random=True)
def shot_noise(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """``Poisson(x c) / c``, c = 500 .. 50 (variance ``x / c``)."""
    c = SHOT_NOISE_RATE[severity - 1]
    return quantize_floor(rng.poisson(x * c) / c)


@register_corruption("impulse_noise", "noise", random=True)
def impulse_noise(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Salt and pepper as ``skimage.util.random_noise(mode='s&p', amount=c)``: each value (pixel and channel
    independently) is replaced with probability c, by 1 or 0 with equal odds; c = 0.01 .. 0.07."""
    c = IMPULSE_NOISE_AMOUNT[severity - 1]
    flipped = rng.uniform(tuple(x.shape)) < c
    salted = rng.uniform(tuple(x.shape)) < 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    out = torch.where(flipped & ~salted, torch.zeros_like(x), out)
    return quantize_floor(out)


@register_corruption("speckle_noise", "noise", random=True)
def speckle_noise(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Multiplicative noise ``x + x N(0, c^2)``, c = 0.06 .. 0.20."""
    c = SPECKLE_NOISE_STD[severity - 1]
    return quantize_floor(x + x * rng.normal(tuple(x.shape), std=c))

"""Weather corruptions: snow, frost, fog (and spatter in :mod:`robustbench_nas.corruptions.spatter`).

Per-severity constants from ``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._ops import (
    apply_axis_matrices,
    clipped_zoom_matrix,
    motion_blur,
    quantize_floor,
    rgb_to_gray,
    to_uint8_levels,
)
from .registry import Rng, register_corruption

# make_cifar_c.py: snow c = (loc, scale, zoom, threshold, blur radius, blur sigma, blend) per severity
SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3.0, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4.0, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4.0, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6.0, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12.0, 0.8),
)
SNOW_ANGLE = (-135.0, -45.0)
# make_cifar_c.py: frost c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)] (image, frost weights)
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
# make_cifar_c.py: fog c = [(.2,3), (.5,3), (0.75,2.5), (1,2), (1.5,1.75)] (fog strength, plasma wibble decay)
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))

_ASSETS = Path(__file__).resolve().parent / "assets"
FROST_FILES = tuple(f"frost{i}_cifar.png" for i in range(1, 6))


@register_corruption("snow", "weather", random=True)
def snow(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Snow flakes: thresholded, zoomed Gaussian noise, motion-blurred along an angle in [-135, -45) degrees
    (ImageMagick kernel, 8-bit layer as the generator's PNG round trip), added twice (once rotated by 180
    degrees) to the image brightened towards its grey level."""
    loc, scale, zoom, thresh, radius, sigma, blend = SNOW[severity - 1]
    n, _, h, w = x.shape
    layer = rng.normal((n, 1, h, w), mean=loc, std=scale)
    angle = rng.uniform((n,), *SNOW_ANGLE, dtype=torch.float64)
    if zoom != 1.0:
        a_r = torch.as_tensor(clipped_zoom_matrix(h, zoom))
        a_c = torch.as_tensor(clipped_zoom_matrix(w, zoom))
        layer = apply_axis_matrices(layer, a_r, a_c)
    layer = torch.where(layer < thresh, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255.0) / 255.0  # PIL 'L' image via astype(np.uint8)
    layer = torch.round(motion_blur(layer, radius, sigma, angle).clamp(0, 1) * 255.0) / 255.0
    grey = rgb_to_gray(x)
    xb = blend * x + (1 - blend) * torch.maximum(x, grey * 1.5 + 0.5)
    return quantize_floor(xb + layer + torch.flip(layer, (2, 3)))


@lru_cache(maxsize=1)
def _frost_textures_uint8() -> tuple[np.ndarray, ...]:
    from PIL import Image

    out = []
    for name in FROST_FILES:
        path = _ASSETS / name
        if not path.is_file():
            raise FileNotFoundError(f"frost texture {path} is missing from the corruptions package")
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
    return tuple(out)


def frost_textures(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The five CIFAR-scale frost textures as one padded ``(5, 3, Hmax, Wmax)`` tensor of 0..255 levels, and their
    ``(5, 2)`` sizes. A texture smaller than ``(h + 1, w + 1)`` is enlarged (bilinear) by 1.1x the needed factor,
    as ``imagecorruptions`` does for large images; at CIFAR size all five are large enough."""
    texs = []
    for t in _frost_textures_uint8():
        tt = torch.as_tensor(t).permute(2, 0, 1).to(dtype)
        th, tw = tt.shape[-2:]
        if th < h + 1 or tw < w + 1:
            f = 1.1 * max((h + 1) / th, (w + 1) / tw)
            size = (int(np.ceil(th * f)), int(np.ceil(tw * f)))
            tt = F.interpolate(tt[None], size=size, mode="bilinear", align_corners=False)[0]
            tt = tt.round().clamp(0, 255)
        texs.append(tt)
    hmax = max(t.shape[1] for t in texs)
    wmax = max(t.shape[2] for t in texs)
    stack = torch.zeros(len(texs), 3, hmax, wmax, dtype=dtype)
    for i, t in enumerate(texs):
        stack[i, :, : t.shape[1], : t.shape[2]] = t
    sizes = torch.tensor([[t.shape[1], t.shape[2]] for t in texs])
    return stack.to(device), sizes.to(device)


@register_corruption("frost", "weather", random=True)
def frost(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """``clip(a x + b frost)`` with a random crop of one of five frost photographs (CIFAR scale, bundled)."""
    a, b = FROST[severity - 1]
    n, _, h, w = x.shape
    stack, sizes = frost_textures(h, w, x.device, x.dtype)
    idx = rng.integers((n,), 0, len(FROST_FILES))
    u = rng.uniform((n, 2), dtype=torch.float64)
    # randint(0, size - 32): uniform start in [0, size - h) rows and [0, size - w) columns.
    span = (sizes[idx] - torch.tensor([h, w], device=x.device)).to(torch.float64)
    start = torch.floor(u * span).long()
    rows = start[:, 0, None] + torch.arange(h, device=x.device)[None]
    cols = start[:, 1, None] + torch.arange(w, device=x.device)[None]
    crop = stack[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, h, w, 3)
    crop = crop.permute(0, 3, 1, 2)
    return quantize_floor((a * to_uint8_levels(x) + b * crop) / 255.0)


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, rng: Rng) -> torch.Tensor:
    """``(n, mapsize, mapsize)`` diamond-square height maps in [0, 1] (the generator's ``plasma_fractal``).

    Same recursion as make_cifar_c.py (after github.com/FLHerne/mapgen): squares then diamonds, wibble
    starting at 100 and divided by ``wibbledecay`` per level, noise ``wibble * U(-wibble, wibble)``; each map is
    shifted and scaled to [0, 1]. ``mapsize`` must be a power of two.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    m = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=rng.device)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(a: torch.Tensor) -> torch.Tensor:
        return a / 4 + wibble * rng.uniform(tuple(a.shape), -wibble, wibble, dtype=torch.float64)

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, 1)
        sq = sq + torch.roll(sq, -1, 2)
        m[:, half::step, half::step] = wibbled_mean(sq)
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        lt = dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2)
        m[:, 0::step, half::step] = wibbled_mean(lt)
        tt = dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1)
        m[:, half::step, 0::step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


@register_corruption("fog", "weather", random=True)
def fog(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Add ``c * plasma fractal`` (one map per image, on all channels) and rescale by ``max / (max + c)``.

    The map is ``next_pow2(max(H, W))`` wide, cropped to ``H x W`` (32 for CIFAR, as in the generator)."""
    strength, decay = FOG[severity - 1]
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    plasma = plasma_fractal(n, size, decay, rng)[:, None, :h, :w].to(x.dtype)
    max_val = x.amax((1, 2, 3), keepdim=True)
    y = x + strength * plasma
    return quantize_floor(y * max_val / (max_val + strength))

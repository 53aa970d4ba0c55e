"""Blur corruptions: defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur.

Per-severity constants from ``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness), the
generator of CIFAR-10-C / CIFAR-100-C. Sizes that the generator hard-codes for 32x32 images (the glass-blur
shuffle range) are taken from the actual image size here, so other sizes get the same per-pixel operation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ._ops import (
    apply_axis_matrices,
    clipped_zoom_matrix,
    correlate2d,
    gaussian_filter,
    motion_blur as _motion_blur,
    quantize_floor,
    quantize_round,
    scipy_gaussian_filter_float64,
    to_uint8_levels,
)
from .registry import Rng, register_corruption

# make_cifar_c.py: defocus_blur c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)] (radius, alias_blur)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
# make_cifar_c.py: glass_blur c = [(0.05,1,1), (0.25,1,1), (0.4,1,1), (0.25,1,2), (0.4,1,2)]
# (sigma, max_delta, iterations): x = uint8(gaussian(x, sigma) * 255); then c[2] passes over h = 32 - c[1] down to
# c[1] + 1 and, inside, w likewise, each drawing dx, dy = randint(-c[1], c[1]) (only -1 or 0) and running
# ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``; finally clip(gaussian(x / 255, sigma), 0, 1) * 255, stored as uint8.
# QUIRK reproduced on purpose: on an (H, W, 3) NumPy array x[h, w] is a view, so that line is not a swap but a
# copy x[h, w] <- x[h', w'] (x[h', w'] keeps its value; distinct pixel values get lost instead of moving). The
# published CIFAR-10-C / CIFAR-100-C files were made by that code, so the copy is what we compute.
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))
# make_cifar_c.py: motion_blur c = [(6,1), (6,1.5), (6,2), (8,2), (9,2.5)] (ImageMagick radius, sigma); angle U(-45, 45)
MOTION = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))
MOTION_ANGLE = (-45.0, 45.0)
# make_cifar_c.py: zoom_blur c = np.arange(1, 1.06, 0.01) ... np.arange(1, 1.26, 0.01); numpy's float arange decides
# the last factor (arange(1, 1.06, 0.01) includes 1.06 through rounding), so the same call is used here.
ZOOM_FACTORS = tuple(
    tuple(float(z) for z in np.arange(1, stop, 0.01)) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)
)
# make_cifar_c.py: gaussian_blur c = [.4, .6, 0.7, .8, 1] (sigma in pixels)
GAUSSIAN_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)


def _gaussian_taps_cv2(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` for sigma > 0."""
    t = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-(t * t) / (2 * sigma * sigma))
    return k / k.sum()


@lru_cache(maxsize=16)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The generator's ``disk``: an aliased disk on a 17x17 grid (or ``2r+1`` when r > 8), normalised, then
    ``cv2.GaussianBlur`` with a 3x3 (5x5 when r > 8) kernel and reflect-101 borders; cropped to its support."""
    if radius <= 8:
        grid = np.arange(-8, 9)
        ksize = 3
    else:
        grid = np.arange(-radius, radius + 1)
        ksize = 5
    xx, yy = np.meshgrid(grid, grid)
    d = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    d /= d.sum()
    g = _gaussian_taps_cv2(ksize, alias_blur)
    r = ksize // 2
    n = d.shape[0]
    idx = np.arange(-r, n + r)
    idx = np.where(idx < 0, -idx, idx)  # reflect-101
    idx = np.where(idx >= n, 2 * n - 2 - idx, idx)
    p = d[np.ix_(idx, idx)]
    rows = sum(g[i] * p[i : i + n, :] for i in range(ksize))
    k = sum(g[j] * rows[:, j : j + n] for j in range(ksize))
    # Drop the all-zero margin: taps of weight 0 do not change a correlation (the centre stays the centre).
    nz = np.nonzero(k)
    half = int(max(np.abs(nz[0] - n // 2).max(), np.abs(nz[1] - n // 2).max()))
    c = n // 2
    return k[c - half : c + half + 1, c - half : c + half + 1]


@register_corruption("defocus_blur", "blur", random=False)
def defocus_blur(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Convolution with an anti-aliased disk (radius 0.3 .. 1.5 px), reflect-101 borders (cv2.filter2D)."""
    radius, alias = DEFOCUS[severity - 1]
    return quantize_floor(correlate2d(x, disk_kernel(radius, alias), "mirror"))


def _glass_source_index(
    n: int, h: int, w: int, delta: int, iterations: int, rng: Rng, device: torch.device
) -> torch.Tensor:
    """Flat source index ``(n, h*w)``: output pixel ``p`` of image ``i`` is input pixel ``src[i, p]``.

    What the generator computes, not what it meant. Per pass, rows ``h-delta .. delta+1`` and columns
    ``w-delta .. delta+1`` (both descending), pixel ``(r, c)`` meets ``(r + dy, c + dx)``, ``dx, dy =
    randint(-delta, delta)`` (exclusive upper bound: with delta = 1 the partner is only ever up/left/up-left/itself).
    The "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` runs on an (H, W, 3) array, so both right-hand
    values are *views*; the first assignment overwrites ``x[h, w]`` and the second writes that new value back into
    ``x[h', w']``: the partner's pixel is **copied** into ``(r, c)`` and the partner keeps its own (see GLASS).

    With delta = 1 every partner's flat index is <= the pixel's own and a pass visits pixels in descending flat
    order, so no partner has been written earlier in the same pass: a pass is one gather from the pass's input,
    vectorised over pixels and images. Larger deltas (not used by the CIFAR constants) run the copies in order.
    """
    rows = torch.arange(h - delta, delta, -1, device=device)
    cols = torch.arange(w - delta, delta, -1, device=device)
    src = torch.arange(h * w, device=device).unsqueeze(0).repeat(n, 1)
    if len(rows) == 0 or len(cols) == 0:
        return src
    # One draw per (pass, row, col): (dx, dy) as in the generator's randint(..., size=(2,)), for every image.
    d = rng.integers((iterations, len(rows), len(cols), 2, n), -delta, delta, image_axis=4).to(device)
    pos = (rows.view(-1, 1) * w + cols.view(1, -1)).reshape(-1)  # visiting order, (R*C,)
    offset = (d[..., 1, :] * w + d[..., 0, :]).reshape(iterations, -1, n).permute(0, 2, 1)  # (it, n, R*C)
    for it in range(iterations):
        partner = pos.unsqueeze(0) + offset[it]  # (n, R*C)
        if delta == 1:
            new = src.clone()
            new[:, pos] = src.gather(1, partner)
            src = new
        else:
            ar = torch.arange(n, device=device)
            for k in range(pos.numel()):
                src[:, pos[k]] = src[ar, partner[:, k]]
    return src


@register_corruption("glass_blur", "blur", random=True)
def glass_blur(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Gaussian blur, 8-bit truncation, local pixel copies (1-2 passes, the generator's "swap"), Gaussian blur again."""
    sigma, delta, iterations = GLASS[severity - 1]
    n, c, h, w = x.shape
    # As the generator: uint8 / 255.0 and both blurs in float64 with SciPy's summation order, each truncated
    # to 8 bits (np.uint8) without a margin, so flat regions land on the same side of a level as there.
    y = scipy_gaussian_filter_float64(_float64_levels(x), sigma)
    y = torch.floor(y * 255.0) / 255.0
    src = _glass_source_index(n, h, w, delta, iterations, rng, x.device)
    y = y.reshape(n, c, h * w).gather(2, src.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)
    y = scipy_gaussian_filter_float64(y, sigma)
    return (torch.floor(y.clamp(0.0, 1.0) * 255.0) / 255.0).to(x.dtype)


def _float64_levels(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float64; values within 1e-3 of an 8-bit level (float32 ``k / 255`` is within 1e-5) become that
    level's ``k / 255.0`` exactly (what the generator's ``uint8 / 255.0`` holds), others are kept as they are."""
    xd = x.to(torch.float64)
    k = torch.round(xd * 255.0)
    return torch.where((xd * 255.0 - k).abs() < 1e-3, k / 255.0, xd)


@register_corruption("motion_blur", "blur", random=True)
def motion_blur(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """ImageMagick motion blur (radius 6 .. 9, sigma 1 .. 2.5) along a random angle in [-45, 45) degrees.

    The generator blurs the 8-bit image with Wand/ImageMagick and stores the rounded 8-bit result; this is the
    same one-sided Gaussian line kernel (see :func:`robustbench_nas.corruptions._ops.motion_blur`).
    """
    radius, sigma = MOTION[severity - 1]
    angle = rng.uniform((x.shape[0],), *MOTION_ANGLE, dtype=torch.float64)
    levels = to_uint8_levels(x) / 255.0
    return quantize_round(_motion_blur(levels, radius, sigma, angle))


@register_corruption("zoom_blur", "blur", random=False)
def zoom_blur(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Mean of the image and its centre zooms by ``1, 1.01, ..`` up to 1.06 .. 1.26 (bilinear, scipy ``zoom``)."""
    factors = ZOOM_FACTORS[severity - 1]
    h, w = x.shape[-2:]
    out = x.clone()
    for z in factors:
        a_r = torch.as_tensor(clipped_zoom_matrix(h, z))
        a_c = torch.as_tensor(clipped_zoom_matrix(w, z))
        out += apply_axis_matrices(x, a_r, a_c)
    return quantize_floor(out / (len(factors) + 1))


@register_corruption("gaussian_blur", "blur", random=False)
def gaussian_blur(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """``skimage.filters.gaussian`` with sigma 0.4 .. 1 px (truncate 4, edge-replicated borders)."""
    return quantize_floor(gaussian_filter(x, GAUSSIAN_BLUR_SIGMA[severity - 1]))

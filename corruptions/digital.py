"""Digital corruptions: brightness, contrast, saturate, pixelate, jpeg_compression, elastic_transform.

Per-severity constants from ``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness).
``elastic_transform`` scales its constants with the image size there (``IMSIZE = 32``); here they scale with
the actual size (``min(H, W)``), which equals the generator at 32x32.
"""

from __future__ import annotations

import torch

from ._ops import (
    gaussian_filter,
    hsv_to_rgb,
    opencv_affine_inverse,
    opencv_warp_affine_reflect101,
    pil_resize_box,
    quantize_floor,
    rgb_to_hsv,
    scipy_map_coordinates_linear_reflect,
    to_uint8_levels,
)
from .jpeg import jpeg_roundtrip
from .registry import Rng, register_corruption

# make_cifar_c.py: brightness c = [.05, .1, .15, .2, .3] (added to HSV value)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
# make_cifar_c.py: contrast c = [.75, .5, .4, .3, 0.15] (factor around the per-channel mean)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
# make_cifar_c.py: saturate c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)] (HSV s -> s*a + b)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))
# make_cifar_c.py: pixelate c = [0.95, 0.9, 0.85, 0.75, 0.65] (PIL BOX down to int(32 c), then BOX back up)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
# make_cifar_c.py: jpeg_compression c = [80, 65, 58, 50, 40] (PIL quality)
JPEG_QUALITY = (80, 65, 58, 50, 40)
# make_cifar_c.py: elastic_transform, IMSIZE = 32: c = [(IMSIZE*0, IMSIZE*0, IMSIZE*0.08), (IMSIZE*0.05,
# IMSIZE*0.2, IMSIZE*0.07), (IMSIZE*0.08, IMSIZE*0.06, IMSIZE*0.06), (IMSIZE*0.1, IMSIZE*0.04, IMSIZE*0.05),
# (IMSIZE*0.1, IMSIZE*0.03, IMSIZE*0.03)]: (alpha, sigma, affine jitter), as fractions of the image size.
ELASTIC = ((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))


@register_corruption("brightness", "digital", random=False)
def brightness(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """HSV value ``v -> clip(v + c)``, c = 0.05 .. 0.3 (skimage rgb2hsv / hsv2rgb)."""
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(1)
    v = (v + BRIGHTNESS[severity - 1]).clamp(0, 1)
    return quantize_floor(hsv_to_rgb(torch.stack([h, s, v], 1)))


@register_corruption("contrast", "digital", random=False)
def contrast(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """``(x - m) c + m`` with m the per-image, per-channel mean; c = 0.75 .. 0.15."""
    m = x.mean((2, 3), keepdim=True)
    return quantize_floor((x - m) * CONTRAST[severity - 1] + m)


@register_corruption("saturate", "digital", random=False)
def saturate(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """HSV saturation ``s -> clip(s a + b)`` (severities 1-2 desaturate, 3-5 oversaturate)."""
    a, b = SATURATE[severity - 1]
    h, s, v = rgb_to_hsv(x).unbind(1)
    s = (s * a + b).clamp(0, 1)
    return quantize_floor(hsv_to_rgb(torch.stack([h, s, v], 1)))


@register_corruption("pixelate", "digital", random=False)
def pixelate(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Pillow BOX resize to ``int(size c)`` and back, c = 0.95 .. 0.65, on the 8-bit image."""
    c = PIXELATE[severity - 1]
    h, w = x.shape[-2:]
    levels = to_uint8_levels(x)
    small = pil_resize_box(levels, (max(int(h * c), 1), max(int(w * c), 1)))
    return pil_resize_box(small, (h, w)) / 255.0


@register_corruption("jpeg_compression", "digital", random=False)
def jpeg_compression(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """JPEG at Pillow quality 80 .. 40 (4:2:0), encoded and decoded (see :mod:`robustbench_nas.corruptions.jpeg`)."""
    return jpeg_roundtrip(to_uint8_levels(x), JPEG_QUALITY[severity - 1]) / 255.0


def _affine_inverse(h: int, w: int, jitter: torch.Tensor) -> torch.Tensor:
    """``invertAffineTransform(getAffineTransform(pts1, pts2))`` as the generator builds it: ``(N, 2, 3)`` float64.

    ``pts1`` are the generator's three points around the centre (``center +- min(H, W) // 3``, as (x, y));
    ``pts2 = pts1 + jitter.astype(float32)`` is a float32 sum; getAffineTransform solves the 6x6 system in
    float64; warpAffine inverts the result (``invertAffineTransform``) and samples the source there.
    """
    n = jitter.shape[0]
    dev = jitter.device
    cy, cx = float(h // 2), float(w // 2)  # center_square = float32(shape_size) // 2 -> (H//2, W//2)
    s = float(min(h, w) // 3)
    # pts1 = [center + s, [center[0] + s, center[1] - s], center - s]; each row is (x, y) for cv2.
    p1 = torch.tensor([[cy + s, cx + s], [cy + s, cx - s], [cy - s, cx - s]], dtype=torch.float32, device=dev)
    p1 = p1.expand(n, 3, 2)
    p2 = (p1 + jitter.to(torch.float32)).double()
    ones = torch.ones(n, 3, 1, dtype=torch.float64, device=dev)
    # Forward map src -> dst: solve [pts1, 1] @ A = pts2 for the 3x2 matrix A; M = A^T.
    fwd = torch.linalg.solve(torch.cat([p1.double(), ones], 2), p2).transpose(1, 2)
    return opencv_affine_inverse(fwd)


@register_corruption("elastic_transform", "digital", random=True)
def elastic_transform(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Random affine jitter of three control points (reflect-101 borders), then a smooth random displacement
    field (uniform noise, Gaussian sigma, truncate 3, times alpha; bilinear, reflect borders).

    As the generator computes it: the affine warp is OpenCV's float32 ``warpAffine`` arithmetic
    (:func:`~corruptions._ops.opencv_warp_affine_reflect101`), the displacement fields are float64 Gaussians
    of float64 uniforms cast to float32, the displaced sampling is SciPy's float64 ``map_coordinates`` rounded
    to float32, and ``np.uint8(np.clip(v, 0, 1) * 255)`` truncates the float32 result without a margin.
    """
    n, c, h, w = x.shape
    size = min(h, w)
    alpha, sigma, jit = (f * size for f in ELASTIC[severity - 1])
    jitter = rng.uniform((n, 3, 2), -jit, jit, dtype=torch.float64)
    y = opencv_warp_affine_reflect101(x.to(torch.float32), _affine_inverse(h, w, jitter))
    # The generator draws dx (added to columns) first, then dy (added to rows).
    ux = rng.uniform((n, 1, h, w), -1.0, 1.0, dtype=torch.float64)
    uy = rng.uniform((n, 1, h, w), -1.0, 1.0, dtype=torch.float64)
    dx = (gaussian_filter(ux, sigma, mode="reflect", truncate=3.0) * alpha).to(torch.float32).squeeze(1)
    dy = (gaussian_filter(uy, sigma, mode="reflect", truncate=3.0) * alpha).to(torch.float32).squeeze(1)
    base_r = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1)
    base_c = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w)
    out = scipy_map_coordinates_linear_reflect(y, base_r + dy.double(), base_c + dx.double())
    # np.clip(float32, 0, 1) * 255 stays float32; np.uint8 truncates.
    return torch.floor(out.clamp(0.0, 1.0) * 255.0).div_(255.0).to(x.dtype)

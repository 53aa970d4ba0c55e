"""Baseline JPEG encode + decode of image batches with torch ops (libjpeg's default pipeline, as Pillow uses it).

``Image.save(f, "JPEG", quality=q)`` then ``Image.open(f)`` in Pillow runs libjpeg(-turbo) with: JFIF RGB->YCbCr,
4:2:0 chroma subsampling (2x2 average with alternating rounding bias 1, 2), 8x8 DCT, the IJG quality-scaled
Annex K tables, rounding quantisation; decoding by dequantisation, inverse DCT, "fancy" (triangle) chroma
upsampling and YCbCr->RGB. This module runs the same steps batched on any device. libjpeg computes the DCTs in
fixed point (``JDCT_ISLOW``); the float DCT here can move a coefficient across a rounding boundary, so a few
pixels differ from Pillow by more than one level (measured in tests/test_corruptions_reference.py).

Images whose sides are not multiples of 16 are padded by edge replication to whole MCUs before coding and
cropped after (libjpeg pads partial blocks the same way; it fills whole dummy blocks differently, which only
changes pixels outside the image).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), the IJG defaults.
_LUMA_Q = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
)
_CHROMA_Q = np.full((8, 8), 99, dtype=np.int64)
_CHROMA_Q[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


@lru_cache(maxsize=128)
def quant_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """IJG ``jpeg_set_quality``: scale ``5000/q`` below 50 else ``200 - 2q``; ``(t*scale + 50) // 100`` in 1..255."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    out = []
    for base in (_LUMA_Q, _CHROMA_Q):
        t = (base * scale + 50) // 100
        out.append(np.clip(t, 1, 255).astype(np.float64))
    return out[0], out[1]


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II; ``D B D^T`` is JPEG's ``F(u, v)`` (with its 1/4 C(u) C(v) factor)."""
    d = np.zeros((8, 8))
    for u in range(8):
        cu = math.sqrt(0.5) if u == 0 else 1.0
        for x in range(8):
            d[u, x] = 0.5 * cu * math.cos((2 * x + 1) * u * math.pi / 16)
    return d


def _blocks(p: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` -> ``(N, H/8, W/8, 8, 8)``."""
    n, h, w = p.shape
    return p.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _unblocks(b: torch.Tensor) -> torch.Tensor:
    n, bh, bw = b.shape[:3]
    return b.permute(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _code_plane(p: torch.Tensor, q: np.ndarray) -> torch.Tensor:
    """DCT, quantise (round half away from zero), dequantise, inverse DCT, descale; 8-bit samples in/out."""
    d = torch.as_tensor(_dct_matrix(), dtype=p.dtype, device=p.device)
    qt = torch.as_tensor(q, dtype=p.dtype, device=p.device)
    b = _blocks(p - 128.0)
    coef = d @ b @ d.T
    z = coef / qt
    z = torch.sign(z) * torch.floor(z.abs() + 0.5)
    rec = d.T @ (z * qt) @ d
    return torch.round(_unblocks(rec) + 128.0).clamp_(0, 255)


def _downsample_h2v2(p: torch.Tensor) -> torch.Tensor:
    """libjpeg ``h2v2_downsample``: ``(sum of 2x2 + bias) >> 2`` with bias 1, 2, 1, 2 along each output row."""
    n, h, w = p.shape
    s = p.reshape(n, h // 2, 2, w // 2, 2).sum((2, 4))
    bias = torch.ones(w // 2, dtype=p.dtype, device=p.device)
    bias[1::2] = 2.0
    return torch.floor((s + bias) / 4.0)


def _upsample_h2v2_fancy(p: torch.Tensor) -> torch.Tensor:
    """libjpeg ``h2v2_fancy_upsample``: triangle filter, ``(3 near + far)`` per axis, edges replicated; the
    horizontal step rounds with bias 8 on even and 7 on odd output columns, ``>> 4``."""
    n, h, w = p.shape
    up = torch.cat([p[:, :1], p[:, :-1]], 1)
    down = torch.cat([p[:, 1:], p[:, -1:]], 1)
    rows = torch.stack([3 * p + up, 3 * p + down], 2).reshape(n, 2 * h, w)  # column sums, x4 scale
    left = torch.cat([rows[:, :, :1], rows[:, :, :-1]], 2)
    right = torch.cat([rows[:, :, 1:], rows[:, :, -1:]], 2)
    even = torch.floor((3 * rows + left + 8) / 16.0)
    odd = torch.floor((3 * rows + right + 7) / 16.0)
    return torch.stack([even, odd], 3).reshape(n, 2 * h, 2 * w)


def jpeg_roundtrip(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode RGB ``levels`` ``(N, 3, H, W)`` (floats holding 0..255) at ``quality``; same shape.

    Example:
        >>> y = jpeg_roundtrip(torch.randint(0, 256, (4, 3, 32, 32)).double(), 75)
    """
    if levels.ndim != 4 or levels.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) RGB levels, got shape {tuple(levels.shape)}")
    n, _, h, w = levels.shape
    x = levels.to(torch.float64)  # fixed-point-like accuracy for the rounding steps
    ph, pw = (-h) % 16, (-w) % 16
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    r, g, b = x.unbind(1)
    # jccolor.c: Y rounds half up; Cb, Cr add 128 and round with ONE_HALF - 1 (round half down).
    y = torch.floor(0.29900 * r + 0.58700 * g + 0.11400 * b + 0.5)
    cb = torch.ceil(-0.16874 * r - 0.33126 * g + 0.5 * b + 128.0 - 0.5)
    cr = torch.ceil(0.5 * r - 0.41869 * g - 0.08131 * b + 128.0 - 0.5)
    lq, cq = quant_tables(int(quality))
    y = _code_plane(y, lq)
    cb = _upsample_h2v2_fancy(_code_plane(_downsample_h2v2(cb), cq))
    cr = _upsample_h2v2_fancy(_code_plane(_downsample_h2v2(cr), cq))
    # jdcolor.c
    rr = y + 1.40200 * (cr - 128.0)
    gg = y - 0.34414 * (cb - 128.0) - 0.71414 * (cr - 128.0)
    bb = y + 1.77200 * (cb - 128.0)
    out = torch.round(torch.stack([rr, gg, bb], 1)).clamp_(0, 255)
    return out[:, :, :h, :w].to(levels.dtype)

"""Baseline JPEG encode + decode of image batches with torch ops (libjpeg's default pipeline, as Pillow uses it).

``Image.save(f, "JPEG", quality=q)`` then ``Image.open(f)`` in Pillow runs libjpeg(-turbo) with: JFIF RGB->YCbCr,
4:2:0 chroma subsampling (2x2 average with alternating rounding bias 1, 2), 8x8 DCT, the IJG quality-scaled
Annex K tables, rounding quantisation; decoding by dequantisation, inverse DCT, "fancy" (triangle) chroma
upsampling and YCbCr->RGB. This module runs the same steps batched on any device, in libjpeg's integer
arithmetic (fixed-point colour conversion, the ``JDCT_ISLOW`` forward and inverse DCTs of jfdctint.c /
jidctint.c), so the output matches Pillow bit for bit wherever libjpeg-turbo's SIMD paths agree with its C
code (measured in tests/test_corruptions_reference.py). Integer arithmetic matters: images that were JPEG
compressed before (e.g. a CIFAR copy decoded from JPEG) put many coefficients exactly on rounding ties, where a
float DCT picks the other side.

Images whose sides are not multiples of 16 are padded as libjpeg pads them (see :func:`jpeg_roundtrip`); the
dummy blocks libjpeg adds to complete an MCU are never visible and are not coded here.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

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
        out.append(np.clip(t, 1, 255).astype(np.int64))
    return out[0], out[1]


# libjpeg's ISLOW DCT (Loeffler-Ligtenberg-Moschytz butterflies, jfdctint.c / jidctint.c): 13-bit fixed-point
# constants FIX(c) = round(c * 2^13), two extra bits of precision between the passes.
_CONST_BITS, _PASS1_BITS = 13, 2
_F0298, _F0390, _F0541, _F0765 = 2446, 3196, 4433, 6270
_F0899, _F1175, _F1501, _F1847 = 7373, 9633, 12299, 15137
_F1961, _F2053, _F2562, _F3072 = 16069, 16819, 20995, 25172


def _descale(x: torch.Tensor, n: int) -> torch.Tensor:
    """libjpeg ``DESCALE``: divide by ``2^n`` rounding half up (arithmetic shift)."""
    return (x + (1 << (n - 1))) >> n


def _fdct_1d(v: list[torch.Tensor], first_pass: bool) -> list[torch.Tensor]:
    """One pass of ``jpeg_fdct_islow`` on 8 integer tensors (one per sample position)."""
    t0, t7 = v[0] + v[7], v[0] - v[7]
    t1, t6 = v[1] + v[6], v[1] - v[6]
    t2, t5 = v[2] + v[5], v[2] - v[5]
    t3, t4 = v[3] + v[4], v[3] - v[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    out: list[torch.Tensor] = [t0] * 8
    bits = _CONST_BITS - _PASS1_BITS if first_pass else _CONST_BITS + _PASS1_BITS
    if first_pass:
        out[0], out[4] = (t10 + t11) << _PASS1_BITS, (t10 - t11) << _PASS1_BITS
    else:
        out[0], out[4] = _descale(t10 + t11, _PASS1_BITS), _descale(t10 - t11, _PASS1_BITS)
    z1 = (t12 + t13) * _F0541
    out[2] = _descale(z1 + t13 * _F0765, bits)
    out[6] = _descale(z1 - t12 * _F1847, bits)
    z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    out[7] = _descale(t4 * _F0298 + z1 + z3, bits)
    out[5] = _descale(t5 * _F2053 + z2 + z4, bits)
    out[3] = _descale(t6 * _F3072 + z2 + z3, bits)
    out[1] = _descale(t7 * _F1501 + z1 + z4, bits)
    return out


def _idct_1d(c: list[torch.Tensor], first_pass: bool) -> list[torch.Tensor]:
    """One pass of ``jpeg_idct_islow`` (its all-zero shortcuts give the same numbers and are not needed)."""
    z2, z3 = c[2], c[6]
    z1 = (z2 + z3) * _F0541
    tmp2, tmp3 = z1 - z3 * _F1847, z1 + z2 * _F0765
    tmp0, tmp1 = (c[0] + c[4]) << _CONST_BITS, (c[0] - c[4]) << _CONST_BITS
    t10, t13, t11, t12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = c[7], c[5], c[3], c[1]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * _F1175
    o0, o1, o2, o3 = o0 * _F0298, o1 * _F2053, o2 * _F3072, o3 * _F1501
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    o0, o1, o2, o3 = o0 + z1 + z3, o1 + z2 + z4, o2 + z2 + z3, o3 + z1 + z4
    bits = _CONST_BITS - _PASS1_BITS if first_pass else _CONST_BITS + _PASS1_BITS + 3
    return [
        _descale(t10 + o3, bits), _descale(t11 + o2, bits), _descale(t12 + o1, bits), _descale(t13 + o0, bits),
        _descale(t13 - o0, bits), _descale(t12 - o1, bits), _descale(t11 - o2, bits), _descale(t10 - o3, bits),
    ]


def _along(b: torch.Tensor, dim: int, fn, first_pass: bool) -> torch.Tensor:
    return torch.stack(fn(list(b.unbind(dim)), first_pass), dim)


def _blocks(p: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` -> ``(N, H/8, W/8, 8, 8)``."""
    n, h, w = p.shape
    return p.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _unblocks(b: torch.Tensor) -> torch.Tensor:
    n, bh, bw = b.shape[:3]
    return b.permute(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _code_plane(p: torch.Tensor, q: np.ndarray) -> torch.Tensor:
    """ISLOW forward DCT, quantisation (round half away from zero, as jcdctmgr.c), dequantisation, ISLOW inverse
    DCT with range limiting; integer samples 0..255 in and out (int32: libjpeg sizes every intermediate for 32 bits)."""
    qt = torch.as_tensor(q, dtype=p.dtype, device=p.device)
    b = _blocks(p - 128)
    coef = _along(_along(b, -1, _fdct_1d, True), -2, _fdct_1d, False)  # rows, then columns; scaled by 8
    div = qt * 8
    z = torch.sign(coef) * ((coef.abs() + (div >> 1)) // div)
    rec = _along(_along(z * qt, -2, _idct_1d, True), -1, _idct_1d, False)  # columns, then rows
    return (_unblocks(rec) + 128).clamp_(0, 255)


def _downsample_h2v2(p: torch.Tensor) -> torch.Tensor:
    """libjpeg ``h2v2_downsample``: ``(sum of 2x2 + bias) >> 2`` with bias 1, 2, 1, 2 along each output row."""
    n, h, w = p.shape
    s = p.reshape(n, h // 2, 2, w // 2, 2).sum((2, 4))
    bias = torch.ones(w // 2, dtype=p.dtype, device=p.device)
    bias[1::2] = 2
    return (s + bias) >> 2


def _upsample_h2v2_fancy(p: torch.Tensor) -> torch.Tensor:
    """libjpeg ``h2v2_fancy_upsample``: triangle filter, ``(3 near + far)`` per axis, edges replicated; the
    horizontal step rounds with bias 8 on even and 7 on odd output columns, ``>> 4``."""
    n, h, w = p.shape
    up = torch.cat([p[:, :1], p[:, :-1]], 1)
    down = torch.cat([p[:, 1:], p[:, -1:]], 1)
    rows = torch.stack([3 * p + up, 3 * p + down], 2).reshape(n, 2 * h, w)  # column sums, x4 scale
    left = torch.cat([rows[:, :, :1], rows[:, :, :-1]], 2)
    right = torch.cat([rows[:, :, 1:], rows[:, :, -1:]], 2)
    even = (3 * rows + left + 8) >> 4
    odd = (3 * rows + right + 7) >> 4
    return torch.stack([even, odd], 3).reshape(n, 2 * h, 2 * w)


def _fix(c: float) -> int:
    """libjpeg ``FIX(c)`` with ``SCALEBITS = 16``."""
    return int(c * 65536 + 0.5)


_ONE_HALF = 1 << 15
_CBCR_OFFSET = 128 << 16


def _rgb_to_ycc(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """jccolor.c ``rgb_ycc_convert`` (16-bit fixed point; Y rounds half up, Cb/Cr round half down)."""
    y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _ONE_HALF) >> 16
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> 16
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> 16
    return y, cb, cr


def _ycc_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """jdcolor.c ``ycc_rgb_convert`` (16-bit fixed point tables), range-limited to 0..255."""
    cbx, crx = cb - 128, cr - 128
    r = y + ((_fix(1.402) * crx + _ONE_HALF) >> 16)
    b = y + ((_fix(1.772) * cbx + _ONE_HALF) >> 16)
    g = y + ((-_fix(0.34414) * cbx + _ONE_HALF - _fix(0.71414) * crx) >> 16)
    return torch.stack([r, g, b], 1).clamp_(0, 255)


def jpeg_roundtrip(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode RGB ``levels`` ``(N, 3, H, W)`` (floats holding 0..255) at ``quality``; same shape/dtype.

    Example:
        >>> y = jpeg_roundtrip(torch.randint(0, 256, (4, 3, 32, 32)).float(), 75)
    """
    if levels.ndim != 4 or levels.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) RGB levels, got shape {tuple(levels.shape)}")
    n, _, h, w = levels.shape
    # libjpeg's edge padding (jcprepct.c / jcsample.c): luma is padded to whole 8x8 blocks by replicating its
    # last row/column; for 4:2:0 chroma the full-resolution image is replicated to an even height and to twice
    # the chroma blocks' width, downsampled, then the last chroma row is replicated to whole blocks. The decoder
    # upsamples only the real chroma samples (ceil(H/2) x ceil(W/2)), replicating their edges.
    h2, w2 = -(-h // 2), -(-w // 2)
    yh, yw = 8 * -(-h // 8), 8 * -(-w // 8)
    ch, cw = 8 * -(-h2 // 8), 8 * -(-w2 // 8)
    hp, wp = max(yh, 2 * h2), max(yw, 2 * cw)
    x = torch.round(levels).to(torch.int32)
    if (hp, wp) != (h, w):
        rows = torch.arange(hp, device=x.device).clamp(max=h - 1)
        cols = torch.arange(wp, device=x.device).clamp(max=w - 1)
        x = x.index_select(2, rows).index_select(3, cols)
    y, cb, cr = _rgb_to_ycc(*x.unbind(1))
    lq, cq = quant_tables(int(quality))
    y = _code_plane(y[:, :yh, :yw], lq)[:, :h, :w]
    planes = []
    for c in (cb, cr):
        c = _downsample_h2v2(c[:, : 2 * h2, : 2 * cw])  # (n, h2, cw)
        c = c.index_select(1, torch.arange(ch, device=c.device).clamp(max=h2 - 1))
        c = _code_plane(c, cq)[:, :h2, :w2]
        planes.append(_upsample_h2v2_fancy(c)[:, :h, :w])
    return _ycc_to_rgb(y, *planes).to(levels.dtype)

"""Tensor building blocks shared by the corruptions: quantisation, border modes, filters, resampling, HSV.

Every function works on batches ``(N, C, H, W)`` on any device. The border modes and filter definitions follow
the libraries the CIFAR-10-C generator used (scipy.ndimage / scikit-image, OpenCV, Pillow), because those choices
decide the pixels near the image border; each function names the library behaviour it reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial

import numpy as np
import torch

# A value that is an exact 8-bit level ``k/255`` can land a few float32 ulps below ``k`` after ``x * 255``; the
# margin keeps such values on level ``k`` (float32 error of ``x * 255`` is about 1.5e-5, far below the margin).
_FLOOR_MARGIN = 1e-4

BORDER_MODES = ("nearest", "reflect", "mirror", "wrap")


@contextmanager
def full_precision_matmul() -> Iterator[None]:
    """Run float32 matrix products in full precision even if the caller allowed TF32 / bf16 (``'high'``/``'medium'``
    matmul precision): the filters here are dense matrix products and a 1e-3 relative error would move many
    pixels across an 8-bit rounding boundary."""
    from robustbench_nas.utils.precision import saved_precision

    if torch.get_float32_matmul_precision() == "highest":
        yield
        return
    with saved_precision():  # every flag back as it was (set_float32_matmul_precision(prev) would rewrite the
        torch.set_float32_matmul_precision("highest")  # per-backend matmul flags too)
        yield


def quantize_floor(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and truncate to 8-bit levels, as ``np.uint8(np.clip(v, 0, 1) * 255)`` stores the files.

    The CIFAR-10-C generator ends every float corruption with ``np.uint8(...)``, which truncates (it does not
    round), so the stored images are on average half a level darker than the float result.
    """
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + _FLOOR_MARGIN).div_(255.0)


def quantize_round(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 8-bit levels (what PIL / ImageMagick write for their 8-bit outputs)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0).div_(255.0)


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Integer levels ``round(x * 255)`` in [0, 255] as the same float dtype (for codecs that work on bytes)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0)


def extend_index(idx: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Map (possibly out-of-range) integer indices into ``[0, n)`` by a border rule.

    Arguments:
        idx: integer tensor of indices.
        n: axis length.
        mode: ``"nearest"`` (edge replicate: ``a a | a b c``; scipy 'nearest', cv2 BORDER_REPLICATE),
            ``"reflect"`` (half-sample symmetric: ``b a | a b c``; scipy/skimage 'reflect'),
            ``"mirror"`` (whole-sample symmetric: ``c b | a b c``; scipy 'mirror', cv2 BORDER_REFLECT_101),
            ``"wrap"`` (periodic).
    """
    if mode == "nearest":
        return idx.clamp(0, n - 1)
    if mode == "reflect":
        j = torch.remainder(idx, 2 * n)
        return torch.where(j >= n, 2 * n - 1 - j, j)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(idx)
        j = torch.remainder(idx, 2 * n - 2)
        return torch.where(j >= n, 2 * n - 2 - j, j)
    if mode == "wrap":
        return torch.remainder(idx, n)
    raise ValueError(f"unknown border mode {mode!r}; expected one of {BORDER_MODES}")


def pad_axis(x: torch.Tensor, dim: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Pad ``x`` along ``dim`` by ``before``/``after`` samples using :func:`extend_index` border rules."""
    n = x.shape[dim]
    idx = torch.arange(-before, n + after, device=x.device)
    return x.index_select(dim, extend_index(idx, n, mode))


@lru_cache(maxsize=512)
def _axis_filter_matrix(n: int, taps: tuple[float, ...], mode: str) -> np.ndarray:
    """``(n, n)`` matrix of a centred 1-D correlation with ``taps`` along an axis of length ``n``, the border rule
    ``mode`` folded in (output ``o`` reads input ``extend(o + t - r)`` with weight ``taps[t]``)."""
    r = len(taps) // 2
    m = np.zeros((n, n), dtype=np.float64)
    out = np.arange(n)
    for t, w in enumerate(taps):
        src = extend_index(torch.as_tensor(out + t - r), n, mode).numpy()
        np.add.at(m, (out, src), w)
    return m


def _matrix(n: int, taps: np.ndarray | None, mode: str, like: torch.Tensor) -> torch.Tensor | None:
    if taps is None or len(taps) <= 1 and float(taps[0]) == 1.0:
        return None
    key = tuple(float(t) for t in np.asarray(taps, dtype=np.float64).ravel())
    return torch.as_tensor(_axis_filter_matrix(n, key, mode), dtype=like.dtype, device=like.device)


def correlate_separable(
    x: torch.Tensor, k_rows: np.ndarray | None, k_cols: np.ndarray | None, mode: str
) -> torch.Tensor:
    """Correlate every channel of ``x`` ``(N, C, H, W)`` with odd 1-D kernels along H and W (centred taps).

    A ``None`` kernel skips that axis. Borders follow ``mode`` (see :func:`extend_index`). Each axis is applied
    as one dense ``(n, n)`` matrix with the border folded in: a single large matrix product, far faster on CPU
    than a one-channel convolution and exact up to float rounding.
    """
    h, w = x.shape[-2:]
    a_r = _matrix(h, k_rows, mode, x)
    a_c = _matrix(w, k_cols, mode, x)
    y = x
    with full_precision_matmul():
        if a_c is not None:
            y = y @ a_c.T
        if a_r is not None:
            y = (y.transpose(-1, -2) @ a_r.T).transpose(-1, -2)
    return y.contiguous() if y is not x else x.clone()


def correlate2d(x: torch.Tensor, kernel: np.ndarray, mode: str) -> torch.Tensor:
    """Correlate every channel of ``x`` with one odd-sized 2-D kernel (cv2.filter2D with a centred anchor).

    The kernel is split into rank-1 terms by SVD (``K = sum_i s_i u_i v_i^T``, exact up to float rounding) and
    each term is applied as a separable filter.
    """
    k = np.asarray(kernel, dtype=np.float64)
    u, sv, vt = np.linalg.svd(k)
    out = None
    for i in range(len(sv)):
        if sv[i] <= 1e-13 * sv[0]:
            break
        term = correlate_separable(x, u[:, i] * sv[i], vt[i], mode)
        out = term if out is None else out + term
    return out if out is not None else torch.zeros_like(x)


@lru_cache(maxsize=64)
def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray | None:
    """scipy.ndimage's Gaussian taps: radius ``int(truncate * sigma + 0.5)``, ``exp(-x^2 / 2 sigma^2)`` normalised.

    Returns ``None`` for ``sigma <= 1e-15``, where scipy skips the axis (identity).
    """
    if sigma <= 1e-15:
        return None
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1)
    # scipy's _gaussian_kernel1d statement for statement (integer x ** 2, then one float product).
    k = np.exp(-0.5 / (sigma * sigma) * t**2)
    return k / k.sum()


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """``skimage.filters.gaussian(x, sigma, mode, truncate, channel_axis=...)`` on the two spatial axes.

    scikit-image's default border mode is ``"nearest"`` and its default truncation 4 sigma, both used by the
    CIFAR-10-C generator except in ``elastic_transform`` (``mode='reflect', truncate=3``).
    """
    k = gaussian_kernel1d(float(sigma), float(truncate))
    if k is None:
        return x
    return correlate_separable(x, k, k, mode)


def gather_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``x[n, :, rows[n], cols[n]]`` for integer ``rows``, ``cols`` of shape ``(N, h, w)`` (already in range)."""
    n, c, h, w = x.shape
    flat = (rows * w + cols).reshape(n, 1, -1).expand(n, c, -1)
    return x.reshape(n, c, h * w).gather(2, flat).reshape(n, c, *rows.shape[1:])


def _gather_taps(flat: torch.Tensor, row_offset: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Values of ``flat`` ``(N, C, H*W)`` at flat indices ``row_offset + col`` ``(N, ...)``: ``(N, C, P)``."""
    n, c, _ = flat.shape
    return flat.gather(2, (row_offset + col).reshape(n, 1, -1).expand(n, c, -1))


def apply_axis_matrices(x: torch.Tensor, a_rows: torch.Tensor, a_cols: torch.Tensor) -> torch.Tensor:
    """``A_rows @ x @ A_cols^T`` per channel: a separable linear resampling given as two dense matrices.

    ``a_rows`` is ``(H_out, H)``, ``a_cols`` ``(W_out, W)``. Both products run as one large matrix product each
    (the left one through a transpose), not as many small batched ones.
    """
    a_rows = a_rows.to(device=x.device, dtype=x.dtype)
    a_cols = a_cols.to(device=x.device, dtype=x.dtype)
    with full_precision_matmul():
        y = x @ a_cols.T
        return (y.transpose(-1, -2) @ a_rows.T).transpose(-1, -2)


def scipy_zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix of ``scipy.ndimage.zoom(order=1)`` along one axis (grid_mode=False: the corner
    samples map onto each other, output ``o`` reads input coordinate ``o * (n_in - 1) / (n_out - 1)``)."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    for o in range(n_out):
        c = o * scale
        i0 = int(math.floor(c))
        f = c - i0
        m[o, min(i0, n_in - 1)] += 1.0 - f
        if f > 0:
            m[o, min(i0 + 1, n_in - 1)] += f
    return m


@lru_cache(maxsize=256)
def clipped_zoom_matrix(n: int, zoom: float) -> np.ndarray:
    """``(n, n)`` matrix of the CIFAR-10-C generator's ``clipped_zoom`` along one axis.

    Centre crop of ``ceil(n / zoom)`` samples, ``scipy.ndimage.zoom(order=1)`` to ``round(ch * zoom)`` samples,
    then the centre ``n`` samples (``trim_top = (size - n) // 2``), as in make_cifar_c.py.
    """
    ch = int(np.ceil(n / zoom))
    top = (n - ch) // 2
    size = int(round(ch * zoom))
    z = scipy_zoom_matrix(ch, size)
    trim = (size - n) // 2
    m = np.zeros((n, n), dtype=np.float64)
    m[:, top : top + ch] = z[trim : trim + n]
    return m


@lru_cache(maxsize=64)
def pil_box_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of Pillow's ``Image.resize(..., Image.BOX)`` along one axis.

    Pillow's ``precompute_coeffs``: ``scale = n_in / n_out``, support ``0.5 * max(scale, 1)``, each tap weighted
    by ``box((x - center + 0.5) / filterscale)`` (1 on ``(-0.5, 0.5]``, else 0), then normalised.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        center = (o + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        for i in range(xmin, xmax):
            t = (i - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                m[o, i] = 1.0
        total = m[o].sum()
        if total > 0:
            m[o] /= total
    return m


def pil_resize_box(levels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow BOX resize of 8-bit ``levels`` (floats holding integers 0..255) to ``size = (H_out, W_out)``.

    Horizontal pass first, rounded to 8 bit, then the vertical pass, rounded: Pillow's two-pass order for 8-bit
    images (its fixed-point coefficients can move a value by one level where the float result is near .5).
    """
    h, w = levels.shape[-2:]
    ho, wo = size
    y = levels
    if wo != w:
        a = torch.as_tensor(pil_box_matrix(w, wo), dtype=levels.dtype, device=levels.device)
        y = torch.round(y @ a.T).clamp_(0, 255)
    if ho != h:
        a = torch.as_tensor(pil_box_matrix(h, ho), dtype=levels.dtype, device=levels.device)
        y = torch.round(a @ y).clamp_(0, 255)
    return y


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` ``(N, 1, H, W)`` (OpenCV's COLOR_RGB2GRAY weights)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2hsv`` for ``(N, 3, H, W)`` in [0, 1]; hue in [0, 1). Same tie rule (blue > green > red)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    mn, _ = x.min(1)
    delta = v - mn
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    safe_v = torch.where(v == 0, torch.ones_like(v), v)
    s = torch.where(delta == 0, torch.zeros_like(v), delta / safe_v)
    h = torch.where(r == v, (g - b) / safe_delta, torch.zeros_like(v))
    h = torch.where(g == v, 2.0 + (b - r) / safe_delta, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta == 0, torch.zeros_like(h), h)
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """``skimage.color.hsv2rgb`` for ``(N, 3, H, W)``: sector ``floor(6h) mod 6``, ``p, q, t`` as usual."""
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    hi = torch.floor(h6)
    f = h6 - hi
    hi = torch.remainder(hi, 6).long()
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    # rows: sector 0..5 -> (r, g, b)
    table_r = torch.stack([v, q, p, p, t, v], 0)
    table_g = torch.stack([t, v, v, q, p, p], 0)
    table_b = torch.stack([p, p, t, v, v, q], 0)
    idx = hi.unsqueeze(0)
    r = table_r.gather(0, idx).squeeze(0)
    g = table_g.gather(0, idx).squeeze(0)
    b = table_b.gather(0, idx).squeeze(0)
    return torch.stack([r, g, b], 1)


def motion_blur_kernel(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick ``MotionBlurImage`` taps (MagickCore/effect.c, ``GetMotionBlurKernel``; width from
    ``GetOptimalKernelWidth1D`` in gem.c): width ``2 ceil(radius) + 1``, ``exp(-i^2 / 2 sigma^2)`` for
    ``i = 0 .. width-1`` (one-sided), normalised."""
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i * i) / (2.0 * sigma * sigma))
    return k / k.sum()


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur of each image ``x[n]`` along its own angle ``angle_deg[n]`` (degrees).

    Tap ``i`` reads the pixel at ``(y + ceil(i sin a - 0.5), x + ceil(i cos a - 0.5))`` with edge-replicated
    borders (ImageMagick's default virtual pixels), weighted by :func:`motion_blur_kernel`.
    """
    n, c, h, w = x.shape
    k = motion_blur_kernel(radius, sigma)
    a = torch.deg2rad(angle_deg.to(device=x.device, dtype=torch.float64))
    sin, cos = torch.sin(a), torch.cos(a)
    rr = torch.arange(h, device=x.device).view(1, h, 1)
    cc = torch.arange(w, device=x.device).view(1, 1, w)
    out = torch.zeros_like(x)
    for i, weight in enumerate(k):
        oy = torch.ceil(i * sin - 0.5).long().view(n, 1, 1)
        ox = torch.ceil(i * cos - 0.5).long().view(n, 1, 1)
        rows = (rr + oy).clamp(0, h - 1).expand(n, h, w)
        cols = (cc + ox).clamp(0, w - 1).expand(n, h, w)
        out.add_(gather_pixels(x, rows, cols), alpha=float(weight))
    return out


def fma_float32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` rounded once to float32, as a fused multiply-add (``v_fma`` / ``_mm256_fmadd_ps``) gives it.

    The float32 product is exact in float64 and the float64 sum is rounded to float32 afterwards; that double
    rounding differs from a true FMA only when the float64 sum lands exactly on a float32 rounding midpoint.
    """
    return (a.double() * b.double() + c.double()).to(torch.float32)


def opencv_affine_inverse(m: torch.Tensor) -> torch.Tensor:
    """``cv2.invertAffineTransform`` of ``(N, 2, 3)`` float64 matrices, with OpenCV's statement order."""
    m0, m1, m2, m3, m4, m5 = m.reshape(-1, 6).unbind(1)
    det = m0 * m4 - m1 * m3
    d = torch.where(det != 0, 1.0 / det, torch.zeros_like(det))
    a11, a22, a12, a21 = m4 * d, m0 * d, -m1 * d, -m3 * d
    b1 = -a11 * m2 - a12 * m5
    b2 = -a21 * m2 - a22 * m5
    return torch.stack([a11, a12, b1, a21, a22, b2], 1).reshape(-1, 2, 3)


def opencv_warp_affine_reflect101(x: torch.Tensor, m_inv: torch.Tensor, simd_columns: int = 16) -> torch.Tensor:
    """``cv2.warpAffine(img, M, (W, H), flags=INTER_LINEAR, borderMode=BORDER_REFLECT_101)`` of float32 images.

    Arguments:
        x: ``(N, C, H, W)`` float32 images.
        m_inv: ``(N, 2, 3)`` float64 destination -> source matrices (``invertAffineTransform(M)``, which
            warpAffine applies when ``WARP_INVERSE_MAP`` is not set).
        simd_columns: columns OpenCV's vector loop handles per step (2 registers of float32 lanes: 16 for its
            AVX2 dispatch, which x86-64 wheels run); the last ``W % simd_columns`` columns of each row go
            through its scalar tail, whose coordinates round differently. Widths that are multiples of 16 (CIFAR's
            32) never reach the tail on AVX2 / AVX-512 / NEON builds; 0 sends every column through the tail.

    OpenCV >= 4.11 (``warpAffineLinearInvoker_32FC*`` in ``warp_kernels.simd.hpp``) casts the matrix to
    float32 and computes, in its vector loop, ``src_x = fma(M0, x, float(y * M1 + M2))`` (``src_y`` with
    ``M3, M4, M5``), in its scalar tail ``src_x = fma(x, M0, y * M1) + M2`` (the compiler contracts
    ``x*M[0] + y*M[1] + M[2]``); then ``ix = floor(src_x)``, ``a = src_x - ix`` and ``v0 = fma(a, p01 - p00,
    p00)``, ``v1 = fma(a, p11 - p10, p10)``, ``v = fma(b, v1 - v0, v0)`` in float32; taps outside the image
    are reflected (``borderInterpolate``, BORDER_REFLECT_101). This reproduces it bit for bit (tested against
    ``cv2.warpAffine`` on random images of several sizes). OpenCV < 4.11 rounded the source coordinates to a
    1/32-pixel fixed-point grid instead (``INTER_BITS = 5``): up to a few 8-bit levels apart from this.
    """
    n, c, h, w = x.shape
    m = m_inv.to(device=x.device, dtype=torch.float32).reshape(n, 6, 1, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
    # float(y * M1 + M2): a float32 product and a float32 sum (two roundings), per row.
    row_x = torch.add(torch.mul(ys, m[:, 1]), m[:, 2])
    row_y = torch.add(torch.mul(ys, m[:, 4]), m[:, 5])
    sx = fma_float32(m[:, 0].expand(n, h, w), xs.expand(n, h, w), row_x.expand(n, h, w))
    sy = fma_float32(m[:, 3].expand(n, h, w), xs.expand(n, h, w), row_y.expand(n, h, w))
    tail = (w // simd_columns) * simd_columns if simd_columns > 0 else 0
    if tail < w:  # scalar tail: fma(x, M0, y * M1) + M2
        xt = xs[..., tail:].expand(n, h, w - tail)
        sx[..., tail:] = fma_float32(xt, m[:, 0], torch.mul(ys, m[:, 1]).expand_as(xt)) + m[:, 2]
        sy[..., tail:] = fma_float32(xt, m[:, 3], torch.mul(ys, m[:, 4]).expand_as(xt)) + m[:, 5]
    fx, fy = torch.floor(sx), torch.floor(sy)
    ax = (sx - fx).reshape(n, 1, -1)
    ay = (sy - fy).reshape(n, 1, -1)
    ix, iy = fx.long(), fy.long()
    ra, rb = extend_index(iy, h, "mirror") * w, extend_index(iy + 1, h, "mirror") * w
    ca, cb = extend_index(ix, w, "mirror"), extend_index(ix + 1, w, "mirror")
    flat = x.reshape(n, c, h * w)
    tap = partial(_gather_taps, flat)
    p00, p01, p10, p11 = tap(ra, ca), tap(ra, cb), tap(rb, ca), tap(rb, cb)
    v0 = fma_float32(ax, p01 - p00, p00)
    v1 = fma_float32(ax, p11 - p10, p10)
    return fma_float32(ay, v1 - v0, v0).reshape(n, c, h, w)


def scipy_map_coordinates_linear_reflect(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``scipy.ndimage.map_coordinates(img, (rows, cols), order=1, mode='reflect')`` per channel.

    Arguments:
        x: ``(N, C, H, W)`` images (float32 in the generator; the result has ``x``'s dtype, as scipy's output
            takes the input's dtype).
        rows, cols: ``(N, H', W')`` float64 coordinates.

    SciPy reads the input as float64, reflects each coordinate into the image (half-sample symmetric), takes
    the weights ``1 - t, t`` of ``t = c - floor(c)`` in float64, sums ``value * w_row * w_col`` over the four
    taps in float64 (the border taps reflected again) and rounds the sum to the output dtype once.
    """
    n, c, h, w = x.shape

    def fold(v: torch.Tensor, size: int) -> torch.Tensor:
        # ni_interpolation.c map_coordinate, NI_EXTEND_REFLECT.
        s2 = 2.0 * size
        lo = v < 0
        u = torch.where(lo & (v < -s2), s2 * torch.trunc(-v / s2) + v, v)
        u = torch.where(lo, torch.where(u < -size, u + s2, -u - 1.0), u)
        hi = u > size - 1
        u2 = torch.where(hi & (u >= s2), u - s2 * torch.trunc(u / s2), u)
        u2 = torch.where(hi, torch.where(u2 < size, u2, s2 - u2 - 1.0), u2)
        return u2

    rr, cc = fold(rows.double(), h), fold(cols.double(), w)
    r0f, c0f = torch.floor(rr), torch.floor(cc)
    tr = (rr - r0f).reshape(n, 1, -1)
    tc = (cc - c0f).reshape(n, 1, -1)
    r0, c0 = r0f.long(), c0f.long()
    ra, rb = extend_index(r0, h, "reflect") * w, extend_index(r0 + 1, h, "reflect") * w
    ca, cb = extend_index(c0, w, "reflect"), extend_index(c0 + 1, w, "reflect")
    tap = partial(_gather_taps, x.reshape(n, c, h * w).double())
    wr0, wc0 = 1.0 - tr, 1.0 - tc
    t = tap(ra, ca) * wr0 * wc0
    t = t + tap(ra, cb) * wr0 * tc
    t = t + tap(rb, ca) * tr * wc0
    t = t + tap(rb, cb) * tr * tc
    return t.to(x.dtype).reshape(n, c, *rows.shape[1:])


def scipy_gaussian_filter_float64(
    x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` (what ``skimage.filters.gaussian`` runs) of float64 images, rounding for
    rounding: axis H first, then W; each output is ``x[i] * w[0]`` plus ``(x[i - k] + x[i + k]) * w[k]`` added
    for ``k = r, r - 1, .., 1`` (``NI_Correlate1D``'s symmetric loop on x86-64 wheels, no FMA), in float64.

    Where truncation to 8 bits follows (glass_blur), a value on a level ``k / 255`` must come out on the same
    side of ``k`` as SciPy's sum does; a matrix product (another summation order) splits flat regions by one
    level. ``x`` ``(N, C, H, W)`` float64; returns float64.
    """
    k = gaussian_kernel1d(float(sigma), float(truncate))
    if k is None:
        return x.clone()
    r = len(k) // 2
    w = [float(v) for v in k[r:]]  # w[d]: weight at distance d (the kernel is exactly symmetric)
    y = x.to(torch.float64)
    for dim in (2, 3):
        n = y.shape[dim]
        p = pad_axis(y, dim, r, r, mode)
        centre = p.narrow(dim, r, n)
        out = centre * w[0]
        pair = torch.empty_like(out)
        for d in range(r, 0, -1):
            torch.add(p.narrow(dim, r - d, n), p.narrow(dim, r + d, n), out=pair)
            out.add_(pair.mul_(w[d]))  # separate multiply and add: no fused multiply-add
        y = out
    return y


def opencv_warp_affine_reflect101_fixed_point(x: torch.Tensor, m_inv: torch.Tensor) -> torch.Tensor:
    """``cv2.warpAffine(INTER_LINEAR, BORDER_REFLECT_101)`` of float32 images as OpenCV < 4.11 computed it (the
    releases that made the published CIFAR-10-C files); 4.11+ runs :func:`opencv_warp_affine_reflect101`.

    ``WarpAffineInvoker``: ``AB_SCALE = 1024``, ``adelta[x] = cvRound(M0 x AB_SCALE)``, ``X0 = cvRound((M1 y +
    M2) AB_SCALE) + 16`` (``AB_SCALE / INTER_TAB_SIZE / 2``), ``X = (X0 + adelta[x]) >> 5``, integer part
    ``X >> 5`` and 1/32 fraction ``X & 31`` (the same with ``M3, M4, M5`` for Y); then ``remapBilinear`` with the
    float32 weights of ``initInterTab2D`` (``(1 - fy)(1 - fx), (1 - fy) fx, fy (1 - fx), fy fx``) summed over
    the four taps in that order. cvRound rounds half to even, as ``torch.round`` does.
    """
    n, c, h, w = x.shape
    ix, iy, tx, ty = opencv_fixed_point_sources(m_inv.to(x.device), h, w)
    fx = (tx.to(torch.float32) / 32.0).reshape(n, 1, -1)
    fy = (ty.to(torch.float32) / 32.0).reshape(n, 1, -1)
    ra, rb = extend_index(iy, h, "mirror") * w, extend_index(iy + 1, h, "mirror") * w
    ca, cb = extend_index(ix, w, "mirror"), extend_index(ix + 1, w, "mirror")
    tap = partial(_gather_taps, x.to(torch.float32).reshape(n, c, h * w))
    gx, gy = 1.0 - fx, 1.0 - fy
    out = tap(ra, ca) * (gy * gx)
    out = out + tap(ra, cb) * (gy * fx)
    out = out + tap(rb, ca) * (fy * gx)
    out = out + tap(rb, cb) * (fy * fx)
    return out.reshape(n, c, h, w)


def opencv_fixed_point_sources(
    m_inv: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """OpenCV < 4.11 ``WarpAffineInvoker`` source coordinates for an ``(h, w)`` output: integer column and row
    and their 1/32 fractions (``X >> 5``, ``Y >> 5``, ``X & 31``, ``Y & 31``), each ``(N, h, w)`` int64."""
    n = m_inv.shape[0]
    m = m_inv.to(torch.float64).reshape(n, 6, 1, 1)
    xs = torch.arange(w, device=m.device, dtype=torch.float64).view(1, 1, w)
    ys = torch.arange(h, device=m.device, dtype=torch.float64).view(1, h, 1)
    ab = 1024.0  # AB_SCALE = 1 << AB_BITS (10); round_delta = AB_SCALE / INTER_TAB_SIZE / 2 = 16
    sx = (torch.round((m[:, 1] * ys + m[:, 2]) * ab).long() + 16 + torch.round(m[:, 0] * xs * ab).long()) >> 5
    sy = (torch.round((m[:, 4] * ys + m[:, 5]) * ab).long() + 16 + torch.round(m[:, 3] * xs * ab).long()) >> 5
    return sx >> 5, sy >> 5, sx & 31, sy & 31

"""The ``spatter`` corruption (held-out extra of Hendrycks & Dietterich): water drops (severities 1-3) or mud (4-5).

Constants from ``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness). The water branch runs
OpenCV image-processing steps on an 8-bit "liquid" layer; they are rebuilt here with torch ops, batched:
Canny edges (Sobel 3x3, L1 magnitude, OpenCV's non-maximum suppression rule and 8-connected hysteresis), the
5x5 chamfer distance transform (``DIST_L2``, mask 5: weights 1, 1.4, 2.1969) truncated at 20, box blurs,
per-image histogram equalisation and the 3x3 emboss filter with 8-bit saturation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._ops import correlate2d, correlate_separable, gaussian_filter, quantize_floor
from .registry import Rng, register_corruption

# make_cifar_c.py: spatter c = (loc, scale, sigma, threshold, intensity / mud sigma, mud?) per severity
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
WATER_RGB = (175.0, 238.0, 238.0)  # "pale turquoise", added in the image's own channel order as the generator does
MUD_RGB = (63.0, 42.0, 20.0)
_TG22 = 13573  # OpenCV canny.cpp: (int)(tan(22.5 deg) * (1 << 15) + 0.5)


def _shift(p: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``out[r, c] = p[r + dy, c + dx]`` with ``fill`` outside; ``p`` is ``(N, H, W)``."""
    n, h, w = p.shape
    q = F.pad(p, (2, 2, 2, 2), value=fill)
    return q[:, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


def canny(img: torch.Tensor, low: float = 50.0, high: float = 150.0) -> torch.Tensor:
    """``cv2.Canny(img, low, high)`` (aperture 3, L1 gradient) of 8-bit levels ``(N, H, W)``; bool edges."""
    x = img.to(torch.float64).unsqueeze(1)
    # Sobel 3x3 with BORDER_REPLICATE; integer images give integer gradients (rounding removes float dust, so
    # the tie rules of the non-maximum suppression below see exact values).
    gx = correlate_separable(x, np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0]), "nearest").round().squeeze(1)
    gy = correlate_separable(x, np.array([-1.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0]), "nearest").round().squeeze(1)
    mag = gx.abs() + gy.abs()
    ax, ay = gx.abs(), gy.abs() * 32768.0
    tg22x = ax * _TG22
    tg67x = tg22x + ax * 65536.0
    horiz = ay < tg22x
    vert = (~horiz) & (ay > tg67x)
    diag = ~(horiz | vert)
    s = torch.where((gx < 0) != (gy < 0), -1, 1)  # OpenCV: (xs ^ ys) < 0 ? -1 : 1
    left, right = _shift(mag, 0, -1, 0.0), _shift(mag, 0, 1, 0.0)
    up, down = _shift(mag, -1, 0, 0.0), _shift(mag, 1, 0, 0.0)
    up_l, up_r = _shift(mag, -1, -1, 0.0), _shift(mag, -1, 1, 0.0)
    dn_l, dn_r = _shift(mag, 1, -1, 0.0), _shift(mag, 1, 1, 0.0)
    keep_h = (mag > left) & (mag >= right)
    keep_v = (mag > up) & (mag >= down)
    # s = 1: compare with (row-1, col-1) and (row+1, col+1); s = -1: (row-1, col+1) and (row+1, col-1).
    keep_d = torch.where(s > 0, (mag > up_l) & (mag > dn_r), (mag > up_r) & (mag > dn_l))
    cand = (mag > low) & ((horiz & keep_h) | (vert & keep_v) | (diag & keep_d))
    edges = cand & (mag > high)
    # Hysteresis: grow the strong edges through 8-connected candidates until nothing changes.
    while True:
        grown = F.max_pool2d(edges.unsqueeze(1).to(torch.float32), 3, stride=1, padding=1).squeeze(1) > 0
        new = edges | (grown & cand)
        if torch.equal(new, edges):
            return edges
        edges = new


def chamfer_distance(zero: torch.Tensor, cap: float = 20.0) -> torch.Tensor:
    """``cv2.distanceTransform(src, DIST_L2, 5)`` truncated at ``cap``: distance of each pixel to the nearest
    pixel where ``zero`` is True, on the 5x5 chamfer graph (steps 1, 1.4, 2.1969; outside the image is far)."""
    # Start non-edge pixels at the cap (not infinity): a distance <= cap is reached through pixels whose own
    # distances are <= cap, so capping never changes it, and the relaxation settles in a few rounds.
    d = torch.where(zero, 0.0, float(cap)).to(torch.float32)
    steps = [(dy, dx, 1.0) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    steps += [(dy, dx, 1.4) for dy in (-1, 1) for dx in (-1, 1)]
    steps += [(dy, dx, 2.1969) for dy, dx in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))]
    n, h, w = d.shape
    # Every chamfer step is >= 1, so paths up to the cap need at most cap relaxation rounds.
    for _ in range(int(np.ceil(cap)) + 1):
        padded = F.pad(d, (2, 2, 2, 2), value=float(cap))  # outside the image: never closer than the cap
        new = d.clone()
        for dy, dx, wgt in steps:
            torch.minimum(new, padded[:, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] + wgt, out=new)
        if torch.equal(new, d):
            break
        d = new
    return d


def _box3(p: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(p, (3, 3))`` of a float32 image: horizontal then vertical 3-tap sums in float32, times
    ``float32(1/9)``, reflect-101 borders; ``p`` ``(N, H, W)``. Summing first (not weighting each tap by 1/9)
    keeps a flat patch of 20s at exactly 20, which the later 8-bit truncation depends on."""
    ones = np.ones(3)
    s = correlate_separable(p.to(torch.float32).unsqueeze(1), None, ones, "mirror")
    s = correlate_separable(s, ones, None, "mirror")
    return (s * np.float32(1.0 / 9.0)).squeeze(1)


def equalize_hist(p: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image of 8-bit levels ``(N, H, W)`` (LUT from the cumulative histogram, lowest
    occupied level -> 0, ``round(cum * 255 / (total - count_min))``; a constant image stays as it is)."""
    n, h, w = p.shape
    idx = p.reshape(n, -1).long()
    hist = torch.zeros(n, 256, dtype=torch.float32, device=p.device)
    hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float32))
    occupied = hist > 0
    first = occupied.float().argmax(1, keepdim=True)  # lowest occupied level
    levels = torch.arange(256, device=p.device).unsqueeze(0)
    cum = torch.cumsum(hist, 1) - hist.gather(1, first)  # counts strictly above the first level, cumulated
    total = float(h * w)
    denom = total - hist.gather(1, first)
    scale = torch.where(denom > 0, 255.0 / denom.clamp(min=1), torch.zeros_like(denom))
    lut = torch.round(cum * scale).clamp(0, 255)
    lut = torch.where(levels < first, torch.zeros_like(lut), lut)
    const = denom <= 0
    lut = torch.where(const, levels.float().expand(n, -1), lut)
    return lut.gather(1, idx).reshape(n, h, w)


@register_corruption("spatter", "weather", random=True)
def spatter(x: torch.Tensor, severity: int, rng: Rng) -> torch.Tensor:
    """Water drops (1-3: thresholded blurred noise, embossed distance-to-edge shading, pale turquoise) or mud
    (4-5: blurred blob mask, brown) over the image."""
    loc, scale, sigma, thresh, k, mud = SPATTER[severity - 1]
    n, _, h, w = x.shape
    liquid = rng.normal((n, 1, h, w), mean=loc, std=scale, dtype=torch.float64)
    liquid = gaussian_filter(liquid, sigma)
    liquid = torch.where(liquid < thresh, torch.zeros_like(liquid), liquid).squeeze(1)
    if not mud:
        # (liquid * 255).astype(np.uint8): liquid can exceed 1 at severity 3; numpy's cast then wraps modulo 256
        # on x86 (the generator's behaviour, reproduced here), which turns the brightest drop cores into edges.
        lvl = torch.remainder(torch.floor(liquid * 255.0), 256.0)
        dist = chamfer_distance(canny(lvl))  # distance to the nearest edge pixel
        dist = torch.floor(_box3(dist)).double()  # blur, astype(np.uint8)
        dist = equalize_hist(dist)
        emboss = np.array([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = correlate2d(dist.unsqueeze(1).double(), emboss, "mirror").squeeze(1).round().clamp(0, 255)
        dist = torch.round(_box3(dist).double())  # 8-bit blur rounds
        m = lvl * dist
        mx = m.amax((1, 2), keepdim=True)
        m = torch.where(mx > 0, m / mx.clamp(min=1e-12), torch.zeros_like(m)) * k
        color = torch.tensor(WATER_RGB, dtype=torch.float64, device=x.device).view(1, 3, 1, 1) / 255.0
        out = x.double() + m.unsqueeze(1) * color
    else:
        blob = (liquid > thresh).to(torch.float32).unsqueeze(1)
        m = gaussian_filter(blob, k)
        m = torch.where(m < 0.8, torch.zeros_like(m), m).double()
        color = torch.tensor(MUD_RGB, dtype=torch.float64, device=x.device).view(1, 3, 1, 1) / 255.0
        out = x.double() * (1 - m) + color * m
    return quantize_floor(out).to(x.dtype)

"""Corruptions against independent references on the same images.

The references below follow Hendrycks & Dietterich's CIFAR generator (``ImageNet-C/create_c/make_cifar_c.py``,
github.com/hendrycks/robustness) step by step with numpy / scipy / scikit-image / OpenCV / Pillow, with the
CIFAR-10-C constants written out again here (so a wrong constant in the package fails). Random corruptions are
compared on their deterministic part: the reference receives the same random draws (taken from a generator
with the same seed, in the order the package draws them). ImageMagick's motion blur (not installable here) is
taken from the ``imagecorruptions`` package's numpy re-implementation (``_motion_blur``).
"""

from __future__ import annotations

import importlib.util
import io
import os

import numpy as np
import pytest
import torch

import corruptions
from corruptions.registry import Rng, make_generator

cv2 = pytest.importorskip("cv2")
skimage = pytest.importorskip("skimage")
from PIL import Image  # noqa: E402
from scipy.ndimage import map_coordinates  # noqa: E402
from scipy.ndimage import zoom as scizoom  # noqa: E402
from skimage.filters import gaussian as sk_gaussian  # noqa: E402


def _imagecorruptions():
    """Import ``imagecorruptions`` 1.1.2 (with the ``pkg_resources`` stand-in of the benchmark when needed)."""
    if importlib.util.find_spec("imagecorruptions") is None:
        pytest.skip("imagecorruptions not installed (pip install -e .[dev])")
    from benchmarks.bench_corruptions import install_pkg_resources_shim

    install_pkg_resources_shim()
    import imagecorruptions.corruptions as ic

    return ic


@pytest.fixture(scope="module")
def images(request) -> np.ndarray:
    """8 CIFAR-10 test images uint8 (8, 32, 32, 3) (2 per class of 4 classes); smooth synthetic ones without
    the shared data."""
    try:
        path = request.getfixturevalue("cifar10_npz")
        with np.load(path) as d:
            return np.ascontiguousarray(d["x"][[0, 1, 1000, 1001, 3000, 3001, 7000, 7001]])
    except pytest.skip.Exception:
        rng = np.random.default_rng(0)
        z = rng.uniform(0, 1, (8, 8, 8, 3))
        return np.stack([(np.clip(scizoom(a, (4, 4, 1), order=1), 0, 1) * 255).astype(np.uint8) for a in z])


def _ours(name: str, imgs: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    y = corruptions.get(name)(x, severity, generator=make_generator(seed))
    return (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _agree(ours: np.ndarray, ref: np.ndarray, *, frac: float = 0.99, max_diff: int = 255) -> None:
    """At least ``frac`` of the values within one 8-bit level, and none further than ``max_diff``."""
    assert ours.shape == ref.shape
    d = np.abs(ours.astype(int) - ref.astype(int))
    within = float((d <= 1).mean())
    assert within >= frac, f"only {within:.4f} of values within 1/255 (max diff {d.max()})"
    assert d.max() <= max_diff, f"max difference {d.max()} levels"


def _u8(v: np.ndarray) -> np.ndarray:
    """The generator's final ``np.uint8(...)`` (truncation)."""
    return np.uint8(v)


# ---------------------------------------------------------------- deterministic corruptions


def ref_gaussian_blur(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.4, 0.6, 0.7, 0.8, 1][severity - 1]
    return _u8(np.clip(sk_gaussian(x / 255.0, sigma=c, channel_axis=-1), 0, 1) * 255)


def ref_disk(radius: float, alias_blur: float) -> np.ndarray:
    grid = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    d = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    d /= d.sum()
    return cv2.GaussianBlur(d, ksize=ksize, sigmaX=alias_blur)


def ref_defocus_blur(x: np.ndarray, severity: int) -> np.ndarray:
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    k = ref_disk(*c)
    xf = x / 255.0
    out = np.stack([cv2.filter2D(xf[:, :, d], -1, k) for d in range(3)], -1)
    return _u8(np.clip(out, 0, 1) * 255)


def ref_clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    img = scizoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


def ref_zoom_blur(x: np.ndarray, severity: int) -> np.ndarray:
    c = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.01),
         np.arange(1, 1.26, 0.01)][severity - 1]
    xf = (x / 255.0).astype(np.float32)
    out = np.zeros_like(xf)
    for z in c:
        out += ref_clipped_zoom(xf, z)
    return _u8(np.clip((xf + out) / (len(c) + 1), 0, 1) * 255)


def ref_contrast(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    xf = x / 255.0
    m = xf.mean(axis=(0, 1), keepdims=True)
    return _u8(np.clip((xf - m) * c + m, 0, 1) * 255)


def ref_brightness(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    hsv = skimage.color.rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return _u8(np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255)


def ref_saturate(x: np.ndarray, severity: int) -> np.ndarray:
    c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = skimage.color.rgb2hsv(x / 255.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
    return _u8(np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255)


def ref_pixelate(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    im = Image.fromarray(x)
    h, w = x.shape[:2]
    im = im.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(im)


def ref_jpeg(x: np.ndarray, severity: int) -> np.ndarray:
    c = [80, 65, 58, 50, 40][severity - 1]
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=c)
    return np.asarray(Image.open(buf).convert("RGB"))


DETERMINISTIC = {
    "gaussian_blur": (ref_gaussian_blur, 0.999, 1),
    "defocus_blur": (ref_defocus_blur, 0.999, 1),
    "zoom_blur": (ref_zoom_blur, 0.999, 1),
    "contrast": (ref_contrast, 0.999, 1),
    "brightness": (ref_brightness, 0.999, 1),
    "saturate": (ref_saturate, 0.999, 1),
    "pixelate": (ref_pixelate, 0.999, 1),
    "jpeg_compression": (ref_jpeg, 0.999, 1),
}


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_deterministic_matches_reference(name: str, images: np.ndarray) -> None:
    ref_fn, frac, max_diff = DETERMINISTIC[name]
    for s in range(1, 6):
        ref = np.stack([ref_fn(im, s) for im in images])
        _agree(_ours(name, images, s), ref, frac=frac, max_diff=max_diff)


def test_jpeg_bit_exact(images: np.ndarray) -> None:
    """Integer ISLOW DCT + libjpeg colour/chroma arithmetic: identical bytes to Pillow (libjpeg-turbo), including
    quality 50 on JPEG-decoded images, where coefficients sit exactly on rounding ties."""
    for s in range(1, 6):
        ref = np.stack([ref_jpeg(im, s) for im in images])
        assert np.array_equal(_ours("jpeg_compression", images, s), ref)


@pytest.mark.parametrize("shape", [(16, 16), (24, 40), (17, 23)])
def test_jpeg_other_sizes_bit_exact(shape: tuple[int, int]) -> None:
    """Partial MCUs (odd sizes included) are padded the way libjpeg pads them, so other sizes are exact too."""
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (3, *shape, 3)).astype(np.uint8)
    ref = np.stack([ref_jpeg(im, 3) for im in imgs])
    assert np.array_equal(_ours("jpeg_compression", imgs, 3), ref)


@pytest.mark.parametrize("quality", [1, 10, 95, 100])
def test_jpeg_codec_extreme_patterns_bit_exact(quality: int) -> None:
    """Checkerboards and saturated noise give the largest DCT coefficients: the 32-bit integer pipeline must
    still match libjpeg at every quality (no overflow, same clamping)."""
    from corruptions.jpeg import jpeg_roundtrip

    a = (np.indices((32, 32)).sum(0) % 2) * 255
    imgs = [np.stack([a, 255 - a, a], -1), np.zeros((32, 32, 3)), np.full((32, 32, 3), 255),
            np.random.default_rng(0).choice([0, 255], (32, 32, 3))]
    for im in imgs:
        im = im.astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=quality)
        ref = np.asarray(Image.open(buf))
        ours = jpeg_roundtrip(torch.from_numpy(im).permute(2, 0, 1)[None].float(), quality)[0].permute(1, 2, 0)
        assert np.array_equal(ours.numpy().astype(np.uint8), ref)


# ---------------------------------------------------------------- random corruptions, same draws


def _rng(seed: int = 0) -> Rng:
    return Rng(make_generator(seed), torch.device("cpu"), torch.float32)


def test_motion_blur_matches_imagemagick_reimplementation(images: np.ndarray) -> None:
    ic = _imagecorruptions()
    for s, (radius, sigma) in enumerate([(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)], 1):
        ours = _ours("motion_blur", images, s, seed=s)
        angles = _rng(s).uniform((len(images),), -45, 45, dtype=torch.float64).numpy()
        ref = np.stack(
            [np.round(np.clip(ic._motion_blur(im, radius=radius, sigma=sigma, angle=a), 0, 255)).astype(np.uint8)
             for im, a in zip(images, angles)]
        )
        _agree(ours, ref, frac=0.999, max_diff=1)


def test_glass_blur_matches_sequential_swaps(images: np.ndarray) -> None:
    consts = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]
    imgs = images[:3]
    for s in (1, 3, 5):
        sigma, delta, iters = consts[s - 1]
        ours = _ours("glass_blur", imgs, s, seed=s)
        rows = list(range(32 - delta, delta, -1))
        d = _rng(s).integers((iters, len(rows), len(rows), 2, len(imgs)), -delta, delta).numpy()
        refs = []
        for n, im in enumerate(imgs):
            x = np.uint8(sk_gaussian(im / 255.0, sigma=sigma, channel_axis=-1) * 255)
            for it in range(iters):
                for i, h in enumerate(rows):
                    for j, w in enumerate(rows):
                        dx, dy = d[it, i, j, 0, n], d[it, i, j, 1, n]
                        hp, wp = h + dy, w + dx
                        x[h, w], x[hp, wp] = x[hp, wp], x[h, w].copy()
            refs.append(_u8(np.clip(sk_gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255))
        _agree(ours, np.stack(refs), frac=0.999, max_diff=1)


def test_elastic_matches_opencv_scipy(images: np.ndarray) -> None:
    for s in range(1, 6):
        c = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][s - 1]
        alpha, sig, jit = (32 * v for v in c)
        n = len(images)
        ours = _ours("elastic_transform", images, s, seed=s)
        r = _rng(s)
        jitter = r.uniform((n, 3, 2), -jit, jit, dtype=torch.float64).numpy()
        ux = r.uniform((n, 1, 32, 32), -1, 1, dtype=torch.float64).numpy()
        uy = r.uniform((n, 1, 32, 32), -1, 1, dtype=torch.float64).numpy()
        refs = []
        for k, im in enumerate(images):
            img = np.array(im, dtype=np.float32) / 255.0
            center = np.float32((32, 32)) // 2
            sq = 32 // 3
            pts1 = np.float32([center + sq, [center[0] + sq, center[1] - sq], center - sq])
            pts2 = (pts1 + jitter[k]).astype(np.float32)
            m = cv2.getAffineTransform(pts1, pts2)
            img = cv2.warpAffine(img, m, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
            dx = (sk_gaussian(ux[k, 0], sig, mode="reflect", truncate=3) * alpha).astype(np.float32)[..., None]
            dy = (sk_gaussian(uy[k, 0], sig, mode="reflect", truncate=3) * alpha).astype(np.float32)[..., None]
            xx, yy, zz = np.meshgrid(np.arange(32), np.arange(32), np.arange(3))
            ind = np.reshape(yy + dy, (-1, 1)), np.reshape(xx + dx, (-1, 1)), np.reshape(zz, (-1, 1))
            out = map_coordinates(img, ind, order=1, mode="reflect").reshape(img.shape)
            refs.append(_u8(np.clip(out, 0, 1) * 255))
        # OpenCV's warpAffine samples on a 1/32-pixel grid with fixed-point weights; we mimic the grid only.
        _agree(ours, np.stack(refs), frac=0.99, max_diff=4)


def _ref_plasma(mapsize: int, wibbledecay: float, uniform) -> np.ndarray:
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array):
        return array / 4 + wibble * uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corner = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        sq = corner + np.roll(corner, shift=-1, axis=0)
        sq += np.roll(sq, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(sq)
        dr = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        ul = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        lt = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(lt)
        tt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(tt)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def test_fog_matches_reference_plasma(images: np.ndarray) -> None:
    for s in range(1, 6):
        strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s - 1]
        g = make_generator(s)

        def uniform(lo, hi, shape):
            t = torch.rand((1, *shape), generator=g, dtype=torch.float64) * (hi - lo) + lo
            return t[0].numpy()

        refs = []
        for k, im in enumerate(images):
            x = im / 255.0
            mx = x.max()
            x = x + strength * _ref_plasma(32, decay, uniform)[:32, :32][..., None]
            refs.append(_u8(np.clip(x * mx / (mx + strength), 0, 1) * 255))
        # One call per image so that each consumes its own draws in the reference's order.
        ours = np.concatenate([_ours_with_gen("fog", images[k : k + 1], s, g2) for k, g2 in _seq_gens(s, len(images))])
        _agree(ours, np.stack(refs), frac=0.999, max_diff=1)


def _seq_gens(seed: int, n: int):
    """One shared generator used image after image (the reference draws per image in sequence)."""
    g = make_generator(seed)
    for k in range(n):
        yield k, g


def _ours_with_gen(name: str, imgs: np.ndarray, severity: int, g: torch.Generator) -> np.ndarray:
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    y = corruptions.get(name)(x, severity, generator=g)
    return (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_frost_matches_generator_crops(images: np.ndarray) -> None:
    ic = _imagecorruptions()
    frost_dir = os.path.join(os.path.dirname(ic.__file__), "frost")
    files = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"]
    textures = [cv2.resize(cv2.imread(os.path.join(frost_dir, f)), (0, 0), fx=0.2, fy=0.2) for f in files]
    n = len(images)
    for s in range(1, 6):
        c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][s - 1]
        ours = _ours("frost", images, s, seed=s)
        r = _rng(s)
        idx = r.integers((n,), 0, 5).numpy()
        u = r.uniform((n, 2), dtype=torch.float64).numpy()
        refs = []
        for k, im in enumerate(images):
            fr = textures[idx[k]]
            x0 = int(np.floor(u[k, 0] * (fr.shape[0] - 32)))
            y0 = int(np.floor(u[k, 1] * (fr.shape[1] - 32)))
            crop = fr[x0 : x0 + 32, y0 : y0 + 32][..., [2, 1, 0]]
            refs.append(_u8(np.clip(c[0] * np.array(im) + c[1] * crop, 0, 255)))
        _agree(ours, np.stack(refs), frac=0.999, max_diff=1)


def test_snow_matches_reference(images: np.ndarray) -> None:
    ic = _imagecorruptions()
    consts = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
              (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]
    n = len(images)
    for s in range(1, 6):
        c = consts[s - 1]
        ours = _ours("snow", images, s, seed=s)
        r = _rng(s)
        layers = r.normal((n, 1, 32, 32), mean=c[0], std=c[1]).numpy()
        angles = r.uniform((n,), -135, -45, dtype=torch.float64).numpy()
        refs = []
        for k, im in enumerate(images):
            x = np.array(im, dtype=np.float32) / 255.0
            layer = ref_clipped_zoom(layers[k, 0][..., None], c[2])
            layer[layer < c[3]] = 0
            layer8 = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)
            blurred = ic._motion_blur(layer8.astype(np.float64), radius=c[4], sigma=c[5], angle=angles[k])
            layer = (np.round(np.clip(blurred, 0, 255)).astype(np.uint8) / 255.0)[..., None]
            grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(32, 32, 1)
            x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
            refs.append(_u8(np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255))
        _agree(ours, np.stack(refs), frac=0.999, max_diff=1)


def test_spatter_matches_opencv_pipeline(images: np.ndarray) -> None:
    consts = [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
              (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)]
    n = len(images)
    for s in range(1, 6):
        c = consts[s - 1]
        ours = _ours("spatter", images, s, seed=s)
        liquid_all = _rng(s).normal((n, 1, 32, 32), mean=c[0], std=c[1], dtype=torch.float64).numpy()
        refs = []
        for k, im in enumerate(images):
            x = np.array(im, dtype=np.float32) / 255.0
            liquid = sk_gaussian(liquid_all[k, 0], sigma=c[2])
            liquid[liquid < c[3]] = 0
            if c[5] == 0:
                liquid = (liquid * 255).astype(np.uint8)
                dist = 255 - cv2.Canny(liquid, 50, 150)
                dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
                _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
                dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
                dist = cv2.equalizeHist(dist)
                ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
                dist = cv2.filter2D(dist, cv2.CV_8U, ker)
                dist = cv2.blur(dist, (3, 3)).astype(np.float32)
                m = (liquid * dist).astype(np.float32)
                m = m / m.max() if m.max() > 0 else m
                m = m[..., None] * c[4]
                color = np.array([175, 238, 238], dtype=np.float32) / 255.0
                refs.append(_u8(np.clip(x + m * color, 0, 1) * 255))
            else:
                m = np.where(liquid > c[3], 1, 0)
                m = sk_gaussian(m.astype(np.float32), sigma=c[4])
                m[m < 0.8] = 0
                color = np.array([63, 42, 20], dtype=np.float32) / 255.0 * m[..., None]
                refs.append(_u8(np.clip(x * (1 - m[..., None]) + color, 0, 1) * 255))
        _agree(ours, np.stack(refs), frac=0.999, max_diff=1)

"""Hendrycks & Dietterich's CIFAR-10-C generator, statement by statement, one image at a time (NumPy/SciPy/skimage).

Written from ``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness), independently of the
``corruptions`` package: the per-severity constants are written out again here (a wrong constant in the package
makes the reference tests fail) and each function performs the generator's own statements on a uint8 HWC image.
It serves two jobs:

* the **reference of the tests** (tests/test_corruptions_reference.py): every random draw goes through a
  ``draws`` object with NumPy's ``RandomState`` method names (``normal``, ``uniform``, ``poisson``, ``randint``,
  ``random_sample``); the tests pass :class:`Injected`, which hands out the draws the package made, so the two are
  compared pixel by pixel on the same randomness;
* the **baseline of benchmarks/bench_corruptions.py**: the same CIFAR constants through the per-image NumPy code
  path the generator runs (``draws = np.random.RandomState(seed)``), i.e. the same work as the package.

Deviations of the reference itself, all because the original libraries cannot run here: ImageMagick's motion
blur (``MagickMotionBlurImage``, used by motion_blur and snow) is the ``imagecorruptions`` package's NumPy
re-implementation ``_motion_blur`` (same kernel; we round its float output to 8 bits as ImageMagick's 8-bit PNG
does); skimage's ``multichannel=True`` is spelled ``channel_axis=-1``; ``skimage.util.random_noise(mode='s&p')`` is
written out (it draws two Bernoulli masks, flipped and salted, as below); the frost textures are the package's
bundled CIFAR-scale files (the generator's photographs resized by 0.2 with ``cv2.resize``).
"""

from __future__ import annotations

import io
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

# --------------------------------------------------------------------------------------------- constants (again)
GAUSSIAN_NOISE = [0.04, 0.06, 0.08, 0.09, 0.10]
SHOT_NOISE = [500, 250, 100, 75, 50]
IMPULSE_NOISE = [0.01, 0.02, 0.03, 0.05, 0.07]
SPECKLE_NOISE = [0.06, 0.1, 0.12, 0.16, 0.2]
GAUSSIAN_BLUR = [0.4, 0.6, 0.7, 0.8, 1]
GLASS_BLUR = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]
DEFOCUS_BLUR = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]
MOTION_BLUR = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]
FOG = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)]
FROST = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)]
SNOW = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]
SPATTER = [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
           (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)]
CONTRAST = [0.75, 0.5, 0.4, 0.3, 0.15]
BRIGHTNESS = [0.05, 0.1, 0.15, 0.2, 0.3]
SATURATE = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]
JPEG = [80, 65, 58, 50, 40]
PIXELATE = [0.95, 0.9, 0.85, 0.75, 0.65]
ELASTIC = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]  # x IMSIZE

FROST_DIR = Path(__file__).resolve().parents[1] / "corruptions" / "assets"


class Injected:
    """Pre-made random draws handed out in order, under NumPy's ``RandomState`` method names.

    Each call pops the next queued value and checks that it has the shape the caller asks for, so a reference that
    consumes draws in another order or of another size fails loudly instead of comparing unrelated numbers.
    """

    def __init__(self, *values: Any) -> None:
        self.queue: deque[Any] = deque(values)

    def push(self, *values: Any) -> "Injected":
        self.queue.extend(values)
        return self

    def _pop(self, kind: str, size: Any) -> Any:
        if not self.queue:
            raise AssertionError(f"reference asked for one more draw ({kind}, size {size}) than was injected")
        v = self.queue.popleft()
        want = () if size is None else tuple(np.atleast_1d(size))
        got = np.shape(v)
        if got != want:
            raise AssertionError(f"{kind}: injected draw of shape {got}, reference asks for {want}")
        return v

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        return self._pop("normal", size)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        return self._pop("uniform", size)

    def randint(self, low: int, high: int | None = None, size: Any = None) -> Any:
        return self._pop("randint", size)

    def random_sample(self, size: Any = None) -> Any:
        return self._pop("random_sample", size)

    def poisson(self, lam: Any = 1.0, size: Any = None) -> Any:
        return self._pop("poisson", np.shape(lam) if size is None else size)

    def assert_used(self) -> None:
        if self.queue:
            raise AssertionError(f"{len(self.queue)} injected draws were not used by the reference")


# --------------------------------------------------------------------------------------------- helpers


def _gaussian(x: np.ndarray, sigma: float, **kw: Any) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(x, sigma=sigma, **kw)


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    from scipy.ndimage import zoom as scizoom

    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = scizoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


def _imagemagick_motion_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's 8-bit motion blur via ``imagecorruptions._motion_blur`` (its NumPy port), rounded to uint8."""
    from benchmarks.bench_corruptions import load_imagecorruptions

    ic = load_imagecorruptions()
    if ic is None:
        raise RuntimeError("the motion-blur reference needs the imagecorruptions package (pip install -e .[dev])")
    import imagecorruptions.corruptions as icc

    out = icc._motion_blur(np.asarray(img, dtype=np.float64), radius=radius, sigma=sigma, angle=angle)
    return np.round(np.clip(out, 0, 255)).astype(np.uint8)


def plasma_fractal(draws: Any, mapsize: int = 32, wibbledecay: float = 3) -> np.ndarray:
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * draws.uniform(-wibble, wibble, array.shape)

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


def disk(radius: float, alias_blur: float = 0.1, dtype: Any = np.float32) -> np.ndarray:
    import cv2

    grid = np.arange(-8, 8 + 1) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    d = np.array((xx**2 + yy**2) <= radius**2, dtype=dtype)
    d /= np.sum(d)
    return cv2.GaussianBlur(d, ksize=ksize, sigmaX=alias_blur)


_FROST_CACHE: list[np.ndarray] = []


def frost_textures() -> list[np.ndarray]:
    """The five frost textures at CIFAR scale, BGR as ``cv2.imread`` gives them."""
    if not _FROST_CACHE:
        import cv2

        for i in range(1, 6):
            t = cv2.imread(str(FROST_DIR / f"frost{i}_cifar.png"))
            if t is None:
                raise FileNotFoundError(FROST_DIR / f"frost{i}_cifar.png")
            _FROST_CACHE.append(t)
    return _FROST_CACHE


# --------------------------------------------------------------------------------------------- corruptions
# Each returns the generator's float result; :func:`corrupt` applies its final ``np.uint8(...)``.


def gaussian_noise(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    c = GAUSSIAN_NOISE[s - 1]
    x = np.array(x) / 255.0
    return np.clip(x + draws.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    c = SHOT_NOISE[s - 1]
    x = np.array(x) / 255.0
    return np.clip(draws.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    """``sk.util.random_noise(x, mode='s&p', amount=c)`` written out: each value flipped with probability c
    (``random < c``, as the generator-era ``np.random.choice([True, False], p=[c, 1 - c])``), a flipped value salted
    (1) with probability 1/2, else peppered (0); the result clipped to [0, 1]."""
    c = IMPULSE_NOISE[s - 1]
    x = np.array(x) / 255.0
    out = x.copy()
    flipped = draws.random_sample(x.shape) < c
    salted = draws.random_sample(x.shape) < 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return np.clip(out, 0, 1) * 255


def speckle_noise(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    c = SPECKLE_NOISE[s - 1]
    x = np.array(x) / 255.0
    return np.clip(x + x * draws.normal(size=x.shape, scale=c), 0, 1) * 255


def gaussian_blur(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    c = GAUSSIAN_BLUR[s - 1]
    x = _gaussian(np.array(x) / 255.0, c, channel_axis=-1)
    return np.clip(x, 0, 1) * 255


def glass_blur(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    """The generator's loop verbatim, including its "swap" on views (a copy: see corruptions/blur.py, GLASS)."""
    c = GLASS_BLUR[s - 1]
    x = np.uint8(_gaussian(np.array(x) / 255.0, c[0], channel_axis=-1) * 255)
    for _ in range(c[2]):
        for h in range(32 - c[1], c[1], -1):
            for w in range(32 - c[1], c[1], -1):
                dx, dy = draws.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(_gaussian(x / 255.0, c[0], channel_axis=-1), 0, 1) * 255


def defocus_blur(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    import cv2

    c = DEFOCUS_BLUR[s - 1]
    x = np.array(x) / 255.0
    kernel = disk(radius=c[0], alias_blur=c[1])
    channels = np.array([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]).transpose((1, 2, 0))
    return np.clip(channels, 0, 1) * 255


def motion_blur(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    c = MOTION_BLUR[s - 1]
    return _imagemagick_motion_blur(np.array(x), c[0], c[1], draws.uniform(-45, 45))


def zoom_blur(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    c = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.01),
         np.arange(1, 1.26, 0.01)][s - 1]
    x = (np.array(x) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for z in c:
        out += clipped_zoom(x, z)
    return np.clip((x + out) / (len(c) + 1), 0, 1) * 255


def snow(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    import cv2

    c = SNOW[s - 1]
    x = np.array(x, dtype=np.float32) / 255.0
    layer = draws.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = clipped_zoom(layer[..., np.newaxis], c[2])
    layer[layer < c[3]] = 0
    layer8 = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)  # PIL 'L' image, PNG round trip
    layer = _imagemagick_motion_blur(layer8, c[4], c[5], draws.uniform(-135, -45)) / 255.0
    layer = layer[..., np.newaxis]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(32, 32, 1) * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def frost(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    c = FROST[s - 1]
    idx = draws.randint(5)
    fr = frost_textures()[idx]
    x_start, y_start = draws.randint(0, fr.shape[0] - 32), draws.randint(0, fr.shape[1] - 32)
    fr = fr[x_start : x_start + 32, y_start : y_start + 32][..., [2, 1, 0]]
    return np.clip(c[0] * np.array(x) + c[1] * fr, 0, 255)


def fog(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    c = FOG[s - 1]
    x = np.array(x) / 255.0
    max_val = x.max()
    x = x + c[0] * plasma_fractal(draws, wibbledecay=c[1])[:32, :32][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1) * 255


def spatter(x: np.ndarray, s: int, draws: Any) -> np.ndarray:
    import cv2

    c = SPATTER[s - 1]
    x = np.array(x, dtype=np.float32) / 255.0
    liquid = draws.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    liquid = _gaussian(liquid, c[2])
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
        m = cv2.cvtColor(liquid * dist, cv2.COLOR_GRAY2BGRA)
        m /= np.max(m, axis=(0, 1))
        m *= c[4]
        color = np.concatenate((175 / 255.0 * np.ones_like(m[..., :1]), 238 / 255.0 * np.ones_like(m[..., :1]),
                                238 / 255.0 * np.ones_like(m[..., :1])), axis=2)
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR) * 255
    m = np.where(liquid > c[3], 1, 0)
    m = _gaussian(m.astype(np.float32), c[4])
    m[m < 0.8] = 0
    color = np.concatenate((63 / 255.0 * np.ones_like(x[..., :1]), 42 / 255.0 * np.ones_like(x[..., :1]),
                            20 / 255.0 * np.ones_like(x[..., :1])), axis=2)
    color *= m[..., np.newaxis]
    x *= 1 - m[..., np.newaxis]
    return np.clip(x + color, 0, 1) * 255


def contrast(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    c = CONTRAST[s - 1]
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def brightness(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    import skimage.color

    c = BRIGHTNESS[s - 1]
    x = skimage.color.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255


def saturate(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    import skimage.color

    c = SATURATE[s - 1]
    x = skimage.color.rgb2hsv(np.array(x) / 255.0)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(skimage.color.hsv2rgb(x), 0, 1) * 255


def jpeg_compression(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(x, dtype=np.uint8)).save(buf, "JPEG", quality=JPEG[s - 1])
    return np.asarray(Image.open(buf).convert("RGB"))


def pixelate(x: np.ndarray, s: int, draws: Any = None) -> np.ndarray:
    from PIL import Image

    c = PIXELATE[s - 1]
    im = Image.fromarray(np.asarray(x, dtype=np.uint8))
    im = im.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
    return np.asarray(im)


def elastic_transform(image: np.ndarray, s: int, draws: Any) -> np.ndarray:
    import cv2
    from scipy.ndimage import map_coordinates

    imsize = 32
    c = tuple(imsize * v for v in ELASTIC[s - 1])
    image = np.array(image, dtype=np.float32) / 255.0
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32([center_square + square_size, [center_square[0] + square_size, center_square[1] - square_size],
                       center_square - square_size])
    pts2 = pts1 + draws.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    m = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, m, shape_size[::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (_gaussian(draws.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dy = (_gaussian(draws.uniform(-1, 1, size=shape[:2]), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return np.clip(map_coordinates(image, indices, order=1, mode="reflect").reshape(shape), 0, 1) * 255


REFERENCES: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f
    for f in (gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur, snow,
              frost, fog, brightness, contrast, elastic_transform, pixelate, jpeg_compression, speckle_noise,
              gaussian_blur, spatter, saturate)
}


def corrupt(name: str, image: np.ndarray, severity: int, draws: Any = None) -> np.ndarray:
    """One uint8 ``(32, 32, 3)`` image through the generator's ``name`` at ``severity``, stored as the generator
    stores it (``np.uint8(...)``, truncating). ``draws``: a ``np.random.RandomState`` or :class:`Injected`."""
    if draws is None:
        draws = np.random.RandomState(0)
    return np.uint8(REFERENCES[name](image, severity, draws))

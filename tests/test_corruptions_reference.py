"""Corruptions against Hendrycks & Dietterich's CIFAR generator, pixel by pixel on the same images.

The reference is ``benchmarks/cifar_c_reference.py``: the statements of ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness) one image at a time with NumPy / SciPy / scikit-image / OpenCV / Pillow, the
CIFAR-10-C constants written out again there (so a wrong constant in the package fails). Random corruptions: the
package runs with a recording random source and the reference receives exactly those draws (``Injected``), one
image's share each, in the order the generator's statements consume them; the two are then compared value by value.

Tolerances (stated per test, measured on 8 real CIFAR-10 test images x 5 severities): exact where both sides do
the same arithmetic (JPEG, shot / impulse noise, glass_blur: its copies and its float64 Gaussians in SciPy's
summation order, elastic_transform: OpenCV's float32 warpAffine and SciPy's map_coordinates operation by
operation, each step also checked bit for bit against the library on random inputs); the other noises up to the
float32-vs-float64 rounding of values that land exactly on an 8-bit boundary; within one 8-bit level on >= 99.9 %
of the values for the filters (float32 matrix products vs SciPy/OpenCV float64 or fixed-point kernels).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from robustbench_nas import corruptions
from robustbench_nas.corruptions.registry import Rng, info, make_generator

cv2 = pytest.importorskip("cv2")
skimage = pytest.importorskip("skimage")
from PIL import Image  # noqa: E402
from scipy.ndimage import zoom as scizoom  # noqa: E402

from benchmarks import cifar_c_reference as ref  # noqa: E402


def _imagecorruptions():
    """``imagecorruptions`` 1.1.2 (the motion-blur reference); skip when it is not installed."""
    from benchmarks.bench_corruptions import load_imagecorruptions

    if load_imagecorruptions() is None:
        pytest.skip("imagecorruptions not installed (pip install -e .[dev])")


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


# ---------------------------------------------------------------- deterministic corruptions


def ref_jpeg(x: np.ndarray, severity: int) -> np.ndarray:
    return ref.corrupt("jpeg_compression", x, severity)


#: name -> (fraction of values within one 8-bit level, largest difference in levels), all 5 severities
DETERMINISTIC = {
    "gaussian_blur": (0.999, 1),
    "defocus_blur": (0.999, 1),
    "zoom_blur": (0.999, 1),
    "contrast": (0.999, 1),
    "brightness": (0.999, 1),
    "saturate": (0.999, 1),
    "pixelate": (0.999, 1),
    "jpeg_compression": (1.0, 0),
}


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_deterministic_matches_reference(name: str, images: np.ndarray) -> None:
    frac, max_diff = DETERMINISTIC[name]
    for s in range(1, 6):
        expect = np.stack([ref.corrupt(name, im, s) for im in images])
        _agree(_ours(name, images, s), expect, frac=frac, max_diff=max_diff)


def test_jpeg_bit_exact(images: np.ndarray) -> None:
    """Integer ISLOW DCT + libjpeg colour/chroma arithmetic: identical bytes to Pillow (libjpeg-turbo), including
    quality 50 on JPEG-decoded images, where coefficients sit exactly on rounding ties."""
    for s in range(1, 6):
        expect = np.stack([ref_jpeg(im, s) for im in images])
        assert np.array_equal(_ours("jpeg_compression", images, s), expect)


@pytest.mark.parametrize("shape", [(16, 16), (24, 40), (17, 23)])
def test_jpeg_other_sizes_bit_exact(shape: tuple[int, int]) -> None:
    """Partial MCUs (odd sizes included) are padded the way libjpeg pads them, so other sizes are exact too."""
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (3, *shape, 3)).astype(np.uint8)
    expect = np.stack([ref_jpeg(im, 3) for im in imgs])
    assert np.array_equal(_ours("jpeg_compression", imgs, 3), expect)


@pytest.mark.parametrize("quality", [1, 10, 95, 100])
def test_jpeg_codec_extreme_patterns_bit_exact(quality: int) -> None:
    """Checkerboards and saturated noise give the largest DCT coefficients: the 32-bit integer pipeline must
    still match libjpeg at every quality (no overflow, same clamping)."""
    from robustbench_nas.corruptions.jpeg import jpeg_roundtrip

    a = (np.indices((32, 32)).sum(0) % 2) * 255
    imgs = [np.stack([a, 255 - a, a], -1), np.zeros((32, 32, 3)), np.full((32, 32, 3), 255),
            np.random.default_rng(0).choice([0, 255], (32, 32, 3))]
    for im in imgs:
        im = im.astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=quality)
        expect = np.asarray(Image.open(buf))
        ours = jpeg_roundtrip(torch.from_numpy(im).permute(2, 0, 1)[None].float(), quality)[0].permute(1, 2, 0)
        assert np.array_equal(ours.numpy().astype(np.uint8), expect)


# ---------------------------------------------------------------- random corruptions, same draws


class RecordingRng(Rng):
    """The package's random source, recording every draw it hands out (as NumPy arrays, in order)."""

    def __init__(self, seed: int) -> None:
        super().__init__(make_generator(seed), torch.device("cpu"), torch.float32)
        self.log: list[tuple[str, np.ndarray]] = []

    def _rec(self, kind: str, t: torch.Tensor) -> torch.Tensor:
        self.log.append((kind, t.numpy().copy()))
        return t

    def uniform(self, *a: Any, **k: Any) -> torch.Tensor:
        return self._rec("uniform", super().uniform(*a, **k))

    def normal(self, *a: Any, **k: Any) -> torch.Tensor:
        return self._rec("normal", super().normal(*a, **k))

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        return self._rec("poisson", super().poisson(rate))

    def integers(self, *a: Any, **k: Any) -> torch.Tensor:
        return self._rec("integers", super().integers(*a, **k))


def _hwc(a: np.ndarray) -> np.ndarray:
    """One image's (C, H, W) draw in the generator's (H, W, C) layout, float64 as NumPy draws."""
    return np.ascontiguousarray(a.transpose(1, 2, 0)).astype(np.float64)


def _per_image(name: str, log: list[tuple[str, np.ndarray]], k: int) -> ref.Injected:
    """Image ``k``'s share of the package's draws, in the order the generator's statements consume them."""
    kinds = [kind for kind, _ in log]
    d = [v for _, v in log]
    if name in ("gaussian_noise", "speckle_noise"):
        assert kinds == ["normal"]
        return ref.Injected(_hwc(d[0][k]))
    if name == "shot_noise":
        assert kinds == ["poisson"]
        return ref.Injected(_hwc(d[0][k]))
    if name == "impulse_noise":  # flipped, then salted
        assert kinds == ["uniform", "uniform"]
        return ref.Injected(_hwc(d[0][k]), _hwc(d[1][k]))
    if name == "glass_blur":  # (passes, rows, cols, (dx, dy), images): one randint(size=(2,)) per visited pixel
        assert kinds == ["integers"]
        steps = d[0][..., k].reshape(-1, 2)
        return ref.Injected(*[steps[i] for i in range(len(steps))])
    if name == "motion_blur":
        assert kinds == ["uniform"]
        return ref.Injected(float(d[0][k]))
    if name == "snow":  # layer, then angle
        assert kinds == ["normal", "uniform"]
        return ref.Injected(d[0][k, 0].astype(np.float64), float(d[1][k]))
    if name == "frost":  # texture, then the crop's corner: randint(0, size - 32) as floor(u * (size - 32))
        assert kinds == ["integers", "uniform"]
        idx = int(d[0][k])
        tex = ref.frost_textures()[idx]
        u = d[1][k]
        return ref.Injected(idx, int(np.floor(u[0] * (tex.shape[0] - 32))), int(np.floor(u[1] * (tex.shape[1] - 32))))
    if name == "fog":  # one uniform per wibbledmean call, batched over images
        assert set(kinds) == {"uniform"}
        return ref.Injected(*[v[k] for v in d])
    if name == "elastic_transform":  # affine jitter, then dx and dy fields
        assert kinds == ["uniform"] * 3
        return ref.Injected(d[0][k], d[1][k, 0], d[2][k, 0])
    if name == "spatter":
        assert kinds == ["normal"]
        return ref.Injected(d[0][k, 0])
    raise KeyError(name)


def _ours_and_reference(name: str, imgs: np.ndarray, severity: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    rng = RecordingRng(seed)
    y = info(name).fn(x.contiguous(), severity, rng)
    ours = (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    expect = []
    for k, im in enumerate(imgs):
        draws = _per_image(name, rng.log, k)
        expect.append(ref.corrupt(name, im, severity, draws))
        draws.assert_used()
    return ours, np.stack(expect)


def test_recorded_draws_are_the_public_functions_draws(images: np.ndarray) -> None:
    """The raw function with the recording source gives what ``robustbench_nas.corruptions.get(name)`` gives for the same seed."""
    for name in ("glass_blur", "impulse_noise", "elastic_transform", "frost"):
        ours, _ = _ours_and_reference(name, images[:2], 3, seed=5)
        assert np.array_equal(ours, _ours(name, images[:2], 3, seed=5)), name


#: name -> (fraction of values that must be identical, fraction within one 8-bit level, largest difference);
#: measured on the 8 test images x 5 severities (worst severity): see the module docstring for the reasons.
RANDOM_TOLERANCE = {
    # float32 x + noise vs float64: a value within float rounding of an 8-bit boundary truncates apart (<= 2e-4)
    "gaussian_noise": (0.9995, 1.0, 1),
    "shot_noise": (1.0, 1.0, 0),
    "impulse_noise": (1.0, 1.0, 0),
    "speckle_noise": (0.9995, 1.0, 1),
    # the pixel copies are exact (test_glass_blur_copy_indices_equal_the_generator_loop); the Gaussian blurs run
    # in float64 in SciPy's summation order (test_gaussian_filter_float64_bit_exact_with_scipy), so flat regions
    # truncate to the same level (float32 matrix products split 1.4 % of the values by one level)
    "glass_blur": (1.0, 1.0, 0),
    "motion_blur": (0.9995, 1.0, 1),
    "snow": (0.9995, 1.0, 1),
    "frost": (0.9995, 1.0, 1),
    "fog": (0.9995, 1.0, 1),
    "spatter": (0.9995, 1.0, 1),
    # OpenCV's float32 warpAffine (FMA coordinates and lerps) and SciPy's float64 map_coordinates reproduced
    # operation by operation (test_warp_affine_bit_exact_with_cv2, test_map_coordinates_bit_exact_with_scipy)
    "elastic_transform": (1.0, 1.0, 0),
}


@pytest.mark.parametrize("name", list(RANDOM_TOLERANCE))
def test_random_corruption_pixel_exact_given_the_same_draws(name: str, images: np.ndarray) -> None:
    if name in ("motion_blur", "snow"):
        _imagecorruptions()
    exact_frac, within_frac, max_diff = RANDOM_TOLERANCE[name]
    for s in range(1, 6):
        ours, expect = _ours_and_reference(name, images, s, seed=s)
        d = np.abs(ours.astype(int) - expect.astype(int))
        got = (float((d == 0).mean()), float((d <= 1).mean()), int(d.max()))
        assert got[0] >= exact_frac and got[1] >= within_frac and got[2] <= max_diff, (name, s, got)


def test_glass_blur_swap_line_is_a_copy_on_numpy_views() -> None:
    """The generator's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an (H, W, 3) array copies, it does not swap."""
    x = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    a, b = x[0, 0].copy(), x[1, 1].copy()
    x[0, 0], x[1, 1] = x[1, 1], x[0, 0]
    assert np.array_equal(x[0, 0], b) and np.array_equal(x[1, 1], b) and not np.array_equal(x[1, 1], a)


def test_glass_blur_would_fail_with_a_true_swap(images: np.ndarray) -> None:
    """The comparison can fail: a reference that really swaps (``.copy()`` on the right) disagrees with ours."""
    ours, expect = _ours_and_reference("glass_blur", images[:3], 3, seed=3)
    assert float((ours != expect).mean()) < 0.02
    rng = RecordingRng(3)
    info("glass_blur").fn(torch.from_numpy(images[:3]).permute(0, 3, 1, 2).float().contiguous() / 255, 3, rng)
    swapped = []
    for k, im in enumerate(images[:3]):
        draws = _per_image("glass_blur", rng.log, k)
        sigma = ref.GLASS_BLUR[2][0]
        x = np.uint8(ref._gaussian(im / 255.0, sigma, channel_axis=-1) * 255)
        for h in range(31, 1, -1):
            for w in range(31, 1, -1):
                dx, dy = draws.randint(-1, 1, size=(2,))
                x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w].copy()
        swapped.append(np.uint8(np.clip(ref._gaussian(x / 255.0, sigma, channel_axis=-1), 0, 1) * 255))
    assert float((np.stack(swapped) != ours).mean()) > 0.05


def test_glass_blur_strength_matches_the_generator_on_real_images(cifar10_npz) -> None:
    """Mean |x - clean| per severity on 200 real images: the generator's own figures (issue 13, made with the
    unchanged make_cifar_c.py: 11.6, 11.7, 11.4 /255 at severities 1-3) within 0.5/255; the true swap gave 16.6."""
    with np.load(cifar10_npz) as z:
        x = torch.from_numpy(z["x"][np.arange(0, 10000, 50)].transpose(0, 3, 1, 2).copy()).float() / 255
    f = corruptions.get("glass_blur")
    for s, published in zip((1, 2, 3), (11.6, 11.7, 11.4)):
        mad = float((f(x, s, generator=make_generator(0)) - x).abs().mean() * 255)
        assert abs(mad - published) <= 0.5, (s, mad)


@pytest.mark.parametrize("shape, delta", [((32, 32), 1), ((16, 16), 1), ((24, 40), 1), ((16, 20), 2)])
def test_glass_blur_copy_indices_equal_the_generator_loop(shape: tuple[int, int], delta: int) -> None:
    """Where each output pixel comes from, exactly: the generator's loop (its copy, on an index image) with the
    package's draws; other sizes use the same loop with 32 replaced by the image's height and width; delta = 2 (not
    a CIFAR constant) exercises the sequential path, where a partner may already have been written in the pass."""
    from robustbench_nas.corruptions.blur import _glass_source_index

    n, (h, w) = 2, shape
    rng = RecordingRng(1)
    src = _glass_source_index(n, h, w, delta, 2, rng, torch.device("cpu")).numpy()
    d = rng.log[0][1]
    for k in range(n):
        idx = np.arange(h * w).reshape(h, w)
        for it in range(2):
            for i, r in enumerate(range(h - delta, delta, -1)):
                for j, c in enumerate(range(w - delta, delta, -1)):
                    dx, dy = d[it, i, j, :, k]
                    idx[r, c] = idx[r + dy, c + dx]
        assert np.array_equal(src[k], idx.ravel())


def _opencv_float_warp() -> None:
    """OpenCV >= 4.11 warps float32 images in float32 arithmetic; older releases used 1/32-pixel fixed point."""
    major, minor = (int(v) for v in cv2.__version__.split(".")[:2])
    if (major, minor) < (4, 11):
        pytest.skip(f"OpenCV {cv2.__version__} warps on a 1/32-pixel fixed-point grid (float kernels since 4.11)")


@pytest.mark.parametrize("shape", [(32, 32, 3), (24, 40, 3), (17, 23, 1), (64, 48, 4), (5, 7, 3)])
def test_warp_affine_bit_exact_with_cv2(shape: tuple[int, int, int]) -> None:
    """Our warp and ``cv2.warpAffine(BORDER_REFLECT_101)`` on random float32 images, same M: identical floats
    (shifts up to ~15 pixels and scales of +-15 % reach far into the reflected border; widths that are not
    multiples of 16 exercise OpenCV's scalar tail)."""
    from robustbench_nas.corruptions._ops import opencv_affine_inverse, opencv_warp_affine_reflect101

    _opencv_float_warp()
    h, w, c = shape
    rng = np.random.default_rng(h * w + c)
    for _ in range(8):
        img = rng.random((h, w, c), dtype=np.float32)
        m = np.array([[1.0, 0, 0], [0, 1.0, 0]]) + rng.normal(0, 0.15, (2, 3)) * [1, 1, 10]
        expect = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT_101).reshape(h, w, c)
        m_inv = opencv_affine_inverse(torch.from_numpy(m)[None])
        assert np.array_equal(m_inv[0].numpy(), cv2.invertAffineTransform(m))
        x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
        ours = opencv_warp_affine_reflect101(x, m_inv)[0].permute(1, 2, 0).numpy()
        assert ours.dtype == np.float32
        assert np.array_equal(ours, expect), f"{int((ours != expect).sum())} of {ours.size} values differ"


def test_warp_affine_of_the_generator_matrices_bit_exact_with_cv2(images: np.ndarray) -> None:
    """The generator's own matrices (getAffineTransform of float32 points, jitter of every severity) on the
    test images, batched: identical to per-image cv2.warpAffine."""
    from robustbench_nas.corruptions._ops import opencv_warp_affine_reflect101
    from robustbench_nas.corruptions.digital import ELASTIC, _affine_inverse

    _opencv_float_warp()
    rng = np.random.default_rng(3)
    imgs = images.astype(np.float32) / 255
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    pts1 = np.float32([[16 + 10, 16 + 10], [16 + 10, 16 - 10], [16 - 10, 16 - 10]])
    for _, _, jit in ELASTIC:
        jitter = rng.uniform(-32 * jit, 32 * jit, (len(imgs), 3, 2))
        ours = opencv_warp_affine_reflect101(x, _affine_inverse(32, 32, torch.from_numpy(jitter)))
        for k, im in enumerate(imgs):
            m = cv2.getAffineTransform(pts1, pts1 + jitter[k].astype(np.float32))
            expect = cv2.warpAffine(im, m, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
            assert np.array_equal(ours[k].permute(1, 2, 0).numpy(), expect)


@pytest.mark.parametrize("shape", [(32, 32, 3), (24, 40, 3), (17, 23, 1)])
def test_map_coordinates_bit_exact_with_scipy(shape: tuple[int, int, int]) -> None:
    """Our displaced sampling and ``scipy.ndimage.map_coordinates(order=1, mode='reflect')`` of float32 images at
    float64 coordinates up to 12 pixels outside: identical float32 results."""
    from scipy.ndimage import map_coordinates

    from robustbench_nas.corruptions._ops import scipy_map_coordinates_linear_reflect

    h, w, c = shape
    rng = np.random.default_rng(h + w)
    for k in range(6):
        img = rng.random((h, w, c), dtype=np.float32)
        rows = np.arange(h)[:, None] + rng.uniform(-1, 1, (h, w)) * 2 * (k + 1)
        cols = np.arange(w)[None, :] + rng.uniform(-1, 1, (h, w)) * 2 * (k + 1)
        expect = np.stack([map_coordinates(img[..., j], (rows, cols), order=1, mode="reflect") for j in range(c)])
        x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
        ours = scipy_map_coordinates_linear_reflect(x, torch.from_numpy(rows)[None], torch.from_numpy(cols)[None])
        assert ours.dtype == torch.float32
        assert np.array_equal(ours[0].numpy(), expect), f"{int((ours[0].numpy() != expect).sum())} values differ"


@pytest.mark.parametrize("sigma, mode", [(0.05, "nearest"), (0.25, "nearest"), (0.4, "nearest"), (1.5, "reflect")])
def test_gaussian_filter_float64_bit_exact_with_scipy(sigma: float, mode: str) -> None:
    """Our float64 Gaussian and ``scipy.ndimage.gaussian_filter`` (channel sigma 0, as skimage passes it) on
    random images and on 8-bit levels (flat regions, where the summation order decides the truncated level)."""
    from scipy.ndimage import gaussian_filter

    from robustbench_nas.corruptions._ops import scipy_gaussian_filter_float64

    rng = np.random.default_rng(int(sigma * 100))
    imgs = [rng.random((32, 32, 3)), rng.integers(0, 4, (32, 32, 3)) * 60 / 255.0,
            np.kron(rng.integers(0, 256, (4, 5, 3)), np.ones((6, 6, 1))) / 255.0]
    for im in imgs:
        expect = gaussian_filter(im, (sigma, sigma, 0), mode=mode, truncate=4.0)
        ours = scipy_gaussian_filter_float64(torch.from_numpy(im).permute(2, 0, 1)[None], sigma, mode)
        assert np.array_equal(ours[0].permute(1, 2, 0).numpy(), expect)


def test_fixed_point_warp_interpolation_bit_exact_with_cv2_remap() -> None:
    """OpenCV < 4.11's warp (what made the published files) cannot run here, but its second half can: our
    fixed-point warp equals ``cv2.remap`` fed its own integer coordinates and 1/32 fractions (CV_16SC2 + CV_16UC1
    maps, the ``remapBilinear`` table path that every OpenCV version keeps)."""
    from robustbench_nas.corruptions._ops import (
        opencv_fixed_point_sources,
        opencv_warp_affine_reflect101,
        opencv_warp_affine_reflect101_fixed_point,
    )

    rng = np.random.default_rng(11)
    for h, w, c in [(32, 32, 3), (24, 40, 3), (17, 23, 1)]:
        img = rng.random((h, w, c), dtype=np.float32)
        m = torch.from_numpy(np.array([[1.0, 0, 0], [0, 1.0, 0]]) + rng.normal(0, 0.15, (2, 3)) * [1, 1, 10])[None]
        ix, iy, tx, ty = (t[0].numpy() for t in opencv_fixed_point_sources(m, h, w))
        xy = np.stack([ix, iy], -1).astype(np.int16)
        alpha = (ty * 32 + tx).astype(np.uint16)
        expect = cv2.remap(img, xy, alpha, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101).reshape(h, w, c)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
        ours = opencv_warp_affine_reflect101_fixed_point(x, m)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(ours, expect)
        # the fractions really are on a 1/32 grid, and the warp is the float one up to that rounding
        near = opencv_warp_affine_reflect101_fixed_point(x, m) - opencv_warp_affine_reflect101(x, m)
        assert 0 < float(near.abs().max()) < 0.1


def test_published_files_warp_is_within_a_few_levels(images: np.ndarray, monkeypatch) -> None:
    """The docs' figure for the OpenCV < 4.11 arithmetic (which made the published files): elastic_transform with
    the fixed-point warp against the reference (OpenCV >= 4.11), measured on the 8 test images: 81.0-86.8 %
    identical, >= 99.43 % within one level, at most 3 levels apart (200 images: 82.7-88.2 %, >= 99.58 %, 3);
    asserted with a margin, and identical < 92 % so that the two arithmetics are shown to differ."""
    import robustbench_nas.corruptions.digital as digital
    from robustbench_nas.corruptions._ops import opencv_warp_affine_reflect101_fixed_point

    _opencv_float_warp()
    monkeypatch.setattr(digital, "opencv_warp_affine_reflect101", opencv_warp_affine_reflect101_fixed_point)
    for s in range(1, 6):
        ours, expect = _ours_and_reference("elastic_transform", images, s, seed=s)
        d = np.abs(ours.astype(int) - expect.astype(int))
        assert 0.78 <= float((d == 0).mean()) <= 0.92 and float((d <= 1).mean()) >= 0.99 and d.max() <= 3, s

"""Registry of corruptions by name, input checks, and seeded random draws.

A corruption is registered with :func:`register_corruption` and fetched with :func:`get`. ``get(name)`` returns
a checked callable ``f(x, severity, generator=None) -> tensor``; the registered function itself receives
an ``(N, 3, H, W)`` float tensor in [0, 1] and a :class:`Rng`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import torch

from robustbench_nas.utils.registry import Registry
from robustbench_nas.utils.seeding import derive_seed, make_generator

from ._rng import Rng  # noqa: F401  (re-exported: the base class of the draws)

if TYPE_CHECKING:
    from robustbench_nas.utils.streams import ImageStreams

#: The 15 corruptions of CIFAR-10-C / CIFAR-100-C (and of Jung et al. 2023), in Hendrycks & Dietterich's order.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: The 4 held-out ("validation") corruptions of Hendrycks & Dietterich.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


class CorruptionFn(Protocol):
    """The public signature: ``f(x, severity, generator=None) -> tensor`` of the same shape and dtype."""

    def __call__(self, x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class CorruptionInfo:
    """A registered corruption.

    Attributes:
        name: registry key (the CIFAR-10-C file stem, e.g. ``"gaussian_noise"``).
        family: ``"noise"``, ``"blur"``, ``"weather"`` or ``"digital"``.
        random: whether the output depends on the generator.
        fn: the raw function ``fn(x (N, 3, H, W) in [0, 1], severity, rng) -> tensor``.
    """

    name: str
    family: str
    random: bool
    fn: Callable[[torch.Tensor, int, Rng], torch.Tensor]


#: the corruptions by name
CORRUPTIONS: Registry[CorruptionInfo] = Registry("corruption")
FAMILIES: tuple[str, ...] = ("noise", "blur", "weather", "digital")


def register_corruption(name: str, family: str, random: bool) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn(x, severity, rng)`` under ``name`` (error on duplicates or unknown family)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown corruption family {family!r}; expected one of {FAMILIES}")

    def deco(fn: Callable) -> Callable:
        CORRUPTIONS.add(name, CorruptionInfo(name=name, family=family, random=random, fn=fn))
        return fn

    return deco


def list_corruptions(subset: str = "all", pattern: str | None = None) -> list[str]:
    """Names of the registered corruptions.

    Arguments:
        subset: ``"all"`` (the 15 benchmark ones then the 4 extras), ``"benchmark"`` (the 15 of CIFAR-10-C and
            Jung et al. 2023), ``"extra"`` (speckle_noise, gaussian_blur, spatter, saturate), or a family name
            (``"noise"``, ``"blur"``, ``"weather"``, ``"digital"``; extras included).
        pattern: optional shell-style filter on the names (``"*_noise"``).
    """
    registered = CORRUPTIONS.list(pattern)
    order = [n for n in BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS if n in registered]
    order += sorted(n for n in registered if n not in order)
    if subset == "all":
        return order
    if subset == "benchmark":
        return [n for n in order if n in BENCHMARK_CORRUPTIONS]
    if subset == "extra":
        return [n for n in order if n in EXTRA_CORRUPTIONS]
    if subset in FAMILIES:
        return [n for n in order if CORRUPTIONS.get(n).family == subset]
    raise ValueError(f"unknown corruption subset {subset!r}; expected 'all', 'benchmark', 'extra' or one of {FAMILIES}")


def info(name: str) -> CorruptionInfo:
    """The :class:`CorruptionInfo` of ``name`` (``KeyError`` listing the known names when unknown)."""
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(list_corruptions())}")
    return CORRUPTIONS.get(name)


def family_of(name: str) -> str:
    """Family (``noise``/``blur``/``weather``/``digital``) of a corruption."""
    return info(name).family


def check_severity(severity: int) -> int:
    """Return ``severity`` as int, or raise ``ValueError`` unless it is an integer in 1..5 (numpy ints accepted)."""
    import numpy as np

    if isinstance(severity, np.integer):
        severity = int(severity)
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return severity


def check_images(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a float tensor ``(N, C, H, W)``, C in {1, 3}, values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype} (divide uint8 images by 255)")
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels (N, C, H, W), got C={x.shape[1]} in shape {tuple(x.shape)}")
    if x.shape[2] < 4 or x.shape[3] < 4:
        raise ValueError(f"images must be at least 4x4 pixels, got {tuple(x.shape[2:])}")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(f"pixel values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def cell_seed(seed: int, name: str, severity: int) -> int:
    """A seed for one (corruption, severity) cell, stable across runs and independent of evaluation order
    (:func:`robustbench_nas.utils.seeding.derive_seed`, form ``"crc32-cell"``)."""
    return derive_seed(int(seed), name, severity, form="crc32-cell")


def get(name: str) -> CorruptionFn:
    """The corruption ``name`` as ``f(x, severity, generator=None) -> tensor``.

    Arguments:
        name: a key of :func:`list_corruptions`.

    The returned function checks its input (float ``(N, C, H, W)``, C in {1, 3}, values in [0, 1], severity
    1..5) and returns a tensor of the same shape, dtype and device, clipped to [0, 1] on 8-bit levels.
    ``generator``: :class:`~robustbench_nas.utils.streams.ImageStreams` (one CPU stream per image: each image's
    corruption is independent of the device and of the other images; what the pipeline uses), a
    ``torch.Generator`` (one stream for the batch, drawn on its device: the numbers depend on the batch and, on a
    GPU, on the device model), or ``None``: a fresh generator seeded with 0 on the images' device (never the global
    RNG), so repeated calls give the same output. Grey images (C=1) are corrupted as RGB with equal channels and
    averaged back.

    Shape:
        x: ``(N, C, H, W)``; output: same.

    Example:
        >>> f = get("fog")
        >>> y = f(torch.rand(8, 3, 32, 32), 3, generator=make_generator(0))
    """
    entry = info(name)

    def corrupt(x: torch.Tensor, severity: int, generator: "torch.Generator | ImageStreams | None" = None) -> torch.Tensor:
        from robustbench_nas.utils.streams import ImageStreams

        from ._image_rng import ImageRng

        sev = check_severity(severity)
        check_images(x)
        if generator is not None and not isinstance(generator, (torch.Generator, ImageStreams)):
            raise ValueError(f"generator must be a torch.Generator, ImageStreams or None, got {type(generator).__name__}")
        if isinstance(generator, ImageStreams) and len(generator) != x.shape[0]:
            raise ValueError(f"generator has per-image streams for {len(generator)} images, the batch has "
                             f"{x.shape[0]} images")
        if x.shape[0] == 0:
            return x.clone()
        gen = generator if generator is not None else make_generator(0, x.device)
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xin = x.to(work_dtype)
        grey = xin.shape[1] == 1
        if grey:
            xin = xin.expand(-1, 3, -1, -1)
        rng = ImageRng(gen, x.device, work_dtype) if isinstance(gen, ImageStreams) else Rng(gen, x.device, work_dtype)
        out = entry.fn(xin.contiguous(), sev, rng)
        if grey:
            # The channels stay (nearly) equal; the mean returns one 8-bit level per pixel.
            out = torch.floor(out.mean(1, keepdim=True) * 255.0 + 1e-4) / 255.0
        return out.to(x.dtype)

    corrupt.__name__ = name
    corrupt.__doc__ = entry.fn.__doc__
    return corrupt

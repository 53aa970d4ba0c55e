"""Common corruptions (Hendrycks & Dietterich, ICLR 2019) on image batches, with the CIFAR-10-C constants.

The 15 benchmark corruptions of CIFAR-10-C / CIFAR-100-C (those of Jung et al. 2023) and the 4 held-out extras,
each a pure function of a float batch ``(N, C, H, W)`` in [0, 1] on any device, seeded by an explicit
``torch.Generator``, clipped to [0, 1] and quantised to 8-bit levels as the published ``.npy`` files are.
Constants: ``ImageNet-C/create_c/make_cifar_c.py`` in github.com/hendrycks/robustness.

Example:
    >>> from robustbench_nas import corruptions
    >>> import torch
    >>> corruptions.list_corruptions("benchmark")[:3]
    ['gaussian_noise', 'shot_noise', 'impulse_noise']
    >>> fog = corruptions.get("fog")
    >>> y = fog(torch.rand(4, 3, 32, 32), 3, generator=corruptions.make_generator(0))
    >>> res = corruptions.evaluate(model, x, labels, ["fog"], severities=(1, 5))   # doctest: +SKIP
"""

from __future__ import annotations

from . import blur, digital, noise, spatter, weather  # noqa: F401  (registration side effects)
from .evaluate import CorruptionResult, CorruptionSummary, evaluate, results_to_records, summarize
from .registry import (
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    FAMILIES,
    SEVERITIES,
    CorruptionInfo,
    family_of,
    get,
    info,
    list_corruptions,
    make_generator,
    register_corruption,
)
from .sources import CifarCFiles, CorruptionSource, GeneratedSource, write_cifar_c

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "FAMILIES",
    "SEVERITIES",
    "CifarCFiles",
    "CorruptionInfo",
    "CorruptionResult",
    "CorruptionSource",
    "CorruptionSummary",
    "GeneratedSource",
    "evaluate",
    "family_of",
    "get",
    "info",
    "list_corruptions",
    "make_generator",
    "register_corruption",
    "results_to_records",
    "summarize",
    "write_cifar_c",
]

"""``list_proxies`` / ``compute_proxies``: zero-cost proxies of a cell at initialisation."""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import torch
from torch import nn

from ..search_spaces import CIFAR_MEAN, CIFAR_STD, get_search_space
from .registry import PROXIES, get_proxy, proxy_generator, registered  # noqa: F401  (proxy_generator: public here)

log = logging.getLogger(__name__)


#: the proxy engines (:func:`compute_model_proxies`): fast (default), shared (bitwise the reference), separate
ENGINES: tuple[str, ...] = ("fast", "shared", "separate")

def list_proxies(robust: bool | None = None, pattern: str | None = None) -> list[str]:
    """Registered proxy names (registration order); ``robust=True/False`` filters robust proxies in/out,
    ``pattern`` is a shell-style filter on the names (``"grad*"``)."""
    return [n for n in PROXIES.list(pattern) if robust is None or PROXIES.get(n).robust == robust]


def describe_proxies() -> list[dict[str, object]]:
    """One dict per proxy: name, summary, reference, uses_data, uses_labels, robust (for docs and ``--list``)."""
    return [
        {"name": s.name, "summary": s.summary, "reference": s.reference, "uses_data": s.uses_data,
         "uses_labels": s.uses_labels, "robust": s.robust}
        for s in registered().values()
    ]


def init_model(arch: object, seed: int, space: str = "nb201", **model_kwargs: object) -> nn.Module:
    """Build ``arch`` of ``space`` with PyTorch's default initialisation drawn from ``seed`` (global RNG restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return get_search_space(space).build_network(arch, **model_kwargs)  # type: ignore[arg-type]


def _check_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (N, C, H, W) in [0, 1], got {getattr(x, 'shape', type(x))}")
    if x.shape[0] < 2:
        raise ValueError(f"proxies need a batch of at least 2 images, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError(f"x must be in [0, 1] (the models normalise internally), got [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
        raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {tuple(y.shape)} {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")


def compute_model_proxies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    engine: str = "fast",
) -> dict[str, float]:
    """Proxies of an already-built ``model`` (left unchanged: the proxies work on deep copies).

    Arguments:
        model: network taking [0, 1] images (NB201 networks for ``zen``/``croze``).
        x: one batch of images in [0, 1] on the device to use; y: their labels.
        names: proxies (default: all of :func:`list_proxies`).
        seed: seeds each proxy's own generator (:func:`proxy_generator`).
        num_classes: classes of the head (default: the model's ``config['num_classes']``).
        engine: ``"fast"`` (default: shared passes, CRoZe in float32, the input-Hessian eigenvalue exactly from
            the input Jacobian; values within the per-proxy tolerance ``engine.FAST_TOLERANCE`` of the reference),
            ``"shared"`` (proxies that need the same passes get them once, the reference's values bit for bit) or
            ``"separate"`` (the reference: each proxy on its own copy); see :mod:`robustbench_nas.proxies.engine`.

    Shape:
        x ``(N, C, H, W)``, y ``(N,)``.
    """
    from .engine import EngineContext, compute_fast, compute_separate, compute_shared

    engines = dict(zip(ENGINES, (compute_fast, compute_shared, compute_separate)))

    names = list(names) if names is not None else list_proxies()
    for n in names:
        get_proxy(n)  # unknown names fail before any work
    if engine not in engines:
        raise ValueError(f"engine must be one of {sorted(engines)}, got {engine!r}")
    k = int(num_classes if num_classes is not None else getattr(model, "config", {}).get("num_classes", 10))
    _check_batch(x, y, k)
    ectx = EngineContext(seed=int(seed), num_classes=k)
    # the caller's model stays where it is, as it is: the engine works on deep copies
    out = engines[engine](model, x, y, names, ectx)
    for name, value in out.items():
        if not math.isfinite(value):
            log.warning("proxy %s is not finite (%s) for %s", name, value, getattr(model, "arch_str", "model"))
    return out


def compute_proxies(
    arch: object,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    seed: int = 0,
    num_classes: int = 10,
    C: int | None = None,
    N: int | None = None,
    mean: Sequence[float] = CIFAR_MEAN,
    std: Sequence[float] = CIFAR_STD,
    space: str = "nb201",
    engine: str = "fast",
    **network_options: Any,
) -> dict[str, float]:
    """Zero-cost proxies of cell ``arch`` at initialisation, on one batch.

    Builds the network of ``space`` with PyTorch's default initialisation drawn from ``seed`` (global RNG restored),
    on the device of ``x``, then computes each proxy on a private copy (BN handling per proxy as in the
    reference implementations: train-mode BN, or BN removed for synflow/croze).

    Arguments:
        arch: architecture string, index or architecture object of ``space``.
        x: images in [0, 1]; y: labels in [0, num_classes).
        names: proxies to compute (default: all registered, see :func:`list_proxies`).
        seed: initialisation seed and the proxies' random streams.
        num_classes, mean, std: network settings; ``C``, ``N``: NB201's width and depth (default 16 and 5; only
            for spaces whose networks take them).
        space: search-space name (``nb201``, ``nats-sss``).
        engine: ``"fast"`` (default), ``"shared"`` or ``"separate"`` (see :func:`compute_model_proxies`).
        network_options: further options of the space's networks (DARTS: ``layers``); ``None`` values are left out.

    Shape:
        x ``(N, C, H, W)`` with N >= 2, y ``(N,)``.

    Returns:
        ``{proxy name: value}`` in the order of ``names``.

    Example:
        >>> compute_proxies(arch, x, y, ["synflow", "nwot"], seed=0, C=8, N=1)
    """
    options = {k: v for k, v in (("C", C), ("N", N), *network_options.items()) if v is not None}
    model = init_model(arch, seed, space, num_classes=num_classes, mean=mean, std=std, in_channels=int(x.shape[1]),
                       **options)
    return compute_model_proxies(model.to(x.device), x, y, names, seed=seed, num_classes=num_classes, engine=engine)

"""Registry of zero-cost proxies (timm-like ``@register_proxy``).

A proxy function receives a private copy of the network (it may modify it freely), the batch and a
:class:`ProxyContext` (seeded generator, device), and returns one float. The caller's network is never touched:
:func:`robustbench_nas.proxies.compute_proxies` deep-copies it for every proxy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from ..utils.registry import Registry


@dataclass
class ProxyContext:
    """What a proxy may use besides the network and the batch.

    Attributes:
        generator: a CPU ``torch.Generator`` seeded for this proxy (random inputs, re-initialisation, projections).
        num_classes: size of the classifier head.
        seed: the integer seed the generator was derived from (recorded for reproducibility).
    """

    generator: torch.Generator
    num_classes: int
    seed: int


def proxy_generator(name: str, seed: int) -> torch.Generator:
    """The CPU generator a proxy gets: a fixed function of (name, seed), independent of the other proxies run.

    Here, beside :class:`ProxyContext`, so that the reference path (``api``) and the shared-pass engine
    (``engine``) both take it from below instead of importing each other.
    """
    from ..utils.seeding import derive_seed, make_generator

    return make_generator(derive_seed(int(seed), name, form="crc32"))


class ProxyFn(Protocol):
    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float: ...


@dataclass(frozen=True)
class ProxySpec:
    """A registered proxy.

    Attributes:
        name: registry key (also the column name in tables and stores).
        fn: the implementation, ``fn(net_copy, x, y, ctx) -> float``.
        summary: one-line definition.
        reference: paper / reference implementation the definition follows.
        uses_data: whether the value depends on the images (``False``: params, flops, l2_norm, synflow, zen).
        uses_labels: whether the value depends on the labels.
        robust: a robustness-oriented proxy (CRoZe, input Jacobian / Hessian at initialisation).
    """

    name: str
    fn: ProxyFn
    summary: str
    reference: str
    uses_data: bool = True
    uses_labels: bool = True
    robust: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


#: the proxies by name, in registration order
PROXIES: Registry[ProxySpec] = Registry("proxy")


def register_proxy(
    name: str,
    *,
    summary: str,
    reference: str,
    uses_data: bool = True,
    uses_labels: bool = True,
    robust: bool = False,
) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator adding ``fn`` to the registry under ``name`` (error on a duplicate name)."""

    def deco(fn: ProxyFn) -> ProxyFn:
        PROXIES.add(name, ProxySpec(name, fn, summary, reference, uses_data, uses_labels, robust))
        return fn

    return deco


def get_proxy(name: str) -> ProxySpec:
    """The :class:`ProxySpec` of ``name``; ``KeyError`` naming the known proxies otherwise."""
    if name not in PROXIES:
        raise KeyError(f"unknown proxy {name!r}; known: {', '.join(PROXIES.list(sort=True))}")
    return PROXIES.get(name)


def registered() -> dict[str, ProxySpec]:
    """All registered proxies by name, in registration order."""
    return dict(PROXIES.items())

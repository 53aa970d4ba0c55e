"""``plain``: sum over conv/linear weights of w * dL/dw (signed)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._utils import cross_entropy_grads, weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "plain",
    summary="sum w * dL/dw over conv/linear weights (signed), BN in train mode",
    reference="Mozer & Smolensky 1989; zero-cost-nas / NASLib plain.py",
)
def plain(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    cross_entropy_grads(net, x, y)
    layers = list(weight_layers(net))
    return plain_score([m.weight.detach() for m in layers], [m.weight.grad for m in layers])


def plain_score(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> float:
    """``sum w * g`` (signed) over the layers' weights and their gradients (``None``: a weight the loss does not reach)."""
    total = 0.0
    for w, g in zip(weights, grads):
        if g is not None:
            total += float((w * g).sum())
    return total

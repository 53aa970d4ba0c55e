"""``plain``: sum over conv/linear weights of w * dL/dw (signed)."""

from __future__ import annotations

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
    total = 0.0
    for layer in weight_layers(net):
        if layer.weight.grad is not None:
            total += float((layer.weight.detach() * layer.weight.grad).sum())
    return total

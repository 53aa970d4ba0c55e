"""``snip``: connection sensitivity, sum over conv/linear weights of |w * dL/dw|."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import cross_entropy_grads, weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "snip",
    summary="sum |w * dL/dw| over conv/linear weights (= |dL/dmask| at mask 1), BN in train mode",
    reference="Lee et al. 2019 (SNIP); zero-cost-nas / NASLib snip.py",
)
def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    # d L(w * m) / dm at m = 1 equals w * dL/dw, so no mask parameters are needed.
    net.train()
    cross_entropy_grads(net, x, y)
    total = 0.0
    for layer in weight_layers(net):
        if layer.weight.grad is not None:
            total += float((layer.weight.detach() * layer.weight.grad).abs().sum())
    return total

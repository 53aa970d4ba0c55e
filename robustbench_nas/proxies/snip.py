"""``snip``: connection sensitivity, sum over conv/linear weights of |w * dL/dw|."""

from __future__ import annotations

from typing import Sequence

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
    net.train()
    cross_entropy_grads(net, x, y)
    layers = list(weight_layers(net))
    return snip_score([m.weight.detach() for m in layers], [m.weight.grad for m in layers])


def snip_score(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> float:
    """``sum |w * g|`` over the layers' weights and their gradients (``None``: a weight the loss does not reach).

    d L(w * m) / dm at m = 1 equals w * dL/dw, so no mask parameters are needed.
    """
    total = 0.0
    for w, g in zip(weights, grads):
        if g is not None:
            total += float((w * g).abs().sum())
    return total

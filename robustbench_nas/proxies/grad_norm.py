"""``grad_norm``: sum over conv/linear layers of the L2 norm of the cross-entropy weight gradient."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._utils import cross_entropy_grads, weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "grad_norm",
    summary="sum_l ||dL/dW_l||_2 over conv/linear weights (cross-entropy, BN in train mode)",
    reference="Abdelfattah et al. 2021, zero-cost-nas / NASLib grad_norm.py",
)
def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    cross_entropy_grads(net, x, y)
    return grad_norm_score([layer.weight.grad for layer in weight_layers(net)])


def grad_norm_score(grads: Sequence[torch.Tensor | None]) -> float:
    """``sum_l ||g_l||_2`` over the layers' weight gradients (``None``: a weight the loss does not reach)."""
    total = 0.0
    for g in grads:
        if g is not None:
            total += float(g.norm())
    return total

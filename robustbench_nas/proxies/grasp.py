"""``grasp``: gradient signal preservation, sum over conv/linear weights of -w * (H g)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._utils import weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "grasp",
    summary="sum -w * (H g) over conv/linear weights, g = dL/dw, H the weight Hessian of L (T=1, one batch)",
    reference="Wang et al. 2020 (GraSP); zero-cost-nas / NASLib grasp.py",
)
def grasp(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    weights = [layer.weight for layer in weight_layers(net)]
    loss = nn.functional.cross_entropy(net(x), y)
    grad_w = torch.autograd.grad(loss, weights, allow_unused=True)
    loss = nn.functional.cross_entropy(net(x), y)
    grad_f = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    return grasp_score(weights, grad_w, grad_f)


def grasp_score(weights: Sequence[torch.Tensor], grad_w: Sequence[torch.Tensor | None],
                grad_f: Sequence[torch.Tensor | None], *, retain_graph: bool = False) -> float:
    """``sum -w * (H g)``: ``H g`` as the gradient of ``sum(g.detach() * grad_f)`` (``grad_f`` with a graph).

    ``retain_graph``: keep the forward graph for a later backward (the shared-pass engine's input Jacobian).
    """
    z = sum((gw.detach() * gf).sum() for gw, gf in zip(grad_w, grad_f) if gw is not None and gf is not None)
    hg = torch.autograd.grad(z, weights, allow_unused=True, retain_graph=retain_graph)
    total = 0.0
    for w, h in zip(weights, hg):
        if h is not None:
            total += float((-w.detach() * h).sum())
    return total

"""``synflow``: synaptic flow with absolute weights, no BN, float64, one all-ones input."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import bypass_normalize, remove_batchnorm, weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "synflow",
    summary="sum |w * dR/dw|, R = sum of outputs for one all-ones input; |weights|, BN removed, float64",
    reference="Tanaka et al. 2020 (SynFlow); zero-cost-nas / NASLib synflow.py (bn=False)",
    uses_data=False,
    uses_labels=False,
)
def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    remove_batchnorm(bypass_normalize(net))
    net.double()
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            t.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    net(ones).sum().backward()
    total = 0.0
    for layer in weight_layers(net):
        if layer.weight.grad is not None:
            total += float((layer.weight.detach() * layer.weight.grad).abs().sum())
    return total

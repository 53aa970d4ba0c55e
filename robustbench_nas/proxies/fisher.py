"""``fisher``: per-channel Fisher information of the conv/linear outputs, summed as the reference does."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "fisher",
    summary="sum_l sum_k fan_in_l * 0.5 * mean_n (sum_hw a * dL/da)^2 over conv/linear output channels k",
    reference="Theis et al. 2018; Turner et al. 2020; zero-cost-nas / NASLib fisher.py",
)
def fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    per_layer: dict[nn.Module, torch.Tensor] = {}
    handles = []

    def on_forward(layer: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        act = out.detach()

        def on_grad(g: torch.Tensor) -> None:
            gn = act * g.detach()
            g_nk = gn.sum(dim=tuple(range(2, gn.dim()))) if gn.dim() > 2 else gn
            del_k = 0.5 * g_nk.pow(2).mean(0)
            per_layer[layer] = per_layer[layer] + del_k if layer in per_layer else del_k

        out.register_hook(on_grad)

    for layer in weight_layers(net):
        handles.append(layer.register_forward_hook(on_forward))
    try:
        net.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for layer, del_k in per_layer.items():
        # The reference broadcasts each channel's value over that channel's weights (weight.shape[1:]) before
        # summing, so every channel counts fan_in times; kept for comparability with published correlations.
        total += float(del_k.abs().sum()) * layer.weight[0].numel()
    return total

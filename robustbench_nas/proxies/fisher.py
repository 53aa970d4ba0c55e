"""``fisher``: per-channel Fisher information of the conv/linear outputs, summed as the reference does."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import weight_layers
from .registry import ProxyContext, register_proxy


class FisherRecorder:
    """Records ``0.5 * mean_n (sum_hw a * dL/da)^2`` per output channel of every conv/linear layer.

    Forward hooks keep each layer's output ``a`` and put a gradient hook on it; the first backward through ``a``
    accumulates the channel values. ``enabled`` switches the gradient hooks off (a later double backward, as the
    shared-pass engine runs for grasp, must not count again). Use as a context manager (hooks removed on exit).
    """

    def __init__(self, net: nn.Module) -> None:
        self.layers = list(weight_layers(net))
        self.per_layer: dict[nn.Module, torch.Tensor] = {}
        self.enabled = True
        self._handles: list = []

    def __enter__(self) -> "FisherRecorder":
        for layer in self.layers:
            self._handles.append(layer.register_forward_hook(self._on_forward))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _on_forward(self, layer: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if not out.requires_grad:
            return
        act = out.detach()

        def on_grad(g: torch.Tensor) -> None:
            if not self.enabled:
                return
            gn = act * g.detach()
            g_nk = gn.sum(dim=tuple(range(2, gn.dim()))) if gn.dim() > 2 else gn
            del_k = 0.5 * g_nk.pow(2).mean(0)
            self.per_layer[layer] = self.per_layer[layer] + del_k if layer in self.per_layer else del_k

        out.register_hook(on_grad)

    def score(self) -> float:
        """The fisher value of what was recorded (summed in the order the backward reached the layers)."""
        total = 0.0
        for layer, del_k in self.per_layer.items():
            # The reference broadcasts each channel's value over that channel's weights (weight.shape[1:]) before
            # summing, so every channel counts fan_in times; kept for comparability with published correlations.
            total += float(del_k.abs().sum()) * layer.weight[0].numel()
        return total


@register_proxy(
    "fisher",
    summary="sum_l sum_k fan_in_l * 0.5 * mean_n (sum_hw a * dL/da)^2 over conv/linear output channels k",
    reference="Theis et al. 2018; Turner et al. 2020; zero-cost-nas / NASLib fisher.py",
)
def fisher(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    with FisherRecorder(net) as rec:
        net.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
    return rec.score()

"""``zen``: Zen-score, expressivity of the pre-pooling features under a small input perturbation."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._utils import bypass_normalize
from .registry import ProxyContext, register_proxy

#: Size of the input perturbation, as in Zen-NAS.
ZEN_MIXUP_GAMMA = 1e-2


def gaussian_init_(net: nn.Module, generator: torch.Generator) -> nn.Module:
    """Zen-NAS re-initialisation: conv/linear weights N(0, 1), biases 0, BN weight 1 and bias 0 (in place)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
    return net


@register_proxy(
    "zen",
    summary="log E|f(x) - f(x + 0.01 e)|_1 (pre-GAP features, Gaussian weights and inputs) + sum log sqrt(mean BN var)",
    reference="Lin et al. 2021 (Zen-NAS) compute_zen_score.py (repeat=1); NAS-Bench-Suite-Zero",
    uses_data=False,
    uses_labels=False,
)
def zen(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    if not hasattr(net, "features"):
        raise TypeError("zen needs a network with a .features(x) method returning the pre-pooling feature map")
    gaussian_init_(bypass_normalize(net), ctx.generator)
    net.train()  # BN uses batch statistics and updates its running variance, which the score reads
    shape = tuple(x.shape)
    a = torch.randn(shape, generator=ctx.generator).to(x.device)
    b = torch.randn(shape, generator=ctx.generator).to(x.device)
    with torch.no_grad():
        out = net.features(a)
        out_mix = net.features(a + ZEN_MIXUP_GAMMA * b)
        score = (out - out_mix).abs().flatten(1).sum(1).mean()
        log_bn = 0.0
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
                log_bn += 0.5 * math.log(float(m.running_var.mean()))
    return float(torch.log(score)) + log_bn

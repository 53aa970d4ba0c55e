"""Parameter and FLOP counts of built models (measured with forward hooks, not formulas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

#: A constant in NAS-Bench-201's published FLOPs of unknown origin; with it, :func:`count_flops`'s ``nb201``
#: count equals the published value on every cell checked (see docs/protocols in the shared folder).
NB201_FLOPS_CONSTANT = 1078


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass of a single image.

    Attributes:
        plain: multiply-adds of the convolutions and the linear layer.
        nb201: NAS-Bench-201's convention (the published ``flops`` column): ``plain`` + linear bias +
            3 x conv output elements + 9 x output elements of the in-cell 3x3 average pools + 1078.
    """

    plain: int
    nb201: int

    @property
    def plain_m(self) -> float:
        return self.plain / 1e6

    @property
    def nb201_m(self) -> float:
        return self.nb201 / 1e6


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN affine included, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> FlopCount:
    """Count FLOPs of ``model`` on one input of shape ``input_shape`` = ``(C, H, W)``."""
    conv_macs = conv_out = pool_out = lin_macs = lin_bias = 0

    def on_conv(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal conv_macs, conv_out
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        conv_macs += out.numel() * k
        conv_out += out.numel()

    def on_pool(m: nn.AvgPool2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal pool_out
        if m.kernel_size in (3, (3, 3)) and m.stride in (1, (1, 1)):
            pool_out += out.numel()

    def on_linear(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal lin_macs, lin_bias
        lin_macs += m.in_features * m.out_features
        lin_bias += m.out_features if m.bias is not None else 0

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(on_conv))
        elif isinstance(mod, nn.AvgPool2d):
            hooks.append(mod.register_forward_hook(on_pool))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(on_linear))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    plain = conv_macs + lin_macs
    nb201 = plain + lin_bias + 3 * conv_out + 9 * pool_out + NB201_FLOPS_CONSTANT
    return FlopCount(plain=plain, nb201=nb201)

"""Parameter and FLOP tallies of any ``nn.Module``, measured with forward hooks (not formulas).

Generic torch tooling at the bottom layer: a search space turns the raw :func:`tally_flops` counts into its
published convention (``SearchSpace.published_flops``) without importing the networks
(``robustbench_nas.models.counting`` re-exports both functions and adds the space-aware ``count_flops``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .modes import eval_mode

__all__ = ["count_params", "tally_flops"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN affine included, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def tally_flops(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> dict[str, int]:
    """Raw FLOP ingredients of one forward pass of a single input of shape ``input_shape`` = ``(C, H, W)``.

    Returns:
        ``conv_macs`` (sum over convs of output elements x kernel area x input channels per group), ``conv_out``
        (conv output elements), ``conv_bias`` (output elements of convs with a bias), ``pool3_out`` (output
        elements of 3x3 stride-1 average pools), ``linear_macs`` and ``linear_bias`` (outputs of linear layers
        with a bias).
    """
    t = dict.fromkeys(("conv_macs", "conv_out", "conv_bias", "pool3_out", "linear_macs", "linear_bias"), 0)

    def on_conv(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        t["conv_macs"] += out.numel() * k
        t["conv_out"] += out.numel()
        t["conv_bias"] += out.numel() if m.bias is not None else 0

    def on_pool(m: nn.AvgPool2d, _inp: tuple, out: torch.Tensor) -> None:
        if m.kernel_size in (3, (3, 3)) and m.stride in (1, (1, 1)):
            t["pool3_out"] += out.numel()

    def on_linear(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        t["linear_macs"] += m.in_features * m.out_features
        t["linear_bias"] += m.out_features if m.bias is not None else 0

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(on_conv))
        elif isinstance(mod, nn.AvgPool2d):
            hooks.append(mod.register_forward_hook(on_pool))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(on_linear))
    try:
        with eval_mode(model):  # each module's own mode back afterwards
            p = next(model.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
    return t

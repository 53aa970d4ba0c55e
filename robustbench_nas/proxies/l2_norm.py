"""``l2_norm``: sum over conv/linear layers of the L2 (Frobenius) norm of the initial weights."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import weight_layers
from .registry import ProxyContext, register_proxy


@register_proxy(
    "l2_norm",
    summary="sum_l ||W_l||_2 over conv/linear weights at initialisation",
    reference="NASLib l2_norm.py (NAS-Bench-Suite-Zero)",
    uses_data=False,
    uses_labels=False,
)
def l2_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return float(sum(float(layer.weight.detach().norm()) for layer in weight_layers(net)))

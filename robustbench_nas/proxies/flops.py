"""``flops``: FLOPs in millions for one image of the batch's shape, NAS-Bench-201's published convention."""

from __future__ import annotations

import torch
from torch import nn

from ..models import count_flops
from .registry import ProxyContext, register_proxy


@register_proxy(
    "flops",
    summary="FLOPs (M) of one image, NB201's published convention (count_flops(...).nb201)",
    reference="NAS-Bench-201 / NASLib model_stats",
    uses_data=False,
    uses_labels=False,
)
def flops(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return count_flops(net, tuple(x.shape[1:])).nb201 / 1e6

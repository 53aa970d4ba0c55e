"""``flops``: FLOPs in millions for one image of the batch's shape, in the published convention of the network's space."""

from __future__ import annotations

import torch
from torch import nn

from ..models import count_flops
from .registry import ProxyContext, register_proxy


@register_proxy(
    "flops",
    summary="FLOPs (M) of one image, the network's search-space convention (count_flops(...).published)",
    reference="NAS-Bench-201 / NASLib model_stats",
    uses_data=False,
    uses_labels=False,
)
def flops(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return count_flops(net, tuple(x.shape[1:])).published / 1e6

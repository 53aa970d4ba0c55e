"""``params``: number of parameters in millions (BN affine included), via the foundation's ``count_params``."""

from __future__ import annotations

import torch
from torch import nn

from ..models import count_params
from .registry import ProxyContext, register_proxy


@register_proxy(
    "params",
    summary="parameters (M), BN affine included (NB201 convention)",
    reference="NAS-Bench-201 / NASLib model_stats",
    uses_data=False,
    uses_labels=False,
)
def params(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return count_params(net) / 1e6

"""``nwot``: NASWOT (v2), log-determinant of the kernel of binary ReLU activation codes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .registry import ProxyContext, register_proxy


def relu_code_kernel(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``K = sum_relu c c^T + (1 - c)(1 - c)^T`` over every ``nn.ReLU`` module, ``c`` = (ReLU input > 0) per image.

    ``K[i, j]`` is the number of units on which images ``i`` and ``j`` share their activation pattern
    (units minus Hamming distance). Shape ``(N, N)``, float64.
    """
    n = x.shape[0]
    K = torch.zeros((n, n), dtype=torch.float64, device=x.device)

    def hook(_m: nn.Module, inp: tuple, _out: torch.Tensor) -> None:
        nonlocal K
        c = (inp[0].detach().reshape(n, -1) > 0).double()
        K = K + c @ c.t() + (1.0 - c) @ (1.0 - c).t()

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return K


@register_proxy(
    "nwot",
    summary="log|det K|, K = sum over ReLUs of c c^T + (1-c)(1-c)^T with c the binary codes (BN in train mode)",
    reference="Mellor et al. 2021 v2 (NASWOT); NASLib nwot.py",
    uses_labels=False,
)
def nwot(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    K = relu_code_kernel(net, x)
    _sign, logdet = np.linalg.slogdet(K.cpu().numpy())
    return float(logdet)

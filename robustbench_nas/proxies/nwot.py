"""``nwot``: NASWOT (v2), log-determinant of the kernel of binary ReLU activation codes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .registry import ProxyContext, register_proxy


class ReluCodeKernel:
    """Accumulates ``K = sum_relu c c^T + (1 - c)(1 - c)^T`` over every ``nn.ReLU`` module during forward passes.

    ``c`` = (ReLU input > 0) per image; ``K[i, j]`` is the number of units on which images ``i`` and ``j`` share
    their activation pattern (units minus Hamming distance). Shape ``(N, N)``, float64. Context manager (hooks
    removed on exit); ``enabled = False`` stops recording.
    """

    def __init__(self, net: nn.Module, n: int, device: torch.device) -> None:
        self.net = net
        self.K = torch.zeros((n, n), dtype=torch.float64, device=device)
        self.enabled = True
        self._handles: list = []

    def __enter__(self) -> "ReluCodeKernel":
        self._handles = [m.register_forward_hook(self._hook) for m in self.net.modules() if isinstance(m, nn.ReLU)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, _m: nn.Module, inp: tuple, _out: torch.Tensor) -> None:
        if self.enabled:
            c = (inp[0].detach().reshape(self.K.shape[0], -1) > 0).double()
            self.K = self.K + c @ c.t() + (1.0 - c) @ (1.0 - c).t()


def relu_code_kernel(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The :class:`ReluCodeKernel` of one forward pass of ``x`` (no gradients)."""
    with ReluCodeKernel(net, x.shape[0], x.device) as rec, torch.no_grad():
        net(x)
    return rec.K


def nwot_score(K: torch.Tensor) -> float:
    """``log |det K|`` (float64)."""
    _sign, logdet = np.linalg.slogdet(K.cpu().numpy())
    return float(logdet)


@register_proxy(
    "nwot",
    summary="log|det K|, K = sum over ReLUs of c c^T + (1-c)(1-c)^T with c the binary codes (BN in train mode)",
    reference="Mellor et al. 2021 v2 (NASWOT); NASLib nwot.py",
    uses_labels=False,
)
def nwot(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    return nwot_score(relu_code_kernel(net, x))

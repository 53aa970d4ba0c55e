"""``epe_nas``: per-class correlation of input Jacobians (EPE-NAS)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._utils import bypass_normalize, input_jacobian_rows, normalize_input
from .registry import ProxyContext, register_proxy

EPE_K = 1e-5


def epe_nas_score(jacobians: np.ndarray, labels: np.ndarray, num_classes: int, k: float = EPE_K) -> float:
    """EPE-NAS score from per-image Jacobians ``(N, D)`` and labels ``(N,)``.

    Per class ``c``: ``s_c = sum log(|corrcoef(J_c)| + k)``; for ``num_classes <= 100`` the score is
    ``sum_c |s_c|``, otherwise ``sum_{c, c'} |s_c - s_c'| / n_seen`` with ``s_c`` divided by the class size.
    """
    jacobians = np.asarray(jacobians, dtype=np.float64)
    labels = np.asarray(labels)
    scores: dict[int, float] = {}
    for c in np.unique(labels):
        rows = jacobians[labels == c]
        corr = np.atleast_2d(np.corrcoef(rows)) if len(rows) > 1 else np.ones((1, 1))
        s = float(np.sum(np.log(np.abs(corr) + k)))
        if num_classes > 100:
            s /= len(corr)
        scores[int(c)] = s
    if num_classes <= 100:
        return float(sum(abs(s) for s in scores.values()))
    vals = np.array(list(scores.values()))
    return float(np.abs(vals[:, None] - vals[None, :]).sum() / len(vals))


@register_proxy(
    "epe_nas",
    summary="sum_c |sum log(|corrcoef(J_c)| + 1e-5)| over classes c of the batch (input Jacobians per class)",
    reference="Lopes et al. 2021 (EPE-NAS); NASLib epe_nas.py",
)
def epe_nas(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    z = normalize_input(net, x)
    bypass_normalize(net)
    rows = input_jacobian_rows(net, z)
    return epe_nas_score(rows.detach().cpu().double().numpy(), y.cpu().numpy(), ctx.num_classes)

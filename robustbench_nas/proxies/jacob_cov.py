"""``jacob_cov``: NASWOT-v1 score of the correlation of per-image input Jacobians."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._utils import bypass_normalize, input_jacobian_rows, normalize_input
from .registry import ProxyContext, register_proxy

#: Regulariser of the eigenvalues, as in the references.
JACOB_COV_K = 1e-5


def jacob_cov_score(jacobians: np.ndarray, k: float = JACOB_COV_K) -> float:
    """``-sum_i (log(l_i + k) + 1 / (l_i + k))`` over eigenvalues ``l_i`` of ``corrcoef(jacobians)``.

    Arguments:
        jacobians: ``(N, D)`` one flattened input Jacobian per image.
    """
    corr = np.corrcoef(np.asarray(jacobians, dtype=np.float64))
    v = np.linalg.eigvalsh(corr)  # symmetric: real eigenvalues (the reference's np.linalg.eig gives the same)
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


@register_proxy(
    "jacob_cov",
    summary="-sum(log(l+k) + 1/(l+k)), l eigenvalues of corrcoef of per-image input Jacobians, k=1e-5",
    reference="Mellor et al. 2021 v1 (NASWOT); NASLib jacov.py (Jacobian w.r.t. the normalised input)",
    uses_labels=False,
)
def jacob_cov(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    net.train()
    z = normalize_input(net, x)  # the references differentiate w.r.t. the normalised image
    bypass_normalize(net)
    rows = input_jacobian_rows(net, z)
    return jacob_cov_score(rows.detach().cpu().double().numpy())

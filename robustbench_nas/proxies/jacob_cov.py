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

    NaN where the score is undefined, as in the references (NASLib's and Abdelfattah et al.'s ``compute_jacob_cov``
    return ``np.nan`` when the eigen-decomposition fails): an image whose Jacobian is constant (e.g. zero, for a cell
    whose output does not depend on its input, such as ``|none~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|...``)
    has no correlation, so ``corrcoef`` holds NaN and LAPACK either fails to converge or returns NaN.

    Arguments:
        jacobians: ``(N, D)`` one flattened input Jacobian per image.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(np.asarray(jacobians, dtype=np.float64))
    if not np.isfinite(corr).all():
        return float("nan")
    try:
        v = np.linalg.eigvalsh(corr)  # symmetric: real eigenvalues (the reference's np.linalg.eig gives the same)
    except np.linalg.LinAlgError:
        return float("nan")
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

"""Robust proxies: the input-Jacobian and input-Hessian measures evaluated at initialisation.

BN statistics are first set to those of the batch (then eval mode), so that per-image derivatives exist and the
network is in the regime it would see on that data; see :func:`._utils.calibrate_batchnorm`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..measures import hessian_max_eig, jacobian_norms
from ._utils import calibrate_batchnorm
from .registry import ProxyContext, register_proxy


@register_proxy(
    "jacobian_fro",
    summary="mean ||d logits/dx||_F over the batch at initialisation (x in [0,1]; BN calibrated on the batch)",
    reference="Jung et al. 2023 measure / Hoffman et al. 2019, at initialisation (Lukasik et al. 2023)",
    uses_labels=False,
    robust=True,
)
def jacobian_fro(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return jacobian_fro_value(calibrate_batchnorm(net, x), x)


def jacobian_fro_value(net: nn.Module, x: torch.Tensor) -> float:
    """``jacobian_fro`` of a network already calibrated with :func:`calibrate_batchnorm` on ``x``."""
    return jacobian_norms(net, x).mean_fro


#: Lanczos budget of the ``hessian_eig`` proxy.
HESSIAN_MAX_ITER, HESSIAN_TOL = 20, 1e-3


@register_proxy(
    "hessian_eig",
    summary="mean largest eigenvalue of the input Hessian of CE at initialisation (Lanczos, <= 20 HVPs, tol 1e-3)",
    reference="Jung et al. 2023 measure, at initialisation (Lukasik et al. 2023)",
    robust=True,
)
def hessian_eig(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return hessian_eig_value(calibrate_batchnorm(net, x), x, y, ctx.generator)


def hessian_eig_value(net: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
    """``hessian_eig`` of a network already calibrated with :func:`calibrate_batchnorm` on ``x``."""
    return hessian_max_eig(net, x, y, max_iter=HESSIAN_MAX_ITER, tol=HESSIAN_TOL, generator=generator,
                           method="lanczos").mean


# ---- fast engine: the Hessian eigenvalue from the Jacobian the jacobian_fro proxy already computes ----------------
#: Leaf modules whose outputs are piecewise linear in their inputs (affine maps, ReLU, pooling, BN in eval mode), with
#: the project's own ``Normalize`` (affine) and ``Zero``. A network built from these alone (and containers that only
#: add, concatenate or slice, as those of ``robustbench_nas.models``) has logits piecewise linear in the input.
_PIECEWISE_LINEAR = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.MaxPool2d,
                     nn.AdaptiveAvgPool2d, nn.Identity, nn.Flatten, nn.Dropout)
_PIECEWISE_LINEAR_NAMES = {"Normalize", "Zero"}


def is_piecewise_linear(net: nn.Module) -> bool:
    """Whether every leaf module of ``net`` is piecewise linear (see ``_PIECEWISE_LINEAR``): then the logits' second
    derivative in the input vanishes almost everywhere and ``H = J^T (diag p - p p^T) J`` exactly."""
    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    return all(isinstance(m, _PIECEWISE_LINEAR) or type(m).__name__ in _PIECEWISE_LINEAR_NAMES for m in leaves)


def input_jacobian(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, per-image input Jacobians and squared Frobenius norms of a calibrated (eval-mode) network.

    The squared norms are accumulated class by class exactly as :func:`robustbench_nas.measures.jacobian_norms`
    does (one backward per class for the whole batch, same order), so ``jacobian_fro`` from them is the reference's
    value bit for bit; the Jacobian rows are kept for :func:`hessian_eig_from_jacobian`.

    Shape:
        x ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``, jac ``(N, K, C*H*W)`` (d logits / dx, x in [0, 1]
        pixels), sq ``(N,)``.
    """
    xb = x.detach().clone().requires_grad_(True)
    logits = net(xb)
    k = logits.shape[1]
    sq = torch.zeros(xb.shape[0], dtype=xb.dtype, device=xb.device)
    rows = []
    for c in range(k):
        # eval mode: images are independent, so the gradient of the summed class-c logit is each image's own row
        (g,) = torch.autograd.grad(logits[:, c].sum(), xb, retain_graph=c < k - 1)
        sq += g.pow(2).flatten(1).sum(1)
        rows.append(g.detach().flatten(1))
    return logits.detach(), torch.stack(rows, 1), sq.detach()


def hessian_eig_from_jacobian(logits: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of each image's input Hessian of CE, exactly, from the logits and the input Jacobian.

    For a network piecewise linear in its input (:func:`is_piecewise_linear`) the Hessian of ``CE(f(x), y)`` is
    ``H = J^T A J`` with ``A = diag(p) - p p^T`` (``p`` the softmax; the label drops out). Writing
    ``A = B^T B`` with ``B = (I - q q^T) diag(q)``, ``q = sqrt(p)`` (``I - q q^T`` is a projector since
    ``|q| = 1``), the nonzero eigenvalues of ``H`` (D x D) are those of the K x K matrix ``B J J^T B^T``: one
    float64 ``eigvalsh`` per image instead of Lanczos iterations of Hessian-vector products. This is the quantity
    the reference path's Lanczos approximates from below (its Ritz values increase towards it).

    Shape:
        logits ``(N, K)``, jac ``(N, K, D)`` -> ``(N,)`` (in the dtype of ``jac``).
    """
    if jac.dim() != 3 or logits.shape != jac.shape[:2]:
        raise ValueError(f"need logits (N, K) and jac (N, K, D), got {tuple(logits.shape)} and {tuple(jac.shape)}")
    j = jac.double()
    gram = j @ j.transpose(1, 2)  # (N, K, K)
    q = torch.softmax(logits.double(), dim=1).sqrt()
    eye = torch.eye(q.shape[1], dtype=torch.float64, device=q.device)
    b = (eye - q.unsqueeze(2) * q.unsqueeze(1)) * q.unsqueeze(1)  # (I - q q^T) diag(q)
    m = b @ gram @ b.transpose(1, 2)
    m = 0.5 * (m + m.transpose(1, 2))  # symmetric up to rounding; eigvalsh reads one triangle
    return torch.linalg.eigvalsh(m)[:, -1].clamp_min(0.0).to(jac.dtype)

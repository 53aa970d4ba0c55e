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

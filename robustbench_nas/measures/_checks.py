"""Input checks shared by the measures."""

from __future__ import annotations

import torch
from torch import nn


def check_batch(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` naming the problem for a malformed batch (``x`` float ``(N, C, H, W)`` in [0, 1])."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a float tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point in [0, 1], got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:  # e.g. an x * 255 batch or a normalised one: the models normalise internally
        raise ValueError(f"x must hold pixels in [0, 1] (the models normalise internally), got values in "
                         f"[{lo:.4g}, {hi:.4g}]")
    if y is not None:
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")


def check_eval_mode(model: nn.Module) -> None:
    """Per-image derivatives need BN to use running statistics (a train-mode BN mixes the images of a batch)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                "model has BatchNorm in training mode: per-image Jacobians/Hessians are undefined because batch "
                "statistics mix the images; call model.eval() (compute_measures does this for you)"
            )

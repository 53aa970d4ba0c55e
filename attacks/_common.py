"""Shared pieces of the attacks: input checks, losses, gradients, projections, the eval-mode guard.

Conventions (docs/architecture.md): images ``(B, C, H, W)`` float in [0, 1]; the model normalises internally;
``eps`` is a per-row float tensor ``(B,)`` in [0, 1] pixel units, so one batch can hold several radii (that is how
all epsilons of a grid are attacked in one pass).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_nas.utils.modes import eval_mode  # noqa: F401  (re-exported: the attacks' name for it)

#: Epsilons above this look like /255 units passed where [0, 1] is expected.
_MAX_EPS = 1.0


def check_eps(eps: float | Sequence[float], norm: str = "Linf") -> list[float]:
    """Validate an epsilon or a grid of them (pixel units in [0, 1]) and return a list of floats.

    ``norm="L2"``: a radius in the Euclidean norm over all pixels may exceed 1 (only finite and >= 0 is required).

    Raises:
        ValueError: empty grid, a non-finite or negative value, or a value above 1 (with a hint when it looks like
            a /255 value, e.g. ``8`` instead of ``8/255``).
    """
    vals = [eps] if isinstance(eps, (int, float)) else list(eps)
    if not vals:
        raise ValueError("empty epsilon grid")
    out: list[float] = []
    for v in vals:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"epsilon {v!r} is not a number") from None
        if not math.isfinite(f):
            raise ValueError(f"epsilon {v!r} is not finite")
        if f < 0:
            raise ValueError(f"epsilon {f} is negative; epsilons are radii in [0, 1] pixel units")
        if f > _MAX_EPS and norm != "L2":
            hint = (
                f" It looks like a /255 value: pass {f:g}/255 = {f / 255:.6g} instead"
                if f <= 255
                else ""
            )
            raise ValueError(f"epsilon {f:g} is above 1; epsilons are in [0, 1] pixel units (8/255, not 8).{hint}")
        out.append(f)
    return out


def check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    """Check images ``(N, C, H, W)`` float in [0, 1] and labels ``(N,)`` integer; raise ``ValueError`` naming the problem."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be torch tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no images to attack (x is empty)")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {x.dtype} (convert uint8 with x.float() / 255)")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain NaN or inf")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"images must have pixels in [0, 1] (models normalise internally), got range [{lo:.4g}, {hi:.4g}]"
        )


def check_eval_mode(model: nn.Module) -> None:
    """Attacks run in eval mode only (BN statistics fixed, dropout off); raise if any submodule is training."""
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"model is in training mode ({len(training)} module(s), e.g. {training[0]!r}); attacks evaluate a model "
            "in eval mode so that BatchNorm uses its running statistics: call model.eval() first"
        )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def bshape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-row values ``(B,)`` viewed as ``(B, 1, 1, 1)`` to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy ``(B,)``."""
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020): ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, per row.

    Needs at least 3 classes. The arithmetic follows AutoAttack's formula term by term so results match it bitwise.
    """
    zs, ind = logits.sort(dim=1)
    top_is_y = (ind[:, -1] == y).float()
    u = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[u, y] - zs[:, -2] * top_is_y - zs[:, -1] * (1.0 - top_is_y)) / (zs[:, -1] - zs[:, -3] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (APGD-T): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, per row; needs at least 4 classes."""
    zs, _ = logits.sort(dim=1)
    u = torch.arange(logits.shape[0], device=logits.device)
    return -(logits[u, y] - logits[u, y_target]) / (zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + 1e-12)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{i != y} z_i`` per row (negative = misclassified)."""
    z = logits.clone()
    u = torch.arange(z.shape[0], device=z.device)
    zy = z[u, y].clone()
    z[u, y] = -float("inf")
    return zy - z.max(dim=1)[0]


def mean_weights(eps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-row weights ``1 / (rows with the same epsilon)`` ``(B,)``: the weighted sum of per-row losses is then, for
    every epsilon, torchattacks' mean over the images it attacks at that epsilon (rows of several epsilons share a
    batch here, one call per epsilon there). The weight is exactly the ``1/N`` that the mean's backward pass feeds
    each row, so the gradients agree bit for bit when the images of one epsilon are torchattacks' batch."""
    _, inverse, counts = torch.unique(eps, return_inverse=True, return_counts=True)
    return torch.reciprocal(counts.to(dtype))[inverse]


def input_grad(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient w.r.t. ``x`` of the cross-entropy summed over rows with per-row ``weight`` (1 when ``None``);
    never w.r.t. the weights (no ``.grad`` is touched).

    Returns:
        ``(grad, logits)``, both detached. FGSM and PGD pass :func:`mean_weights`, the reference's (torchattacks')
        mean reduction per epsilon: the direction of each row's gradient does not depend on the weight, but its
        float rounding does, and with the summed loss about 5e-4 of PGD-10's output values differed from
        torchattacks' on a full-size NB201 network (a gradient component within rounding of zero changes sign).
    """
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        per_row = ce_loss(logits, y)
        loss = per_row.sum() if weight is None else (per_row * weight).sum()
        (g,) = torch.autograd.grad(loss, [xg])
    return g.detach(), logits.detach()


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps_b: torch.Tensor) -> torch.Tensor:
    """Project onto the Linf ball of per-row radius ``eps_b`` ``(B, 1, 1, 1)`` around ``x``, then onto [0, 1]."""
    return torch.clamp(torch.min(torch.max(x_adv, x - eps_b), x + eps_b), 0.0, 1.0)


def normalize(v: torch.Tensor, norm: str) -> torch.Tensor:
    """Each row divided by its ``norm`` (``"Linf"`` or ``"L2"``) plus 1e-12, with AutoAttack's arithmetic (bitwise)."""
    if norm == "Linf":
        t = v.abs().view(v.shape[0], -1).max(1)[0]
    else:
        t = (v**2).view(v.shape[0], -1).sum(-1).sqrt()
    return v / (t.view(-1, *([1] * (v.ndim - 1))) + 1e-12)


def l2_norm(v: torch.Tensor) -> torch.Tensor:
    """Per-row L2 norm ``(B, 1, 1, 1)``."""
    return v.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (v.ndim - 1)))


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps_b: torch.Tensor) -> torch.Tensor:
    """Project onto the L2 ball of per-row radius ``eps_b`` around ``x`` (radial scaling), then onto [0, 1]."""
    d = x_adv - x
    n = l2_norm(d)
    factor = torch.where(n > eps_b, eps_b / (n + 1e-12), torch.ones_like(n))
    return torch.clamp(x + d * factor, 0.0, 1.0)


def perturbation_norm(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row ``||x_adv - x||`` in ``norm`` (``"Linf"`` or ``"L2"``), shape ``(B,)``."""
    d = (x_adv - x).flatten(1)
    return d.abs().max(dim=1)[0] if norm == "Linf" else d.norm(p=2, dim=1)


__all__ = [
    "bshape",
    "ce_loss",
    "check_data",
    "check_eps",
    "check_eval_mode",
    "dlr_loss",
    "dlr_targeted_loss",
    "eval_mode",
    "input_grad",
    "l2_norm",
    "margin",
    "mean_weights",
    "model_device",
    "normalize",
    "perturbation_norm",
    "project_l2",
    "project_linf",
]

"""Adversarial examples for adversarial training (the ``pgd-at`` training profile).

NAS-RobBench-201 (Wu et al., ICLR 2024) trains with PGD at eps 8/255, step 2/255, 7 steps, random start; the
training module calls :func:`adversarial_batch` on each batch with the profile's ``adv_*`` fields.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import check_eps, eval_mode
from .gradient import pgd_loop


def adversarial_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PGD-Linf adversarial examples of one training batch (Madry et al., 2018).

    The examples are crafted with every submodule in eval mode, so BatchNorm uses (and never updates) its running
    statistics; each submodule's own mode is restored afterwards, so the caller's train loop continues unchanged.
    Only the gradient w.r.t. the input is computed: no parameter's ``.grad`` is touched. ``x`` is not modified.

    Arguments:
        model: the network being trained (any mode), taking images in [0, 1].
        x: images in [0, 1].
        y: labels.
        eps: Linf radius in [0, 1] pixel units (e.g. ``8/255``).
        steps: PGD steps (0 returns the random start, or ``x`` itself without one).
        step_size: step in [0, 1] pixel units (e.g. ``2/255``).
        random_start: start from a uniform point of the ball.
        generator: source of the random start (any device; a fresh unseeded CPU generator when None).

    Shape:
        - x: :math:`(B, C, H, W)`, y: :math:`(B)`, output: :math:`(B, C, H, W)` detached, on ``x``'s device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x_adv = adversarial_batch(model, x, y, eps=8 / 255, steps=7, step_size=2 / 255, generator=g)
    """
    (eps,) = check_eps(eps)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not (0.0 <= float(step_size) <= 1.0):
        raise ValueError(f"step_size must be in [0, 1] pixel units, got {step_size!r}")
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected x (B, C, H, W) and y (B,), got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.detach()
    y = y.detach().long()
    eb = torch.full((x.shape[0], 1, 1, 1), eps, dtype=x.dtype, device=x.device)
    alpha = torch.full_like(eb, float(step_size))
    if random_start:
        g = generator if generator is not None else torch.Generator()
        u = torch.rand(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)
        x_start = torch.clamp(x + (2.0 * u - 1.0) * eb, 0.0, 1.0)
    else:
        x_start = x
    with eval_mode(model):
        return pgd_loop(model, x, y, x_start, eb, alpha, steps, norm="Linf", early_stop=False)


__all__ = ["adversarial_batch"]

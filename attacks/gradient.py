"""FGSM and PGD, batched over per-row epsilons.

The update rules are those of torchattacks 3.5 (``FGSM``, ``PGD``, ``PGDL2``), which the tests check on the same
model and data, including its reduction: the cross-entropy is averaged over the images attacked at each epsilon
(:func:`robustbench_nas.attacks._common.mean_weights`), so that given the same start the iterates are bitwise equal to
torchattacks' when one call attacks the images of torchattacks' batch (tests: a full-size NB201 network, C=16,
N=5, 200 CIFAR-10 images, PGD-10 at 1/255). When ``robustbench_nas.attacks.evaluate`` packs rows of several epsilons and batch
boundaries differently from a torchattacks loop, a row's weight is 1/(its epsilon's rows in the batch) instead of
1/(torchattacks' batch): the same direction, other float rounding. Through ``evaluate`` (per-row
:class:`~robustbench_nas.utils.streams.RowStreams` that know the evaluated set's size N) every row is weighted 1/N,
torchattacks' mean when it attacks the whole set in one batch, whatever the batching.

Random starts come from ``generator`` (:mod:`robustbench_nas.attacks._draws`): per-row CPU streams in ``evaluate``
(a row's start depends only on its image, radius, attack and seed: not on the device nor the batch), or a shared
``torch.Generator`` drawn as ``torch.rand(x.shape)`` (how the tests give our kernels and torchattacks the same
start). Either way the start differs from torchattacks' own global-RNG draws.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import bshape, input_grad, l2_norm, mean_weights, project_l2
from ._draws import Draws, loss_weights, normal_like, uniform_like, uniform_rows
from .params import FGSMParams, PGDParams
from .registry import register_attack


def _fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    params: FGSMParams,
    *,
    norm: str,
    generator: Draws,
    early_stop: bool,
) -> torch.Tensor:
    """One signed (Linf) or L2-normalised (L2) gradient step of length eps, clipped to [0, 1]."""
    g, _ = input_grad(model, x, y, loss_weights(generator, eps, x.dtype))
    eb = bshape(eps, x)
    if norm == "Linf":
        step = eb * g.sign()
    else:
        step = eb * g / (l2_norm(g) + 1e-12)
    return torch.clamp(x + step, 0.0, 1.0).detach()


register_attack(
    "fgsm@Linf", norm="Linf", defaults=FGSMParams(), description="FGSM: x + eps * sign(grad CE), clipped to [0, 1]"
)(_fgsm)
register_attack(
    "fgsm@L2", norm="L2", defaults=FGSMParams(), description="FGM: x + eps * grad / ||grad||_2, clipped to [0, 1]"
)(_fgsm)


def _random_start(x: torch.Tensor, eb: torch.Tensor, norm: str, generator: Draws) -> torch.Tensor:
    """A uniform point of the Linf ball, or (L2) a uniformly random direction at a uniform radius (torchattacks)."""
    if norm == "Linf":
        u = uniform_like(generator, x)
        return torch.clamp(x + (2.0 * u - 1.0) * eb, 0.0, 1.0)
    d = normal_like(generator, x)
    r = uniform_rows(generator, x.shape[0], x.device, x.dtype)
    d = d / (l2_norm(d) + 1e-12) * bshape(r, x) * eb
    return torch.clamp(x + d, 0.0, 1.0)


def pgd_loop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_start: torch.Tensor,
    eb: torch.Tensor,
    alpha: torch.Tensor,
    steps: int,
    *,
    norm: str,
    early_stop: bool,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The PGD iterations from ``x_start``; ``eb`` and ``alpha`` are per-row ``(B, 1, 1, 1)``; returns the last iterate.

    ``weights``: per-row loss weights ``(B,)`` (default: torchattacks' mean over the rows of each radius).

    With ``early_stop`` a row leaves the loop at the first iterate that is misclassified and keeps that iterate
    (a valid adversarial example of its ball): the loop then runs only on rows not yet broken.
    """
    x_adv = x_start.detach().clone()
    active: torch.Tensor | None = None  # None: all rows (no gather/scatter copies while nobody has left)
    # torchattacks' mean over the images of each epsilon, fixed at the start (rows leaving early keep their weight)
    wa = mean_weights(eb.flatten(), x.dtype) if weights is None else weights
    xa, xo, ya, ea, aa = x_adv, x, y, eb, alpha
    for _ in range(steps):
        g, logits = input_grad(model, xa, ya, wa)
        if early_stop:
            keep = logits.argmax(dim=1) == ya
            if not bool(keep.all()):
                if active is None:
                    active = torch.arange(x.shape[0], device=x.device)
                active, xa, xo, ya, ea, aa, wa, g = (t[keep] for t in (active, xa, xo, ya, ea, aa, wa, g))
            if xa.shape[0] == 0:
                break
        if norm == "Linf":
            # torchattacks' order of operations (clip the difference, then add), for bitwise agreement with it
            d = xa + aa * g.sign() - xo
            xa = torch.clamp(xo + torch.max(torch.min(d, ea), -ea), 0.0, 1.0)
        else:
            xa = project_l2(xa + aa * g / (l2_norm(g) + 1e-10), xo, ea)
        if active is None:
            x_adv = xa
        else:
            x_adv[active] = xa
    return x_adv.detach()


def _pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    params: PGDParams,
    *,
    norm: str,
    generator: Draws,
    early_stop: bool,
) -> torch.Tensor:
    """PGD on the cross-entropy from a random start (if enabled); returns the last iterate (torchattacks' rule)."""
    eb = bshape(eps, x)
    alpha = bshape(torch.tensor([params.alpha(float(e)) for e in eps.tolist()], dtype=x.dtype, device=x.device), x)
    x_start = _random_start(x, eb, norm, generator) if params.random_start else x
    return pgd_loop(model, x, y, x_start, eb, alpha, params.steps, norm=norm, early_stop=early_stop,
                    weights=loss_weights(generator, eps, x.dtype))


register_attack(
    "pgd@Linf",
    norm="Linf",
    defaults=PGDParams(),
    description="PGD (Madry et al.), Linf, cross-entropy, random start; last iterate",
)(_pgd)
register_attack(
    "pgd@L2",
    norm="L2",
    defaults=PGDParams(),
    description="PGD (Madry et al.), L2, cross-entropy, random start; last iterate",
)(_pgd)


__all__ = ["pgd_loop"]

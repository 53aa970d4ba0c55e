"""Square attack (Andriushchenko et al., ECCV 2020), Linf, batched over per-row epsilons.

Our implementation of the algorithm of AutoAttack's ``square.py`` (Linf branch), with the same order of random
draws from a CPU generator (the reference draws on the CPU too), so that on the same rows, the same radius and the
same seed it visits the same points; the tests check this against ``pyautoattack``. What differs, on purpose:
per-row radii (rows of several epsilons share the random squares of an iteration, as rows of one radius do in the
reference); an explicit generator instead of reseeding the global RNG; rows that stay robust return their
lowest-loss point (the reference returns the clean image). The attack is black-box: it uses only the logits.
Square is naturally "early exit": a row stops being queried as soon as it is misclassified.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import bshape
from .params import SquareParams
from .registry import register_attack


def p_selection(p_init: float, it: int, n_queries: int, rescale: bool) -> float:
    """Fraction of pixels of the square at iteration ``it`` (the reference's piecewise schedule)."""
    if rescale:
        it = int(it / n_queries * 10000)
    for upper, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256)):
        if it <= upper:
            return p_init / div
    return p_init / 512


def _margin_and_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    xent = F.cross_entropy(logits, y, reduction="none")
    u = torch.arange(x.shape[0], device=x.device)
    y_corr = logits[u, y].clone()
    logits[u, y] = -float("inf")
    y_others = logits.max(dim=-1)[0]
    m = y_corr - y_others
    return m, (m if loss == "margin" else -1.0 * xent)


def _rand(g: torch.Generator, shape: list[int], device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g).to(device)


def _square_single_run(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, p: SquareParams, g: torch.Generator
) -> torch.Tensor:
    c, h, w = x.shape[1:]
    n_features = c * h * w
    eb = bshape(eps, x)
    x_best = torch.clamp(x + eb * torch.sign(2 * _rand(g, [x.shape[0], c, 1, w], x.device) - 1), 0.0, 1.0)
    margin_min, loss_min = _margin_and_loss(model, x_best, y, p.loss)
    if bool((margin_min < 0.0).all()):
        return x_best
    for i_iter in range(p.n_queries):
        idx = (margin_min > 0.0).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x_curr, x_best_curr, y_curr, e_curr = x[idx], x_best[idx], y[idx], eb[idx]
        margin_min_curr, loss_min_curr = margin_min[idx], loss_min[idx]
        pf = p_selection(p.p_init, i_iter, p.n_queries, p.rescale_schedule)
        s = max(int(round(math.sqrt(pf * n_features / c))), 1)
        s = min(s, min(h, w))
        vh = int((0 + (h - s) * _rand(g, [1], x.device)).long())
        vw = int((0 + (w - s) * _rand(g, [1], x.device)).long())
        pattern = torch.zeros([c, h, w], device=x.device)
        pattern[:, vh : vh + s, vw : vw + s] = torch.sign(2 * _rand(g, [c, 1, 1], x.device) - 1)
        x_new = x_best_curr + (2.0 * e_curr) * pattern
        x_new = torch.clamp(torch.min(torch.max(x_new, x_curr - e_curr), x_curr + e_curr), 0.0, 1.0)
        m, loss = _margin_and_loss(model, x_new, y_curr, p.loss)
        improved = (loss < loss_min_curr).float()
        loss_min[idx] = improved * loss + (1.0 - improved) * loss_min_curr
        improved = torch.max(improved, (m <= 0.0).float())
        margin_min[idx] = improved * m + (1.0 - improved) * margin_min_curr
        ib = improved.view(-1, *([1] * (x.ndim - 1)))
        x_best[idx] = ib * x_new + (1.0 - ib) * x_best_curr
        if bool((margin_min <= 0.0).all()):
            break
    return x_best


@torch.no_grad()
def square_perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    params: SquareParams,
    *,
    norm: str,
    generator: torch.Generator,
    early_stop: bool,
) -> torch.Tensor:
    """Square attack with restarts, on the rows correctly classified on the clean image (others returned as is)."""
    if norm != "Linf":
        raise ValueError("our Square attack implements the Linf threat model only")
    g = generator
    if g.device.type != "cpu":
        g = torch.Generator()
        g.manual_seed(generator.initial_seed())
    robust = model(x).max(1)[1] == y
    out = x.clone()
    for _ in range(params.restarts):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        adv = _square_single_run(model, x[idx], y[idx], eps[idx], params, g)
        acc = model(adv).max(1)[1] == y[idx]
        robust[idx[~acc]] = False
        out[idx] = adv
    return out


register_attack(
    "aa_square@Linf",
    norm="Linf",
    defaults=SquareParams(),
    description="Square attack (AutoAttack's black-box component), Linf, 5000 queries",
)(square_perturb)  # type: ignore[arg-type]

__all__ = ["p_selection", "square_perturb"]

"""Square attack (Andriushchenko et al., ECCV 2020), Linf and L2, batched over per-row epsilons.

Our implementation of the algorithm of AutoAttack's ``square.py`` (Linf and L2 branches), with the same order of
random draws from a CPU generator (the reference draws on the CPU too), so that on the same rows, the same radius and
the same seed it visits the same points; the tests check this bitwise against ``pyautoattack`` for both norms.

- Linf: start from vertical stripes of +-eps; each query moves one random square (side from the ``p`` schedule)
  to a random corner of the eps box.
- L2: start from a grid of ``h // 5``-pixel windows, each holding a centred "meta pseudo-gaussian" pattern
  (:func:`_eta`: two opposite-signed halves of nested rectangles weighted ``1 / k**2``) with a random sign per
  channel, rescaled to norm eps; each query picks two random windows of odd side ``>= 3``, zeroes the second and
  puts in the first a new eta pattern plus the old content, scaled to the mass of both windows plus the unused
  budget, then rescales the whole perturbation to norm eps.

What differs, on purpose: random squares **per row** when ``generator`` is per-row streams (what ``evaluate``
passes: each (image, radius) row draws its own squares, signs and windows from its own CPU stream, so a row's
attack depends neither on the device nor on the other rows of its batch; the reference shares one square per
query across the batch, which our kernel still does when given a shared ``torch.Generator``, the way the tests
feed it the reference's draws); per-row radii; an explicit generator instead of reseeding the global RNG; rows that stay robust
return their lowest-loss point (the reference returns the clean image); for L2 on images smaller than 5 pixels the
initial windows have side 1 (the reference divides by zero). The attack is black-box: it uses only the logits.
Square is naturally "early exit": a row stops being queried as soon as it is misclassified.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_nas.utils.streams import RowStreams

from ._common import bshape, normalize
from ._draws import Draws, child, subset
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


def _random_sign(g: torch.Generator, shape: list[int], device: torch.device) -> torch.Tensor:
    return torch.sign(2 * _rand(g, shape, device) - 1)


def _random_int(g: torch.Generator, high: int, device: torch.device) -> int:
    """An integer in ``[0, high)`` (0 when ``high`` is 0), drawn as the reference's ``random_int(0, high)``."""
    return int((0 + high * _rand(g, [1], device)).long())


def _sq_norm(v: torch.Tensor) -> torch.Tensor:
    """Per-row L2 norm ``(B, 1, 1, 1)`` computed as the reference's ``lp_norm`` (bitwise)."""
    return (v**2).view(v.shape[0], -1).sum(-1).sqrt().view(-1, *([1] * (v.ndim - 1)))


def _window_norm(v: torch.Tensor) -> torch.Tensor:
    """L2 norm over the last two dimensions (per row and channel), kept as ``(..., 1, 1)``."""
    return (v**2).sum(dim=(-2, -1), keepdim=True).sqrt()


def _eta_rectangles(a: int, b: int, device: torch.device) -> torch.Tensor:
    """``(a, b)`` block of nested centred rectangles, the k-th (from the centre) weighted ``1 / k**2``, unit norm."""
    delta = torch.zeros([a, b], device=device)
    ca, cb = a // 2, b // 2
    n = max(ca, cb) + 1
    weights = 1.0 / torch.arange(1, n + 1, dtype=torch.float32, device=device) ** 2
    for k in range(n):
        delta[max(ca - k, 0) : min(ca + k + 1, a), max(cb - k, 0) : min(cb + k + 1, b)] += weights[k]
    return delta / _window_norm(delta)


# ---- random draws, per row -------------------------------------------------------------------------------------------
# ``g`` is a shared CPU torch.Generator (the reference's draws, expanded to every row) or RowStreams of the run's rows
# (one draw per row; ``idx`` picks the rows still queried). A run always makes the same sequence of draw calls per
# query, whichever rows are active, so a row's numbers depend only on its key and the query number.


def _ints(g: Draws, high: int, idx: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Integers in ``[0, high)`` for the ``n`` rows ``idx`` of the run (``None``: all), int64 ``(n,)``."""
    if isinstance(g, RowStreams):
        v = g.integers(high, device=device)
        return v if idx is None else v[idx]
    return torch.full((n,), _random_int(g, high, device), dtype=torch.long, device=device)


def _signs(g: Draws, shape: list[int], idx: torch.Tensor | None, n: int, device: torch.device,
           shared: bool) -> torch.Tensor:
    """Random signs ``(n, *shape)``; with a generator: one draw for all rows (``shared``) or one per row."""
    if isinstance(g, RowStreams):
        v = g.signs(shape, device=device)
        return v if idx is None else v[idx]
    if shared:
        return _random_sign(g, list(shape), device).unsqueeze(0).expand(n, *shape)
    return _random_sign(g, [n, *shape], device)


def _flips(g: Draws, idx: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Whether each row's eta window is transposed, bool ``(n,)`` (the reference: ``rand > 0.5`` per window)."""
    if isinstance(g, RowStreams):
        v = g.uniform((), device=device) > 0.5
        return v if idx is None else v[idx]
    return (_rand(g, [1], device) > 0.5).expand(n)


def _eta_base(s: int, device: torch.device) -> torch.Tensor:
    """The "meta pseudo-gaussian" ``s x s`` window: two opposite-signed halves, unit L2 norm (not transposed)."""
    delta = torch.zeros([s, s], device=device)
    delta[: s // 2] = _eta_rectangles(s // 2, s, device)
    delta[s // 2 :] = -1.0 * _eta_rectangles(s - s // 2, s, device)
    return delta / _window_norm(delta)


def _eta(s: int, flip: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Per-row eta windows ``(n, 1, s, s)``, transposed where ``flip`` (contiguous either way)."""
    e = _eta_base(s, device)
    return torch.where(flip.view(-1, 1, 1, 1), e.t().reshape(1, 1, s, s), e.view(1, 1, s, s))


def _windows(n: int, c: int, vh: torch.Tensor, vw: torch.Tensor, s: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Advanced indices of each row's ``s x s`` window at ``(vh[r], vw[r])``, all channels: ``v[idx]`` is
    ``(n, c, s, s)`` in the same element order as the slice ``v[r, :, vh:vh+s, vw:vw+s]`` (same summation order)."""
    ar = torch.arange(s, device=device)
    rows = torch.arange(n, device=device).view(n, 1, 1, 1)
    chans = torch.arange(c, device=device).view(1, c, 1, 1)
    hh = (vh.view(n, 1) + ar).view(n, 1, s, 1)
    ww = (vw.view(n, 1) + ar).view(n, 1, 1, s)
    return rows, chans, hh, ww


def _init_linf(x: torch.Tensor, eb: torch.Tensor, g: Draws) -> torch.Tensor:
    """Vertical stripes of +-eps (one sign per row, channel and column)."""
    c, w = x.shape[1], x.shape[3]
    return torch.clamp(x + eb * _signs(g, [c, 1, w], None, x.shape[0], x.device, shared=False), 0.0, 1.0)


def _init_l2(x: torch.Tensor, eb: torch.Tensor, g: Draws) -> torch.Tensor:
    """A grid of ``h // 5``-sized windows, each an eta pattern with a random sign per row and channel, scaled to eps."""
    n, c, h, w = x.shape
    s = max(h // 5, 1)  # the reference divides by zero below 5 pixels
    start = (h - s * 5) // 2  # windows past the border are empty slices but still draw their numbers, as there
    delta = torch.zeros_like(x)
    for i in range(h // s):
        for j in range(w // s):
            vh, vw = start + i * s, start + j * s
            e = _eta(s, _flips(g, None, n, x.device), x.device)
            sign = _signs(g, [c, 1, 1], None, n, x.device, shared=False)
            delta[:, :, vh : vh + s, vw : vw + s] += e * sign
    return torch.clamp(x + normalize(delta, "L2") * eb, 0.0, 1.0)


def _propose_linf(
    x: torch.Tensor, x_best: torch.Tensor, eb: torch.Tensor, pf: float, g: Draws, idx: torch.Tensor | None
) -> torch.Tensor:
    """Move one random square of each row's ``x_best`` to a random corner of its eps box (one sign per channel)."""
    n, c, h, w = x.shape
    s = max(int(round(math.sqrt(pf * (c * h * w) / c))), 1)  # the reference's arithmetic
    s = min(s, min(h, w))
    vh = _ints(g, h - s, idx, n, x.device)
    vw = _ints(g, w - s, idx, n, x.device)
    sign = _signs(g, [c, 1, 1], idx, n, x.device, shared=True)
    hh = torch.arange(h, device=x.device).view(1, 1, h, 1)
    ww = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (hh >= vh.view(n, 1, 1, 1)) & (hh < vh.view(n, 1, 1, 1) + s)
    inside = inside & (ww >= vw.view(n, 1, 1, 1)) & (ww < vw.view(n, 1, 1, 1) + s)
    pattern = torch.where(inside, sign, torch.zeros((), device=x.device))
    x_new = x_best + (2.0 * eb) * pattern
    return torch.clamp(torch.min(torch.max(x_new, x - eb), x + eb), 0.0, 1.0)


def _propose_l2(
    x: torch.Tensor, x_best: torch.Tensor, eb: torch.Tensor, pf: float, g: Draws, idx: torch.Tensor | None
) -> torch.Tensor:
    """Redistribute the perturbation mass of two random windows of each row into the first, as a new eta pattern."""
    n, c, h, w = x.shape
    s = max(int(round(math.sqrt(pf * (c * h * w) / c))), 3)
    s += 1 - s % 2  # odd
    s = min(s, min(h, w))
    vh = _ints(g, h - s, idx, n, x.device)
    vw = _ints(g, w - s, idx, n, x.device)
    vh2 = _ints(g, h - s, idx, n, x.device)
    vw2 = _ints(g, w - s, idx, n, x.device)
    flip = _flips(g, idx, n, x.device)
    sign = _signs(g, [c, 1, 1], idx, n, x.device, shared=False)
    delta = x_best - x
    win1 = _windows(n, c, vh, vw, s, x.device)
    win2 = _windows(n, c, vh2, vw2, s, x.device)
    d1 = delta[win1]
    norm_win1 = _window_norm(d1)
    norm_image = _sq_norm(delta)
    mask = torch.zeros_like(x)
    mask[win1] = 1.0
    mask[win2] = 1.0
    norm_windows = _window_norm(delta * mask)  # the mass of both windows (counted once where they overlap)
    new = _eta(s, flip, x.device) * sign
    new = new.contiguous() + d1 / (1e-12 + norm_win1)
    budget = torch.clamp_min(eb**2 - norm_image**2, 0.0) / c + norm_windows**2
    new = new / (1e-12 + _window_norm(new)) * budget.sqrt()
    delta[win2] = 0.0
    delta[win1] = new
    return torch.clamp(x + normalize(delta, "L2") * eb, 0.0, 1.0)


_KIND = {"Linf": (_init_linf, _propose_linf), "L2": (_init_l2, _propose_l2)}


#: Queries between two compactions of the queried rows with per-row streams: the only host synchronisation of the
#: loop (``nonzero`` and its size). In between, rows broken meanwhile are still forwarded but masked out of every
#: update (at most this many wasted queries per row); their results are unchanged because rows are independent.
COMPACT_EVERY = 16


def _square_single_run(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, p: SquareParams, g: Draws, norm: str,
    compact_every: int | None = None,
) -> torch.Tensor:
    """One Square run on rows ``x`` ``(B, C, H, W)``; returns the best points ``(B, C, H, W)``.

    ``compact_every``: queries between host synchronisations (default :data:`COMPACT_EVERY` with per-row streams;
    1 with a shared generator, whose draws depend on the number of rows queried, as in the reference).
    """
    init, propose = _KIND[norm]
    if compact_every is None:
        compact_every = COMPACT_EVERY if isinstance(g, RowStreams) else 1
    if compact_every < 1:
        raise ValueError(f"compact_every must be >= 1, got {compact_every}")
    if not isinstance(g, RowStreams) and compact_every != 1:
        raise ValueError("a shared generator draws per queried row: compact_every must be 1")
    eb = bshape(eps, x)
    x_best = init(x, eb, g)
    margin_min, loss_min = _margin_and_loss(model, x_best, y, p.loss)
    if bool((margin_min < 0.0).all()):
        return x_best
    idx = torch.arange(x.shape[0], device=x.device)
    for i_iter in range(p.n_queries):
        if i_iter % compact_every == 0:  # the loop's only host synchronisation
            idx = (margin_min > 0.0).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
        x_curr, x_best_curr, y_curr = x[idx], x_best[idx], y[idx]
        margin_min_curr, loss_min_curr = margin_min[idx], loss_min[idx]
        active = (margin_min_curr > 0.0).float()  # rows of idx broken since the last compaction: no update
        pf = p_selection(p.p_init, i_iter, p.n_queries, p.rescale_schedule)
        x_new = propose(x_curr, x_best_curr, eb[idx], pf, g, idx)
        m, loss = _margin_and_loss(model, x_new, y_curr, p.loss)
        improved = (loss < loss_min_curr).float() * active
        loss_min[idx] = improved * loss + (1.0 - improved) * loss_min_curr
        improved = torch.max(improved, (m <= 0.0).float() * active)
        margin_min[idx] = improved * m + (1.0 - improved) * margin_min_curr
        ib = improved.view(-1, *([1] * (x.ndim - 1)))
        x_best[idx] = ib * x_new + (1.0 - ib) * x_best_curr
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
    generator: Draws,
    early_stop: bool,
) -> torch.Tensor:
    """Square attack with restarts, on the rows correctly classified on the clean image (others returned as is).

    ``generator``: per-row streams (each row its own squares; what ``evaluate`` passes) or a shared generator (one
    square per query for all rows, the reference's draws). Returns adversarial images ``(B, C, H, W)``.
    """
    if norm not in _KIND:
        raise ValueError(f"our Square attack implements the Linf and L2 threat models, got {norm!r}")
    g = generator
    if isinstance(g, torch.Generator) and g.device.type != "cpu":
        g = torch.Generator()
        g.manual_seed(generator.initial_seed())
    robust = model(x).max(1)[1] == y
    out = x.clone()
    for restart in range(params.restarts):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        run_g = subset(child(g, "square", restart), idx)
        adv = _square_single_run(model, x[idx], y[idx], eps[idx], params, run_g, norm)
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
register_attack(
    "aa_square@L2",
    norm="L2",
    defaults=SquareParams(),
    description="Square attack (AutoAttack's black-box component), L2, 5000 queries",
)(square_perturb)  # type: ignore[arg-type]

__all__ = ["p_selection", "square_perturb"]

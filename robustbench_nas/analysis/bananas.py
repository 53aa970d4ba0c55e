"""BANANAS (White, Neiswanger & Savani, AAAI 2021): Bayesian optimisation with an ensemble of neural predictors.

Registered as the search algorithm ``bananas`` (:mod:`.search`'s registry), run like the others as table look-ups of
an :class:`~.search.Objective`; the budget counts distinct uids queried.

The loop, as in the paper:

1. query ``initial`` cells drawn uniformly (without replacement) from the evaluated cells;
2. train an ensemble of ``ensemble`` MLPs, each from its own seed, on the cells queried so far, encoded by the
   search space's ``path`` encoding (NB201: one indicator per input-to-output path of non-``none`` ops, 84
   features; the paper's path encoding) or any other encoding of the space;
3. make ``candidates`` new cells by mutating the ``parents`` best cells found so far (1 or 2 one-edge mutations
   each; cells already queried are skipped);
4. independent Thompson sampling (the paper's ITS): for every candidate draw one value from the Gaussian with the
   ensemble's mean and standard deviation of the predictions; query the ``k`` candidates with the highest draws;
5. repeat from 2 until the budget is spent (the ensemble is retrained every ``k`` queries, not every query).

Choices that differ from the paper, for cost on a table look-up: MLPs of 3 hidden layers of width 20 (the paper:
10 layers of width 20), full-batch Adam (learning rate 0.01, ``epochs`` steps) on the mean squared error of the
standardised target (the paper: mean absolute percentage error). The members are trained as one batched torch
network (:class:`Ensemble`), on the caller's torch thread count.

Example:
    >>> obj = Objective.from_series(T["pgd@Linf@1/255"])  # doctest: +SKIP
    >>> queried = bananas_search(obj, 150, np.random.default_rng(0))  # uids in query order  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .encodings import encode
from .search import Objective, _Budget, register_search


def _encoding_for(obj: Objective, encoding: str | None) -> str:
    """``encoding``, or the space's ``path`` encoding when it has one, else its default set.

    Raises:
        ValueError: ``encoding`` is not an encoding of the objective's space.
    """
    names = obj.space.list_encodings()  # type: ignore[attr-defined]
    if encoding is None:
        return "path" if "path" in names else "default"
    if encoding not in names and encoding not in ("all", "default"):
        raise ValueError(f"unknown encoding {encoding!r} for search space {obj.space_name!r}; known: {names}")
    return encoding


class Ensemble:
    """``size`` MLP regressors, each initialised from its own seed, trained together on the same cells.

    The members are one batched network (weights ``(size, in, out)`` per layer, ReLU, full-batch Adam with learning
    rate 0.01 on each member's mean squared error of the standardised target): the same as ``size`` separate MLPs,
    at the cost of one.

    Arguments:
        size: number of members (>= 2: the spread of one member is undefined).
        hidden: hidden layer widths.
        epochs: full-batch Adam steps.
        seed: seed of the members' initial weights (each member draws its own from the one generator).

    Shape:
        ``fit(X (n, F), y (n,))``; ``predict(X (m, F)) -> (mean (m,), std (m,))`` in the units of ``y``.
    """

    def __init__(self, size: int = 5, hidden: Sequence[int] = (20, 20, 20), epochs: int = 200, seed: int = 0) -> None:
        if size < 2:
            raise ValueError(f"an ensemble needs at least 2 members for a spread, got {size}")
        self.size, self.hidden, self.epochs, self.seed = size, tuple(hidden), epochs, seed
        self._shapes: list[tuple[int, int]] = []
        self._flat = torch.empty(0)
        self._mu, self._sd = 0.0, 1.0

    def _weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views ``(W (E, in, out), b (E, 1, out))`` of each layer into the one flat parameter vector."""
        out, at = [], 0
        for fan_in, fan_out in self._shapes:
            W = self._flat[at : at + self.size * fan_in * fan_out].view(self.size, fan_in, fan_out)
            at += W.numel()
            bias = self._flat[at : at + self.size * fan_out].view(self.size, 1, fan_out)
            at += bias.numel()
            out.append((W, bias))
        return out

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        h = X.expand(self.size, *X.shape)  # (E, n, F)
        layers = self._weights()
        for i, (W, bias) in enumerate(layers):
            h = torch.baddbmm(bias, h, W)
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)  # (E, n)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Ensemble":
        # standardised target: the learning rate and the initial weights then suit any target scale (accuracy in
        # [0, 1] or in %, a regret, ...)
        self._mu, self._sd = float(np.mean(y)), float(np.std(y)) or 1.0
        gen = torch.Generator().manual_seed(self.seed)
        widths = [X.shape[1], *self.hidden, 1]
        self._shapes = list(zip(widths[:-1], widths[1:]))
        init = []
        for fan_in, fan_out in self._shapes:  # PyTorch's default Linear init (uniform +- 1/sqrt(fan_in)), per member
            bound = 1.0 / np.sqrt(fan_in)
            init.append(((torch.rand(self.size * fan_in * fan_out, generator=gen) * 2 - 1) * bound))
            init.append(((torch.rand(self.size * fan_out, generator=gen) * 2 - 1) * bound))
        # one flat parameter vector (layers are views of it): Adam is then a handful of tensor ops per step
        self._flat = torch.cat(init).requires_grad_()
        Xt = torch.tensor(X, dtype=torch.float32)
        zt = torch.tensor((y - self._mu) / self._sd, dtype=torch.float32)
        m1, m2 = torch.zeros_like(self._flat), torch.zeros_like(self._flat)
        lr, beta1, beta2, tiny = 0.01, 0.9, 0.999, 1e-8
        for step in range(1, self.epochs + 1):
            # sum over members of each member's MSE: the members' gradients do not mix
            loss = ((self._forward(Xt) - zt) ** 2).mean(dim=1).sum()
            (g,) = torch.autograd.grad(loss, [self._flat])
            with torch.no_grad():  # Adam (Kingma & Ba 2015), written out: torch.optim imports torch._dynamo (slow)
                m1.mul_(beta1).add_(g, alpha=1 - beta1)
                m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                self._flat.sub_(lr / (1 - beta1**step) * m1 / ((m2 / (1 - beta2**step)).sqrt() + tiny))
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._shapes:
            raise RuntimeError("Ensemble.predict before fit")
        with torch.no_grad():
            P = self._forward(torch.tensor(X, dtype=torch.float32)).numpy().astype(np.float64)
        P = P * self._sd + self._mu
        return P.mean(axis=0), P.std(axis=0)


def _candidates(obj: Objective, parents: list[int], n: int, seen: set[int], rng: np.random.Generator) -> list[int]:
    """Up to ``n`` distinct unqueried uids, each 1 or 2 one-edge mutations of a parent (round robin).

    Falls back on unqueried evaluated cells drawn uniformly when the parents' neighbourhoods are used up.
    """
    space = obj.space
    out: dict[int, None] = {}
    for attempt in range(20 * n):
        if len(out) >= n:
            break
        child = parents[attempt % len(parents)]
        for _ in range(1 + int(rng.integers(2))):
            child = space.mutate(child, rng)  # type: ignore[attr-defined]
        u = obj.uid(child)
        if u not in seen:
            out[u] = None
    if len(out) < n:
        rest = np.setdiff1d(obj.candidates(), np.fromiter(seen | set(out), dtype=np.int64))
        if rest.size:
            out.update((int(u), None) for u in rng.choice(rest, size=min(n - len(out), rest.size), replace=False))
    return list(out)


@register_search("bananas")
def bananas_search(obj: Objective, budget: int, rng: np.random.Generator, *, encoding: str | None = None,
                   ensemble: int = 5, initial: int = 10, k: int = 10, candidates: int = 100, parents: int = 3,
                   hidden: Sequence[int] = (20, 20, 20), epochs: int = 200) -> list[int]:  # fmt: skip
    """BANANAS with an MLP ensemble and independent Thompson sampling (see the module docstring).

    Arguments:
        obj: the objective (higher is better).
        budget: distinct uids to query.
        rng: the only source of randomness (initial cells, mutations, Thompson draws, member seeds).
        encoding: an encoding of the objective's space (default: ``path`` where the space has it).
        ensemble: MLPs in the ensemble; initial: random cells before the first model; k: cells queried per round
            (the ensemble is retrained every ``k`` queries); candidates: mutated cells scored per round;
            parents: how many of the best cells are mutated; hidden, epochs: the MLPs' layers and epoch cap.

    Returns:
        The queried uids in order (at most ``budget``).
    """
    for name, v in (("ensemble", ensemble), ("initial", initial), ("k", k), ("candidates", candidates),
                    ("parents", parents)):  # fmt: skip
        if v < 1:
            raise ValueError(f"bananas: {name} must be >= 1, got {v}")
    kind = _encoding_for(obj, encoding)
    b = _Budget(obj, budget)
    pool = obj.candidates()
    for u in rng.choice(pool, size=min(initial, budget, pool.size), replace=False):
        b.ask(int(u))
    while not b.done:
        done = [u for u in b.order if np.isfinite(b.seen[u])]  # an unevaluated cell (-inf) teaches nothing
        top = sorted(done, key=lambda u: b.seen[u], reverse=True)[:parents] or [int(rng.choice(pool))]
        cand = _candidates(obj, top, candidates, set(b.seen), rng)
        if not cand:
            break  # every evaluated cell is queried
        if len(done) >= 2:
            X = encode(done, kind, space=obj.space_name).to_numpy()
            y = np.array([b.seen[u] for u in done])
            model = Ensemble(ensemble, hidden, epochs, seed=int(rng.integers(2**31 - ensemble))).fit(X, y)
            mean, sd = model.predict(encode(cand, kind, space=obj.space_name).to_numpy())
            draw = rng.normal(mean, sd)  # independent Thompson sampling: one draw per candidate
            order = np.argsort(-draw, kind="stable")
        else:
            order = rng.permutation(len(cand))
        for i in order[:k]:
            b.ask(int(cand[i]))
            if b.done:
                break
    return b.order


__all__ = ["Ensemble", "bananas_search"]

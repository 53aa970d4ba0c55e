"""Where the attacks' random numbers come from: a shared ``torch.Generator`` or per-row streams.

Every kernel's ``generator`` argument is either

- a :class:`~robustbench_nas.utils.streams.RowStreams` (what :func:`robustbench_nas.attacks.evaluate` passes):
  each row (one image at one radius) draws from its own counter-based CPU stream, so a row's attack does not
  depend on the device, on the batch size or on the other rows of its batch; or
- a ``torch.Generator``: one stream shared by the batch, drawn in the reference implementations' order (Square:
  one random square per query for the whole batch, as AutoAttack). This is how the tests feed our kernels the
  same draws as the references (torchattacks, AutoAttack) and check the arithmetic bit for bit; the numbers then
  depend on the batch.

Both go through the same per-row arithmetic: a shared draw is expanded to every row.
"""

from __future__ import annotations

from typing import Any, Union

import torch

from robustbench_nas.utils.streams import RowStreams

from ._common import mean_weights

#: A kernel's source of randomness.
Draws = Union[torch.Generator, RowStreams]


def check_draws(g: Any, rows: int) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``g`` is a generator or streams for exactly ``rows`` rows."""
    if isinstance(g, RowStreams):
        if len(g) != rows:
            raise ValueError(f"RowStreams has {len(g)} rows, the batch has {rows}")
    elif not isinstance(g, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or RowStreams, got {type(g).__name__}")


def child(g: Draws, *tag: Any) -> Draws:
    """Streams for a sub-part of an attack (a restart, a target class, a query); a shared generator continues."""
    return g.child(*tag) if isinstance(g, RowStreams) else g


def subset(g: Draws, rows: torch.Tensor) -> Draws:
    """The draws of ``rows`` (indices into the batch); a shared generator is shared by any subset."""
    return g.subset(rows) if isinstance(g, RowStreams) else g


def uniform_like(g: Draws, x: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) of ``x``'s shape, dtype and device."""
    if isinstance(g, RowStreams):
        return g.uniform(x.shape[1:], device=x.device, dtype=x.dtype)
    return torch.rand(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)


def normal_like(g: Draws, x: torch.Tensor) -> torch.Tensor:
    """Standard normal of ``x``'s shape, dtype and device."""
    if isinstance(g, RowStreams):
        return g.normal(x.shape[1:], device=x.device, dtype=x.dtype)
    return torch.randn(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)


def uniform_rows(g: Draws, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One uniform [0, 1) per row, ``(n,)``."""
    if isinstance(g, RowStreams):
        return g.uniform((), device=device, dtype=dtype)
    return torch.rand((n,), generator=g, device=g.device, dtype=dtype).to(device)


def loss_weights(g: Draws, eps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-row weights of the averaged losses (FGSM, PGD), ``(B,)``.

    With streams that know the evaluated set's size ``N``: ``1 / N`` on every row, torchattacks' mean when it
    attacks the whole set in one batch, the same for any batching. Otherwise torchattacks' mean over the rows of
    each radius in this batch (:func:`~robustbench_nas.attacks._common.mean_weights`).
    """
    if isinstance(g, RowStreams) and g.mean_over is not None:
        # the float reciprocal of N, exactly the 1/N that a mean's backward pass feeds each row
        w = torch.reciprocal(torch.tensor(float(g.mean_over), dtype=dtype, device=eps.device))
        return w.expand(eps.shape).clone()
    return mean_weights(eps, dtype)


__all__ = ["Draws", "check_draws", "child", "loss_weights", "normal_like", "subset", "uniform_like", "uniform_rows"]

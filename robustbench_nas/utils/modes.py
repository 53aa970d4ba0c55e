"""Train / eval mode handling shared by everything that evaluates a caller's model (bottom layer, torch only)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own flag afterwards.

    ``model.train(was_training)`` would set every submodule to the top module's flag, so a caller who had frozen
    some BatchNorm layers (``bn.eval()`` inside a training model) would find them unfrozen; this restores each
    module exactly as it was, also when the body raises.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)); _ = net[1].eval()  # frozen BN in a train model
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training, net[1].training
        (True, False)
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in flags:
            m.training = t

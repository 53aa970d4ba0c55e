"""Mixup (Zhang et al., ICLR 2018) as NAS-Bench-301's training applies it: one mixing weight per batch.

NB301 trains its DARTS genotypes with auto-PyTorch's batch-loss technique ``mixup`` (alpha 0.2): per batch,
``lam ~ Beta(alpha, alpha)``, the batch is mixed with a random permutation of itself, and the loss is
``lam * CE(pred, y) + (1 - lam) * CE(pred, y[perm])``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:  # fmt: skip
    """Mix a batch with a permutation of itself.

    Arguments:
        x: ``(B, ...)`` inputs (pixels in [0, 1]; the mix stays in [0, 1]).
        y: ``(B,)`` labels.
        alpha: Beta(alpha, alpha) parameter, > 0 (NB301: 0.2).
        rng: NumPy generator drawing ``lam`` and the permutation (on the CPU: the same seed mixes the same way on
            any device).

    Returns:
        ``(lam * x + (1 - lam) * x[perm], y[perm], lam)``; the first labels are ``y`` itself.

    Example:
        >>> xm, yb, lam = mixup(torch.rand(4, 3, 8, 8), torch.arange(4), 0.2, np.random.default_rng(0))
        >>> 0.0 <= lam <= 1.0 and sorted(yb.tolist()) == [0, 1, 2, 3]
        True
    """
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def mixup_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
                        label_smoothing: float = 0.0) -> torch.Tensor:  # fmt: skip
    """``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)`` (mean over the batch; ``logits`` ``(B, K)``)."""
    return (lam * F.cross_entropy(logits, y_a, label_smoothing=label_smoothing)
            + (1.0 - lam) * F.cross_entropy(logits, y_b, label_smoothing=label_smoothing))


__all__ = ["mixup", "mixup_cross_entropy"]

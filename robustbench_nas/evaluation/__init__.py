"""Classification statistics shared by the clean, adversarial and corruption evaluations.

Every evaluation in robustbench-nas reports the same per-cell statistics (the Jung et al. 2023 release stores
accuracy, confidence and confusion matrix for every attack / corruption): :class:`ClassificationStats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..utils.modes import eval_mode


@dataclass
class ClassificationStats:
    """Statistics of one evaluation of ``n`` images.

    Attributes:
        n: number of images.
        accuracy: fraction of correctly classified images, in [0, 1].
        confidence_pred: mean softmax probability of the predicted class.
        confidence_true: mean softmax probability of the true class.
        confusion: ``(K, K)`` int64 counts, rows = true class, columns = predicted class.
        correct: ``(n,)`` bool, image still classified correctly (pack with :meth:`correct_bits`).
    """

    n: int
    accuracy: float
    confidence_pred: float
    confidence_true: float
    confusion: np.ndarray
    correct: np.ndarray = field(repr=False)

    def correct_bits(self) -> np.ndarray:
        """The ``correct`` vector packed 8 per byte (``np.packbits``, big-endian bit order)."""
        return np.packbits(self.correct.astype(np.uint8))


def classification_stats(logits: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> ClassificationStats:
    """Compute :class:`ClassificationStats` from logits ``(n, K)`` and labels ``(n,)``."""
    if logits.ndim != 2 or y.ndim != 1 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"expected logits (n, K) and labels (n,), got {tuple(logits.shape)} and {tuple(y.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("cannot compute statistics of zero images")
    k = int(num_classes or logits.shape[1])
    logits = logits.detach().float()
    y = y.to(logits.device).long()
    prob = logits.softmax(dim=1)
    pred = prob.argmax(dim=1)
    correct = pred == y
    conf = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    return ClassificationStats(
        n=int(y.shape[0]),
        accuracy=float(correct.float().mean()),
        confidence_pred=float(prob.gather(1, pred[:, None]).mean()),
        confidence_true=float(prob.gather(1, y[:, None]).mean()),
        confusion=conf.cpu().numpy().astype(np.int64),
        correct=correct.cpu().numpy(),
    )


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` (its current mode) on ``x`` ``(n, C, H, W)`` in [0, 1], in batches, on the model's device."""
    device = next(model.parameters()).device
    outs = [model(x[i : i + batch_size].to(device)).float() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, 0)


def evaluate_clean(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> ClassificationStats:
    """Clean-image statistics of ``model`` in eval mode (each module's own mode is restored)."""
    with eval_mode(model):
        logits = predict_logits(model, x, batch_size)
    return classification_stats(logits, y, num_classes=logits.shape[1])


__all__ = ["ClassificationStats", "classification_stats", "evaluate_clean", "predict_logits"]

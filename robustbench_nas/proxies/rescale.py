"""Power-of-two activation rescaling, so that CRoZe's BN-free, absolute-weight surrogate runs in float32.

The surrogate network of CRoZe (and synflow) has no BN and only non-negative weights, so its activations grow by a
roughly constant factor per layer: on a full-size NB201 cell the logits reach ~1e47 (the weight-perturbed copy more),
far past float32's 3.4e38. That is why the reference runs it in float64.

Every module after the stem of an NB201 / NATS-Bench SSS network without BN is positively homogeneous of degree 1
in its input (bias-free convolutions, ReLU, average pooling, sums of edges, zero and identity edges), except the
classifier's bias. So dividing a cell's output by a constant ``c`` divides everything downstream by ``c``, exactly
(in floating point too, for ``c`` a power of two), provided the classifier's bias is divided by the product of the
constants as well. :class:`ActivationRescaler` does that with forward hooks, choosing per forward pass a power of
two for each cell whose output exceeds 2^64 (bringing its maximum to ~2^32).

What CRoZe reads is unchanged by such uniform scalings: cosine similarities (of features, of weight gradients:
each layer's gradient is the true one times ``1 / prod(c)``), the direction ``g / ||g||`` of the weight step and the
sign of the input gradient. The loss gradient ``softmax - onehot`` is unchanged while the softmax stays saturated:
the rescaled logits keep magnitudes >= ~2^32, so the softmax is one-hot in both (the reference's logits differ by
~1e40); near-ties are where float32 and float64 could differ anyway.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

#: rescale a cell's output when its largest magnitude exceeds 2^RESCALE_ABOVE, down to about 2^RESCALE_TO
RESCALE_ABOVE, RESCALE_TO = 64, 32

_HOMOGENEOUS = (nn.Conv2d, nn.ReLU, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


def rescalable(net: nn.Module) -> bool:
    """Whether :class:`ActivationRescaler` is exact for ``net``: a chain of cells (``net.cells``, an
    ``nn.Sequential`` whose elements each take the previous output), then ``lastact``, ``global_pooling`` and a
    linear ``classifier``, every leaf after the stem homogeneous (bias-free convolutions, ReLU, pooling, identity,
    the NB201 ``Zero`` op): BN already removed."""
    parts = [getattr(net, a, None) for a in ("cells", "lastact", "global_pooling", "classifier")]
    if not isinstance(parts[0], nn.Sequential) or not isinstance(parts[3], nn.Linear) or None in parts:
        return False
    for part in parts[:3]:
        for m in part.modules():  # type: ignore[union-attr]
            if any(True for _ in m.children()):
                continue
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                return False
            if not (isinstance(m, _HOMOGENEOUS) or type(m).__name__ == "Zero"):
                return False
    return True


class ActivationRescaler:
    """Context manager: while active, each forward pass of ``net`` rescales cell outputs by powers of two.

    Arguments:
        net: a network for which :func:`rescalable` holds (checked; ``ValueError`` otherwise).

    Attributes:
        log2_scale: after a forward pass, ``log2`` of the total factor the logits were divided by (0 = none).

    Example:
        >>> with ActivationRescaler(surrogate):
        ...     out = surrogate(x)  # == true logits / 2**rescaler.log2_scale, in float32's range
    """

    def __init__(self, net: nn.Module) -> None:
        if not rescalable(net):
            raise ValueError(f"{type(net).__name__} is not a BN-free chain of homogeneous cells with a linear head: "
                             "rescaling its activations would change what it computes")
        self.net = net
        self.log2_scale = 0
        self._handles: list[Any] = []

    def __enter__(self) -> "ActivationRescaler":
        self._handles.append(self.net.register_forward_pre_hook(self._reset))
        for cell in self.net.cells:  # type: ignore[union-attr]
            self._handles.append(cell.register_forward_hook(self._rescale))
        self._handles.append(self.net.classifier.register_forward_hook(self._head))  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _reset(self, _m: nn.Module, _inp: tuple) -> None:
        self.log2_scale = 0

    def _rescale(self, _m: nn.Module, _inp: tuple, out: torch.Tensor) -> torch.Tensor | None:
        peak = float(out.detach().abs().amax()) if out.numel() else 0.0
        if not math.isfinite(peak):
            raise FloatingPointError("activation overflow before rescaling (a cell's gain exceeds 2^64)")
        if peak <= 2.0**RESCALE_ABOVE:
            return None
        e = math.floor(math.log2(peak)) - RESCALE_TO
        self.log2_scale += e
        return out * 2.0**-e  # a power of two: exact, and a constant for autograd

    def _head(self, m: nn.Module, inp: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if self.log2_scale == 0 or m.bias is None:  # type: ignore[union-attr]
            return None
        # the bias is the one non-homogeneous term: scale it with the activations so the logits are the true ones
        # divided by 2^log2_scale
        return F.linear(inp[0], m.weight, m.bias * 2.0**-self.log2_scale)  # type: ignore[arg-type]


__all__ = ["ActivationRescaler", "RESCALE_ABOVE", "RESCALE_TO", "rescalable"]

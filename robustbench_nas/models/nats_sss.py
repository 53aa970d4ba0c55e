"""The NATS-Bench size-space network (xautodl ``DynamicShapeTinyNet``), built from its five widths.

Stem conv 3x3 (in -> C1) + BN; cell (C1 -> C1); residual block (C1 -> C2, stride 2); cell (C2 -> C3); residual
block (C3 -> C4, stride 2); cell (C4 -> C5); BN, ReLU, global average pool, linear. The cell is the fixed
:data:`~robustbench_nas.search_spaces.nats_sss.SSS_CELL`. The layers are NB201's (:mod:`.nb201`), so the module
layout (``stem``, ``cells``, ``lastact``, ``global_pooling``, ``classifier``) is the same as
:class:`~robustbench_nas.models.nb201.NB201Network` with one cell per stage. The first layer normalises, so the
network takes pixels in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..constants import CIFAR_MEAN, CIFAR_STD
from ..search_spaces import get_search_space, parse_arch
from ..search_spaces.nats_sss import SSS_CELL
from ..search_spaces.networks import register_network
from .nb201 import InferCell, Normalize, ResNetBasicBlock, StagedNetwork


class NATSSizeNetwork(StagedNetwork):
    """One NATS-Bench SSS network.

    Arguments:
        channels: the decoded architecture, the five channel counts ``(C1, C2, C3, C4, C5)``; a string or an index
            is decoded by the space (``get_search_space("nats-sss").build_network(arch)``), not here.
        num_classes: size of the linear head.
        mean, std: per-channel normalisation applied by the first layer.
        in_channels: image channels.

    Shape:
        input ``(B, in_channels, H, W)`` in [0, 1]; output logits ``(B, num_classes)``.

    Example:
        >>> net = NATSSizeNetwork((8, 16, 24, 32, 64))
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    space_name = "nats-sss"

    def __init__(self, channels: Sequence[int], num_classes: int = 10, mean: Sequence[float] = CIFAR_MEAN,
                 std: Sequence[float] = CIFAR_STD, in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(channels, (tuple, list)):
            raise TypeError(f"NATSSizeNetwork takes the decoded channels (C1, ..., C5), got {channels!r}; build from "
                            "a string or an index with get_search_space('nats-sss').build_network(arch)")
        space = get_search_space(self.space_name)
        ch = space.decode(tuple(channels))  # checks the five widths (ArchitectureError)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.channels = ch
        self.arch_str = space.format(ch)
        self.config = {
            "space": self.space_name,
            "arch": self.arch_str,
            "num_classes": int(num_classes),
            "N": 1,  # one cell per stage (read by proxies that pair layers with stages, e.g. CRoZe)
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "in_channels": int(in_channels),
        }
        cell = parse_arch(SSS_CELL)
        c1, c2, c3, c4, c5 = ch
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1))
        self.cells = nn.Sequential(
            InferCell(cell, c1, c1), ResNetBasicBlock(c1, c2), InferCell(cell, c2, c3), ResNetBasicBlock(c3, c4),
            InferCell(cell, c4, c5),
        )
        self.lastact = nn.Sequential(nn.BatchNorm2d(c5), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c5, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-pooling feature map ``(B, C5, H/4, W/4)`` (used by proxies such as Zen)."""
        return self.lastact(self.cells(self.stem(self.normalize(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.features(x)).flatten(1))


@register_network("nats-sss")
def build_nats_sss_network(channels: Sequence[int], num_classes: int = 10, *, mean: Sequence[float] = CIFAR_MEAN,
                           std: Sequence[float] = CIFAR_STD, in_channels: int = 3) -> NATSSizeNetwork:
    """The builder ``NATSSizeSpace.build_network`` uses: the network of already decoded channels."""
    return NATSSizeNetwork(channels, num_classes=num_classes, mean=mean, std=std, in_channels=in_channels)


__all__ = ["NATSSizeNetwork", "build_nats_sss_network"]

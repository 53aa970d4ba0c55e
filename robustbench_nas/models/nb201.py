"""The NAS-Bench-201 macro network (Dong & Yang, ICLR 2020), built from a decoded cell, and its layers.

Stem 3x3 conv (C) + BN; three stages of ``N`` cells at C, 2C, 4C channels separated by ResNet basic reduction
blocks; BN + ReLU + global average pool + linear head. Ops are ReLU -> Conv(bias=False) -> BN; avg pool 3x3
stride 1 pad 1 with ``count_include_pad=False``; ``none`` is the zero op. The first layer normalises the input,
so the network takes pixels in [0, 1].

The layers (:class:`InferCell`, :class:`ResNetBasicBlock`, ...) also build other spaces' networks: a cell may map
``c_in -> c_out`` channels (NATS-Bench's size space), as in xautodl's ``InferCell``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..constants import CIFAR_MEAN, CIFAR_STD
from ..search_spaces import get_search_space
from ..search_spaces.nb201 import EDGES, Cell
from ..search_spaces.networks import register_network
from .pooling import AvgPool2d

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "InferCell", "NB201Network", "Normalize", "ResNetBasicBlock", "StagedNetwork",
           "build_model", "build_nb201_network", "make_op"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; ``x`` of shape ``(N, C, H, W)`` in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d(bias=False) -> BatchNorm2d (affine, running stats)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape (stride 1), with ``c_out`` channels when given."""

    def __init__(self, c_out: int | None = None) -> None:
        super().__init__()
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_out is None or self.c_out == x.shape[1]:
            return x.mul(0.0)
        return x.new_zeros((x.shape[0], self.c_out, *x.shape[2:]))


class ConvBN(nn.Sequential):
    """Conv1x1(bias=False) -> BN without ReLU: ``skip_connect`` between different widths (xautodl's
    ``FactorizedReduce`` at stride 1)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False), nn.BatchNorm2d(c_out))


class ProjectedPool(nn.Sequential):
    """``avg_pool_3x3`` between different widths: ReLU-Conv1x1-BN, then the pool (xautodl's ``POOLING``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(ReLUConvBN(c_in, c_out, 1, 1, 0), AvgPool2d(3, stride=1, padding=1, count_include_pad=False))


def make_op(op: str, channels: int, c_out: int | None = None) -> nn.Module:
    """One NB201 edge op at stride 1 from ``channels`` to ``c_out`` channels (default: ``channels``)."""
    c_in, c_out = channels, channels if c_out is None else c_out
    if op == "none":
        return Zero() if c_in == c_out else Zero(c_out)
    if op == "skip_connect":
        return nn.Identity() if c_in == c_out else ConvBN(c_in, c_out)
    if op == "nor_conv_1x1":
        return ReLUConvBN(c_in, c_out, 1, 1, 0)
    if op == "nor_conv_3x3":
        return ReLUConvBN(c_in, c_out, 3, 1, 1)
    if op == "avg_pool_3x3":
        if c_in != c_out:
            return ProjectedPool(c_in, c_out)
        return AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {op!r}")


class InferCell(nn.Module):
    """A NB201 cell: node ``j`` = sum over ``i < j`` of ``op_ij(node_i)``; output = node 3.

    Edges leaving the input node map ``channels -> c_out``, the others ``c_out -> c_out`` (``c_out`` defaults to
    ``channels``: NB201's cells keep their width).
    """

    def __init__(self, cell: Cell, channels: int, c_out: int | None = None) -> None:
        super().__init__()
        self.cell = cell
        c_out = channels if c_out is None else c_out
        self.edges = nn.ModuleList(make_op(op, channels if i == 0 else c_out, c_out)
                                   for (_j, i), op in zip(EDGES, cell.ops))
        self._sources = [[k for k, (j, _) in enumerate(EDGES) if j == t] for t in (1, 2, 3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for ks in self._sources:
            out = None
            for k in ks:
                y = self.edges[k](nodes[EDGES[k][1]])
                out = y if out is None else out + y
            nodes.append(out)
        return nodes[3]

    def extra_repr(self) -> str:
        return str(self.cell)


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: stride-2 ReLU-Conv3x3-BN, ReLU-Conv3x3-BN, shortcut AvgPool2d(2) + Conv1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class StagedNetwork(nn.Module):
    """The layout NB201's macro network and NATS-Bench SSS's share: ``stem``, ``cells`` (cells and
    :class:`ResNetBasicBlock` reductions in order), ``lastact``, ``global_pooling``, ``classifier``.

    Proxies that pair layers with stages (CRoZe) ask the network for its stages here instead of knowing a space.
    """

    stem: nn.Module
    cells: nn.Sequential
    global_pooling: nn.Module
    config: dict

    def stage_modules(self) -> list[nn.Module]:
        """Modules whose outputs end a stage: the stem, each reduction block, the cell stack, the global pooling."""
        return [self.stem, *(m for m in self.cells if isinstance(m, ResNetBasicBlock)), self.cells,
                self.global_pooling]

    def cell_modules(self) -> list[nn.Module]:
        """The cells, in forward order."""
        return [m for m in self.cells if isinstance(m, InferCell)]

    @property
    def cells_per_stage(self) -> int:
        """``N``, the cells between two reductions."""
        return int(self.config["N"])


class NB201Network(StagedNetwork):
    """The NB201 macro network for one cell.

    Arguments:
        cell: the decoded architecture, a :class:`~robustbench_nas.search_spaces.nb201.Cell` or the tuple of its six
            edge ops (string order); a string or an index is decoded by the space
            (``get_search_space("nb201").build_network(arch)``, or :func:`build_model`), not here.
        num_classes: size of the linear head.
        C: channels of the first stage (NB201: 16).
        N: cells per stage (NB201: 5).
        mean, std: per-channel normalisation applied by the first layer.
        in_channels: image channels.

    Shape:
        input ``(B, in_channels, H, W)`` in [0, 1]; output logits ``(B, num_classes)``.

    Example:
        >>> net = NB201Network(("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3",
        ...                     "nor_conv_3x3"))
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    #: the search space whose network this is (its FLOP convention, its checkpoints)
    space_name = "nb201"

    def __init__(
        self,
        cell: Cell | Sequence[str],
        num_classes: int = 10,
        C: int = 16,
        N: int = 5,
        mean: Sequence[float] = CIFAR_MEAN,
        std: Sequence[float] = CIFAR_STD,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(cell, (str, int)) or not isinstance(cell, (Cell, tuple, list)):
            raise TypeError(f"NB201Network takes a decoded cell (Cell or a tuple of 6 ops), got {cell!r}; build from "
                            "a string or an index with get_search_space('nb201').build_network(arch)")
        cell = cell if isinstance(cell, Cell) else Cell(tuple(cell))  # Cell checks the ops (ArchitectureError)
        if C < 1 or N < 1 or num_classes < 1:
            raise ValueError(f"C, N and num_classes must be positive, got C={C} N={N} num_classes={num_classes}")
        self.arch_str = str(cell)
        self.config = {
            "arch": self.arch_str,
            "num_classes": int(num_classes),
            "C": int(C),
            "N": int(N),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "in_channels": int(in_channels),
        }
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResNetBasicBlock(c_prev, c))
            layers.extend(InferCell(cell, c) for _ in range(N))
            c_prev = c
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-pooling feature map ``(B, 4C, H/4, W/4)`` (used by proxies such as Zen)."""
        return self.lastact(self.cells(self.stem(self.normalize(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.global_pooling(self.features(x)).flatten(1)
        return self.classifier(out)


def build_model(
    arch: object,
    num_classes: int = 10,
    C: int = 16,
    N: int = 5,
    mean: Sequence[float] = CIFAR_MEAN,
    std: Sequence[float] = CIFAR_STD,
    in_channels: int = 3,
) -> NB201Network:
    """Build the NB201 network of ``arch`` (string, index or cell, decoded by the NB201 space); see
    :class:`NB201Network`."""
    return NB201Network(get_search_space("nb201").decode(arch), num_classes=num_classes, C=C, N=N, mean=mean,
                        std=std, in_channels=in_channels)


@register_network("nb201")
def build_nb201_network(cell: Cell, num_classes: int = 10, *, C: int = 16, N: int = 5,
                        mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD,
                        in_channels: int = 3) -> NB201Network:
    """The builder ``NB201SearchSpace.build_network`` uses: the network of an already decoded :class:`Cell`."""
    return NB201Network(cell, num_classes=num_classes, C=C, N=N, mean=mean, std=std, in_channels=in_channels)

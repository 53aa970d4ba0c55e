"""DARTS's evaluation network ``NetworkCIFAR`` (Liu et al., ICLR 2019), built from a decoded genotype.

Facts from the DARTS repository (quark0/darts, ``cnn/model.py`` and ``cnn/operations.py``), implemented here:

- stem ``Conv2d(in, 3C, 3, pad 1, no bias)`` + BN; ``layers`` cells, the cells at ``layers // 3`` and
  ``2 * layers // 3`` are reduction cells and double the channels; a cell's inputs are preprocessed to its ``C``
  channels by ReLU-Conv1x1-BN, or by ``FactorizedReduce`` (ReLU, two stride-2 1x1 convs on ``x`` and on ``x``
  shifted by one pixel, concatenated, BN) for the first input when the previous cell reduced;
- in a reduction cell the edges leaving the two cell inputs have stride 2;
- ops: ``max_pool_3x3`` / ``avg_pool_3x3`` (pad 1, the average without the padding), ``skip_connect`` (identity, or
  ``FactorizedReduce`` at stride 2), ``sep_conv_kxk`` = (ReLU, depthwise kxk, pointwise 1x1, BN) twice, the first
  with the stride, ``dil_conv_kxk`` = ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN; BN affine everywhere;
- drop path: in training, each op output except the identity is zeroed per sample with probability ``p`` and
  scaled by ``1 / (1 - p)``; the trainer sets :attr:`DartsNetwork.drop_path_prob`;
- auxiliary head (training only) on the output of cell ``2 * layers // 3``: ReLU, AvgPool 5 stride 3, Conv1x1 to
  128 + BN + ReLU, Conv2x2 to 768 + BN + ReLU, Linear; its parameters carry ``auxiliary`` in their names, which
  DARTS's ``count_parameters_in_MB`` leaves out;
- global average pooling and a linear classifier on the last cell (no final BN / ReLU).

As every network of this package it normalises its input first (mean / std), so it takes pixels in [0, 1].
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..constants import CIFAR_MEAN, CIFAR_STD
from ..search_spaces.darts_genotype import CONCAT, NUM_NODES, DartsCell, DartsGenotype
from ..search_spaces.networks import register_network
from .nb201 import Normalize
from .pooling import AvgPool2d

__all__ = ["AuxiliaryHeadCIFAR", "DartsCellModule", "DartsNetwork", "DilConv", "FactorizedReduce", "ReLUConvBN",
           "SepConv", "drop_path", "make_darts_op", "reduction_layers"]


def reduction_layers(layers: int) -> tuple[int, int]:
    """Positions of the two reduction cells (DARTS: ``layers // 3`` and ``2 * layers // 3``)."""
    return layers // 3, 2 * layers // 3


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d(bias=False) -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out))


class DilConv(nn.Sequential):
    """ReLU -> depthwise conv (dilated) -> pointwise conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two DilConv-like blocks without dilation: the separable convolution is applied twice (stride on the first)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(DilConv(c_in, c_in, kernel, stride, padding, 1), DilConv(c_in, c_out, kernel, 1, padding, 1))


class FactorizedReduce(nn.Module):
    """Halve the resolution: ReLU, two stride-2 1x1 convs (on ``x`` and on ``x`` shifted by one pixel), concat, BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def make_darts_op(op: str, channels: int, stride: int) -> nn.Module:
    """One DARTS op at ``channels`` channels and ``stride`` (1, or 2 on a reduction cell's input edges)."""
    c = channels
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if op == "avg_pool_3x3":
        return AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if op in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(op[-1])
        return SepConv(c, c, k, stride, k // 2)
    if op in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(op[-1])
        return DilConv(c, c, k, stride, 2 * (k // 2), 2)  # dilation 2: padding keeps the size
    raise ValueError(f"unknown DARTS op {op!r}")


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``p`` and scale the kept ones by ``1 / (1 - p)``."""
    keep = 1.0 - p
    mask = torch.empty((x.shape[0], 1, 1, 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class DartsCellModule(nn.Module):
    """One DARTS cell (normal or reduction) mapping the outputs of the two previous cells to ``4 * C`` channels."""

    def __init__(self, cell: DartsCell, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels) if reduction_prev
                            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.inputs = [i for _op, i in cell.edges]
        self._ops = nn.ModuleList(make_darts_op(op, channels, 2 if reduction and i < 2 else 1) for op, i in cell.edges)
        self.multiplier = len(CONCAT)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(NUM_NODES):
            total = None
            for e in (2 * k, 2 * k + 1):
                op = self._ops[e]
                h = op(states[self.inputs[e]])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in CONCAT], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS's auxiliary classifier for 8x8 feature maps (training only)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 5 or x.shape[-2] < 5:
            raise ValueError(f"the DARTS auxiliary head needs feature maps of at least 5x5 (8x8 on 32x32 images), got "
                             f"{tuple(x.shape[-2:])}: train without it (auxiliary_weight 0) on small images")
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """DARTS's ``NetworkCIFAR`` for one genotype.

    Arguments:
        genotype: a decoded :class:`DartsGenotype` (the space parses strings; this builder takes the object).
        num_classes: size of the linear head.
        C: channels of the first cells (the stem has ``3 * C``).
        layers: number of cells (two of them reduce).
        auxiliary: build the auxiliary head (used by :meth:`forward_with_auxiliary` in training).
        mean, std: per-channel normalisation applied by the first layer.
        in_channels: image channels.

    Shape:
        input ``(B, in_channels, H, W)`` in [0, 1] (H, W divisible by 4); output logits ``(B, num_classes)``.
    """

    space_name = "darts"

    def __init__(self, genotype: DartsGenotype, num_classes: int = 10, C: int = 36, layers: int = 20,
                 auxiliary: bool = False, mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD,
                 in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(genotype, DartsGenotype):
            raise TypeError(f"DartsNetwork takes a decoded DartsGenotype, got {type(genotype).__name__} "
                            "(decode strings with get_search_space('darts').decode)")
        if C < 1 or layers < 1 or num_classes < 1:
            raise ValueError(f"C, layers and num_classes must be positive, got C={C} layers={layers} "
                             f"num_classes={num_classes}")
        self.genotype = genotype
        self.arch_str = str(genotype)
        self.config = {
            "space": self.space_name,
            "arch": self.arch_str,
            "num_classes": int(num_classes),
            "C": int(C),
            "layers": int(layers),
            "auxiliary": bool(auxiliary),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "in_channels": int(in_channels),
        }
        #: drop-path probability used in training mode (the trainer schedules it; 0 = off)
        self.drop_path_prob = 0.0
        self.normalize = Normalize(mean, std)
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        reductions = reduction_layers(layers)
        self._aux_after = reductions[1]
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_p
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = DartsCellModule(genotype.reduce if reduction else genotype.normal, c_pp, c_p, c_curr, reduction,
                                   reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self._aux_after:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def _run(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = s1 = self.stem(self.normalize(x))
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if with_aux and i == self._aux_after:
                aux = self.auxiliary_head(s1)  # type: ignore[misc]
        return s1, aux

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last cell ``(B, 4 * 4C, H/4, W/4)``, before pooling (used by proxies such as Zen)."""
        return self._run(x, False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.features(x)).flatten(1))

    def forward_with_auxiliary(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, auxiliary logits)``: the training forward of a network built with ``auxiliary=True``."""
        if self.auxiliary_head is None:
            raise ValueError("this DARTS network has no auxiliary head (build it with auxiliary=True)")
        s1, aux = self._run(x, True)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux  # type: ignore[return-value]

    @property
    def cells_per_stage(self) -> int:
        """Normal cells per stage, ``N = (layers - 2) // 3`` (exact for layers = 3 N + 2, the profiles' networks)."""
        return max(1, (len(self.cells) - 2) // 3)

    def stage_modules(self) -> list[nn.Module]:
        """The five modules whose outputs end a stage, as CRoZe reads NB201's (:meth:`croze_layout`)."""
        return self.croze_layout()[0]

    def cell_modules(self) -> list[nn.Module]:
        """The normal cells in forward order (the cells CRoZe counts to pair layers with stage features)."""
        is_cell = self.croze_layout()[1]
        return [m for m in self.modules() if is_cell(m)]

    def croze_layout(self) -> tuple[list[nn.Module], Callable[[nn.Module], bool]]:
        """CRoZe's NB201 layout mapped onto DARTS (the reduction cells play NB201's reduction blocks): the five
        features are the stem, the two reduction cells, the last cell and the pooling; the cells counted to pair
        layers with features are the normal cells."""
        r1, r2 = reduction_layers(len(self.cells))
        feats = [self.stem, self.cells[r1], self.cells[r2], self.cells[len(self.cells) - 1], self.global_pooling]
        return feats, lambda m: isinstance(m, DartsCellModule) and not m.reduction

    def without_auxiliary(self) -> "DartsNetwork":
        """Remove the auxiliary head after training (in place): the network that is evaluated and saved."""
        self.auxiliary_head = None
        self.config["auxiliary"] = False
        return self


@register_network("darts")
def build_darts_network(genotype: DartsGenotype, num_classes: int = 10, *, C: int = 36, layers: int = 20,
                        auxiliary: bool = False, mean: Sequence[float] = CIFAR_MEAN,
                        std: Sequence[float] = CIFAR_STD, in_channels: int = 3) -> DartsNetwork:
    """The builder ``DartsSearchSpace.build_network`` uses: the network of an already decoded genotype."""
    return DartsNetwork(genotype, num_classes=num_classes, C=C, layers=layers, auxiliary=auxiliary, mean=mean,
                        std=std, in_channels=in_channels)

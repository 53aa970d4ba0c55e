"""Parameter and FLOP counts of built models (measured with forward hooks, not formulas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

#: A constant in NAS-Bench-201's published FLOPs of unknown origin; with it, :func:`count_flops`'s ``nb201``
#: count equals the published value on every cell checked (see docs/protocols in the shared folder).
NB201_FLOPS_CONSTANT = 1078


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass of a single image.

    Attributes:
        plain: multiply-adds of the convolutions and the linear layer.
        nb201: NAS-Bench-201's convention (the published ``flops`` column): ``plain`` + linear bias +
            3 x conv output elements + 9 x output elements of the in-cell 3x3 average pools + 1078.
    """

    plain: int
    nb201: int

    @property
    def plain_m(self) -> float:
        return self.plain / 1e6

    @property
    def nb201_m(self) -> float:
        return self.nb201 / 1e6


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN affine included, buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> FlopCount:
    """Count FLOPs of ``model`` on one input of shape ``input_shape`` = ``(C, H, W)``."""
    conv_macs = conv_out = pool_out = lin_macs = lin_bias = 0

    def on_conv(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal conv_macs, conv_out
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        conv_macs += out.numel() * k
        conv_out += out.numel()

    def on_pool(m: nn.AvgPool2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal pool_out
        if m.kernel_size in (3, (3, 3)) and m.stride in (1, (1, 1)):
            pool_out += out.numel()

    def on_linear(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal lin_macs, lin_bias
        lin_macs += m.in_features * m.out_features
        lin_bias += m.out_features if m.bias is not None else 0

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(on_conv))
        elif isinstance(mod, nn.AvgPool2d):
            hooks.append(mod.register_forward_hook(on_pool))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(on_linear))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    plain = conv_macs + lin_macs
    nb201 = plain + lin_bias + 3 * conv_out + 9 * pool_out + NB201_FLOPS_CONSTANT
    return FlopCount(plain=plain, nb201=nb201)


@dataclass(frozen=True)
class CellCost:
    """Parameters and FLOPs of one NB201 network (see :class:`FlopCount` for the two FLOP conventions)."""

    params: int
    flops: FlopCount


_COST_TABLES: dict[tuple, tuple[CellCost, dict[str, CellCost]]] = {}


def nb201_cost(arch: object, num_classes: int = 10, C: int = 16, N: int = 5,
               input_shape: Sequence[int] = (3, 32, 32)) -> CellCost:
    """Parameters and FLOPs of the NB201 network of ``arch`` without building it.

    Every edge of a NB201 cell sees the same channels and resolution, so a network's counts are the counts of the
    all-``none`` network plus one increment per edge op. The increments are measured once (per configuration) on
    built networks with a single non-zero edge, so the result equals :func:`count_params` / :func:`count_flops`
    on the built network exactly (tested), about 1000x faster: ``rbnas space list`` covers 15625 cells in seconds.
    """
    from ..search_spaces import Cell, get_search_space
    from ..search_spaces.nb201 import OPS
    from .nb201 import build_model

    key = (num_classes, C, N, tuple(input_shape))
    if key not in _COST_TABLES:

        def measure(ops: tuple[str, ...]) -> CellCost:
            m = build_model(Cell(ops), num_classes=num_classes, C=C, N=N, in_channels=input_shape[0])
            return CellCost(count_params(m), count_flops(m, input_shape))

        base = measure(("none",) * 6)
        deltas = {}
        for op in OPS:
            one = measure((op,) + ("none",) * 5)
            deltas[op] = CellCost(
                one.params - base.params,
                FlopCount(one.flops.plain - base.flops.plain, one.flops.nb201 - base.flops.nb201),
            )
        _COST_TABLES[key] = (base, deltas)
    base, deltas = _COST_TABLES[key]
    cell = arch if isinstance(arch, Cell) else get_search_space("nb201").cell(arch)
    params, plain, nb = base.params, base.flops.plain, base.flops.nb201
    for op in cell.ops:
        params += deltas[op].params
        plain += deltas[op].flops.plain
        nb += deltas[op].flops.nb201
    return CellCost(params, FlopCount(plain, nb))

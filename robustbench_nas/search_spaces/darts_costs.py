"""Closed-form parameter and FLOP counts of DARTS's ``NetworkCIFAR`` (no network is built).

Parameters are counted as DARTS's ``utils.count_parameters_in_MB`` counts them: every parameter except the
auxiliary head's (BN affine included). FLOPs are multiply-adds of the convolutions and of the linear classifier
of one forward pass of one image through the inference network (no auxiliary head; BN, ReLU, pooling, additions
and biases not counted), which is what hook counters such as thop report for these networks. Both follow the
builder in :mod:`robustbench_nas.models.darts` layer by layer and are checked against it (``tests/test_darts.py``).
"""

from __future__ import annotations

from typing import Sequence

from .base import CellCost, FlopCount
from .darts_genotype import CONCAT, DartsCell, DartsGenotype


def _down(n: int) -> int:
    """Output size of a stride-2 op with DARTS's padding (every stride-2 op of the space shrinks alike)."""
    return (n - 1) // 2 + 1


def _op_cost(op: str, c: int, stride: int, h: int, w: int) -> tuple[int, int]:
    """(params, MACs) of one op at ``c`` channels on an ``h x w`` input."""
    ho, wo = (_down(h), _down(w)) if stride == 2 else (h, w)
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return 0, 0
    if op == "skip_connect":
        return (0, 0) if stride == 1 else _factorized_reduce(c, c, h, w)
    k = int(op[-1])
    one = (c * k * k + c * c + 2 * c, c * k * k + c * c)  # depthwise + pointwise (+ BN affine); MACs per pixel
    if op.startswith("sep_conv"):
        # the first half at the output size (stride on its depthwise conv), the second at the same size
        return 2 * one[0], 2 * ho * wo * one[1]
    return one[0], ho * wo * one[1]


def _factorized_reduce(c_in: int, c_out: int, h: int, w: int) -> tuple[int, int]:
    """(params, MACs) of FactorizedReduce: two 1x1 stride-2 convs to ``c_out / 2`` (one on the shifted input), BN."""
    half = c_out // 2
    macs = _down(h) * _down(w) * c_in * half + _down(h - 1) * _down(w - 1) * c_in * half
    return 2 * c_in * half + 2 * c_out, macs


def _cell_cost(cell: DartsCell, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
               hw_pp: tuple[int, int], hw: tuple[int, int]) -> tuple[int, int]:
    """(params, MACs) of one cell whose inputs are ``c_pp`` / ``c_p`` channels at ``hw_pp`` / ``hw``."""
    if reduction_prev:
        params, macs = _factorized_reduce(c_pp, c, *hw_pp)
    else:
        params, macs = c_pp * c + 2 * c, hw_pp[0] * hw_pp[1] * c_pp * c
    params += c_p * c + 2 * c
    macs += hw[0] * hw[1] * c_p * c
    out_hw = (_down(hw[0]), _down(hw[1])) if reduction else hw
    for op, i in cell.edges:
        stride = 2 if reduction and i < 2 else 1
        p, m = _op_cost(op, c, stride, *(hw if i < 2 else out_hw))
        params += p
        macs += m
    return params, macs


def darts_cost(genotype: DartsGenotype, C: int, layers: int, num_classes: int = 10,
               input_shape: Sequence[int] = (3, 32, 32)) -> CellCost:
    """Parameters (auxiliary head excluded) and FLOPs (conv + linear MACs) of the DARTS network of ``genotype``.

    ``published`` equals ``plain``: DARTS-family papers count multiply-adds of the inference network.
    """
    cin, h, w = (int(v) for v in input_shape)
    c_stem = 3 * C
    params = cin * 9 * c_stem + 2 * c_stem
    macs = h * w * cin * 9 * c_stem
    c_pp, c_p, c_curr = c_stem, c_stem, C
    hw_pp = hw = (h, w)
    reduction_prev = False
    reductions = (layers // 3, 2 * layers // 3)
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
        cell = genotype.reduce if reduction else genotype.normal
        p, m = _cell_cost(cell, c_pp, c_p, c_curr, reduction, reduction_prev, hw_pp, hw)
        params += p
        macs += m
        out_hw = (_down(hw[0]), _down(hw[1])) if reduction else hw
        reduction_prev = reduction
        c_pp, c_p = c_p, len(CONCAT) * c_curr
        hw_pp, hw = hw, out_hw
    params += c_p * num_classes + num_classes
    macs += c_p * num_classes
    return CellCost(params, FlopCount(plain=macs, published=macs))


__all__ = ["darts_cost"]

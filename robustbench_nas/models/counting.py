"""Parameter and FLOP counts of built models (measured with forward hooks, not formulas).

:func:`tally_flops` (``robustbench_nas.utils.counting``) measures the raw ingredients once; each search space
combines them into its published convention (:meth:`robustbench_nas.search_spaces.SearchSpace.published_flops`),
and :func:`count_flops` applies the convention of the space the model belongs to (``model.space_name``, NB201 by
default).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..search_spaces import get_search_space
from ..search_spaces.base import CellCost, FlopCount
from ..utils.counting import count_params, tally_flops

__all__ = ["CellCost", "FlopCount", "count_flops", "count_params", "tally_flops"]


def count_flops(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32), space: str | None = None) -> FlopCount:
    """Count FLOPs of ``model`` on one input of shape ``input_shape`` = ``(C, H, W)``.

    ``published`` follows the convention of ``space`` (default: the model's ``space_name``, else ``nb201``).
    """
    return get_search_space(space or getattr(model, "space_name", "nb201")).count_flops(model, input_shape)

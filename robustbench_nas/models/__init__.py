"""Networks of the search spaces and their parameter / FLOP counts.

Build a network through its space (``get_search_space(name).build_network(arch, ...)``); :func:`build_model` is the
NB201 builder, kept for code written when NB201 was the only space. Each network module registers the builder of
its space (``robustbench_nas.search_spaces.networks``), which takes an already decoded architecture.
"""

from .counting import CellCost, FlopCount, count_flops, count_params, tally_flops
from .nb201 import CIFAR_MEAN, CIFAR_STD, NB201Network, Normalize, build_model

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CellCost",
    "FlopCount",
    "NB201Network",
    "Normalize",
    "build_model",
    "count_flops",
    "count_params",
    "tally_flops",
]

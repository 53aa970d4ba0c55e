"""Networks of the search spaces (NAS-Bench-201 first) and their parameter / FLOP counts."""

from .counting import CellCost, FlopCount, count_flops, count_params, nb201_cost
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
    "nb201_cost",
]

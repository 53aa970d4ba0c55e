"""Networks of the search spaces (NAS-Bench-201 first) and their parameter / FLOP counts."""

from .counting import FlopCount, count_flops, count_params
from .nb201 import CIFAR_MEAN, CIFAR_STD, NB201Network, Normalize, build_model

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "FlopCount",
    "NB201Network",
    "Normalize",
    "build_model",
    "count_flops",
    "count_params",
]

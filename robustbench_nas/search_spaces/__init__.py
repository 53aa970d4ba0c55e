"""Search spaces: a registry by name (``get_search_space``); NAS-Bench-201 and NATS-Bench's size space (SSS).

NB201's encodings are registered here, after the space module: ``nb201_encodings`` imports ``nb201``, and the
space module importing its encodings back would be an import cycle (tests/test_layers.py).
"""

from ..constants import CIFAR_MEAN, CIFAR_STD
from .base import (
    ArchitectureError,
    CellCost,
    CellDAG,
    FlopCount,
    SearchSpace,
    canonical_name,
    get_search_space,
    list_search_spaces,
    register_encoding,
    register_search_space,
)
from .nb201 import EDGES, OPS, Cell, NB201SearchSpace, isomorphism_key, parse_arch
from . import nb201_encodings as _nb201_encodings  # noqa: F401  (registers NB201's encodings)
from .nats_sss import SSS_CHANNELS, NATSSizeSpace, parse_channels

__all__ = [
    "ArchitectureError",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "Cell",
    "CellCost",
    "CellDAG",
    "EDGES",
    "FlopCount",
    "NATSSizeSpace",
    "NB201SearchSpace",
    "OPS",
    "SSS_CHANNELS",
    "SearchSpace",
    "canonical_name",
    "get_search_space",
    "isomorphism_key",
    "list_search_spaces",
    "parse_arch",
    "parse_channels",
    "register_encoding",
    "register_search_space",
]

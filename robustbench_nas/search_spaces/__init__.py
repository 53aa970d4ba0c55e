"""Search spaces: a registry by name (``get_search_space``); NAS-Bench-201, NATS-Bench's size space (SSS) and DARTS."""

from .base import (
    CIFAR_MEAN,
    CIFAR_STD,
    ArchitectureError,
    CellCost,
    FlopCount,
    NotEnumerableError,
    SearchSpace,
    canonical_name,
    get_search_space,
    list_search_spaces,
    register_encoding,
    register_search_space,
)
from .nb201 import EDGES, OPS, Cell, NB201SearchSpace, isomorphism_key, parse_arch
from .nats_sss import SSS_CHANNELS, NATSSizeSpace, parse_channels
from .darts import DartsSearchSpace  # registers the DARTS space

__all__ = [
    "ArchitectureError",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "Cell",
    "CellCost",
    "EDGES",
    "DartsSearchSpace",
    "FlopCount",
    "NATSSizeSpace",
    "NotEnumerableError",
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

"""Search spaces: a registry by name (``get_search_space``); NAS-Bench-201, NATS-Bench's size space (SSS) and DARTS.

NB201's and DARTS's encodings are registered here, after their space modules: ``nb201_encodings`` imports ``nb201``, and the
space module importing its encodings back would be an import cycle (tests/test_layers.py).
"""

from ..constants import CIFAR_MEAN, CIFAR_STD
from .base import (
    ArchitectureError,
    CellCost,
    CellDAG,
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
from . import nb201_encodings as _nb201_encodings  # noqa: F401  (registers NB201's encodings)
from .nats_sss import SSS_CHANNELS, NATSSizeSpace, parse_channels
from .darts import DartsSearchSpace  # registers the DARTS space
from . import darts_encodings as _darts_encodings  # noqa: F401,E402  (registers DARTS's encodings, as NB201's)

__all__ = [
    "ArchitectureError",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "Cell",
    "CellCost",
    "CellDAG",
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

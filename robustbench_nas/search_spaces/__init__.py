"""Search spaces: registry by name, NAS-Bench-201 first."""

from .base import ArchitectureError, SearchSpace, get_search_space, list_search_spaces, register_search_space
from .nb201 import EDGES, OPS, Cell, NB201SearchSpace, isomorphism_key, parse_arch

__all__ = [
    "ArchitectureError",
    "Cell",
    "EDGES",
    "NB201SearchSpace",
    "OPS",
    "SearchSpace",
    "get_search_space",
    "isomorphism_key",
    "list_search_spaces",
    "parse_arch",
    "register_search_space",
]

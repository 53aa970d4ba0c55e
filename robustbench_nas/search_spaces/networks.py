"""The network builder of each search space, registered by the layer above (``robustbench_nas.models``).

Search spaces sit below the networks (docs/architecture.md, "Layers"): a space module never imports
``robustbench_nas.models``, not even inside a function. Yet a :class:`~.base.SearchSpace` owns ``build_network`` so
that the rest of the code can take a space by name. The two meet here: each network module registers a builder for
its space with :func:`register_network`, and the space looks its builder up with :func:`get_network_builder`. The
space names the module that registers it (``SearchSpace.network_module``), which is imported by name the first
time a builder is asked for, as a plugin's entry point is: the dependency stays a registration from above, and
``get_search_space("nb201").build_network(...)`` works in a process that never imported the models itself.

A builder takes an already decoded architecture (the space's :meth:`~.base.SearchSpace.decode` result: NB201's
``Cell``, SSS's tuple of five widths), never a string or an index: parsing belongs to the space.

Example:
    >>> from robustbench_nas.search_spaces import get_search_space
    >>> space = get_search_space("nats-sss")
    >>> get_network_builder(space.name, space.network_module).__name__
    'build_nats_sss_network'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

from ..utils.registry import Registry

if TYPE_CHECKING:  # torch is only needed once a network is built
    from torch import nn

#: ``builder(decoded_arch, num_classes, *, mean, std, in_channels, **space_options) -> nn.Module``
NetworkBuilder = Callable[..., "nn.Module"]

#: One builder per canonical search-space name; a second registration for a space is an error.
NETWORK_BUILDERS: Registry[NetworkBuilder] = Registry("network builder")


def register_network(space: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Decorator: register ``builder`` as the network builder of search space ``space`` (its canonical name)."""
    return NETWORK_BUILDERS.register(space)


def get_network_builder(space: str, module: str) -> NetworkBuilder:
    """The builder registered for ``space``, importing ``module`` (the space's ``network_module``) if it is not yet.

    Raises:
        LookupError: ``module`` is empty, or it was imported and registered no builder for ``space``.
    """
    if space not in NETWORK_BUILDERS:
        if not module:
            raise LookupError(f"search space {space!r} names no network module (SearchSpace.network_module) and no "
                              "network builder is registered for it (register_network)")
        importlib.import_module(module)
        if space not in NETWORK_BUILDERS:
            raise LookupError(f"module {module!r} (network_module of search space {space!r}) registered no network "
                              f"builder for it; registered: {NETWORK_BUILDERS.list() or '(none)'}")
    return NETWORK_BUILDERS.get(space)


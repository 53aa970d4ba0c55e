"""Zero-cost proxies at initialisation (NAS-Bench-Suite-Zero set + robust proxies), one module per proxy.

``list_proxies()``, ``compute_proxies(arch, x, y, names, *, seed=0, num_classes=10, C=16, N=5, mean, std)``,
``compute_model_proxies(model, x, y, names, *, seed=0)``; ``register_proxy`` to add one.
"""

from . import (  # noqa: F401  (each import registers its proxy; the order is the registry's order)
    params,
    flops,
    grad_norm,
    snip,
    grasp,
    fisher,
    synflow,
    jacob_cov,
    nwot,
    zen,
    epe_nas,
    plain,
    l2_norm,
    croze,
    input_derivatives,
)
from .api import compute_model_proxies, compute_proxies, describe_proxies, init_model, list_proxies, proxy_generator
from .registry import ProxyContext, ProxySpec, get_proxy, register_proxy

__all__ = [
    "ProxyContext",
    "ProxySpec",
    "compute_model_proxies",
    "compute_proxies",
    "describe_proxies",
    "get_proxy",
    "init_model",
    "list_proxies",
    "proxy_generator",
    "register_proxy",
]

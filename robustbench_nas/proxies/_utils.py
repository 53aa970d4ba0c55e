"""Network surgery and helpers shared by the proxies (always applied to private copies)."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def weight_layers(net: nn.Module) -> Iterator[nn.Module]:
    """Conv2d and Linear modules in module order: the layers the reference implementations score."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            yield m


def remove_batchnorm(net: nn.Module) -> nn.Module:
    """Replace every BatchNorm by identity, in place (the references' ``bn=False`` copies); returns ``net``."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BN_TYPES):
                setattr(parent, name, nn.Identity())
    return net


def bypass_normalize(net: nn.Module) -> nn.Module:
    """Replace the network's input normalisation by identity, in place.

    The references feed their inputs (all-ones for synflow, Gaussian noise for Zen, already normalised images for
    Jacobian proxies) straight into the first convolution; our networks normalise internally, so proxies that
    define their own input bypass that layer.
    """
    if hasattr(net, "normalize"):
        net.normalize = nn.Identity()
    return net


def normalize_input(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in [0, 1] mapped by the network's own normalisation (identity if it has none)."""
    norm = getattr(net, "normalize", None)
    if norm is None or isinstance(norm, nn.Identity):
        return x
    with torch.no_grad():
        return norm(x)


def cross_entropy_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One forward/backward of the mean cross-entropy, leaving the gradients in ``.grad``."""
    net.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()


def input_jacobian_rows(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed logits with respect to the input, one flattened row per image: ``(N, D)``.

    As in the NASWOT / zero-cost-nas ``get_batch_jacobian`` (one backward with an all-ones output gradient).
    """
    z = z.detach().clone().requires_grad_(True)
    out = net(z)
    (g,) = torch.autograd.grad(out, z, grad_outputs=torch.ones_like(out))
    return g.reshape(g.shape[0], -1)


def calibrate_batchnorm(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BN's running statistics to the statistics of ``x`` (cumulative average over one batch), then eval.

    Used by the input-Jacobian / Hessian proxies at initialisation: per-image derivatives are only defined when BN
    does not mix the images of a batch, and at initialisation the running statistics are the defaults (0, 1).
    """
    bns = [m for m in net.modules() if isinstance(m, _BN_TYPES)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: one batch -> exactly that batch's statistics
    net.train()
    with torch.no_grad():
        net(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.eval()
    return net

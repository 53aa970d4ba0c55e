"""``croze``: CRoZe (Ha, Kim & Hwang, NeurIPS 2023), consistency of a clean and a perturbed surrogate network.

Definition followed (the public reference code, ``zero_cost_methods/pruners/measures/croze.py`` and
``p_utils.adj_weights`` of HyeonjeongHa/CRoZe):

1. Copy the network without BN, in float64, with every parameter replaced by its absolute value (as synflow).
2. Perturbed network: one gradient-ascent step on the cross-entropy; each conv/linear weight moves by
   ``gamma * ||w|| * g / ||g||`` with ``gamma = 2.0`` (the reference rescales the SGD update to the weight's norm).
3. Perturbed input: ``x' = clip(x - eps * sign(dL/dx), 0, 1)`` on the perturbed network, ``eps = 0.01``
   (the sign is the reference code's).
4. One backward of ``CE(f(x)) + CE(f_r(x'))`` gives the gradients of both networks.
5. Per conv/linear layer ``m``: ``|sum(1 + cos(w_r, w)) * sum|cos(g_r, g)| * sum(1 + cos(z_r, z))|``, cosines
   along dimension 0 (as ``nn.CosineSimilarity(dim=0)`` in the reference), ``z`` the feature map the reference
   pairs with the layer (stem, after reduction 1, after reduction 2, last stage, pooled); summed over layers.

Deliberate difference: our networks take [0, 1] pixels and normalise inside, so ``eps`` is in pixel units and
the clip to [0, 1] acts on pixels; the reference clips already-normalised images to [0, 1].
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ._utils import remove_batchnorm, weight_layers
from .registry import ProxyContext, register_proxy

CROZE_WEIGHT_GAMMA = 2.0
CROZE_INPUT_EPS = 0.01
_TINY = 1e-30


def _cell_type() -> type:
    from ..models.nb201 import InferCell

    return InferCell


def _feature_modules(net: nn.Module) -> list[nn.Module]:
    """Modules whose outputs are the reference's five ``activated_feats`` (NB201 layout; a network with another
    layout, DARTS, names its own through ``croze_layout()``)."""
    if hasattr(net, "croze_layout"):
        return net.croze_layout()[0]
    cells = net.cells
    cell_t = _cell_type()
    reductions = [m for m in cells if not isinstance(m, cell_t)]
    if len(reductions) != 2:
        raise TypeError("croze expects an NB201 network (two reduction blocks in .cells)")
    return [net.stem, reductions[0], reductions[1], cells, net.global_pooling]


def _layer_feature_index(net: nn.Module, cells_per_stage: int) -> dict[nn.Module, int]:
    """The reference's pairing of each conv/linear layer with a feature: (cells seen so far) // N, +1 for linear."""
    cell_t = _cell_type()
    is_cell = net.croze_layout()[1] if hasattr(net, "croze_layout") else (lambda m: isinstance(m, cell_t))
    seen = 0
    index: dict[nn.Module, int] = {}
    for m in net.modules():
        if is_cell(m):
            seen += 1
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            index[m] = seen // cells_per_stage + (1 if isinstance(m, nn.Linear) else 0)
    return index


def _forward_with_feats(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    mods = _feature_modules(net)
    feats: list[torch.Tensor | None] = [None] * len(mods)
    handles = []
    for i, m in enumerate(mods):
        def hook(_m: nn.Module, _i: tuple, out: torch.Tensor, i: int = i) -> None:
            feats[i] = out.flatten(1) if out.dim() == 4 and out.shape[-1] == 1 and out.shape[-2] == 1 else out

        handles.append(m.register_forward_hook(hook))
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    return out, [f for f in feats if f is not None]


def _perturb_weights(net: nn.Module, x: torch.Tensor, y: torch.Tensor, gamma: float) -> None:
    """In place: ``w += gamma * ||w|| * g / ||g||`` for conv/linear weights, ``g = dCE/dw`` (ascent direction)."""
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    layers = list(weight_layers(net))
    _weight_step(layers, [m.weight.grad for m in layers], gamma)
    net.zero_grad(set_to_none=True)


def _weight_step(layers: list[nn.Module], grads: list[torch.Tensor | None], gamma: float) -> None:
    """``w += gamma * ||w|| * g / ||g||`` for each layer with a gradient (the reference's rescaled SGD ascent)."""
    with torch.no_grad():
        for layer, g in zip(layers, grads):
            if g is not None:
                layer.weight.add_(gamma * layer.weight.norm() / (g.norm() + _TINY) * g)


def _surrogate(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """Step 1 in place on ``net`` (no BN, float64, absolute values); returns the float64 batch and a copy for step 2."""
    remove_batchnorm(net)
    net.double().train()
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            t.abs_()
    return x.double(), copy.deepcopy(net)


def _perturb_input(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    xp = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xp), y), xp)
    return (x - eps * g.sign()).clamp(0.0, 1.0).detach()


def croze_score(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    cells_per_stage: int,
    gamma: float = CROZE_WEIGHT_GAMMA,
    eps: float = CROZE_INPUT_EPS,
) -> float:
    """CRoZe of ``net`` (modified in place: pass a copy) on images ``x`` in [0, 1] with labels ``y``."""
    x, adv = _surrogate(net, x)
    _perturb_weights(adv, x, y, gamma)
    x_adv = _perturb_input(adv, x, y, eps)
    adv.zero_grad(set_to_none=True)
    net.zero_grad(set_to_none=True)
    out, feats = _forward_with_feats(net, x)
    out_adv, feats_adv = _forward_with_feats(adv, x_adv)
    (F.cross_entropy(out, y) + F.cross_entropy(out_adv, y)).backward()
    layers, layers_adv = list(weight_layers(net)), list(weight_layers(adv))
    return _croze_sum(net, layers, layers_adv, [m.weight.grad for m in layers], [m.weight.grad for m in layers_adv],
                      feats, feats_adv, cells_per_stage)


def _croze_sum(net: nn.Module, layers: list[nn.Module], layers_adv: list[nn.Module],
               grads: list[torch.Tensor | None], grads_adv: list[torch.Tensor | None],
               feats: list[torch.Tensor], feats_adv: list[torch.Tensor], cells_per_stage: int) -> float:
    """Sum over conv/linear layers of |weight sim * gradient sim * feature sim| (the reference's final loop)."""
    index = _layer_feature_index(net, cells_per_stage)
    total = 0.0
    with torch.no_grad():
        for layer, layer_adv, g, g_adv in zip(layers, layers_adv, grads, grads_adv):
            if g is None or g_adv is None:
                continue
            w_sim = (1 + F.cosine_similarity(layer_adv.weight, layer.weight, dim=0)).sum()
            g_sim = F.cosine_similarity(g_adv, g, dim=0).abs().sum()
            k = index[layer]
            f_sim = (1 + F.cosine_similarity(feats_adv[k], feats[k], dim=0)).sum()
            total += float((w_sim * g_sim * f_sim).abs())
    return total


def croze_score_shared(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    cells_per_stage: int,
    gamma: float = CROZE_WEIGHT_GAMMA,
    eps: float = CROZE_INPUT_EPS,
) -> float:
    """:func:`croze_score` with three forward/backward passes instead of four (same value, bit for bit).

    The reference's weight-perturbation pass runs the still-unperturbed copy on the clean batch: that is exactly the
    clean network's forward/backward of its final pass, so one clean pass gives the perturbation direction, the clean
    gradients and the clean features. Then the input perturbation (input gradient on the perturbed network) and one
    pass of the perturbed network on the perturbed batch. ``net`` is modified in place (pass a copy).
    """
    x, adv = _surrogate(net, x)
    layers, layers_adv = list(weight_layers(net)), list(weight_layers(adv))
    out, feats = _forward_with_feats(net, x)
    grads = list(torch.autograd.grad(F.cross_entropy(out, y), [m.weight for m in layers], allow_unused=True))
    _weight_step(layers_adv, grads, gamma)  # the reference's _perturb_weights, with the (identical) clean gradient
    x_adv = _perturb_input(adv, x, y, eps)
    out_adv, feats_adv = _forward_with_feats(adv, x_adv)
    grads_adv = list(torch.autograd.grad(F.cross_entropy(out_adv, y), [m.weight for m in layers_adv],
                                         allow_unused=True))
    return _croze_sum(net, layers, layers_adv, grads, grads_adv, feats, feats_adv, cells_per_stage)


@register_proxy(
    "croze",
    summary="sum_m |feature sim * parameter sim * gradient sim| between clean and perturbed surrogate (float64)",
    reference="Ha, Kim & Hwang, NeurIPS 2023 (CRoZe); HyeonjeongHa/CRoZe croze.py",
    robust=True,
)
def croze(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: ProxyContext) -> float:
    return croze_score(net, x, y, cells_per_stage=cells_per_stage(net))


def cells_per_stage(net: nn.Module) -> int:
    """``N`` of an NB201 network (the reference pairs layers with features by cells seen // N)."""
    n = getattr(net, "config", {}).get("N", getattr(net, "cells_per_stage", None))
    if n is None:
        raise TypeError("croze expects an NB201Network (needs .config['N'] for the reference's layer pairing)")
    return int(n)

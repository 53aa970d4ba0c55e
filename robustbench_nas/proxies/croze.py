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

import contextlib
import copy

import torch
from torch import nn
from torch.nn import functional as F

from ._utils import remove_batchnorm, weight_layers
from .rescale import ActivationRescaler, rescalable
from .registry import ProxyContext, register_proxy

CROZE_WEIGHT_GAMMA = 2.0
CROZE_INPUT_EPS = 0.01
_TINY = 1e-30


def _staged(net: nn.Module, what: str) -> object:
    """``net.<what>`` of a staged network (the networks of ``robustbench_nas.models`` know their own layout)."""
    if not hasattr(net, what):
        raise TypeError(f"croze needs a staged network with {what} (the NB201 / NATS-Bench SSS networks of "
                        f"robustbench_nas.models), got {type(net).__name__}")
    return getattr(net, what)


def _feature_modules(net: nn.Module) -> list[nn.Module]:
    """Modules whose outputs are the reference's five ``activated_feats`` (the network's ``stage_modules()``)."""
    mods = list(_staged(net, "stage_modules")())  # type: ignore[operator]
    if len(mods) != 5:
        raise TypeError(f"croze pairs layers with five stage features (stem, two reductions, last stage, pooling); "
                        f"{type(net).__name__} has {len(mods)}")
    return mods


def _layer_feature_index(net: nn.Module, cells_per_stage: int) -> dict[nn.Module, int]:
    """The reference's pairing of each conv/linear layer with a feature: (cells seen so far) // N, +1 for linear."""
    cells = {id(c) for c in _staged(net, "cell_modules")()}  # type: ignore[operator]
    seen = 0
    index: dict[nn.Module, int] = {}
    for m in net.modules():
        if id(m) in cells:
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
                # norms in float64 (a no-op for the float64 reference): float32 gradients of the rescaled surrogate
                # reach ~2^70, whose squares overflow float32
                layer.weight.add_(gamma * layer.weight.double().norm() / (g.double().norm() + _TINY) * g)


def _surrogate(net: nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, nn.Module]:
    """Step 1 in place on ``net`` (no BN, ``dtype``, absolute values); returns the batch in ``dtype`` and a copy
    for step 2. The reference (and :func:`croze_score`) use float64; the fast engine float32."""
    remove_batchnorm(net)
    net.to(dtype).train()
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            t.abs_()
    return x.to(dtype), copy.deepcopy(net)


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
            # cosines in float64 (no-op for the reference): float32 features / gradients square past float32's range
            w_sim = (1 + F.cosine_similarity(layer_adv.weight.double(), layer.weight.double(), dim=0)).sum()
            g_sim = F.cosine_similarity(g_adv.double(), g.double(), dim=0).abs().sum()
            k = index[layer]
            f_sim = (1 + F.cosine_similarity(feats_adv[k].double(), feats[k].double(), dim=0)).sum()
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
    dtype: torch.dtype = torch.float64,
) -> float:
    """:func:`croze_score` with three forward/backward passes instead of four (same value, bit for bit, in float64).

    The reference's weight-perturbation pass runs the still-unperturbed copy on the clean batch: that is exactly the
    clean network's forward/backward of its final pass, so one clean pass gives the perturbation direction, the clean
    gradients and the clean features. Then the input perturbation (input gradient on the perturbed network) and one
    pass of the perturbed network on the perturbed batch. ``net`` is modified in place (pass a copy).

    ``dtype=torch.float32`` is the fast engine's CRoZe: the same steps, perturbations and score (the weight step
    ``gamma * ||w|| * g / ||g||``, the input step ``-eps * sign(dCE/dx)`` clipped to [0, 1]) in single precision,
    where CPU convolutions take oneDNN's fast kernels instead of float64's ``_slow_conv2d``, with the cell outputs
    rescaled by powers of two so the surrogate's activations (~1e47) fit float32 (:mod:`.rescale`: exact for what
    the score reads); networks where that rescaling is not exact run in float64. Not the reference's bits: the
    value moves by float32 rounding, and a sign of a near-zero input gradient may flip (one pixel moved by
    2 * eps); the stated tolerance is in ``robustbench_nas/proxies/README.md``.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"croze runs in float32 or float64, got {dtype}")
    if dtype == torch.float32 and not rescalable(remove_batchnorm(net)):
        dtype = torch.float64  # float32 needs the exact power-of-two rescaling (see .rescale); else the reference
    x, adv = _surrogate(net, x, dtype)
    with contextlib.ExitStack() as stack:
        if dtype == torch.float32:
            # the surrogate's activations reach ~1e47 (past float32's 3.4e38): rescale cell outputs by powers of two
            stack.enter_context(ActivationRescaler(net))
            stack.enter_context(ActivationRescaler(adv))
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
    """``N``, the cells per stage of a staged network (the reference pairs layers with features by cells seen // N)."""
    return int(_staged(net, "cells_per_stage"))  # type: ignore[call-overload]

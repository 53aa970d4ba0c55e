"""Shared-pass proxy engine: proxies that need the same passes on the same batch and initialisation get them once.

The one-proxy-at-a-time path (:func:`compute_separate`, every proxy on its own deep copy) stays as the reference;
:func:`compute_shared` gives the same values bit for bit (``tests/test_proxy_engine.py`` compares both on full-size
cells) with fewer passes:

========================  ==============================================================  ===========================
pass group                proxies                                                         passes (shared / separate)
========================  ==============================================================  ===========================
``static``                params, flops, l2_norm                                          one copy / one copy each
``train``                 grad_norm, snip, plain, fisher, grasp, nwot, jacob_cov, epe_nas one forward (BN train mode,
                                                                                          normalised input), one CE
                                                                                          backward (with a graph when
                                                                                          grasp is asked), one
                                                                                          Hessian-vector product, one
                                                                                          input-Jacobian backward /
                                                                                          9 forwards, 8 backwards + HVP
``croze``                 croze                                                           3 forward/backward in fp64 / 4
``input_derivatives``     jacobian_fro, hessian_eig                                       one BN calibration / two
========================  ==============================================================  ===========================

Any other proxy (synflow, zen, a newly registered one) runs alone on its own copy, as in the reference path. Each
group is a registered function (:func:`register_pass_group`), so a new proxy that shares passes joins a group or
adds one; a proxy in no group still works.

:func:`compute_fast` (``engine="fast"``, the default of ``compute_proxies``) runs the same groups, with the fast
variants of ``croze`` (float32 with power-of-two activation rescaling, :mod:`.rescale`) and ``input_derivatives``
(hessian_eig exactly from the input Jacobian that jacobian_fro needs anyway) registered by
:func:`register_fast_variant`; :data:`FAST_TOLERANCE` states each changed proxy's relative tolerance against the
reference path (every other proxy is the reference's value bit for bit).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..utils.registry import Registry
from ._utils import bypass_normalize, calibrate_batchnorm, normalize_input, weight_layers
from .registry import ProxyContext, get_proxy, proxy_generator

GroupFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, Sequence[str], "EngineContext"], dict[str, float]]


@dataclass(frozen=True)
class EngineContext:
    """Per-call settings the groups need: the seed (for each proxy's generator) and the head size."""

    seed: int
    num_classes: int

    def proxy_context(self, name: str) -> ProxyContext:
        """The :class:`ProxyContext` proxy ``name`` gets in the reference path (same generator stream)."""
        return ProxyContext(generator=proxy_generator(name, self.seed), num_classes=self.num_classes, seed=self.seed)


@dataclass(frozen=True)
class PassGroup:
    """Proxies computed together from shared passes.

    Attributes:
        name: group name (benchmarks, logs).
        proxies: the proxies the group can compute.
        fn: ``fn(model, x, y, wanted, ctx) -> {proxy: value}`` for the requested subset ``wanted`` (never changes
            ``model``: it works on its own copies).
    """

    name: str
    proxies: tuple[str, ...]
    fn: GroupFn


#: the pass groups by name
PASS_GROUPS: Registry[PassGroup] = Registry("pass group")


def register_pass_group(name: str, proxies: Sequence[str]) -> Callable[[GroupFn], GroupFn]:
    """Decorator registering a pass group; a taken name, or a proxy already in another group, raises ``ValueError``."""

    def deco(fn: GroupFn) -> GroupFn:
        # a proxy in two groups would be computed twice, by whichever group runs last
        taken = {p for _, g in PASS_GROUPS.items() for p in g.proxies} & set(proxies)
        if taken:
            raise ValueError(f"pass group {name!r}: proxies {sorted(taken)} already belong to another group")
        PASS_GROUPS.add(name, PassGroup(name, tuple(proxies), fn))
        return fn

    return deco


def pass_groups() -> dict[str, PassGroup]:
    """Registered pass groups by name."""
    return dict(PASS_GROUPS.items())


def compute_separate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str],
                     ctx: EngineContext) -> dict[str, float]:
    """The reference path: every proxy on its own deep copy of ``model`` with its own generator."""
    out: dict[str, float] = {}
    for name in names:
        net = copy.deepcopy(model).to(x.device)
        out[name] = float(get_proxy(name).fn(net, x, y, ctx.proxy_context(name)))
        del net
    return out


#: Fast variants of pass groups (``engine="fast"``): group name -> function with the group's signature. A group
#: without one runs its shared (bitwise) function in the fast engine too.
FAST_GROUPS: dict[str, GroupFn] = {}


def register_fast_variant(group: str) -> Callable[[GroupFn], GroupFn]:
    """Decorator registering the fast engine's variant of pass group ``group`` (which must exist, once)."""

    def deco(fn: GroupFn) -> GroupFn:
        PASS_GROUPS.get(group)  # an unknown group fails here, with the known names
        if group in FAST_GROUPS:
            raise ValueError(f"pass group {group!r} already has a fast variant")
        FAST_GROUPS[group] = fn
        return fn

    return deco


def compute_shared(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str],
                   ctx: EngineContext) -> dict[str, float]:
    """The same values as :func:`compute_separate`, each pass group's passes run once."""
    return _run_groups(model, x, y, names, ctx, fast=False)


def compute_fast(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str],
                 ctx: EngineContext) -> dict[str, float]:
    """:func:`compute_shared` with the fast variants of the groups that have one (:data:`FAST_GROUPS`).

    Values are those of the reference path within :data:`FAST_TOLERANCE` (relative); every proxy not listed there
    is the reference's value bit for bit.
    """
    return _run_groups(model, x, y, names, ctx, fast=True)


def _run_groups(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str], ctx: EngineContext,
                fast: bool) -> dict[str, float]:
    wanted = list(dict.fromkeys(names))
    values: dict[str, float] = {}
    for gname, group in PASS_GROUPS.items():
        mine = [n for n in wanted if n in group.proxies]
        if mine:
            fn = FAST_GROUPS.get(gname, group.fn) if fast else group.fn
            values.update(fn(model, x, y, mine, ctx))
    rest = [n for n in wanted if n not in values]
    values.update(compute_separate(model, x, y, rest, ctx))
    return {n: float(values[n]) for n in wanted}


# ---- the groups ---------------------------------------------------------------------------------------------------
@register_pass_group("static", ("params", "l2_norm", "flops"))
def _static(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Sequence[str],
            ctx: EngineContext) -> dict[str, float]:
    # read-only proxies: one copy (flops runs an eval-mode forward, which changes nothing the others read)
    net = copy.deepcopy(model).to(x.device)
    return {n: float(get_proxy(n).fn(net, x, y, ctx.proxy_context(n))) for n in wanted}


_WEIGHT_GRAD_PROXIES = ("grad_norm", "snip", "plain", "fisher", "grasp")
_JACOBIAN_PROXIES = ("jacob_cov", "epe_nas")


@register_pass_group("train", _WEIGHT_GRAD_PROXIES + ("nwot",) + _JACOBIAN_PROXIES)
def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Sequence[str],
           ctx: EngineContext) -> dict[str, float]:
    """One train-mode forward on the normalised batch, then the backward passes the requested proxies need.

    Identity with the reference: every reference proxy here runs a train-mode forward of the same copy on the same
    normalised images (those differentiating w.r.t. the input bypass the network's normalisation and feed the
    normalised batch; the others normalise inside: the same op on the same tensor); weight gradients do not depend
    on whether the input requires a gradient, nor on ``create_graph``; forward hooks only read. Order matters: the
    fisher gradient hooks see the first (CE) backward only, and the graph is kept for the later backward passes.
    """
    from .epe_nas import epe_nas_score
    from .fisher import FisherRecorder
    from .grad_norm import grad_norm_score
    from .grasp import grasp_score
    from .jacob_cov import jacob_cov_score
    from .nwot import ReluCodeKernel, nwot_score
    from .plain import plain_score
    from .snip import snip_score

    need_w = [n for n in wanted if n in _WEIGHT_GRAD_PROXIES]
    need_j = [n for n in wanted if n in _JACOBIAN_PROXIES]
    net = copy.deepcopy(model).to(x.device)
    net.train()
    layers = list(weight_layers(net))
    weights = [m.weight for m in layers]
    z = normalize_input(net, x)
    bypass_normalize(net)
    if need_j:
        z = z.detach().clone().requires_grad_(True)
    out_values: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        fisher = stack.enter_context(FisherRecorder(net)) if "fisher" in wanted else None
        kernel = stack.enter_context(ReluCodeKernel(net, x.shape[0], x.device)) if "nwot" in wanted else None
        if not (need_w or need_j):
            with torch.no_grad():
                net(z)
            out = None
        else:
            out = net(z)
        if kernel is not None:
            kernel.enabled = False
            out_values["nwot"] = nwot_score(kernel.K)
        grads: list[torch.Tensor | None] = []
        if need_w:
            assert out is not None
            grasp = "grasp" in wanted
            grads = list(torch.autograd.grad(nn.functional.cross_entropy(out, y), weights, allow_unused=True,
                                             create_graph=grasp, retain_graph=grasp or bool(need_j)))
            if fisher is not None:
                fisher.enabled = False
                out_values["fisher"] = fisher.score()
            detached = [g.detach() if g is not None else None for g in grads]
            w_det = [w.detach() for w in weights]
            if "grad_norm" in wanted:
                out_values["grad_norm"] = grad_norm_score(detached)
            if "snip" in wanted:
                out_values["snip"] = snip_score(w_det, detached)
            if "plain" in wanted:
                out_values["plain"] = plain_score(w_det, detached)
            if grasp:
                out_values["grasp"] = grasp_score(weights, detached, grads, retain_graph=bool(need_j))
        if need_j:
            assert out is not None
            (jac,) = torch.autograd.grad(out, z, grad_outputs=torch.ones_like(out))
            rows = jac.reshape(jac.shape[0], -1).detach().cpu().double().numpy()
            if "jacob_cov" in wanted:
                out_values["jacob_cov"] = jacob_cov_score(rows)
            if "epe_nas" in wanted:
                out_values["epe_nas"] = epe_nas_score(rows, y.cpu().numpy(), ctx.num_classes)
    return out_values


@register_pass_group("croze", ("croze",))
def _croze(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Sequence[str],
           ctx: EngineContext) -> dict[str, float]:
    from .croze import cells_per_stage, croze_score_shared

    n = cells_per_stage(model)
    return {"croze": croze_score_shared(copy.deepcopy(model).to(x.device), x, y, cells_per_stage=n)}


@register_pass_group("input_derivatives", ("jacobian_fro", "hessian_eig"))
def _input_derivatives(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Sequence[str],
                       ctx: EngineContext) -> dict[str, float]:
    from .input_derivatives import hessian_eig_value, jacobian_fro_value

    net = calibrate_batchnorm(copy.deepcopy(model).to(x.device), x)  # eval mode from here on: nothing changes it
    out: dict[str, float] = {}
    if "jacobian_fro" in wanted:
        out["jacobian_fro"] = jacobian_fro_value(net, x)
    if "hessian_eig" in wanted:
        out["hessian_eig"] = hessian_eig_value(net, x, y, ctx.proxy_context("hessian_eig").generator)
    return out


# ---- fast variants (engine="fast") --------------------------------------------------------------------------------
#: Stated relative tolerance of each proxy of the fast engine against the reference path (``engine="separate"``):
#: ``|fast - ref| <= tol * |ref|`` per cell (full-size NB201 cells, batch 64; checked on 20 cells in
#: ``tests/test_proxy_engine_fast.py``). Proxies not listed are the reference's value bit for bit.
FAST_TOLERANCE: dict[str, float] = {
    # float32 instead of float64, same perturbations and score (see croze.croze_score_shared)
    "croze": 1e-4,
    # exact largest eigenvalue vs the reference's Lanczos (<= 20 HVPs, stopping at a relative change of 1e-3)
    "hessian_eig": 1e-2,
}


@register_fast_variant("croze")
def _croze_fast(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Sequence[str],
                ctx: EngineContext) -> dict[str, float]:
    """CRoZe's three passes in float32 (oneDNN kernels on CPU) instead of float64 (``_slow_conv2d``)."""
    from .croze import cells_per_stage, croze_score_shared

    n = cells_per_stage(model)
    net = copy.deepcopy(model).to(x.device)
    return {"croze": croze_score_shared(net, x, y, cells_per_stage=n, dtype=torch.float32)}


#: images per forward pass of the Jacobian (that of ``measures.jacobian_norms``, so jacobian_fro keeps its bits)
_JACOBIAN_CHUNK = 64


@register_fast_variant("input_derivatives")
def _input_derivatives_fast(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Sequence[str],
                            ctx: EngineContext) -> dict[str, float]:
    """One input Jacobian (one backward per class) gives jacobian_fro (bit for bit) and hessian_eig (exactly).

    For a piecewise-linear network the input Hessian of CE is ``J^T (diag p - p p^T) J``, so its largest eigenvalue
    is that of a K x K matrix built from the Jacobian (:func:`.input_derivatives.hessian_eig_from_jacobian`):
    no Hessian-vector products at all. A network with other leaf modules falls back to the shared group's Lanczos.
    """
    from .input_derivatives import hessian_eig_from_jacobian, input_jacobian, is_piecewise_linear

    net = calibrate_batchnorm(copy.deepcopy(model).to(x.device), x)  # eval mode from here on
    if "hessian_eig" in wanted and not is_piecewise_linear(net):
        return _input_derivatives(model, x, y, wanted, ctx)
    sq, eig = [], []
    for i in range(0, x.shape[0], _JACOBIAN_CHUNK):
        logits, jac, s = input_jacobian(net, x[i : i + _JACOBIAN_CHUNK])
        sq.append(s)
        if "hessian_eig" in wanted:
            eig.append(hessian_eig_from_jacobian(logits, jac))
        del jac
    out: dict[str, float] = {}
    if "jacobian_fro" in wanted:
        out["jacobian_fro"] = float(torch.cat(sq).sqrt().mean())
    if "hessian_eig" in wanted:
        out["hessian_eig"] = float(torch.cat(eig).mean())
    return out


__all__ = ["EngineContext", "FAST_GROUPS", "FAST_TOLERANCE", "PassGroup", "compute_fast", "compute_separate",
           "compute_shared", "pass_groups", "register_fast_variant", "register_pass_group"]

"""AutoAttack, standard version (Croce & Hein, ICML 2020), Linf and L2: APGD-CE, APGD-T, FAB-T, Square in sequence.

Each component attacks only the rows still robust after the previous ones, as in the reference. APGD and Square
are ours (:mod:`robustbench_nas.attacks.apgd`, :mod:`robustbench_nas.attacks.square`); FAB-T is torchattacks' ``FAB`` (multi-targeted), called
once per distinct radius, inside ``torch.random.fork_rng`` because it reseeds the global RNG.
"""

from __future__ import annotations

import torch
from torch import nn

from ._draws import Draws, child, subset
from .apgd import apgd_perturb
from .params import APGDParams, AutoAttackParams, SquareParams
from .registry import register_attack
from .square import square_perturb


def _fab_targeted(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, p: AutoAttackParams, norm: str, seed: int
) -> torch.Tensor:
    import torchattacks

    out = x.clone()
    with torch.no_grad():
        n_classes = int(model(x[:1]).shape[1])
    devices = [x.device] if x.device.type == "cuda" else []
    for e in torch.unique(eps).tolist():
        rows = (eps == e).nonzero().squeeze(1)
        with torch.random.fork_rng(devices=devices):
            atk = torchattacks.FAB(
                model,
                norm=norm,
                eps=float(e),
                steps=p.fab_steps,
                n_restarts=1,
                multi_targeted=True,
                n_classes=min(n_classes, p.n_target_classes + 1),
                seed=seed,
            )
            out[rows] = atk(x[rows], y[rows]).to(x.device)
    # FAB minimises the norm and may return points outside the ball: keep only those inside it
    d = (out - x).flatten(1)
    size = d.abs().max(1)[0] if norm == "Linf" else d.norm(p=2, dim=1)
    outside = size > eps + 1e-6
    out[outside] = x[outside]
    return out


def autoattack_perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    params: AutoAttackParams,
    *,
    norm: str,
    generator: Draws,
    early_stop: bool,
) -> torch.Tensor:
    """Run ``params.components`` in order, each on the rows still robust; return adversarial images."""
    with torch.no_grad():
        robust = model(x).max(1)[1] == y
    out = x.clone()
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
    else:
        # FAB-T is torchattacks' (its own global-RNG draws, per call): one seed for the batch, from its rows' keys
        # (FAB's numbers, unlike ours, depend on the batch)
        seed = int(generator.child("fab").keys[0]) % (2**31 - 1) if len(generator) else 0
    for ci, comp in enumerate(params.components):
        idx = robust.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, ys, es = x[idx], y[idx], eps[idx]
        gen = subset(child(generator, "autoattack", ci), idx)
        if comp in ("apgd-ce", "apgd-dlr", "apgd-t"):
            loss = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}[comp]
            ap = APGDParams(steps=params.apgd_steps, restarts=1, loss=loss, n_target_classes=params.n_target_classes)  # type: ignore[arg-type]
            adv = apgd_perturb(model, xs, ys, es, ap, norm=norm, generator=gen, early_stop=early_stop)
        elif comp == "fab-t":
            adv = _fab_targeted(model, xs, ys, es, params, norm, seed)
        else:
            sp = SquareParams(n_queries=params.square_queries)
            adv = square_perturb(model, xs, ys, es, sp, norm=norm, generator=gen, early_stop=early_stop)
        with torch.no_grad():
            still = model(adv).max(1)[1] == ys
        robust[idx[~still]] = False
        out[idx] = adv
    return out


register_attack(
    "autoattack@Linf",
    norm="Linf",
    defaults=AutoAttackParams(),
    description="AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square), Linf",
    aliases=("autoattack",),
)(autoattack_perturb)  # type: ignore[arg-type]
register_attack(
    "autoattack@L2",
    norm="L2",
    defaults=AutoAttackParams(),
    description="AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square), L2",
)(autoattack_perturb)  # type: ignore[arg-type]

__all__ = ["autoattack_perturb"]

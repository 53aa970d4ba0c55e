"""Registry of attacks by name (the Jung et al. 2023 release keys: ``fgsm@Linf``, ``pgd@Linf``, ...).

An attack is registered with :func:`register_attack` on a *batched kernel*::

    kernel(model, x, y, eps, params, *, norm, generator, early_stop) -> x_adv

``x`` ``(B, C, H, W)`` in [0, 1], ``y`` ``(B,)``, ``eps`` ``(B,)`` per-row radii in [0, 1] pixel units (rows of several
epsilons share one batch), ``generator`` the only source of randomness: per-row
:class:`~robustbench_nas.utils.streams.RowStreams` (what ``evaluate`` passes; results independent of device, batch
and row order) or a shared ``torch.Generator`` (the references' draws; see :mod:`robustbench_nas.attacks._draws`),
``early_stop`` True when a row may be left as soon as it is misclassified. The kernel returns adversarial images
inside each row's ball and [0, 1]; it never modifies ``x``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from robustbench_nas.utils.registry import Registry
from robustbench_nas.utils.streams import RowStreams

from .params import AttackParams


class AttackKernel(Protocol):
    """Signature of a batched attack kernel (see the module docstring)."""

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        params: AttackParams,
        *,
        norm: str,
        generator: "torch.Generator | RowStreams",
        early_stop: bool,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack.

    Attributes:
        name: registry key, ``<attack>@<norm>`` (e.g. ``pgd@Linf``).
        norm: threat model, ``"Linf"`` or ``"L2"``.
        kernel: the batched implementation.
        defaults: default parameters (an :class:`~attacks.params.AttackParams` instance).
        description: one line for ``rbnas attack --list``.
        mixes_eps: whether rows of several epsilons may share one batch (False for kernels that need one radius).
    """

    name: str
    norm: str
    kernel: AttackKernel
    defaults: AttackParams
    description: str
    mixes_eps: bool = True


#: the attacks by their Jung'23 names, with aliases (``autoattack`` -> ``autoattack@Linf``)
ATTACKS: Registry[AttackSpec] = Registry("attack")


def register_attack(
    name: str,
    *,
    norm: str,
    defaults: AttackParams,
    description: str,
    aliases: tuple[str, ...] = (),
    mixes_eps: bool = True,
) -> Callable[[AttackKernel], AttackKernel]:
    """Decorator registering a kernel under ``name`` (and optional ``aliases``).

    Example:
        >>> @register_attack("fgsm@Linf", norm="Linf", defaults=FGSMParams(), description="FGSM")
        ... def fgsm(model, x, y, eps, params, *, norm, generator, early_stop): ...
    """
    if norm not in ("Linf", "L2"):
        raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")

    def deco(fn: AttackKernel) -> AttackKernel:
        ATTACKS.add(name, AttackSpec(name, norm, fn, defaults, description, mixes_eps), aliases=aliases)
        return fn

    return deco


def get_attack(name: str) -> AttackSpec:
    """The :class:`AttackSpec` registered as ``name`` (or one of its aliases).

    Raises:
        KeyError: unknown name; the message lists the registered ones and the closest matches.
    """
    if name in ATTACKS:
        return ATTACKS.get(name)
    known = ATTACKS.list(sort=True) + sorted(ATTACKS.aliases())
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown attack {name!r}.{hint} Registered attacks: {', '.join(known)}")


def list_attacks(pattern: str | None = None) -> list[str]:
    """Names of the registered attacks, sorted (aliases not included), filtered by a shell-style ``pattern``
    (``"*@L2"``: the L2 attacks)."""
    return ATTACKS.list(pattern, sort=True)


def list_aliases() -> dict[str, str]:
    """Alias -> registered name."""
    return ATTACKS.aliases()


__all__ = ["ATTACKS", "AttackKernel", "AttackSpec", "get_attack", "list_aliases", "list_attacks", "register_attack"]

"""Typed, documented parameters of every attack.

Each attack has one frozen dataclass of parameters. Defaults follow the reference protocol (Jung et al., ICLR 2023,
whose ``aa_*`` keys name AutoAttack's components) and AutoAttack's standard version (Croce & Hein, ICML 2020).
All step sizes and radii are in [0, 1] pixel units. ``resolved(eps)`` gives the exact values used at one epsilon
(relative step sizes turned into absolute ones), which is what every :class:`~attacks.AttackResult` records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class AttackParams:
    """Base class: every parameter set can be recorded as a plain dict."""

    def resolved(self, eps: float) -> dict[str, Any]:
        """The parameters actually used at ``eps`` (a JSON-able dict)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""


def _positive_int(name: str, v: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class FGSMParams(AttackParams):
    """FGSM (Goodfellow et al., 2015): one step of size ``eps`` along the sign of the cross-entropy gradient.

    For the L2 variant (FGM) the step is ``eps * g / ||g||_2``. No parameters besides eps; kept for uniformity.
    """


@dataclass(frozen=True)
class PGDParams(AttackParams):
    """PGD (Madry et al., 2018) on the cross-entropy loss; the last iterate is the adversarial example.

    Arguments:
        steps: number of gradient steps (default 40, the budget reported for the reference dataset).
        step_size: absolute step size in [0, 1] pixel units; ``None`` = ``rel_step_size * eps / steps``.
        rel_step_size: step size relative to ``eps / steps`` when ``step_size`` is None (default 2.5, Madry et al.:
            lets the iterate travel 2.5 times the radius, so it can reach the boundary from any random start).
        random_start: start from a uniform point of the eps ball (L2: a random direction of uniform radius).
    """

    steps: int = 40
    step_size: float | None = None
    rel_step_size: float = 2.5
    random_start: bool = True

    def alpha(self, eps: float) -> float:
        """Absolute step size used at ``eps``."""
        return float(self.step_size) if self.step_size is not None else self.rel_step_size * eps / self.steps

    def resolved(self, eps: float) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["step_size"] = self.alpha(eps)
        return d

    def validate(self) -> None:
        _positive_int("steps", self.steps)
        if self.step_size is not None and not (0.0 <= self.step_size <= 1.0):
            raise ValueError(f"step_size must be in [0, 1] pixel units, got {self.step_size!r}")
        if self.rel_step_size <= 0:
            raise ValueError(f"rel_step_size must be positive, got {self.rel_step_size!r}")


@dataclass(frozen=True)
class APGDParams(AttackParams):
    """APGD (Croce & Hein, 2020): step-size-free PGD with momentum and checkpoints.

    Arguments:
        steps: iterations per restart (default 100, as in AutoAttack; torchattacks' default of 10 is weaker).
        restarts: random restarts; each restart attacks only the points still robust (default 1).
        loss: ``"ce"`` (cross-entropy), ``"dlr"`` (difference of logits ratio) or ``"dlr-targeted"`` (APGD-T).
        rho: oscillation threshold of the step-size checkpoints (default 0.75).
        n_target_classes: APGD-T only: the number of most likely wrong classes attacked in turn (default 9).
    """

    steps: int = 100
    restarts: int = 1
    loss: Literal["ce", "dlr", "dlr-targeted"] = "ce"
    rho: float = 0.75
    n_target_classes: int = 9

    LOSSES: ClassVar[tuple[str, ...]] = ("ce", "dlr", "dlr-targeted")

    def validate(self) -> None:
        _positive_int("steps", self.steps)
        _positive_int("restarts", self.restarts)
        _positive_int("n_target_classes", self.n_target_classes)
        if self.loss not in self.LOSSES:
            raise ValueError(f"loss must be one of {self.LOSSES}, got {self.loss!r}")
        if not (0.0 < self.rho < 1.0):
            raise ValueError(f"rho must be in (0, 1), got {self.rho!r}")


@dataclass(frozen=True)
class SquareParams(AttackParams):
    """Square attack (Andriushchenko et al., 2020), black-box, Linf or L2.

    Arguments:
        n_queries: iterations (one model query each) per restart (default 5000, as in AutoAttack).
        p_init: initial fraction of pixels changed per square (default 0.8).
        restarts: restarts, each on the points still robust (default 1).
        loss: ``"margin"`` (default, as in AutoAttack) or ``"ce"``: the loss that decides whether a square is kept.
        rescale_schedule: stretch the p schedule to ``n_queries`` (AutoAttack standard: False; torchattacks: True).
    """

    n_queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    loss: Literal["margin", "ce"] = "margin"
    rescale_schedule: bool = False

    def validate(self) -> None:
        _positive_int("n_queries", self.n_queries)
        _positive_int("restarts", self.restarts)
        if not (0.0 < self.p_init <= 1.0):
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init!r}")
        if self.loss not in ("margin", "ce"):
            raise ValueError(f"loss must be 'margin' or 'ce', got {self.loss!r}")


@dataclass(frozen=True)
class AutoAttackParams(AttackParams):
    """AutoAttack, standard version: APGD-CE, APGD-T, FAB-T, Square, each on the points still robust.

    Arguments:
        apgd_steps: APGD-CE and APGD-T iterations (default 100).
        n_target_classes: targets of APGD-T and FAB-T (default 9).
        fab_steps: FAB-T iterations (default 100; FAB-T runs through torchattacks' implementation).
        square_queries: Square queries (default 5000).
        components: the attacks run, in order (default the standard version).
    """

    apgd_steps: int = 100
    n_target_classes: int = 9
    fab_steps: int = 100
    square_queries: int = 5000
    components: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square")

    KNOWN: ClassVar[tuple[str, ...]] = ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square")

    def validate(self) -> None:
        _positive_int("apgd_steps", self.apgd_steps)
        _positive_int("n_target_classes", self.n_target_classes)
        _positive_int("fab_steps", self.fab_steps)
        _positive_int("square_queries", self.square_queries)
        bad = [c for c in self.components if c not in self.KNOWN]
        if bad or not self.components:
            raise ValueError(f"components must be a non-empty subset of {self.KNOWN}, got {self.components!r}")

    def resolved(self, eps: float) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["components"] = list(self.components)
        return d


def make_params(cls: type[AttackParams], base: AttackParams, overrides: dict[str, Any] | AttackParams | None) -> AttackParams:
    """``base`` with ``overrides`` applied (a dict of field values or a ready instance of ``cls``), validated.

    Raises:
        TypeError: an instance of another parameter class.
        ValueError: an unknown field name (the known ones are listed) or an invalid value.
    """
    if overrides is None:
        p = base
    elif isinstance(overrides, AttackParams):
        if not isinstance(overrides, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(overrides).__name__}")
        p = overrides
    else:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
        p = dataclasses.replace(base, **overrides)
    p.validate()
    return p


__all__ = [
    "APGDParams",
    "AttackParams",
    "AutoAttackParams",
    "FGSMParams",
    "PGDParams",
    "SquareParams",
    "make_params",
]

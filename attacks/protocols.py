"""Named attack grids (evaluation protocols of the attacks part): which attacks at which epsilons ([0, 1] units).

``jung2023`` is the grid of the published dataset (Jung, Lukasik & Keuper, ICLR 2023; the ``epsilons`` of its
``meta.json``): FGSM at {0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255}/255, PGD, APGD-CE and Square at
{0.1, 0.5, 1, 2, 3, 4, 8}/255. ``tiny`` is a short grid for CPU runs and tests. ``robbench2024`` is the evaluation
of NAS-RobBench-201 (Wu et al., ICLR 2024): FGSM and PGD at 3/255 and 8/255, AutoAttack at 8/255.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Mapping

from robustbench_nas.utils.registry import Registry


@dataclass(frozen=True)
class AttackGrid:
    """One named evaluation grid of the attacks part.

    Attributes:
        name: grid name (``jung2023``).
        eps_255: attack -> epsilons in units of 1/255 (converted by :func:`get_attack_grid`), in evaluation order.
        params: attack -> parameter overrides the grid evaluates with (empty: the attack's defaults).
    """

    name: str
    eps_255: Mapping[str, tuple[float, ...]]
    params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


#: the named attack grids (``rbnas attack --protocol``); the pipeline's protocols take their grids from here
ATTACK_GRIDS: Registry[AttackGrid] = Registry("attack grid")


def register_attack_grid(name: str, eps_255: Mapping[str, tuple[float, ...]],
                         params: Mapping[str, Mapping[str, object]] | None = None) -> AttackGrid:
    """Register the grid ``name``: attack -> epsilons in units of 1/255, plus per-attack parameter overrides.

    A name already taken raises ``ValueError``; a parameter override for an attack the grid lacks too.
    """
    extra = sorted(set(params or {}) - set(eps_255))
    if extra:
        raise ValueError(f"attack grid {name!r}: parameters for attacks it does not run: {extra}")
    grid = AttackGrid(name, {a: tuple(e) for a, e in eps_255.items()}, {a: dict(p) for a, p in (params or {}).items()})
    return ATTACK_GRIDS.add(name, grid)


_JUNG_FGSM = (0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255)
_JUNG_OTHER = (0.1, 0.5, 1, 2, 3, 4, 8)

register_attack_grid("jung2023", {
    "fgsm@Linf": _JUNG_FGSM,
    "pgd@Linf": _JUNG_OTHER,
    "aa_apgd-ce@Linf": _JUNG_OTHER,
    "aa_square@Linf": _JUNG_OTHER,
})
register_attack_grid("tiny", {
    "fgsm@Linf": (1, 8),
    "pgd@Linf": (1, 8),
    "aa_apgd-ce@Linf": (1, 8),
    "aa_square@Linf": (1, 8),
}, params={"pgd@Linf": {"steps": 10}, "aa_apgd-ce@Linf": {"steps": 20}, "aa_square@Linf": {"n_queries": 200}})
# NAS-RobBench-201 evaluates PGD-20
register_attack_grid("robbench2024", {
    "fgsm@Linf": (3, 8),
    "pgd@Linf": (3, 8),
    "autoattack@Linf": (8,),
}, params={"pgd@Linf": {"steps": 20}})


def list_attack_grids(pattern: str | None = None) -> list[str]:
    """Names of the attack grids (sorted), filtered by a shell-style ``pattern``."""
    return ATTACK_GRIDS.list(pattern, sort=True)


def _grid(name: str) -> AttackGrid:
    if name not in ATTACK_GRIDS:
        raise KeyError(f"unknown attack grid {name!r}; known: {', '.join(list_attack_grids())}")
    return ATTACK_GRIDS.get(name)


def get_attack_grid(name: str) -> dict[str, list[float]]:
    """Attack name -> epsilons in [0, 1] pixel units (ascending) for the grid ``name``.

    (Not :func:`robustbench_nas.pipelines.get_protocol`, which returns a whole pipeline protocol.)

    Example:
        >>> get_attack_grid("jung2023")["pgd@Linf"][-1] == 8 / 255
        True
    """
    return {a: [v / 255 for v in eps] for a, eps in _grid(name).eps_255.items()}


def attack_grid_params(name: str) -> dict[str, dict[str, object]]:
    """Attack name -> parameter overrides that the grid ``name`` uses (empty for the defaults)."""
    return {a: dict(p) for a, p in _grid(name).params.items()}


_NUM = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def parse_eps(text: str, norm: str = "Linf") -> list[float]:
    """Parse a comma-separated epsilon list for people: ``"1/255,8/255"`` or ``"0.5/255, 0.03"``.

    A bare number is taken as [0, 1] pixel units; ``k/255`` as k in units of 1/255. An Linf value must lie in
    [0, 1] (a bare ``8`` is an error with the hint to write ``8/255``); a value off the 0.1/255 lattice of the
    published grids (``8/256`` = 7.969/255, ``0.03`` = 7.65/255) is accepted with a ``UserWarning``: it is easy to
    type by mistake and gives numbers no reference reports. ``norm="L2"``: a Euclidean radius over all pixels,
    which may exceed 1 and has no /255 lattice; it only has to be >= 0.

    Raises:
        ValueError: a part that is not a number or fraction, a zero denominator, a value outside [0, 1].
    """
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(rf"([-+]?{_NUM})\s*(?:/\s*({_NUM}))?", part)
        if not m:
            raise ValueError(f"cannot parse epsilon {part!r}: write e.g. 8/255 or 0.03")
        num = float(m.group(1))
        den = float(m.group(2)) if m.group(2) else 1.0
        if den == 0:
            raise ValueError(f"division by zero in epsilon {part!r}")
        value = num / den
        if norm == "L2":
            if value < 0:
                raise ValueError(f"L2 radius {part!r} = {value:g} must be >= 0")
            out.append(value)
            continue
        if not 0.0 <= value <= 1.0:
            hint = f" (did you mean {part}/255?)" if m.group(2) is None and 1.0 < value <= 255.0 else ""
            raise ValueError(f"epsilon {part!r} = {value:g} must lie in [0, 1] pixel units{hint}")
        tenths = value * 255 * 10
        if abs(tenths - round(tenths)) > 1e-6:
            warnings.warn(f"epsilon {part!r} = {value * 255:.4g}/255 is not a multiple of 0.1/255 "
                          f"(the published grids' step); using it as given", UserWarning, stacklevel=2)
        out.append(value)
    if not out:
        raise ValueError(f"no epsilon in {text!r}")
    return out


__all__ = ["ATTACK_GRIDS", "AttackGrid", "attack_grid_params", "get_attack_grid", "list_attack_grids", "parse_eps",
           "register_attack_grid"]

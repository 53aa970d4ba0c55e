"""Named evaluation protocols: which attacks at which epsilons (in [0, 1] pixel units).

``jung2023`` is the grid of the published dataset (Jung, Lukasik & Keuper, ICLR 2023; the ``epsilons`` of its
``meta.json``): FGSM at {0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255}/255, PGD, APGD-CE and Square at
{0.1, 0.5, 1, 2, 3, 4, 8}/255. ``tiny`` is a short grid for CPU runs and tests. ``robbench2024`` is the evaluation
of NAS-RobBench-201 (Wu et al., ICLR 2024): FGSM and PGD at 3/255 and 8/255, AutoAttack at 8/255.
"""

from __future__ import annotations

import re
import warnings

_JUNG_FGSM = (0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255)
_JUNG_OTHER = (0.1, 0.5, 1, 2, 3, 4, 8)

#: protocol name -> attack -> epsilons in units of 1/255 (converted by :func:`get_protocol`)
_PROTOCOLS_255: dict[str, dict[str, tuple[float, ...]]] = {
    "jung2023": {
        "fgsm@Linf": _JUNG_FGSM,
        "pgd@Linf": _JUNG_OTHER,
        "aa_apgd-ce@Linf": _JUNG_OTHER,
        "aa_square@Linf": _JUNG_OTHER,
    },
    "tiny": {
        "fgsm@Linf": (1, 8),
        "pgd@Linf": (1, 8),
        "aa_apgd-ce@Linf": (1, 8),
        "aa_square@Linf": (1, 8),
    },
    "robbench2024": {
        "fgsm@Linf": (3, 8),
        "pgd@Linf": (3, 8),
        "autoattack@Linf": (8,),
    },
}

#: per-protocol parameter overrides (NAS-RobBench-201 evaluates PGD-20)
_PROTOCOL_PARAMS: dict[str, dict[str, dict[str, object]]] = {
    "tiny": {"pgd@Linf": {"steps": 10}, "aa_apgd-ce@Linf": {"steps": 20}, "aa_square@Linf": {"n_queries": 200}},
    "robbench2024": {"pgd@Linf": {"steps": 20}},
}


def list_protocols() -> list[str]:
    """Names of the protocols."""
    return sorted(_PROTOCOLS_255)


def get_protocol(name: str) -> dict[str, list[float]]:
    """Attack name -> epsilons in [0, 1] pixel units (ascending) for protocol ``name``.

    Example:
        >>> get_protocol("jung2023")["pgd@Linf"][-1] == 8 / 255
        True
    """
    if name not in _PROTOCOLS_255:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(list_protocols())}")
    return {a: [v / 255 for v in eps] for a, eps in _PROTOCOLS_255[name].items()}


def protocol_params(name: str) -> dict[str, dict[str, object]]:
    """Attack name -> parameter overrides that protocol ``name`` uses (empty for the defaults)."""
    if name not in _PROTOCOLS_255:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(list_protocols())}")
    return {a: dict(p) for a, p in _PROTOCOL_PARAMS.get(name, {}).items()}


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


__all__ = ["get_protocol", "list_protocols", "parse_eps", "protocol_params"]

"""Names of robustness targets: parsing ``<attack>@<eps>/255``, reading order, how a reader says them, headlines."""

from __future__ import annotations

import re

import pandas as pd

from .targets import target_name

#: an adversarial target, ``<attack>@<eps in units of 1/255>/255`` (the attack name may hold ``@``: ``pgd@Linf``)
_ADV = re.compile(r"^(?P<attack>.+)@(?P<eps>[0-9.]+)/255$")


def parse_target(name: str) -> tuple[str, float] | None:
    """``"pgd@Linf@1/255" -> ("pgd@Linf", 1.0)`` (eps in units of 1/255); ``None`` for other targets."""
    m = _ADV.match(name)
    return (m["attack"], float(m["eps"])) if m else None


def target_kind(target: str) -> str | None:
    """``adversarial`` (an ``attack@norm@eps`` target or ``adv_mean``), ``corruption`` (``corruption:*``,
    ``corruption_mean``) or ``None`` (``clean`` and anything else)."""
    if target == "adv_mean" or parse_target(target) is not None:
        return "adversarial"
    if target == "corruption_mean" or target.startswith("corruption:"):
        return "corruption"
    return None


def sort_targets(names: list[str]) -> list[str]:
    """Targets in reading order: clean, each attack by increasing eps (numeric, not as text), adv_mean,
    corruption_mean, each corruption; attacks keep their first-seen order."""
    attacks: dict[str, int] = {}
    for n in names:
        p = parse_target(n)
        if p:
            attacks.setdefault(p[0], len(attacks))

    def key(n: str) -> tuple:
        p = parse_target(n)
        if n == "clean":
            return (0, 0, 0.0, n)
        if p:
            return (1, attacks[p[0]], p[1], n)
        if n == "adv_mean":
            return (2, 0, 0.0, n)
        if n == "corruption_mean":
            return (3, 0, 0.0, n)
        return (4, 0, 0.0, n)

    return sorted(names, key=key)


def pretty_target(name: str) -> str:
    """A target as a reader says it: ``pgd@Linf@1/255 -> "PGD (Linf) at 1/255"``."""
    p = parse_target(name)
    if p:
        attack, eps = p
        parts = attack.split("@")
        a = parts[0].replace("aa_", "").upper()
        norm = f" ({parts[1]})" if len(parts) > 1 else ""
        return f"{a}{norm} at {eps:g}/255"
    return {"clean": "clean accuracy", "adv_mean": "mean adversarial accuracy",
            "corruption_mean": "mean corruption accuracy"}.get(name, name.replace("corruption:", "corruption "))


def default_predict_targets(T: pd.DataFrame) -> list[str]:
    """The headline targets of a targets table: clean, PGD (else FGSM, else the first attack) at 1/255, adv_mean."""
    out = ["clean"] if "clean" in T else []
    for a in ("pgd@Linf", "fgsm@Linf"):
        if target_name(a, 1 / 255) in T:
            out.append(target_name(a, 1 / 255))
            break
    else:
        adv = [c for c in sort_targets(list(T.columns)) if parse_target(c)]
        out += adv[:1]
    if "adv_mean" in T:
        out.append("adv_mean")
    return out


__all__ = ["default_predict_targets", "parse_target", "pretty_target", "sort_targets", "target_kind"]

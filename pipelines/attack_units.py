"""The adversarial stage as one pipeline unit per attack.

One attack of a large cell takes hours on the jung2023 grid (Square-5000 most of them), so the runner schedules
each attack of the protocol as its own unit, named ``adversarial:<attack>`` (e.g. ``adversarial:pgd@Linf``): a
worker near the end of its wall time can still take a short attack (:mod:`.lifetime` estimates per attack), an
interrupted run keeps the attacks that finished, and ``rbnas status`` shows progress per attack.

The store keeps one ``adversarial`` stage per (cell, seed): an attack unit's result is merged by the client into the
cell's ``adv_*`` values (its attack's row), with its row of ``adv_attack_weights_sha256`` (the weights it attacked)
and ``adv_attack_seconds``; an attack counts as done when that hash is the cell's current ``weights_sha256``, so a
retrained cell recomputes every attack. The stage is marked done (with ``adversarial_weights_sha256`` and the summed
seconds) by the record of its last attack. Each attack draws from its own seed (``derived_seed(seed, attack)``) and
per-image streams, so the merged values equal those of the whole stage run as one unit, bit for bit.

Stores made before the split (no ``adv_attack_weights_sha256``) run the stage as one unit per cell, as before.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: the store stage the attack units belong to
ADV_STAGE = "adversarial"
_SEP = ":"


def attack_unit(attack: str) -> str:
    """The unit name of ``attack`` (``adversarial:<attack>``)."""
    return f"{ADV_STAGE}{_SEP}{attack}"


def split_unit(unit: str) -> tuple[str, str | None]:
    """``(store stage, attack or None)`` of a unit name: ``"adversarial:fgsm@Linf"`` -> ``("adversarial",
    "fgsm@Linf")``, ``"clean"`` -> ``("clean", None)``."""
    stage, sep, attack = unit.partition(_SEP)
    return (stage, attack) if sep else (stage, None)


def unit_stage(unit: str) -> str:
    """The store stage of a unit name (the name itself but for attack units)."""
    return split_unit(unit)[0]


def splits_attacks(store: Any) -> bool:
    """Whether ``store`` (a :class:`~robustbench_nas.storage.RobustnessStore`) records attacks one by one: it has
    the adversarial stage and the per-attack arrays (stores made before the split do not)."""
    return ADV_STAGE in store.spec.stages and "adv_attack_weights_sha256" in store.arrays


def attacks_done(attack_hashes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(arch, seed, attack)`` bool: the attack's row was computed from the cell's current weights.

    Arguments:
        attack_hashes: ``adv_attack_weights_sha256`` ``(arch, seed, attack)``.
        weights: ``weights_sha256`` ``(arch, seed)`` ('' where not trained).
    """
    h = np.asarray(attack_hashes, dtype=object).astype(str)
    w = np.asarray(weights, dtype=object).astype(str)[:, :, None]
    return (h == w) & (w != "")


def store_attacks_done(store: Any) -> np.ndarray | None:
    """:func:`attacks_done` of a store (committed values), ``None`` for a store that does not split attacks."""
    if not splits_attacks(store):
        return None
    return attacks_done(store.read_array("adv_attack_weights_sha256"), store.read_array("weights_sha256"))


def attack_progress(store: Any) -> list[dict[str, Any]]:
    """Per attack of the adversarial stage: ``[{"attack", "done", "pending", "total"}]`` over (cell, seed) slots
    (committed values; a slot whose whole stage is done counts as done for every attack, e.g. copied by
    ``--reuse`` from a store made before the split). Empty for a store that does not split attacks.
    """
    done = store_attacks_done(store)
    if done is None:
        return []
    from robustbench_nas.storage import DONE

    done = done | (store.status()[:, :, store.stage_pos(ADV_STAGE)] == DONE)[:, :, None]
    total = done.shape[0] * done.shape[1]
    return [{"attack": a, "done": int(done[:, :, k].sum()), "pending": total - int(done[:, :, k].sum()),
             "total": total} for k, a in enumerate(store.spec.attacks)]


def expand(units: Sequence[tuple[int, int, str]], attacks: Sequence[str], done: np.ndarray | None,
           arch_pos: dict[int, int], seed_pos: dict[int, int]) -> list[tuple[int, int, str]]:
    """``units`` with each ``adversarial`` unit replaced by one unit per attack not done yet (in protocol order).

    ``done``: :func:`attacks_done` of the store (``None``: the store does not split attacks; units unchanged).
    A cell whose ``train`` is among ``units`` gets every attack (its weights are about to change), and so does one
    whose attacks are all done while its stage is not.
    """
    if done is None:
        return list(units)
    training = {(u, s) for u, s, st in units if st == "train"}
    out = []
    for uid, seed, stage in units:
        if stage != ADV_STAGE:
            out.append((uid, seed, stage))
            continue
        row = done[arch_pos[uid], seed_pos[seed]]
        # every attack done but the stage not: forced (its rows cleared since) or never assembled; recompute all
        fresh = (uid, seed) in training or bool(row.all())
        out += [(uid, seed, attack_unit(a)) for k, a in enumerate(attacks) if fresh or not row[k]]
    return out


class AttackMerger:
    """The client's merge of attack-unit results into whole ``adversarial`` cell values.

    The first result of a (cell, seed) in a run reads the cell's current values (journal included); later ones
    update that copy. Leases make the run the only writer of its cells, so nothing else changes them meanwhile.

    Arguments:
        store: the store (open ``r+``), one that :func:`splits_attacks`.
    """

    #: the values merged row by row (one row per attack along their first cell dimension)
    ROWS = ("adv_accuracy", "adv_confidence", "adv_confidence_true", "adv_confusion", "adv_attack_seconds",
            "adv_attack_weights_sha256")

    def __init__(self, store: Any) -> None:
        self.store = store
        self.attacks = list(store.spec.attacks)
        self.cells: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def merge(self, uid: int, seed: int, attack: str, values: dict[str, Any], seconds: float,
              weights: str) -> tuple[dict[str, Any], bool]:
        """The cell's values with ``attack``'s row from ``values`` (a one-attack result of the adversarial stage,
        NaN / -1 in the other rows), and whether every attack is now done from ``weights``.

        Returns ``(values to record, complete)``; ``values`` holds whole cell values of :attr:`ROWS` and
        ``adv_clean_accuracy`` (the same for every attack: one clean pass over the attack images).
        """
        k = self.attacks.index(attack)
        cur = self.cells.get((uid, seed))
        if cur is None:
            cur = {n: np.array(self.store.read_cell(uid, seed, n), copy=True) for n in self.ROWS}
            self.cells[(uid, seed)] = cur
        for n in self.ROWS[:4]:
            cur[n][k] = np.asarray(values[n])[k]
        cur["adv_attack_seconds"][k] = float(seconds)
        cur["adv_attack_weights_sha256"][k] = weights
        out: dict[str, Any] = {n: v.copy() for n, v in cur.items()}
        out["adv_clean_accuracy"] = values["adv_clean_accuracy"]
        complete = bool(weights) and all(str(h) == weights for h in cur["adv_attack_weights_sha256"])
        return out, complete


__all__ = ["ADV_STAGE", "AttackMerger", "attack_progress", "attack_unit", "attacks_done", "expand", "split_unit", "splits_attacks",
           "store_attacks_done", "unit_stage"]

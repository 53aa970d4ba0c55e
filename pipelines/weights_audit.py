"""``rbnas status --check``'s weights audit: does every result belong to the weights its cell points to now?

For every (cell, seed) with ``train`` done, the checkpoint file is hashed (:func:`~robustbench_nas.training.
checkpoint_sha256`) and compared with the recorded ``weights_sha256``; every done result of a stage computed from the
weights (:data:`~robustbench_nas.storage.WEIGHT_STAGES`) must carry that same hash. Each mismatch is one
:class:`WeightsProblem`. Stores without weights hashes (imports, stores made before them) have nothing to audit.

Example:
    >>> for p in audit_weights(open_store("runs/tiny.zarr")):  # doctest: +SKIP
    ...     print(p.text())
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from robustbench_nas.storage import DONE, WEIGHT_STAGES, RobustnessStore, weights_hash_array

#: problem kinds: the checkpoint file is missing / unreadable / holds other weights than recorded; train done
#: without a hash; a result computed from other weights (or recording none) than the cell's current ones
KINDS = ("checkpoint_missing", "checkpoint_corrupt", "checkpoint_mismatch", "no_weights_hash", "stale_result")


@dataclass(frozen=True)
class WeightsProblem:
    """One result (or checkpoint) that does not match the cell's current weights.

    Attributes:
        kind: one of :data:`KINDS`.
        arch, seed: the cell (uid) and seed.
        stage: ``train`` for checkpoint problems, else the stale result's stage.
        recorded: the hash the result (or the train record) holds (``""``: none).
        current: the cell's current weights hash (for ``checkpoint_mismatch``: the file's).
        detail: one line saying what is wrong.
    """

    kind: str
    arch: int
    seed: int
    stage: str
    recorded: str
    current: str
    detail: str

    def text(self) -> str:
        """One line for the terminal."""
        return f"{self.kind}: cell {self.arch} seed {self.seed} stage {self.stage}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def audit_weights(store: RobustnessStore) -> list[WeightsProblem]:
    """Every :class:`WeightsProblem` of ``store``'s committed results, in store order.

    Whole arrays are read once (journal records not committed yet are left out: a check does not write, and the
    next run or ``commit`` folds them in). Each distinct checkpoint file is hashed once (the whole file is read).
    """
    from robustbench_nas.training import CheckpointError, checkpoint_sha256

    if not store.spec.weights_hashes or "train" not in store.spec.stages:
        return []
    status = store.read_array("status")
    hashes = store.read_array("weights_sha256")
    checkpoints = store.read_array("checkpoint")
    train = store.stage_pos("train")
    stages = [s for s in WEIGHT_STAGES if s in store.spec.stages]
    file_hash: dict[str, str | CheckpointError] = {}
    used = {s: store.read_array(weights_hash_array(s)) for s in stages}
    out: list[WeightsProblem] = []
    for i, uid in enumerate(store.spec.archs):
        for j, seed in enumerate(store.spec.seeds):
            done = [s for s in stages if status[i, j, store.stage_pos(s)] == DONE]
            if status[i, j, train] != DONE and not done:
                continue
            current = ""
            if status[i, j, train] == DONE:
                current = str(hashes[i, j])
                out += _check_file(store, uid, seed, current, str(checkpoints[i, j]), file_hash,
                                   checkpoint_sha256, CheckpointError)
            for s in done:
                got = str(used[s][i, j])
                if got != current or not current:
                    why = ("the cell has no trained weights" if not current else
                           f"computed from weights {got[:12] or '(none recorded)'}, the cell's are {current[:12]}")
                    out.append(WeightsProblem("stale_result", uid, seed, s, got, current, why))
    return out


def _check_file(store: RobustnessStore, uid: int, seed: int, recorded: str, rel: str, cache: dict[str, Any],
                hasher: Any, error: type[Exception]) -> list[WeightsProblem]:
    """Problems of one cell's checkpoint (``rel``: its path relative to the store's parent): no hash recorded,
    file missing, unreadable, or holding other weights."""
    if not recorded:
        return [WeightsProblem("no_weights_hash", uid, seed, "train", "", "", "train is done but records no hash")]
    path = store.path.parent / rel
    if not rel or not path.is_file():
        return [WeightsProblem("checkpoint_missing", uid, seed, "train", recorded, "",
                               f"checkpoint {path if rel else '(none recorded)'} not found")]
    key = str(path.resolve())
    if key not in cache:
        try:
            cache[key] = hasher(path)
        except error as e:
            cache[key] = e
    got = cache[key]
    if isinstance(got, Exception):
        return [WeightsProblem("checkpoint_corrupt", uid, seed, "train", recorded, "", str(got))]
    if got != recorded:
        return [WeightsProblem("checkpoint_mismatch", uid, seed, "train", recorded, got,
                               f"checkpoint {path} holds weights {got[:12]}, recorded {recorded[:12]} "
                               "(replaced or tampered with)")]
    return []


__all__ = ["KINDS", "WeightsProblem", "audit_weights"]

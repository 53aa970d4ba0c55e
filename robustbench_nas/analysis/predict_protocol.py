"""The held-out protocol's settings and defaults, shared by ``rbnas predict`` and ``rbnas analyze`` (a light module:
the command line reads its defaults without importing scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

#: ``--encodings`` default of ``rbnas predict`` and ``rbnas analyze`` (every encoding of the store's space).
DEFAULT_ENCODINGS = "all"


@dataclass(frozen=True)
class PredictProtocol:
    """The held-out protocol of ``rbnas predict`` and of the report's prediction section (one definition, one set
    of defaults: see :mod:`.heldout`).

    Attributes:
        model: ``auto`` (chosen per repeat by cross-validation inside the training cells among
            :data:`.prediction.AUTO_CANDIDATES`) or a registered model name.
        train_sizes: numbers of training cells (one score per size).
        repeats: splits per size (seeds ``seed, seed+1, ...``).
        seed: base seed of splits and models.
        train_select: how training cells are chosen (``random``, ``kmeans``, ``variance``:
            :data:`.prediction.TRAIN_SELECTIONS`).
        selection: the inner-CV rule of ``model="auto"`` (``1se`` or ``best``: :data:`.prediction.SELECTION_RULES`).
    """

    model: str = "auto"
    train_sizes: tuple[int, ...] = (100,)
    repeats: int = 5
    seed: int = 0
    train_select: str = "random"
    selection: str = "1se"


__all__ = ["DEFAULT_ENCODINGS", "PredictProtocol"]

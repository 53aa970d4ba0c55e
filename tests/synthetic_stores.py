"""Test helper: a store of a search space's cells with given clean and PGD@1/255 accuracies (the analysis and
prediction tests build their targets as known functions of the architecture and write them here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from robustbench_nas.storage import DONE, StoreSpec, create_store


def write_clean_pgd_store(path: Path, space: Any, archs: Sequence[int], clean: np.ndarray, pgd: np.ndarray,
                          costs: Sequence[Any]) -> Path:
    """Create ``path`` holding ``archs`` of ``space`` (stages info, clean, adversarial done) with ``clean`` and
    ``pgd`` (PGD Linf at 1/255) accuracies, fractions in [0, 1], and each cell's ``costs`` (``space.cost`` objects:
    params in M, FLOPs in raw counts)."""
    spec = StoreSpec(archs=list(archs), arch_str=[space.arch_str(a) for a in archs], search_space=space.name,
                     attacks={"pgd@Linf": [1 / 255]}, stages=["info", "clean", "adversarial"])
    store = create_store(path, spec)
    store.write_array("clean_accuracy", np.asarray(clean)[:, None])
    store.write_array("adv_accuracy", np.asarray(pgd)[:, None, None, None])
    store.write_array("params", np.array([c.params for c in costs]))
    store.write_array("flops", np.array([c.flops.published / 1e6 for c in costs]))
    store.write_array("flops_plain", np.array([c.flops.plain / 1e6 for c in costs]))
    for stage in ("info", "clean", "adversarial"):
        store.set_status(stage, DONE)
    return path

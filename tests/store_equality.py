"""Shared by the tests that compare a store with a reference run: the small protocol they run and the equality check.

A store computed another way (killed and resumed, on SLURM, by racing processes, one attack unit at a time) must
hold the same numbers as one uninterrupted run: every result array equal bit for bit, everything done, the same
weights. What only says how a unit ran (wall times, attempts, threads, device) is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

#: The tiny protocol at small sizes: every stage runs, a cell takes seconds (one epoch on 128 digits).
MICRO: dict = dict(
    profile_overrides={"epochs": 1, "max_train_images": 128},
    attacks={"fgsm@Linf": [2 / 255, 8 / 255]},
    attack_params={},
    corruptions=["brightness"],
    severities=[1, 5],
    proxies=["params", "snip"],
    proxy_images=16,
    measures=["jacobian_fro"],
    measure_images=8,
    attack_images=48,
    corruption_images=48,
    batch_size=64,
)

#: Arrays that record how a unit ran, not what it computed (checkpoint paths: compared by their weights instead).
BOOKKEEPING: frozenset[str] = frozenset({
    "stage_seconds", "attempts", "error", "checkpoint", "unit_threads", "unit_device", "unit_precision",
    "adv_attack_seconds",
})


def assert_same_store(a: Path, b: Path, required: Iterable[str] = ("adv_accuracy",)) -> None:
    """Store ``b`` equals reference ``a``: same protocol, every unit of ``b`` done, every result array equal (NaN
    where NaN; :data:`BOOKKEEPING` aside), and the checkpoints hold the same weights.

    ``required``: arrays that must be among those compared (so an empty comparison cannot pass).
    """
    import torch

    from robustbench_nas.storage import DONE, open_dataset
    from robustbench_nas.training import load_checkpoint

    da, db = open_dataset(a).load(), open_dataset(b).load()
    assert da.attrs["protocol_fingerprint"] == db.attrs["protocol_fingerprint"]
    assert (db.status.values == DONE).all(), "not every (cell, seed, stage) is done"
    names = [v for v in da.data_vars if v not in BOOKKEEPING]
    assert set(required) | {"status"} <= set(names), sorted(names)
    for v in names:
        x, y = da[v].values, db[v].values
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=v)
        else:
            diff = np.argwhere(~(x == y))
            assert diff.size == 0, (v, [(tuple(i), x[tuple(i)], y[tuple(i)]) for i in diff[:4]])
    if "checkpoint" in da:
        for ca, cb in zip(da.checkpoint.values.ravel(), db.checkpoint.values.ravel()):
            ma, _ = load_checkpoint(Path(a).parent / str(ca))
            mb, _ = load_checkpoint(Path(b).parent / str(cb))
            for ta, tb in zip(ma.state_dict().values(), mb.state_dict().values()):
                assert torch.equal(ta, tb)

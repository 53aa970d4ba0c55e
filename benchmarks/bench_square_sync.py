"""Square without per-query host synchronisation (issue 29): the same attack, two loop schedules, same process.

* **baseline**: ``COMPACT_EVERY = 1``: the queried rows are recomputed with ``nonzero`` before every query (the
  loop as it was: one host synchronisation per query, plus the ``all()`` check; on a GPU each one drains the
  launch queue);
* **ours**: ``COMPACT_EVERY = 16`` (the default with per-row streams): one ``nonzero`` every 16 queries; rows
  broken in between are forwarded but masked out of every update.

Same work: both run ``square_perturb`` on the same rows with the same per-row streams
(:class:`~robustbench_nas.utils.streams.RowStreams`), and the records check that the adversarial images are
**bitwise equal** (``results_agree``). The network is wrapped to forward image by image, so that the CPU's
batch-size-dependent convolution rounding (up to ~7e-7 in a logit) cannot make the two schedules' rows differ.

On the CPU a synchronisation costs nothing, so the CPU ratio shows only the price of the masked rows (broken rows
forwarded until the next compaction); the gain is the removed synchronisations (``host_syncs`` in the record), which
matter on a GPU. Networks: an untrained NB201 (C=16, N=1) at 8/255 and 16/255 (Linf) and 0.5 (L2) on random
images. Measured (records of 2026-12-07): no row broke in 300 queries in any of the three cases (accuracy 1.0: the
untrained network's near-constant logits resist), so these records show the schedule change on surviving rows only;
rows broken between two compactions are covered by tests/test_batch_invariance.py (a small CNN) and want a record on
a trained network.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import bench_main, make_result, mark_quick, torch_threads


class _RowWise(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i : i + 1]) for i in range(x.shape[0])])


def _case(n: int, queries: int, eps: float, norm: str) -> dict[str, Any]:
    import importlib

    from robustbench_nas.attacks.params import SquareParams
    from robustbench_nas.models import build_model
    from robustbench_nas.utils.streams import RowStreams, derive_key, image_keys

    sq = importlib.import_module("robustbench_nas.attacks.square")
    torch.manual_seed(0)
    net = build_model("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
                      C=16, N=1).eval()
    model = _RowWise(net).eval()
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    eps_t = torch.full((n,), eps)
    keys = image_keys(derive_key("bench", eps), np.arange(n))
    out: dict[str, Any] = {}
    syncs: dict[str, int] = {}
    real_nonzero = torch.Tensor.nonzero
    for label, every in (("baseline", 1), ("ours", sq.COMPACT_EVERY)):
        count = [0]

        def counting(self, *a, **k):
            count[0] += 1
            return real_nonzero(self, *a, **k)

        torch.Tensor.nonzero = counting  # type: ignore[method-assign]
        saved = sq.COMPACT_EVERY
        sq.COMPACT_EVERY = every
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            adv = sq.square_perturb(model, x, y, eps_t, SquareParams(n_queries=queries), norm=norm,
                                    generator=RowStreams(keys), early_stop=False)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            sq.COMPACT_EVERY = saved
            torch.Tensor.nonzero = real_nonzero  # type: ignore[method-assign]
        with torch.no_grad():
            acc = float((model(adv).argmax(1) == y).float().mean())
        out[label] = (adv, wall, cpu, acc)
        syncs[label] = count[0]
    agree = torch.equal(out["baseline"][0], out["ours"][0])
    return make_result(
        f"square_sync_{norm}_eps{round(eps * 255)}",
        out["ours"][2], out["baseline"][2], agree,
        clock="process_cpu", wall_ours_s=out["ours"][1], wall_baseline_s=out["baseline"][1],
        same_work=True, images=n, queries=queries, eps_255=eps * 255, norm=norm,
        accuracy=out["ours"][3], compact_every=sq.COMPACT_EVERY,
        host_syncs={"baseline": syncs["baseline"], "ours": syncs["ours"]},
        kind="measured",
    )


def run(quick: bool = False) -> list[dict]:
    """Records for Linf at 8/255 and 16/255 (and L2 at 0.5), both loop schedules on the same rows."""
    n, queries = (16, 60) if quick else (64, 300)
    with torch_threads(1):
        recs = [_case(n, queries, 8 / 255, "Linf"), _case(n, queries, 16 / 255, "Linf"), _case(n, queries, 0.5, "L2")]
    return mark_quick(recs, quick)


if __name__ == "__main__":
    bench_main(run, __doc__)

"""APGD without per-iteration host synchronisation (issue 29): the same attack, two row-selection schemes, same
process.

* **baseline**: ``old[mask] = new[mask]`` (the loop as it was): four boolean-indexing updates per iteration (the
  best-loss point, its gradient, its loss, the last misclassified iterate); each needs the number of selected rows
  on the host, i.e. one host synchronisation, which on a GPU drains the launch queue;
* **ours**: ``torch.where`` masks (``attacks/apgd.py: _take``): no synchronisation in the iteration loop of the
  reference (``independent``) mode. (``early_exit`` mode still compacts the rows it forwards every iteration: that
  selection is what saves its forward passes.)

Same work: both run ``apgd_perturb`` on the same rows with the same per-row streams, and the records check that the
adversarial images are **bitwise equal** (``results_agree``). On the CPU a synchronisation costs nothing, so the CPU
ratio shows only the price of the masks (``torch.where`` writes every row, indexing only the selected ones); the
gain is the removed synchronisations (``host_syncs``), which matter on a GPU. Network: an NB201 cell (C=16, N=1)
with BN statistics of CIFAR-10 images (real data when ``../shared/data`` is there, else noise), APGD-CE at 1/255
and 8/255, APGD-DLR at 8/255.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import bench_main, make_result, mark_quick, shared_cifar10, torch_threads

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _take_indexed(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """The old update: boolean indexing (one host synchronisation per call); same values as ``apgd._take``."""
    out = old.clone()
    out[mask] = new[mask]
    return out


def _model_and_data(n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    from robustbench_nas.models import build_model

    got = shared_cifar10(n)
    if got is None:
        g = torch.Generator().manual_seed(1)
        x, data = torch.rand(n, 3, 32, 32, generator=g), "uniform noise (no ../shared/data)"
    else:
        x, data = got[0], "CIFAR-10 test images"
    torch.manual_seed(0)
    model = build_model(CELL, C=16, N=1)
    for m in model.modules():  # BN statistics of the images: input-dependent logits without training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)  # labels = clean predictions: every row is attacked
    return model, x, y, data


def _case(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, data: str, loss: str, eps: float,
          steps: int) -> dict[str, Any]:
    from robustbench_nas.attacks.params import APGDParams
    from robustbench_nas.utils.streams import RowStreams, derive_key, image_keys

    apgd = importlib.import_module("robustbench_nas.attacks.apgd")
    n = x.shape[0]
    eps_t = torch.full((n,), eps)
    keys = image_keys(derive_key("bench-apgd", eps), np.arange(n))
    out: dict[str, Any] = {}
    syncs: dict[str, int] = {}
    masked = apgd._take
    for label, take in (("baseline", _take_indexed), ("ours", masked)):
        count = [0]

        def counted(mask, new, old, _take=take, _count=count):
            _count[0] += take is _take_indexed  # boolean indexing: one synchronisation per call
            return _take(mask, new, old)

        apgd._take = counted
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            adv = apgd.apgd_perturb(model, x, y, eps_t, APGDParams(steps=steps, loss=loss), norm="Linf",
                                    generator=RowStreams(keys), early_stop=False)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            apgd._take = masked
        with torch.no_grad():
            acc = float((model(adv).argmax(1) == y).float().mean())
        out[label] = (adv, wall, cpu, acc)
        syncs[label] = count[0]
    agree = torch.equal(out["baseline"][0], out["ours"][0])
    return make_result(
        f"apgd_sync_{loss}_eps{round(eps * 255)}",
        out["ours"][2], out["baseline"][2], agree,
        clock="process_cpu", wall_ours_s=out["ours"][1], wall_baseline_s=out["baseline"][1],
        same_work=True, images=n, steps=steps, eps_255=eps * 255, loss=loss, norm="Linf", data=data,
        accuracy=out["ours"][3], accuracy_baseline=out["baseline"][3],
        host_syncs_in_loop={"baseline": syncs["baseline"], "ours": syncs["ours"]},
        kind="measured",
    )


def run(quick: bool = False) -> list[dict]:
    """Records for APGD-CE (Linf) at 1/255 and 8/255 and APGD-DLR at 8/255, both row-selection schemes on the same
    rows, 100 iterations (the reference budget) on 32 images (a bounded time on a shared 2-core CPU)."""
    n, steps = (16, 10) if quick else (32, 100)
    cases = [("ce", 1 / 255), ("ce", 8 / 255), ("dlr", 8 / 255)]
    with torch_threads(1):
        model, x, y, data = _model_and_data(n)
        recs = [_case(model, x, y, data, loss, eps, steps) for loss, eps in cases]
    return mark_quick(recs, quick)


if __name__ == "__main__":
    bench_main(run, __doc__)

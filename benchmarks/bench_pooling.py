"""Average pooling through the channels-last CPU kernel (``robustbench_nas.models.pooling``) vs PyTorch's built-in op.

Records (CPU, one torch thread, process CPU seconds, each pair side by side in this process, alternating):

* ``proxies_all_channels_last_pool_vs_builtin``: all 16 proxies (fast engine, the complete table's protocol: batch
  64 CIFAR-10 training images of the shared file, seed 0, C=16, N=5) of the first cells of the complete table's run
  order (``robustbench_nas.proxies.sample.shipped_order``: stratified by accuracy, so a prefix is a sample of the
  space), ours vs the same with :func:`~robustbench_nas.models.pooling.builtin_avg_pool`. ``results_agree``: every
  value equal bit for bit (``repr``); ``same_work: true`` (same cells, images, seed, proxies, outputs). Needs the
  shared CIFAR-10 file (the table's images); skipped without it.
* ``avg_pool_channels_last_vs_builtin``: the pool alone, forward + backward, on NB201's three cell shapes
  (batch 64 at 16 x 32 x 32, 32 x 16 x 16, 64 x 8 x 8); ``results_agree``: output and input gradient bit for bit.

``python -m benchmarks.bench_pooling [--quick]`` (quick: 3 cells instead of 10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmarks.common import SHARED_DATA, Timer, bench_main, make_result, save_records, torch_threads

SHAPES = ((64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8))


def _pool_record(repeat: int) -> dict[str, Any]:
    from robustbench_nas.models.pooling import AvgPool2d, builtin_avg_pool

    pool = AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    g = torch.Generator().manual_seed(0)
    ours = base = 0.0
    agree = True
    per_shape = {}
    for shape in SHAPES:
        x = torch.randn(*shape, generator=g)
        v = torch.randn(*shape, generator=g)
        outs: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        secs = {True: 0.0, False: 0.0}
        for _ in range(repeat):
            for builtin in (True, False):
                xx = x.clone().requires_grad_(True)
                with Timer() as t, (builtin_avg_pool() if builtin else torch.enable_grad()):
                    y = pool(xx)
                    (gx,) = torch.autograd.grad(y, xx, v)
                secs[builtin] += t.cpu_seconds
                outs[builtin] = (y.detach(), gx)
        agree &= all(torch.equal(a, b) for a, b in zip(outs[True], outs[False]))
        ours += secs[False]
        base += secs[True]
        per_shape["x".join(map(str, shape))] = round(secs[True] / secs[False], 2)
    return make_result("avg_pool_channels_last_vs_builtin", ours / repeat, base / repeat, agree, same_work=True,
                       kind="measured", unit="s (forward + backward, the three shapes)", clock="process_cpu",
                       ratio_per_shape=per_shape, device="cpu", count_include_pad=False,
                       baseline="torch.nn.AvgPool2d (NCHW CPU kernel)")


def _proxies_record(n_cells: int) -> dict[str, Any] | None:
    from robustbench_nas.models.pooling import builtin_avg_pool
    from robustbench_nas.pipelines.protocol import get_protocol
    from robustbench_nas.pipelines.stages import StageContext
    from robustbench_nas.proxies import compute_proxies
    from robustbench_nas.proxies.sample import shipped_order
    from robustbench_nas.search_spaces import get_search_space

    data = SHARED_DATA / "cifar10_test.npz"
    if not data.is_file():
        print(f"skipped proxies_all_channels_last_pool_vs_builtin: {data} not found (the table's images)")
        return None
    protocol = get_protocol("nb201-proxies-all").replace(data_root=str(data))
    space = get_search_space("nb201")
    uids = shipped_order()[:n_cells]
    ours = base = 0.0
    agree = True
    per_cell = []
    for uid in uids:
        arch = space.arch_str(uid)
        ctx = StageContext(protocol=protocol, uid=uid, arch_str=arch, seed=0, store_path=Path("unused.zarr"), device=torch.device("cpu"))
        x, y = ctx.images("proxies")
        vals, secs = {}, {}
        for builtin in (True, False):
            with Timer() as t, (builtin_avg_pool() if builtin else torch.enable_grad()):
                vals[builtin] = compute_proxies(arch, x, y, list(protocol.proxies), seed=0)
            secs[builtin] = t.cpu_seconds
        same = {k: repr(float(vals[True][k])) == repr(float(vals[False][k])) for k in protocol.proxies}
        agree &= all(same.values())
        ours += secs[False]
        base += secs[True]
        per_cell.append({"uid": uid, "avg_pool_edges": arch.count("avg_pool"), "ours_s": round(secs[False], 2),
                         "baseline_s": round(secs[True], 2), "bitwise": all(same.values())})
    k = len(uids)
    return make_result("proxies_all_channels_last_pool_vs_builtin", ours / k, base / k, agree, same_work=True,
                       kind="measured", unit="s/cell", clock="process_cpu", device="cpu", C=16, N=5, n_images=64,
                       data="cifar10_test", engine="fast", cells=k, per_cell=per_cell,
                       tolerance="bitwise (repr of every proxy value)",
                       baseline="the same proxies with torch.nn.AvgPool2d's built-in CPU op (builtin_avg_pool)")


def run(quick: bool = False) -> list[dict]:
    with torch_threads(1):
        records = [_pool_record(3 if quick else 10)]
        rec = _proxies_record(3 if quick else 10)
    if rec is not None:
        records.append(rec)
    return save_records(records, quick)


if __name__ == "__main__":
    bench_main(run, __doc__)

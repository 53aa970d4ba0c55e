"""A proxies task in a Dask worker: our workers' malloc thresholds vs Dask's default worker environment.

Record ``worker_malloc_env_vs_dask_default``: a local cluster of one spawned worker process (one thread), started
as ``rbnas run`` starts it (``robustbench_nas.pipelines.worker_env``: ``MALLOC_MMAP_THRESHOLD_`` 32 MiB,
``MALLOC_TRIM_THRESHOLD_`` 128 MiB) vs the same cluster with Dask's default ``pre-spawn-environ``
(``MALLOC_TRIM_THRESHOLD_=65536``, what the runner had before). Each worker computes all 16 proxies (fast engine,
the complete table's protocol: 64 CIFAR-10 training images of the shared file, seed 0, C=16, N=5) of the first
cells of the complete table's run order, one torch thread. Per side: the task thread's CPU seconds (user + system,
``RUSAGE_THREAD``), its system seconds and minor page faults, and wall seconds. ``ours_s`` / ``baseline_s``: task
thread CPU seconds per cell (``clock: thread_cpu``; wall in ``wall_*``). ``results_agree``: every value bit for
bit; ``same_work: true``. The two clusters run one after the other, each side twice (ABAB) to spread load changes.

``python -m benchmarks.bench_worker_env [--quick]`` (quick: 2 cells instead of 6). Needs the shared CIFAR-10 file.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.common import SHARED_DATA, bench_main, make_result, save_records, torch_threads

MALLOC_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _cells_task(uids: list[int], data_root: str) -> dict[str, Any]:
    """In the worker: every proxy of each cell, with the task thread's rusage around the work."""
    import resource
    import time
    from pathlib import Path

    import torch

    from robustbench_nas.pipelines.protocol import get_protocol
    from robustbench_nas.pipelines.stages import StageContext
    from robustbench_nas.proxies import compute_proxies
    from robustbench_nas.search_spaces import get_search_space

    torch.set_num_threads(1)
    protocol = get_protocol("nb201-proxies-all").replace(data_root=data_root)
    space = get_search_space("nb201")
    batches = []
    for uid in uids:
        ctx = StageContext(protocol=protocol, uid=uid, arch_str=space.arch_str(uid), seed=0,
                           store_path=Path("unused.zarr"), device=torch.device("cpu"))
        batches.append((ctx.arch_str, *ctx.images("proxies")))
    r0, t0 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    values = [{k: repr(float(v)) for k, v in compute_proxies(a, x, y, list(protocol.proxies), seed=0).items()}
              for a, x, y in batches]
    r1, t1 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    return {"values": values, "wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
            "minflt": r1.ru_minflt - r0.ru_minflt, "env": {k: os.environ.get(k) for k in MALLOC_KEYS}}


def _run_side(ours: bool, uids: list[int], data_root: str) -> dict[str, Any]:
    import dask
    from distributed import Client, LocalCluster

    from robustbench_nas.pipelines.worker_env import dask_default_config, pre_spawn_config

    for k in MALLOC_KEYS:  # an earlier nanny of this process left its values here; a set variable would win
        os.environ.pop(k, None)
    env_config = pre_spawn_config() if ours else dask_default_config()
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn", **env_config}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                         env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) as lc, Client(lc) as client:
        return client.submit(_cells_task, uids, data_root, pure=False).result()


def run(quick: bool = False) -> list[dict]:
    with torch_threads(1):  # the client's threads (the record's machine line); each task sets its own to 1
        return _run(quick)


def _run(quick: bool) -> list[dict]:
    from robustbench_nas.pipelines.worker_env import MALLOC_ENV
    from robustbench_nas.proxies.sample import shipped_order

    data = SHARED_DATA / "cifar10_test.npz"
    if not data.is_file():
        print(f"skipped worker_malloc_env_vs_dask_default: {data} not found (the table's images)")
        return []
    uids = shipped_order()[: 2 if quick else 6]
    sides: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for ours in (False, True, False, True):
        sides[ours].append(_run_side(ours, uids, str(data)))
    assert all(s["env"] == MALLOC_ENV for s in sides[True]), sides[True][0]["env"]
    assert all(s["env"]["MALLOC_TRIM_THRESHOLD_"] == "65536" for s in sides[False]), sides[False][0]["env"]
    agree = all(s["values"] == sides[True][0]["values"] for s in sides[True] + sides[False])

    def total(ours: bool, key: str) -> float:
        return sum(s[key] for s in sides[ours]) / (len(sides[ours]) * len(uids))

    cpu = {o: total(o, "user") + total(o, "sys") for o in (True, False)}
    rec = make_result(
        "worker_malloc_env_vs_dask_default", cpu[True], cpu[False], agree, same_work=True, kind="measured",
        unit="s/cell (task thread CPU, user + system)", clock="thread_cpu", cells=len(uids), n_images=64,
        engine="fast", device="cpu", data="cifar10_test", repeats=len(sides[True]), task_torch_threads=1,
        baseline="the same cluster and task with Dask's default worker environment (MALLOC_TRIM_THRESHOLD_=65536)",
        ours_env=MALLOC_ENV, sys_s_ours=round(total(True, "sys"), 3), sys_s_baseline=round(total(False, "sys"), 3),
        minflt_ours=round(total(True, "minflt")), minflt_baseline=round(total(False, "minflt")),
        wall_ours_s=round(total(True, "wall"), 3), wall_baseline_s=round(total(False, "wall"), 3),
        wall_ratio=round(total(False, "wall") / total(True, "wall"), 2),
        note=f"per cell: {total(True, 'minflt') / 1e6:.2f} M vs {total(False, 'minflt') / 1e6:.2f} M minor page "
             f"faults, {total(True, 'sys'):.2f} vs {total(False, 'sys'):.2f} s system time",
    )
    return save_records([rec], quick)


if __name__ == "__main__":
    bench_main(run, __doc__)

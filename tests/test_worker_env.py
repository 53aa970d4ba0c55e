"""Worker processes start with heap-keeping glibc malloc thresholds (robustbench_nas.pipelines.worker_env).

Truth: what the spawned worker process itself sees (its environment) and what the kernel counts for it (minor page
faults of a task thread that allocates and frees activation-sized tensors), against a worker started with Dask's own
default (``MALLOC_TRIM_THRESHOLD_=65536`` alone), where every such tensor is a fresh mmap.
"""

from __future__ import annotations

import pytest

from robustbench_nas.pipelines.runner import make_client
from robustbench_nas.pipelines.slurm import slurm_job_script
from robustbench_nas.pipelines.worker_env import MALLOC_ENV, THREAD_ENV, dask_default_config, export_line

@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dask's nanny writes its pre-spawn variables into the os.environ of the process that hosts it (here: pytest's),
    # and a set variable wins over the configuration: an earlier local cluster of this session would decide the test.
    for k in MALLOC_ENV:
        monkeypatch.delenv(k, raising=False)


def _worker_environment() -> dict[str, str | None]:
    import os

    return {k: os.environ.get(k) for k in (*MALLOC_ENV, *THREAD_ENV)}


def _page_faults_of_tensor_churn(n: int = 40, mb: int = 4) -> list[int]:
    """Minor page faults of this thread in each of ``n`` rounds of allocating, filling and freeing ``mb`` MiB."""
    import resource

    import torch

    faults = []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        t = torch.empty(mb * 2**20 // 4)
        t.fill_(1.0)
        del t
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    return faults


def test_local_workers_get_the_malloc_thresholds_and_one_thread_pools() -> None:
    with make_client("local", n_workers=1, dashboard_address=None) as client:
        env = client.submit(_worker_environment, pure=False).result()
    assert env == {**MALLOC_ENV, **THREAD_ENV}


def test_tensors_stay_in_the_heap_in_a_worker_and_not_with_dasks_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask

    with make_client("local", n_workers=1, dashboard_address=None) as client:
        ours = client.submit(_page_faults_of_tensor_churn, pure=False).result()
    for k in MALLOC_ENV:  # the nanny above left its values in this process's environment
        monkeypatch.delenv(k, raising=False)
    # the same worker with Dask's default environment (MALLOC_TRIM_THRESHOLD_=65536, no mmap threshold)
    with dask.config.set(dask_default_config()):
        from distributed import Client, LocalCluster

        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}), \
                LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
                Client(lc) as c:
            assert c.submit(_worker_environment, pure=False).result()["MALLOC_TRIM_THRESHOLD_"] == "65536"
            base = c.submit(_page_faults_of_tensor_churn, pure=False).result()
    # the first rounds grow the heap (faults in both); from then on a kept heap reuses its pages, a fresh mmap
    # faults its pages in again every round
    assert min(base[20:]) > 100, f"Dask's default should fault in every round: {base}"
    assert sum(ours[20:]) < 0.05 * sum(base[20:]), f"heap-kept tensors should not fault again: {ours} vs {base}"


def test_slurm_jobs_export_the_same_environment() -> None:
    script = slurm_job_script(None)
    assert export_line() in script
    for k, v in {**THREAD_ENV, **MALLOC_ENV}.items():
        assert f"{k}={v}" in export_line()

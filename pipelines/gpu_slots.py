"""Which GPU each worker process uses: pinned from the devices this process itself sees, several workers per GPU
as configured, never all on GPU 0.

Why "the devices this process sees": inside a SLURM job with device cgroups (``ConstrainDevices=yes``) the node's
global GPU ids (``SLURM_JOB_GPUS``, ``SLURM_STEP_GPUS``) do not exist: a job holding GPUs 2 and 3 of its node sees
them as 0 and 1, and ``CUDA_VISIBLE_DEVICES=3`` hides every GPU from the process (torch then falls back to the
CPU). What CUDA itself honours is ``CUDA_VISIBLE_DEVICES`` (SLURM sets it to ids valid *inside* the job) or, when it
is unset, the devices the CUDA driver enumerates (``torch.cuda.device_count()``, which inside a cgroup are exactly
the job's). So the job's GPUs are the entries of ``CUDA_VISIBLE_DEVICES`` (passed on as they are: indices, UUIDs
or MIG ids) or ``0 .. count-1``, and nothing else.

Two users:

* the SLURM worker launcher (:mod:`.slurm_launcher`) gives worker ``i`` of a job the GPU
  :func:`gpu_of_worker` names and starts it with ``CUDA_VISIBLE_DEVICES`` set to that one GPU;
* a local cluster (``rbnas run --cluster local``) cannot give each spawned worker its own environment, so each
  worker picks its device by its name (LocalCluster names them ``0, 1, ...``): :func:`local_worker_device`.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

log = logging.getLogger(__name__)

#: Value SLURM puts into CUDA_VISIBLE_DEVICES when its gres has no device files: it names no device.
_NO_DEV_FILES = "NoDevFiles"

#: Largest number of workers sharing one GPU: beyond 4 the per-worker CUDA contexts (~0.5 GiB each) and the
#: interleaved kernels cost more than the small cells gain (issue 29 asks for 2-4); 8 leaves room for tests.
MAX_WORKERS_PER_GPU = 8


def torch_device_count() -> int:
    """``torch.cuda.device_count()`` (0 without CUDA); the default device counter of this module."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def check_workers_per_gpu(value: object) -> int:
    """``value`` as a number of workers per GPU, or ``ValueError`` naming it (an integer in 1 .. 8)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WORKERS_PER_GPU:
        raise ValueError(f"workers_per_gpu must be an integer from 1 to {MAX_WORKERS_PER_GPU}, got {value!r}")
    return value


def visible_gpus(env: Mapping[str, str], device_count: Callable[[], int] = torch_device_count) -> list[str]:
    """The GPUs this process may use, as values for a child's ``CUDA_VISIBLE_DEVICES``.

    ``CUDA_VISIBLE_DEVICES`` when set (an empty value: no GPU), else ``0 .. device_count()-1``; never
    ``SLURM_JOB_GPUS`` / ``SLURM_STEP_GPUS`` (global ids, wrong inside a device cgroup; module docstring).
    SLURM's ``NoDevFiles`` counts as unset.

    Example:
        >>> visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3", "SLURM_JOB_GPUS": "6,7"})
        ['2', '3']
        >>> visible_gpus({"SLURM_JOB_GPUS": "6,7"}, device_count=lambda: 2)
        ['0', '1']
    """
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None and value.strip() != _NO_DEV_FILES:
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(i) for i in range(device_count())]


def job_gpus(env: Mapping[str, str], gpus: int, device_count: Callable[[], int] = torch_device_count) -> list[str]:
    """The ``gpus`` GPUs of this job, from what the process sees (:func:`visible_gpus`).

    Raises:
        ValueError: the process sees fewer than ``gpus`` GPUs, or ``CUDA_VISIBLE_DEVICES`` is unset and the driver
            shows more GPUs than the job asked for (no cgroup: the node's GPUs, and which are this job's is
            unknown; pinning ``0 .. gpus-1`` could take another job's GPUs).
    """
    seen = visible_gpus(env, device_count)
    unset = env.get("CUDA_VISIBLE_DEVICES", _NO_DEV_FILES).strip() == _NO_DEV_FILES
    if len(seen) < gpus:
        how = ("CUDA_VISIBLE_DEVICES is unset and torch.cuda.device_count() = "
               f"{len(seen)}" if unset else f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r}")
        raise ValueError(f"the job asked for {gpus} GPU(s) but this process sees {len(seen)} ({how}); "
                         "check the job's --gres and the node's GPUs")
    if unset and len(seen) > gpus:
        raise ValueError(
            f"the job asked for {gpus} GPU(s); CUDA_VISIBLE_DEVICES is unset and this process sees all {len(seen)} "
            "GPUs of the node (no device cgroup), so which are this job's is unknown. Have SLURM set "
            "CUDA_VISIBLE_DEVICES (gres.conf with File=) or export it in job-script-prologue"
        )
    return seen[:gpus]


def gpu_of_worker(i: int, gpus: int, workers_per_gpu: int) -> int:
    """Position (in the job's GPU list) of the GPU that worker ``i`` of ``gpus * workers_per_gpu`` uses.

    Round robin, so that workers ``0 .. gpus-1`` are on distinct GPUs (a job that loses its last workers still
    covers every GPU) and each GPU gets exactly ``workers_per_gpu`` workers.

    Example:
        >>> [gpu_of_worker(i, gpus=2, workers_per_gpu=3) for i in range(6)]
        [0, 1, 0, 1, 0, 1]
    """
    check_workers_per_gpu(workers_per_gpu)
    if gpus < 1 or not 0 <= i < gpus * workers_per_gpu:
        raise ValueError(f"worker {i} does not exist for {gpus} GPU(s) x {workers_per_gpu} worker(s) per GPU")
    return i % gpus


def local_worker_device(device: str, worker_name: object, device_count: Callable[[], int] = torch_device_count,
                        cuda_available: bool | None = None) -> str:
    """The torch device name a worker of a local cluster uses for the requested ``device``.

    ``"auto"`` (with CUDA) and a bare ``"cuda"`` on a process that sees ``n > 1`` GPUs: local worker ``k``
    (LocalCluster's names ``0, 1, ...``) uses ``cuda:(k mod n)``, so ``n * workers_per_gpu`` workers put
    ``workers_per_gpu`` on each GPU and none is left idle. An explicit index (``cuda:1``), the CPU, a single GPU
    or a worker that is not a local cluster's (not a number: e.g. a SLURM worker, already pinned to one GPU)
    keep ``device`` as asked (``"auto"`` resolved).

    Example:
        >>> local_worker_device("cuda", 3, device_count=lambda: 2, cuda_available=True)
        'cuda:1'
        >>> local_worker_device("cuda:0", 3, device_count=lambda: 2, cuda_available=True)
        'cuda:0'
    """
    if cuda_available is None:
        cuda_available = device_count() > 0
    if device in ("auto", "", None):
        device = "cuda" if cuda_available else "cpu"
    if device != "cuda" or not cuda_available:
        return device
    n = device_count()
    name = str(worker_name)
    if n > 1 and name.isdigit():
        return f"cuda:{int(name) % n}"
    if n > 1:
        log.warning("worker %r sees %d GPUs and is not a local cluster's numbered worker: it uses the current "
                    "device, cuda:0 (pin it with CUDA_VISIBLE_DEVICES)", name, n)
    return "cuda"


__all__ = ["MAX_WORKERS_PER_GPU", "check_workers_per_gpu", "gpu_of_worker", "job_gpus", "local_worker_device",
           "torch_device_count", "visible_gpus"]

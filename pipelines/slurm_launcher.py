"""The worker launcher, run inside every SLURM job as ``python -m robustbench_nas.pipelines.slurm <scheduler> --name
NAME ...`` (dask-jobqueue's ``worker_command``, :data:`WORKER_COMMAND`).

It starts ``workers_per_gpu`` ``dask worker`` processes per GPU of the job (one by default), each with
``CUDA_VISIBLE_DEVICES`` set to its own GPU and ``--resources GPU=1``, and names them ``NAME-0``, ``NAME-1``, ...
exactly as dask-jobqueue expects for a job with several worker processes. The GPUs are the ones this process sees
(:func:`.gpu_slots.job_gpus`: ``CUDA_VISIBLE_DEVICES`` or the driver's count, never the global ids of
``SLURM_JOB_GPUS``, which do not exist inside a device cgroup). Why our own launcher: ``dask worker --nworkers N``
starts N processes that all see every GPU of the job; the pipeline's tasks would then all run on GPU 0. dask-cuda
solves this with its own worker command; we do the same in ~60 lines instead of adding a CUDA-only dependency.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .gpu_slots import gpu_of_worker, job_gpus, torch_device_count, visible_gpus

logger = logging.getLogger("robustbench_nas.pipelines.slurm")  # one logger for the whole SLURM back end

#: Module run inside each SLURM job (``python -m robustbench_nas.pipelines.slurm``, whose ``__main__`` is
#: :func:`launcher_main`); kept as the documented entry point so job scripts and site notes stay valid.
WORKER_COMMAND = "robustbench_nas.pipelines.slurm"


@dataclass(frozen=True)
class WorkerProcess:
    """One ``dask worker`` process the launcher starts: its command line and its GPU (``None``: not pinned)."""

    argv: tuple[str, ...]
    gpu: str | None
    name: str


def plan_worker_processes(argv: Sequence[str], env: Mapping[str, str],
                          device_count: Callable[[], int] = torch_device_count) -> list[WorkerProcess]:
    """The worker processes to start for the launcher arguments ``argv`` in the job environment ``env``.

    ``argv`` is what dask-jobqueue passes to its worker command (``<scheduler> --name NAME --nthreads T
    --memory-limit M ...``) plus the launcher's own ``--nworkers N --gpus G [--workers-per-gpu K]``. With
    ``G > 0`` the job's GPUs are those this process sees (:func:`.gpu_slots.job_gpus`; ``device_count`` counts
    them when ``CUDA_VISIBLE_DEVICES`` is unset), ``N`` must be ``G * K``, and worker ``i`` gets GPU
    ``i mod G`` (:func:`.gpu_slots.gpu_of_worker`); with several workers they are named ``NAME-0 ... NAME-(N-1)``
    (dask-jobqueue's convention for a job's worker group).

    Raises:
        ValueError: the job sees fewer GPUs than it asked for, ``N != G * K``, or the arguments are malformed.
    """
    parser = argparse.ArgumentParser(prog="python -m robustbench_nas.pipelines.slurm", add_help=False)
    parser.add_argument("scheduler")
    parser.add_argument("--name", required=True)
    parser.add_argument("--nworkers", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--workers-per-gpu", type=int, default=1)
    ns, rest = parser.parse_known_args(list(argv))
    if ns.nworkers < 1:
        raise ValueError(f"--nworkers must be >= 1, got {ns.nworkers}")
    gpus: list[str | None] = [None] * ns.nworkers
    if ns.gpus > 0:
        if ns.nworkers != ns.gpus * ns.workers_per_gpu:
            raise ValueError(f"--nworkers ({ns.nworkers}) must be --gpus ({ns.gpus}) x --workers-per-gpu "
                             f"({ns.workers_per_gpu})")
        mine = job_gpus(env, ns.gpus, device_count)
        gpus = [mine[gpu_of_worker(i, ns.gpus, ns.workers_per_gpu)] for i in range(ns.nworkers)]
    procs = []
    for i in range(ns.nworkers):
        name = f"{ns.name}-{i}" if ns.nworkers > 1 else ns.name
        cmd = (sys.executable, "-m", "distributed.cli.dask_worker", ns.scheduler, "--name", name, *rest)
        procs.append(WorkerProcess(argv=cmd, gpu=gpus[i], name=name))
    return procs


def launcher_main(argv: Sequence[str] | None = None) -> int:
    """Start the planned worker processes, forward SIGTERM/SIGINT to them, and wait for all of them.

    Returns the largest exit code of the workers (0 when all retired normally).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s rbnas-slurm-launcher: %(message)s")
    try:
        plan = plan_worker_processes(sys.argv[1:] if argv is None else argv, os.environ)
    except (ValueError, SystemExit) as e:
        logger.error("cannot start workers: %s", e)
        return 2
    children: list[subprocess.Popen] = []
    for wp in plan:
        env = dict(os.environ)
        if wp.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = wp.gpu
        logger.info("starting worker %s on GPU %s (job %s)", wp.name, wp.gpu, os.environ.get("SLURM_JOB_ID", "?"))
        children.append(subprocess.Popen(list(wp.argv), env=env))

    def forward(signum: int, _frame: Any) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    logger.info("workers exited with %s", codes)
    return max((abs(c) for c in codes), default=0)


__all__ = ["WORKER_COMMAND", "WorkerProcess", "launcher_main", "plan_worker_processes", "visible_gpus"]

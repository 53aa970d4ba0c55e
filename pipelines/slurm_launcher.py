"""The worker launcher, run inside every SLURM job as ``python -m robustbench_nas.pipelines.slurm <scheduler> --name
NAME ...`` (dask-jobqueue's ``worker_command``, :data:`WORKER_COMMAND`).

It starts one ``dask worker`` process per GPU of the job, each with ``CUDA_VISIBLE_DEVICES`` set to its own GPU and
``--resources GPU=1``, and names them ``NAME-0``, ``NAME-1``, ... exactly as dask-jobqueue expects for a job with
several worker processes. Why our own launcher: ``dask worker --nworkers N`` starts N processes that all see every
GPU of the job; the pipeline's tasks would then all run on GPU 0. dask-cuda solves this with its own worker command;
we do the same in ~60 lines instead of adding a CUDA-only dependency.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """GPU ids SLURM gave this job: ``CUDA_VISIBLE_DEVICES`` (set for ``--gres=gpu``), else ``SLURM_JOB_GPUS``."""
    for key in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = env.get(key, "").strip()
        if value and value != "NoDevFiles":
            return [v.strip() for v in value.split(",") if v.strip()]
    return []


def plan_worker_processes(argv: Sequence[str], env: Mapping[str, str]) -> list[WorkerProcess]:
    """The worker processes to start for the launcher arguments ``argv`` in the job environment ``env``.

    ``argv`` is what dask-jobqueue passes to its worker command (``<scheduler> --name NAME --nthreads T
    --memory-limit M ...``) plus the launcher's own ``--nworkers N --gpus G``. With ``G > 0`` worker ``i`` gets the
    ``i``-th GPU the job sees; with several workers they are named ``NAME-0 ... NAME-(N-1)`` (dask-jobqueue's
    convention for a job's worker group).

    Raises:
        ValueError: the job sees fewer GPUs than workers, or the arguments are malformed.
    """
    parser = argparse.ArgumentParser(prog="python -m robustbench_nas.pipelines.slurm", add_help=False)
    parser.add_argument("scheduler")
    parser.add_argument("--name", required=True)
    parser.add_argument("--nworkers", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=0)
    ns, rest = parser.parse_known_args(list(argv))
    if ns.nworkers < 1:
        raise ValueError(f"--nworkers must be >= 1, got {ns.nworkers}")
    gpus: list[str | None] = [None] * ns.nworkers
    if ns.gpus > 0:
        seen = visible_gpus(env)
        if not seen:
            # No GPU list from SLURM (gres without File=, or device cgroups only): the job's GPUs are 0..G-1.
            logger.warning("job asked for %d GPU(s) but SLURM set no CUDA_VISIBLE_DEVICES; assuming 0..%d",
                           ns.gpus, ns.gpus - 1)
            seen = [str(i) for i in range(ns.gpus)]
        if len(seen) < ns.nworkers:
            raise ValueError(
                f"job sees {len(seen)} GPU(s) ({','.join(seen)}) but must start {ns.nworkers} workers, one per GPU"
            )
        gpus = list(seen[: ns.nworkers])
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

"""SLURM back end of the pipeline: a ``dask_jobqueue.SLURMCluster`` with ``workers_per_gpu`` Dask workers per GPU.

This module is the back end's one public name and the module every SLURM job runs
(``python -m robustbench_nas.pipelines.slurm``, :data:`WORKER_COMMAND`); each job of the back end lives in its own
module, re-exported here:

* :mod:`.slurm_config`: :class:`SlurmConfig` / :func:`load_slurm_config`, the typed configuration (partition,
  account, QOS, walltime, memory, GPUs per job, workers per GPU, cores per worker, worker lifetime, adaptivity)
  read from a YAML file
  (``slurm/jobqueue.yaml`` is the documented template) and overridden by keyword arguments; walltime and duration
  parsing.
* :mod:`.slurm_jobs`: the ``SLURMCluster`` arguments of a config and the ``sbatch`` script they make.
* :mod:`.slurm_cluster`: :func:`make_slurm_cluster`, what ``rbnas run --cluster slurm`` calls: builds the
  cluster, asks for ``jobs`` jobs (fixed, or adaptive up to ``jobs``).
* :mod:`.slurm_respawn`: :class:`JobRespawner`, which replaces jobs whose workers all vanished (walltime,
  ``scancel``, preemption, node failure).
* :mod:`.tls_files`: the per-run TLS credentials the worker jobs read from the shared file system.
* :mod:`.sbatch_errors`: ``sbatch --test-only`` before anything is queued, and hints for SLURM's messages.
* :mod:`.squeue`: :func:`wait_for_first_worker`, which watches the jobs with ``squeue`` / ``scontrol``.
* :mod:`.slurm_launcher`: the worker launcher run inside every job: ``workers_per_gpu`` ``dask worker`` processes
  per GPU, each pinned with ``CUDA_VISIBLE_DEVICES`` to a GPU the job itself sees (:mod:`.gpu_slots`, cgroup-safe),
  named as dask-jobqueue expects.

Dependencies point one way: the runner imports this back end (lazily, for ``--cluster slurm``), never the reverse
(the dashboard defaults both use live in :mod:`.dashboard`).
"""

from __future__ import annotations

import sys

from .sbatch_errors import SlurmStartError, check_submission, slurm_hint
from .slurm_cluster import make_slurm_cluster
from .slurm_config import SlurmConfig, load_slurm_config, parse_duration, parse_walltime
from .slurm_jobs import slurm_cluster_kwargs, slurm_job_script, slurm_job_script_for
from .slurm_launcher import WORKER_COMMAND, WorkerProcess, launcher_main, plan_worker_processes, visible_gpus
from .slurm_respawn import JobRespawner
from .squeue import wait_for_first_worker
from .tls_files import remove_credentials, write_credentials

__all__ = [
    "WORKER_COMMAND", "JobRespawner", "SlurmConfig", "SlurmStartError", "WorkerProcess", "check_submission",
    "launcher_main", "load_slurm_config", "make_slurm_cluster", "parse_duration", "parse_walltime",
    "plan_worker_processes", "remove_credentials", "slurm_cluster_kwargs", "slurm_hint", "slurm_job_script",
    "slurm_job_script_for", "visible_gpus", "wait_for_first_worker", "write_credentials",
]

if __name__ == "__main__":
    sys.exit(launcher_main())

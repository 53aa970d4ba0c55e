"""What one SLURM worker job is: the ``dask_jobqueue.SLURMCluster`` arguments of a :class:`.slurm_config.SlurmConfig`
and the ``sbatch`` script they make (pure: nothing is submitted)."""

from __future__ import annotations

import os
from typing import Any

from .slurm_config import SlurmConfig, load_slurm_config
from .slurm_launcher import WORKER_COMMAND
from .worker_env import export_line

def _seconds_arg(s: float) -> str:
    """Seconds as a ``dask worker`` duration argument (``"3600s"``)."""
    return f"{int(round(s))}s"


def slurm_cluster_kwargs(cfg: SlurmConfig) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for ``cfg`` (pure: no job is submitted).

    Example:
        >>> kw = slurm_cluster_kwargs(load_slurm_config(None, gpus=2, cores=8, walltime="01:00:00"))
        >>> kw["processes"], kw["worker_command"], "--gres=gpu:2" in kw["job_extra_directives"]
        (2, 'robustbench_nas.pipelines.slurm', True)
    """
    directives = list(cfg.job_extra_directives)
    if cfg.gres():
        directives.append(f"--gres={cfg.gres()}")
    if cfg.qos:
        directives.append(f"--qos={cfg.qos}")
    worker_args = ["--nworkers", str(cfg.workers), "--gpus", str(cfg.gpus)]
    if cfg.gpus > 0 and cfg.workers_per_gpu > 1:
        worker_args += ["--workers-per-gpu", str(cfg.workers_per_gpu)]
    if cfg.resources:
        worker_args += ["--resources", ",".join(f"{k}={v:g}" for k, v in sorted(cfg.resources.items()))]
    if cfg.lifetime_seconds is not None:
        worker_args += ["--lifetime", _seconds_arg(cfg.lifetime_seconds)]
        if cfg.lifetime_stagger_seconds:
            worker_args += ["--lifetime-stagger", _seconds_arg(cfg.lifetime_stagger_seconds)]
    worker_args += list(cfg.worker_extra_args)
    kwargs: dict[str, Any] = dict(
        queue=cfg.partition,
        account=cfg.account,
        walltime=cfg.walltime,
        cores=cfg.job_cores,
        memory=cfg.memory,
        processes=cfg.workers,
        job_name=cfg.job_name,
        worker_command=WORKER_COMMAND,
        worker_extra_args=worker_args,
        job_extra_directives=directives,
        # one thread per BLAS/OpenMP pool in every worker (tasks set their torch threads themselves), and malloc
        # thresholds that keep tensors in the heap (worker_env: Dask's default makes each one a fresh mmap)
        job_script_prologue=[*cfg.job_script_prologue, export_line()],
        death_timeout=cfg.death_timeout,
        scheduler_options=dict(cfg.scheduler_options),
    )
    for name in ("log_directory", "local_directory", "interface", "python"):
        value = getattr(cfg, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


def slurm_job_script(config: str | os.PathLike | None = None, **overrides: Any) -> str:
    """The ``sbatch`` script one worker job would get, without starting a scheduler or submitting anything.

    The scheduler address in it is only an example (the real one is known only once ``rbnas run`` starts).

    Example:
        >>> print(slurm_job_script("slurm/jobqueue.yaml", account="proj"))  # doctest: +SKIP
    """
    # SLURMJob creates its log directory; a dry run must not, so it gets a throw-away one, renamed after.
    return slurm_job_script_for(load_slurm_config(config, **overrides))


def slurm_job_script_for(cfg: SlurmConfig) -> str:
    """The job script of ``cfg`` (an example scheduler address), as :func:`slurm_job_script` writes it."""
    import tempfile

    from dask_jobqueue.slurm import SLURMJob

    kwargs = slurm_cluster_kwargs(cfg)
    kwargs.pop("scheduler_options")
    log_dir = kwargs.pop("log_directory", None)
    with tempfile.TemporaryDirectory() as tmp:
        if log_dir is not None:
            kwargs["log_directory"] = tmp
        script = SLURMJob(scheduler="tcp://SCHEDULER:8786", name=f"{kwargs['job_name']}-0", **kwargs).job_script()
    return script.replace(tmp, str(log_dir)) if log_dir is not None else script


__all__ = ["slurm_cluster_kwargs", "slurm_job_script", "slurm_job_script_for"]

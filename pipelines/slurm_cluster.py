"""The cluster factory: a ``dask_jobqueue.SLURMCluster`` of GPU worker jobs for ``rbnas run --cluster slurm``,
checked before anything is queued, speaking TLS with per-run credentials, its lost jobs replaced."""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

from .dashboard import DEFAULT_DASHBOARD, check_dashboard_address
from .sbatch_errors import check_submission, tracked_job_class
from .slurm_config import load_slurm_config
from .slurm_jobs import slurm_cluster_kwargs
from .slurm_respawn import JobRespawner, start_on_loop
from .tls_files import remove_credentials, write_credentials

logger = logging.getLogger("robustbench_nas.pipelines.slurm")  # one logger for the whole SLURM back end

#: "not given": take the dashboard address from the config
_FROM_CONFIG: Any = object()


def make_slurm_cluster(config: str | os.PathLike | None, jobs: int, *, dashboard_address: Any = _FROM_CONFIG,
                       insecure: bool = False, credentials_dir: str | os.PathLike | None = None,
                       **overrides: Any) -> Any:
    """Start a ``dask_jobqueue.SLURMCluster`` of GPU worker jobs for ``rbnas run --cluster slurm``.

    The scheduler runs in the calling process; ``jobs`` jobs are submitted with ``sbatch`` (or, with
    ``adapt: true``, between ``minimum_jobs`` and ``jobs`` as the load requires). Each job starts
    ``workers_per_gpu`` Dask workers per GPU, pinned with ``CUDA_VISIBLE_DEVICES`` to a GPU the job sees
    (:mod:`.gpu_slots`) and offering ``resources={"GPU": 1}``. Workers retire before the
    walltime and lost jobs are replaced (see :class:`JobRespawner`).

    Security: the scheduler must listen where compute nodes reach it, so by default it speaks TLS only, with a
    certificate and key made for this run (:func:`write_credentials`: files readable by the owner only, in a
    0700 folder on the shared file system, removed when the cluster closes). The worker jobs get the *paths* on
    their command line (``--tls-ca-file`` ...), never the key itself, so ``squeue``/``ps`` show no secret; a
    client or worker without the key is refused by the TLS handshake. ``insecure=True``: plain TCP.

    Before any job is queued, the job script is checked with ``sbatch --test-only``: a job SLURM must refuse
    (a GPU request on a CPU-only partition, an unknown partition or account) fails here, with sbatch's message
    and a hint (:class:`SlurmStartError`). See :func:`wait_for_first_worker` for jobs that fail later.

    Arguments:
        config: YAML file with the :class:`SlurmConfig` keys (``slurm/jobqueue.yaml`` is the template), or
            ``None`` for the defaults.
        jobs: number of SLURM jobs (the maximum when adaptive); the cluster has ``jobs * workers_per_job``
            workers when full.
        dashboard_address: ``HOST:PORT`` of the scheduler's dashboard, ``None`` for none; default: the config's
            ``scheduler-options: dashboard_address`` (``:PORT`` meaning loopback), else ``127.0.0.1:0``.
        insecure: no TLS.
        credentials_dir: shared folder for the credentials folder (default: ``credentials-directory`` of the
            config, else ``~/.rbnas/credentials``).
        **overrides: :class:`SlurmConfig` fields that win over the file (``None`` values are ignored).

    Returns:
        The running ``SLURMCluster``; use it as ``Client(cluster, security=cluster.security)`` and close it (or use
        ``with``) when done, which cancels its jobs. ``cluster.rbnas_config`` holds the :class:`SlurmConfig` used,
        ``cluster.rbnas_respawner`` the :class:`JobRespawner` (``None`` when ``respawn`` is off) and
        ``cluster.rbnas_submit_errors`` the messages of refused submissions.

    Raises:
        ValueError: ``jobs < 1`` or an invalid configuration (the message names the key).
        FileNotFoundError: the config file does not exist.
        RuntimeError: ``sbatch`` is not on ``PATH``; :class:`SlurmStartError`: SLURM refuses the job.

    Example:
        >>> from dask.distributed import Client
        >>> with make_slurm_cluster("slurm/jobqueue.yaml", jobs=4, partition="gpu") as cluster:  # doctest: +SKIP
        ...     client = Client(cluster, security=cluster.security)
        ...     client.submit(work, resources={"GPU": 1}).result()
    """
    import shutil

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    cfg = load_slurm_config(config, **overrides)
    if cfg.adapt and cfg.minimum_jobs is not None and cfg.minimum_jobs > jobs:
        raise ValueError(f"minimum_jobs ({cfg.minimum_jobs}) is larger than jobs ({jobs})")
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found on PATH: --cluster slurm must run on a SLURM login or compute node")
    if dashboard_address is _FROM_CONFIG:
        dashboard_address = cfg.scheduler_options.get("dashboard_address", DEFAULT_DASHBOARD)
    dash = check_dashboard_address(dashboard_address)
    check_submission(cfg)  # fail before a scheduler starts or a job is queued
    from dask_jobqueue import SLURMCluster

    kwargs = slurm_cluster_kwargs(cfg)
    # the dashboard (and, without one, the scheduler's /health page) on loopback unless asked otherwise
    kwargs["scheduler_options"] = {**kwargs["scheduler_options"], "dashboard_address": dash or DEFAULT_DASHBOARD,
                                   "dashboard": dash is not None}
    folder: Path | None = None
    if not insecure:
        base = credentials_dir if cfg.credentials_directory is None else cfg.credentials_directory
        security, folder = write_credentials(base if base is not None else Path.home() / ".rbnas" / "credentials")
        kwargs.update(security=security, protocol="tls://")
    errors: list[str] = []
    try:
        cluster = SLURMCluster(job_cls=tracked_job_class(errors), **kwargs)
    except BaseException:
        if folder is not None:
            remove_credentials(folder)
        raise
    cluster.rbnas_credentials = folder
    cluster.rbnas_submit_errors = errors
    if folder is not None:
        weakref.finalize(cluster, remove_credentials, folder)  # also when the run dies with an exception
    _close = cluster.close

    def close(*args: Any, **kw: Any) -> Any:
        from distributed.core import Status

        try:
            # jobs sbatch refused never started: SpecCluster's close would trip over them (and hide the reason)
            for name, job in list(cluster.workers.items()):
                if getattr(job, "status", None) == Status.created and not getattr(job, "job_id", None):
                    cluster.workers.pop(name, None)
                    cluster.worker_spec.pop(name, None)
            return _close(*args, **kw)
        finally:
            if folder is not None:
                remove_credentials(folder)

    cluster.close = close
    try:
        cluster.scheduler.allowed_failures = cfg.allowed_failures  # the scheduler runs in this process
        logger.info("SLURM worker job script:\n%s", cluster.job_script())
        if cfg.adapt:
            cluster.adapt(minimum_jobs=cfg.minimum_jobs if cfg.minimum_jobs is not None else 1, maximum_jobs=jobs)
        else:
            cluster.scale(jobs=jobs)
        cluster.rbnas_config = cfg
        cluster.rbnas_respawner = None
        if cfg.respawn:
            cluster.rbnas_respawner = JobRespawner(cluster, grace_s=cfg.respawn_grace_s)
            cluster.sync(start_on_loop, cluster.rbnas_respawner)
    except BaseException:
        cluster.close()
        raise
    return cluster


__all__ = ["make_slurm_cluster"]

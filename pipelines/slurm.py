"""SLURM back end of the pipeline: a ``dask_jobqueue.SLURMCluster`` with one Dask worker per GPU.

Three pieces live here, each small:

* :class:`SlurmConfig` / :func:`load_slurm_config`: the typed configuration (partition, account, QOS, walltime,
  memory, GPUs per job, worker lifetime, adaptivity), read from a YAML file (``slurm/jobqueue.yaml`` is the
  documented template) and overridden by keyword arguments.
* :func:`make_slurm_cluster`: builds the ``SLURMCluster``, asks for ``jobs`` jobs (fixed, or adaptive up to
  ``jobs``) and attaches a :class:`JobRespawner` that replaces jobs whose workers all vanished (walltime,
  ``scancel``, preemption, node failure). This is what ``rbnas run --cluster slurm`` calls.
* The worker launcher, run inside every SLURM job as ``python -m robustbench_nas.pipelines.slurm <scheduler> --name NAME ...``
  (dask-jobqueue's ``worker_command``): it starts one ``dask worker`` process per GPU of the job, each with
  ``CUDA_VISIBLE_DEVICES`` set to its own GPU and ``--resources GPU=1``, and names them ``NAME-0``, ``NAME-1``,
  ... exactly as dask-jobqueue expects for a job with several worker processes.

Why our own launcher: ``dask worker --nworkers N`` starts N processes that all see every GPU of the job; the
pipeline's tasks would then all run on GPU 0. dask-cuda solves this with its own worker command; we do the same
in ~60 lines instead of adding a CUDA-only dependency.

Why the respawner: dask-jobqueue does not resubmit a job that ended (issues dask/dask-jobqueue#122, #611; for
jobs with several worker processes the adaptive path never notices because worker names carry a ``-i``
suffix). Workers retire themselves before the walltime (``--lifetime`` with ``--lifetime-stagger``, so they do
not all leave at once); the respawner then submits a fresh job under the same name, so a run longer than the
walltime keeps its workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger(__name__)

#: Module run inside each SLURM job (``python -m robustbench_nas.pipelines.slurm``); see :func:`launcher_main`.
WORKER_COMMAND = "robustbench_nas.pipelines.slurm"

#: Keys of dask-jobqueue's own ``jobqueue: slurm:`` section that mean the same here (dask name -> our field).
_JOBQUEUE_ALIASES = {
    "queue": "partition",
    "name": "job_name",
}


@dataclass
class SlurmConfig:
    """Where and how the SLURM worker jobs run. Every value is per job unless it says otherwise.

    Arguments:
        partition: SLURM partition (``#SBATCH -p``); ``None`` uses the site default. Alias: ``queue``.
        account: account to charge (``#SBATCH -A``).
        qos: quality of service (``#SBATCH --qos``).
        walltime: job time limit in SLURM syntax (``MM``, ``HH:MM:SS``, ``D-HH:MM``...; ``#SBATCH -t``).
        gpus: GPUs per job (``#SBATCH --gres=gpu[:type]:N``); one Dask worker process per GPU. ``0`` asks for
            no GPU (CPU partitions and tests); then ``workers_per_job`` workers run per job.
        gres_type: GPU type for the gres request, e.g. ``"a100"`` gives ``--gres=gpu:a100:N``.
        workers_per_job: worker processes per job; must equal ``gpus`` when ``gpus > 0`` (``None``: that).
        cores: CPU cores per job (``--cpus-per-task``), split evenly into threads of the workers.
        memory: memory per job (``--mem``), split evenly into the workers' memory limits, e.g. ``"32GB"``.
        lifetime: how long a worker lives before it retires gracefully (Dask duration such as ``"3h50m"`` or
            ``"600s"``), so that it leaves before SLURM kills it at the walltime. ``"auto"``: 90 % of
            ``walltime``; ``None`` or ``"off"``: workers never retire on their own.
        lifetime_stagger: random +/- spread of ``lifetime`` per worker so that workers do not all retire at once.
            ``"auto"``: 5 % of ``walltime``; ``None`` or ``"off"``: no stagger.
        adapt: scale adaptively between ``minimum_jobs`` and ``jobs`` instead of holding ``jobs`` jobs.
        minimum_jobs: lower bound for ``adapt`` (``None``: 1).
        respawn: replace a job whose workers have all left (walltime, ``scancel``, preemption) by a new job.
        respawn_grace_s: seconds a job's workers must have been gone before it is replaced; covers a nanny
            restarting a crashed worker.
        allowed_failures: how many times a unit may be on a worker that disappears before Dask gives up on it
            (``KilledWorker``; Dask's default is 3). A worker retiring at its ``lifetime`` with no other worker
            to hand its results to counts as such a disappearance for every unit queued on it, so a long run on
            few GPUs needs more than Dask's default. Errors raised by a stage are not affected (the pipeline
            retries those itself).
        resources: Dask worker resources of every worker. The pipeline submits GPU tasks with
            ``resources={"GPU": 1}``, so each worker runs one GPU task at a time.
        job_name: SLURM job name (``#SBATCH -J``).
        log_directory: where the jobs' stdout/stderr go (``None``: the submission directory).
        local_directory: worker scratch space, e.g. ``"$TMPDIR"`` (expanded inside the job).
        interface: network interface of scheduler and workers (e.g. ``"ib0"``).
        python: Python executable inside the jobs (``None``: the one running the client).
        death_timeout: seconds a worker waits for an unreachable scheduler before it exits.
        job_script_prologue: shell lines run before the worker starts (``module load``, ``source venv``...).
        job_extra_directives: more ``#SBATCH`` options, e.g. ``["--constraint=a100", "--exclusive"]``.
        worker_extra_args: more ``dask worker`` options.
        scheduler_options: options of the Dask scheduler that runs in the client process. Its dashboard is set
            by ``rbnas run --dashboard-address`` (loopback by default), not here.
        start_timeout: seconds ``rbnas run`` waits for the first worker to connect before it ends the run with
            the jobs' state and reason (a refused submission or a job dying at start ends it at once); ``None``:
            wait as long as the queue takes (busy sites), still ending at once on refused or dying jobs.
        credentials_directory: shared folder (seen by every node) under which each run makes its owner-only
            folder of TLS credentials; ``None``: the folder of the store.

    Example:
        >>> cfg = load_slurm_config(None, partition="gpu", gpus=2, walltime="02:00:00")
        >>> cfg.workers, cfg.lifetime_seconds
        (2, 6480.0)
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    walltime: str = "04:00:00"
    gpus: int = 1
    gres_type: str | None = None
    workers_per_job: int | None = None
    cores: int = 4
    memory: str = "16GB"
    lifetime: str | None = "auto"
    lifetime_stagger: str | None = "auto"
    adapt: bool = False
    minimum_jobs: int | None = None
    respawn: bool = True
    respawn_grace_s: float = 30.0
    allowed_failures: int = 20
    resources: dict[str, float] = field(default_factory=lambda: {"GPU": 1})
    job_name: str = "rbnas-worker"
    log_directory: str | None = None
    local_directory: str | None = None
    interface: str | None = None
    python: str | None = None
    death_timeout: float = 60.0
    job_script_prologue: list[str] = field(default_factory=list)
    job_extra_directives: list[str] = field(default_factory=list)
    worker_extra_args: list[str] = field(default_factory=list)
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    start_timeout: float | None = 600.0
    credentials_directory: str | None = None

    def __post_init__(self) -> None:
        # "off" (or false) disables retirement also from keyword overrides, where None means "not given".
        for name in ("lifetime", "lifetime_stagger"):
            if getattr(self, name) in ("off", False):
                setattr(self, name, None)
        self.validate()

    @property
    def workers(self) -> int:
        """Dask worker processes per job."""
        if self.workers_per_job is not None:
            return self.workers_per_job
        return self.gpus if self.gpus > 0 else 1

    @property
    def walltime_seconds(self) -> float:
        """``walltime`` in seconds."""
        return parse_walltime(self.walltime)

    @property
    def lifetime_seconds(self) -> float | None:
        """Worker lifetime in seconds (``None``: no retirement)."""
        return self._duration(self.lifetime, 0.90)

    @property
    def lifetime_stagger_seconds(self) -> float | None:
        """Worker lifetime stagger in seconds (``None``: none)."""
        return self._duration(self.lifetime_stagger, 0.05)

    def _duration(self, value: str | None, auto_fraction: float) -> float | None:
        if value is None:
            return None
        if value == "auto":
            return round(auto_fraction * self.walltime_seconds, 3)
        return parse_duration(value)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise ValueError(f"slurm config: gpus must be an integer >= 0, got {self.gpus!r}")
        if self.workers_per_job is not None:
            if not isinstance(self.workers_per_job, int) or self.workers_per_job < 1:
                raise ValueError(f"slurm config: workers_per_job must be an integer >= 1, got {self.workers_per_job!r}")
            if self.gpus > 0 and self.workers_per_job != self.gpus:
                raise ValueError(
                    f"slurm config: one worker per GPU, so workers_per_job ({self.workers_per_job}) must equal "
                    f"gpus ({self.gpus}) or be left out"
                )
        if not isinstance(self.cores, int) or self.cores < self.workers:
            raise ValueError(
                f"slurm config: cores ({self.cores!r}) must be an integer >= the {self.workers} worker(s) per job"
            )
        from dask.utils import parse_bytes

        try:
            mem = parse_bytes(self.memory)
        except (ValueError, TypeError) as e:
            raise ValueError(f"slurm config: memory {self.memory!r} is not a size such as '16GB' ({e})") from None
        if mem <= 0:
            raise ValueError(f"slurm config: memory must be positive, got {self.memory!r}")
        wall = parse_walltime(self.walltime)
        for name in ("lifetime", "lifetime_stagger"):
            value = getattr(self, name)
            if value is not None and value != "auto":
                try:
                    parse_duration(value)
                except ValueError as e:
                    raise ValueError(f"slurm config: {name}: {e}") from None
        life, stagger = self.lifetime_seconds, self.lifetime_stagger_seconds or 0.0
        if life is not None and life + stagger >= wall:
            raise ValueError(
                f"slurm config: lifetime + lifetime_stagger ({life + stagger:.0f} s) must be shorter than the "
                f"walltime ({wall:.0f} s), or workers are killed by SLURM before they retire"
            )
        if self.minimum_jobs is not None and (not isinstance(self.minimum_jobs, int) or self.minimum_jobs < 0):
            raise ValueError(f"slurm config: minimum_jobs must be an integer >= 0, got {self.minimum_jobs!r}")
        if not isinstance(self.allowed_failures, int) or self.allowed_failures < 0:
            raise ValueError(f"slurm config: allowed_failures must be an integer >= 0, got {self.allowed_failures!r}")
        if self.start_timeout is not None and (not isinstance(self.start_timeout, (int, float))
                                               or isinstance(self.start_timeout, bool) or self.start_timeout <= 0):
            raise ValueError("slurm config: start_timeout must be a positive number of seconds (or null: wait as long "
                             f"as the queue takes), got {self.start_timeout!r}")
        if self.respawn_grace_s < 0:
            raise ValueError(f"slurm config: respawn_grace_s must be >= 0, got {self.respawn_grace_s!r}")
        if not isinstance(self.resources, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in self.resources.items()
        ):
            raise ValueError(f"slurm config: resources must map names to positive numbers, got {self.resources!r}")
        for name in ("job_script_prologue", "job_extra_directives", "worker_extra_args"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"slurm config: {name} must be a list of strings, got {value!r}")
        for d in self.job_extra_directives:
            if re.match(r"^\s*(--gres|--gpus)\b", d):
                raise ValueError(f"slurm config: give GPUs with 'gpus'/'gres_type', not job_extra_directives ({d!r})")

    def gres(self) -> str | None:
        """The ``--gres`` value for one job, e.g. ``"gpu:a100:2"`` (``None`` when ``gpus == 0``)."""
        if self.gpus == 0:
            return None
        return f"gpu:{self.gres_type}:{self.gpus}" if self.gres_type else f"gpu:{self.gpus}"


_FIELDS = {f.name for f in dataclasses.fields(SlurmConfig)}


def parse_walltime(value: str | int) -> float:
    """SLURM time limit to seconds.

    Accepts SLURM's formats ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``; an integer is
    minutes, as in SLURM.

    Example:
        >>> parse_walltime("01:30:00"), parse_walltime("1-00:00"), parse_walltime(90)
        (5400.0, 86400.0, 5400.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"walltime {value!r} is not a SLURM time limit")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"walltime {value!r} is not a SLURM time limit such as '04:00:00'")
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", value)
    if not m:
        raise ValueError(f"walltime {value!r} is not a SLURM time limit such as '04:00:00' or '1-00:00:00'")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        secs = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        secs = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        secs = int(a) * 60 + int(b)
    else:  # MM
        secs = int(a) * 60
    if secs <= 0:
        raise ValueError(f"walltime {value!r} must be positive")
    return float(secs)


_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: str | int | float) -> float:
    """A Dask-style duration to seconds; compound forms such as ``"3h50m"`` are accepted too.

    Example:
        >>> parse_duration("3h50m"), parse_duration("600s"), parse_duration(90)
        (13800.0, 600.0, 90.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r} is not a number of seconds or a string such as '3h50m'")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d*)?)\s*([dhms])", text)
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d*)?\s*[dhms])+\s*", text):
        return float(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))
    from dask.utils import parse_timedelta

    try:
        return float(parse_timedelta(text))
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"duration {value!r} is not a number of seconds or a string such as '3h50m'") from None


def _normalise_keys(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = _JOBQUEUE_ALIASES.get(name, name)
        if name not in _FIELDS:
            known = ", ".join(sorted(k.replace("_", "-") for k in _FIELDS))
            raise ValueError(f"{source}: unknown key {key!r}; known keys: {known}")
        if name in out:
            raise ValueError(f"{source}: {key!r} given twice (as an alias or with '-' and '_')")
        out[name] = value
    return out


def load_slurm_config(config: str | os.PathLike | None = None, **overrides: Any) -> SlurmConfig:
    """Read a SLURM configuration file and apply keyword overrides.

    Arguments:
        config: path of a YAML file, or ``None`` for the defaults. The file holds the keys of
            :class:`SlurmConfig` (``-`` and ``_`` both accepted, ``queue``/``name`` as in dask-jobqueue), either
            at top level or under ``jobqueue: slurm:`` as in a dask-jobqueue configuration file.
        **overrides: field values that win over the file (``None`` values are ignored, so CLI options that were
            not given can be passed straight through).

    Returns:
        The validated :class:`SlurmConfig`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a mapping, has an unknown key, or a value is invalid (the message names it).
    """
    import yaml

    values: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"SLURM config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
        if raw is None:
            raw = {}
        if isinstance(raw, dict) and set(raw) == {"jobqueue"}:
            raw = (raw["jobqueue"] or {}).get("slurm", {}) if isinstance(raw["jobqueue"], dict) else None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of SLURM settings, got {type(raw).__name__}")
        values.update(_normalise_keys(raw, str(path)))
    values.update(_normalise_keys({k: v for k, v in overrides.items() if v is not None}, "override"))
    try:
        return SlurmConfig(**values)
    except TypeError as e:  # wrong type reaching a comparison in validate()
        raise ValueError(f"slurm config: {e}") from None


def _seconds_arg(s: float) -> str:
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
        cores=cfg.cores,
        memory=cfg.memory,
        processes=cfg.workers,
        job_name=cfg.job_name,
        worker_command=WORKER_COMMAND,
        worker_extra_args=worker_args,
        job_extra_directives=directives,
        # one thread per BLAS/OpenMP pool in every worker: tasks set their torch threads themselves
        job_script_prologue=[*cfg.job_script_prologue,
                             "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"],
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


class JobRespawner:
    """Replace SLURM jobs whose Dask workers have all left, keeping the cluster at its requested size.

    A scheduler plugin records every job whose workers connected at least once (event driven, so a job that is
    cancelled a moment after its workers joined is not missed). Every ``interval_s`` a check on the cluster's event
    loop looks for such jobs of which no worker has been connected for ``grace_s`` seconds; each is cancelled (a
    no-op when SLURM already ended it) and the cluster's own reconciliation submits a fresh job under the same
    name. Jobs the cluster scaled down on purpose are no longer in its ``worker_spec`` and are left alone; jobs
    still waiting in the queue never connected, so they are never replaced.

    Arguments:
        cluster: a running ``dask_jobqueue.SLURMCluster`` (any ``SpecCluster`` of jobs with an in-process scheduler).
        grace_s: seconds without any worker of a job before it is replaced.
        interval_s: seconds between checks.

    Example:
        >>> respawner = JobRespawner(cluster, grace_s=30).start()  # doctest: +SKIP
        >>> respawner.replaced  # [(job name, SLURM job id), ...] of the jobs replaced so far  # doctest: +SKIP
    """

    def __init__(self, cluster: Any, grace_s: float = 30.0, interval_s: float = 2.0) -> None:
        self.cluster = cluster
        self.grace_s = float(grace_s)
        self.interval_s = float(interval_s)
        self.replaced: list[tuple[str, str | None]] = []
        self._seen: weakref.WeakSet = weakref.WeakSet()  # Job objects whose workers connected at least once
        self._lost_since: dict[str, float] = {}
        self._job_ids: dict[str, str | None] = {}  # last SLURM job id known per job name

    def start(self) -> "JobRespawner":
        """Install the plugin and the periodic check (both end with the cluster); call on the cluster's loop."""
        from tornado.ioloop import PeriodicCallback

        self.cluster.scheduler.add_plugin(_WorkerArrivals(self), name="rbnas-respawn")
        pc = PeriodicCallback(self.check, self.interval_s * 1000)
        self.cluster.periodic_callbacks["rbnas-respawn"] = pc
        pc.start()
        return self

    def _worker_names(self, job: str) -> set[str]:
        spec = self.cluster.worker_spec.get(job, {})
        groups = spec.get("group") if isinstance(spec, dict) else None
        return {f"{job}{g}" for g in groups} if groups else {str(job)}

    def worker_arrived(self, worker_name: str) -> None:
        """Mark the job that owns ``worker_name`` as seen (called by the scheduler plugin)."""
        for job, obj in list(self.cluster.workers.items()):
            if worker_name in self._worker_names(job):
                self._seen.add(obj)
                return

    async def check(self) -> None:
        """One pass: detect lost jobs, cancel them and let the cluster submit replacements."""
        from distributed.core import Status

        cluster = self.cluster
        if cluster.status != Status.running:
            return
        present = {str(w.get("name")) for w in cluster.scheduler_info.get("workers", {}).values()}
        now = time.monotonic()
        for job, obj in list(cluster.workers.items()):
            if job not in cluster.worker_spec:
                continue  # being scaled down on purpose
            if getattr(obj, "job_id", None):
                self._job_ids[job] = obj.job_id
            if self._worker_names(job) & present:
                self._seen.add(obj)
                self._lost_since.pop(job, None)
                continue
            if obj not in self._seen:
                self._lost_since.pop(job, None)
                continue  # still queued or starting
            since = self._lost_since.setdefault(job, now)
            if now - since < self.grace_s:
                continue
            cluster.workers.pop(job)
            self._lost_since.pop(job, None)
            job_id = self._job_ids.pop(job, None)
            logger.warning("SLURM job %s (%s) lost all its workers; submitting a replacement", job_id, job)
            self.replaced.append((str(job), job_id))
            try:
                await obj.close()  # scancel; harmless when the job has already ended
            except Exception as e:  # pragma: no cover - depends on scancel's mood
                logger.info("cancelling lost job %s failed (already gone?): %s", job_id, e)
        missing = set(cluster.worker_spec) - set(cluster.workers)
        for job in missing:
            # Dropped by the cluster itself (SpecCluster forgets a single-worker job after
            # distributed.deploy.lost-worker-timeout) without resubmitting it: record and resubmit.
            if job in self._job_ids:
                job_id = self._job_ids.pop(job)
                logger.warning("SLURM job %s (%s) was dropped by the cluster; submitting a replacement", job_id, job)
                self.replaced.append((str(job), job_id))
        if missing:
            await cluster._correct_state()


class _WorkerArrivals(SchedulerPlugin):
    """Scheduler plugin telling a :class:`JobRespawner` about every worker that connects."""

    def __init__(self, respawner: JobRespawner) -> None:
        self.respawner = respawner

    def add_worker(self, scheduler: Any, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.respawner.worker_arrived(str(ws.name))


_FROM_CONFIG: Any = object()


def make_slurm_cluster(config: str | os.PathLike | None, jobs: int, *, dashboard_address: Any = _FROM_CONFIG,
                       insecure: bool = False, credentials_dir: str | os.PathLike | None = None,
                       **overrides: Any) -> Any:
    """Start a ``dask_jobqueue.SLURMCluster`` of GPU worker jobs for ``rbnas run --cluster slurm``.

    The scheduler runs in the calling process; ``jobs`` jobs are submitted with ``sbatch`` (or, with
    ``adapt: true``, between ``minimum_jobs`` and ``jobs`` as the load requires). Each job starts one Dask worker
    per GPU, pinned with ``CUDA_VISIBLE_DEVICES`` and offering ``resources={"GPU": 1}``. Workers retire before the
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

    from robustbench_nas.pipelines.runner import DEFAULT_DASHBOARD, check_dashboard_address

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
        cluster = SLURMCluster(job_cls=_tracked_job_class(errors), **kwargs)
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
            cluster.sync(_start_on_loop, cluster.rbnas_respawner)
    except BaseException:
        cluster.close()
        raise
    return cluster


# ---- per-run TLS credentials ---------------------------------------------------------------------------------------
_CREDENTIALS_PREFIX = ".rbnas-credentials-"


def write_credentials(base_dir: str | os.PathLike) -> tuple[Any, Path]:
    """Make TLS credentials for one run and write them where the worker jobs can read them.

    A fresh self-signed certificate and RSA key (``distributed.Security.temporary``) are written as ``ca.pem``,
    ``cert.pem`` and ``key.pem`` into a new folder ``<base_dir>/.rbnas-credentials-<random suffix>`` made with mode 0700
    (``tempfile.mkdtemp``); each file is created with mode 0600 (``O_EXCL``: never through an existing file or
    link). Only the owner (and root) can read the key; ``base_dir`` must be on the file system the compute nodes
    share.

    Returns:
        ``(security, folder)``: a ``distributed.Security`` that requires TLS and names the three files for every
        role (scheduler, worker, client), and the folder (remove it with :func:`remove_credentials`).
    """
    import tempfile

    from distributed.security import Security

    base = Path(base_dir).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    mem = Security.temporary()
    folder = Path(tempfile.mkdtemp(prefix=_CREDENTIALS_PREFIX, dir=base))  # mode 0700, a name no one else has
    files = {"ca.pem": mem.tls_ca_file, "cert.pem": mem.tls_worker_cert, "key.pem": mem.tls_worker_key}
    try:
        for name, text in files.items():
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
    except BaseException:
        remove_credentials(folder)
        raise
    ca, cert, key = (str(folder / n) for n in ("ca.pem", "cert.pem", "key.pem"))
    security = Security(require_encryption=True, tls_ca_file=ca,
                        tls_scheduler_cert=cert, tls_scheduler_key=key,
                        tls_worker_cert=cert, tls_worker_key=key,
                        tls_client_cert=cert, tls_client_key=key)
    return security, folder


def remove_credentials(folder: str | os.PathLike) -> None:
    """Delete a folder made by :func:`write_credentials` (and nothing else: the name and contents are checked)."""
    import shutil

    folder = Path(folder)
    if not folder.is_dir() or not folder.name.startswith(_CREDENTIALS_PREFIX):
        return
    if any(p.name not in ("ca.pem", "cert.pem", "key.pem") for p in folder.iterdir()):
        logger.warning("not removing %s: it holds files that rbnas did not write", folder)
        return
    shutil.rmtree(folder, ignore_errors=True)


# ---- failing fast -------------------------------------------------------------------------------------------------
class SlurmStartError(RuntimeError):
    """SLURM will not run the worker jobs: the message has SLURM's reason and a hint."""


#: (pattern in SLURM's message, hint). The first match is shown.
_HINTS: tuple[tuple[str, str], ...] = (
    (r"gres|generic resource",
     "the partition has no such GPUs: on a CPU-only site set `gpus: 0` in the SLURM config (--slurm-config); "
     "otherwise pick a GPU `partition` / `gres-type` (`sinfo -o '%P %G'` lists them)"),
    (r"account|association", "check `account` in the SLURM config (`sacctmgr show assoc user=$USER`)"),
    (r"qos", "check `qos` in the SLURM config (`sacctmgr show qos`)"),
    (r"partition", "check `partition` in the SLURM config (`sinfo -s` lists the partitions)"),
    (r"time limit|timelimit", "lower `walltime` to the partition's limit (`sinfo -o '%P %l'`)"),
    (r"node configuration|memory|cpus|mem", "ask for less per job (`memory`, `cores`, `gpus`, `gres-type`) than one "
     "node of the partition has (`sinfo -o '%P %c %m %G'`); on a CPU-only site set `gpus: 0`"),
    (r"no module named|modulenotfounderror|importerror",
     "the job cannot import robustbench-nas: add the line that activates its environment to "
     "`job-script-prologue` (or set `python`)"),
    (r"command not found|no such file", "a command or file of the job script is missing on the compute node: "
     "check `python` and `job-script-prologue`"),
)


def slurm_hint(message: str) -> str:
    """A hint for a SLURM/job error message (``""`` when none applies)."""
    low = message.lower()
    for pattern, hint in _HINTS:
        if re.search(pattern, low):
            return hint
    return ""


def _with_hint(text: str, message: str) -> str:
    hint = slurm_hint(message)
    return f"{text}. Hint: {hint}" if hint else text


def _sbatch_message(text: str) -> str:
    """The useful part of sbatch's output (dask-jobqueue wraps it in its own 'Command exited ...' text)."""
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return "; ".join(errors or lines) or "(sbatch gave no message)"


def check_submission(cfg: SlurmConfig, timeout: float = 60.0) -> None:
    """``sbatch --test-only`` the worker job script of ``cfg``: raise :class:`SlurmStartError` if SLURM refuses it.

    Nothing is queued (``--test-only`` only validates the request and estimates a start time). Without ``sbatch``
    on ``PATH`` this is a no-op (:func:`make_slurm_cluster` then says so).
    """
    import shutil

    if shutil.which("sbatch") is None:
        return
    script = slurm_job_script_for(cfg)
    try:
        proc = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("sbatch --test-only did not answer within %.0f s; submitting anyway", timeout)
        return
    except OSError as e:
        raise SlurmStartError(f"cannot run sbatch: {e}") from None
    if proc.returncode != 0:
        msg = _sbatch_message(proc.stderr + "\n" + proc.stdout)
        raise SlurmStartError(_with_hint(f"SLURM refuses the worker job: {msg}", msg))


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


def _tracked_job_class(errors: list[str]) -> type:
    """A ``SLURMJob`` that records why ``sbatch`` refused it (dask-jobqueue only logs that, and the run hangs)."""
    from dask_jobqueue.slurm import SLURMJob

    class TrackedSLURMJob(SLURMJob):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as e:
                from distributed.core import Status

                errors.append(_sbatch_message(str(e)))
                self.status = Status.failed  # so that closing the cluster does not trip over it
                raise

        async def close(self) -> None:
            from distributed.core import Status

            await super().close()  # scancel
            self.status = Status.closed  # dask-jobqueue leaves it 'running' (close asserts on a job whose worker
            #                              never connected, hiding the reason the run ends)

    return TrackedSLURMJob


def _squeue(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """``{job id: (state, reason)}`` of the jobs still known to ``squeue`` (``None``: squeue did not answer)."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def _job_end(job_id: str, log_directory: str | None, job_name: str) -> tuple[str, str]:
    """(``JobState ExitCode Reason``, last lines of the job's stderr) of an ended job, as far as SLURM still knows."""
    state, err_path = "ended", None
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                             timeout=30).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        if fields:
            state = " ".join(f"{k}={fields[k]}" for k in ("JobState", "ExitCode", "Reason") if k in fields)
            err_path = fields.get("StdErr")
    except (OSError, subprocess.TimeoutExpired):
        pass
    candidates = [err_path] if err_path else []
    if log_directory:
        candidates.append(str(Path(log_directory) / f"{job_name}-{job_id}.err"))
    candidates.append(f"slurm-{job_id}.out")
    for c in candidates:
        try:
            lines = [ln for ln in Path(c).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            continue
        return state, f"{c}: " + " | ".join(lines[-4:])
    return state, ""


_CONFIG_TIMEOUT: Any = object()


def wait_for_first_worker(cluster: Any, timeout: float | None = _CONFIG_TIMEOUT, poll_s: float = 2.0) -> None:
    """Block until a worker of ``cluster`` connected; raise :class:`SlurmStartError` as soon as none can.

    Ends the wait (with SLURM's message and a hint) when a submission is refused, when a worker job ends before
    any worker connected (its state, exit code and the end of its stderr are quoted), or after ``timeout``
    seconds (default: the config's ``start_timeout``; ``None``: no limit), with the state and reason of the
    queued jobs.
    """
    cfg: SlurmConfig = cluster.rbnas_config
    timeout = cfg.start_timeout if timeout is _CONFIG_TIMEOUT else timeout
    t0 = time.monotonic()
    seen: set[str] = set()
    states: dict[str, tuple[str, str]] | None = {}
    while True:
        if cluster.scheduler_info.get("workers"):
            return
        errors = list(getattr(cluster, "rbnas_submit_errors", []))
        if errors:
            raise SlurmStartError(_with_hint(f"SLURM refused the worker job: {errors[0]}", errors[0]))
        ids = [str(j.job_id) for j in list(cluster.workers.values()) if getattr(j, "job_id", None)]
        states = _squeue(ids)
        if states is not None:
            for job_id in ids:
                if job_id in states:
                    seen.add(job_id)
                elif job_id in seen or time.monotonic() - t0 > 10:
                    # left the queue without a worker ever connecting: it died at start
                    if cluster.scheduler_info.get("workers"):
                        return
                    state, err = _job_end(job_id, cfg.log_directory, cfg.job_name)
                    text = f"SLURM worker job {job_id} ended before its Dask worker connected ({state})"
                    if err:
                        text += f"; its log {err}"
                    raise SlurmStartError(_with_hint(text, f"{state} {err}"))
        if timeout is not None and time.monotonic() - t0 > timeout:
            queued = ", ".join(f"{j} {st} ({why})" for j, (st, why) in (states or {}).items()) or "none in squeue"
            text = (f"no Dask worker connected within {timeout:.0f} s (start-timeout in the SLURM config); "
                    f"worker jobs: {queued}")
            reasons = " ".join(why for _, why in (states or {}).values())
            hint = slurm_hint(reasons) or ("jobs still pending: raise `start-timeout` (null: no limit) if the queue "
                                           "is slow; jobs running: check that compute nodes reach this host "
                                           "(`interface`) and the jobs' .err files")
            raise SlurmStartError(f"{text}. Hint: {hint}")
        time.sleep(poll_s)


async def _start_on_loop(respawner: JobRespawner) -> None:
    # PeriodicCallback binds to the current IOLoop: create it on the cluster's loop.
    respawner.start()


# --------------------------------------------------------------------------------------------------------------
# Worker launcher: runs inside each SLURM job.


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


if __name__ == "__main__":
    sys.exit(launcher_main())

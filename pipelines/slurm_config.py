"""The SLURM back end's configuration: :class:`SlurmConfig`, read from YAML (``slurm/jobqueue.yaml`` is the
documented template) with keyword overrides, and the walltime / duration parsing its values need."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .gpu_slots import check_workers_per_gpu

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
        gpus: GPUs per job (``#SBATCH --gres=gpu[:type]:N``); ``workers_per_gpu`` Dask worker processes per GPU.
            ``0`` asks for no GPU (CPU partitions and tests); then ``workers_per_job`` workers run per job.
        gres_type: GPU type for the gres request, e.g. ``"a100"`` gives ``--gres=gpu:a100:N``.
        workers_per_gpu: Dask workers sharing each GPU (1 .. 8; 2-4 lets small cells, which leave an H100 mostly
            idle, run side by side). Each worker runs one GPU unit at a time and holds its own CUDA context
            (about 0.5 GiB of GPU memory).
        workers_per_job: worker processes per job; must equal ``gpus * workers_per_gpu`` when ``gpus > 0``
            (``None``: that).
        cores: CPU cores per job (``--cpus-per-task``), split evenly into threads of the workers; ``None``:
            ``cores_per_worker`` for each worker of the job.
        cores_per_worker: cores each worker needs (its Python process feeding the GPU, CPU-side random draws,
            corruption sources, data loading), used when ``cores`` is not given.
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
        >>> cfg.workers, cfg.job_cores, cfg.lifetime_seconds
        (2, 8, 6480.0)
        >>> load_slurm_config(None, gpus=4, workers_per_gpu=2, cores_per_worker=3).job_cores
        24
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    walltime: str = "04:00:00"
    gpus: int = 1
    gres_type: str | None = None
    workers_per_gpu: int = 1
    workers_per_job: int | None = None
    cores: int | None = None
    cores_per_worker: int = 4
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
        return self.gpus * self.workers_per_gpu if self.gpus > 0 else 1

    @property
    def job_cores(self) -> int:
        """CPU cores per job: ``cores``, else ``cores_per_worker`` times the workers of the job."""
        return self.cores if self.cores is not None else self.cores_per_worker * self.workers

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
        try:
            check_workers_per_gpu(self.workers_per_gpu)
        except ValueError as e:
            raise ValueError(f"slurm config: {e}") from None
        if self.workers_per_job is not None:
            if not isinstance(self.workers_per_job, int) or self.workers_per_job < 1:
                raise ValueError(f"slurm config: workers_per_job must be an integer >= 1, got {self.workers_per_job!r}")
            if self.gpus > 0 and self.workers_per_job != self.gpus * self.workers_per_gpu:
                raise ValueError(
                    f"slurm config: workers_per_job ({self.workers_per_job}) must equal gpus x workers_per_gpu "
                    f"({self.gpus} x {self.workers_per_gpu}) or be left out"
                )
        if self.gpus == 0 and self.workers_per_gpu != 1:
            raise ValueError(f"slurm config: workers_per_gpu ({self.workers_per_gpu}) needs gpus > 0; for CPU-only "
                             "jobs set workers_per_job")
        if not isinstance(self.cores_per_worker, int) or isinstance(self.cores_per_worker, bool) \
                or self.cores_per_worker < 1:
            raise ValueError(f"slurm config: cores_per_worker must be an integer >= 1, got {self.cores_per_worker!r}")
        if self.cores is not None and (not isinstance(self.cores, int) or isinstance(self.cores, bool)
                                       or self.cores < self.workers):
            raise ValueError(
                f"slurm config: cores ({self.cores!r}) must be an integer >= the {self.workers} worker(s) per job "
                "(or null: cores_per_worker for each worker)"
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


__all__ = ["SlurmConfig", "load_slurm_config", "parse_duration", "parse_walltime"]

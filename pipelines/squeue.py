"""Watching the worker jobs through SLURM's own tools (``squeue``, ``scontrol``): waiting for the first worker, and
saying why none will come (a refused submission, a job that died at start, a queue that does not move)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from .sbatch_errors import SlurmStartError, slurm_hint, with_hint
from .slurm_config import SlurmConfig

def squeue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
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


def job_end(job_id: str, log_directory: str | None, job_name: str) -> tuple[str, str]:
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
            raise SlurmStartError(with_hint(f"SLURM refused the worker job: {errors[0]}", errors[0]))
        ids = [str(j.job_id) for j in list(cluster.workers.values()) if getattr(j, "job_id", None)]
        states = squeue_states(ids)
        if states is not None:
            for job_id in ids:
                if job_id in states:
                    seen.add(job_id)
                elif job_id in seen or time.monotonic() - t0 > 10:
                    # left the queue without a worker ever connecting: it died at start
                    if cluster.scheduler_info.get("workers"):
                        return
                    state, err = job_end(job_id, cfg.log_directory, cfg.job_name)
                    text = f"SLURM worker job {job_id} ended before its Dask worker connected ({state})"
                    if err:
                        text += f"; its log {err}"
                    raise SlurmStartError(with_hint(text, f"{state} {err}"))
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


__all__ = ["job_end", "squeue_states", "wait_for_first_worker"]

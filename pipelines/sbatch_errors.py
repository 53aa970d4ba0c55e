"""Failing fast when SLURM will not run the worker jobs: ``sbatch --test-only`` before anything is queued, a job
class that records why ``sbatch`` refused it, and hints that turn SLURM's messages into the setting to change."""

from __future__ import annotations

import logging
import re
import subprocess

from .slurm_config import SlurmConfig
from .slurm_jobs import slurm_job_script_for

logger = logging.getLogger("robustbench_nas.pipelines.slurm")  # one logger for the whole SLURM back end


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


def with_hint(text: str, message: str) -> str:
    """``text`` with the hint for ``message`` appended (unchanged when no hint applies)."""
    hint = slurm_hint(message)
    return f"{text}. Hint: {hint}" if hint else text


def sbatch_message(text: str) -> str:
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
        msg = sbatch_message(proc.stderr + "\n" + proc.stdout)
        raise SlurmStartError(with_hint(f"SLURM refuses the worker job: {msg}", msg))


def tracked_job_class(errors: list[str]) -> type:
    """A ``SLURMJob`` that records why ``sbatch`` refused it (dask-jobqueue only logs that, and the run hangs)."""
    from dask_jobqueue.slurm import SLURMJob

    class TrackedSLURMJob(SLURMJob):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as e:
                from distributed.core import Status

                errors.append(sbatch_message(str(e)))
                self.status = Status.failed  # so that closing the cluster does not trip over it
                raise

        async def close(self) -> None:
            from distributed.core import Status

            await super().close()  # scancel
            self.status = Status.closed  # dask-jobqueue leaves it 'running' (close asserts on a job whose worker
            #                              never connected, hiding the reason the run ends)

    return TrackedSLURMJob


__all__ = ["SlurmStartError", "check_submission", "sbatch_message", "slurm_hint", "tracked_job_class", "with_hint"]

"""The lifetime rule: a worker near the end of its wall time takes no new unit it cannot finish.

Why: SLURM workers retire at their ``lifetime`` (90 % of the walltime by default) and SLURM kills the job at its
walltime; a unit running then is lost and restarts from scratch elsewhere. A unit of hours (an attack on a large
cell) started in the last hour of a job is thus pure waste. So before a unit starts, the worker compares

* the time it has left: until its Dask ``lifetime`` (counted from the start of its process, which is slightly
  earlier than Dask's own clock, so the estimate errs early) and until the SLURM job's end
  (``SLURM_JOB_END_TIME``, set by SLURM for batch jobs), whichever comes first; with
* the unit's expected duration, estimated by the client from the store's recorded stage times
  (``stage_seconds`` of finished units, :class:`StageTimes`): the same cell's own time for that stage on another
  seed when there is one, else the 90th percentile of that stage over all cells, times a margin of 1.25.

If the unit does not fit, the worker hands it back (Dask's :class:`distributed.Reschedule`: the scheduler gives
it to another worker) and retires gracefully at once: it would refuse the same unit again if the scheduler
offered it back, and its replacement job (``respawn``) gets a full walltime. A unit without an estimate (its stage
never finished in this store) or a worker without a deadline (local clusters) always runs.

Estimates are taken when the run submits its units: a fresh store gets them from the next run on (a resumed run,
e.g. the next ``rbnas-run.sbatch`` of a long campaign).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: Quantile of a stage's recorded times used for a cell that has none of its own (cells differ in cost).
QUANTILE = 0.9
#: Expected duration = estimate x MARGIN (other load on the node, slower GPU, a retry at half the batch).
MARGIN = 1.25
#: Environment variable SLURM sets to the job's expected end (Unix seconds).
SLURM_END_ENV = "SLURM_JOB_END_TIME"


@dataclass
class StageTimes:
    """Expected seconds of a unit, from the recorded wall times of finished units of a store.

    Arguments:
        stages: stage names, in the order of the last axis of ``seconds``.
        archs: cell uids, in the order of the first axis.
        seconds: ``(arch, seed, stage)`` wall seconds of the last attempt (NaN: never ran).
        done: ``(arch, seed, stage)`` True where the unit finished (only those times count).

    Example:
        >>> t = StageTimes(["train"], [7, 9], np.array([[[100.0]], [[300.0]]]), np.array([[[True]], [[True]]]))
        >>> t.expected(7, "train"), t.expected(8, "train")   # 7: its own 100 s; 8: the stage's 90th percentile
        (125.0, 350.0)
    """

    stages: list[str]
    archs: list[int]
    seconds: np.ndarray
    done: np.ndarray
    _per_stage: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.seconds.shape != self.done.shape or self.seconds.ndim != 3:
            raise ValueError(f"seconds {self.seconds.shape} and done {self.done.shape} must be the same "
                             "(arch, seed, stage) shape")
        self._pos = {uid: i for i, uid in enumerate(self.archs)}
        self._valid = self.done & np.isfinite(self.seconds) & (self.seconds > 0)
        for s, stage in enumerate(self.stages):
            times = self.seconds[:, :, s][self._valid[:, :, s]]
            if times.size:
                self._per_stage[stage] = float(np.quantile(times, QUANTILE))

    @classmethod
    def from_store(cls, store: Any) -> "StageTimes":
        """The recorded times of ``store`` (a :class:`~robustbench_nas.storage.RobustnessStore`), journal included."""
        from robustbench_nas.storage import DONE

        return cls(list(store.spec.stages), list(store.spec.archs), np.asarray(store.stage_seconds(), float),
                   np.asarray(store.status()) == DONE)

    def expected(self, uid: int, stage: str) -> float | None:
        """Expected seconds of ``stage`` for cell ``uid`` (margin included), ``None`` without any recorded time."""
        if stage not in self.stages:
            return None
        s = self.stages.index(stage)
        i = self._pos.get(uid)
        if i is not None and self._valid[i, :, s].any():
            return float(self.seconds[i, :, s][self._valid[i, :, s]].max()) * MARGIN
        est = self._per_stage.get(stage)
        return None if est is None else est * MARGIN


def current_worker() -> Any | None:
    """The Dask worker running this code (``None`` outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _process_start() -> float:
    """Unix time this process started (psutil, a dependency of distributed)."""
    import psutil

    return float(psutil.Process().create_time())


def _now() -> float:
    """The current Unix time (one place for tests to mock the clock)."""
    return time.time()


def time_left(worker: Any, *, clock: Callable[[], float] | None = None, env: Mapping[str, str] | None = None,
              process_start: Callable[[], float] | None = None) -> float | None:
    """Seconds ``worker`` has left before it retires or its SLURM job ends (``None``: no known end).

    Arguments:
        worker: a ``distributed.Worker`` (its ``lifetime``, seconds after start, stagger included, or ``None``).
        clock: the current Unix time; env: the environment (``SLURM_JOB_END_TIME``); process_start: the Unix time
            the worker's process started (defaults: this module's ``_now``, ``os.environ``, ``_process_start``).
    """
    env = os.environ if env is None else env
    clock = _now if clock is None else clock
    process_start = _process_start if process_start is None else process_start
    ends = []
    lifetime = getattr(worker, "lifetime", None)
    if lifetime:
        ends.append(process_start() + float(lifetime))
    end = env.get(SLURM_END_ENV, "").strip()
    if end:
        try:
            ends.append(float(end))
        except ValueError:
            log.warning("ignoring %s=%r: not a Unix time", SLURM_END_ENV, end)
    if not ends:
        return None
    return min(ends) - clock()


def fits(expected_s: float | None, left_s: float | None) -> bool:
    """Whether a unit of ``expected_s`` seconds can finish in ``left_s`` (unknown either way: it may start)."""
    if expected_s is None or left_s is None or math.isnan(expected_s):
        return True
    return expected_s <= left_s


def refuse_if_too_late(worker: Any, expected_s: float | None, what: str, *,
                       clock: Callable[[], float] | None = None, env: Mapping[str, str] | None = None,
                       process_start: Callable[[], float] | None = None) -> None:
    """On ``worker`` (``None``: not in a worker, nothing to do): hand the unit back and retire the worker when the
    unit is not expected to finish in the time the worker has left (module docstring).

    Raises:
        distributed.Reschedule: the unit does not fit; the scheduler gives it to another worker.
    """
    if worker is None or expected_s is None:
        return
    left = time_left(worker, clock=clock, env=env, process_start=process_start)
    if fits(expected_s, left):
        return
    from distributed import Reschedule

    reason = f"rbnas-lifetime: {what} needs ~{expected_s:.0f} s, {left:.0f} s left"
    log.warning("%s: handing it back and retiring this worker", reason)
    from distributed.core import Status

    if getattr(worker, "status", Status.running) == Status.running:  # not already retiring
        worker.loop.add_callback(worker.close_gracefully, reason=reason)  # thread-safe; runs on the worker's loop
    raise Reschedule(reason)


__all__ = ["MARGIN", "QUANTILE", "SLURM_END_ENV", "StageTimes", "current_worker", "fits", "refuse_if_too_late",
           "time_left"]

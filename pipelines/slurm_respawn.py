"""Replacing SLURM worker jobs that ended (walltime, ``scancel``, preemption, node failure).

Why: dask-jobqueue does not resubmit a job that ended (issues dask/dask-jobqueue#122, #611; for jobs with several
worker processes the adaptive path never notices because worker names carry a ``-i`` suffix). Workers retire
themselves before the walltime (``--lifetime`` with ``--lifetime-stagger``, so they do not all leave at once); the
:class:`JobRespawner` then submits a fresh job under the same name, so a run longer than the walltime keeps its
workers.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger("robustbench_nas.pipelines.slurm")  # one logger for the whole SLURM back end


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
        """Tell the respawner the name of the worker that just connected."""
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.respawner.worker_arrived(str(ws.name))


async def start_on_loop(respawner: JobRespawner) -> None:
    """Start ``respawner``; run it on the cluster's event loop (``cluster.sync(start_on_loop, respawner)``)."""
    # PeriodicCallback binds to the current IOLoop: create it on the cluster's loop.
    respawner.start()


__all__ = ["JobRespawner", "start_on_loop"]

"""Environment of the pipeline's worker processes: thread pools and glibc's allocator.

Why the allocator: Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``, so that workers give freed memory back to the OS). Setting any of glibc's
malloc thresholds explicitly turns off its *dynamic* mmap threshold, so every tensor above 128 KiB is then a fresh
``mmap`` whose pages fault in one by one and are unmapped again when freed. A proxies task (hundreds of 1-8 MB
activations and gradients per cell) then spends more time in the kernel than computing: measured on the complete
table's run, 5.2 M minor page faults and 8.8 s system time per cell against 0.26 M and 0.5 s in a plain Python
process, 2x the wall time (record ``worker_malloc_env_vs_dask_default``). The values below keep allocations up to
32 MiB in the heap and return free memory above 128 MiB at the heap's top to the OS, so a worker still shrinks
after a large stage. They change no result (allocation only). A variable already set in the environment that
starts the workers wins, as for every ``pre-spawn-environ`` entry.
"""

from __future__ import annotations

#: glibc malloc thresholds of every worker process (bytes, as strings: environment values)
MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(128 * 2**20),
}

#: one thread per BLAS / OpenMP pool: tasks set their torch threads themselves (``--threads``)
THREAD_ENV: dict[str, str] = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pre_spawn_config() -> dict[str, str]:
    """``dask.config.set`` entries that make a local cluster's nannies start workers with :data:`MALLOC_ENV`
    (they must be in the environment before the worker process starts: glibc reads them at its first malloc)."""
    return {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in MALLOC_ENV.items()}


def dask_default_config() -> dict[str, object]:
    """``dask.config.set`` entries for Dask's own worker environment (``MALLOC_TRIM_THRESHOLD_=65536`` alone): the
    baseline of record ``worker_malloc_env_vs_dask_default`` and of the tests."""
    cfg: dict[str, object] = {f"distributed.nanny.pre-spawn-environ.{k}": None for k in MALLOC_ENV}
    cfg["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] = 65536
    return cfg


def export_line() -> str:
    """The shell line a SLURM job runs before its workers start (the nanny takes an exported value over its
    configuration, and the worker inherits it)."""
    return "export " + " ".join(f"{k}={v}" for k, v in {**THREAD_ENV, **MALLOC_ENV}.items())


__all__ = ["MALLOC_ENV", "THREAD_ENV", "dask_default_config", "export_line", "pre_spawn_config"]

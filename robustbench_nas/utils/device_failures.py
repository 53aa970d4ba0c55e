"""How a worker meets GPU failures: refuse a GPU it does not have, halve the batch on out-of-memory, exit on a
sticky CUDA error.

- A worker that advertises a ``GPU`` resource but has no CUDA would silently run GPU units on the CPU (hours late,
  with other float rounding): :func:`check_advertised_gpu` refuses.
- Out-of-memory is a property of the batch, not of the unit: retry with half the batch after freeing the cache.
  Results do not change (attacks and corruptions draw per image, :mod:`robustbench_nas.utils.streams`).
- Any other CUDA error (illegal address, device-side assert, ECC / Xid) leaves the CUDA context unusable: every
  later unit of that process would fail in milliseconds. :func:`exit_worker` ends the process so that its nanny
  (or SLURM) starts a fresh one; outside a Dask worker it raises :class:`FatalDeviceError` instead (never kill the
  user's own process).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

log = logging.getLogger(__name__)

#: Exit status of a worker that ended itself after a CUDA error (EX_SOFTWARE).
EXIT_CUDA_ERROR = 70

#: Texts of CUDA errors that poison the context (torch raises most as RuntimeError / AcceleratorError).
_FATAL_MARKERS = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error", "device-side assert",
                  "illegal memory access", "unspecified launch failure", "uncorrectable ECC")


class FatalDeviceError(RuntimeError):
    """A CUDA error after which this process cannot use its GPU any more."""


class WorkerGPUError(RuntimeError):
    """A worker advertises a GPU that it cannot use."""


class UnitTimeout(RuntimeError):
    """A unit ran past its wall-clock limit (outside a Dask worker, where the process is not ended)."""


def call_with_timeout(fn: Any, timeout_s: float | None, what: str) -> Any:
    """``fn()``, or, past ``timeout_s`` seconds, end the worker (its nanny restarts it; a Python thread running
    torch code cannot be stopped, and a stuck kernel holds the GPU) or, outside a worker, raise
    :class:`UnitTimeout` (the computation then finishes in a daemon thread; its result is dropped).

    ``timeout_s=None``: a plain call, in this thread.
    """
    if timeout_s is None:
        return fn()
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            box["error"] = e

    t = threading.Thread(target=target, name=f"unit {what}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        reason = f"{what} ran past its {timeout_s:g} s limit"
        if _dask_worker() is None:
            raise UnitTimeout(reason)
        log.critical("exiting this worker: %s", reason)
        logging.shutdown()
        os._exit(EXIT_CUDA_ERROR)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` is a device out-of-memory error (``torch.OutOfMemoryError`` or its message)."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(e, oom_type):
        return True
    return "out of memory" in str(e).lower() and "CUDA" in str(e)


def is_fatal_cuda_error(e: BaseException) -> bool:
    """Whether ``e`` is a CUDA error other than out-of-memory (see the module docstring)."""
    if is_oom(e):
        return False
    acc = getattr(torch, "AcceleratorError", None)
    if acc is not None and isinstance(e, acc):
        return True
    msg = str(e)
    return any(m in msg for m in _FATAL_MARKERS)


def free_device_memory() -> None:
    """Release the CUDA caching allocator's unused blocks (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _dask_worker() -> Any | None:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def worker_gpus() -> float:
    """The ``GPU`` resource the current Dask worker advertises (0 outside a worker or without one)."""
    w = _dask_worker()
    if w is None:
        return 0.0
    res = getattr(getattr(w, "state", None), "total_resources", None)
    if res is None:
        res = getattr(w, "total_resources", None) or {}
    return float(res.get("GPU", 0) or 0)


#: environment switch: GPU resources of this cluster are scheduling slots only (see :func:`check_advertised_gpu`)
CPU_GPU_WORKERS_ENV = "RBNAS_CPU_GPU_WORKERS"


def check_advertised_gpu(device: torch.device) -> None:
    """Raise :class:`WorkerGPUError` when this worker advertises a GPU but ``device`` is not a usable CUDA device.

    Typical cause: GPUs pinned by global ids (``SLURM_JOB_GPUS``) that do not exist inside the job's device cgroup,
    so ``torch.cuda.is_available()`` is False and ``auto`` would fall back to the CPU.

    ``RBNAS_CPU_GPU_WORKERS=1`` turns the check off, for a CPU-only test cluster whose ``GPU`` resources are only
    scheduling slots (the CI's one-node SLURM declares ``gpu:4`` without GPUs); never set it on a real cluster.
    """
    if os.environ.get(CPU_GPU_WORKERS_ENV, "").strip() == "1":
        return
    gpus = worker_gpus()
    if gpus <= 0:
        return
    if device.type != "cuda" or not torch.cuda.is_available():
        raise WorkerGPUError(
            f"this worker advertises GPU={gpus:g} but runs on {device} (torch.cuda.is_available() = "
            f"{torch.cuda.is_available()}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "refusing to run GPU work on the CPU. Check the worker's GPU pinning (use the job's own visible "
            "devices, not SLURM_JOB_GPUS) or start it without the GPU resource"
        )


def exit_worker(reason: str) -> None:
    """End this Dask worker process (its nanny restarts it); outside a worker raise :class:`FatalDeviceError`."""
    if _dask_worker() is None:
        raise FatalDeviceError(reason)
    log.critical("exiting this worker after a CUDA error (its nanny starts a fresh process): %s", reason)
    logging.shutdown()
    os._exit(EXIT_CUDA_ERROR)


__all__ = ["CPU_GPU_WORKERS_ENV", "EXIT_CUDA_ERROR", "FatalDeviceError", "UnitTimeout", "WorkerGPUError", "call_with_timeout", "check_advertised_gpu", "exit_worker",
           "free_device_memory", "is_fatal_cuda_error", "is_oom", "worker_gpus"]

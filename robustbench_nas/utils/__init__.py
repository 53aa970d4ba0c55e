"""Small shared helpers: seeding, device choice, thread settings, atomic outputs."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_output

if TYPE_CHECKING:  # torch is imported where used: the registries and seeding below this package must not need it
    import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) global RNGs; return a CPU ``torch.Generator`` seeded likewise."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available else CPU; otherwise the named device (checked to exist)."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


#: Upper bound of the default thread count: beyond it, intra-op threads of these small networks stop paying off
#: and a shared node's other users lose cores.
THREAD_CAP = 8


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``: the SLURM/cgroup/taskset allocation, not the node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Default torch/BLAS threads of a command that does not say: never more than the node has free.

    ``$RBNAS_TORCH_THREADS`` if set; else ``min(available_cores(), THREAD_CAP)``, lowered (outside a SLURM
    allocation, whose cores are the job's own) to the cores the node has idle, ``cpu_count - 1-minute load
    average``, at least 1. On a loaded 2-core node (load 15) the same PGD evaluation took 20 s with 1 thread and
    190 s with 2: OpenMP threads spin against the other processes.
    """
    env = os.environ.get("RBNAS_TORCH_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"RBNAS_TORCH_THREADS must be a positive integer, got {env!r}") from None
        if n >= 1:
            return n
    n = min(available_cores(), THREAD_CAP)
    if n > 1 and not os.environ.get("SLURM_JOB_ID"):
        try:
            idle = (os.cpu_count() or n) - os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            idle = n
        n = max(1, min(n, int(idle)))
    return n


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (and the BLAS / OpenMP pools) to ``n``; return the value set.

    ``None``: :func:`default_threads` (never more than the cores the process may use). The OpenMP / MKL pools of
    numpy and scikit-learn are limited likewise (``threadpoolctl``), since their defaults also spin one thread per
    core of the node.
    """
    import torch

    if n is None:
        n = default_threads()
    n = max(1, int(n))
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)  # applies now, for the rest of the process
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    return torch.get_num_threads()


__all__ = ["THREAD_CAP", "atomic_output", "available_cores", "default_threads", "resolve_device", "seed_everything",
           "set_torch_threads"]

"""Small shared helpers: seeding, device choice, thread settings, atomic outputs."""

from __future__ import annotations

import functools

import os
from typing import TYPE_CHECKING

from .atomic import atomic_output

if TYPE_CHECKING:  # torch is imported where used: the registries and seeding below this package must not need it
    import torch


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


def device_label(device: str | torch.device) -> str:
    """What a unit ran on, as the store records it: ``"cpu AVX512 (Intel AMX BF16 VNNI)"``, ``"cpu AVX2 (AMD)"``
    (the CPU capability torch dispatches its kernels for, then the vendor and the instruction-set extensions oneDNN
    chooses its float32 convolution kernels by: float32 sums round differently across them: measured between two
    AVX-512 machines, this label's example and one whose extensions were not recorded), or ``"cuda:0 NVIDIA H100 80GB HBM3"`` (index and model: random
    streams and kernels can differ between GPU models, so the model is part of the answer). Stores made before the
    capability was recorded say ``"cpu"``; before the vendor and extensions were, ``"cpu AVX2"`` / ``"cpu AVX512"``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cpu":
        extras = cpu_kernel_features()
        return f"cpu {torch.backends.cpu.get_cpu_capability()}" + (f" ({extras})" if extras else "")
    if dev.type != "cuda":
        return str(dev)
    try:
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    except (RuntimeError, AssertionError, AttributeError):  # no usable CUDA here: the unit will say why itself
        return str(dev)


_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}


@functools.lru_cache(maxsize=1)
def cpu_kernel_features() -> str:
    """The CPU vendor and the extensions torch reports (``AMX``, ``BF16``: AVX-512 BF16, ``VNNI``), e.g. ``"Intel
    AMX BF16 VNNI"``; ``""`` where neither can be read (non-Linux, older torch)."""
    import torch

    vendor = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    raw = line.split(":", 1)[1].strip()
                    vendor = _VENDORS.get(raw, raw)
                    break
    except OSError:
        pass
    probes = (("AMX", "_is_amx_tile_supported"), ("BF16", "_is_avx512_bf16_supported"), ("VNNI", "_is_vnni_supported"))
    feats = []
    for name, probe in probes:
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                feats.append(name)
        except RuntimeError:
            pass
    return " ".join([vendor, *feats]).strip()


#: Upper bound of the default thread count: beyond it, intra-op threads of these small networks stop paying off
#: and a shared node's other users lose cores.
THREAD_CAP = 8


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``: the SLURM/cgroup/taskset allocation, not the node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """Cores of this process's allocation that the node has idle now (``cpu_count - 1-minute load``, >= 1); inside a
    SLURM allocation, whose cores are the job's own, the whole allocation."""
    n = min(available_cores(), THREAD_CAP)
    if n > 1 and not os.environ.get("SLURM_JOB_ID"):
        try:
            idle = (os.cpu_count() or n) - os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            idle = n
        n = max(1, min(n, int(idle)))
    return n


def default_threads() -> int:
    """Default torch/BLAS threads of a command that does not say: a fixed rule, so the same command gives the same
    bits (on a CPU the thread count can change how convolutions are summed).

    ``$RBNAS_TORCH_THREADS`` if set: a positive integer, or ``idle`` for :func:`idle_cores` (the cores the node has
    idle now: fast on a busy shared node, where OpenMP threads spin against other processes -- a PGD evaluation took
    20 s with 1 thread and 190 s with 2 on a 2-core node at load 15 -- but it depends on the moment, so it is an
    explicit choice). Otherwise ``min(available_cores(), THREAD_CAP)``: the cores this process may use, never the
    load average.
    """
    env = os.environ.get("RBNAS_TORCH_THREADS", "").strip()
    if env.lower() == "idle":
        return idle_cores()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"RBNAS_TORCH_THREADS must be a positive integer or 'idle', got {env!r}") from None
        if n >= 1:
            return n
        raise ValueError(f"RBNAS_TORCH_THREADS must be a positive integer or 'idle', got {env!r}")
    return min(available_cores(), THREAD_CAP)


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


__all__ = ["THREAD_CAP", "atomic_output", "available_cores", "default_threads", "device_label", "idle_cores",
           "resolve_device",
           "set_torch_threads"]

"""Small shared helpers: seeding, device choice, thread settings."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) global RNGs; return a CPU ``torch.Generator`` seeded likewise."""
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
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default: ``$RBNAS_TORCH_THREADS`` or all cores); return the value."""
    if n is None:
        n = int(os.environ.get("RBNAS_TORCH_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


__all__ = ["resolve_device", "seed_everything", "set_torch_threads"]

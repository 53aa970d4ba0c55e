"""Float precision by protocol: evaluation stages run with IEEE fp32 convolutions and matmuls (no TF32).

torch 2.14 enables TF32 for cuDNN convolutions by default (``torch.backends.cudnn.conv.fp32_precision == "tf32"``).
A TF32 rounding step (2**-11 relative) is about the change in activations that a 0.1/255 perturbation makes, so
with TF32 the small-eps columns of the grid, Square's accept test and the Hessian's tolerance would measure
rounding. :func:`ieee_fp32` sets every fp32 precision flag of torch's new API to ``"ieee"`` for the duration of a
unit and restores the previous values afterwards (also when the unit raises). Only the new per-backend API is used:
torch raises when a process mixes it with the legacy ``allow_tf32`` flags, so we never read or write those.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

#: The setting every evaluation stage runs under (recorded with each unit's result).
EVAL_PRECISION = "ieee"


def _flag_objects() -> dict[str, Any]:
    """The backend objects with an ``fp32_precision`` flag in this torch, by a stable name."""
    b = torch.backends
    candidates = {
        "cudnn.conv": getattr(getattr(b, "cudnn", None), "conv", None),
        "cudnn.rnn": getattr(getattr(b, "cudnn", None), "rnn", None),
        "cuda.matmul": getattr(getattr(b, "cuda", None), "matmul", None),
        "mkldnn.conv": getattr(getattr(b, "mkldnn", None), "conv", None),
        "mkldnn.matmul": getattr(getattr(b, "mkldnn", None), "matmul", None),
        "mkldnn.rnn": getattr(getattr(b, "mkldnn", None), "rnn", None),
    }
    return {k: o for k, o in candidates.items() if o is not None and hasattr(o, "fp32_precision")}


def precision_state() -> dict[str, str]:
    """The current fp32 precision of every backend flag, e.g. ``{"cudnn.conv": "tf32", "cuda.matmul": "none"}``."""
    return {k: str(o.fp32_precision) for k, o in _flag_objects().items()}


def describe(state: dict[str, str] | None = None) -> str:
    """A short, stable string of ``state`` (default: the current one), as recorded per unit:
    ``"cuda.matmul=ieee,cudnn.conv=ieee,..."``."""
    st = precision_state() if state is None else state
    return ",".join(f"{k}={v}" for k, v in sorted(st.items()))


def _set(state: dict[str, str]) -> None:
    objs = _flag_objects()
    for k, v in state.items():
        if k in objs:
            objs[k].fp32_precision = v


@contextlib.contextmanager
def ieee_fp32() -> Iterator[str]:
    """Run the block with IEEE fp32 convolutions and matmuls on every backend; yield :func:`describe` of the
    setting in force; restore the previous flags on exit, also when the block raises.

    Example:
        >>> with ieee_fp32() as setting:
        ...     logits = model(x)   # no TF32 anywhere
    """
    saved = precision_state()
    try:
        _set({k: EVAL_PRECISION for k in saved})
        yield describe()
    finally:
        _set(saved)


__all__ = ["EVAL_PRECISION", "describe", "ieee_fp32", "precision_state"]

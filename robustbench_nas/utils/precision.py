"""Float precision by protocol: evaluation stages run with IEEE fp32 convolutions and matmuls (no TF32).

torch 2.14 enables TF32 for cuDNN convolutions by default (``torch.backends.cudnn.conv.fp32_precision == "tf32"``).
A TF32 rounding step (2**-11 relative) is about the change in activations that a 0.1/255 perturbation makes, so
with TF32 the small-eps columns of the grid, Square's accept test and the Hessian's tolerance would measure
rounding. :func:`ieee_fp32` sets every fp32 precision flag of torch's new API to ``"ieee"`` for the duration of a
unit and restores the previous values afterwards (also when the unit raises). Torch raises when a process mixes the
new API with the legacy ``allow_tf32`` flags, so we never read or write those.

One process-wide setting sits apart from the per-backend flags: ``torch.set_float32_matmul_precision`` (``highest``
/ ``high`` / ``medium``). It writes ``cuda.matmul`` and ``mkldnn.matmul`` when called, but torch also keeps the value
itself, and the CPU matmul reads it: with ``medium``, oneDNN computes float32 matmuls in bfloat16 on CPUs with
AVX512-BF16 / AMX, although the per-backend flags may have been set back to ``none`` since. The state here holds it
as ``float32_matmul`` (in the new vocabulary: ``ieee`` / ``tf32`` / ``bf16``), so that it is recorded with every
unit and restored with the rest (a test that set ``medium`` and restored only the per-backend flags made the test
process train other weights than a fresh worker on such CPUs).
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


#: The key of ``torch.get_float32_matmul_precision()`` in :func:`precision_state`, and its values in the new API's words.
LEGACY_MATMUL = "float32_matmul"
_FROM_LEGACY = {"highest": "ieee", "high": "tf32", "medium": "bf16"}
_TO_LEGACY = {v: k for k, v in _FROM_LEGACY.items()}


def precision_state() -> dict[str, str]:
    """The current fp32 precision of every backend flag and of the process-wide float32 matmul setting, e.g.
    ``{"cudnn.conv": "tf32", "cuda.matmul": "none", ..., "float32_matmul": "ieee"}`` (``float32_matmul`` absent
    where torch refuses to read it: the per-backend matmul flags were set against it, e.g. ``cuda.matmul`` ``tf32``
    with ``highest``)."""
    state = {k: str(o.fp32_precision) for k, o in _flag_objects().items()}
    try:
        state[LEGACY_MATMUL] = _FROM_LEGACY[torch.get_float32_matmul_precision()]
    except RuntimeError:  # torch refuses to read it once the new API set the matmul flags against it: they decide
        pass
    return state


def describe(state: dict[str, str] | None = None) -> str:
    """A short, stable string of ``state`` (default: the current one), as recorded per unit:
    ``"cuda.matmul=ieee,cudnn.conv=ieee,..."``."""
    st = precision_state() if state is None else state
    return ",".join(f"{k}={v}" for k, v in sorted(st.items()))


def _set(state: dict[str, str]) -> None:
    # the process-wide setting first: setting it also writes cuda.matmul / mkldnn.matmul, set after it from ``state``
    if LEGACY_MATMUL in state:
        torch.set_float32_matmul_precision(_TO_LEGACY[state[LEGACY_MATMUL]])
    objs = _flag_objects()
    for k, v in state.items():
        if k in objs:
            objs[k].fp32_precision = v


@contextlib.contextmanager
def saved_precision() -> Iterator[None]:
    """Restore every flag of :func:`precision_state` on leaving the block, whatever the block set (also when it
    raises)."""
    saved = precision_state()
    try:
        yield
    finally:
        _set(saved)


@contextlib.contextmanager
def ieee_fp32() -> Iterator[str]:
    """Run the block with IEEE fp32 convolutions and matmuls on every backend; yield :func:`describe` of the
    setting in force; restore the previous flags on exit, also when the block raises.

    Example:
        >>> with ieee_fp32() as setting:
        ...     logits = model(x)   # no TF32 anywhere
    """
    with saved_precision():
        # the process-wide matmul setting too, also where it could not be read
        _set({**{k: EVAL_PRECISION for k in precision_state()}, LEGACY_MATMUL: EVAL_PRECISION})
        yield describe()


__all__ = ["EVAL_PRECISION", "LEGACY_MATMUL", "describe", "ieee_fp32", "precision_state", "saved_precision"]

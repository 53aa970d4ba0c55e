"""Average pooling that takes PyTorch's vectorised CPU kernel, with the same values bit for bit.

PyTorch's CPU ``avg_pool2d`` (and its backward) on an NCHW tensor runs a scalar loop per output pixel, while the
channels-last kernel vectorises over channels. Both sum a window in the same order (rows, then columns) and divide
by the same count, and the backward adds each output's share into the same input pixels in the same order, so the
values are identical; only the speed differs (record ``avg_pool_channels_last_vs_builtin``, forward + backward on
NB201's three cell shapes at batch 64, one thread: 4.55x, 5.2x on 16 x 32 x 32; all 16 proxies of a cell: 1.23x on
average, record ``proxies_all_channels_last_pool_vs_builtin``).

:class:`AvgPool2d` is a drop-in :class:`torch.nn.AvgPool2d` (a subclass: ``isinstance`` checks, hooks, FLOP
counting and state dicts see no difference) whose CPU float32 / float64 forward goes through the channels-last
kernel and hands back NCHW tensors. Why an ``autograd.Function`` and not ``x.contiguous(channels_last)`` inline:
inline conversions add nodes to the autograd graph and let a channels-last gradient flow on into the convolutions,
and either changes the order in which the backward pass adds gradients (and which convolution kernel oneDNN
picks), so weight gradients would differ in the last bits. The functions below give the graph exactly the nodes and
edges of the built-in op (one node forward; in a double backward one node with edges to the incoming gradient and
to the input, the latter receiving zeros, as PyTorch's ``AvgPool2DBackwardBackward0``). Other devices and dtypes
(CUDA, half precision) run the built-in op unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["AvgPool2d", "builtin_avg_pool", "channels_last_avg_pool2d"]

_CL = torch.channels_last


def _pool_args(module: nn.AvgPool2d) -> tuple[Any, ...]:
    k = module.kernel_size
    s = module.stride if module.stride is not None else k
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    return (pair(k), pair(s), pair(module.padding), bool(module.ceil_mode), bool(module.count_include_pad),
            module.divisor_override)


class _PoolForward(torch.autograd.Function):
    """``avg_pool2d`` through the channels-last kernel; backward: :class:`_PoolBackward`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, args: tuple[Any, ...]) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.args = args
        return torch.ops.aten.avg_pool2d(x.contiguous(memory_format=_CL), *args).contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return _PoolBackward.apply(grad, x, ctx.args), None


class _PoolBackward(torch.autograd.Function):
    """``avg_pool2d_backward`` through the channels-last kernel; its own gradient is the pool of the incoming one
    (and zeros for the input, whose values the backward does not read), as PyTorch's formula."""

    @staticmethod
    def forward(ctx: Any, grad: torch.Tensor, x: torch.Tensor, args: tuple[Any, ...]) -> torch.Tensor:  # type: ignore[override]
        ctx.args = args
        ctx.x_meta = (x.shape, x.dtype, x.device)
        # the kernel reads only the input's shape and memory format: an empty channels-last tensor, not a copy of x
        like = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=_CL)
        return torch.ops.aten.avg_pool2d_backward(grad.contiguous(memory_format=_CL), like, *args).contiguous()

    @staticmethod
    def backward(ctx: Any, gg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        shape, dtype, device = ctx.x_meta
        return _PoolForward.apply(gg, ctx.args), torch.zeros(shape, dtype=dtype, device=device), None


_BUILTIN = [False]


@contextlib.contextmanager
def builtin_avg_pool() -> Iterator[None]:
    """Within the block :class:`AvgPool2d` runs PyTorch's built-in op on every input (the baseline of the benchmark
    ``proxies_all_channels_last_pool_vs_builtin`` and of the identity tests)."""
    old, _BUILTIN[0] = _BUILTIN[0], True
    try:
        yield
    finally:
        _BUILTIN[0] = old


def _takes_fast_path(x: torch.Tensor) -> bool:
    return (not _BUILTIN[0] and x.device.type == "cpu" and x.dim() == 4 and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
            and not _functorch_active())


def _functorch_active() -> bool:
    # torch.func transforms (jacrev, vmap, ...) need an autograd.Function with setup_context / vmap rules: there the
    # built-in op runs (same values)
    probe = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(probe()) if probe is not None else False


def channels_last_avg_pool2d(module: nn.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the same values bit for bit (forward, backward and double backward), through the
    channels-last CPU kernel when ``x`` is a contiguous 4-D CPU float32 / float64 tensor.

    Shape: ``x`` (N, C, H, W); returns (N, C, H', W'), NCHW-contiguous like the built-in op.
    """
    if not _takes_fast_path(x):
        return nn.AvgPool2d.forward(module, x)
    return _PoolForward.apply(x, _pool_args(module))


class AvgPool2d(nn.AvgPool2d):
    """:class:`torch.nn.AvgPool2d` with the same values, faster on the CPU (see the module docstring).

    Example:
        >>> pool = AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        >>> x = torch.rand(2, 4, 8, 8)
        >>> torch.equal(pool(x), nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(x))
        True
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last_avg_pool2d(self, x)

"""The channels-last average pool (robustbench_nas.models.pooling) gives PyTorch's built-in values bit for bit.

Truth is PyTorch's own ``torch.nn.AvgPool2d`` on the same inputs (``builtin_avg_pool`` switches our module to it):
forward, backward and double backward of the pool alone, and weight / input gradients and a GraSP-style
Hessian-gradient product of full-size NB201 networks (C=16, N=5, batch 64), where the autograd graph's shape
decides the order in which gradients are summed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_nas.models.pooling import AvgPool2d, builtin_avg_pool, channels_last_avg_pool2d
from robustbench_nas.proxies import init_model
from robustbench_nas.proxies.input_derivatives import is_piecewise_linear
from robustbench_nas.proxies.rescale import rescalable
from robustbench_nas.search_spaces import get_search_space

POOL_HEAVY = "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"
MIXED = "|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|none~1|avg_pool_3x3~2|"


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int64 if t.dtype == torch.float64 else torch.int32)


def _assert_bitwise(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(_bits(a), _bits(b)), f"max |diff| {float((a - b).abs().max())}"  # also the sign of zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,kernel,stride,padding,cip", [
    ((64, 16, 32, 32), 3, 1, 1, False),  # NB201 cell op, first stage
    ((64, 64, 8, 8), 3, 1, 1, False),  # last stage
    ((5, 7, 11, 9), 3, 2, 1, False),  # DARTS reduction edge, odd sizes
    ((4, 6, 10, 10), 2, 2, 0, True),  # ResNet shortcut pool
    ((3, 5, 9, 9), 3, 2, 1, True),
])
def test_pool_forward_backward_and_double_backward_are_the_builtin_bits(shape, kernel, stride, padding, cip, dtype):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(*shape, generator=g, dtype=dtype)
    v = torch.randn(*AvgPool2d(kernel, stride, padding, count_include_pad=cip)(x0).shape, generator=g, dtype=dtype)
    u = torch.randn(*shape, generator=g, dtype=dtype)
    pool = AvgPool2d(kernel, stride, padding, count_include_pad=cip)
    results = {}
    for builtin in (True, False):
        x = x0.clone().requires_grad_(True)
        with builtin_avg_pool() if builtin else torch.enable_grad():
            y = pool(x * x)  # x feeds the pool through a node, so the double backward reaches x twice
            (gx,) = torch.autograd.grad(y, x, v, create_graph=True)
            (ggx,) = torch.autograd.grad((gx * u).sum(), x)
        results[builtin] = (y, gx, ggx)
    for a, b in zip(results[True], results[False]):
        _assert_bitwise(a, b)
    assert results[False][0].is_contiguous() and results[False][1].is_contiguous()


def test_fast_path_only_where_it_is_exact_and_module_is_still_an_avgpool():
    pool = AvgPool2d(3, 1, 1, count_include_pad=False)
    assert isinstance(pool, nn.AvgPool2d)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    assert type(pool(x).grad_fn).__name__ == "_PoolForwardBackward"
    with builtin_avg_pool():
        assert type(pool(x).grad_fn).__name__ == "AvgPool2DBackward0"
    # bfloat16, a 3-D input and a channels-last input take the built-in op (no equality shown for them here)
    for other in (x.detach().bfloat16(), x.detach()[0], x.detach().contiguous(memory_format=torch.channels_last)):
        out = channels_last_avg_pool2d(pool, other.requires_grad_(True))
        assert type(out.grad_fn).__name__ == "AvgPool2DBackward0"


def _full_network_derivatives(arch: str, builtin: bool) -> list[torch.Tensor]:
    """Train-mode CE gradients of every weight and of the input, and GraSP's Hessian-gradient product."""
    net = init_model(arch, seed=0)
    net.train()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(64, 3, 32, 32, generator=g).requires_grad_(True)
    y = torch.randint(0, 10, (64,), generator=g)
    weights = [p for p in net.parameters() if p.dim() > 1]
    with builtin_avg_pool() if builtin else torch.enable_grad():
        loss = nn.functional.cross_entropy(net(x), y)
        grads = torch.autograd.grad(loss, weights + [x], create_graph=True)
        z = sum((gr * gr.detach()).sum() for gr in grads[:-1])
        hg = torch.autograd.grad(z, weights)
    return [t.detach() for t in (*grads, *hg)]


@pytest.mark.parametrize("arch", [POOL_HEAVY, MIXED])
def test_full_size_nb201_gradients_and_hessian_products_are_the_builtin_bits(arch):
    assert get_search_space("nb201").decode(arch) is not None
    ref = _full_network_derivatives(arch, builtin=True)
    ours = _full_network_derivatives(arch, builtin=False)
    assert len(ref) == len(ours)
    for a, b in zip(ref, ours):
        _assert_bitwise(a, b)


def test_networks_keep_their_structure_checks():
    net = init_model(POOL_HEAVY, seed=0)
    assert any(type(m) is AvgPool2d for m in net.modules())
    assert is_piecewise_linear(net.eval())
    assert rescalable(init_model(POOL_HEAVY, seed=0)) == rescalable(_with_builtin_pools(init_model(POOL_HEAVY, seed=0)))
    space = get_search_space("nb201")
    assert space.count_flops(init_model(POOL_HEAVY, seed=0)) == space.count_flops(
        _with_builtin_pools(init_model(POOL_HEAVY, seed=0)))


def _with_builtin_pools(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if type(m) is AvgPool2d:
            m.__class__ = nn.AvgPool2d
    return net


def test_torch_func_transforms_take_the_builtin_op() -> None:
    pool = AvgPool2d(3, 1, 1, count_include_pad=False)
    x = torch.rand(2, 3, 6, 6)
    jac = torch.func.jacrev(lambda t: pool(t).sum(dim=(2, 3)))(x)  # raised in the autograd.Function before
    with builtin_avg_pool():
        ref = torch.func.jacrev(lambda t: pool(t).sum(dim=(2, 3)))(x)
    _assert_bitwise(jac, ref)

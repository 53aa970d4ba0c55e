"""The fast proxy engine (``engine="fast"``): each proxy within its stated tolerance of the reference path.

Independent truths: the dense input Hessian (``torch.autograd.functional.hessian``) for the Jacobian-based
eigenvalue; the unscaled float64 network for the power-of-two rescaling; the one-at-a-time path for every proxy, on
small nets here and, for the proxies whose fast computation differs, on 20 full-size cells from a stored reference (``tests/data/proxy_reference_20cells.json``,
written once by ``python -m benchmarks.proxy_reference_cells``; one of its cells is recomputed so it cannot go stale).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from robustbench_nas.proxies import compute_proxies, init_model, list_proxies
from robustbench_nas.proxies._utils import calibrate_batchnorm, remove_batchnorm
from robustbench_nas.proxies.engine import FAST_TOLERANCE
from robustbench_nas.proxies.input_derivatives import hessian_eig_from_jacobian, input_jacobian, is_piecewise_linear
from robustbench_nas.proxies.rescale import ActivationRescaler, rescalable

REFERENCE = Path(__file__).resolve().parent / "data" / "proxy_reference_20cells.json"
CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def _batch(n: int, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _rel(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / abs(b) if b != 0 else math.inf


def test_hessian_eig_from_jacobian_is_the_dense_hessian_top_eigenvalue() -> None:
    # float64 small net: top eigenvalue of the autograd Hessian of each image's CE, formed densely
    x, y = _batch(3, seed=2, size=8)
    x = x.double()
    net = calibrate_batchnorm(init_model(MIXED, 0, C=4, N=1).double(), x)
    assert is_piecewise_linear(net)
    logits, jac, sq = input_jacobian(net, x)
    eig = hessian_eig_from_jacobian(logits, jac)
    for i in range(3):
        h = torch.autograd.functional.hessian(lambda z: F.cross_entropy(net(z.unsqueeze(0)), y[i : i + 1]), x[i])
        dense = torch.linalg.eigvalsh(h.reshape(192, 192))[-1]
        assert float(eig[i]) == pytest.approx(float(dense), rel=1e-10)
        assert float(sq[i]) == pytest.approx(float(jac[i].pow(2).sum()), rel=1e-12)
    with pytest.raises(ValueError, match="logits"):
        hessian_eig_from_jacobian(logits[:, :5], jac)


def test_piecewise_linear_check_rejects_smooth_activations() -> None:
    net = init_model(MIXED, 0, C=4, N=1)
    assert is_piecewise_linear(net)
    net.lastact[1] = nn.GELU()  # the Hessian now has a second-derivative term: the Jacobian formula would be wrong
    assert not is_piecewise_linear(net)


def _surrogate(arch: str, dtype: torch.dtype, C: int = 16, N: int = 5) -> nn.Module:
    net = remove_batchnorm(init_model(arch, 0, C=C, N=N)).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    return net


def test_rescaler_gives_the_true_logits_times_a_power_of_two() -> None:
    # the full-size BN-free absolute-weight surrogate: logits ~1e47 in float64, past float32's range
    x, _ = _batch(2)
    ref_net = _surrogate(CONV, torch.float64)
    with torch.no_grad():
        ref = ref_net(x.double())
        assert float(ref.abs().max()) > 1e39  # the case the rescaler exists for
        with ActivationRescaler(ref_net) as r64:
            scaled64 = ref_net(x.double())
        assert r64.log2_scale > 0
        # powers of two and a scaled bias: the same float64 numbers, up to the bias's rounding
        assert torch.allclose(scaled64 * 2.0**r64.log2_scale, ref, rtol=1e-12, atol=0)
        net32 = _surrogate(CONV, torch.float32)
        assert not torch.isfinite(net32(x)).all()  # without rescaling float32 overflows
        with ActivationRescaler(net32) as r32:
            scaled32 = net32(x)
        assert torch.isfinite(scaled32).all()
        assert torch.allclose(scaled32.double() * 2.0**r32.log2_scale, ref, rtol=1e-4, atol=0)


def test_rescalable_only_for_homogeneous_chains() -> None:
    net = init_model(MIXED, 0, C=4, N=1)
    assert not rescalable(net)  # BN still in: not homogeneous
    net = remove_batchnorm(net)
    assert rescalable(net)
    conv = next(m for m in net.cells.modules() if isinstance(m, nn.Conv2d))
    conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
    assert not rescalable(net)
    with pytest.raises(ValueError, match="homogeneous"):
        ActivationRescaler(net)


@pytest.mark.parametrize("names", [None, ["croze"], ["hessian_eig"], ["jacobian_fro"], ["grasp", "hessian_eig", "zen"]])
def test_fast_small_net_matches_reference(names: list[str] | None) -> None:
    # proxies without a stated tolerance are the reference's bits; the others within their tolerance
    x, y = _batch(8, seed=1)
    sep = compute_proxies(MIXED, x, y, names, seed=0, C=8, N=2, engine="separate")
    fast = compute_proxies(MIXED, x, y, names, seed=0, C=8, N=2)  # the default engine
    assert list(fast) == list(sep) == (names or list_proxies())
    for p in fast:
        assert _rel(fast[p], sep[p]) <= FAST_TOLERANCE.get(p, 0.0), (p, fast[p], sep[p])


def _reference() -> dict:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not written (python -m benchmarks.proxy_reference_cells)")
    from benchmarks.proxy_reference_cells import reference_batch

    try:
        reference_batch()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return json.loads(REFERENCE.read_text())


@pytest.mark.slow
def test_fast_within_tolerance_on_20_full_size_cells() -> None:
    from scipy.stats import spearmanr

    from benchmarks.proxy_reference_cells import reference_batch

    ref = _reference()
    # every proxy whose fast computation differs from the reference's (the other 13 run the very same group
    # functions in both engines: bit for bit on full-size cells in tests/test_proxy_engine.py)
    assert len(ref["cells"]) >= 20 and set(FAST_TOLERANCE) | {"jacobian_fro"} <= set(ref["proxies"])
    x, y = reference_batch()
    assert [int(v) for v in y] == ref["labels"]
    torch.set_num_threads(1)
    fast = [compute_proxies(c["arch"], x, y, ref["proxies"], seed=ref["seed"], C=ref["C"], N=ref["N"],
                            engine="fast") for c in ref["cells"]]
    bad = [(c["uid"], p, f[p], c["values"][p]) for c, f in zip(ref["cells"], fast) for p in ref["proxies"]
           if _rel(f[p], c["values"][p]) > FAST_TOLERANCE.get(p, 0.0)]
    assert bad == []
    for p in ref["proxies"]:
        a = np.array([f[p] for f in fast])
        b = np.array([c["values"][p] for c in ref["cells"]])
        if np.array_equal(a, b, equal_nan=True):
            continue  # identical values (the bitwise proxies; params / flops can tie across cells)
        assert spearmanr(a, b).statistic >= 0.999, p


@pytest.mark.slow
def test_reference_fixture_is_current() -> None:
    # the stored reference must still be what the one-at-a-time path computes (else the fast test compares with a
    # stale definition): recompute its cheapest cell, every stored proxy, bit for bit
    from benchmarks.proxy_reference_cells import reference_batch

    ref = _reference()
    cell = min(ref["cells"], key=lambda c: c["cpu_s"])
    x, y = reference_batch()
    torch.set_num_threads(1)
    now = compute_proxies(cell["arch"], x, y, ref["proxies"], seed=ref["seed"], C=ref["C"], N=ref["N"],
                          engine="separate")
    assert {p: v for p, v in now.items() if _rel(v, cell["values"][p]) != 0.0} == {}

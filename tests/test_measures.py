"""Robustness measures vs independent computations: jacrev, finite differences, dense Hessian eigvalsh/trace."""

from __future__ import annotations

import copy

import pytest
import torch

from robustbench_nas.measures import (
    MeasureConfig,
    compute_measures,
    hessian_max_eig,
    hessian_trace,
    jacobian_norms,
    jacobian_projection,
    list_measures,
    measure_outputs,
)
from robustbench_nas.models import build_model

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def _model(hw: int = 8, seed: int = 0) -> torch.nn.Module:
    """A small NB201 net in float64 with non-default BN running statistics, in eval mode."""
    torch.manual_seed(seed)
    net = build_model(ARCH, num_classes=5, C=4, N=1).double()
    net.train()
    with torch.no_grad():
        net(torch.rand(16, 3, hw, hw, dtype=torch.float64))  # move the running stats away from (0, 1)
    return net.eval()


def _batch(n: int, hw: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, hw, hw, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)


def test_jacobian_exact_matches_jacrev() -> None:
    net = _model(hw=4)
    x, _ = _batch(2, 4)
    got = jacobian_norms(net, x, batch_size=1).sq
    for i in range(2):
        J = torch.func.jacrev(lambda xi: net(xi.unsqueeze(0))[0])(x[i])  # (K, C, H, W)
        assert got[i].item() == pytest.approx(J.pow(2).sum().item(), rel=1e-10)


def test_jacobian_exact_matches_finite_differences() -> None:
    net = _model(hw=4)
    x, _ = _batch(2, 4)
    got = jacobian_norms(net, x).fro
    h = 1e-6
    for i in range(2):
        xi = x[i : i + 1]
        d = xi.numel()
        cols = []
        with torch.no_grad():
            for j in range(d):
                e = torch.zeros(d, dtype=torch.float64)
                e[j] = h
                e = e.view_as(xi)
                cols.append((net(xi + e) - net(xi - e))[0] / (2 * h))
        J_fd = torch.stack(cols, 1)  # (K, D)
        assert got[i].item() == pytest.approx(J_fd.norm().item(), rel=1e-5)


def test_projection_estimator_is_unbiased_with_honest_standard_error() -> None:
    net = _model(hw=4)
    x, _ = _batch(4, 4)
    exact = jacobian_norms(net, x).mean_sq
    r = jacobian_projection(net, x, n_proj=100, seed=3)
    assert r.samples.shape == (4, 100)
    assert abs(r.mean_sq - exact) < 4 * r.mean_sq_se
    # the standard error is of the right size: re-estimates with other seeds scatter by about se
    reps = torch.tensor([jacobian_projection(net, x, n_proj=100, seed=s).mean_sq for s in range(10, 16)])
    assert 0.3 * r.mean_sq_se < reps.std().item() < 3 * r.mean_sq_se
    # the square-root estimate approaches the exact mean Frobenius norm
    assert r.mean_fro == pytest.approx(jacobian_norms(net, x).mean_fro, rel=0.05)


def test_projection_is_seeded() -> None:
    net = _model()
    x, _ = _batch(3, 8)
    a = jacobian_projection(net, x, n_proj=4, seed=5).samples
    b = jacobian_projection(net, x, n_proj=4, seed=5).samples
    c = jacobian_projection(net, x, n_proj=4, seed=6).samples
    assert torch.equal(a, b) and not torch.equal(a, c)


def _dense_hessians(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for i in range(x.shape[0]):
        def loss(xi: torch.Tensor, i: int = i) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(net(xi.view(1, *x.shape[1:])), y[i : i + 1])

        H = torch.autograd.functional.hessian(loss, x[i].reshape(-1))
        out.append(0.5 * (H + H.T))
    return out


def test_hessian_max_eig_matches_dense_eigvalsh() -> None:
    net = _model(hw=4)
    x, y = _batch(3, 4)
    Hs = _dense_hessians(net, x, y)
    r = hessian_max_eig(net, x, y, max_iter=2000, tol=1e-12, seed=0, batch_size=2)
    for i, H in enumerate(Hs):
        ev = torch.linalg.eigvalsh(H)
        assert ev.min().item() > -1e-8 * ev.max().item()  # PSD for a piecewise-linear network (module docstring)
        assert r.eig[i].item() == pytest.approx(ev.max().item(), rel=1e-6)
    assert bool(r.converged.all()) and int(r.iters.max()) <= 2000
    assert r.tol == 1e-12 and r.max_iter == 2000
    lz = hessian_max_eig(net, x, y, max_iter=48, tol=1e-10, seed=0, batch_size=2, method="lanczos")
    for i, H in enumerate(Hs):
        assert lz.eig[i].item() == pytest.approx(torch.linalg.eigvalsh(H).max().item(), rel=1e-8)
    assert bool(lz.converged.all()) and int(lz.iters.max()) < int(r.iters.max())


def test_hessian_trace_hutchinson_matches_dense_trace() -> None:
    net = _model(hw=4)
    x, y = _batch(3, 4)
    exact = torch.stack([H.trace() for H in _dense_hessians(net, x, y)]).mean().item()
    r = hessian_trace(net, x, y, n_samples=100, seed=1)
    assert abs(r.mean - exact) < 4 * r.se
    assert r.se < 0.2 * abs(exact)


def test_compute_measures_keys_seeding_and_no_side_effects() -> None:
    net = _model()
    net.train()  # compute_measures must switch to eval itself and restore this
    x, y = _batch(4, 8)
    before = copy.deepcopy(net.state_dict())
    cfg = MeasureConfig(n_proj=4, power_iters=20, power_tol=1e-4, hutchinson_samples=4, batch_size=3)
    a = compute_measures(net, x, y, seed=0, config=cfg)
    assert list(a) == measure_outputs(list_measures())
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert a == compute_measures(net, x, y, seed=0, config=cfg)
    b = compute_measures(net, x, y, seed=1, config=cfg)
    assert a["jacobian_fro"] == b["jacobian_fro"]  # exact: seed-independent
    assert a["jacobian_fro_proj"] != b["jacobian_fro_proj"]
    assert a["hessian_eig_tol"] == 1e-4 and a["jacobian_fro_proj_n_proj"] == 4
    # the exact norm and the eigenvalue from compute_measures equal the pure functions'
    net.eval()
    assert a["jacobian_fro"] == pytest.approx(jacobian_norms(net, x).mean_fro, rel=1e-12)


def test_measures_reject_bad_input() -> None:
    net = _model()
    x, y = _batch(2, 8)
    with pytest.raises(KeyError, match="unknown measure"):
        compute_measures(net, x, y, ["jacobian_frobenius"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        compute_measures(net, x[0], y)
    with pytest.raises(ValueError, match="shape"):
        compute_measures(net, x, y[:1])
    with pytest.raises(ValueError, match="NaN"):
        compute_measures(net, x * float("nan"), y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # pixels in 0..255: the models normalise [0, 1] inputs
        compute_measures(net, x * 255, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        jacobian_norms(net.eval(), x - 0.5)
    net.train()
    with pytest.raises(ValueError, match="training mode"):
        jacobian_norms(net, x)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_hessian_active_subset_is_bitwise_the_full_batch(method: str) -> None:
    """Rebuilding the graph on the unconverged images (the default) gives the full-batch iteration's bits.

    Full-size cell (C=16, N=5), float32, 64 images in chunks of 32 as the ``hessian_eig`` proxy runs it; the images
    converge at different iterations (checked), so the rebuild really happens.
    """
    from robustbench_nas.proxies._utils import calibrate_batchnorm

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    net = calibrate_batchnorm(build_model(ARCH, num_classes=10, C=16, N=5), x)
    full = hessian_max_eig(net, x, y, max_iter=12, tol=1e-3, seed=0, method=method, shrink=0.0)
    active = hessian_max_eig(net, x, y, max_iter=12, tol=1e-3, seed=0, method=method)
    assert int(full.iters.min()) < int(full.iters.max())  # uneven convergence: the subset path was exercised
    assert torch.equal(full.eig, active.eig) and torch.equal(full.iters, active.iters)
    assert torch.equal(full.converged, active.converged)


def test_measures_restore_each_modules_own_mode() -> None:
    """A caller's frozen BatchNorm (eval inside a training model) stays frozen after compute_measures, as after an
    attack; the former ``model.train(was_training)`` set every module to the top module's flag."""
    net = _model()
    x, y = _batch(2, 8)
    net.train()
    frozen = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)][:2]
    for m in frozen:
        m.eval()
    before = {name: m.training for name, m in net.named_modules()}
    compute_measures(net, x, y, ["jacobian_fro"])
    assert {name: m.training for name, m in net.named_modules()} == before
    assert net.training and not any(m.training for m in frozen)

"""Zero-cost proxies vs hand-written formulas (NumPy), NumPy slogdet, the foundation's counts, and invariants."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch import nn

from robustbench_nas.models import build_model, count_flops, count_params
from robustbench_nas.proxies import compute_model_proxies, compute_proxies, init_model, list_proxies
from robustbench_nas.proxies.croze import _layer_feature_index
from robustbench_nas.proxies.epe_nas import epe_nas_score
from robustbench_nas.proxies.jacob_cov import jacob_cov_score

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
STANDARD = ["params", "flops", "grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "nwot", "zen",
            "epe_nas", "plain", "l2_norm"]


def _batch(n: int = 8, hw: int = 8, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, hw, hw, generator=g), torch.randint(0, k, (n,), generator=g)


def test_registry_has_the_standard_and_robust_proxies() -> None:
    names = list_proxies()
    assert set(STANDARD) <= set(names)
    assert {"croze", "jacobian_fro", "hessian_eig"} <= set(list_proxies(robust=True))
    assert not set(STANDARD) & set(list_proxies(robust=True))


def test_params_and_flops_are_the_foundation_counts() -> None:
    x, y = _batch(hw=32)
    net = init_model(ARCH, 0, C=4, N=1)
    v = compute_model_proxies(net, x, y, ["params", "flops"])
    assert v["params"] == count_params(net) / 1e6
    assert v["flops"] == count_flops(net, (3, 32, 32)).nb201 / 1e6


# ---- a two-layer MLP whose gradients we write out by hand in NumPy -------------------------------------------
def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def _mlp_by_hand(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    X = x.reshape(x.shape[0], -1).double().numpy()
    W1, b1 = net[1].weight.detach().numpy(), net[1].bias.detach().numpy()
    W2, b2 = net[3].weight.detach().numpy(), net[3].bias.detach().numpy()
    n = X.shape[0]
    a1 = X @ W1.T + b1
    h = np.maximum(a1, 0)
    z = h @ W2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[y.numpy()]) / n  # d mean-CE / d logits
    gW2 = dz.T @ h
    da1 = (dz @ W2) * (a1 > 0)
    gW1 = da1.T @ X
    fisher = sum(0.5 * np.mean((a * g) ** 2, axis=0).sum() * W.shape[1] for a, g, W in ((a1, da1, W1), (z, dz, W2)))
    return {
        "grad_norm": np.linalg.norm(gW1) + np.linalg.norm(gW2),
        "snip": np.abs(W1 * gW1).sum() + np.abs(W2 * gW2).sum(),
        "plain": (W1 * gW1).sum() + (W2 * gW2).sum(),
        "fisher": fisher,
        "l2_norm": np.linalg.norm(W1) + np.linalg.norm(W2),
    }


def test_gradient_proxies_match_hand_written_formulas() -> None:
    net = _mlp()
    x, y = _batch(n=16, hw=4, k=3)
    x = x.double()
    want = _mlp_by_hand(net, x, y)
    got = compute_model_proxies(net, x, y, list(want), num_classes=3)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-10), k


def test_synflow_matches_hand_computed_path_sum() -> None:
    # Conv(3->2, 3x3, pad 1, no bias) -> ReLU -> Linear(2*4*4 -> 4, no bias). With |weights| and an all-ones input
    # every ReLU is the identity, R = sum of outputs is bilinear in (W1, W2), so sum |w dR/dw| = 2 R (Euler).
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(32, 4, bias=False))
    W1 = np.abs(net[0].weight.detach().double().numpy())
    W2 = np.abs(net[4].weight.detach().double().numpy())
    ones = np.pad(np.ones((3, 4, 4)), ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((2, 4, 4))
    for o in range(2):
        for i in range(4):
            for j in range(4):
                conv[o, i, j] = (W1[o] * ones[:, i : i + 3, j : j + 3]).sum()
    R = (W2 @ conv.reshape(-1)).sum()
    x, y = _batch(n=2, hw=4, k=4)
    got = compute_model_proxies(net, x, y, ["synflow"], num_classes=4)["synflow"]
    assert got == pytest.approx(2 * R, rel=1e-12)  # BN removed, float64, as the reference


def test_nwot_equals_numpy_slogdet_of_the_hamming_kernel() -> None:
    x, y = _batch(n=12, hw=8)
    net = init_model(ARCH, 3, C=4, N=1)
    got = compute_model_proxies(net, x, y, ["nwot"])["nwot"]
    ref = copy.deepcopy(net).train()
    codes: list[np.ndarray] = []
    hooks = [m.register_forward_pre_hook(lambda m, i: codes.append((i[0].reshape(12, -1) > 0).numpy()))
             for m in ref.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        ref(x)
    for h in hooks:
        h.remove()
    c = np.concatenate(codes, axis=1).astype(np.float64)
    K = c.shape[1] - cdist(c, c, metric="cityblock")  # shared activation pattern = units - Hamming distance
    assert got == pytest.approx(np.linalg.slogdet(K)[1], rel=1e-10)


def test_jacob_cov_uses_the_normalised_input_jacobian() -> None:
    x, y = _batch(n=8, hw=8)
    net = init_model(ARCH, 1, C=4, N=1)
    got = compute_model_proxies(net, x, y, ["jacob_cov"])["jacob_cov"]
    ref = copy.deepcopy(net).train()
    xr = x.clone().requires_grad_(True)
    out = ref(xr)
    (g,) = torch.autograd.grad(out.sum(), xr)
    std = torch.tensor(ref.config["std"]).view(1, 3, 1, 1)
    rows = (g * std).reshape(8, -1).double().numpy()  # chain rule: d/dz = d/dx * std for z = (x - mean) / std
    v = np.linalg.eigvals(np.corrcoef(rows)).real
    want = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert got == pytest.approx(want, rel=1e-6)
    assert jacob_cov_score(rows) == pytest.approx(want, rel=1e-9)


#: a cell whose output never depends on its input (node 3 = conv of node 2 = pool of node 1 = none(x) = 0)
DISCONNECTED = "|none~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_3x3~2|"


def test_jacob_cov_is_nan_where_undefined_as_in_the_references() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(6, 20))
    assert np.isfinite(jacob_cov_score(rows))
    rows[2] = 0.0  # an image whose Jacobian is constant: no correlation with the others
    assert np.isnan(jacob_cov_score(rows))
    # the whole cell: every Jacobian is zero; the references' try/except gives NaN, not an error (the complete
    # table's run failed on uid 879 before); the other proxies are what their references compute for it
    x, y = _batch(8, 16)
    for engine in ("fast", "separate"):
        v = compute_proxies(DISCONNECTED, x, y, ["jacob_cov", "epe_nas", "nwot", "jacobian_fro", "hessian_eig",
                                                 "grad_norm", "synflow"], seed=0, C=4, N=1, engine=engine)
        assert np.isnan(v["jacob_cov"]) and np.isnan(v["epe_nas"]), engine
        assert v["nwot"] == -np.inf, engine  # slogdet of a singular kernel, as NASWOT's reference
        assert v["jacobian_fro"] == v["hessian_eig"] == v["grad_norm"] == v["synflow"] == 0.0, engine


def test_epe_nas_score_by_hand() -> None:
    J = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.5], [3.0, 1.0, 0.0], [0.0, 1.0, 5.0], [2.0, 2.0, 1.0]])
    labels = np.array([0, 0, 1, 1, 2])
    want = 0.0
    for rows in (J[:2], J[2:4]):
        r = np.corrcoef(rows)[0, 1]
        want += abs(2 * np.log(1 + 1e-5) + 2 * np.log(abs(r) + 1e-5))
    want += abs(np.log(1 + 1e-5))  # a class with one image contributes log(1 + k), as in the reference
    assert epe_nas_score(J, labels, num_classes=10) == pytest.approx(want, rel=1e-12)


def test_croze_pairs_layers_with_the_reference_features() -> None:
    net = build_model(ARCH, C=4, N=5)
    idx = _layer_feature_index(net, 5)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert idx[net.stem[0]] == 0 and idx[net.classifier] == 4
    # the reference counts the cells seen *including* the current one: cells 1-4 -> 0, cell 5 -> 1, ...
    assert idx[net.cells[0].edges[0][1]] == 0 and idx[net.cells[4].edges[0][1]] == 1
    assert idx[net.cells[5].conv_a[1]] == 1 and idx[net.cells[11].conv_a[1]] == 2
    assert idx[net.cells[16].edges[0][1]] == 3
    assert sorted(set(idx[m] for m in convs)) == [0, 1, 2, 3, 4]


def test_all_proxies_finite_seeded_and_leave_the_model_alone() -> None:
    x, y = _batch(n=8, hw=8)
    net = init_model(ARCH, 0, C=4, N=1)
    net.eval()
    before = copy.deepcopy(net.state_dict())
    rng = torch.random.get_rng_state()
    a = compute_model_proxies(net, x, y, seed=0)
    assert torch.equal(rng, torch.random.get_rng_state())  # global RNG untouched
    assert list(a) == list_proxies() and all(np.isfinite(v) for v in a.values()), a
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert a == compute_model_proxies(net, x, y, seed=0)


def test_compute_proxies_seeds_the_initialisation() -> None:
    x, y = _batch(n=8, hw=8)
    names = ["synflow", "l2_norm", "zen", "params"]
    a = compute_proxies(ARCH, x, y, names, seed=0, C=4, N=1)
    assert a == compute_proxies(ARCH, x, y, names, seed=0, C=4, N=1)
    b = compute_proxies(ARCH, x, y, names, seed=1, C=4, N=1)
    assert a["params"] == b["params"] and a["synflow"] != b["synflow"] and a["zen"] != b["zen"]
    # data-free proxies ignore the image values
    x2, y2 = _batch(n=8, hw=8, seed=5)
    assert compute_proxies(ARCH, x2, y2, names, seed=0, C=4, N=1) == a


def test_proxies_reject_bad_input() -> None:
    x, y = _batch(n=4, hw=8)
    with pytest.raises(KeyError, match="unknown proxy"):
        compute_proxies(ARCH, x, y, ["synflo"], C=4, N=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compute_proxies(ARCH, x * 255, y, ["snip"], C=4, N=1)
    with pytest.raises(ValueError, match="labels"):
        compute_proxies(ARCH, x, y + 10, ["snip"], C=4, N=1)
    with pytest.raises(ValueError, match="at least 2"):
        compute_proxies(ARCH, x[:1], y[:1], ["snip"], C=4, N=1)
    with pytest.raises(ValueError, match="malformed|unknown|arch|op", ):
        compute_proxies("|conv~0|+|", x, y, ["snip"], C=4, N=1)


def test_grasp_matches_dense_weight_hessian() -> None:
    net = _mlp(seed=2)
    x, y = _batch(n=10, hw=4, k=3, seed=3)
    x = x.double()
    got = compute_model_proxies(net, x, y, ["grasp"], num_classes=3)["grasp"]
    W1, b1, W2, b2 = (p.detach() for p in (net[1].weight, net[1].bias, net[3].weight, net[3].bias))
    n1 = W1.numel()

    def loss(w: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x.reshape(10, -1) @ w[:n1].view_as(W1).T + b1)
        return nn.functional.cross_entropy(h @ w[n1:].view_as(W2).T + b2, y)

    w = torch.cat([W1.reshape(-1), W2.reshape(-1)])
    g = torch.autograd.functional.jacobian(loss, w)
    H = torch.autograd.functional.hessian(loss, w)
    assert got == pytest.approx(float(-(w * (H @ g)).sum()), rel=1e-9)

"""Behaviour of the attacks package against independent truth: closed forms, invariants, errors."""

from __future__ import annotations

import json

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from robustbench_nas import attacks
from robustbench_nas.attacks._common import check_eps
from robustbench_nas.attacks.evaluate import AttackResult
from robustbench_nas.attacks.training import adversarial_batch
from robustbench_nas.evaluation import evaluate_clean
from robustbench_nas.models import build_model

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
HW = 8  # small images keep the CPU tests fast; NB201 networks pool globally, so any size works

# small parameters per attack so the whole grid of invariant tests runs in seconds
FAST = {
    "fgsm": None,
    "pgd": {"steps": 5},
    "aa_apgd-ce": {"steps": 6},
    "aa_apgd-dlr": {"steps": 6},
    "aa_apgd-t": {"steps": 4, "n_target_classes": 2},
    "aa_square": {"n_queries": 30},
    "autoattack": {"apgd_steps": 3, "n_target_classes": 2, "fab_steps": 3, "square_queries": 10},
}


def fast_params(name: str) -> dict | None:
    return FAST[name.split("@")[0]]


def small_cnn(seed: int = 0, k: int = 10) -> nn.Module:
    """A tiny conv net without BN, random weights: predictions vary a lot with the input (attacks bite)."""
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * HW * HW, k))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.05))
    return m.eval()


def nb201_calibrated(seed: int = 0) -> nn.Module:
    """A C=4, N=1 NB201 network whose BN running statistics were set on random images (untrained otherwise)."""
    torch.manual_seed(seed)
    m = build_model(ARCH, C=4, N=1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None  # cumulative average
            mod.reset_running_stats()
    m.train()
    with torch.no_grad():
        m(torch.rand(32, 3, HW, HW, generator=torch.Generator().manual_seed(seed + 1)))
    return m.eval()


def data(model: nn.Module, n: int = 24, seed: int = 0, flip_every: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images; labels = the model's predictions, every ``flip_every``-th one changed (known clean accuracy)."""
    x = torch.rand(n, 3, HW, HW, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::flip_every] = (y[::flip_every] + 1) % 10
    return x, y


# ----------------------------------------------------------------------------------------------- closed forms
def test_fgsm_matches_closed_form_on_linear_model() -> None:
    """For f(x) = W x + b, grad_x CE = W^T (softmax(f) - onehot(y)): FGSM is clip(x + eps sign(W^T (p - e_y)))."""
    torch.manual_seed(0)
    lin = nn.Linear(3 * HW * HW, 10)
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.rand(16, 3, HW, HW)
    y = torch.randint(0, 10, (16,))
    eps = 3 / 255
    W = lin.weight.detach().double().numpy()
    b = lin.bias.detach().double().numpy()
    xf = x.reshape(16, -1).double().numpy()
    z = xf @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(16), y.numpy()] -= 1.0
    grad = p @ W
    expected = np.clip(xf + eps * np.sign(grad), 0, 1).reshape(x.shape)
    spec = attacks.get_attack("fgsm@Linf")
    got = spec.kernel(model, x, y, torch.full((16,), eps), spec.defaults, norm="Linf",
                      generator=torch.Generator(), early_stop=False)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # and the statistics evaluate() reports are those of these points
    (res,) = attacks.evaluate(model, x, y, "fgsm@Linf", eps)
    with torch.no_grad():
        acc = (model(torch.from_numpy(expected).float()).argmax(1) == y).float().mean().item()
    assert res.stats.accuracy == pytest.approx(acc)
    # L2 variant (FGM): x + eps g / ||g||
    g2 = grad / np.linalg.norm(grad, axis=1, keepdims=True)
    expected2 = np.clip(xf + 0.5 * g2, 0, 1).reshape(x.shape)
    got2 = spec.kernel(model, x, y, torch.full((16,), 0.5), spec.defaults, norm="L2",
                       generator=torch.Generator(), early_stop=False)
    np.testing.assert_allclose(got2.numpy(), expected2, atol=1e-6)


@pytest.mark.parametrize("mode", ["independent", "early_exit"])
@pytest.mark.parametrize("attack", ["pgd@Linf", "pgd@L2", "aa_apgd-ce@Linf", "fgsm@Linf", "aa_square@L2", "autoattack@L2"])
def test_eps_zero_gives_clean_statistics(attack: str, mode: str) -> None:
    model = nb201_calibrated()
    x, y = data(model)
    clean = evaluate_clean(model, x, y)
    (res,) = attacks.evaluate(model, x, y, attack, 0.0, params=fast_params(attack), mode=mode)
    assert clean.accuracy == pytest.approx(0.75)  # every 4th label flipped
    assert res.stats.accuracy == clean.accuracy
    np.testing.assert_array_equal(res.stats.confusion, clean.confusion)
    np.testing.assert_array_equal(res.stats.correct, clean.correct)
    assert res.stats.confidence_pred == pytest.approx(clean.confidence_pred, abs=1e-6)


# ------------------------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("attack", attacks.list_attacks())
def test_every_attack_stays_in_ball_and_box_and_leaves_inputs_alone(attack: str) -> None:
    spec = attacks.get_attack(attack)
    model = small_cnn()
    x, y = data(model, n=12)
    x0, y0 = x.clone(), y.clone()
    eps_val = 6 / 255 if spec.norm == "Linf" else 0.4
    eps = torch.tensor([0.0, eps_val / 3, eps_val] * 4)
    p = attacks.params.make_params(type(spec.defaults), spec.defaults, fast_params(attack))
    x_adv = spec.kernel(model, x, y, eps, p, norm=spec.norm, generator=torch.Generator().manual_seed(0),
                        early_stop=False)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert x_adv.shape == x.shape
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    d = (x_adv - x).flatten(1)
    size = d.abs().max(1)[0] if spec.norm == "Linf" else d.norm(dim=1)
    assert bool((size <= eps + 1e-6).all()), (size - eps).max()
    assert torch.equal(x_adv[eps == 0], x[eps == 0])


def test_attacks_break_a_non_robust_model() -> None:
    """Sanity: on the random CNN the attacks find adversarial examples, more at larger eps."""
    model = small_cnn()
    x, y = data(model, n=24)
    for attack in ("fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"):
        res = attacks.evaluate(model, x, y, attack, [0.0, 16 / 255], params=fast_params(attack))
        assert res[1].stats.accuracy < res[0].stats.accuracy == 0.75, attack
    for attack in ("aa_square@L2", "autoattack@L2"):
        res = attacks.evaluate(model, x, y, attack, [0.0, 1.0], params=fast_params(attack))
        assert res[1].stats.accuracy < res[0].stats.accuracy == 0.75, attack


@pytest.mark.parametrize("attack", ["fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"])
def test_early_exit_is_monotone_per_image(attack: str) -> None:
    model = small_cnn(1)
    x, y = data(model, n=24, seed=3)
    grid = [8 / 255, 0.5 / 255, 2 / 255, 0.0, 4 / 255]  # unsorted on purpose: results come back in this order
    res = attacks.evaluate(model, x, y, attack, grid, params=fast_params(attack), mode="early_exit")
    assert [r.eps for r in res] == grid
    by_eps = sorted(res, key=lambda r: r.eps)
    for a, b in zip(by_eps, by_eps[1:]):
        assert b.stats.accuracy <= a.stats.accuracy
        assert not bool((b.stats.correct & ~a.stats.correct).any()), "an image broken at a smaller eps came back"
    assert by_eps[0].stats.accuracy == 0.75


def test_grid_in_one_pass_equals_one_eps_at_a_time() -> None:
    """Rows of several epsilons share batches: with a deterministic attack each eps's result is unchanged."""
    model = nb201_calibrated(2)
    x, y = data(model, n=10, seed=5)
    prm = {"steps": 4, "random_start": False}
    grid = [1 / 255, 3 / 255, 8 / 255]
    together = attacks.evaluate(model, x, y, "pgd@Linf", grid, params=prm, batch_size=64)
    for e, r in zip(grid, together):
        (alone,) = attacks.evaluate(model, x, y, "pgd@Linf", e, params=prm, batch_size=7)
        np.testing.assert_array_equal(alone.stats.correct, r.stats.correct)
        np.testing.assert_array_equal(alone.stats.confusion, r.stats.confusion)
        assert alone.stats.confidence_true == pytest.approx(r.stats.confidence_true, abs=1e-5)


def test_same_seed_same_numbers_and_model_untouched() -> None:
    model = nb201_calibrated(3)
    x, y = data(model, n=12)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(params={"steps": 5}, seed=11)
    a = attacks.evaluate(model, x, y, "aa_apgd-ce@Linf", [2 / 255, 8 / 255], **kw)
    b = attacks.evaluate(model, x, y, "aa_apgd-ce@Linf", [2 / 255, 8 / 255], **kw)
    for ra, rb in zip(a, b):
        assert ra.stats.accuracy == rb.stats.accuracy
        assert ra.stats.confidence_true == rb.stats.confidence_true
        np.testing.assert_array_equal(ra.stats.correct, rb.stats.correct)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_result_records_parameters_and_serialises() -> None:
    model = small_cnn()
    x, y = data(model, n=10)
    res = attacks.evaluate(model, x, y, "pgd@Linf", [2 / 255, 8 / 255], params={"steps": 3}, seed=4)
    r = res[1]
    assert isinstance(r, AttackResult)
    assert r.params["steps"] == 3 and r.params["norm"] == "Linf" and r.params["random_start"] is True
    assert r.params["step_size"] == pytest.approx(2.5 * (8 / 255) / 3)  # resolved per eps
    assert res[0].params["step_size"] == pytest.approx(2.5 * (2 / 255) / 3)
    d = json.loads(json.dumps(r.to_dict(correct_bits=True)))
    assert d["eps_255"] == pytest.approx(8.0) and d["seed"] == 4 and d["mode"] == "independent"
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(d["correct_bits"]), dtype=np.uint8))[:10].astype(bool)
    np.testing.assert_array_equal(bits, r.stats.correct)
    assert np.asarray(d["confusion"]).sum() == 10
    assert r.stats.confidence_true <= r.stats.confidence_pred + 1e-7


# ---------------------------------------------------------------------------------------------------- errors
def test_errors_name_the_problem() -> None:
    model = small_cnn()
    x, y = data(model, n=4)
    with pytest.raises(KeyError, match="Did you mean 'pgd@Linf'"):
        attacks.evaluate(model, x, y, "pgd@linf", 1 / 255)
    with pytest.raises(ValueError, match="negative"):
        attacks.evaluate(model, x, y, "fgsm@Linf", -0.01)
    with pytest.raises(ValueError, match="8/255"):
        attacks.evaluate(model, x, y, "fgsm@Linf", [1 / 255, 8])
    with pytest.raises(ValueError, match="above 1"):
        check_eps(300)
    with pytest.raises(ValueError, match="empty epsilon grid"):
        attacks.evaluate(model, x, y, "fgsm@Linf", [])
    with pytest.raises(ValueError, match="empty"):
        attacks.evaluate(model, x[:0], y[:0], "fgsm@Linf", 1 / 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.evaluate(model, x * 255, y, "fgsm@Linf", 1 / 255)
    with pytest.raises(ValueError, match="labels must be in"):
        attacks.evaluate(model, x, y + 10, "fgsm@Linf", 1 / 255)
    with pytest.raises(ValueError, match="unknown parameter"):
        attacks.evaluate(model, x, y, "pgd@Linf", 1 / 255, params={"iterations": 3})
    with pytest.raises(ValueError, match="steps"):
        attacks.evaluate(model, x, y, "pgd@Linf", 1 / 255, params={"steps": 0})
    with pytest.raises(ValueError, match="mode"):
        attacks.evaluate(model, x, y, "pgd@Linf", 1 / 255, mode="fast")  # type: ignore[arg-type]
    model.train()
    with pytest.raises(ValueError, match="model.eval()"):
        attacks.evaluate(model, x, y, "pgd@Linf", 1 / 255)


# ------------------------------------------------------------------------------------------------ protocols
def test_protocols_and_eps_parsing() -> None:
    j = attacks.get_attack_grid("jung2023")
    assert set(j) == {"fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"}
    assert [round(e * 255, 6) for e in j["fgsm@Linf"]] == [0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255]
    for a in ("pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"):
        assert [round(e * 255, 6) for e in j[a]] == [0.1, 0.5, 1, 2, 3, 4, 8]
    assert all(a in attacks.list_attacks() for p in attacks.list_attack_grids() for a in attacks.get_attack_grid(p))
    assert attacks.parse_eps("1/255, 8/255,0.5") == [1 / 255, 8 / 255, 0.5]
    with pytest.raises(ValueError, match="cannot parse"):
        attacks.parse_eps("eight")
    with pytest.raises(ValueError, match=r"epsilon '-1' = -1 must lie in \[0, 1\]"):
        attacks.parse_eps("-1")
    with pytest.raises(ValueError, match=r"did you mean 8/255"):
        attacks.parse_eps("1/255,8")
    with pytest.warns(UserWarning, match=r"7.969/255 is not a multiple of 0.1/255"):
        assert attacks.parse_eps("8/256") == [8 / 256]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published grid's values never warn
        assert attacks.parse_eps("0.1/255,0.5/255,255/255,0") == [0.1 / 255, 0.5 / 255, 1.0, 0.0]
        assert attacks.parse_eps("1.5,0.03", norm="L2") == [1.5, 0.03]  # L2 radii: no [0, 1] bound, no lattice
    with pytest.raises(ValueError, match="L2 radius '-0.5'"):
        attacks.parse_eps("-0.5", norm="L2")
    with pytest.raises(KeyError, match="jung2023"):
        attacks.get_attack_grid("jung")
    assert attacks.get_attack("autoattack").name == "autoattack@Linf"


# --------------------------------------------------------------------------------------- adversarial training
def test_adversarial_batch_keeps_bn_and_modes_and_stays_in_ball() -> None:
    model = nb201_calibrated(4)
    x, y = data(model, n=8)
    model.train()
    next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()  # frozen by the caller: stays so
    frozen = {n for n, m in model.named_modules() if not m.training}
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    x0 = x.clone()
    eps = 4 / 255
    a = adversarial_batch(model, x, y, eps=eps, steps=3, step_size=1 / 255, generator=torch.Generator().manual_seed(0))
    b = adversarial_batch(model, x, y, eps=eps, steps=3, step_size=1 / 255, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(x, x0)
    assert float((a - x).abs().max()) <= eps + 1e-6 and float(a.min()) >= 0 and float(a.max()) <= 1
    for k, v in model.state_dict().items():
        if k in bn:
            assert torch.equal(v, bn[k]), f"{k} changed while crafting"
    assert {n for n, m in model.named_modules() if not m.training} == frozen
    assert all(p.grad is None for p in model.parameters())
    # PGD raises the loss over the clean point (eval-mode loss, summed over the batch)
    with torch.no_grad():
        model.eval()
        lc = nn.functional.cross_entropy(model(x), y, reduction="sum")
        la = nn.functional.cross_entropy(model(a), y, reduction="sum")
    assert float(la) > float(lc)
    assert torch.equal(adversarial_batch(model, x, y, eps=eps, steps=0, step_size=0.0, random_start=False), x)
    with pytest.raises(ValueError, match="/255"):
        adversarial_batch(model, x, y, eps=8, steps=1, step_size=2 / 255)


def test_evaluate_protocol_runs_every_attack_at_its_grid() -> None:
    model = small_cnn(2)
    x, y = data(model, n=6)
    res = attacks.evaluate_protocol(model, x, y, "tiny", params={"aa_square@Linf": {"n_queries": 5}},
                                    mode="early_exit")
    grid = attacks.get_attack_grid("tiny")
    assert [(r.attack, r.eps) for r in res] == [(a, e) for a, g in grid.items() for e in g]
    by = {(r.attack, r.eps): r for r in res}
    assert by[("pgd@Linf", 1 / 255)].params["steps"] == 10  # the protocol's own budget
    assert by[("aa_square@Linf", 8 / 255)].params["n_queries"] == 5  # the caller's override on top
    with pytest.raises(ValueError, match="not in protocol"):
        attacks.evaluate_protocol(model, x, y, "tiny", params={"autoattack@Linf": {}})

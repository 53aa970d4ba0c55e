"""NB301's training details: mixup (alpha 0.2, one lam per batch) and the cosine to eta_min stepped per epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_nas.training import get_profile, lr_at
from robustbench_nas.training.mixup import mixup, mixup_cross_entropy


def test_mixup_is_a_convex_mix_with_a_permutation_of_the_batch():
    x = torch.rand(16, 3, 8, 8, dtype=torch.float64)
    y = torch.arange(16)
    xm, yb, lam = mixup(x, y, 0.2, np.random.default_rng(5))
    # the same draws by hand: lam first, then the permutation, from the same generator state
    rng = np.random.default_rng(5)
    want_lam = rng.beta(0.2, 0.2)
    perm = rng.permutation(16)
    assert lam == want_lam and 0.0 <= lam <= 1.0
    assert torch.equal(yb, y[perm])  # y's labels are 0..15: yb names each row's partner
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm], atol=0, rtol=0)
    assert xm.min() >= 0 and xm.max() <= 1
    with pytest.raises(ValueError, match="alpha"):
        mixup(x, y, 0.0, np.random.default_rng(0))


def test_mixup_loss_is_the_weighted_sum_of_two_cross_entropies():
    torch.manual_seed(0)
    logits = torch.randn(8, 10, dtype=torch.float64)
    ya, yb = torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))
    got = mixup_cross_entropy(logits, ya, yb, 0.3)
    logp = torch.log_softmax(logits, 1)
    want = -(0.3 * logp[torch.arange(8), ya] + 0.7 * logp[torch.arange(8), yb]).mean()  # by hand
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    assert float(mixup_cross_entropy(logits, ya, yb, 1.0)) == pytest.approx(float(F.cross_entropy(logits, ya)))


def test_cosine_per_epoch_to_eta_min_equals_torch_cosine_annealing():
    p = get_profile("darts-nb301", epochs=10)
    assert p.lr_step == "epoch" and p.lr_min == 1e-8 and p.mixup_alpha == 0.2  # NB301's config_0.json
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=p.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p.epochs, eta_min=p.lr_min)
    steps_per_epoch = 7
    total = p.epochs * steps_per_epoch
    for epoch in range(p.epochs):
        want = opt.param_groups[0]["lr"]
        for s in range(steps_per_epoch):  # constant within the epoch
            assert lr_at(p, epoch * steps_per_epoch + s, total) == pytest.approx(want, rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()
    assert lr_at(p, total - 1, total) > p.lr_min  # the last epoch still trains above the floor


def test_cosine_per_batch_keeps_nb201_rates_and_lr_min_lifts_the_floor():
    p = get_profile("nb201-200e")
    assert (p.lr_step, p.lr_min, p.mixup_alpha) == ("batch", 0.0, 0.0)
    assert lr_at(p, 25, 100) == 0.5 * p.lr * (1 + math.cos(math.pi * 0.25))  # the same float as before
    q = p.replace(lr_min=0.01)
    assert lr_at(q, 100, 100) == pytest.approx(0.01) and lr_at(q, 0, 100) == pytest.approx(p.lr)
    for bad in ({"lr_step": "week"}, {"lr_min": -1.0}, {"lr_min": 1.0}, {"mixup_alpha": -0.1}):
        with pytest.raises(ValueError, match="lr_step|lr_min"):
            p.replace(**bad)


def test_darts_eval_has_no_mixup_and_steps_per_epoch():
    p = get_profile("darts-eval")
    assert (p.mixup_alpha, p.lr_min, p.lr_step, p.C, p.N, p.epochs) == (0.0, 0.0, "epoch", 36, 6, 600)


def test_training_with_mixup_is_reproducible_and_differs_from_without(tmp_path):
    from robustbench_nas.data import get_dataset
    from robustbench_nas.training import train_model

    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8), y=np.arange(60) % 3)
    ds = get_dataset("npz", str(npz))
    prof = get_profile("darts-nb301", epochs=2, batch_size=16, C=4, N=1, max_train_images=32)

    def weights(p):
        res = train_model("DARTS_V2", ds, p, seed=0, device="cpu", progress=False, space="darts")
        return res, [t.detach().clone() for t in res.model.state_dict().values()]

    a, wa = weights(prof)
    _, wb = weights(prof)
    _, wc = weights(prof.replace(mixup_alpha=0.0))
    assert all(torch.equal(u, v) for u, v in zip(wa, wb))  # same seed, same mixes, same weights
    assert not all(torch.equal(u, v) for u, v in zip(wa, wc))  # mixup changes training
    # the per-epoch cosine: the rate logged after epoch e is the one of epoch e + 1
    assert a.history[0]["lr"] == pytest.approx(prof.lr_min + 0.5 * (prof.lr - prof.lr_min) * (1 + math.cos(math.pi / 2)))

"""Training: loss falls, accuracy beats chance, determinism, safe checkpoints, profiles, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.data import get_dataset
from robustbench_nas.evaluation import evaluate_clean
from robustbench_nas.training import (
    CheckpointError,
    get_profile,
    list_profiles,
    load_checkpoint,
    lr_at,
    make_scheduler,
    save_checkpoint,
    train_model,
)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    return train_model(ARCH, digits, get_profile("tiny"), seed=0, device="cpu", progress=False)


def test_loss_falls_and_accuracy_beats_chance(trained):
    h = trained.history
    assert len(h) == get_profile("tiny").epochs
    assert h[-1]["train_loss"] < 0.6 * h[0]["train_loss"]
    assert trained.final_test_acc > 0.5  # chance is 0.1


def test_same_seed_same_weights(digits, trained):
    again = train_model(ARCH, digits, get_profile("tiny", epochs=get_profile("tiny").epochs), seed=0, device="cpu",
                        progress=False)
    for (k, a), b in zip(trained.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k
    other = train_model(ARCH, digits, get_profile("tiny", epochs=1), seed=1, device="cpu", progress=False)
    assert not torch.equal(other.model.classifier.weight, trained.model.classifier.weight)


def test_training_leaves_global_rng_alone(digits):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    train_model(ARCH, digits, get_profile("tiny", epochs=1, max_train_images=64), seed=5, device="cpu", progress=False)
    assert torch.equal(torch.rand(3), before)


def test_checkpoint_round_trip(tmp_path, trained, digits):
    path = save_checkpoint(tmp_path / "ck", trained.model, trained.meta)
    model, meta = load_checkpoint(path)
    assert meta["arch"] == ARCH and meta["seed"] == 0 and meta["profile"]["name"] == "tiny"
    for a, b in zip(trained.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    test = digits.split("test")
    assert evaluate_clean(model, test.images(), test.y).accuracy == pytest.approx(trained.final_test_acc)
    assert not model.training


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)


def test_profiles():
    assert {"nb201-200e", "nb201-12e", "tiny", "pgd-at"} <= set(list_profiles())
    p = get_profile("nb201-200e")
    assert (p.epochs, p.batch_size, p.lr, p.momentum, p.nesterov, p.weight_decay, p.schedule) == (
        200, 256, 0.1, 0.9, True, 5e-4, "cosine")
    assert get_profile("pgd-at").adv_eps == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="unknown training profile fields"):
        get_profile("tiny", epochz=3)
    with pytest.raises(ValueError, match="not /255"):
        get_profile("tiny", adv_eps=8)
    with pytest.raises(KeyError):
        get_profile("nope")


def test_lr_schedules():
    p = get_profile("nb201-200e")
    assert lr_at(p, 0, 100) == pytest.approx(0.1)
    assert lr_at(p, 50, 100) == pytest.approx(0.05)
    assert lr_at(p, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(get_profile("nb201-200e", schedule="constant"), 70, 100) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="OneCycleLR"):  # the library runs it, the trainer does not re-derive it
        lr_at(get_profile("pgd-at"), 0, 100)


def test_onecycle_profile_is_torch_onecycle_at_every_step():
    """make_scheduler of ``pgd-at`` gives, step by step, the lr and momentum of NAS-RobBench-201's
    ``OneCycleLR(optimizer, 0.1, epochs, steps_per_epoch)`` (PyTorch defaults) on an optimiser of its own
    (several lengths), and the published shape: 0.1/25 -> 0.1 at 30 % -> 0.1/25/1e4, momentum 0.95 -> 0.85 -> 0.95."""
    for epochs, spe in ((50, 7), (3, 10), (1, 13)):
        q = get_profile("pgd-at", epochs=epochs)
        ours = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=q.lr, momentum=q.momentum)
        sch = make_scheduler(q, ours, spe)
        ref = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=q.lr, momentum=q.momentum)
        ref_sch = torch.optim.lr_scheduler.OneCycleLR(ref, 0.1, epochs=epochs, steps_per_epoch=spe)
        seen = []
        for step in range(epochs * spe):
            g, r = ours.param_groups[0], ref.param_groups[0]
            assert (g["lr"], g["momentum"]) == (r["lr"], r["momentum"]), step
            seen.append((g["lr"], g["momentum"]))
            for o, s in ((ours, sch), (ref, ref_sch)):
                o.step()
                s.step()
        lrs, moms = [a for a, _ in seen], [m for _, m in seen]
        assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-6)
        peak = int(np.argmax(lrs))
        # the peak is the step nearest 30 % of the run (exactly 0.1 there when 0.3 * steps is whole)
        assert lrs[peak] == pytest.approx(0.1, rel=1e-3) and peak == round(0.3 * epochs * spe) - 1
        assert moms[0] == pytest.approx(0.95) and moms[-1] == pytest.approx(0.95)
        assert moms[peak] == pytest.approx(0.85, rel=1e-3) and min(moms) == moms[peak]


def test_pgd_at_trainer_steps_lr_and_momentum_as_onecycle(monkeypatch):
    """Every optimiser step of the ``pgd-at`` trainer sees the lr and momentum that torch's
    ``OneCycleLR(optimizer, 0.1, epochs=..., steps_per_epoch=...)`` (PyTorch defaults, as NAS-RobBench-201's
    main.py) sets on the same optimiser; the old linear ramp with constant momentum 0.9 would fail here."""
    seen: list[tuple[float, float]] = []
    real_step = torch.optim.SGD.step

    def recording_step(self, *a, **k):
        seen.append((self.param_groups[0]["lr"], self.param_groups[0]["momentum"]))
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    ds = get_dataset("digits")
    prof = get_profile("tiny-at", epochs=2, schedule="onecycle", warmup_fraction=0.3, max_train_images=96,
                       batch_size=32, lr=0.1, momentum=0.9, nesterov=False)
    train_model(0, ds, prof, seed=0, device="cpu", progress=False)
    spe = len(seen) // 2
    assert len(seen) == 2 * spe and spe >= 2
    monkeypatch.setattr(torch.optim.SGD, "step", real_step)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, epochs=2, steps_per_epoch=spe)
    for lr, mom in seen:
        assert (lr, mom) == (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"])
        opt.step()
        sch.step()
    assert seen[0] == pytest.approx((0.1 / 25, 0.95)) and min(m for _, m in seen) < 0.9


def test_cli_train(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "1", "--dataset", "digits", "--profile", "tiny", "--set", "epochs=2",
                                   "--threads", "1", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["index"] == 1 and len(metrics["history"]) == 2
    assert not math.isnan(metrics["final_test_acc"])
    assert (out / "model.safetensors").is_file()
    bad = CliRunner().invoke(cli, ["train", "|bad|", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "malformed" in bad.output

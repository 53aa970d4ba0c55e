"""Training: loss falls, accuracy beats chance, determinism, safe checkpoints, profiles, the CLI."""

from __future__ import annotations

import json
import math

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
    q = get_profile("pgd-at")
    assert lr_at(q, 15, 100) == pytest.approx(0.05)
    assert lr_at(q, 30, 100) == pytest.approx(0.1)
    assert lr_at(q, 65, 100) == pytest.approx(0.05)


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

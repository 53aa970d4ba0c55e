"""Precision by protocol (issue 29): every evaluation unit runs with IEEE fp32 convolutions and matmuls; the flags
are restored afterwards, also when the stage fails; batch_size is a performance setting of the protocol."""

from __future__ import annotations

import importlib

import pytest
import torch

from robustbench_nas.pipelines.protocol import get_protocol
from robustbench_nas.pipelines.stages import StageDef
from robustbench_nas.utils.precision import describe, ieee_fp32, precision_state

runner = importlib.import_module("robustbench_nas.pipelines.runner")


@pytest.fixture
def tf32_flags():
    """torch's defaults on a fresh process with cuDNN conv in TF32 (set explicitly: other tests may have run)."""
    from robustbench_nas.utils.precision import saved_precision

    with saved_precision():
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        yield precision_state()


def test_ieee_fp32_applies_and_restores(tf32_flags) -> None:
    assert tf32_flags["cudnn.conv"] == "tf32" and tf32_flags["cuda.matmul"] == "tf32"
    with ieee_fp32() as setting:
        inside = precision_state()
        assert set(inside.values()) == {"ieee"}
        assert setting == describe(inside) and "cudnn.conv=ieee" in setting and "cuda.matmul=ieee" in setting
    assert precision_state() == tf32_flags
    with pytest.raises(RuntimeError, match="boom"):
        with ieee_fp32():
            raise RuntimeError("boom")
    assert precision_state() == tf32_flags


@pytest.mark.parametrize("stage", ["clean", "adversarial", "corruptions", "measures", "proxies", "train"])
@pytest.mark.parametrize("fail", [False, True])
def test_every_evaluation_unit_runs_in_ieee_fp32_and_restores(monkeypatch, tmp_path, tf32_flags, stage: str,
                                                               fail: bool) -> None:
    seen: list[dict[str, str]] = []

    def fn(ctx):
        seen.append(precision_state())
        if fail:
            raise RuntimeError("stage failed")
        return {"x": 1.0}

    monkeypatch.setattr(runner, "get_stage", lambda name: StageDef(name, fn, (), False, True))
    proto = get_protocol("tiny").replace(retries=1)
    out = runner.execute_unit(str(tmp_path / "s.zarr"), proto.to_dict(), 0, 0, stage, device="cpu")
    assert len(seen) == (2 if fail else 1)  # a retry runs under the same setting
    want = "tf32" if stage == "train" else "ieee"  # training keeps its profile's precision
    for st in seen:
        assert st["cudnn.conv"] == want and st["cuda.matmul"] == want
    assert out["precision"] == describe(seen[-1])
    assert out["status"] == ("failed" if fail else "done")
    assert precision_state() == tf32_flags  # restored, also after a failure


def test_the_process_wide_matmul_precision_is_part_of_the_state_and_restored() -> None:
    """``torch.set_float32_matmul_precision("medium")`` is kept by torch apart from the per-backend flags (the CPU
    matmul reads it: bfloat16 on CPUs with BF16 units); setting the per-backend flags back leaves it at ``medium``,
    restoring the whole state does not."""
    from robustbench_nas.utils.precision import LEGACY_MATMUL, _set, saved_precision

    before = precision_state()
    assert before[LEGACY_MATMUL] == {"highest": "ieee", "high": "tf32", "medium": "bf16"}[
        torch.get_float32_matmul_precision()]
    with saved_precision():
        torch.set_float32_matmul_precision("medium")
        assert precision_state()[LEGACY_MATMUL] == "bf16" and "float32_matmul=bf16" in describe()
        with ieee_fp32() as setting:
            assert torch.get_float32_matmul_precision() == "highest" and "float32_matmul=ieee" in setting
        assert torch.get_float32_matmul_precision() == "medium"  # ieee_fp32 gives back what it found
        _set({k: v for k, v in before.items() if k != LEGACY_MATMUL})  # the per-backend flags alone ...
        assert torch.get_float32_matmul_precision() == "medium"  # ... leave torch's own setting behind
    assert precision_state() == before and torch.get_float32_matmul_precision() == \
        {"ieee": "highest", "tf32": "high", "bf16": "medium"}[before[LEGACY_MATMUL]]


def test_batch_size_is_a_performance_setting_not_a_fingerprint() -> None:
    a, b = get_protocol("tiny"), get_protocol("tiny", batch_size=7)
    assert a.fingerprint() == b.fingerprint() and a.diff(b) == {}
    assert all("batch_size" not in f for f in runner.STAGE_FIELDS.values())
    assert get_protocol("tiny", attack_images=a.attack_images + 1).fingerprint() != a.fingerprint()


@pytest.mark.parametrize("command", ["proxies", "measures", "attack"])
def test_standalone_evaluation_commands_compute_in_ieee_fp32(monkeypatch, tmp_path, tf32_flags, command: str) -> None:
    """``rbnas proxies / measures / attack`` give a store's values on a GPU too: they compute under the evaluation
    stages' IEEE fp32 setting whatever the calling process set (TF32 flags here, bf16 matmuls), and give it back."""
    from click.testing import CliRunner

    import robustbench_nas.attacks as attacks_pkg
    import robustbench_nas.measures as measures_pkg
    import robustbench_nas.proxies as proxies_pkg
    from robustbench_nas.cli.main import cli
    from robustbench_nas.proxies import init_model
    from robustbench_nas.training.checkpoint import save_checkpoint

    torch.set_float32_matmul_precision("medium")
    before = precision_state()
    seen: list[dict[str, str]] = []
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    ck = str(save_checkpoint(tmp_path / "m", init_model(arch, 0, C=4, N=1), {"dataset": "digits"}))
    # (package whose function the command calls, its name, the command line)
    module, name, args = {
        "proxies": (proxies_pkg, "compute_proxies", ["proxies", arch, "--dataset", "digits", "--batch-size", "8",
                                                     "--C", "4", "--N", "1", "--proxies", "params"]),
        "measures": (measures_pkg, "compute_measures", ["measures", ck, "--dataset", "digits", "--n", "4",
                                                        "--measures", "jacobian_fro", "--json"]),
        "attack": (attacks_pkg, "evaluate", ["attack", ck, "--attack", "fgsm@Linf", "--eps", "1/255", "--n", "4",
                                             "--json"]),
    }[command]
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: (seen.append(precision_state()), real(*a, **k))[1])
    args = [*args, "--threads", "1"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert seen and all(set(s.values()) == {"ieee"} and s["float32_matmul"] == "ieee" for s in seen), seen
    assert precision_state() == before and torch.get_float32_matmul_precision() == "medium"

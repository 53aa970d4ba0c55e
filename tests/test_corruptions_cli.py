"""``rbnas corrupt``: list, show (picture grid), make (official layout) and eval (generated and file sources)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.cli.main import cli

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from robustbench_nas.models import build_model
    from robustbench_nas.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(ARCH, num_classes=10, C=4, N=1)
    path = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(path, model, {"dataset": "digits"})
    return path


def test_list_json() -> None:
    res = CliRunner().invoke(cli, ["corrupt", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 19 and sum(r["benchmark"] for r in rows) == 15
    assert {r["name"]: r["random"] for r in rows}["contrast"] is False


def test_show_writes_png(tmp_path) -> None:
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(cli, ["corrupt", "show", "--corruption", "fog,contrast", "--severity", "1",
                                   "--severity", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


@pytest.mark.parametrize("args, match", [
    (["--corruption", "nope"], "unknown corruption"),
    (["--severity", "6"], "severity must be in 1..5"),
    (["--index", "100000"], "--index"),
    (["--dataset", "nope"], "unknown dataset"),
])
def test_show_errors(tmp_path, args, match) -> None:
    res = CliRunner().invoke(cli, ["corrupt", "show", *args, "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and match in res.output
    assert not (tmp_path / "x.png").exists()


def test_make_then_eval_from_files_equals_generated(tmp_path, checkpoint) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["corrupt", "make", "--corruption", "pixelate,shot_noise", "--seed", "4",
                              "--batch-size", "64", "--device", "cpu", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    arr = np.load(tmp_path / "c" / "pixelate.npy")
    labels = np.load(tmp_path / "c" / "labels.npy")
    assert arr.dtype == np.uint8 and arr.shape[0] == labels.shape[0] and arr.shape[0] % 5 == 0
    assert arr.shape[1:] == (16, 16, 3)
    common = ["--corruption", "pixelate,shot_noise", "--severity", "2", "--n", "0", "--batch-size", "64",
              "--device", "cpu", "--json"]
    gen = runner.invoke(cli, ["corrupt", "eval", str(checkpoint), "--seed", "4", *common])
    files = runner.invoke(cli, ["corrupt", "eval", str(checkpoint), "--source", str(tmp_path / "c"), *common])
    assert gen.exit_code == 0, gen.output
    assert files.exit_code == 0, files.output
    g, f = json.loads(gen.stdout), json.loads(files.stdout)
    assert [r["accuracy"] for r in g["results"]] == [r["accuracy"] for r in f["results"]]
    assert g["summary"]["mean_accuracy"] == pytest.approx(f["summary"]["mean_accuracy"])
    assert g["clean_accuracy"] is not None and f["source"] != "generated"
    sub = runner.invoke(cli, ["corrupt", "eval", str(checkpoint), "--source", str(tmp_path / "c"), "--corruption",
                              "pixelate", "--severity", "3", "--n", "7", "--device", "cpu", "--json"])
    assert sub.exit_code == 0, sub.output
    assert [r["n"] for r in json.loads(sub.stdout)["results"]] == [7]


def test_eval_errors(tmp_path, checkpoint) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["corrupt", "eval", str(checkpoint), "--source", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 2 and "labels.npy" in res.output
    res = runner.invoke(cli, ["corrupt", "eval", str(tmp_path / "missing"), "--device", "cpu"])
    assert res.exit_code == 2

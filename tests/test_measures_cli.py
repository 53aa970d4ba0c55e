"""``rbnas measures`` and ``rbnas proxies`` end to end on the embedded digits dataset."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.data import get_dataset
from robustbench_nas.data.subsets import choose_images, take
from robustbench_nas.measures import MeasureConfig, compute_measures, measure_outputs
from robustbench_nas.proxies import compute_proxies
from robustbench_nas.training.checkpoint import load_checkpoint, save_checkpoint
from robustbench_nas.proxies import init_model

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    info = get_dataset("digits").info
    net = init_model(ARCH, 0, C=4, N=1, mean=info.mean, std=info.std)
    return save_checkpoint(tmp_path / "m", net, {"note": "untrained, for the CLI test"})


def test_measures_cli_json_matches_the_api(ckpt: Path) -> None:
    r = CliRunner().invoke(cli, ["measures", str(ckpt), "--dataset", "digits", "--n", "6", "--json", "--threads", "1",
                                 "--measures", "jacobian_fro,hessian_eig", "--power-iters", "10", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # progress is on stderr
    assert out["arch_str"] == ARCH and out["n_images"] == 6
    assert list(out["measures"]) == measure_outputs(["jacobian_fro", "hessian_eig"])
    model, _ = load_checkpoint(ckpt)
    split = get_dataset("digits").split("train")
    sub = take(split, choose_images(split, 6, subset_seed=0).indices)  # the pipeline's rule (data.subsets)
    cfg = MeasureConfig(power_iters=10, batch_size=4)
    want = compute_measures(model, sub.images(), sub.labels(), ["jacobian_fro", "hessian_eig"], seed=0, config=cfg)
    assert out["measures"] == pytest.approx(want, rel=1e-6)


def test_measures_cli_errors_are_one_line(ckpt: Path) -> None:
    r = CliRunner().invoke(cli, ["measures", str(ckpt), "--dataset", "digits", "--measures", "nope"])
    assert r.exit_code == 2 and "unknown measure nope" in r.output
    bad = ckpt.parent / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(cli, ["measures", str(bad), "--dataset", "digits"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_proxies_cli_csv_has_arch_first_and_matches_the_api() -> None:
    names = ["params", "synflow", "nwot"]
    r = CliRunner().invoke(cli, ["proxies", ARCH, "0", "--dataset", "digits", "--batch-size", "8", "--C", "4", "--N",
                                 "1", "--proxies", ",".join(names), "--threads", "1"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["arch_str", *names] and rows[0]["arch_str"] == ARCH and len(rows) == 2
    ds = get_dataset("digits")
    sub = take(ds.split("train"), choose_images(ds.split("train"), 8, subset_seed=0).indices)
    want = compute_proxies(ARCH, sub.images(), sub.labels(), names, seed=0, C=4, N=1, mean=ds.info.mean, std=ds.info.std)
    assert {k: float(rows[0][k]) for k in names} == want


def test_proxies_cli_rejects_unknown_names_and_archs() -> None:
    r = CliRunner().invoke(cli, ["proxies", ARCH, "--dataset", "digits", "--proxies", "synflo"])
    assert r.exit_code == 2 and "unknown proxy synflo" in r.output
    r = CliRunner().invoke(cli, ["proxies", "|bogus~0|", "--dataset", "digits"])
    assert r.exit_code == 2 and "Traceback" not in r.output

"""``rbnas attack`` end to end on the embedded ``digits`` data and a saved checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.models import build_model

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from robustbench_nas.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(ARCH, C=4, N=1)
    return save_checkpoint(tmp_path_factory.mktemp("ck"), model, {"dataset": "digits"})


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["attack", *args], catch_exceptions=False)
    # progress bars go to stderr (also with --json): a successful run's stdout is the result alone
    return res.exit_code, res.stdout if res.exit_code == 0 else res.output


def test_attack_json(ckpt: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "r.json"
    code, out = run(str(ckpt), "--attack", "fgsm@Linf", "--attack", "pgd@Linf", "--eps", "1/255,8/255", "--n", "20",
                    "--set", "steps=2", "--json", "--correct-bits", "--out", str(out_file))
    assert code == 0, out
    d = json.loads(out)
    assert d["dataset"] == "digits" and d["n"] == 20
    assert [(r["attack"], r["eps_255"]) for r in d["results"]] == [
        ("fgsm@Linf", 1.0), ("fgsm@Linf", 8.0), ("pgd@Linf", 1.0), ("pgd@Linf", 8.0)
    ]
    assert d["results"][2]["params"]["steps"] == 2
    assert all(0.0 <= r["accuracy"] <= 1.0 and len(r["correct_bits"]) == 6 for r in d["results"])  # 20 bits -> 3 B
    assert json.loads(out_file.read_text()) == d


def test_attack_errors_and_list(ckpt: Path) -> None:
    code, out = run(str(ckpt), "--attack", "fgsm@Linf", "--eps", "8", "--n", "4")
    assert code == 2 and "8/255" in out
    code, out = run(str(ckpt), "--attack", "pgd", "--eps", "1/255", "--n", "4")
    assert code == 2 and "unknown attack" in out
    code, out = run(str(ckpt), "--attack", "fgsm@Linf", "--eps", "1/255", "--set", "steps=3", "--n", "4")
    assert code == 2 and "steps" in out
    code, out = run("--list", "--json")
    assert code == 0 and "aa_square@Linf" in json.loads(out)["attacks"]


def test_l2_radii_are_printed_plainly(ckpt: Path) -> None:
    """An L2 radius is a Euclidean length in [0, 1] pixel units: printed as given, never as a count of 1/255."""
    from robustbench_nas.cli.commands.attack import format_eps

    assert format_eps("pgd@L2", 0.5) == "0.5" and format_eps("pgd@Linf", 8 / 255) == "8/255"
    code, out = run(str(ckpt), "--attack", "fgsm@L2", "--attack", "fgsm@Linf", "--eps", "0.5", "--n", "8")
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("fgsm@")]
    assert "eps        0.5 " in lines[0] and "/255" not in lines[0], lines
    assert "127.5/255" in lines[1], lines  # the same number as an Linf radius is in 1/255 steps

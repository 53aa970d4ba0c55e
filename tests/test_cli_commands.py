"""Commands that tell the truth (issue 17): up-front validation, exit codes, --set profile shortcut, no silent caps,
progress on stderr, Ctrl-C in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.pipelines import get_protocol, list_protocols
from robustbench_nas.cli.main import cli
from robustbench_nas.models import build_model
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.storage import DONE, FAILED, StoreSpec, create_store


@pytest.mark.parametrize("setting, message", [
    ('attacks={"pgd@Lnf": [0.01]}', "unknown attack"),
    ("corruptions=[\"fgo\"]", "unknown corruption"),
    ("proxies=[\"synflw\"]", "unknown proxy"),
    ("measures=[\"jacobian\"]", "unknown measure"),
    ('attacks={"pgd@Linf": [8]}', "not /255"),
    ("severities=[0]", "outside 1..5"),
    ("epoch=3", "unknown protocol fields"),
    ('profile_overrides={"lrr": 1}', "unknown training profile fields"),
    ('attack_params={"pgd@Linf": {"stepz": 1}}', "unknown parameter"),
])  # fmt: skip
def test_bad_protocol_refused_before_a_store_exists(tmp_path: Path, setting: str, message: str) -> None:
    store = tmp_path / "s.zarr"
    r = CliRunner().invoke(cli, ["run", "--protocol", "tiny", "--store", str(store), "--set", setting, "--no-progress"])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not store.exists()


def test_set_profile_field_shortcut_and_l2_eps() -> None:
    p = get_protocol("tiny", epochs=3, lr=0.05)
    assert p.profile_overrides == {"epochs": 3, "lr": 0.05} and p.profile().epochs == 3
    q = get_protocol("tiny", **{"profile.batch_size": 16, "batch_size": 32})  # both exist: explicit wins
    assert q.batch_size == 32 and q.profile().batch_size == 16
    assert get_protocol("tiny", attacks={"pgd@L2": [0.5, 2.0]}).attacks["pgd@L2"] == (0.5, 2.0)  # L2 may exceed 1
    with pytest.raises(ValueError, match="L2 radius"):
        get_protocol("tiny", attacks={"pgd@L2": [-1.0]})


def test_every_advertised_protocol_is_runnable() -> None:
    from robustbench_nas import attacks

    for name in attacks.list_attack_grids():  # what `rbnas attack --list` advertises
        assert name in list_protocols(), name
        p = get_protocol(name)
        assert set(p.attacks) == set(attacks.get_attack_grid(name))
    assert get_protocol("robbench2024").train_profile == "pgd-at"


def _store(path: Path, fail_one: bool) -> Path:
    space = get_search_space("nb201")
    uids = space.sample(3, seed=0)
    spec = StoreSpec(archs=uids, arch_str=[space.arch_str(u) for u in uids], seeds=[0], stages=["train", "clean"])
    store = create_store(path, spec)
    store.set_status("train", DONE)
    store.set_status("clean", DONE)
    if fail_one:
        store.set_status("clean", FAILED, archs=[uids[0]])
    return path


def test_status_check_exit_codes(tmp_path: Path) -> None:
    ok = _store(tmp_path / "ok.zarr", False)
    bad = _store(tmp_path / "bad.zarr", True)
    assert CliRunner().invoke(cli, ["status", str(ok), "--check"]).exit_code == 0
    r = CliRunner().invoke(cli, ["status", str(bad), "--check"])
    assert r.exit_code == 1 and "failed" in r.output
    assert CliRunner().invoke(cli, ["status", str(bad)]).exit_code == 0  # a plain report
    assert CliRunner().invoke(cli, ["status", str(bad), "--check", "--json"]).exit_code == 1


def _fake_report(store: str, failures: list) -> object:
    from robustbench_nas.pipelines.runner import RunReport

    fields = RunReport.__dataclass_fields__
    base = dict(store=store, protocol="tiny", fingerprint="x", submitted=1, counts={}, progress={},
                failures=failures, seconds=0.1)  # fmt: skip
    return RunReport(**{k: v for k, v in base.items() if k in fields},
                     **{k: None for k in fields if k not in base})  # fmt: skip


@pytest.mark.parametrize("as_json", [False, True])
def test_run_exits_nonzero_when_a_unit_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool) -> None:
    from robustbench_nas import pipelines

    path = str(_store(tmp_path / "s.zarr", True))
    failure = {"arch": 1, "seed": 0, "stage": "clean", "error": "ValueError: boom", "attempts": 3}
    seen = {}

    def fake_run(store_path, protocol, **kw):
        seen.update(kw)
        return _fake_report(store_path, [failure])

    monkeypatch.setattr(pipelines, "run_pipeline", fake_run)
    args = ["run", "--store", path] + (["--json"] if as_json else [])
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.output or json.loads(r.stdout)["failures"] == [failure]
    assert seen["progress"] is True  # --json does not turn the progress bar (stderr) off
    monkeypatch.setattr(pipelines, "run_pipeline", lambda sp, p, **kw: _fake_report(sp, []))
    assert CliRunner().invoke(cli, args).exit_code == 0


def test_ctrl_c_is_one_line_with_a_resume_hint(tmp_path: Path) -> None:
    code = ("import sys\nimport robustbench_nas.pipelines\n"
            "def boom(*a, **k): raise KeyboardInterrupt\n"
            "robustbench_nas.pipelines.run_pipeline = boom\n"
            "from robustbench_nas.cli.main import cli\n"
            f"cli(['run', '--protocol', 'tiny', '--store', {str(tmp_path / 's.zarr')!r}, '--no-progress'])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 130
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "resume" in lines[0] and "Traceback" not in p.stderr


def test_attack_n_is_not_silently_capped(tmp_path: Path) -> None:
    from robustbench_nas.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path, build_model("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|",
                                               C=4, N=1), {"dataset": "digits"})  # fmt: skip
    r = CliRunner().invoke(cli, ["attack", str(ck), "--eps", "1/255", "--n", "1000", "--json"])
    assert r.exit_code == 2 and "only 300 images" in r.output
    r = CliRunner().invoke(cli, ["corrupt", "eval", str(ck), "--corruption", "fog", "--n", "1000", "--json"])
    assert r.exit_code == 2 and "only 300 images" in r.output
    r = CliRunner().invoke(cli, ["corrupt", "eval", str(ck), "--corruption", "fog", "--severity", "1", "--json"])
    assert r.exit_code == 0  # the default --n 1000 means "or the whole split": the output says how many
    assert json.loads(r.stdout)["results"][0]["n"] == 300
    r = CliRunner().invoke(cli, ["attack", str(ck), "--attack", "fgsm@L2", "--eps", "2.0", "--n", "20", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["eps"] == pytest.approx(2.0)


def test_data_info_says_where_val_comes_from() -> None:
    r = CliRunner().invoke(cli, ["data", "info", "--dataset", "digits", "--json"])
    assert json.loads(r.stdout)["split_notes"]["val"] == "disjoint from test"

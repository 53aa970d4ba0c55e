"""Bad input across the CLI: every malformed input gives one line that names the problem, exit code 2, no traceback,
and leaves existing data exactly as it was.

One folder (``data``) holds everything the cases point at: a checkpoint, a truncated one, a store, stores of other
schemas, a Zarr group that is not ours, malformed npz / YAML / JSON files, an output that must not be replaced.
Every file in it is hashed before and after each case. The CLI runs in-process (click's ``CliRunner``), plus a few
cases as real subprocesses (``python -m robustbench_nas.cli.main``) to check what a shell user sees on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from robustbench_nas.cli.main import cli

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
BAD_OP = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|conv_9x9~2|"
BAD_EDGE = "|nor_conv_3x3~5|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of existing data every case may touch (and must not change)."""
    import torch

    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.pipelines.runner import prepare_store
    from robustbench_nas.models import build_model
    from robustbench_nas.training.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("data")
    torch.manual_seed(0)
    ck = save_checkpoint(d / "ckpt", build_model(ARCH, C=4, N=1), {"dataset": "digits"})
    raw = ck.read_bytes()
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    (d / "garbage.safetensors").write_bytes(os.urandom(4096))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(d / "foreign.safetensors"))  # a safetensors file, not ours
    # stores: ours, of other schema versions, a Zarr group that is not ours, a plain folder, a file
    prepare_store(d / "store.zarr", get_protocol("tiny", archs=[6]))
    for name, version in (("future.zarr", 99), ("old.zarr", 1 if _schema() != 1 else 0)):
        shutil.copytree(d / "store.zarr", d / name)
        meta = json.loads((d / name / "zarr.json").read_text())
        meta["attributes"]["rbnas_schema"] = version
        (d / name / "zarr.json").write_text(json.dumps(meta))
    import zarr

    zarr.open_group(str(d / "foreign.zarr"), mode="w").attrs["title"] = "someone else's"
    (d / "plain").mkdir()
    (d / "plain" / "notes.txt").write_text("not a store")
    (d / "file.zarr").write_text("a file where a store should be")
    # npz files
    (d / "text.npz").write_text("not a zip")
    np.savez(d / "keys.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.zeros(4))
    np.savez(d / "float.npz", x=np.zeros((4, 8, 8, 3), np.float32), y=np.zeros(4, np.int64))
    np.savez(d / "shape.npz", x=np.zeros((4, 8, 8, 3), np.uint8), y=np.zeros(5, np.int64))
    np.savez(d / "good.npz", x=np.zeros((4, 8, 8, 3), np.uint8), y=np.zeros(4, np.int64))
    good = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(good[: len(good) // 2])
    (d / "good.npz").unlink()
    # YAML (SLURM configs)
    (d / "bad.yaml").write_text("partition: [gpu\n  cores: 4\n")
    (d / "list.yaml").write_text("- partition: gpu\n")
    (d / "unknown.yaml").write_text("partition: gpu\nnum_gpus: 2\n")
    (d / "neg.yaml").write_text("gpus: -1\n")
    (d / "wall.yaml").write_text("walltime: 1h\n")
    (d / "mem.yaml").write_text("memory: lots\n")
    # a release root with a malformed meta.json, and an empty one
    (d / "release" / "cifar10").mkdir(parents=True)
    (d / "release" / "meta.json").write_text('{"ids": [1, 2,')
    (d / "empty_release").mkdir()
    (d / "empty").mkdir()
    # outputs that exist and must not be replaced
    (d / "out_train").mkdir()
    shutil.copy(ck, d / "out_train" / "model.safetensors")
    (d / "existing.json").write_text('{"keep": true}')
    (d / "existing.png").write_bytes(b"\x89PNG keep")
    (d / "cifarc").mkdir()
    (d / "cifarc" / "brightness.npy").write_bytes(b"keep")
    (d / "report").mkdir()
    (d / "report" / "thesis.tex").write_text("precious")
    return d


def _schema() -> int:
    from robustbench_nas.storage.schema import SCHEMA_VERSION

    return SCHEMA_VERSION


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = "dir"
    return out


#: (id, argv with {d} for the data folder, text the error line must contain (case-insensitive))
CASES: list[tuple[str, list[str], str]] = [
    # ---- architecture strings and indices
    ("arch-malformed", ["space", "show", "|bad|"], "malformed NB201 string"),
    ("arch-unknown-op", ["space", "show", BAD_OP], "conv_9x9"),
    ("arch-bad-edge", ["space", "show", BAD_EDGE], "nor_conv_3x3~5"),
    ("arch-index-range", ["space", "show", "15625"], "15625"),
    ("arch-empty", ["space", "show", ""], "malformed NB201 string ''"),
    ("space-unknown", ["space", "--space", "nosuch", "count"], "nosuch"),
    ("train-arch", ["train", "|bad|", "--out", "{d}/new_train"], "malformed NB201 string"),
    ("proxies-arch", ["proxies", "|bad|"], "malformed NB201 string"),
    ("proxies-index", ["proxies", "99999"], "99999"),
    ("run-archs", ["run", "--protocol", "tiny", "--archs", "|bad|", "--store", "{d}/new1.zarr"], "|bad|"),
    # ---- eps
    ("eps-too-large", ["attack", "{d}/ckpt", "--eps", "300/255"], "eps"),
    ("eps-not-a-number", ["attack", "{d}/ckpt", "--eps", "abc"], "abc"),
    ("eps-negative", ["attack", "{d}/ckpt", "--eps", "-0.1"], "eps"),
    ("eps-div-zero", ["attack", "{d}/ckpt", "--eps", "1/0"], "1/0"),
    ("eps-minus-one", ["attack", "{d}/ckpt", "--eps", "-1"], "must lie in [0, 1]"),
    ("eps-bare-eight", ["attack", "{d}/ckpt", "--eps", "8"], "did you mean 8/255"),
    ("eps-missing", ["attack", "{d}/ckpt"], "--eps"),
    ("run-eps", ["run", "--protocol", "tiny", "--store", "{d}/new2.zarr", "--set", 'attacks={"fgsm@Linf": [8]}'],
     "[0, 1]"),
    # ---- attack names and parameters
    ("attack-unknown", ["attack", "{d}/ckpt", "--attack", "nosuch", "--eps", "1/255"], "nosuch"),
    ("attack-norm", ["attack", "{d}/ckpt", "--attack", "pgd@L7", "--eps", "1/255"], "pgd@L7"),
    ("attack-protocol", ["attack", "{d}/ckpt", "--protocol", "nosuch"], "nosuch"),
    ("attack-param", ["attack", "{d}/ckpt", "--eps", "1/255", "--set", "nosuchparam=3"], "nosuchparam"),
    # ---- corruption names and severities
    ("corrupt-eval-name", ["corrupt", "eval", "{d}/ckpt", "--corruption", "nosuch"], "nosuch"),
    ("corrupt-make-name", ["corrupt", "make", "--corruption", "nosuch", "--out", "{d}/new_c"], "nosuch"),
    ("corrupt-show-severity", ["corrupt", "show", "--corruption", "frost", "--severity", "9", "--out", "{d}/n.png"],
     "severity"),
    ("corrupt-eval-severity", ["corrupt", "eval", "{d}/ckpt", "--severity", "0"], "severity"),
    ("measures-name", ["measures", "{d}/ckpt/model.safetensors", "--measures", "nosuch"], "nosuch"),
    ("proxies-name", ["proxies", "6", "--proxies", "nosuch"], "nosuch"),
    # ---- YAML configs
    ("yaml-invalid", ["run", "--protocol", "tiny", "--store", "{d}/new5.zarr", "--cluster", "slurm",
                      "--slurm-config", "{d}/bad.yaml"], "yaml"),
    ("yaml-list", ["run", "--protocol", "tiny", "--store", "{d}/new6.zarr", "--cluster", "slurm",
                   "--slurm-config", "{d}/list.yaml"], "mapping"),
    ("yaml-unknown-key", ["run", "--protocol", "tiny", "--store", "{d}/new7.zarr", "--cluster", "slurm",
                          "--slurm-config", "{d}/unknown.yaml"], "num_gpus"),
    ("yaml-negative", ["run", "--protocol", "tiny", "--store", "{d}/new8.zarr", "--cluster", "slurm",
                       "--slurm-config", "{d}/neg.yaml"], "gpus"),
    ("yaml-walltime", ["run", "--protocol", "tiny", "--store", "{d}/new9.zarr", "--cluster", "slurm",
                       "--slurm-config", "{d}/wall.yaml"], "walltime"),
    ("yaml-memory", ["run", "--protocol", "tiny", "--store", "{d}/new10.zarr", "--cluster", "slurm",
                     "--slurm-config", "{d}/mem.yaml"], "memory"),
    ("yaml-missing", ["run", "--protocol", "tiny", "--store", "{d}/new11.zarr", "--cluster", "slurm",
                      "--slurm-config", "{d}/nothere.yaml"], "nothere.yaml"),
    # ---- JSON and key=value settings
    ("json-meta", ["import", "jung2023", "{d}/release", "--store", "{d}/new12.zarr"], "meta.json"),
    ("json-no-release", ["import", "jung2023", "{d}/empty_release", "--store", "{d}/new13.zarr"], "empty_release"),
    ("set-no-equals", ["run", "--protocol", "tiny", "--store", "{d}/new14.zarr", "--set", "epochs"], "key=value"),
    ("set-unknown-field", ["run", "--protocol", "tiny", "--store", "{d}/new15.zarr", "--set", "nosuchfield=1"],
     "nosuchfield"),
    ("train-set-field", ["train", ARCH, "--out", "{d}/new_train2", "--set", "nosuchfield=1"], "nosuchfield"),
    ("run-set-type", ["run", "--protocol", "tiny", "--store", "{d}/new20.zarr", "--set", "epochs=abc"],
     "epochs must be an integer, got 'abc'"),
    ("train-set-type", ["train", ARCH, "--out", "{d}/new_train5", "--set", "epochs=abc"],
     "epochs must be an integer, got 'abc'"),
    ("train-set-nonpositive", ["train", ARCH, "--out", "{d}/new_train6", "--set", "epochs=0"],
     "epochs must be a positive integer"),
    ("protocol-unknown", ["run", "--protocol", "nosuch", "--store", "{d}/new16.zarr"], "nosuch"),
    ("train-profile", ["train", ARCH, "--out", "{d}/new_train3", "--profile", "nosuch"], "nosuch"),
    # ---- datasets and npz files
    ("npz-text", ["data", "info", "--dataset", "npz", "--data-root", "{d}/text.npz"], "text.npz"),
    ("npz-keys", ["data", "info", "--dataset", "npz", "--data-root", "{d}/keys.npz"], "'x' and 'y'"),
    ("npz-dtype", ["data", "info", "--dataset", "npz", "--data-root", "{d}/float.npz"], "uint8"),
    ("npz-shape", ["data", "info", "--dataset", "npz", "--data-root", "{d}/shape.npz"], "y must be"),
    ("npz-truncated", ["proxies", "6", "--dataset", "npz", "--data-root", "{d}/truncated.npz"], "truncated.npz"),
    ("npz-no-root", ["data", "info", "--dataset", "npz"], "--data-root"),
    ("npz-missing", ["data", "info", "--dataset", "npz", "--data-root", "{d}/nothere.npz"], "nothere.npz"),
    ("dataset-unknown", ["data", "info", "--dataset", "nosuch"], "nosuch"),
    ("cifar-empty-root", ["data", "info", "--dataset", "cifar10", "--data-root", "{d}/empty"], "empty"),
    # ---- store paths that are files, missing, not ours, of other schemas
    ("status-file", ["status", "{d}/file.zarr"], "file.zarr"),
    ("status-missing", ["status", "{d}/nothere.zarr"], "nothere.zarr"),
    ("status-future-schema", ["status", "{d}/future.zarr"], "schema"),
    ("status-old-schema", ["status", "{d}/old.zarr"], "schema"),
    ("status-foreign-zarr", ["status", "{d}/foreign.zarr"], "not a robustbench-nas store"),
    ("status-plain-folder", ["status", "{d}/plain"], "plain"),
    ("export-file", ["export", "{d}/file.zarr", "--format", "csv", "--out", "{d}/new.csv"], "file.zarr"),
    ("export-future", ["export", "{d}/future.zarr", "--format", "csv", "--out", "{d}/new2.csv"], "schema"),
    ("run-store-file", ["run", "--protocol", "tiny", "--archs", "6", "--store", "{d}/file.zarr"], "file.zarr"),
    ("run-store-future", ["run", "--protocol", "tiny", "--archs", "6", "--store", "{d}/future.zarr"], "schema"),
    ("run-store-plain", ["run", "--protocol", "tiny", "--archs", "6", "--store", "{d}/plain"], "plain"),
    ("run-store-foreign", ["run", "--protocol", "tiny", "--archs", "6", "--store", "{d}/foreign.zarr"],
     "not a robustbench-nas store"),
    ("run-other-protocol", ["run", "--protocol", "tiny", "--archs", "12", "--store", "{d}/store.zarr"],
     "another protocol"),
    ("run-reuse-file", ["run", "--store", "{d}/store.zarr", "--reuse", "{d}/file.zarr"], "file.zarr"),
    ("run-task", ["run", "--protocol", "tiny", "--store", "{d}/new17.zarr", "--task", "3/2"], "task 3/2"),
    ("run-shard-alias-text", ["run", "--protocol", "tiny", "--store", "{d}/new18.zarr", "--shard", "x"], "--task 'x'"),
    ("run-dashboard", ["run", "--protocol", "tiny", "--store", "{d}/new19.zarr", "--dashboard-address", "nonsense"],
     "dashboard-address"),
    ("run-stage", ["run", "--store", "{d}/store.zarr", "--stages", "nosuch"], "nosuch"),
    ("analyze-file", ["analyze", "{d}/file.zarr", "--out", "{d}/new_an"], "file.zarr"),
    ("analyze-future", ["analyze", "{d}/future.zarr", "--out", "{d}/new_an2"], "schema"),
    ("analyze-section", ["analyze", "{d}/store.zarr", "--out", "{d}/new_an3", "--sections", "nosuch"], "nosuch"),
    # ---- checkpoints
    ("ckpt-truncated-attack", ["attack", "{d}/truncated.safetensors", "--eps", "1/255"], "truncated.safetensors"),
    ("ckpt-truncated-measures", ["measures", "{d}/truncated.safetensors"], "truncated.safetensors"),
    ("ckpt-truncated-corrupt", ["corrupt", "eval", "{d}/truncated.safetensors"], "truncated.safetensors"),
    ("ckpt-garbage", ["attack", "{d}/garbage.safetensors", "--eps", "1/255"], "garbage.safetensors"),
    ("ckpt-foreign", ["attack", "{d}/foreign.safetensors", "--eps", "1/255"], "metadata"),
    ("ckpt-missing", ["attack", "{d}/nothere.safetensors", "--eps", "1/255"], "nothere"),
    # ---- outputs that exist: never replaced without --force
    ("train-out-exists", ["train", ARCH, "--out", "{d}/out_train"], "--force"),
    ("train-out-file", ["train", ARCH, "--out", "{d}/existing.json"], "existing.json"),
    ("attack-out-exists", ["attack", "{d}/ckpt", "--eps", "1/255", "--out", "{d}/existing.json"], "--force"),
    ("corrupt-eval-out", ["corrupt", "eval", "{d}/ckpt", "--out", "{d}/existing.json"], "--force"),
    ("corrupt-show-out", ["corrupt", "show", "--out", "{d}/existing.png"], "--force"),
    ("corrupt-make-out", ["corrupt", "make", "--corruption", "brightness", "--out", "{d}/cifarc"], "brightness.npy"),
    ("import-store-exists", ["import", "jung2023", "{d}/release", "--store", "{d}/store.zarr"], "store.zarr"),
    ("analyze-out-foreign", ["analyze", "{d}/store.zarr", "--out", "{d}/report"], "other files"),
    # ---- options
    ("threads-zero", ["train", ARCH, "--out", "{d}/new_train4", "--threads", "0"], "threads"),
    ("threads-text", ["proxies", "6", "--threads", "many"], "many"),
    ("unknown-option", ["status", "{d}/store.zarr", "--bogus"], "--bogus"),
    ("unknown-command", ["nosuchcommand"], "nosuchcommand"),
]


def test_enough_cases() -> None:
    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv, expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_data_unchanged(data: Path, argv: list[str], expect: str) -> None:
    args = [a.replace("{d}", str(data)) for a in argv]
    before = _hashes(data)
    result = CliRunner().invoke(cli, args)
    after = _hashes(data)
    text = result.output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert result.exit_code == 2, f"exit {result.exit_code}: {text}\n{result.exc_info}"
    assert "Traceback" not in text, text
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"not one error line:\n{text}"
    assert expect.lower() in lines[0].lower(), f"{expect!r} not named in: {lines[0]}"
    assert before == after, f"data changed: {set(before.items()) ^ set(after.items())}"


@pytest.mark.parametrize("argv, expect", [
    (["status", "{d}/file.zarr"], "file.zarr"),
    (["attack", "{d}/truncated.safetensors", "--eps", "1/255"], "truncated.safetensors"),
    (["space", "show", "|bad|"], "malformed"),
    (["run", "--protocol", "tiny", "--archs", "6", "--store", "{d}/future.zarr"], "schema"),
])
def test_bad_input_in_a_real_shell(data: Path, argv: list[str], expect: str) -> None:
    """What a user sees: exactly one line on stderr, nothing on stdout, exit code 2."""
    args = [a.replace("{d}", str(data)) for a in argv]
    before = _hashes(data)
    out = subprocess.run([sys.executable, "-m", "robustbench_nas.cli.main", *args], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expect in lines[0], out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    assert _hashes(data) == before


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch) -> None:
    """A bug (not a bad input) says so in one line with exit code 1; `rbnas --debug` shows its traceback."""
    import robustbench_nas.cli.commands.space as space_cmd

    def boom(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(space_cmd, "cell_row", boom)
    r = CliRunner().invoke(cli, ["space", "show", "6"])
    assert r.exit_code == 1 and "internal error: TypeError: a bug" in r.output and "--debug" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["--debug", "space", "show", "6"])
    assert isinstance(r.exception, TypeError)  # re-raised: click's runner (or Python) prints the traceback


def test_every_command_takes_threads() -> None:
    """--threads on every leaf command (declared, or added by the CLI), default from sched_getaffinity."""
    import click

    def leaves(cmd: click.Command, path: str):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from leaves(sub, f"{path} {name}")
        else:
            yield path, cmd

    found = list(leaves(cli, "rbnas"))
    assert len(found) >= 15
    for path, cmd in found:
        assert any("--threads" in p.opts for p in cmd.params), f"{path} has no --threads"


def test_threads_default_and_option_set_torch(monkeypatch) -> None:
    import torch

    from robustbench_nas.utils import THREAD_CAP, available_cores, default_threads

    monkeypatch.delenv("RBNAS_TORCH_THREADS", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    cap = min(len(os.sched_getaffinity(0)), THREAD_CAP)
    assert cap == min(available_cores(), THREAD_CAP)
    # the default is a fixed rule of the usable cores: the same on an idle and on a busy node (same command, same bits)
    for load in (0.0, float(os.cpu_count()) + 3, max(0.0, os.cpu_count() - 1.5)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert default_threads() == cap
    # the load-dependent rule only when asked for
    monkeypatch.setenv("RBNAS_TORCH_THREADS", "idle")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle node: every usable core, capped
    assert default_threads() == cap
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count()) + 3, 0.0, 0.0))  # a busy node: 1
    assert default_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (max(0.0, os.cpu_count() - 1.5), 0.0, 0.0))  # 1.5 cores idle
    assert default_threads() == 1
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # inside an allocation the cores are the job's own: the load is others'
    assert default_threads() == cap
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("RBNAS_TORCH_THREADS", "0")
    with pytest.raises(ValueError, match="positive integer or 'idle'"):
        default_threads()
    monkeypatch.setenv("RBNAS_TORCH_THREADS", "3")
    assert default_threads() == 3
    old = torch.get_num_threads()
    try:
        r = CliRunner().invoke(cli, ["space", "show", "6", "--threads", "1"])
        assert r.exit_code == 0 and torch.get_num_threads() == 1
        r = CliRunner().invoke(cli, ["space", "count"])  # the default applies too (3 from the environment here)
        assert r.exit_code == 0 and torch.get_num_threads() == 3
        monkeypatch.setenv("RBNAS_TORCH_THREADS", "lots")
        r = CliRunner().invoke(cli, ["space", "count"])
        assert r.exit_code == 2 and "RBNAS_TORCH_THREADS" in r.output
    finally:
        torch.set_num_threads(old)


def test_run_threads_default_is_one_per_task() -> None:
    from robustbench_nas.cli.commands.run import command as run_cmd

    opt = next(p for p in run_cmd.params if "--threads" in p.opts)
    assert "1" == str(opt.show_default)


def test_force_replaces_only_the_named_output(data: Path, tmp_path: Path) -> None:
    """With --force the existing output file is replaced (atomically); other files beside it stay."""
    out = tmp_path / "res.json"
    out.write_text("old")
    (tmp_path / "other.txt").write_text("keep")
    r = CliRunner().invoke(cli, ["attack", str(data / "ckpt"), "--eps", "1/255", "--n", "8", "--out", str(out),
                                 "--force", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["n"] == 8
    assert (tmp_path / "other.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "res.json"]  # no temporary left behind

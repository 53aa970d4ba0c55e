"""Real processes: `rbnas run` killed hard (client, or one worker) ends, after a re-run, identical to a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robustbench_nas.pipelines import get_protocol, run_pipeline
from robustbench_nas.storage import DONE, open_dataset, open_store

pytestmark = pytest.mark.slow

ARCHS = [6, 1462, 12000]
MICRO = dict(
    archs=ARCHS,
    profile_overrides={"epochs": 1, "max_train_images": 128},
    attacks={"fgsm@Linf": [2 / 255, 8 / 255]},
    attack_params={},
    attack_images=48,
    batch_size=64,
    # every stage is covered in test_pipeline.py; here the point is the kill, so the cheapest that trains
    stages=["info", "train", "clean", "adversarial"],
)
BOOKKEEPING = {"stage_seconds", "attempts", "error",
               "unit_threads", "unit_device", "unit_precision"}  # how a unit ran, not what it computed


def cli_args(store: Path) -> list[str]:
    args = [sys.executable, "-m", "robustbench_nas.cli.main", "run", "--protocol", "tiny", "--store", str(store),
            "--workers", "1", "--no-progress", "--archs", ",".join(map(str, ARCHS))]
    for k, v in MICRO.items():
        if k != "archs":
            args += ["--set", f"{k}={json.dumps(v)}"]
    return args


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (in-process workers; same seeds, so the same numbers as worker processes)."""
    from distributed import Client, LocalCluster

    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        rep = run_pipeline(path, get_protocol("tiny", **MICRO), client=c, progress=False)
    assert rep.ok, rep.failures
    return path


def assert_same_results(a: Path, b: Path) -> None:
    """Every result array equal, cell by cell (bookkeeping such as wall times aside), and the same weights."""
    import torch

    from robustbench_nas.training import load_checkpoint

    da, db = open_dataset(a).load(), open_dataset(b).load()
    assert da.attrs["protocol_fingerprint"] == db.attrs["protocol_fingerprint"]
    names = [v for v in da.data_vars if v not in BOOKKEEPING]
    assert "adv_confusion" in names and "status" in names
    for v in names:
        if v == "checkpoint":
            continue
        x, y = da[v].values, db[v].values
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=v)
        else:
            assert (x == y).all(), v
    assert (da.status.values == DONE).all()
    for ca, cb in zip(da.checkpoint.values.ravel(), db.checkpoint.values.ravel()):
        ma, _ = load_checkpoint(a.parent / str(ca))
        mb, _ = load_checkpoint(b.parent / str(cb))
        for ta, tb in zip(ma.state_dict().values(), mb.state_dict().values()):
            assert torch.equal(ta, tb)


def wait_for(pred, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"run ended (rc {proc.returncode}) before the kill point:\n{out[-3000:]}")
        if time.time() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("kill point not reached in time")
        time.sleep(0.3)


def trains_done(store: Path) -> int:
    try:
        s = open_store(store)
        return int((s.status()[:, :, s.stage_pos("train")] == DONE).sum())
    except Exception:  # noqa: BLE001  (not created yet)
        return 0


def test_sigkill_of_the_client_then_rerun(tmp_path: Path, reference: Path) -> None:
    import psutil

    store = tmp_path / "k.zarr"
    env = {**os.environ, "RBNAS_TORCH_THREADS": "1"}
    proc = subprocess.Popen(cli_args(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    wait_for(lambda: trains_done(store) >= 1, proc)
    orphans = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)  # the client (with its scheduler) only: its workers may still be writing
    proc.wait(30)
    try:
        st = open_store(store).status()
        assert (st != DONE).any(), "the run finished before the kill: the test proved nothing"
        # re-run at once, while orphaned workers of the killed run may still finish and write their task
        rerun = subprocess.run(cli_args(store), capture_output=True, text=True, env=env, timeout=600)
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    finally:
        for p in orphans:  # only the processes this test started, by pid
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
    assert_same_results(reference, store)


def test_sigkill_of_one_worker_mid_run(tmp_path: Path, reference: Path) -> None:
    import psutil

    store = tmp_path / "w.zarr"
    env = {**os.environ, "RBNAS_TORCH_THREADS": "1"}
    proc = subprocess.Popen(cli_args(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    wait_for(lambda: trains_done(store) >= 1, proc)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if any("spawn_main" in part for part in c.cmdline())]
    assert workers, "no worker processes found"
    workers[0].send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert_same_results(reference, store)

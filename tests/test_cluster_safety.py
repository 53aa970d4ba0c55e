"""Shared-cluster safety of the pipeline: what listens where, TLS between scheduler and workers, SLURM failing fast.

* A real local run (``make_client`` as ``rbnas run`` uses it, spawned worker processes) is watched from outside
  with ``psutil``: every listening socket of the run's process tree is on loopback, none on 0.0.0.0 / ::, and a
  plain (non-TLS) client is refused by the scheduler while the run completes.
* The file-based per-run credentials that SLURM workers get: owner-only permissions, a TLS cluster built from
  them refuses plain and certificate-less clients, a run on it completes, they are removed afterwards.
* SLURM fail-fast logic against fake ``sbatch`` / ``squeue`` / ``scontrol`` scripts on ``PATH`` (so it is tested
  without SLURM): a refused submission, a job dying at start, no worker within the start timeout. The same
  against the real local SLURM is in ``tests/test_slurm_cluster.py``.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from robustbench_nas.pipelines import get_protocol, run_pipeline
from robustbench_nas.pipelines.runner import check_dashboard_address, make_client

ONE_CELL = dict(
    archs=[6],
    profile_overrides={"epochs": 1, "max_train_images": 64},
    attacks={"fgsm@Linf": (8 / 255,)},
    attack_params={},
    corruptions=("brightness",),
    severities=(1,),
    proxies=("params",),
    proxy_images=8,
    measures=("jacobian_fro",),
    measure_images=4,
    attack_images=16,
    corruption_images=16,
    batch_size=16,
)
WILDCARD = {"0.0.0.0", "::", ""}


# ---- dashboard address --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given, bound", [
    ("127.0.0.1:0", "127.0.0.1:0"),
    (":8787", "127.0.0.1:8787"),  # distributed would bind ':PORT' on every interface
    ("localhost:9000", "localhost:9000"),
    ("0.0.0.0:8787", "0.0.0.0:8787"),  # allowed on purpose, with a warning
    (None, None),
])
def test_dashboard_address_defaults_to_loopback(given, bound) -> None:
    assert check_dashboard_address(given) == bound


@pytest.mark.parametrize("bad", ["8787", "host", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_dashboard_address_rejects_malformed(bad) -> None:
    with pytest.raises(ValueError, match="dashboard-address"):
        check_dashboard_address(bad)


def test_dashboard_link_is_the_bound_socket(monkeypatch) -> None:
    """The printed link comes from the socket the dashboard is bound to, not from the scheduler's address."""
    import socket
    from types import SimpleNamespace

    import robustbench_nas.pipelines.runner as runner

    monkeypatch.setattr(runner, "_has_bokeh", lambda: True)

    def sched(host, port):
        return SimpleNamespace(http_server=SimpleNamespace(address=host, port=port), services={"dashboard": object()})

    assert runner.dashboard_link(sched("127.0.0.1", 40123)) == "http://127.0.0.1:40123/status"
    # bound to every interface (an explicit 0.0.0.0:PORT): the link says so by naming the machine, not 127.0.0.1
    assert runner.dashboard_link(sched("0.0.0.0", 8787)) == f"http://{socket.gethostname()}:8787/status"
    assert runner.dashboard_link(sched("::1", 9)) == "http://[::1]:9/status"
    assert runner.dashboard_link(SimpleNamespace(http_server=None, services={})) is None


# ---- a real local run, watched from outside -----------------------------------------------------------------------
def _listening(procs) -> set[tuple[int, str, int]]:
    import psutil

    out = set()
    for p in procs:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.add((p.pid, c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def test_local_run_listens_on_loopback_only_and_refuses_plain_clients(tmp_path: Path) -> None:
    """`rbnas run`'s local cluster (spawned workers, TLS, dashboard on): nothing listens beyond loopback during the
    run, a plain TCP client is refused by the scheduler, and the run still completes."""
    import psutil
    from distributed import Client

    me = psutil.Process()
    seen: set[tuple[int, str, int]] = set()
    pids: set[int] = set()
    result: dict = {}

    def run() -> None:
        try:
            with make_client("local", n_workers=1) as client:
                result["address"] = client.scheduler.address
                result["dashboard"] = getattr(client, "rbnas_dashboard", None)
                result["report"] = run_pipeline(tmp_path / "s.zarr", get_protocol("tiny", **ONE_CELL),
                                                stages=["clean"], client=client, progress=False)
        except BaseException as e:  # noqa: BLE001  (reported by the assertion below)
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    refused = None
    deadline = time.monotonic() + 300
    while t.is_alive() and time.monotonic() < deadline:
        procs = [me, *me.children(recursive=True)]
        pids |= {p.pid for p in procs}
        seen |= _listening(procs)
        if refused is None and "address" in result:
            plain = result["address"].replace("tls://", "tcp://")
            try:
                Client(plain, timeout=5).close()
                refused = False
            except (OSError, TimeoutError) as e:  # CommClosedError is an OSError subclass? not always: see below
                refused = repr(e)
            except Exception as e:  # noqa: BLE001  (distributed raises its own comm errors)
                refused = repr(e)
        time.sleep(0.2)
    t.join(timeout=60)
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.ok and report.progress["clean"] == {"done": 1, "failed": 0, "pending": 0}, report
    assert result["address"].startswith("tls://127.0.0.1:"), result["address"]
    assert refused not in (None, False), "a plain TCP client was accepted by the scheduler"
    assert len(pids) >= 2, "no worker process was seen"
    worker_ports = {(pid, ip, port) for pid, ip, port in seen if pid != me.pid}
    assert worker_ports, f"no listening socket of a worker process seen: {seen}"
    bad = {s for s in seen if s[1] in WILDCARD or not s[1].startswith("127.")}
    assert not bad, f"listening beyond loopback during the run: {sorted(bad)}"
    if result["dashboard"]:  # only with bokeh installed; then the printed link is the bound loopback socket
        assert result["dashboard"].startswith("http://127.0.0.1:")
        port = int(result["dashboard"].rsplit(":", 1)[1].split("/")[0])
        assert any(p == port and ip == "127.0.0.1" for _, ip, p in seen)


@pytest.mark.parametrize("kw", [dict(dashboard_address=None), dict(insecure=True)], ids=["no-dashboard", "insecure"])
def test_local_cluster_variants_stay_on_loopback(kw) -> None:
    """--no-dashboard and --insecure change what is served, never where: still loopback only."""
    import psutil

    with make_client("local", n_workers=1, **kw) as client:
        assert client.submit(sum, [1, 2]).result() == 3
        me = psutil.Process()
        seen = _listening([me, *me.children(recursive=True)])
        assert client.scheduler.address.startswith("tcp://" if kw.get("insecure") else "tls://")
        assert getattr(client, "rbnas_dashboard", None) is None or "dashboard_address" not in kw
    assert seen and all(ip.startswith("127.") for _, ip, _ in seen), seen


# ---- the credentials SLURM workers get ----------------------------------------------------------------------------
def test_file_credentials_are_owner_only_and_refuse_plain_clients(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    from robustbench_nas.pipelines.slurm import remove_credentials, write_credentials

    security, folder = write_credentials(tmp_path / "shared")
    try:
        assert folder.parent == tmp_path / "shared" and folder.name.startswith(".rbnas-credentials-")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["ca.pem", "cert.pem", "key.pem"]
        for p in folder.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert "PRIVATE KEY" in (folder / "key.pem").read_text()
        # what a worker job is told: paths only, never the key itself
        args = " ".join(f"{k}={v}" for k, v in security.get_tls_config_for_role("worker").items())
        assert "PRIVATE KEY" not in args and str(folder / "key.pem") in args
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://", host="127.0.0.1",
                          security=security, dashboard_address=None) as lc, Client(lc, security=security) as c:
            addr = lc.scheduler.address
            assert addr.startswith("tls://")
            for bad_client in (addr.replace("tls://", "tcp://"), addr):  # plain TCP; TLS without our certificate
                with pytest.raises(Exception):  # noqa: B017  (a comm error or a timeout; never a connection)
                    Client(bad_client, timeout=4).close()
            report = run_pipeline(tmp_path / "s.zarr", get_protocol("tiny", **ONE_CELL), stages=["info"],
                                  client=c, progress=False)
            assert report.ok and report.progress["info"]["done"] == 1
    finally:
        remove_credentials(folder)
    assert not folder.exists()


def test_remove_credentials_never_deletes_foreign_folders(tmp_path: Path) -> None:
    from robustbench_nas.pipelines.slurm import remove_credentials

    other = tmp_path / "data"
    other.mkdir()
    (other / "key.pem").write_text("x")
    remove_credentials(other)  # not our name
    assert (other / "key.pem").exists()
    ours_by_name = tmp_path / ".rbnas-credentials-abc"
    ours_by_name.mkdir()
    (ours_by_name / "results.csv").write_text("precious")
    remove_credentials(ours_by_name)  # our name, but holds a file we never write
    assert (ours_by_name / "results.csv").read_text() == "precious"


# ---- SLURM fail-fast, with fake SLURM commands ------------------------------------------------------------------
GRES_ERROR = "sbatch: error: Invalid generic resource (gres) specification"


def _fake_slurm(folder: Path, *, sbatch: str, squeue: str = "exit 0", scontrol: str = "exit 0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in {"sbatch": sbatch, "squeue": squeue, "scontrol": scontrol, "scancel": "exit 0"}.items():
        p = folder / name
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(0o755)
    return folder


@pytest.fixture()
def fake_path(monkeypatch, tmp_path: Path):
    def install(**bodies: str) -> Path:
        folder = _fake_slurm(tmp_path / "bin", **bodies)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return folder

    return install


def test_refused_submission_fails_at_once_with_sbatch_message_and_hint(fake_path, tmp_path: Path) -> None:
    from robustbench_nas.pipelines.slurm import SlurmStartError, make_slurm_cluster

    fake_path(sbatch=f'echo "{GRES_ERROR}" >&2; exit 1')
    t0 = time.monotonic()
    with pytest.raises(SlurmStartError) as info:
        make_slurm_cluster(None, jobs=1, credentials_dir=str(tmp_path / "cred"))
    assert time.monotonic() - t0 < 30
    msg = str(info.value)
    assert "Invalid generic resource (gres) specification" in msg and "gpus: 0" in msg, msg
    assert not list((tmp_path / "cred").glob(".rbnas-credentials-*")), "credentials left behind"


def test_rbnas_run_cluster_slurm_refused_is_one_line_exit_2(fake_path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    fake_path(sbatch=f'echo "{GRES_ERROR}" >&2; exit 1')
    r = CliRunner().invoke(cli, ["run", "--protocol", "tiny", "--archs", "6", "--store", str(tmp_path / "s.zarr"),
                                 "--cluster", "slurm", "--no-progress"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    assert "gres" in lines[0] and "gpus: 0" in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "s.zarr.log").exists(), "refused, yet a store was made"


def test_submission_refused_after_test_only_is_reported(fake_path, tmp_path: Path) -> None:
    """`--test-only` passes but the real submission is refused (e.g. a per-user job limit)."""
    from robustbench_nas.pipelines.slurm import SlurmStartError, make_slurm_cluster, wait_for_first_worker

    fake_path(sbatch='case "$1" in --test-only) echo "sbatch: Job 1 to start at now" >&2; exit 0;; esac\n'
                     'echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2; exit 1')
    with make_slurm_cluster(None, jobs=1, cores=1, memory="1GB", insecure=True) as cluster:
        with pytest.raises(SlurmStartError, match="QOSMaxSubmitJobPerUserLimit") as info:
            wait_for_first_worker(cluster, timeout=30, poll_s=0.2)
    assert "qos" in str(info.value).lower()


def test_job_dying_at_start_is_reported_with_its_log(fake_path, tmp_path: Path) -> None:
    from robustbench_nas.pipelines.slurm import SlurmStartError, make_slurm_cluster, wait_for_first_worker

    err = tmp_path / "job.err"
    err.write_text("Traceback (most recent call last):\nModuleNotFoundError: No module named 'distributed'\n")
    fake_path(sbatch='case "$1" in --test-only) exit 0;; esac\necho "Submitted batch job 4242"',
              squeue="exit 0",  # the job is no longer queued
              scontrol=f'echo "JobId=4242 JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 StdErr={err}"')
    t0 = time.monotonic()
    with make_slurm_cluster(None, jobs=1, cores=1, memory="1GB", insecure=True) as cluster:
        with pytest.raises(SlurmStartError) as info:
            wait_for_first_worker(cluster, timeout=120, poll_s=0.2)
    msg = str(info.value)
    assert time.monotonic() - t0 < 60
    assert "4242" in msg and "JobState=FAILED" in msg and "No module named 'distributed'" in msg, msg
    assert "job-script-prologue" in msg  # the hint


def test_no_worker_within_start_timeout(fake_path, tmp_path: Path) -> None:
    from robustbench_nas.pipelines.slurm import SlurmStartError, make_slurm_cluster, wait_for_first_worker

    fake_path(sbatch='case "$1" in --test-only) exit 0;; esac\necho "Submitted batch job 77"',
              squeue='echo "77|PENDING|ReqNodeNotAvail"')
    with make_slurm_cluster(None, jobs=1, cores=1, memory="1GB", insecure=True, start_timeout=3) as cluster:
        t0 = time.monotonic()
        with pytest.raises(SlurmStartError) as info:
            wait_for_first_worker(cluster, poll_s=0.2)
        assert 2.5 < time.monotonic() - t0 < 30
    msg = str(info.value)
    assert "within 3 s" in msg and "77 PENDING (ReqNodeNotAvail)" in msg and "Hint:" in msg, msg


def test_slurm_hints() -> None:
    from robustbench_nas.pipelines.slurm import slurm_hint

    assert "gpus: 0" in slurm_hint(GRES_ERROR)
    assert "partition" in slurm_hint("sbatch: error: invalid partition specified: gpux")
    assert "account" in slurm_hint("sbatch: error: Invalid account or account/partition combination specified")
    assert "walltime" in slurm_hint("sbatch: error: Requested time limit is invalid (missing or exceeds some limit)")
    assert slurm_hint("something else entirely") == ""


def test_worker_jobs_limit_blas_threads() -> None:
    from robustbench_nas.pipelines.slurm import slurm_job_script

    assert "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 " in slurm_job_script(None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

"""SLURM configuration, job script and worker launcher, checked without a SLURM cluster.

The expected values are hand-computed from the SLURM/Dask conventions (e.g. a 2 h walltime gives a 90 % = 6480 s
lifetime); the job script comes from dask-jobqueue itself, so these tests also pin how our config maps onto it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_nas.pipelines.slurm import (
    SlurmConfig,
    load_slurm_config,
    parse_duration,
    parse_walltime,
    plan_worker_processes,
    slurm_cluster_kwargs,
    slurm_job_script,
    visible_gpus,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30", 1800),  # MM
        ("05:30", 330),  # MM:SS
        ("02:00:00", 7200),  # HH:MM:SS
        ("1-00", 86400),  # D-HH
        ("1-02:03", 86400 + 2 * 3600 + 3 * 60),  # D-HH:MM
        ("2-00:00:07", 2 * 86400 + 7),  # D-HH:MM:SS
        (90, 5400),  # int = minutes, as in SLURM
    ],
)
def test_parse_walltime_slurm_formats(text: str | int, seconds: int) -> None:
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("bad", ["", "1h", "01:00:00:00", "0", "00:00:00", "-5", None, True])
def test_parse_walltime_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="walltime"):
        parse_walltime(bad)  # type: ignore[arg-type]


def test_parse_duration() -> None:
    assert parse_duration("3h50m") == 3 * 3600 + 50 * 60
    assert parse_duration("1d 2h") == 86400 + 7200
    assert parse_duration("600s") == 600
    assert parse_duration("55 minutes") == 3300  # Dask's long form
    assert parse_duration(12.5) == 12.5
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_defaults_and_auto_lifetime() -> None:
    cfg = load_slurm_config(None, walltime="02:00:00", gpus=2, cores=8)
    assert cfg.workers == 2
    assert cfg.lifetime_seconds == 0.90 * 7200 == 6480
    assert cfg.lifetime_stagger_seconds == 0.05 * 7200 == 360
    assert cfg.gres() == "gpu:2"
    assert load_slurm_config(None, gpus=2, gres_type="a100").gres() == "gpu:a100:2"
    assert load_slurm_config(None, gpus=0).gres() is None
    assert load_slurm_config(None, gpus=0, workers_per_job=3, cores=3).workers == 3
    off = load_slurm_config(None, lifetime="off", lifetime_stagger="off")
    assert off.lifetime_seconds is None and "--lifetime" not in slurm_cluster_kwargs(off)["worker_extra_args"]


def test_yaml_file_flat_and_dask_style(tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text("queue: a100\naccount: proj\nqos: high\nwalltime: '1-00:00:00'\ngpus: 4\ncores: 16\n"
                    "memory: 64GiB\njob-extra-directives: ['--constraint=ib']\nname: my-workers\n")
    cfg = load_slurm_config(flat, account="other", qos=None)  # override wins, None is ignored
    assert (cfg.partition, cfg.account, cfg.qos, cfg.gpus, cfg.cores) == ("a100", "other", "high", 4, 16)
    assert cfg.job_name == "my-workers" and cfg.job_extra_directives == ["--constraint=ib"]
    assert cfg.walltime_seconds == 86400
    nested = tmp_path / "dask.yaml"
    nested.write_text("jobqueue:\n  slurm:\n    queue: a100\n    gpus: 2\n    cores: 4\n")
    cfg2 = load_slurm_config(nested)
    assert (cfg2.partition, cfg2.gpus, cfg2.cores) == ("a100", 2, 4)


def test_shipped_template_is_valid() -> None:
    cfg = load_slurm_config(ROOT / "slurm" / "jobqueue.yaml")
    assert isinstance(cfg, SlurmConfig)
    assert cfg.partition == "gpu" and cfg.gpus == 1 and cfg.resources == {"GPU": 1}


@pytest.mark.parametrize(
    "content, overrides, match",
    [
        ("gpu: 2\n", {}, "unknown key 'gpu'"),
        ("- a\n- b\n", {}, "expected a mapping"),
        ("gpus: [1\n", {}, "not valid YAML"),
        ("", {"gpus": -1}, "gpus must be an integer >= 0"),
        ("", {"gpus": 2, "workers_per_job": 1}, "must equal gpus x workers_per_gpu"),
        ("", {"gpus": 2, "workers_per_gpu": 2, "workers_per_job": 2}, r"\(2 x 2\)"),
        ("", {"gpus": 1, "workers_per_gpu": 0}, "workers_per_gpu must be an integer from 1 to 8, got 0"),
        ("", {"gpus": 1, "workers_per_gpu": 9}, "workers_per_gpu must be an integer from 1 to 8, got 9"),
        ("", {"gpus": 0, "workers_per_gpu": 2}, "workers_per_gpu .2. needs gpus > 0"),
        ("", {"cores_per_worker": 0}, "cores_per_worker must be an integer >= 1"),
        ("", {"gpus": 2, "workers_per_gpu": 2, "cores": 3}, r"cores \(3\) must be an integer >= the 4 worker"),
        ("", {"gpus": 4, "cores": 2}, "cores"),
        ("", {"memory": "lots"}, "memory 'lots'"),
        ("", {"walltime": "1h"}, "walltime '1h'"),
        ("", {"walltime": "01:00:00", "lifetime": "2h"}, "shorter than the walltime"),
        ("", {"lifetime": "whenever"}, "lifetime"),
        ("", {"job_extra_directives": ["--gres=gpu:2"]}, "not job_extra_directives"),
        ("", {"resources": {"GPU": 0}}, "positive numbers"),
        ("", {"allowed_failures": -1}, "allowed_failures"),
        ("queue: a\npartition: b\n", {}, "given twice"),
    ],
)
def test_bad_config_is_named(tmp_path: Path, content: str, overrides: dict, match: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_slurm_config(path, **overrides)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_slurm_config(tmp_path / "nope.yaml")


def test_job_script_has_every_setting(tmp_path: Path) -> None:
    script = slurm_job_script(
        None, partition="gpu-long", account="proj42", qos="high", walltime="02:00:00", gpus=2, gres_type="a100",
        cores=8, memory="16GiB", job_extra_directives=["--constraint=ib"], log_directory=str(tmp_path / "logs"),
        job_script_prologue=["module load cuda"],
    )
    lines = script.splitlines()
    for expected in ["#SBATCH -p gpu-long", "#SBATCH -A proj42", "#SBATCH --qos=high", "#SBATCH -t 02:00:00",
                     "#SBATCH --gres=gpu:a100:2", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=16G",
                     "#SBATCH --constraint=ib", "#SBATCH -J rbnas-worker", "module load cuda"]:
        assert expected in lines, f"{expected!r} not in job script:\n{script}"
    assert not (tmp_path / "logs").exists(), "a dry run must not create the log directory"
    assert f"#SBATCH -o {tmp_path / 'logs'}/rbnas-worker-%J.out" in lines
    cmd = shlex.split(lines[-1])
    assert cmd[1:3] == ["-m", "robustbench_nas.pipelines.slurm"]
    args = dict(zip(cmd[3:], cmd[4:]))  # each option -> the token after it
    # 8 cores / 2 workers = 4 threads; 16 GiB / 2 = 8 GiB; lifetime 90 % and stagger 5 % of 7200 s.
    assert args["--nthreads"] == "4" and args["--memory-limit"] == "8.00GiB"
    assert args["--nworkers"] == "2" and args["--gpus"] == "2" and args["--resources"] == "GPU=1"
    assert args["--lifetime"] == "6480s" and args["--lifetime-stagger"] == "360s"


def test_launcher_plan_pins_one_gpu_per_worker() -> None:
    script = slurm_job_script(None, gpus=2, cores=4, memory="4GiB", walltime="01:00:00")
    argv = shlex.split(script.splitlines()[-1])[3:]  # what the job passes to `python -m robustbench_nas.pipelines.slurm`
    plan = plan_worker_processes(argv, {"CUDA_VISIBLE_DEVICES": "3,5"})
    assert [p.name for p in plan] == ["rbnas-worker-0-0", "rbnas-worker-0-1"]  # dask-jobqueue's group names
    assert [p.gpu for p in plan] == ["3", "5"]
    for p in plan:
        assert p.argv[:4] == (sys.executable, "-m", "distributed.cli.dask_worker", "tcp://SCHEDULER:8786")
        a = list(p.argv)
        assert a[a.index("--name") + 1] == p.name
        assert a[a.index("--nthreads") + 1] == "2" and a[a.index("--resources") + 1] == "GPU=1"
        assert "--nworkers" not in a and "--gpus" not in a  # launcher-only options are consumed


def test_launcher_plan_edge_cases() -> None:
    base = ["tcp://h:1", "--name", "j", "--nthreads", "1"]
    with pytest.raises(ValueError, match="asked for 2 GPU.s. but this process sees 1"):
        plan_worker_processes(base + ["--nworkers", "2", "--gpus", "2"], {"CUDA_VISIBLE_DEVICES": "0"})
    # No GPU list from SLURM (device cgroup only): the GPUs the process sees, 0..count-1, never SLURM_JOB_GPUS.
    two = lambda: 2  # noqa: E731  (the driver's count inside the job's cgroup)
    assert [p.gpu for p in plan_worker_processes(base + ["--nworkers", "2", "--gpus", "2"], {}, two)] == ["0", "1"]
    assert [p.gpu for p in plan_worker_processes(base + ["--gpus", "1"], {"SLURM_JOB_GPUS": "6"}, lambda: 1)] == ["0"]
    cpu = plan_worker_processes(base, {"CUDA_VISIBLE_DEVICES": "0"})
    assert [(p.name, p.gpu) for p in cpu] == [("j", None)]  # gpus=0: not pinned, name unchanged
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, lambda: 0) == []


def test_launcher_starts_pinned_workers_and_forwards_sigterm(tmp_path: Path) -> None:
    """The real launcher against a local scheduler: two workers, each sees only its own GPU id."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="4,7")
        log = tmp_path / "launcher.log"  # a file, not a pipe: nobody reads it while the workers log
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "robustbench_nas.pipelines.slurm", cluster.scheduler_address, "--name", "job", "--nthreads",
                 "2", "--nworkers", "2", "--gpus", "2", "--resources", "GPU=1", "--no-nanny"],
                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            client.wait_for_workers(2, timeout=40)
            seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))  # {worker address: value}
            workers = client.scheduler_info()["workers"]
            gpu_of = {w["name"]: seen[addr] for addr, w in workers.items()}
            assert gpu_of == {"job-0": "4", "job-1": "7"}
            assert all(w["resources"] == {"GPU": 1} for w in workers.values())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) in (0, 15, 143), log.read_text()[-3000:]
            deadline = time.monotonic() + 30
            while client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not client.scheduler_info()["workers"], "workers still connected after SIGTERM"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class _FakeJob:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _FakeCluster:
    """The parts of a SpecCluster of two 2-worker jobs that the respawner touches."""

    def __init__(self) -> None:
        from distributed.core import Status

        self.status = Status.running
        self.worker_spec = {"J-0": {"group": ["-0", "-1"]}, "J-1": {"group": ["-0", "-1"]}}
        self.workers = {"J-0": _FakeJob("100"), "J-1": _FakeJob("101")}
        self.scheduler_info: dict = {"workers": {}}
        self.next_id = 200

    def connect(self, *names: str) -> None:
        self.scheduler_info = {"workers": {f"tcp://w{i}": {"name": n} for i, n in enumerate(names)}}

    async def _correct_state(self) -> None:  # SpecCluster: start a job for every spec entry without one
        for name in sorted(set(self.worker_spec) - set(self.workers)):
            self.workers[name] = _FakeJob(str(self.next_id))
            self.next_id += 1


def test_respawner_replaces_only_jobs_that_lost_all_workers() -> None:
    import asyncio

    from robustbench_nas.pipelines.slurm import JobRespawner

    c = _FakeCluster()
    r = JobRespawner(c, grace_s=0.0)
    check = lambda: asyncio.run(r.check())  # noqa: E731
    check()  # nothing connected yet: queued jobs are never replaced
    assert r.replaced == [] and set(c.workers) == {"J-0", "J-1"}
    c.connect("J-0-0", "J-0-1", "J-1-0")
    check()
    c.connect("J-0-1", "J-1-0")  # J-0 still has a worker: not lost
    check()
    assert r.replaced == []
    old = c.workers["J-0"]
    c.connect("J-1-0")  # every worker of J-0 gone (walltime, scancel)
    check()
    assert r.replaced == [("J-0", "100")] and old.closed
    assert c.workers["J-0"].job_id == "200"  # resubmitted under the same name
    check()  # the new J-0 has not connected yet: left alone
    assert len(r.replaced) == 1
    r.worker_arrived("J-0-1")  # the scheduler plugin reports its first worker ...
    c.connect("J-1-0")  # ... which is gone again by the next check
    check()
    assert r.replaced[-1] == ("J-0", "200") and c.workers["J-0"].job_id == "201"
    del c.worker_spec["J-1"]  # scaled down on purpose: never replaced
    c.connect()
    check()
    assert [j for j, _ in r.replaced].count("J-1") == 0
    # A job the cluster dropped by itself (SpecCluster's lost-worker timeout) is resubmitted and recorded.
    c.worker_spec["J-1"] = {"group": ["-0", "-1"]}
    del c.workers["J-1"]
    check()
    assert r.replaced[-1] == ("J-1", "101") and c.workers["J-1"].job_id == "202"


def test_slurm_back_end_never_imports_the_runner() -> None:
    """Dependencies point one way: the runner imports the SLURM back end (for ``--cluster slurm``); no module of the
    back end imports the runner (what both need, the dashboard defaults, sits below both in ``dashboard.py``)."""
    import ast

    import robustbench_nas.pipelines as pipelines

    root = Path(pipelines.__file__).parent
    modules = [root / "slurm.py", *root.glob("slurm_*.py"), root / "squeue.py", root / "sbatch_errors.py",
               root / "tls_files.py", root / "dashboard.py"]
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([f"{node.module or ''}.{a.name}" for a in node.names] + [node.module or ""]
                     if isinstance(node, ast.ImportFrom) else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n.split(".")[-1] == "runner" for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert len(modules) >= 10 and not offenders, offenders


def test_worker_command_module_runs_the_launcher() -> None:
    """``python -m robustbench_nas.pipelines.slurm`` (what every job runs) is the launcher: a job without the
    scheduler argument fails with the launcher's own error and exit code 2, not an import error."""
    import subprocess
    import sys

    from robustbench_nas.pipelines.slurm import WORKER_COMMAND

    run = subprocess.run([sys.executable, "-m", WORKER_COMMAND], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "cannot start workers" in run.stderr

"""GPU pinning without a GPU (issue 29): the job's own visible devices (cgroup-safe), several workers per GPU,
never all on GPU 0. Device counts and environments are mocked; the expected pinnings are worked out by hand."""

from __future__ import annotations

import importlib
import shlex
import types

import pytest
import torch

from robustbench_nas.pipelines import gpu_slots
from robustbench_nas.pipelines.gpu_slots import gpu_of_worker, job_gpus, local_worker_device, visible_gpus
from robustbench_nas.pipelines.slurm import load_slurm_config, plan_worker_processes, slurm_job_script

runner = importlib.import_module("robustbench_nas.pipelines.runner")


def _count(n: int):
    return lambda: n


# ---- what the process sees ------------------------------------------------------------------------------------
def test_visible_gpus_never_uses_global_slurm_ids() -> None:
    # A job holding GPUs 6 and 7 of its node inside a device cgroup: the driver shows it 2 devices, 0 and 1.
    cgroup = {"SLURM_JOB_GPUS": "6,7", "SLURM_STEP_GPUS": "6,7"}
    assert visible_gpus(cgroup, _count(2)) == ["0", "1"]
    # CUDA_VISIBLE_DEVICES is what CUDA honours: passed on as it is (indices, UUIDs, MIG ids).
    assert visible_gpus({**cgroup, "CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}, _count(8)) == ["GPU-aa", "GPU-bb"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, _count(4)) == []  # set but empty: no GPU at all
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, _count(3)) == ["0", "1", "2"]  # SLURM: unknown


def test_job_gpus_refuses_what_it_cannot_pin() -> None:
    assert job_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, 2) == ["2", "3"]
    with pytest.raises(ValueError, match=r"asked for 2 GPU\(s\) but this process sees 1 .*CUDA_VISIBLE_DEVICES='5'"):
        job_gpus({"CUDA_VISIBLE_DEVICES": "5"}, 2)
    with pytest.raises(ValueError, match=r"sees 0 .*CUDA_VISIBLE_DEVICES is unset and torch.cuda.device_count\(\) = 0"):
        job_gpus({"SLURM_JOB_GPUS": "6"}, 1, _count(0))
    # no cgroup, no CUDA_VISIBLE_DEVICES: the whole node is visible and 0..G-1 may be another job's GPUs
    with pytest.raises(ValueError, match="sees all 8 GPUs of the node"):
        job_gpus({}, 2, _count(8))


# ---- SLURM: the launcher's plan -------------------------------------------------------------------------------
def _launcher_argv(**cfg) -> list[str]:
    script = slurm_job_script(None, memory="8GiB", walltime="01:00:00", **cfg)
    return shlex.split(script.splitlines()[-1])[3:]


def test_launcher_in_a_device_cgroup_pins_local_ids() -> None:
    # SLURM_JOB_GPUS=6,7 would give CUDA_VISIBLE_DEVICES=6 to a worker that sees only devices 0 and 1: no GPU.
    plan = plan_worker_processes(_launcher_argv(gpus=2), {"SLURM_JOB_GPUS": "6,7"}, _count(2))
    assert [p.gpu for p in plan] == ["0", "1"]


@pytest.mark.parametrize("wpg, expected", [(1, ["3", "5"]), (2, ["3", "5", "3", "5"]),
                                           (3, ["3", "5", "3", "5", "3", "5"])])
def test_several_workers_per_gpu(wpg: int, expected: list[str]) -> None:
    argv = _launcher_argv(gpus=2, workers_per_gpu=wpg)
    plan = plan_worker_processes(argv, {"CUDA_VISIBLE_DEVICES": "3,5"}, _count(0))
    assert [p.gpu for p in plan] == expected
    assert [p.name for p in plan] == [f"rbnas-worker-0-{i}" for i in range(2 * wpg)]
    for p in plan:
        a = list(p.argv)
        assert a[a.index("--resources") + 1] == "GPU=1"  # each worker: one GPU unit at a time
        assert "--workers-per-gpu" not in a  # launcher-only options are consumed


def test_cores_follow_the_workers() -> None:
    # 4 GPUs x 2 workers x 4 cores (default per worker) = 32 cores, 32 / 8 = 4 threads per worker
    cfg = load_slurm_config(None, gpus=4, workers_per_gpu=2)
    assert (cfg.workers, cfg.job_cores) == (8, 32)
    script = slurm_job_script(None, gpus=4, workers_per_gpu=2, memory="64GiB", walltime="01:00:00")
    assert "#SBATCH --cpus-per-task=32" in script.splitlines()
    args = shlex.split(script.splitlines()[-1])
    assert args[args.index("--nthreads") + 1] == "4" and args[args.index("--nworkers") + 1] == "8"
    assert args[args.index("--workers-per-gpu") + 1] == "2"
    assert load_slurm_config(None, gpus=4, workers_per_gpu=2, cores_per_worker=2).job_cores == 16
    assert load_slurm_config(None, gpus=4, workers_per_gpu=2, cores=12).job_cores == 12  # explicit wins
    assert load_slurm_config(None).job_cores == 4  # the old default of one GPU, one worker


def test_launcher_refuses_inconsistent_worker_counts() -> None:
    base = ["tcp://h:1", "--name", "j"]
    with pytest.raises(ValueError, match=r"--nworkers \(3\) must be --gpus \(2\) x --workers-per-gpu \(2\)"):
        plan_worker_processes(base + ["--nworkers", "3", "--gpus", "2", "--workers-per-gpu", "2"],
                              {"CUDA_VISIBLE_DEVICES": "0,1"})


def test_gpu_of_worker_round_robin() -> None:
    assert [gpu_of_worker(i, 4, 2) for i in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="worker 8 does not exist"):
        gpu_of_worker(8, 4, 2)


# ---- local cluster ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_local_workers_spread_over_gpus(device: str) -> None:
    got = [local_worker_device(device, k, _count(2), cuda_available=True) for k in range(4)]
    assert got == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]  # 2 GPUs x 2 workers per GPU


def test_local_worker_device_keeps_explicit_choices() -> None:
    assert local_worker_device("cuda:1", 0, _count(2), cuda_available=True) == "cuda:1"
    assert local_worker_device("cpu", 3, _count(2), cuda_available=True) == "cpu"
    assert local_worker_device("auto", 3, _count(0), cuda_available=False) == "cpu"
    assert local_worker_device("cuda", 3, _count(1), cuda_available=True) == "cuda"  # one GPU: nothing to choose
    assert local_worker_device("cuda", "job-0-1", _count(2), cuda_available=True) == "cuda"  # a SLURM worker


def test_local_worker_count(monkeypatch) -> None:
    monkeypatch.setattr(gpu_slots, "torch_device_count", _count(2))
    assert runner._local_workers(None, 3) == 6
    assert runner._local_workers(5, 3) == 5
    monkeypatch.setattr(gpu_slots, "torch_device_count", _count(0))
    assert runner._local_workers(None, 3) >= 1  # CPU-only: half the CPUs, whatever workers_per_gpu says
    with pytest.raises(ValueError, match="n_workers must be a positive integer, got 0"):
        runner._local_workers(0, 1)


def _fake_two_gpus(monkeypatch) -> list:
    current: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.append(str(d)))
    return current


def test_worker_device_on_a_real_local_cluster(monkeypatch) -> None:
    """Two in-process Dask workers (names 0 and 1) on a machine faking 2 GPUs: ``--device cuda`` puts them on
    different GPUs and makes each one current (never both on GPU 0)."""
    from distributed import Client, LocalCluster

    current = _fake_two_gpus(monkeypatch)
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as lc, \
            Client(lc) as client:
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        got = {names[a]: client.submit(runner._worker_device, "cuda", lambda d: torch.device(d), workers=[a],
                                       pure=False).result() for a in names}
    assert {k: str(v) for k, v in got.items()} == {0: "cuda:0", 1: "cuda:1"}
    assert sorted(current) == ["cuda:0", "cuda:1"]


def test_worker_device_outside_a_worker_is_unchanged(monkeypatch) -> None:
    _fake_two_gpus(monkeypatch)
    assert runner._worker_device("cuda", lambda d: f"resolved {d}") == "resolved cuda"
    monkeypatch.setattr("distributed.get_worker", lambda: types.SimpleNamespace(name=3))
    assert str(runner._worker_device("auto", lambda d: torch.device("cpu"))) == "cuda:1"
    assert runner._worker_device("cuda:0", lambda d: f"resolved {d}") == "resolved cuda:0"


def test_make_client_refuses_bad_workers_per_gpu() -> None:
    with pytest.raises(ValueError, match="workers_per_gpu must be an integer from 1 to 8, got 0"):
        with runner.make_client("local", workers_per_gpu=0):
            pass

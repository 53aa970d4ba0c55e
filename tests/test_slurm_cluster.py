"""The SLURM path against a real SLURM: real ``sbatch`` jobs running Dask workers.

Needs the private one-node cluster of ``.ci/slurm.sh start`` (munge + slurmctld + slurmd, 4 fake GPUs whose ids
SLURM hands out through CUDA_VISIBLE_DEVICES); every test here skips with the script's reason when it is not up.
The work is trivial CPU work: what is tested is the SLURM/Dask plumbing (GPU pinning, resources, cancellation).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

SLURM_DIR = Path(os.environ.get("RBNAS_SLURM_DIR", "/tmp/rbnas-slurm"))


@dataclass(frozen=True)
class SlurmTestCluster:
    """The running CI cluster: its config file and state folder."""

    conf: Path
    dir: Path


def _cli(*args: str, timeout: float = 20) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def _skip_or_fail(reason: str) -> None:
    # In CI (CI=true) the SLURM path must be tested: a cluster that is not up fails instead of skipping.
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm() -> SlurmTestCluster:
    """The cluster started by ``bash .ci/slurm.sh start``; skips with the reason when it is not usable (fails
    under ``CI=true``)."""
    status = SLURM_DIR / "status"
    if not status.is_file():
        _skip_or_fail(f"no SLURM test cluster ({status} missing): run `bash .ci/slurm.sh start` as root")
    text = status.read_text().strip()
    if text != "ok":
        _skip_or_fail(f"SLURM test cluster not usable: {text} (logs in {SLURM_DIR / 'log'})")
    conf = SLURM_DIR / "slurm.conf"
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)  # sbatch/squeue/scancel, also those dask-jobqueue runs, read it
    try:
        try:
            state = _cli("sinfo", "-h", "-o", "%T", timeout=10).split()
        except (RuntimeError, subprocess.TimeoutExpired, FileNotFoundError) as e:
            _skip_or_fail(f"SLURM test cluster does not answer: {e}")
        if not any(s.rstrip("*").startswith(("idle", "mixed", "allocated")) for s in state):
            _skip_or_fail(f"SLURM test node not usable (state {state})")
        yield SlurmTestCluster(conf=conf, dir=SLURM_DIR)
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture()
def job_name(slurm: SlurmTestCluster) -> str:
    """A unique SLURM job name; the test's jobs are cancelled by that name afterwards, whatever happened."""
    name = f"rbnas-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", "-n", name], capture_output=True, timeout=20)


def _squeue(name: str) -> list[tuple[str, str, str]]:
    """(job id, state, gres/tres per node) of the jobs called ``name``."""
    rows = _cli("squeue", "-h", "-n", name, "-o", "%i|%T|%b").split()
    return [tuple(r.split("|")) for r in rows]  # type: ignore[misc]


def _wait(cond, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _cluster_kwargs(job_name: str, log_dir: Path, **kw) -> dict:
    base = dict(walltime="00:10:00", memory="1GiB", job_name=job_name, log_directory=str(log_dir),
                scheduler_options={"dashboard_address": ":0"}, respawn_grace_s=2.0)
    base.update(kw)
    return base


def _probe_factory():
    # Defined in a function so cloudpickle ships it by value (the tests folder is not importable on workers).
    def probe(i: int, seconds: float) -> dict:
        import os
        import time

        from distributed import get_worker

        t0 = time.time()
        time.sleep(seconds)
        return dict(i=i, value=i * i, worker=get_worker().name, job=os.environ.get("SLURM_JOB_ID"),
                    gpu=os.environ.get("CUDA_VISIBLE_DEVICES"), t0=t0, t1=time.time())

    return probe


def test_gpu_jobs_pin_one_gpu_per_worker(slurm: SlurmTestCluster, job_name: str, tmp_path: Path) -> None:
    """2 jobs x --gres=gpu:2: 4 workers, each on its own SLURM-assigned GPU, one GPU task at a time."""
    from distributed import Client

    from robustbench_nas.pipelines.slurm import make_slurm_cluster

    kw = _cluster_kwargs(job_name, tmp_path / "logs", gpus=2, cores=4)  # 2 threads per worker
    with make_slurm_cluster(None, jobs=2, **kw) as cluster, Client(cluster) as client:
        client.wait_for_workers(4, timeout=120)
        assert cluster.scheduler.allowed_failures == 20  # SlurmConfig's default, not Dask's 3
        queued = _squeue(job_name)
        assert len(queued) == 2 and all(state == "RUNNING" for _, state, _ in queued), queued
        assert all("gpu:2" in gres for _, _, gres in queued), queued  # SLURM itself booked 2 GPUs per job
        probe = _probe_factory()
        results = client.gather([client.submit(probe, i, 0.3, resources={"GPU": 1}, pure=False) for i in range(12)])
        job_ids = {str(w.job_id): name for name, w in cluster.workers.items()}

    assert sorted(r["value"] for r in results) == sorted(i * i for i in range(12))
    assert {r["job"] for r in results} <= set(job_ids) and set(job_ids) == {q[0] for q in queued}
    gpu_of: dict[str, str] = {}
    for r in results:
        assert r["gpu"] is not None and "," not in r["gpu"], f"worker {r['worker']} sees GPUs {r['gpu']!r}"
        assert gpu_of.setdefault(r["worker"], r["gpu"]) == r["gpu"]
        job = job_ids[r["job"]]
        assert r["worker"] in (f"{job}-0", f"{job}-1"), (r["worker"], job)  # dask-jobqueue's group names
    # Per job, the two workers hold the two different GPUs SLURM gave the job; the jobs got disjoint GPUs.
    per_job: dict[str, set[str]] = {}
    for r in results:
        per_job.setdefault(r["job"], set()).add(gpu_of[r["worker"]])
    all_gpus = [g for w, g in gpu_of.items()]
    assert len(set(all_gpus)) == len(all_gpus), gpu_of
    assert set(all_gpus) <= {"0", "1", "2", "3"}
    # resources={"GPU": 1}: a worker with 2 threads still runs one GPU task at a time.
    for worker in gpu_of:
        spans = sorted((r["t0"], r["t1"]) for r in results if r["worker"] == worker)
        assert all(b0 >= a1 - 1e-3 for (_, a1), (b0, _) in zip(spans, spans[1:])), f"overlap on {worker}: {spans}"
    # Closing the cluster cancels its jobs.
    _wait(lambda: not _squeue(job_name), 60, "the jobs to leave the queue after cluster.close()")


def test_scancel_worker_job_mid_run_loses_nothing(slurm: SlurmTestCluster, job_name: str, tmp_path: Path) -> None:
    """scancel one of two worker jobs while it runs a task: every result still arrives, and the job is replaced."""
    from distributed import Client, as_completed

    from robustbench_nas.pipelines.slurm import make_slurm_cluster

    kw = _cluster_kwargs(job_name, tmp_path / "logs", gpus=1, cores=1)
    n = 20
    with make_slurm_cluster(None, jobs=2, **kw) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        first_jobs = {str(w.job_id) for w in cluster.workers.values()}
        probe = _probe_factory()
        futures = [client.submit(probe, i, 0.4, resources={"GPU": 1}, pure=False) for i in range(n)]
        done = 0
        for _ in as_completed(futures):
            done += 1
            if done == 3:
                break
        busy = _wait(lambda: [a for a, keys in client.processing().items() if keys], 30, "a busy worker")[0]
        victim_name = client.scheduler_info()["workers"][busy]["name"]
        victim = str(cluster.workers[victim_name].job_id)
        _cli("scancel", victim)
        results = client.gather(futures)  # raises if any task was lost
        respawner = cluster.rbnas_respawner
        _wait(lambda: any(job_id == victim for _, job_id in respawner.replaced), 60, "the respawner to see the loss")
        client.wait_for_workers(2, timeout=120)
        now_jobs = {str(w.job_id) for w in cluster.workers.values()}

    assert sorted(r["i"] for r in results) == list(range(n))
    assert all(r["value"] == r["i"] ** 2 for r in results)
    assert victim in first_jobs and victim not in now_jobs and len(now_jobs - first_jobs) == 1
    # SLURM agrees: the cancelled job is not running any more.
    state = _cli("scontrol", "show", "job", victim)
    assert "JobState=CANCELLED" in state or "JobState=COMPLETED" in state or "Invalid job id" in state, state


@pytest.mark.slow
def test_workers_retire_at_lifetime_and_are_replaced(slurm: SlurmTestCluster, job_name: str, tmp_path: Path) -> None:
    """The walltime path: a worker retires by itself at its lifetime, a new job takes over, no result is lost."""
    from distributed import Client, as_completed

    from robustbench_nas.pipelines.slurm import make_slurm_cluster

    logs = tmp_path / "logs"
    kw = _cluster_kwargs(job_name, logs, gpus=1, cores=1, walltime="00:05:00", lifetime="10s",
                         lifetime_stagger="1s")
    n = 16  # 16 s of work on one worker with a 10 s lifetime
    with make_slurm_cluster(None, jobs=1, **kw) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=120)
        first = str(next(iter(cluster.workers.values())).job_id)
        probe = _probe_factory()
        results = []
        # Collected as they finish, as the pipeline does: a retiring sole worker cannot hand its results over.
        for fut in as_completed([client.submit(probe, i, 1.0, resources={"GPU": 1}, pure=False) for i in range(n)]):
            results.append(fut.result())
            fut.release()
        replaced = list(cluster.rbnas_respawner.replaced)

    assert sorted(r["i"] for r in results) == list(range(n))
    assert all(r["value"] == r["i"] ** 2 for r in results)
    assert ("SLURMCluster-0", first) in replaced and len({r["job"] for r in results}) >= 2, (replaced, first)
    first_log = (logs / f"{job_name}-{first}.err").read_text()
    assert "worker-lifetime-reached" in first_log, first_log[-2000:]  # it left by itself, before any walltime


def _refusing_probe_factory():
    # Shipped by value (as _probe_factory): the lifetime rule of the pipeline, then a short piece of work.
    def unit(i: int, expected_s: float) -> dict:
        import os
        import time

        from distributed import get_worker

        from robustbench_nas.pipelines.lifetime import refuse_if_too_late

        refuse_if_too_late(get_worker(), expected_s, f"unit {i}")
        return dict(i=i, worker=get_worker().name, job=os.environ.get("SLURM_JOB_ID"), t=time.time())

    return unit


@pytest.mark.slow
def test_worker_near_its_lifetime_hands_back_a_unit_it_cannot_finish(
    slurm: SlurmTestCluster, job_name: str, tmp_path: Path
) -> None:
    """The lifetime rule on real jobs: a worker with 60 s of lifetime takes a 20 s unit at once, refuses a 40 s unit
    once less than 40 s are left (it retires early, before its lifetime), and a replacement job runs that unit."""
    from distributed import Client

    from robustbench_nas.pipelines.slurm import make_slurm_cluster

    logs = tmp_path / "logs"
    kw = _cluster_kwargs(job_name, logs, gpus=1, cores=1, walltime="00:05:00", lifetime="60s",
                         lifetime_stagger="off")
    with make_slurm_cluster(None, jobs=1, **kw) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=120)
        first = str(next(iter(cluster.workers.values())).job_id)
        started = time.monotonic()
        unit = _refusing_probe_factory()
        early = client.submit(unit, 0, 20.0, resources={"GPU": 1}, pure=False).result(timeout=60)
        time.sleep(max(0.0, 30.0 - (time.monotonic() - started)))  # < 30 s of lifetime left now
        late = client.submit(unit, 1, 40.0, resources={"GPU": 1}, pure=False).result(timeout=180)
        refused_after = time.monotonic() - started
        replaced = list(cluster.rbnas_respawner.replaced)

    assert early["job"] == first
    assert late["job"] != first and ("SLURMCluster-0", first) in replaced, (late, first, replaced)
    first_log = (logs / f"{job_name}-{first}.err").read_text()
    assert "rbnas-lifetime: unit 1 needs ~40 s" in first_log, first_log[-2000:]
    assert "worker-lifetime-reached" not in first_log, "the worker should have retired before its lifetime"
    assert refused_after < 170


def test_two_workers_per_gpu_share_their_own_gpu(slurm: SlurmTestCluster, job_name: str, tmp_path: Path) -> None:
    """workers_per_gpu: 2 on a gpu:2 job: 4 workers, two on each of the job's two GPUs, each seeing one GPU."""
    from distributed import Client

    from robustbench_nas.pipelines.slurm import make_slurm_cluster

    kw = _cluster_kwargs(job_name, tmp_path / "logs", gpus=2, workers_per_gpu=2, cores_per_worker=1)
    with make_slurm_cluster(None, jobs=1, **kw) as cluster, Client(cluster) as client:
        client.wait_for_workers(4, timeout=120)
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        assert all(w["resources"] == {"GPU": 1} for w in client.scheduler_info()["workers"].values())
    gpu_of = {names[a]: g for a, g in seen.items()}
    job = next(iter(gpu_of)).rsplit("-", 1)[0]
    assert sorted(gpu_of) == [f"{job}-{i}" for i in range(4)]
    assert gpu_of[f"{job}-0"] == gpu_of[f"{job}-2"] != gpu_of[f"{job}-1"] == gpu_of[f"{job}-3"], gpu_of


def test_adaptive_cluster_submits_jobs_for_work_and_releases_them(
    slurm: SlurmTestCluster, job_name: str, tmp_path: Path
) -> None:
    """adapt: true, minimum 0: no job while idle, jobs (at most --jobs) when work arrives, none once it is done."""
    from distributed import Client

    from robustbench_nas.pipelines.slurm import make_slurm_cluster

    kw = _cluster_kwargs(job_name, tmp_path / "logs", gpus=1, cores=1, adapt=True, minimum_jobs=0)
    with make_slurm_cluster(None, jobs=2, **kw) as cluster, Client(cluster) as client:
        time.sleep(3)
        assert _squeue(job_name) == [], "an idle adaptive cluster with minimum 0 holds no job"
        probe = _probe_factory()
        results = client.gather([client.submit(probe, i, 0.5, resources={"GPU": 1}, pure=False) for i in range(8)])
        assert sorted(r["value"] for r in results) == [i * i for i in range(8)]
        assert 1 <= len({r["job"] for r in results}) <= 2
        _wait(lambda: not _squeue(job_name), 90, "the adaptive cluster to release its idle jobs")


# ---- the pipeline on SLURM: `rbnas run --cluster slurm` (client as a job) and the job-array fallback -------------
ROOT = Path(__file__).resolve().parents[1]
# The tiny protocol on two cells with small sizes: every stage runs, and a run takes seconds per cell.
ARCHS = [6, 12000]
MICRO = dict(
    profile_overrides={"epochs": 1, "max_train_images": 128},
    attacks={"fgsm@Linf": [2 / 255, 8 / 255]},
    attack_params={},
    corruptions=["brightness"],
    severities=[1, 5],
    proxies=["params", "snip"],
    proxy_images=16,
    measures=["jacobian_fro"],
    measure_images=8,
    attack_images=48,
    corruption_images=48,
    batch_size=64,
)
BOOKKEEPING = {"stage_seconds", "attempts", "error", "checkpoint",
               "unit_threads", "unit_device", "unit_precision"}  # how a unit ran, not what it computed


def _run_args(store: Path) -> list[str]:
    import json

    args = ["--protocol", "tiny", "--store", str(store), "--archs", ",".join(map(str, ARCHS))]
    for k, v in MICRO.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


def _job_env() -> dict[str, str]:
    import sys

    # The jobs run the installed `rbnas` of this interpreter (the package the tests import). The test node's gpu:4
    # are scheduling slots without GPUs: workers advertising GPU=1 may run on the CPU here (never on a real cluster).
    return dict(os.environ, RBNAS=f"{sys.executable} -m robustbench_nas.cli.main", RBNAS_CPU_GPU_WORKERS="1")


@pytest.fixture(scope="module")
def local_reference(slurm: SlurmTestCluster, tmp_path_factory) -> Path:
    """The same protocol run locally (in-process worker): the store every SLURM path must reproduce."""
    from distributed import Client, LocalCluster

    from robustbench_nas.pipelines import get_protocol, run_pipeline

    path = tmp_path_factory.mktemp("local") / "local.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        report = run_pipeline(path, get_protocol("tiny", archs=ARCHS, **MICRO), client=c, progress=False)
    assert report.ok, report.failures
    return path


def _assert_same_store(a: Path, b: Path) -> None:
    """Every result array equal (wall times and attempt counts aside), everything done, the same weights."""
    import numpy as np
    import torch

    from robustbench_nas.storage import DONE, open_dataset
    from robustbench_nas.training import load_checkpoint

    da, db = open_dataset(a).load(), open_dataset(b).load()
    assert da.attrs["protocol_fingerprint"] == db.attrs["protocol_fingerprint"]
    assert (db.status.values == DONE).all(), "not every (cell, seed, stage) is done"
    names = [v for v in da.data_vars if v not in BOOKKEEPING]
    assert {"adv_accuracy", "clean_accuracy", "corruption_accuracy", "proxy_value", "measure_value"} <= set(names)
    for v in names:
        x, y = da[v].values, db[v].values
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=v)
        else:
            assert (x == y).all(), v
    for ca, cb in zip(da.checkpoint.values.ravel(), db.checkpoint.values.ravel()):
        ma, _ = load_checkpoint(a.parent / str(ca))
        mb, _ = load_checkpoint(b.parent / str(cb))
        for ta, tb in zip(ma.state_dict().values(), mb.state_dict().values()):
            assert torch.equal(ta, tb)


def _done_count(store: Path, stage: str) -> int:
    from robustbench_nas.storage import DONE, open_store

    try:
        s = open_store(store)
        return int((s.status()[:, :, s.stage_pos(stage)] == DONE).sum())
    except Exception:  # noqa: BLE001  (not created yet)
        return 0


def _job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=20).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return f"{fields.get('JobState', '?')} {fields.get('ExitCode', '?')}"


@pytest.mark.slow
def test_rbnas_run_cluster_slurm_with_scancel_equals_local_run(
    slurm: SlurmTestCluster, job_name: str, local_reference: Path, tmp_path: Path
) -> None:
    """`sbatch slurm/rbnas-run.sbatch ... --cluster slurm`: the client runs as a job and submits 2 worker jobs;
    one worker job is scancelled mid-run. The run completes, and the store equals the local run's."""
    store = tmp_path / "slurm.zarr"
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(
        f"partition: gpu\ngpus: 1\ncores: 1\nmemory: 2GiB\nwalltime: '00:20:00'\njob-name: {job_name}\n"
        f"log-directory: {tmp_path / 'logs'}\nrespawn-grace-s: 2\nscheduler-options: {{dashboard_address: ':0'}}\n"
    )
    client_log = tmp_path / "client.out"
    client_id = subprocess.run([
        "sbatch", "--parsable", "-J", job_name, "-c", "1", "--mem=2G", "-t", "20", "-o", str(client_log),
        str(ROOT / "slurm" / "rbnas-run.sbatch"), *_run_args(store), "--slurm-config", str(cfg), "--jobs", "2",
    ], capture_output=True, text=True, timeout=20, env=_job_env(), cwd=tmp_path, check=True).stdout.strip()
    try:
        worker_jobs = _wait(
            lambda: _done_count(store, "train") >= 1
            and [j for j, state, _ in _squeue(job_name) if j != client_id and state == "RUNNING"],
            240, "a trained cell and running worker jobs",
        )
        pending = len(ARCHS) * 7 - sum(_done_count(store, s) for s in
                                       ("info", "proxies", "train", "clean", "adversarial", "corruptions", "measures"))
        _cli("scancel", worker_jobs[0])
        assert pending > 0, "the run finished before the worker job could be cancelled"
        _wait(lambda: client_id not in [j for j, _, _ in _squeue(job_name)], 300, "the client job to finish")
    finally:
        log_text = client_log.read_text() if client_log.exists() else "(no client log)"
    assert _job_state(client_id).startswith("COMPLETED 0:0"), f"client job {_job_state(client_id)}:\n{log_text[-3000:]}"
    _assert_same_store(local_reference, store)  # nothing lost, nothing different
    # (whether the cancelled job was replaced before the other worker finished is timing; the respawn itself is
    # asserted in test_scancel_worker_job_mid_run_loses_nothing)


@pytest.mark.slow
def test_job_array_tasks_fill_one_store(
    slurm: SlurmTestCluster, job_name: str, local_reference: Path, tmp_path: Path
) -> None:
    """`sbatch --array=0-1 slurm/rbnas-array.sbatch`: two `rbnas run --task i/2` tasks, one store, = local run."""
    from robustbench_nas.pipelines import task_cells

    store = tmp_path / "array.zarr"
    logs = tmp_path / "logs"
    logs.mkdir()
    out = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--array=0-1", "-J", job_name, "-c", "1", "--mem=2G", "-t", "20",
         "-o", f"{logs}/shard-%A_%a.out", str(ROOT / "slurm" / "rbnas-array.sbatch"), *_run_args(store)],
        capture_output=True, text=True, timeout=480, env=_job_env(), cwd=tmp_path,
    )
    texts = {p.name: p.read_text() for p in sorted(logs.glob("shard-*.out"))}
    assert out.returncode == 0, f"array failed ({out.returncode}): {out.stderr}\n" + "\n".join(
        f"--- {k}\n{v[-1500:]}" for k, v in texts.items())
    assert len(texts) == 2
    # Each task ran its own cells: the fixed partition, and together every cell once.
    from robustbench_nas.search_spaces import get_search_space

    uids = sorted({get_search_space("nb201").uid(a) for a in ARCHS})
    for i in range(2):
        task_log = next(v for k, v in texts.items() if k.endswith(f"_{i}.out"))
        assert f"task {i}/2" in task_log
        assert f"on {len(task_cells(uids, (i, 2)))} cells" in task_log, task_log[-1500:]
    _assert_same_store(local_reference, store)


ARCHS3 = [6, 1462, 12000]


@pytest.fixture(scope="module")
def local_reference3(slurm: SlurmTestCluster, tmp_path_factory) -> Path:
    """:func:`local_reference` on three cells (one storage block each in the array test)."""
    from distributed import Client, LocalCluster

    from robustbench_nas.pipelines import get_protocol, run_pipeline

    path = tmp_path_factory.mktemp("local3") / "local.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        report = run_pipeline(path, get_protocol("tiny", archs=ARCHS3, **MICRO), client=c, progress=False)
    assert report.ok, report.failures
    return path


@pytest.mark.slow
def test_job_array_of_three_tasks_own_disjoint_blocks_and_equal_a_local_run(
    slurm: SlurmTestCluster, job_name: str, local_reference3: Path, tmp_path: Path
) -> None:
    """`sbatch --array=0-2 slurm/rbnas-array.sbatch ... --shard-cells 1`: three tasks, each owning one storage
    block (shard file) of three, fill one store; it is complete and equal to a local run."""
    import json

    store = tmp_path / "array3.zarr"
    logs = tmp_path / "logs"
    logs.mkdir()
    args = [a if a != ",".join(map(str, ARCHS)) else ",".join(map(str, ARCHS3)) for a in _run_args(store)]
    out = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--array=0-2", "-J", job_name, "-c", "1", "--mem=2G", "-t", "30",
         "-o", f"{logs}/task-%A_%a.out", "-e", f"{logs}/task-%A_%a.err", str(ROOT / "slurm" / "rbnas-array.sbatch"),
         *args, "--shard-cells", "1", "--json"],
        capture_output=True, text=True, timeout=1200, env=_job_env(), cwd=tmp_path,
    )
    texts = {p.name: p.read_text() for p in sorted(logs.glob("task-*"))}
    assert out.returncode == 0, f"array failed ({out.returncode}): {out.stderr}\n" + "\n".join(
        f"--- {k}\n{v[-1500:]}" for k, v in texts.items())
    reports = {}
    for i in range(3):
        text = next(v for k, v in texts.items() if k.endswith(f"_{i}.out"))
        assert f"task {i}/3" in text
        reports[i] = json.loads(text[text.index("\n{") + 1:])  # the run report after the script's first line
    # each task ran its one cell (7 units) into its own block: no shard file written by two tasks
    assert [reports[i]["cells"] for i in range(3)] == [1, 1, 1]
    assert sum(r["submitted"] for r in reports.values()) == len(ARCHS3) * 7
    assert sorted(b for r in reports.values() for b in r["extra"]["blocks"]) == [0, 1, 2]
    assert all(not r["extra"]["skipped_leased"] for r in reports.values())
    _assert_same_store(local_reference3, store)


# ---- shared-cluster safety on the real SLURM: TLS with per-run credentials, refused jobs fail fast -------------
@pytest.mark.parametrize("kw, expect", [
    (dict(gpus=1, gres_type="nosuchgpu"), "node configuration"),  # a GPU type no node has (a CPU-only partition)
    (dict(gpus=99, cores=99), "node configuration"),  # more GPUs than the node has
])
def test_job_slurm_must_refuse_fails_fast(slurm: SlurmTestCluster, job_name: str, tmp_path: Path, kw: dict,
                                          expect: str) -> None:
    from robustbench_nas.pipelines.slurm import SlurmStartError, make_slurm_cluster

    t0 = time.monotonic()
    with pytest.raises(SlurmStartError) as info:
        make_slurm_cluster(None, jobs=1, **_cluster_kwargs(job_name, tmp_path / "logs", **kw),
                           credentials_dir=str(tmp_path / "cred"))
    msg = str(info.value)
    assert time.monotonic() - t0 < 30, "not fast"
    assert expect in msg.lower() and "Hint:" in msg and "gpus: 0" in msg, msg
    assert _squeue(job_name) == [], "a refused job must not be queued"
    assert not list((tmp_path / "cred").glob(".rbnas-credentials-*"))


def test_rbnas_run_refused_job_is_one_line_exit_2(slurm: SlurmTestCluster, job_name: str, tmp_path: Path) -> None:
    cfg = tmp_path / "cpu-site.yaml"
    cfg.write_text(f"gpus: 1\ngres-type: nosuchgpu\ncores: 1\nmemory: 1GiB\nwalltime: '00:10:00'\n"
                   f"job-name: {job_name}\nlog-directory: {tmp_path / 'logs'}\n")
    out = subprocess.run([sys.executable, "-m", "robustbench_nas.cli.main", "run", "--protocol", "tiny", "--archs", "6",
                          "--store", str(tmp_path / "s.zarr"), "--cluster", "slurm", "--slurm-config", str(cfg),
                          "--no-progress"], capture_output=True, text=True, timeout=120, env=_job_env(), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "SLURM refuses the worker job" in lines[0] and "gpus: 0" in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_tls_worker_jobs_refuse_plain_clients_and_show_no_secret(slurm: SlurmTestCluster, job_name: str,
                                                                 tmp_path: Path) -> None:
    """Default --cluster slurm: TLS with per-run credentials in a 0700 folder; a plain client is refused, the work
    completes, neither squeue nor ps shows the key, and the credentials are removed when the cluster closes."""
    import stat

    from distributed import Client

    from robustbench_nas.pipelines.slurm import make_slurm_cluster, wait_for_first_worker

    kw = _cluster_kwargs(job_name, tmp_path / "logs", gpus=1, cores=1)
    with make_slurm_cluster(None, jobs=1, credentials_dir=str(tmp_path / "cred"), **kw) as cluster:
        folder = cluster.rbnas_credentials
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        key = (folder / "key.pem").read_text()
        assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
        assert cluster.scheduler.address.startswith("tls://")
        wait_for_first_worker(cluster, timeout=120)
        with Client(cluster) as client:
            probe = _probe_factory()
            assert client.submit(probe, 3, 0.1, resources={"GPU": 1}, pure=False).result()["value"] == 9
        with pytest.raises(Exception):  # noqa: B017  (a comm error: the handshake fails)
            Client(cluster.scheduler.address.replace("tls://", "tcp://"), timeout=5).close()
        shown = _cli("squeue", "-h", "-n", job_name, "-o", "%all") + subprocess.run(
            ["ps", "axww", "-o", "args"], capture_output=True, text=True).stdout
        secret = "".join(key.splitlines()[1:-1])[:64]
        assert "PRIVATE KEY" not in shown and secret not in shown.replace("\n", "")
        assert str(folder / "key.pem") in shown  # the workers got the path, not the content
    assert not folder.exists()

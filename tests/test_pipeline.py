"""The pipeline: protocols, array tasks, a real Dask run checked against direct computation, failures, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robustbench_nas.pipelines import (
    ProtocolConfig,
    get_protocol,
    list_stages,
    parse_archs,
    parse_task,
    plan_units,
    run_pipeline,
    task_cells,
)
from robustbench_nas.pipelines import stages as stages_mod
from robustbench_nas.storage import FAILED, StoreError, open_dataset, open_store

# Three cells, one seed, one training epoch on 256 digits, small grids: the whole protocol runs in seconds.
MICRO = dict(
    archs=["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
           "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", 6],
    profile_overrides={"epochs": 2, "max_train_images": 256},
    attacks={"fgsm@Linf": (2 / 255, 8 / 255)},
    attack_params={},
    corruptions=("brightness",),
    severities=(1, 5),
    proxies=("params", "snip"),
    proxy_images=16,
    measures=("jacobian_fro",),
    measure_images=8,
    eval_images=None,
    attack_images=48,
    corruption_images=48,
    batch_size=64,
    retries=1,
)


def micro(**kw) -> ProtocolConfig:
    return get_protocol("tiny", **{**MICRO, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("run") / "micro.zarr"
    report = run_pipeline(path, micro(), client=client, progress=False)
    return path, report


# ---- protocols --------------------------------------------------------------------------------------------------
def test_protocol_fingerprint_and_roundtrip() -> None:
    p = get_protocol("tiny")
    q = ProtocolConfig.from_dict(p.to_dict())
    assert q == p and q.fingerprint() == p.fingerprint()
    assert p.replace(data_root="/elsewhere").fingerprint() == p.fingerprint()  # where, not what
    r = p.replace(seeds=(0, 1))
    assert r.fingerprint() != p.fingerprint() and set(p.diff(r)) == {"seeds"}
    with pytest.raises(ValueError, match="unknown protocol fields"):
        p.replace(epochz=3)  # epochs=3 is a profile field now (issue 17)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        p.replace(attacks={"fgsm@Linf": (8,)})


@pytest.mark.parametrize("name", ["tiny", "jung2023", "nb201-proxies-all", "darts-jung2023"])
def test_protocol_json_roundtrip_is_exact_and_bad_json_is_named(name: str) -> None:
    p = get_protocol(name, data_root="/data/here")
    q = ProtocolConfig.from_json(p.to_json())
    assert q == p and q.fingerprint() == p.fingerprint() and q.data_root == "/data/here"
    with pytest.raises(ValueError, match="not valid JSON"):
        ProtocolConfig.from_json(p.to_json()[:-1])
    with pytest.raises(ValueError, match="must be a JSON object"):
        ProtocolConfig.from_json("[1, 2]")


def test_the_runner_hands_every_task_one_protocol_string(tmp_path: Path, client) -> None:
    """Dask walks and copies a dict / list task argument element by element on every submit (300 KB and 7 ms per
    task for the 6466-cell protocol: benchmarks/bench_submit.py); the runner submits the protocol as one JSON
    string, the same object for every task, that the worker turns back into the same protocol."""
    from robustbench_nas.pipelines.runner import _submit, execute_unit
    from robustbench_nas.storage import RobustnessStore

    proto = micro()
    path = tmp_path / "s.zarr"
    run_pipeline(path, proto, stages=["info"], client=client, progress=False)  # a real store to plan on
    calls = []

    class RecordingClient:
        def scheduler_info(self):
            return {"workers": {"w": {"resources": {}}}}

        def submit(self, fn, *args, **kwargs):
            calls.append((fn, args))
            return object()

    store = RobustnessStore.open(path, mode="r")
    units = plan_units(store, proto, ["clean", "proxies"], None)
    assert units
    _submit(RecordingClient(), store, proto, units, "cpu", 1)
    assert len(calls) == len(units) and all(fn is execute_unit for fn, _ in calls)
    sent = [args[1] for _, args in calls]
    assert all(isinstance(s, str) for s in sent) and all(s is sent[0] for s in sent)
    assert ProtocolConfig.from_json(sent[0]) == proto


def test_collected_results_are_not_kept_on_the_workers(tmp_path: Path, client) -> None:
    """Once the client has journalled a result it lets the future go, so the workers do not hold every result of
    the run until it ends (with the futures kept, they did: one result per task in worker memory)."""
    import time

    from robustbench_nas.pipelines.runner import _collect, _submit
    from robustbench_nas.storage import RobustnessStore

    proto = micro(stages=("info", "proxies"))
    path = tmp_path / "s.zarr"
    run_pipeline(path, proto, stages=["info"], client=client, progress=False)  # creates the store
    store = RobustnessStore.open(path, mode="r+")
    units = plan_units(store, proto, ["proxies"], None)
    futures = _submit(client, store, proto, units, "cpu", 1)
    keys = {f.key for f in futures}
    counts = {"proxies": {"done": 0, "failed": 0, "total": len(units)}}
    _collect(client, store, futures, counts, progress=False)
    assert counts["proxies"]["done"] == len(units) == 3 and not futures

    def in_memory(dask_scheduler, keys=tuple(keys)):
        return [k for k in keys if k in dask_scheduler.tasks and dask_scheduler.tasks[k].state == "memory"]

    deadline = time.monotonic() + 30  # releases reach the scheduler asynchronously
    while client.run_on_scheduler(in_memory) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.run_on_scheduler(in_memory) == []


def test_jung2023_protocol_is_the_published_grid() -> None:
    p = get_protocol("jung2023")
    assert p.archs == "all" and p.dataset == "cifar10" and len(p.corruptions) == 15
    eps255 = {k: [round(e * 255, 3) for e in v] for k, v in p.attacks.items()}
    assert eps255["fgsm@Linf"] == [0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255]
    for k in ("pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"):
        assert eps255[k] == [0.1, 0.5, 1, 2, 3, 4, 8]
    assert len(p.resolve_archs()) == 6466


def test_archs_resolve_to_unique_uids() -> None:
    from robustbench_nas.search_spaces import get_search_space

    space = get_search_space("nb201")
    dup = next(i for i in range(200) if space.uid(i) != i)  # a cell isomorphic to a smaller index
    cells = micro(archs=[space.uid(dup), dup, 6]).resolve_archs()
    assert [c[0] for c in cells] == sorted({space.uid(dup), 6})
    assert parse_archs("3,1,2") == [3, 1, 2] and parse_archs("all") == "all" and parse_archs("5") == 5
    with pytest.raises(ValueError, match="--archs"):
        parse_archs("1,x")


def test_array_tasks_partition_the_cells() -> None:
    cells = list(range(0, 100, 3))
    parts = [task_cells(cells[::-1], (i, 4), shard_cells=5) for i in range(4)]
    assert sorted(c for p in parts for c in p) == cells  # disjoint, complete, independent of input order
    assert max(map(len, parts)) - min(map(len, parts)) <= 5  # whole blocks of 5: within one block (more in
    # tests/test_array_tasks.py)
    assert parse_task("1/4") == (1, 4)
    with pytest.raises(ValueError, match="task 4/4"):
        parse_task("4/4")


# ---- a real run, checked against direct computation ----------------------------------------------------------------
def test_run_writes_every_stage_and_matches_direct_computation(finished) -> None:
    import torch

    from robustbench_nas.data import get_dataset
    from robustbench_nas.evaluation import evaluate_clean
    from robustbench_nas.models import count_params
    from robustbench_nas.training import load_checkpoint, train_model

    path, report = finished
    assert report.ok, report.failures
    store = open_store(path)
    assert report.submitted == 3 * len(list_stages())
    assert all(v["pending"] == 0 and v["failed"] == 0 for v in store.progress().values())
    # the store as the run leaves it: sharded, everything committed, one shard file per array (3 cells < 256)
    assert store.pending_blocks() == [] and not list(path.rglob("*.log")) and not list(path.rglob(".*.tmp-*"))
    adv = json.loads((path / "adv_confusion" / "zarr.json").read_text())
    assert adv["codecs"][0]["name"] == "sharding_indexed"
    assert len(list((path / "adv_confusion" / "c").rglob("*"))) <= 8  # c/0/0/... : one shard, not one file per cell
    ds = open_dataset(path, done_only=True).load()
    data = get_dataset("digits")
    test = data.split("test")
    p = micro()
    uid = int(ds.arch.values[0])
    # training: same seed, same curve, bit for bit (CPU)
    direct = train_model(str(ds.arch_str.values[0]), data, p.profile(), seed=0, device="cpu", progress=False)
    np.testing.assert_array_equal(ds.history_train_loss.sel(arch=uid, seed=0).values,
                                  [r["train_loss"] for r in direct.history])
    # the kept checkpoint is that network; clean stats recomputed from it on the whole test split
    model, _ = load_checkpoint(path.parent / str(ds.checkpoint.sel(arch=uid, seed=0).values), "cpu")
    for a, b in zip(model.state_dict().values(), direct.model.state_dict().values()):
        assert torch.equal(a, b)
    stats = evaluate_clean(model, test.images(), test.labels())
    assert float(ds.clean_accuracy.sel(arch=uid, seed=0)) == stats.accuracy
    np.testing.assert_array_equal(ds.clean_confusion.sel(arch=uid, seed=0).values, stats.confusion)
    assert int(ds.params.sel(arch=uid)) == count_params(model)
    # invariants of the grids
    cm = ds.adv_confusion.sel(seed=0).values
    assert (cm.sum(axis=(-1, -2)) == 48).all()  # attack_images per (attack, eps)
    acc = ds.adv_accuracy.sel(seed=0).values
    np.testing.assert_allclose(acc, np.trace(cm, axis1=-2, axis2=-1) / 48)
    assert (ds.corruption_confusion.sel(seed=0).values.sum(axis=(-1, -2)) == 48).all()
    assert np.isfinite(ds.proxy_value.values).all() and np.isfinite(ds.measure_value.values).all()
    # the `params` proxy counts in millions (NASLib's unit)
    np.testing.assert_allclose(ds.proxy_value.sel(proxy="params").values[:, 0] * 1e6, ds.params.values)


def test_each_evaluation_stores_the_clean_accuracy_of_its_own_images(finished) -> None:
    """adv_clean_accuracy / corruption_clean_accuracy: the clean accuracy of exactly the attack_images /
    corruption_images subsets (recomputed here), so robust <= clean can be checked per cell on the same images."""
    from robustbench_nas.evaluation import evaluate_clean
    from robustbench_nas.training import load_checkpoint

    path, _ = finished
    ds = open_dataset(path, done_only=True).load()
    p = micro()
    for uid in ds.arch.values:
        model, _ = load_checkpoint(path.parent / str(ds.checkpoint.sel(arch=uid, seed=0).values), "cpu")
        for purpose, key in (("attacks", "adv_clean_accuracy"), ("corruptions", "corruption_clean_accuracy")):
            sub = stages_mod._subset(p.dataset, p.data_root, *p.image_request(purpose))[0]
            assert float(ds[key].sel(arch=uid, seed=0)) == evaluate_clean(model, sub.images(), sub.labels()).accuracy
    adv = ds.adv_accuracy.sel(seed=0)
    clean = ds.adv_clean_accuracy.sel(seed=0)
    assert clean.dims == ("arch",) and np.isfinite(clean.values).all()
    # per cell and per eps, on the same 48 images: an attack never raises the accuracy above the clean one here
    assert (adv <= clean + 1e-12).all(), (adv.values, clean.values)


def test_rerun_resumes_and_does_nothing_when_done(finished, client) -> None:
    path, _ = finished
    again = run_pipeline(path, micro(), client=client, progress=False)
    assert again.submitted == 0 and again.ok
    # continuing with the store's own protocol works too (e.g. to add a stage later)
    assert run_pipeline(path, None, client=client, progress=False).submitted == 0


def test_store_of_another_protocol_is_refused_untouched(finished, client) -> None:
    path, _ = finished
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match=r"another protocol.*seeds"):
        run_pipeline(path, micro(seeds=(1,)), client=client, progress=False)
    assert before == {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def test_force_stage_recomputes_identically(finished, client) -> None:
    path, _ = finished
    old = open_dataset(path).load()
    rep = run_pipeline(path, micro(), client=client, stages=["clean"], force_stages=["clean"], progress=False)
    assert rep.submitted == 3 and rep.ok
    new = open_dataset(path).load()
    np.testing.assert_array_equal(new.clean_accuracy.values, old.clean_accuracy.values)
    assert (new.attempts.sel(stage="clean").values == 2).all()
    assert (new.attempts.sel(stage="train").values == 1).all()  # the network was not retrained


def test_failing_stage_is_recorded_retried_and_isolated(tmp_path: Path, client, monkeypatch) -> None:
    p = micro(stages=("info", "train", "clean", "adversarial"), archs=MICRO["archs"][:2])
    cells = [c[0] for c in p.resolve_archs()]
    bad = cells[0]
    real_train = stages_mod.get_stage("train")
    calls = []

    def flaky(ctx):
        calls.append(ctx.uid)
        if ctx.uid == bad:
            raise RuntimeError(f"injected failure for cell {ctx.uid}")
        return real_train.fn(ctx)

    with stages_mod.STAGE_DEFS.replaced("train", stages_mod.StageDef("train", flaky, (), True, True)):
        rep = run_pipeline(tmp_path / "f.zarr", p, client=client, progress=False)
    store = open_store(tmp_path / "f.zarr")
    assert calls.count(bad) == p.retries + 1  # bounded retries
    fails = {(f["arch"], f["stage"]): f for f in rep.failures}
    assert set(fails) == {(bad, "train"), (bad, "clean"), (bad, "adversarial")}
    assert "injected failure for cell" in fails[(bad, "train")]["error"]
    assert fails[(bad, "train")]["attempts"] == p.retries + 1
    assert "needs train" in fails[(bad, "clean")]["error"]
    assert store.is_done(cells[1], 0, "adversarial")  # the other cell went on
    assert store.is_done(bad, 0, "info")
    # fixed (the real stage is back): the same command finishes the failed cell only
    assert stages_mod.get_stage("train") is real_train
    rep2 = run_pipeline(tmp_path / "f.zarr", p, client=client, progress=False)
    assert rep2.submitted == 3 and rep2.ok
    assert open_store(tmp_path / "f.zarr").status().min() == 1


def test_array_tasks_fill_one_store(tmp_path: Path, client) -> None:
    p = micro(stages=("info",))
    for i in range(2):  # one cell per storage block: 3 blocks, task 0 gets two, task 1 one
        rep = run_pipeline(tmp_path / "s.zarr", p, client=client, task=(i, 2), progress=False, shard_cells=1)
        assert rep.cells == (2, 1)[i]
    store = open_store(tmp_path / "s.zarr")
    assert store.spec.shard_cells == 1
    assert store.progress()["info"] == {"done": 3, "failed": 0, "pending": 0}
    assert plan_units(store, p, ["info"], None) == []
    ds = open_dataset(tmp_path / "s.zarr", done_only=True).load()
    assert (ds.params.values > 0).all()  # both tasks' clients wrote into their own block files, nothing lost
    with pytest.raises(StoreError, match="cells per storage block"):  # a store's layout is fixed
        run_pipeline(tmp_path / "s.zarr", p, client=client, task=(0, 2), progress=False, shard_cells=2)
    assert ds["nb201_index"].dims == ("arch",)


def test_client_killed_after_journalling_is_committed_by_the_rerun(tmp_path: Path, client, monkeypatch) -> None:
    """Results journalled but never committed (client killed before its commit) are kept by the next run, not
    recomputed, and end in the shards."""
    from robustbench_nas.pipelines import runner

    p = micro(stages=("info",))
    monkeypatch.setattr(runner.ResultWriter, "commit", lambda self, blocks: None)  # the client "dies" before commits
    monkeypatch.setattr(runner.ResultWriter, "close", lambda self: None)
    run_pipeline(tmp_path / "j.zarr", p, client=client, progress=False)
    monkeypatch.undo()
    store = open_store(tmp_path / "j.zarr")
    assert store.pending_blocks() == [0]
    assert store.progress()["info"]["done"] == 3  # status counts the journal
    assert np.isnan(open_dataset(tmp_path / "j.zarr").flops.values).all()  # but nothing is committed yet
    rep = run_pipeline(tmp_path / "j.zarr", p, client=client, progress=False)
    assert rep.submitted == 0  # nothing recomputed
    store = open_store(tmp_path / "j.zarr")
    assert store.pending_blocks() == []
    assert (open_dataset(tmp_path / "j.zarr", done_only=True).flops.values > 0).all()


def test_bad_stage_names_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in this store's protocol"):
        run_pipeline(tmp_path / "x.zarr", micro(stages=("info",)), stages=["train"], progress=False)
    with pytest.raises(StoreError, match="pass a protocol"):
        run_pipeline(tmp_path / "missing.zarr", None, progress=False)
    assert not (tmp_path / "missing.zarr").exists()


def test_status_and_failures_are_read_back(finished) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    path, _ = finished
    res = CliRunner().invoke(cli, ["status", str(path)])
    assert res.exit_code == 0, res.output
    assert "protocol tiny" in res.output and "clean accuracy" in res.output
    # robust accuracy is shown beside the clean accuracy of the same images (attacks use a subset)
    attacks_line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("attacks"))
    assert "clean on the same images" in attacks_line
    lines = {ln.split()[0]: ln.split()[1:4] for ln in res.output.splitlines() if ln.split() and ln.split()[0] in
             list_stages()}
    assert lines["adversarial"] == ["3", "0", "0"]
    res = CliRunner().invoke(cli, ["status", str(path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["cells"] == 3 and info["failures"] == [] and FAILED not in [0, 1]
    assert {r["stage"]: r["done"] for r in info["stages"]}["measures"] == 3
    assert 0 <= info["headline"]["clean_accuracy"] <= 1
    ds = open_dataset(str(path))
    assert info["headline"]["adv_clean_accuracy"] == pytest.approx(float(ds.adv_clean_accuracy.mean()))
    assert info["headline"]["corruption_clean_accuracy"] == pytest.approx(float(ds.corruption_clean_accuracy.mean()))


def test_every_unit_records_its_threads_device_and_precision(finished) -> None:
    """Each unit's result carries what it ran with: torch threads (the run's --threads, 1 here), the device and the
    fp32 precision flags (IEEE everywhere in evaluation stages, torch's own defaults in training)."""
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli
    from robustbench_nas.storage import DONE
    from robustbench_nas.utils.precision import describe, precision_state

    path, _ = finished
    store = open_store(path)
    ran = store.unit_settings()
    done = store.status() == DONE
    assert done.sum() > 0 and set(ran) == {"unit_threads", "unit_device", "unit_precision"}
    from robustbench_nas.utils import device_label, resolve_device

    dev = device_label(resolve_device("auto"))  # the run's --device auto: "cpu" here, "cuda:0 <model>" on a GPU
    assert (ran["unit_threads"][done] == 1).all() and (ran["unit_device"][done] == dev).all()
    ieee = describe({k: "ieee" for k in precision_state()})  # every flag this torch has, set to "ieee"
    for s, stage in enumerate(store.spec.stages):
        prec = set(ran["unit_precision"][:, :, s][done[:, :, s]].tolist())
        assert prec == ({describe()} if stage == "train" else {ieee}), (stage, prec)
    assert (ran["unit_threads"][~done] == -1).all()  # nothing recorded where nothing ran
    out = CliRunner().invoke(cli, ["status", str(path)]).output
    n_units = sum(int(v["done"]) for v in store.progress().values())
    line = next(ln for ln in out.splitlines() if ln.startswith("ran on:"))
    train = store.progress()["train"]["done"]
    flags = {v.split("=")[1] for v in describe().split(",")}  # torch's defaults, which training keeps
    trained_prec = flags.pop() if len(flags) == 1 else describe()
    if trained_prec == "ieee":
        assert line == f"ran on: {n_units} units {dev} x1 thread (ieee)"
    else:
        assert line == (f"ran on: {n_units - train} units {dev} x1 thread (ieee), {train} units {dev} x1 thread "
                        f"({trained_prec})")
    info = json.loads(CliRunner().invoke(cli, ["status", str(path), "--json"]).output)
    assert sum(r["units"] for r in info["ran_on"]) == n_units


def test_device_label_names_the_gpu_model_and_the_cpu_capability(monkeypatch) -> None:
    import torch

    from robustbench_nas.utils import device_label

    import robustbench_nas.utils as utils

    cap = torch.backends.cpu.get_cpu_capability()  # e.g. AVX2, AVX512: kernels that round float32 sums otherwise
    assert device_label("cpu").startswith(f"cpu {cap}") and device_label("cpu") == device_label(torch.device("cpu"))
    with open("/proc/cpuinfo") as fh:  # the vendor, as the kernel names it
        vendor = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("vendor_id"))
    assert {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendor, vendor) in device_label("cpu")
    amx = torch.cpu._is_amx_tile_supported()
    assert ("AMX" in device_label("cpu").split()) == amx
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(utils, "cpu_kernel_features", lambda: "Intel AMX BF16 VNNI")
    assert device_label("cpu") == "cpu AVX512 (Intel AMX BF16 VNNI)"
    monkeypatch.setattr(utils, "cpu_kernel_features", lambda: "")
    assert device_label("cpu") == "cpu AVX512"
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: {1: "NVIDIA H100 80GB HBM3", 3: "NVIDIA A100"}[i])
    assert device_label("cuda") == "cuda:1 NVIDIA H100 80GB HBM3"  # no index: the current device
    assert device_label("cuda:3") == "cuda:3 NVIDIA A100"


def test_runs_on_a_scheduler_address(tmp_path: Path, client) -> None:
    rep = run_pipeline(tmp_path / "a.zarr", micro(stages=("info",)), scheduler=client.scheduler.address,
                       progress=False)
    assert rep.ok and rep.submitted == 3
    assert open_store(tmp_path / "a.zarr").progress()["info"]["done"] == 3


def test_new_attack_on_an_existing_dataset_without_retraining(finished, tmp_path: Path, client, monkeypatch) -> None:
    src, _ = finished

    def no_training(ctx):
        raise AssertionError("retrained although the networks could be reused")

    p = micro(attacks={"fgsm@Linf": (2 / 255, 8 / 255), "pgd@Linf": (8 / 255,)}, attack_params={"pgd@Linf": {"steps": 3}})
    with stages_mod.STAGE_DEFS.replaced("train", stages_mod.StageDef("train", no_training, (), True, True)):
        rep = run_pipeline(tmp_path / "more.zarr", p, client=client, reuse=src, progress=False)
    assert rep.ok, rep.failures
    # only the attack grid changed: everything but `adversarial` is copied, the attacks run on the old networks
    assert rep.extra["reused"] == {"info": 3, "proxies": 3, "train": 3, "clean": 3, "corruptions": 3, "measures": 3}
    assert rep.submitted == 6  # 3 cells x one unit per attack
    assert rep.counts["adversarial"] == {"done": 6, "failed": 0, "total": 6}
    old, new = open_dataset(src).load(), open_dataset(tmp_path / "more.zarr").load()
    np.testing.assert_array_equal(new.clean_accuracy.values, old.clean_accuracy.values)
    np.testing.assert_array_equal(new.adv_accuracy.sel(attack="fgsm@Linf").values,
                                  old.adv_accuracy.sel(attack="fgsm@Linf").values)  # same networks, same numbers
    assert np.isfinite(new.adv_accuracy.sel(attack="pgd@Linf", eps=8 / 255).values).all()
    for name in ("unit_device", "unit_threads", "unit_precision"):  # copied results keep what they ran with
        np.testing.assert_array_equal(new[name].sel(stage="clean").values, old[name].sel(stage="clean").values)
    for rel in new.checkpoint.values.ravel():
        assert (tmp_path / str(rel)).resolve() == next((src.parent).glob(f"*.checkpoints/{Path(str(rel)).name}")).resolve()


@pytest.mark.parametrize("name", ["tiny", "jung2023"])
def test_protocol_names_exist_in_their_parts(name: str) -> None:
    from robustbench_nas import attacks
    from robustbench_nas import corruptions
    from robustbench_nas.measures import list_measures
    from robustbench_nas.proxies import list_proxies
    from robustbench_nas.training import list_profiles

    p = get_protocol(name)
    assert set(p.attacks) <= set(attacks.list_attacks())
    assert set(p.corruptions) <= set(corruptions.list_corruptions())
    assert set(p.proxies) <= set(list_proxies())
    assert set(p.measures) <= set(list_measures())
    assert p.train_profile in list_profiles()
    assert list_stages() == list(p.stages)  # every stage of the protocol has a registered implementation


def test_gpu_stages_request_the_gpu_resource_only_when_workers_have_it(tmp_path: Path) -> None:
    from robustbench_nas.pipelines.runner import _submit, prepare_store

    class Recorder:
        def __init__(self, resources):
            self.resources, self.calls = resources, []

        def scheduler_info(self):
            return {"workers": {"w0": {"resources": self.resources}}}

        def submit(self, fn, *args, **kw):
            self.calls.append((args[4], kw))
            return object()

    store, p = prepare_store(tmp_path / "g.zarr", micro(archs=[6]))
    units = plan_units(store, p, list(p.stages), None)
    for resources, expect_gpu in (({"GPU": 1}, True), ({}, False)):
        rec = Recorder(resources)
        _submit(rec, store, p, units, "auto", 1)
        asked = {stage: kw["resources"] for stage, kw in rec.calls}
        assert asked["info"] is None  # parameter counting needs no accelerator
        for stage in ("proxies", "train", "clean", "adversarial:fgsm@Linf", "corruptions", "measures"):
            assert asked[stage] == ({"GPU": 1} if expect_gpu else None), stage  # attacks: one unit each
        prio = {stage: kw["priority"] for stage, kw in rec.calls}
        assert prio["clean"] > prio["train"]  # finish started cells before training new ones


def test_a_stage_runs_only_on_done_upstream_results(tmp_path: Path) -> None:
    """The runner's statuses are "done" and "failed" (the store's are pending / done / failed): an upstream result
    with any other status, e.g. the former never-produced "skipped", does not count as finished."""
    from robustbench_nas.pipelines.runner import execute_unit

    for status in ("failed", "skipped"):
        res = execute_unit(str(tmp_path / "s.zarr"), micro().to_dict(), 0, 0, "clean",
                           upstream=[{"stage": "train", "status": status}])
        assert res["status"] == "failed" and "needs train" in res["error"], res

"""Weights by content: checkpoints named by their weights hash, every evaluation records the hash it used, a
retrained cell resets its evaluations in the same journal record, ``rbnas status --check`` finds stale results and
tampered checkpoints, ``--reuse`` copies only results that carry the hash of the weights they point to."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.models import build_model
from robustbench_nas.pipelines import get_protocol, run_pipeline
from robustbench_nas.pipelines import stages as stages_mod
from robustbench_nas.pipelines.runner import ResultWriter
from robustbench_nas.storage import DONE, PENDING, WEIGHT_STAGES, RobustnessStore, StoreError, open_store
from robustbench_nas.training import (
    CheckpointError,
    checkpoint_sha256,
    load_checkpoint,
    model_sha256,
    save_checkpoint,
    save_checkpoint_by_content,
    weights_sha256,
)

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"

# three cells, one seed, two epochs on 256 digits; train, clean and measures only: the run takes seconds
MICRO = dict(
    archs=["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
           "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", 6],
    profile_overrides={"epochs": 2, "max_train_images": 256},
    stages=("train", "clean", "measures"),
    measures=("jacobian_fro",),
    measure_images=8,
    eval_images=64,
    batch_size=64,
    retries=0,
)


def micro(**kw):
    return get_protocol("tiny", **{**MICRO, **kw})


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ARCH, C=4, N=1)


def _reference_hash(state: dict[str, torch.Tensor], config: dict) -> str:
    """The documented canonical form, written out independently (numpy bytes, not torch views)."""
    h = hashlib.sha256(b"rbnas-weights-sha256-v1\0")
    h.update(json.dumps(json.loads(json.dumps(config)), sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(state):
        a = state[name].detach().cpu().numpy()  # (not ascontiguousarray: it makes a 0-d array 1-d)
        h.update(f"{name}\0{str(state[name].dtype).split('.')[-1]}\0{','.join(str(n) for n in a.shape)}\0".encode())
        h.update(a.nbytes.to_bytes(8, "little"))
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# ---- the hash and the file names ------------------------------------------------------------------------------------
def test_weights_hash_is_the_documented_canonical_form(tmp_path: Path) -> None:
    model = _model()
    sha = model_sha256(model)
    assert sha == _reference_hash(model.state_dict(), dict(model.config))
    assert len(sha) == 64 and int(sha, 16) >= 0
    # the file's other metadata (history with wall seconds, device) is not part of it
    a = save_checkpoint(tmp_path / "a.safetensors", model, {"history": [{"seconds": 1.0}]})
    b = save_checkpoint(tmp_path / "b.safetensors", model, {"history": [{"seconds": 2.5}]})
    assert a.read_bytes() != b.read_bytes()
    assert checkpoint_sha256(a) == checkpoint_sha256(b) == sha
    _, meta = load_checkpoint(a, expect_sha256=sha)
    assert meta["weights_sha256"] == sha


def test_weights_hash_changes_with_one_weight_or_the_build_config() -> None:
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sha = weights_sha256(state, dict(model.config))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    flat = state[name].view(-1)
    flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf")))  # one ulp of one weight
    assert weights_sha256(state, dict(model.config)) != sha
    other = {**dict(model.config), "arch_str": ARCH.replace("avg_pool_3x3", "skip_connect")}  # same tensors
    assert weights_sha256(model.state_dict(), other) != sha


def test_content_addressed_checkpoints_are_never_overwritten(tmp_path: Path) -> None:
    first = _model(0)
    p1, sha1 = save_checkpoint_by_content(tmp_path, "7_s0", first, {"history": [{"seconds": 1.0}]})
    assert p1.name == f"7_s0_{sha1}.safetensors" and sha1 == model_sha256(first)
    before, mtime = p1.read_bytes(), p1.stat().st_mtime_ns
    p2, sha2 = save_checkpoint_by_content(tmp_path, "7_s0", _model(1))  # retrained: other weights
    assert sha2 != sha1 and p2 != p1
    assert p1.read_bytes() == before and checkpoint_sha256(p1) == sha1  # the old one is untouched
    # the same weights again (other metadata): the existing file stays as it is
    p3, sha3 = save_checkpoint_by_content(tmp_path, "7_s0", first, {"history": [{"seconds": 9.0}]})
    assert (p3, sha3) == (p1, sha1) and p1.read_bytes() == before and p1.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p1.name, p2.name])  # no temporaries left


def test_loading_other_weights_than_recorded_is_refused(tmp_path: Path) -> None:
    p, sha = save_checkpoint_by_content(tmp_path, "1_s0", _model(0))
    other = "0" * 64
    with pytest.raises(CheckpointError, match=f"not the recorded {other}"):
        load_checkpoint(p, expect_sha256=other)


# ---- the pipeline -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, client) -> Path:
    path = tmp_path_factory.mktemp("w") / "micro.zarr"
    rep = run_pipeline(path, micro(), client=client, progress=False)
    assert rep.ok, rep.failures
    return path


def _copy(path: Path, dest: Path) -> Path:
    """The store and its checkpoint folder, copied together (checkpoint paths are relative to the parent)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(path, dest / path.name)
    shutil.copytree(path.parent / f"{path.name}.checkpoints", dest / f"{path.name}.checkpoints")
    return dest / path.name


def _hashes(path: Path) -> dict[str, np.ndarray]:
    st = open_store(path)
    return {name: np.asarray(st.read_array(name), dtype=str)
            for name in ["weights_sha256", "checkpoint", *(f"{s}_weights_sha256" for s in ("clean", "measures"))]}


def test_every_result_records_the_weights_it_was_computed_from(finished: Path) -> None:
    h = _hashes(finished)
    assert (np.char.str_len(h["weights_sha256"]) == 64).all()
    np.testing.assert_array_equal(h["clean_weights_sha256"], h["weights_sha256"])
    np.testing.assert_array_equal(h["measures_weights_sha256"], h["weights_sha256"])
    for rel, sha in zip(h["checkpoint"].ravel(), h["weights_sha256"].ravel()):
        assert Path(rel).name.endswith(f"_{sha}.safetensors")
        assert checkpoint_sha256(finished.parent / rel) == sha  # the file holds the recorded weights
    r = _invoke("status", str(finished), "--check", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["weights"] == {"audited": True, "problems": []}


def test_a_train_result_resets_its_evaluations_in_the_same_record(finished: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    path = _copy(finished, tmp_path)
    store = RobustnessStore.open(path, mode="r+")
    uid = store.spec.archs[0]
    values = {a.name: store.read_cell(uid, 0, a.name) for a in store.arrays.values() if a.stage == "train"}
    appended: list[list] = []
    real_append = store.append
    monkeypatch.setattr(store, "append", lambda recs: (appended.append(list(recs)), real_append(appended[-1])))
    writer = ResultWriter(store, [(uid, 0, "train")])
    writer.add([(uid, 0, "train", {"status": "done", "values": values, "seconds": 1.0, "attempts": 1})])
    assert len(appended) == 1 and len(appended[0]) == 1  # one journal record ...
    book = {store.spec.stages[s]: status for _i, _j, s, status, *_ in appended[0][0][1].book}
    assert book == {"train": DONE, "clean": PENDING, "measures": PENDING}  # ... holding the train result and resets
    st = store.status()[store.arch_pos(uid), 0]
    assert [int(st[store.stage_pos(s)]) for s in ("train", "clean", "measures")] == [DONE, PENDING, PENDING]
    # an evaluation of the new weights finished in the same batch is recorded after the train result: it stays done
    clean = {a.name: store.read_cell(uid, 0, a.name) for a in store.arrays.values() if a.stage == "clean"}
    writer = ResultWriter(store, [(uid, 0, "train"), (uid, 0, "clean")])
    writer.add([(uid, 0, "clean", {"status": "done", "values": clean, "seconds": 1.0, "attempts": 1}),
                (uid, 0, "train", {"status": "done", "values": values, "seconds": 1.0, "attempts": 1})])
    assert store.is_done(uid, 0, "clean") and not store.is_done(uid, 0, "measures")
    # a result without the weights hash it used (a stage that never loaded the trained network) is not stored as done
    del clean["clean_weights_sha256"]
    ResultWriter(store, [(uid, 0, "clean")]).add(
        [(uid, 0, "clean", {"status": "done", "values": clean, "seconds": 1.0, "attempts": 1})])
    assert [(f["stage"], "returned no clean_weights_sha256" in f["error"]) for f in store.failures()] == [("clean", True)]


def test_force_stage_train_resets_dependents_and_keeps_the_old_checkpoints(finished: Path, tmp_path: Path, client,
                                                                          monkeypatch) -> None:
    import robustbench_nas.training as training

    path = _copy(finished, tmp_path)
    old = _hashes(path)
    old_files = {rel: (path.parent / rel).read_bytes() for rel in old["checkpoint"].ravel()}
    real = training.train_model

    def other_weights(*args, **kwargs):  # what a GPU without deterministic kernels does: other weights
        result = real(*args, **kwargs)
        with torch.no_grad():
            next(result.model.parameters()).add_(1e-3)
        return result

    monkeypatch.setattr(training, "train_model", other_weights)
    rep = run_pipeline(path, micro(), client=client, stages=["train"], force_stages=["train"], progress=False)
    assert rep.ok and rep.submitted == 3
    store = open_store(path)
    prog = store.progress()
    assert prog["train"]["done"] == 3 and prog["clean"]["pending"] == 3 and prog["measures"]["pending"] == 3
    new = _hashes(path)
    assert not np.isin(new["weights_sha256"], old["weights_sha256"]).any()
    for rel, raw in old_files.items():  # the old networks are still there, unchanged
        assert (path.parent / rel).read_bytes() == raw
    assert _invoke("status", str(path), "--check").exit_code == 3  # pending, not stale: nothing claims old weights
    monkeypatch.setattr(training, "train_model", real)
    rep = run_pipeline(path, micro(), client=client, progress=False)  # the same command finishes them
    assert rep.ok and rep.submitted == 6
    again = _hashes(path)
    np.testing.assert_array_equal(again["weights_sha256"], new["weights_sha256"])  # not retrained
    np.testing.assert_array_equal(again["clean_weights_sha256"], new["weights_sha256"])
    np.testing.assert_array_equal(again["measures_weights_sha256"], new["weights_sha256"])
    assert _invoke("status", str(path), "--check").exit_code == 0


def test_status_check_finds_tampered_missing_and_stale(finished: Path, tmp_path: Path) -> None:
    path = _copy(finished, tmp_path)
    store = RobustnessStore.open(path, mode="r+")
    a, b, c = store.spec.archs
    h = _hashes(path)
    ck_a = path.parent / h["checkpoint"][0, 0]
    raw = bytearray(ck_a.read_bytes())
    raw[-1] ^= 0x01  # one bit of the last tensor's data: still a valid file, other weights
    ck_a.write_bytes(bytes(raw))
    (path.parent / h["checkpoint"][1, 0]).unlink()
    store.write_cell(c, 0, {"clean_weights_sha256": "f" * 64}, stage="clean")  # computed from other weights
    r = _invoke("status", str(path), "--check")
    assert r.exit_code == 4
    lines = [ln for ln in r.output.splitlines() if ln.startswith("WEIGHTS ")]
    assert len(lines) == 3
    assert f"checkpoint_mismatch: cell {a} seed 0 stage train" in lines[0]
    assert f"checkpoint_missing: cell {b} seed 0 stage train" in lines[1]
    assert f"stale_result: cell {c} seed 0 stage clean" in lines[2] and "ffffffffffff" in lines[2]
    r = _invoke("status", str(path), "--check", "--json")
    assert r.exit_code == 4
    probs = json.loads(r.stdout)["weights"]["problems"]
    assert [(p["kind"], p["arch"], p["stage"]) for p in probs] == [
        ("checkpoint_mismatch", a, "train"), ("checkpoint_missing", b, "train"), ("stale_result", c, "clean")]
    assert probs[0]["recorded"] == h["weights_sha256"][0, 0] and probs[0]["current"] == checkpoint_sha256(ck_a)
    assert _invoke("status", str(path)).exit_code == 0  # without --check: a report, nothing hashed


# ---- reuse ------------------------------------------------------------------------------------------------------------
def _no_training(ctx):
    raise AssertionError("retrained although the networks could be reused")


def test_reuse_copies_pointers_and_only_results_of_those_weights(finished: Path, tmp_path: Path, client) -> None:
    src = _copy(finished, tmp_path / "src")
    store = RobustnessStore.open(src, mode="r+")
    stale = store.spec.archs[1]
    store.write_cell(stale, 0, {"clean_weights_sha256": "e" * 64}, stage="clean")  # stale in the source
    with stages_mod.STAGE_DEFS.replaced("train", stages_mod.StageDef("train", _no_training, (), True, True)):
        rep = run_pipeline(tmp_path / "new.zarr", micro(), client=client, reuse=src, progress=False)
    assert rep.ok, rep.failures
    assert rep.extra["reused"] == {"train": 3, "clean": 2, "measures": 3} and rep.submitted == 1
    new, old = _hashes(tmp_path / "new.zarr"), _hashes(src)
    np.testing.assert_array_equal(new["weights_sha256"], old["weights_sha256"])
    np.testing.assert_array_equal(new["clean_weights_sha256"], new["weights_sha256"])  # the stale one recomputed
    for rel_new, rel_old in zip(new["checkpoint"].ravel(), old["checkpoint"].ravel()):  # the same files
        assert (tmp_path / rel_new).resolve() == (src.parent / rel_old).resolve()
    assert _invoke("status", str(tmp_path / "new.zarr"), "--check").exit_code == 0


def _old_style_copy(finished: Path, dest: Path) -> Path:
    """``finished`` as a store made before weights hashes: no hash arrays, checkpoints under plain names."""
    src = open_store(finished)
    spec = src.spec.to_dict()
    spec["weights_hashes"] = False
    from robustbench_nas.storage import StoreSpec

    old = RobustnessStore.create(dest / "old.zarr", StoreSpec(**spec), attrs={
        k: src.attrs[k] for k in ("protocol", "protocol_fingerprint", "random_streams")})
    (dest / "old.zarr.checkpoints").mkdir()
    for uid in src.spec.archs:
        for stage in src.spec.stages:
            values = {a.name: src.read_cell(uid, 0, a.name) for a in old.arrays.values() if a.stage == stage}
            if stage == "train":
                plain = dest / "old.zarr.checkpoints" / f"{uid}_s0.safetensors"
                shutil.copyfile(finished.parent / str(values["checkpoint"]), plain)
                values["checkpoint"] = str(plain.relative_to(dest))
            old.write_cell(uid, 0, values, stage=stage)
    return dest / "old.zarr"


def test_old_stores_are_refused_and_reused_by_hashing_their_checkpoints(finished: Path, tmp_path: Path,
                                                                        client) -> None:
    old = _old_style_copy(finished, tmp_path / "o")
    with pytest.raises(StoreError, match="weights hash"):
        run_pipeline(old, micro(), client=client, progress=False)
    with stages_mod.STAGE_DEFS.replaced("train", stages_mod.StageDef("train", _no_training, (), True, True)):
        rep = run_pipeline(tmp_path / "new.zarr", micro(), client=client, reuse=old, progress=False)
    assert rep.ok, rep.failures
    # the networks are reused (hashed), their evaluations are not: nothing says which weights they came from
    assert rep.extra["reused"] == {"train": 3} and rep.submitted == 6
    new = _hashes(tmp_path / "new.zarr")
    np.testing.assert_array_equal(new["weights_sha256"], _hashes(finished)["weights_sha256"])
    for rel, sha in zip(new["checkpoint"].ravel(), new["weights_sha256"].ravel()):
        assert rel.startswith("new.zarr.checkpoints/") and rel.endswith(f"_{sha}.safetensors")
    np.testing.assert_array_equal(new["clean_weights_sha256"], new["weights_sha256"])
    # the source's file replaced (as the old code's retraining did: a new file renamed over it) leaves the reused
    # network alone
    plains = sorted((tmp_path / "o" / "old.zarr.checkpoints").iterdir())
    for plain in plains:
        save_checkpoint(plain, _model(3))
    assert _invoke("status", str(tmp_path / "new.zarr"), "--check").exit_code == 0
    # a source network that is gone is trained here instead (no crash, no pointer to nothing)
    plains[0].unlink()
    rep = run_pipeline(tmp_path / "again.zarr", micro(), client=client, reuse=old, progress=False)
    assert rep.ok and rep.extra["reused"] == {"train": 2} and rep.counts["train"]["total"] == 1
    assert _invoke("status", str(tmp_path / "again.zarr"), "--check").exit_code == 0


def test_weight_stages_are_the_stages_that_need_train() -> None:
    from robustbench_nas.storage import STAGES

    assert list(WEIGHT_STAGES) == stages_mod.dependent_stages(["train"], list(STAGES))

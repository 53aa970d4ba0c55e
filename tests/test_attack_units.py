"""The adversarial stage as one unit per attack (pipelines/attack_units.py): the merged per-attack units give the
values of the whole stage run as one unit, bit for bit; a run keeps finished attacks; old stores run as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robustbench_nas.pipelines import get_protocol, run_pipeline
from robustbench_nas.pipelines.attack_units import (attack_progress, attack_unit, attacks_done, expand, split_unit,
                                                    store_attacks_done)
from robustbench_nas.pipelines.dryrun import dry_run
from robustbench_nas.pipelines.runner import execute_unit, plan_units
from robustbench_nas.storage import DONE, PENDING, open_dataset, open_store
from store_equality import MICRO

ARCHS = [6, 12000]
# two attacks with short budgets (FGSM, 2-step PGD), only the stages they need
ATTACKS = {"fgsm@Linf": [2 / 255, 8 / 255], "pgd@Linf": [8 / 255]}
PROTO = dict(MICRO, archs=ARCHS, attacks=ATTACKS, attack_params={"pgd@Linf": {"steps": 2}},
             stages=["info", "train", "adversarial"], attack_images=32)
ADV = ("adv_accuracy", "adv_confidence", "adv_confidence_true", "adv_confusion", "adv_clean_accuracy",
       "adversarial_weights_sha256")


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("split") / "s.zarr"
    report = run_pipeline(path, get_protocol("tiny", **PROTO), client=client, progress=False)
    assert report.ok, report.failures
    return path, report


def test_unit_names_round_trip() -> None:
    assert split_unit(attack_unit("aa_apgd-ce@Linf")) == ("adversarial", "aa_apgd-ce@Linf")
    assert split_unit("clean") == ("clean", None)


def test_expand_plans_only_attacks_not_done() -> None:
    w = np.array([["a" * 64]], dtype=object)
    done = attacks_done(np.array([[["a" * 64, "b" * 64]]], dtype=object), w)  # second: other weights (stale)
    assert done.tolist() == [[[True, False]]]
    attacks = ["fgsm@Linf", "pgd@Linf"]
    pos = ({7: 0}, {0: 0})
    assert expand([(7, 0, "adversarial")], attacks, done, *pos) == [(7, 0, "adversarial:pgd@Linf")]
    # the cell is being (re)trained: every attack
    assert expand([(7, 0, "train"), (7, 0, "adversarial")], attacks, done, *pos)[1:] == [
        (7, 0, "adversarial:fgsm@Linf"), (7, 0, "adversarial:pgd@Linf")]
    # all attacks done but the stage is not (forced): every attack again
    assert len(expand([(7, 0, "adversarial")], attacks, np.ones((1, 1, 2), bool), *pos)) == 2
    # a store from before the split: one unit
    assert expand([(7, 0, "adversarial")], attacks, None, *pos) == [(7, 0, "adversarial")]
    assert not attacks_done(np.array([[[""]]], dtype=object), np.array([[""]], dtype=object)).any()


def test_per_attack_units_equal_one_unit_bit_for_bit(split_run) -> None:
    """Each cell's merged attack units hold what today's one adversarial unit computes on the same checkpoint."""
    path, report = split_run
    assert report.counts["adversarial"]["total"] == len(ARCHS) * len(ATTACKS)  # one unit per attack
    store = open_store(path)
    proto = get_protocol("tiny", **PROTO)
    ds = open_dataset(path).load()
    assert (ds.status.values == DONE).all()
    for uid in store.spec.archs:  # uids (the protocol lists NB201 indices)
        i = store.arch_pos(uid)
        res = execute_unit(str(path), proto.to_dict(), uid, 0, "adversarial", "cpu", 1,
                           arch_str=store.spec.arch_str[i],
                           checkpoint_rel=str(ds.checkpoint.values[i, 0]),
                           weights_sha256=str(ds.weights_sha256.values[i, 0]))
        assert res["status"] == "done", res["error"]
        for name in ADV:
            got, want = np.asarray(ds[name].values[i, 0]), np.asarray(res["values"][name])
            if got.dtype.kind == "f":
                np.testing.assert_array_equal(got, want, err_msg=name)
            else:
                assert (got == want).all(), name
        assert set(ds.adv_attack_weights_sha256.values[i, 0]) == {str(ds.weights_sha256.values[i, 0])}
        secs = ds.adv_attack_seconds.values[i, 0]
        assert (secs > 0).all()
        assert ds.stage_seconds.sel(stage="adversarial").values[i, 0] == pytest.approx(secs.sum())
    assert [r["done"] for r in attack_progress(store)] == [len(ARCHS)] * len(ATTACKS)


def test_interrupted_stage_keeps_finished_attacks(split_run, client, tmp_path: Path) -> None:
    """A cell whose PGD unit was lost (stage pending, FGSM row kept) reruns PGD alone and ends equal."""
    path, _ = split_run
    copy = tmp_path / "c.zarr"
    shutil.copytree(path, copy)
    shutil.copytree(path.parent / f"{path.name}.checkpoints", tmp_path / f"{path.name}.checkpoints")  # same relative path
    store = open_store(copy, mode="r+")
    uid = store.spec.archs[1]
    kept = store.read_cell(uid, 0, "adv_attack_weights_sha256")
    rec = store.cell_record(uid, 0, {"adv_attack_weights_sha256": [kept[0], ""]}, stage="adversarial",
                            status=PENDING)
    store.append([rec])
    store.commit()
    assert plan_units(store, get_protocol("tiny", **PROTO), ["adversarial"], None) == [(uid, 0, "adversarial:pgd@Linf")]
    plan = dry_run(copy, None)
    assert [(u["arch"], u["stage"]) for u in plan["units"]] == [(uid, "adversarial:pgd@Linf")]
    assert attack_progress(store)[1]["done"] == len(ARCHS) - 1
    rep = run_pipeline(copy, None, client=client, progress=False)
    assert rep.ok and rep.submitted == 1
    a, b = open_dataset(path).load(), open_dataset(copy).load()
    for name in ADV:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        else:
            assert (a[name].values == b[name].values).all(), name
    assert (b.status.values == DONE).all()


def test_force_stage_recomputes_every_attack(split_run, client, tmp_path: Path) -> None:
    path, _ = split_run
    copy = tmp_path / "f.zarr"
    shutil.copytree(path, copy)
    shutil.copytree(path.parent / f"{path.name}.checkpoints", tmp_path / f"{path.name}.checkpoints")  # same relative path
    plan = dry_run(copy, None, stages=["adversarial"], force_stages=["adversarial"])
    assert plan["n_units"] == len(ARCHS) * len(ATTACKS)
    rep = run_pipeline(copy, None, client=client, stages=["adversarial"], force_stages=["adversarial"],
                       progress=False)
    assert rep.ok and rep.submitted == len(ARCHS) * len(ATTACKS)
    a, b = open_dataset(path).load(), open_dataset(copy).load()
    np.testing.assert_array_equal(a.adv_accuracy.values, b.adv_accuracy.values)
    assert (b.attempts.sel(stage="adversarial").values == 2 * len(ATTACKS)).all()


def test_store_from_before_the_split_runs_the_stage_as_one_unit(split_run, client, tmp_path: Path) -> None:
    """A store without the per-attack arrays (made before the split) opens, plans one adversarial unit per cell,
    and computes the same values."""
    path, _ = split_run
    old = tmp_path / "old.zarr"
    shutil.copytree(path, old)
    shutil.copytree(path.parent / f"{path.name}.checkpoints", tmp_path / f"{path.name}.checkpoints")  # same relative path
    for name in ("adv_attack_weights_sha256", "adv_attack_seconds"):
        shutil.rmtree(old / name)
    meta = json.loads((old / "zarr.json").read_text())
    nodes = (meta.get("consolidated_metadata") or {}).get("metadata") or {}
    for name in ("adv_attack_weights_sha256", "adv_attack_seconds"):
        nodes.pop(name, None)
    (old / "zarr.json").write_text(json.dumps(meta))
    store = open_store(old, mode="r+")
    assert "adv_attack_seconds" not in store.arrays and store_attacks_done(store) is None
    assert attack_progress(store) == []
    store.reset_stage("adversarial")
    plan = dry_run(old, None)
    assert sorted((u["arch"], u["stage"]) for u in plan["units"]) == [(a, "adversarial") for a in store.spec.archs]
    rep = run_pipeline(old, None, client=client, progress=False)
    assert rep.ok and rep.submitted == len(ARCHS)
    a, b = open_dataset(path).load(), open_dataset(old).load()
    assert "adv_attack_seconds" not in b
    for name in ADV:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        else:
            assert (a[name].values == b[name].values).all(), name


def test_status_shows_progress_per_attack(split_run) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    path, _ = split_run
    r = CliRunner().invoke(cli, ["status", str(path)])
    assert r.exit_code == 0, r.output
    assert f"attacks done: fgsm@Linf {len(ARCHS)}/{len(ARCHS)}, pgd@Linf {len(ARCHS)}/{len(ARCHS)}" in r.output
    r = CliRunner().invoke(cli, ["status", str(path), "--json"])
    assert [(a["attack"], a["done"], a["pending"]) for a in json.loads(r.stdout)["attacks"]] == [
        ("fgsm@Linf", len(ARCHS), 0), ("pgd@Linf", len(ARCHS), 0)]


def test_a_failing_attack_fails_the_stage_and_alone_is_rerun(tmp_path: Path, client, monkeypatch) -> None:
    """PGD raising: the stage is failed naming the attack, FGSM's row is kept; the rerun computes only PGD."""
    from robustbench_nas import attacks

    real = attacks.evaluate

    def broken(model, x, y, attack, *a, **kw):
        if attack == "pgd@Linf":
            raise RuntimeError("pgd broke")
        return real(model, x, y, attack, *a, **kw)

    proto = get_protocol("tiny", **{**PROTO, "archs": ARCHS[:1], "retries": 0})
    path = tmp_path / "f.zarr"
    monkeypatch.setattr(attacks, "evaluate", broken)
    rep = run_pipeline(path, proto, client=client, progress=False)
    assert [(f["stage"], f["error"].split(":")[0]) for f in rep.failures] == [("adversarial", "attack pgd@Linf")]
    store = open_store(path)
    uid = store.spec.archs[0]
    assert np.isfinite(store.read_cell(uid, 0, "adv_accuracy")[0]).all()  # FGSM at 2/255, 8/255: kept
    assert plan_units(store, proto, ["adversarial"], None) == [(uid, 0, "adversarial:pgd@Linf")]
    monkeypatch.setattr(attacks, "evaluate", real)
    rep = run_pipeline(path, proto, client=client, progress=False)
    assert rep.ok and rep.submitted == 1
    assert open_store(path).is_done(uid, 0, "adversarial")

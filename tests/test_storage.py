"""The Zarr store: schema on disk, writer checks, status-last semantics, readers, concurrent writers, export."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from robustbench_nas.storage import (
    DONE,
    FAILED,
    PENDING,
    StoreError,
    StoreSpec,
    create_store,
    open_dataset,
    open_store,
    to_dataframe,
)

ARCHS = [0, 6, 12, 40]


def small_spec(**kw) -> StoreSpec:
    args = dict(
        archs=ARCHS,
        arch_str=[f"cell{a}" for a in ARCHS],
        seeds=[7, 8],
        attacks={"fgsm@Linf": [1 / 255, 8 / 255, 1.0], "pgd@Linf": [8 / 255, 1 / 255]},
        corruptions=["fog", "snow"],
        severities=[1, 3],
        proxies=["snip", "synflow", "nwot"],
        measures=["jacobian_fro"],
        num_classes=3,
        epochs=2,
    )
    args.update(kw)
    return StoreSpec(**args)


@pytest.fixture()
def store(tmp_path: Path):
    return create_store(tmp_path / "s.zarr", small_spec())


def test_layout_on_disk_is_zarr3_with_dimension_names(store) -> None:
    meta = json.loads((store.path / "adv_confusion" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["dimension_names"] == ["arch", "seed", "attack", "eps", "true_class", "pred_class"]
    # one cell, one seed per chunk; the grid dims whole
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 2, 3, 3, 3]
    ds = xr.open_zarr(store.path)  # plain xarray, no helper
    assert list(ds["arch"].values) == ARCHS
    assert list(ds["seed"].values) == [7, 8]
    assert ds.sizes["eps"] == 3  # union of {1, 8, 255}/255 and {8, 1}/255
    np.testing.assert_allclose(ds["eps"].values, [1 / 255, 8 / 255, 1.0])
    assert ds["eps"].attrs["labels"] == ["1/255", "8/255", "255/255"]
    assert ds["attack_grid"].values.tolist() == [[True, True, True], [True, True, False]]
    assert [str(v) for v in ds["arch_str"].values] == [f"cell{a}" for a in ARCHS]


def test_write_cell_roundtrip_and_status_last(store) -> None:
    acc = np.array([[0.5, 0.25, 0.0], [0.4, 0.2, np.nan]])
    cm = np.arange(2 * 3 * 9).reshape(2, 3, 3, 3)
    store.write_cell(12, 8, {"adv_accuracy": acc, "adv_confusion": cm}, stage="adversarial", seconds=2.5)
    assert store.is_done(12, 8, "adversarial") and not store.is_done(12, 7, "adversarial")
    ds = open_dataset(store.path)
    np.testing.assert_array_equal(ds.adv_accuracy.sel(arch=12, seed=8).values, acc)
    np.testing.assert_array_equal(ds.adv_confusion.sel(arch=12, seed=8).values, cm)
    assert float(ds.stage_seconds.sel(arch=12, seed=8, stage="adversarial")) == 2.5
    # untouched cells keep their fill
    assert np.isnan(ds.adv_accuracy.sel(arch=0).values).all()
    assert (ds.adv_confusion.sel(arch=0).values == -1).all()
    # values written without marking the stage done are invisible to done_only readers
    store.write_cell(0, 7, {"clean_accuracy": 0.75})
    assert float(open_dataset(store.path).clean_accuracy.sel(arch=0, seed=7)) == 0.75
    assert np.isnan(float(open_dataset(store.path, done_only=True).clean_accuracy.sel(arch=0, seed=7)))


def test_per_arch_stage_marks_every_seed(store) -> None:
    store.write_cell(6, 7, {"params": 1234, "flops": 1.5, "flops_plain": 1.25}, stage="info")
    assert store.is_done(6, 7, "info") and store.is_done(6, 8, "info")
    assert store.progress()["info"] == {"done": 1, "failed": 0, "pending": 3}


@pytest.mark.parametrize(
    "values, error",
    [
        ({"adv_accuracy": np.zeros((2, 2))}, "expected shape"),
        ({"nope": 1.0}, "no array 'nope'"),
        ({"clean_confusion": np.full((3, 3), 0.5)}, "integers"),
        ({"clean_accuracy": "high"}, "numbers"),
        ({"status": 1}, "bookkeeping"),
    ],
)
def test_bad_values_raise_before_anything_is_written(store, values, error) -> None:
    good = {"clean_accuracy": 0.9}
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*") if p.is_file())
    with pytest.raises((ValueError, KeyError), match=error):
        store.write_cell(6, 7, {**good, **values}, stage="clean")
    after = sorted(p.relative_to(store.path) for p in store.path.rglob("*") if p.is_file())
    assert before == after  # not even the good value of the same call landed
    assert not store.is_done(6, 7, "clean")


def test_unknown_cell_seed_stage(store) -> None:
    with pytest.raises(KeyError, match="cell 5 is not in this store"):
        store.write_cell(5, 7, {"clean_accuracy": 0.1})
    with pytest.raises(KeyError, match="seed 9"):
        store.write_cell(6, 9, {"clean_accuracy": 0.1})
    with pytest.raises(KeyError, match="stage 'bogus'"):
        store.write_cell(6, 7, {"clean_accuracy": 0.1}, stage="bogus")


def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match=r"pixel units \(8/255, not 8\)"):
        small_spec(attacks={"fgsm@Linf": [8.0]})
    with pytest.raises(ValueError, match="duplicate cells"):
        small_spec(archs=[0, 0, 1, 2])
    with pytest.raises(ValueError, match="unknown stage"):
        small_spec(stages=["train", "fly"])


def test_existing_store_is_never_overwritten(tmp_path: Path) -> None:
    s = create_store(tmp_path / "s.zarr", small_spec())
    s.write_cell(0, 7, {"clean_accuracy": 0.5}, stage="clean")
    with pytest.raises(StoreError, match="refusing to overwrite"):
        create_store(tmp_path / "s.zarr", small_spec(seeds=[1]))
    assert open_store(tmp_path / "s.zarr").is_done(0, 7, "clean")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="no Zarr store"):
        open_store(tmp_path / "plain")


def test_failed_and_reset(store) -> None:
    store.add_attempt(40, 7, "train")
    store.add_attempt(40, 7, "train")
    store.mark_failed(40, 7, "train", "RuntimeError: out of memory")
    (f,) = store.failures()
    assert (f["arch"], f["seed"], f["stage"], f["attempts"]) == (40, 7, "train", 2)
    assert f["error"] == "RuntimeError: out of memory"
    store.write_cell(40, 8, {"clean_accuracy": 0.3}, stage="clean")
    assert store.reset_stage("clean") == 1
    assert store.status()[:, :, store.stage_pos("clean")].max() == PENDING
    assert store.status()[3, 0, store.stage_pos("train")] == FAILED


def test_readonly_store_refuses_writes(store) -> None:
    ro = open_store(store.path, mode="r")
    with pytest.raises(StoreError, match="read-only"):
        ro.write_cell(0, 7, {"clean_accuracy": 0.5})


def test_tidy_long_and_wide_tables(store) -> None:
    store.write_cell(0, 7, {"clean_accuracy": 0.9, "clean_confidence": 0.8, "clean_confidence_true": 0.7,
                            "clean_confusion": np.eye(3, dtype=int)}, stage="clean")
    store.write_cell(0, 7, {"adv_accuracy": [[0.5, 0.1, 0.0], [0.2, 0.05, 7.0]]}, stage="adversarial")
    store.write_cell(0, 7, {"proxy_value": [1.0, 2.0, 3.0]}, stage="proxies")
    store.write_cell(6, 8, {"proxy_value": [4.0, 5.0, 6.0]})  # not marked done: left out
    long = to_dataframe(store.path)
    assert list(long.columns) == ["arch", "arch_str", "nb201_index", "seed", "group", "name", "level",
                                  "level_label", "metric", "value"]
    adv = long[(long.group == "adversarial") & (long.metric == "accuracy")]
    # 5 grid points; (pgd, 255/255) is off the grid, so its stray value 7.0 never shows up
    assert len(adv) == 5 and 7.0 not in adv.value.values
    row = adv[(adv.name == "pgd@Linf") & (adv.level_label == "8/255")]
    assert row.value.tolist() == [0.05] and row.level.tolist() == [pytest.approx(8 / 255)]
    prox = long[long.group == "proxy"]
    assert prox.set_index("name").value.to_dict() == {"snip": 1.0, "synflow": 2.0, "nwot": 3.0}
    assert set(prox.arch) == {0}
    wide = to_dataframe(store.path, kind="wide")
    r = wide[(wide.arch == 0) & (wide.seed == 7)].iloc[0]
    assert r["clean:clean::accuracy"] == 0.9
    assert r["adversarial:fgsm@Linf:1/255:accuracy"] == 0.5
    assert r["proxy:nwot::value"] == 3.0


def test_bulk_writer_for_importers(tmp_path: Path) -> None:
    spec = small_spec(seeds=[0], arch_chunk=2, stages=["clean", "adversarial"])
    st = create_store(tmp_path / "imp.zarr", spec)
    acc = np.array([0.1, 0.2, 0.3, 0.4])
    st.write_array("clean_accuracy", acc[[2, 0]][:, None], archs=[12, 0])
    st.set_status("clean", DONE, archs=[12, 0])
    ds = open_dataset(st.path, done_only=True)
    got = ds.clean_accuracy.sel(seed=0).values
    np.testing.assert_array_equal(got, [0.1, np.nan, 0.3, np.nan])
    with pytest.raises(ValueError, match="expected shape"):
        st.write_array("clean_accuracy", acc, archs=ARCHS)


def _writer(args: tuple[str, list[int]]) -> int:
    path, archs = args
    st = open_store(path, mode="r+")
    for a in archs:
        for seed in (7, 8):
            st.write_cell(a, seed, {"proxy_value": [a, seed, a * seed]}, stage="proxies")
            st.write_cell(a, seed, {"clean_accuracy": a / 1000 + seed}, stage="clean")
    return len(archs)


def test_concurrent_writers_in_processes_lose_nothing(tmp_path: Path) -> None:
    archs = list(range(0, 96, 2))
    spec = StoreSpec(archs=archs, arch_str=[str(a) for a in archs], seeds=[7, 8], proxies=["a", "b", "c"],
                     stages=["proxies", "clean"])
    path = create_store(tmp_path / "c.zarr", spec).path
    # interleaved assignment: neighbouring cells are written by different processes at the same time
    jobs = [(str(path), archs[k::4]) for k in range(4)]
    with mp.get_context("spawn").Pool(4) as pool:
        assert sum(pool.map(_writer, jobs)) == len(archs)
    ds = open_dataset(path, done_only=True).load()
    assert int(ds.status.sum()) == len(archs) * 2 * 2  # every (cell, seed, stage) done
    a = ds["arch"].values[:, None]
    s = ds["seed"].values[None, :]
    np.testing.assert_array_equal(ds.proxy_value.values, np.stack(np.broadcast_arrays(a, s, a * s), axis=-1))
    np.testing.assert_allclose(ds.clean_accuracy.values, a / 1000 + s)
    assert not list(path.rglob("*.partial"))  # no temp file left behind


def test_export_cli_parquet_and_csv(store, tmp_path: Path) -> None:
    import pandas as pd
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    store.write_cell(0, 7, {"measure_value": [2.5]}, stage="measures")
    runner = CliRunner()
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"t.{fmt}"
        res = runner.invoke(cli, ["export", str(store.path), "--format", fmt, "--out", str(out)])
        assert res.exit_code == 0, res.output
        df = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
        assert df[["arch", "seed", "group", "name", "value"]].values.tolist() == [[0, 7, "measure", "jacobian_fro", 2.5]]
    res = runner.invoke(cli, ["export", str(tmp_path / "missing.zarr")])
    assert res.exit_code == 2 and "no Zarr store" in res.output


def test_compact_copy_is_identical_with_bigger_chunks(store, tmp_path: Path) -> None:
    from robustbench_nas.storage.compact import compact_store

    rng = np.random.default_rng(0)
    for a in ARCHS:
        store.write_cell(a, 7, {"adv_accuracy": rng.random((2, 3)), "adv_confusion": rng.integers(0, 9, (2, 3, 3, 3))},
                         stage="adversarial")
    store.mark_failed(6, 8, "train", "boom")
    out = compact_store(store.path, tmp_path / "pub.zarr", arch_chunk=2, shard_archs=4)
    meta = json.loads((out.path / "adv_confusion" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"][:2] == [4, 2]  # the shard: 4 cells, both seeds
    assert meta["codecs"][0]["name"] == "sharding_indexed"
    a, b = open_dataset(store.path).load(), open_dataset(out.path).load()
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    assert out.failures() == store.failures()
    with pytest.raises(StoreError, match="refusing to overwrite"):
        compact_store(store.path, out.path)


def test_fast_bookkeeping_reader_equals_zarr(store) -> None:
    from robustbench_nas.storage.store import _scan_scalar_chunks

    store.write_cell(6, 8, {"clean_accuracy": 0.5}, stage="clean", seconds=1.25)
    store.write_cell(40, 7, {"params": 3, "flops": 1.0, "flops_plain": 1.0}, stage="info", seconds=0.5)
    store.mark_failed(0, 7, "train", "x", seconds=3.0)
    store.add_attempt(0, 7, "train")
    (store.path / "status" / "c" / "1" / "1" / "3.abc.partial").write_bytes(b"\x01")  # a killed writer's temp file
    for name in ("status", "stage_seconds", "attempts"):
        arr = store._array(name)
        fast = _scan_scalar_chunks(store.path / name, arr)
        assert fast is not None, name  # the fast path applies to the layout written by create()
        np.testing.assert_array_equal(fast, np.asarray(arr[...]), err_msg=name)
        assert fast.dtype == np.asarray(arr[...]).dtype
    assert int((store.status() == DONE).sum()) == 3  # clean once, info at both seeds


def test_writer_dying_mid_cell_leaves_nothing_marked_done(store, monkeypatch) -> None:
    """A crash between two array writes of one stage: the values already written are never read as done."""
    real = store._array

    class Dies:
        def __init__(self, arr):
            self.arr = arr

        def __setitem__(self, key, value):
            raise OSError("killed while writing adv_confusion")

    monkeypatch.setattr(store, "_array", lambda name: Dies(real(name)) if name == "adv_confusion" else real(name))
    with pytest.raises(OSError, match="killed"):
        store.write_cell(6, 7, {"adv_accuracy": np.full((2, 3), 0.5), "adv_confusion": np.ones((2, 3, 3, 3))},
                         stage="adversarial")
    monkeypatch.undo()
    assert not store.is_done(6, 7, "adversarial")
    assert float(open_dataset(store.path).adv_accuracy.sel(arch=6, seed=7)[0, 0]) == 0.5  # half-written...
    assert np.isnan(open_dataset(store.path, done_only=True).adv_accuracy.sel(arch=6, seed=7).values).all()
    assert to_dataframe(store.path).query("group == 'adversarial'").empty  # ...and never read as a result

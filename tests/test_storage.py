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
    # shards: every cell (fewer than shard_cells) and seed; inner chunks (default: ~4 MiB): here the whole shard
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [4, 2, 2, 3, 3, 3]
    (sharding,) = meta["codecs"]
    assert sharding["name"] == "sharding_indexed"
    assert sharding["configuration"]["chunk_shape"] == [4, 2, 2, 3, 3, 3]
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
    assert list(long.columns) == ["arch", "arch_str", "seed", "group", "name", "level",
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


def test_arch_coords_are_coordinates_and_table_columns(tmp_path: Path) -> None:
    st = create_store(tmp_path / "c.zarr", small_spec(arch_coords={"nb201_index": [0, 7, 12, 99],
                                                                     "family": ["a", "b", "a", "c"]}))
    st.write_cell(6, 7, {"clean_accuracy": 0.5}, stage="clean")
    ds = xr.open_zarr(st.path)
    assert ds["nb201_index"].values.tolist() == [0, 7, 12, 99]
    ds = open_dataset(st.path)
    assert {"nb201_index", "family"} <= set(ds.coords) and ds["family"].dims == ("arch",)
    long = to_dataframe(st.path)
    assert list(long.columns[:4]) == ["arch", "arch_str", "nb201_index", "family"]
    assert long[["arch", "nb201_index", "family", "value"]].values.tolist() == [[6, 7, "b", 0.5]]
    with pytest.raises(ValueError, match="3 values for 4 archs"):
        small_spec(arch_coords={"x": [1, 2, 3]})
    with pytest.raises(ValueError, match="not a usable coordinate name"):
        small_spec(arch_coords={"seed": [1, 2, 3, 4]})


def test_bulk_writer_for_importers(tmp_path: Path) -> None:
    spec = small_spec(seeds=[0], shard_cells=2, stages=["clean", "adversarial"])
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


def test_compact_copy_is_identical_with_bigger_shards(store, tmp_path: Path) -> None:
    from robustbench_nas.storage.compact import compact_store

    rng = np.random.default_rng(0)
    for a in ARCHS:
        store.write_cell(a, 7, {"adv_accuracy": rng.random((2, 3)), "adv_confusion": rng.integers(0, 9, (2, 3, 3, 3))},
                         stage="adversarial")
    store.mark_failed(6, 8, "train", "boom")
    out = compact_store(store.path, tmp_path / "pub.zarr", shard_cells=2, compress=True)
    meta = json.loads((out.path / "adv_confusion" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"][:2] == [2, 2]  # the shard: 2 cells, both seeds
    assert meta["codecs"][0]["name"] == "sharding_indexed"
    a, b = open_dataset(store.path).load(), open_dataset(out.path).load()
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    z = xr.open_zarr(out.path).load()  # plain zarr-python reads the compressed shards too
    np.testing.assert_array_equal(z.adv_confusion.values, a.adv_confusion.values)
    assert out.failures() == store.failures()
    with pytest.raises(StoreError, match="refusing to overwrite"):
        compact_store(store.path, out.path)
    compact_store(store.path, out.path, overwrite=True)  # our own store: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_compact_overwrite_refuses_a_folder_that_is_not_a_store(store, tmp_path: Path) -> None:
    from robustbench_nas.storage.compact import compact_store

    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(StoreError, match="not a robustbench-nas store; refusing to overwrite"):
        compact_store(store.path, precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "years of work"
    plain = tmp_path / "plain.zarr"
    import zarr

    zarr.open_group(str(plain), mode="w", zarr_format=3)  # a Zarr store, but not ours
    with pytest.raises(StoreError, match="refusing to overwrite"):
        compact_store(store.path, plain, overwrite=True)
    assert (plain / "zarr.json").is_file()


def test_shard_reader_equals_zarr_python(store) -> None:
    """Our own shard decoder and writer against zarr-python on every array (the independent reference)."""
    import zarr

    rng = np.random.default_rng(1)
    store.write_cell(6, 8, {"clean_accuracy": 0.5, "clean_confusion": rng.integers(0, 9, (3, 3))}, stage="clean",
                     seconds=1.25)
    store.write_cell(40, 7, {"params": 3, "flops": 1.0, "flops_plain": 1.0}, stage="info", seconds=0.5)
    store.write_cell(12, 7, {"checkpoint": "ck/12_s7.safetensors"}, stage="train")
    store.mark_failed(0, 7, "train", "x", seconds=3.0)
    store.add_attempt(0, 7, "train")
    g = zarr.open_group(str(store.path), mode="r")
    for name in store.arrays:
        ours = store.read_array(name)
        theirs = np.asarray(g[name][...])
        if ours.dtype == object:
            assert [str(v) for v in ours.ravel()] == [str(v) for v in theirs.ravel()], name
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
            assert ours.dtype == theirs.dtype, name
    assert int((store.status() == DONE).sum()) == 4  # clean once, train once, info at both seeds
    # and zarr-python writing a shard (its own encoding, chunk order) is read back by ours
    g2 = zarr.open_group(str(store.path), mode="r+")
    vals = rng.random((4, 2, 2, 3))
    g2["adv_accuracy"][...] = vals
    np.testing.assert_array_equal(store.read_array("adv_accuracy"), vals)
    np.testing.assert_array_equal(store.read_cell(12, 8, "adv_accuracy"), vals[2, 1])


def test_commit_killed_mid_block_leaves_nothing_marked_done_then_completes(store, monkeypatch) -> None:
    """A crash between two shard writes of one commit: values already replaced are never read as done, and the
    journal (still there) completes the commit the next time."""
    import robustbench_nas.storage.commit as commit_mod

    real = commit_mod.write_shard

    def dies(root, layout, b, block, **kw):
        if layout.name == "adv_confusion":
            raise OSError("killed while writing adv_confusion")
        return real(root, layout, b, block, **kw)

    monkeypatch.setattr(commit_mod, "write_shard", dies)
    with pytest.raises(OSError, match="killed"):
        store.write_cell(6, 7, {"adv_accuracy": np.full((2, 3), 0.5), "adv_confusion": np.ones((2, 3, 3, 3))},
                         stage="adversarial")
    monkeypatch.undo()
    ds = open_dataset(store.path)
    assert float(ds.adv_accuracy.sel(arch=6, seed=7)[0, 0]) == 0.5  # half-committed...
    assert int(ds.status.sel(arch=6, seed=7, stage="adversarial")) == PENDING  # ...status untouched
    assert np.isnan(open_dataset(store.path, done_only=True).adv_accuracy.sel(arch=6, seed=7).values).all()
    assert to_dataframe(store.path).query("group == 'adversarial'").empty  # ...and never read as a result
    assert store.pending_blocks() == [0]
    assert store.commit() == 1  # the journal record finishes what the killed commit began
    ds = open_dataset(store.path, done_only=True)
    assert (ds.adv_confusion.sel(arch=6, seed=7).values == 1).all()
    assert store.pending_blocks() == [] and not list(store.path.rglob("*.partial"))


def test_torn_journal_record_is_ignored(store) -> None:
    """A writer killed mid-append leaves a partial record: it is dropped (recomputed), the rest is applied."""
    b, rec = store.cell_record(6, 7, {"clean_accuracy": 0.25}, stage="clean", status=DONE, error="")
    b2, rec2 = store.cell_record(12, 7, {"clean_accuracy": 0.75}, stage="clean", status=DONE, error="")
    raw = rec.encode() + rec2.encode()[:-5]
    store.journal.dir.mkdir(exist_ok=True)
    (store.journal.dir / f"dead-1-abc.b{b}.log").write_bytes(raw)
    assert store.is_done(6, 7, "clean") and not store.is_done(12, 7, "clean")
    assert store.commit() == 1
    np.testing.assert_array_equal(store.read_array("clean_accuracy")[:3, 0], [np.nan, 0.25, np.nan])
    assert not store.is_done(12, 7, "clean")


def _v1_store(path: Path, spec_kw: dict) -> dict[str, np.ndarray]:
    """A schema-1 store as the previous code wrote it: one chunk per (cell, seed), nb201_index coordinate."""
    import zarr

    spec = small_spec(**spec_kw)
    d = spec.to_dict()
    d.pop("arch_coords"), d.pop("shard_cells"), d.pop("compress")
    d.update(nb201_index=[100 + a for a in spec.archs], arch_chunk=1)
    g = zarr.open_group(str(path), mode="w", zarr_format=3,
                        attributes={"rbnas_schema": 1, "spec": d, "protocol": {"name": "x"},
                                    "protocol_fingerprint": "f00"})
    from robustbench_nas.storage import array_specs

    sizes = spec.dim_sizes()
    rng = np.random.default_rng(3)
    vals = {}
    for name, a in array_specs(spec).items():
        shape = tuple(sizes[x] for x in a.dims)
        arr = g.create_array(name, shape=shape, dtype=str if a.dtype == "str" else a.dtype,
                             chunks=tuple(1 if x in ("arch", "seed", "stage") else max(1, sizes[x]) for x in a.dims),
                             fill_value=a.fill, dimension_names=list(a.dims))
        if a.dtype == "str":
            v = np.asarray([f"{name}{k}" for k in range(int(np.prod(shape)))]).reshape(shape)
        elif a.dtype.startswith("int"):
            v = rng.integers(0, 3, shape).astype(a.dtype)
        else:
            v = rng.random(shape)
        arr[...] = v
        vals[name] = v
    for name, v in (("arch", spec.archs), ("nb201_index", d["nb201_index"]), ("seed", spec.seeds)):
        g.create_array(name, shape=(len(v),), dtype="int64", dimension_names=["arch" if name != "seed" else "seed"])[...] = v
    zarr.consolidate_metadata(str(path))
    return vals


def _tree_hash(path: Path) -> dict[str, bytes]:
    import hashlib

    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).digest() for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_v1_store_gives_one_line_error_and_migrates_exactly(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    old = tmp_path / "old.zarr"
    vals = _v1_store(old, {})
    before = _tree_hash(old)
    with pytest.raises(StoreError, match=r"schema 1 .*rbnas migrate"):
        open_store(old)
    res = CliRunner().invoke(cli, ["status", str(old)])
    assert res.exit_code == 2 and "rbnas migrate" in res.output and "Traceback" not in res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln.startswith("Error")]) == 1
    res = CliRunner().invoke(cli, ["migrate", str(old), str(tmp_path / "sub" / "new.zarr")])
    assert res.exit_code == 0, res.output
    assert _tree_hash(old) == before  # the old store is only read
    new = open_store(tmp_path / "sub" / "new.zarr")
    assert new.spec.arch_coords == {"nb201_index": [100 + a for a in ARCHS]}
    assert new.attrs["protocol_fingerprint"] == "f00"
    for name, v in vals.items():
        got = new.read_array(name)
        if name == "checkpoint":  # relative to the new store's folder
            assert [str(x) for x in got.ravel()] == [str(Path("..") / s) for s in v.ravel()]
        elif got.dtype == object:
            assert [str(x) for x in got.ravel()] == [str(x) for x in v.ravel()], name
        else:
            np.testing.assert_array_equal(got, v, err_msg=name)
    assert open_dataset(new.path)["nb201_index"].values.tolist() == [100 + a for a in ARCHS]
    res = CliRunner().invoke(cli, ["migrate", str(old), str(tmp_path / "sub" / "new.zarr")])
    assert res.exit_code == 2 and "already exists" in res.output


@pytest.mark.parametrize("bad", [None, "garbage", 2.5, True, [1], 99])
def test_unknown_schema_attribute_is_a_clean_error_and_untouched(tmp_path: Path, bad) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    st = create_store(tmp_path / "s.zarr", small_spec())
    st.write_cell(6, 7, {"clean_accuracy": 0.5}, stage="clean")
    meta = json.loads((st.path / "zarr.json").read_text())
    meta["attributes"]["rbnas_schema"] = bad
    (st.path / "zarr.json").write_text(json.dumps(meta))
    before = _tree_hash(st.path)
    with pytest.raises(StoreError, match="schema"):
        open_store(st.path, mode="r+")
    for args in (["status", str(st.path)], ["export", str(st.path), "--out", str(tmp_path / "t.csv")],
                 ["run", "--store", str(st.path), "--no-progress"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        assert "schema" in res.output and "Traceback" not in res.output, res.output
    assert _tree_hash(st.path) == before


def test_export_refuses_to_replace_a_file_without_force(store, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    out = tmp_path / "results.csv"
    out.write_text("my own table\n")
    res = CliRunner().invoke(cli, ["export", str(store.path), "--format", "csv", "--out", str(out)])
    assert res.exit_code == 2 and "--force" in res.output
    assert out.read_text() == "my own table\n"
    res = CliRunner().invoke(cli, ["export", str(store.path), "--format", "csv", "--out", str(out), "--force"])
    assert res.exit_code == 0 and out.read_text().startswith("arch,")


ARCHS7 = [0, 6, 12, 40, 41, 50, 77]


@pytest.mark.parametrize("shard_cells,chunk_cells,compress,expect", [
    (4, 1, False, 1),       # one cell (both seeds) per inner chunk
    (4, 3, False, 2),       # rounded down to a divisor of the shard
    (4, None, False, 4),    # automatic: the whole shard here; the last shard (3 cells) pads its one chunk
    (3, 3, True, 3),        # compressed (confusion matrices), last shard of one cell
    (7, 2, True, 1),        # 7 cells in one shard: 2 does not divide 7
])
def test_inner_chunks_of_several_cells_equal_zarr_python(tmp_path: Path, shard_cells, chunk_cells, compress,
                                                         expect) -> None:
    """Every reader and writer of ours against zarr-python for inner chunks of several cells, partial last shards
    and partial last chunks (zarr pads them with the fill value), raw and compressed."""
    import zarr

    spec = small_spec(archs=ARCHS7, arch_str=[f"c{a}" for a in ARCHS7], shard_cells=shard_cells,
                      chunk_cells=chunk_cells, compress=compress, num_classes=20)
    st = create_store(tmp_path / "s.zarr", spec)
    meta = json.loads((st.path / "adv_confusion" / "zarr.json").read_text())
    assert meta["codecs"][0]["configuration"]["chunk_shape"][:2] == [expect, 2]
    assert [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]] == (
        ["bytes", "zstd"] if compress else ["bytes"])
    rng = np.random.default_rng(3)
    full = {}
    for name, a in st.arrays.items():
        if a.stage is None:
            continue
        shape = tuple(st.sizes[d] for d in a.dims)
        if a.dtype == "str":
            full[name] = np.asarray([f"s{k}" for k in range(int(np.prod(shape)))], dtype=object).reshape(shape)
        elif a.dtype.startswith("int"):
            full[name] = rng.integers(0, 1000, shape).astype(a.dtype)
        else:
            full[name] = rng.random(shape)
        st.write_array(name, full[name][:5], archs=ARCHS7[:5])  # two shard-partial bulk writes
        st.write_array(name, full[name][5:], archs=ARCHS7[5:])
    st.write_cell(41, 8, {"clean_accuracy": 0.125}, stage="clean", seconds=2.0)  # journal + commit of one cell
    full["clean_accuracy"][4, 1] = 0.125
    g = zarr.open_group(str(st.path), mode="r")
    ds = xr.open_zarr(st.path).load()
    fresh = open_store(st.path)
    for name in st.arrays:
        ours = fresh.read_array(name)
        theirs = np.asarray(g[name][...])
        same = (lambda x, y: [str(v) for v in x.ravel()] == [str(v) for v in y.ravel()]) if ours.dtype == object \
            else (lambda x, y: np.array_equal(x, y, equal_nan=True))
        assert same(ours, theirs), name
        assert same(ours, np.asarray(ds[name].values)), name
        if name in full:
            assert same(ours, full[name]), name
        for i, arch in enumerate(ARCHS7):
            assert same(fresh.read_record(arch)[name], theirs[i]), (name, arch)
    assert int((fresh.status() == DONE).sum()) == 1
    np.testing.assert_array_equal(open_dataset(st.path)["clean_confusion"].values, full["clean_confusion"])
    # zarr-python writing a region of shards (its own encoding) is read back by ours
    g2 = zarr.open_group(str(st.path), mode="r+")
    vals = rng.integers(0, 9, (7, 2, 2, 3, 20, 20)).astype("int32")
    g2["adv_confusion"][...] = vals
    np.testing.assert_array_equal(fresh.read_array("adv_confusion"), vals)
    np.testing.assert_array_equal(fresh.read_cell(77, 7, "adv_confusion"), vals[6, 0])


def test_store_of_one_cell_inner_chunks_without_the_field_opens_and_commits(tmp_path: Path, monkeypatch) -> None:
    """A store written before `chunk_cells` existed (inner chunks of one (cell, seed), no field in its spec
    attribute) opens, reads and takes new results in its own layout; no schema change is involved."""
    import robustbench_nas.storage.create as create_mod

    def old_chunk_shape(a, sizes, *_):  # the writer before `chunk_cells`: one cell and one seed per inner chunk
        return tuple(1 if d in ("arch", "seed") else max(1, sizes[d]) for d in a.dims)

    with monkeypatch.context() as m:
        m.setattr(create_mod, "chunk_shape", old_chunk_shape)
        st = create_store(tmp_path / "old.zarr", small_spec(shard_cells=2))
    meta = json.loads((st.path / "zarr.json").read_text())
    meta["attributes"]["spec"].pop("chunk_cells")
    (st.path / "zarr.json").write_text(json.dumps(meta))
    assert "chunk_cells" not in json.loads((st.path / "zarr.json").read_text())["attributes"]["spec"]
    old = open_store(st.path, "r+")
    cm = np.arange(9).reshape(3, 3)
    old.write_cell(12, 8, {"clean_accuracy": 0.75, "clean_confusion": cm}, stage="clean")
    lay = json.loads((st.path / "clean_confusion" / "zarr.json").read_text())
    assert lay["codecs"][0]["configuration"]["chunk_shape"] == [1, 1, 3, 3]  # still the old layout
    ds = open_dataset(st.path, done_only=True)
    assert float(ds.clean_accuracy.sel(arch=12, seed=8)) == 0.75
    np.testing.assert_array_equal(xr.open_zarr(st.path).clean_confusion.sel(arch=12, seed=8).values, cm)
    np.testing.assert_array_equal(old.read_record(12)["clean_confusion"][1], cm)

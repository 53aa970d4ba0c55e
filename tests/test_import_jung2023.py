"""The Jung 2023 importer: value-by-value round trip of the shared CIFAR-10 release, partial downloads, bad input."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from robustbench_nas.analysis.importer import import_jung2023
from robustbench_nas.analysis.jung2023 import ReleaseFormatError, read_release
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.storage import DONE, StoreError, open_dataset, open_store


@pytest.fixture(scope="module")
def imported(jung2023_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jung") / "jung2023_cifar10.zarr"
    import_jung2023(jung2023_root, out)
    return out


def test_round_trip_every_uid_key_eps(imported: Path, jung2023_root: Path):
    meta = json.loads((jung2023_root / "meta.json").read_text())
    ds = open_dataset(imported, done_only=True).load()
    uids = sorted({int(v["isomorph"]) for v in meta["ids"].values()})
    assert ds["arch"].values.tolist() == uids and len(uids) == 6466
    pos = {u: i for i, u in enumerate(uids)}
    store_eps255 = np.asarray(ds["eps"].values) * 255
    checked = 0
    for f in sorted((jung2023_root / "cifar10").glob("*_accuracy.json")):
        key = f.name[: -len("_accuracy.json")]
        vals = json.loads(f.read_text())["cifar10"][key]["accuracy"]
        assert len(vals) == 6466, f
        if key == "clean":
            got = ds["clean_accuracy"].sel(seed=0).values
            want = np.full(len(uids), np.nan)
            for u, v in vals.items():
                want[pos[int(u)]] = v
        elif key in meta["epsilons"]:
            cols = [int(np.argmin(np.abs(store_eps255 - e))) for e in meta["epsilons"][key]]
            assert np.allclose(store_eps255[cols], meta["epsilons"][key])  # eps stored as /255 -> [0, 1]
            got = ds["adv_accuracy"].sel(seed=0, attack=key).values[:, cols]
            want = np.full(got.shape, np.nan)
            for u, v in vals.items():
                want[pos[int(u)]] = v
            # off-grid eps of this attack stay NaN (nothing invented)
            off = [j for j in range(len(store_eps255)) if j not in cols]
            assert np.isnan(ds["adv_accuracy"].sel(seed=0, attack=key).values[:, off]).all()
        else:
            got = ds["corruption_accuracy"].sel(seed=0, corruption=key).values
            want = np.full(got.shape, np.nan)
            for u, v in vals.items():
                want[pos[int(u)]] = v
        np.testing.assert_array_equal(got, want, err_msg=key)
        checked += want.size
    assert checked == 6466 * (1 + 11 + 3 * 7 + 15 * 5)
    cm = json.loads((jung2023_root / "cifar10" / "clean_cm.json").read_text())["cifar10"]["clean"]["cm"]
    got_cm = ds["clean_confusion"].sel(seed=0).values
    for u in uids[:: 97]:
        np.testing.assert_array_equal(got_cm[pos[u]], np.asarray(cm[str(u)]))
    assert (ds["status"].values == DONE).all()


def test_isomorphic_cells_link_to_uid(imported: Path, jung2023_root: Path):
    meta = json.loads((jung2023_root / "meta.json").read_text())
    space = get_search_space("nb201")
    ds = open_dataset(imported)
    table = space.uid_table()
    for k, v in meta["ids"].items():
        assert table[int(k)] == int(v["isomorph"])
        assert space.arch_str(int(k)) == v["nb201-string"]
    # a non-representative index finds its published results through its uid
    idx = next(int(k) for k, v in meta["ids"].items() if int(k) != int(v["isomorph"]))
    assert space.uid(idx) in set(ds["arch"].values.tolist())
    assert ds.attrs["import_report"]["mismatches"] == []


def _partial_root(src: Path, dst: Path, keep: dict[str, int | None]) -> Path:
    """A copy of the release with only the files in ``keep`` (value: keep the first n uids, None: all)."""
    (dst / "cifar10").mkdir(parents=True)
    shutil.copy(src / "meta.json", dst / "meta.json")
    for key, n in keep.items():
        doc = json.loads((src / "cifar10" / f"{key}_accuracy.json").read_text())
        if n is not None:
            vals = doc["cifar10"][key]["accuracy"]
            doc["cifar10"][key]["accuracy"] = dict(list(vals.items())[:n])
        (dst / "cifar10" / f"{key}_accuracy.json").write_text(json.dumps(doc))
    return dst


def test_partial_download_warns_and_leaves_nan(jung2023_root: Path, tmp_path: Path, caplog):
    root = _partial_root(jung2023_root, tmp_path / "rel", {"clean": None, "pgd@Linf": 100})
    with caplog.at_level(logging.WARNING):
        rep = import_jung2023(root, tmp_path / "s.zarr", measures=("accuracy",))
    assert "cifar10/fgsm@Linf_accuracy.json" in rep.files_missing
    assert rep.missing_uids == {"cifar10/pgd@Linf_accuracy.json": 6466 - 100}
    assert any("missing" in r.message or "lacks" in r.message for r in caplog.records)
    ds = open_dataset(tmp_path / "s.zarr", done_only=True)
    pgd = ds["adv_accuracy"].sel(seed=0, attack="pgd@Linf").values
    assert np.isfinite(pgd).any(axis=1).sum() == 100
    assert np.isnan(ds["adv_accuracy"].sel(seed=0, attack="fgsm@Linf").values).all()
    assert np.isfinite(ds["clean_accuracy"].values).all()
    store = open_store(tmp_path / "s.zarr")
    assert store.progress()["adversarial"]["done"] == 100
    assert ds.attrs["import_report"]["missing_uids"] == {"cifar10/pgd@Linf_accuracy.json": 6366}


def test_bad_input_writes_nothing(jung2023_root: Path, tmp_path: Path):
    root = _partial_root(jung2023_root, tmp_path / "rel", {"clean": None})
    doc = json.loads((root / "cifar10" / "clean_accuracy.json").read_text())
    doc["cifar10"]["clean"]["accuracy"]["0"] = [0.1, 0.2]  # two values for a scalar
    (root / "cifar10" / "clean_accuracy.json").write_text(json.dumps(doc))
    with pytest.raises(ReleaseFormatError, match="uid 0 has 2 values"):
        import_jung2023(root, tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()
    assert not list(tmp_path.glob(".bad.zarr.partial*"))
    with pytest.raises(FileNotFoundError, match="meta.json"):
        read_release(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown release dataset"):
        read_release(root, "mnist")


def test_existing_store_is_never_overwritten(imported: Path, jung2023_root: Path):
    before = sorted(p.relative_to(imported).as_posix() for p in imported.rglob("*"))
    with pytest.raises(StoreError, match="already exists"):
        import_jung2023(jung2023_root, imported)
    assert sorted(p.relative_to(imported).as_posix() for p in imported.rglob("*")) == before


def test_meta_mismatch_is_refused(jung2023_root: Path, tmp_path: Path):
    root = _partial_root(jung2023_root, tmp_path / "rel", {"clean": None})
    meta = json.loads((root / "meta.json").read_text())
    meta["ids"]["5"]["isomorph"] = "0"  # link a cell to the wrong class
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="disagrees with the NB201 search space"):
        import_jung2023(root, tmp_path / "m.zarr")
    assert not (tmp_path / "m.zarr").exists()


def _write_key(root: Path, dataset: str, key: str, measure: str, values: dict) -> None:
    (root / dataset).mkdir(parents=True, exist_ok=True)
    (root / dataset / f"{key}_{measure}.json").write_text(json.dumps({dataset: {key: {measure: values}}}))


def test_confidence_and_cm_files(jung2023_root: Path, tmp_path: Path):
    """The release's *_confidence.json and *_cm.json land in the store (absent matrices stay -1, not 0)."""
    root = tmp_path / "rel"
    root.mkdir()
    shutil.copy(jung2023_root / "meta.json", root / "meta.json")
    rng = np.random.default_rng(0)
    uids = ["0", "1", "6"]
    acc = {u: rng.uniform(size=7).round(3).tolist() for u in uids}
    conf = {u: rng.uniform(size=7).round(4).tolist() for u in uids}
    cm = {u: rng.integers(0, 50, (7, 10, 10)).tolist() for u in uids[:2]}
    _write_key(root, "cifar10", "pgd@Linf", "accuracy", acc)
    _write_key(root, "cifar10", "pgd@Linf", "confidence", conf)
    _write_key(root, "cifar10", "pgd@Linf", "cm", cm)
    rep = import_jung2023(root, tmp_path / "c.zarr")
    assert rep.missing_uids["cifar10/pgd@Linf_cm.json"] == 6466 - 2
    ds = open_dataset(tmp_path / "c.zarr")
    eps255 = np.round(ds["eps"].values * 255, 6)
    cols = [int(np.flatnonzero(eps255 == e)[0]) for e in (0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 8.0)]
    for u in uids:
        sel = ds.sel(arch=int(u), seed=0, attack="pgd@Linf")
        np.testing.assert_array_equal(sel["adv_accuracy"].values[cols], acc[u])
        np.testing.assert_array_equal(sel["adv_confidence"].values[cols], conf[u])
        if u in cm:
            np.testing.assert_array_equal(sel["adv_confusion"].values[cols], cm[u])
        else:
            assert (sel["adv_confusion"].values == -1).all()
    assert "clean_accuracy" not in ds  # no clean file: no clean stage in the store, nothing invented


def test_other_dataset_and_cm_memory_guard(jung2023_root: Path, tmp_path: Path):
    root = tmp_path / "rel"
    root.mkdir()
    shutil.copy(jung2023_root / "meta.json", root / "meta.json")
    _write_key(root, "cifar100", "clean", "accuracy", {"0": 0.61, "1": 0.7})
    _write_key(root, "cifar100", "pgd@Linf", "cm", {"0": np.zeros((7, 100, 100), int).tolist()})
    # 6466 cells x 4 attacks x 11 eps x 100 x 100 int32 = 11 GB: refused up front, clearly, nothing written
    with pytest.raises(MemoryError, match="without them"):
        import_jung2023(root, tmp_path / "c100.zarr", dataset="cifar100")
    assert not (tmp_path / "c100.zarr").exists()
    import_jung2023(root, tmp_path / "c100.zarr", dataset="cifar100", measures=("accuracy", "confidence"))
    ds = open_dataset(tmp_path / "c100.zarr")
    assert ds.attrs["dataset"] == "cifar100"
    assert float(ds["clean_accuracy"].sel(arch=1, seed=0)) == 0.7 and np.isnan(ds["clean_accuracy"].sel(arch=2, seed=0))


def test_store_holds_only_what_the_release_has(imported: Path):
    """No array the release lacks: plain xarray loads ~10 MB, not the 330 MB of -1 / NaN confusion and confidence
    arrays of a full schema; what was left out is named in the store's attributes."""
    import xarray as xr

    ds = xr.open_zarr(str(imported)).load()
    results = {n for n in ds.data_vars if n.split("_", 1)[0] in ("clean", "adv", "corruption")}
    assert results == {"clean_accuracy", "clean_confusion", "adv_accuracy", "corruption_accuracy"}
    assert ds.nbytes < 20e6, ds.nbytes
    absent = set(ds.attrs["absent_arrays"])
    assert {"adv_confusion", "corruption_confusion", "clean_confidence", "adv_confidence"} <= absent
    assert not absent & set(ds.data_vars)
    s = open_store(imported)  # the store still opens for our own readers
    assert s.spec.num_classes == 10

"""Images by content: one rule chooses every evaluation subset (pipeline and CLI), explicit indices, the shipped
proxy table's pinned images, and stores that record their images and refuse to mix them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_nas.data import DataError, get_dataset
from robustbench_nas.data.subsets import (check_indices, choose_images, images_sha256, read_indices, subset_indices,
                                          take)
from robustbench_nas.pipelines.protocol import ProtocolConfig, get_protocol, shipped_proxy_images
from robustbench_nas.pipelines.stages import protocol_images

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "cifar10_test.npz"
IMAGES_FILE = REPO / "robustbench_nas" / "analysis" / "data" / "nb201_cifar10_proxy_images.txt"


# ---- the rule --------------------------------------------------------------------------------------------------
def test_default_rule_is_class_balanced_sorted_and_seeded() -> None:
    y = get_dataset("digits").split("test").y.numpy()
    idx = subset_indices(y, "test", 50, subset_seed=0)
    assert idx.dtype == np.int64 and len(idx) == 50 and len(set(idx.tolist())) == 50
    assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < len(y)
    counts = np.bincount(y[idx], minlength=10)
    assert counts.max() - counts.min() <= 1  # 10 classes, 50 images: 5 each
    assert np.array_equal(idx, subset_indices(y, "test", 50, subset_seed=0))  # same settings, same images
    assert not np.array_equal(idx, subset_indices(y, "test", 50, subset_seed=1))  # the seed chooses
    assert not np.array_equal(idx, subset_indices(y, "val", 50, subset_seed=0))  # so does the split name
    assert np.array_equal(subset_indices(y, "test", None), np.arange(len(y)))  # None: the whole split, in order
    assert np.array_equal(subset_indices(y, "test", len(y) + 5), np.arange(len(y)))


def test_explicit_indices_keep_their_order_and_bad_ones_are_named() -> None:
    y = np.arange(20) % 4
    assert subset_indices(y, "test", None, indices=[7, 3, 11]).tolist() == [7, 3, 11]
    assert subset_indices(y, "test", 3, indices=[7, 3, 11]).tolist() == [7, 3, 11]
    with pytest.raises(DataError, match=r"outside 0\.\.19"):
        subset_indices(y, "test", None, indices=[3, 20])
    with pytest.raises(DataError, match="repeated: \\[3\\]"):
        check_indices([3, 5, 3], 20, "here")
    with pytest.raises(DataError, match="3 explicit image indices but 4 images"):
        subset_indices(y, "test", 4, indices=[1, 2, 3])
    with pytest.raises(DataError, match="cannot take 0 images"):
        subset_indices(y, "test", 0)


def test_read_indices_comma_list_and_file(tmp_path) -> None:
    assert read_indices("5, 2,9") == [5, 2, 9]
    f = tmp_path / "idx.txt"
    f.write_text("# header\n4\n1  # a comment\n\n8\n")
    assert read_indices(f"@{f}") == [4, 1, 8]
    with pytest.raises(DataError, match="'x' is not an integer"):
        read_indices("1,x")
    with pytest.raises(DataError, match="not found"):
        read_indices(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(DataError, match="no indices"):
        read_indices(" , ")


def test_choose_images_hash_is_the_content() -> None:
    test = get_dataset("digits").split("test")
    a = choose_images(test, 30, subset_seed=2)
    again = choose_images(test, None, indices=a.indices)
    assert again.sha256 == a.sha256 and again.subset_seed is None and a.subset_seed == 2
    assert choose_images(test, None, indices=a.indices[::-1].copy()).sha256 != a.sha256  # order is part of it
    sub = take(test, a.indices)
    assert torch.equal(sub.x, test.x[torch.from_numpy(a.indices)])
    assert a.record()["indices"] == a.indices.tolist() and choose_images(test, None).record()["indices"] == "all"
    assert images_sha256(test, a.indices) == a.sha256


# ---- protocols: images by content, not by name ------------------------------------------------------------------
def test_two_protocols_with_the_same_settings_use_the_same_images() -> None:
    a = get_protocol("tiny")
    b = a.replace(name="tiny-renamed", description="other name")
    for purpose in a.image_purposes():
        assert np.array_equal(protocol_images(a, purpose).indices, protocol_images(b, purpose).indices), purpose
    c = a.replace(subset_seed=1)
    assert not np.array_equal(protocol_images(a, "attacks").indices, protocol_images(c, "attacks").indices)
    assert a.fingerprint() != c.fingerprint()  # the subset seed defines results


def test_protocol_image_fields_are_validated() -> None:
    p = get_protocol("tiny")
    with pytest.raises(ValueError, match="unknown purpose 'adversarial'"):
        p.replace(image_indices={"adversarial": (1, 2)})
    with pytest.raises(ValueError, match=r"image_indices\['attacks'\] has 2 images but attack_images is 64"):
        p.replace(image_indices={"attacks": (1, 2)})
    with pytest.raises(ValueError, match="distinct non-negative"):
        p.replace(attack_images=2, image_indices={"attacks": (1, 1)})
    with pytest.raises(ValueError, match="subset_seed must be an int"):
        p.replace(subset_seed="0")
    q = p.replace(attack_images=None, image_indices={"attacks": (5, 1, 9)})
    assert ProtocolConfig.from_dict(q.to_dict()) == q
    assert protocol_images(q, "attacks").indices.tolist() == [5, 1, 9]


@pytest.mark.skipif(not NPZ.is_file(), reason="../shared/data/cifar10_test.npz not present")
def test_shipped_proxy_images_are_the_old_draw_of_nb201_proxies() -> None:
    """The pinned file equals what the rule before subset seeds drew for nb201-proxies (seeded by the protocol's
    name, class-balanced, sorted); both proxy protocols now evaluate exactly these images."""
    from robustbench_nas.utils.seeding import derive_seed

    train = get_dataset("npz", str(NPZ)).split("train")
    old = train.subset(64, seed=derive_seed("nb201-proxies", "train", 64))
    pinned = np.array(shipped_proxy_images())
    assert pinned.tolist() == read_indices(f"@{IMAGES_FILE}")
    t = torch.from_numpy(pinned)
    assert torch.equal(train.x[t], old.x) and torch.equal(train.y[t], old.y)
    for name in ("nb201-proxies", "nb201-proxies-seeds"):
        p = get_protocol(name, data_root=str(NPZ))
        assert p.image_indices == {"proxies": tuple(pinned.tolist())}
        assert protocol_images(p, "proxies").indices.tolist() == pinned.tolist()


# ---- stores record their images and refuse to mix them -----------------------------------------------------------
def _npz(path: Path, invert: bool = False) -> Path:
    """A small npz dataset (the digits as 16x16 RGB); ``invert``: same labels, other pixels."""
    from robustbench_nas.data.sources import _digits_arrays

    x, y = _digits_arrays()
    x = x.transpose(0, 2, 3, 1)
    np.savez(path, x=255 - x if invert else x, y=y)
    return path


@pytest.fixture()
def two_files(tmp_path):
    return _npz(tmp_path / "a.npz"), _npz(tmp_path / "b.npz", invert=True)


def _proto(root: Path, **kw) -> ProtocolConfig:
    return get_protocol("tiny").replace(name="img", dataset="npz", data_root=str(root), archs=1,
                                        stages=("info", "proxies"), proxies=("params", "nwot"), proxy_images=16, **kw)


def test_store_records_its_images_and_resume_on_other_images_is_refused(tmp_path, two_files) -> None:
    from robustbench_nas.data.subsets import file_sha256
    from robustbench_nas.pipelines.runner import prepare_store
    from robustbench_nas.storage import RobustnessStore, StoreError

    a, b = two_files
    path = tmp_path / "s.zarr"
    prepare_store(path, _proto(a))
    rec = RobustnessStore.open(path).attrs["images"]
    assert set(rec["subsets"]) == {"proxies"} and rec["data_sha256"] == file_sha256(a)
    assert rec["subsets"]["proxies"]["indices"] == protocol_images(_proto(a), "proxies").indices.tolist()
    assert rec["subsets"]["proxies"]["split"] == "train" and rec["subsets"]["proxies"]["n"] == 16
    prepare_store(path, _proto(a))  # same images: resumes
    with pytest.raises(StoreError, match=r"^proxies images differ: store .*s\.zarr used 16 images "
                                         r"\(sha [0-9a-f]{12}\), "
                                         r"this run 16 images \(sha [0-9a-f]{12}\) \(data sha [0-9a-f]{12} vs "
                                         r"[0-9a-f]{12}: another data file\); refusing to mix"):
        prepare_store(path, _proto(b))
    assert "\n" not in str(pytest.raises(StoreError, prepare_store, path, _proto(b)).value)


def _with_proxies_done(path: Path, proto: ProtocolConfig) -> None:
    from robustbench_nas.pipelines.runner import prepare_store

    store, _ = prepare_store(path, proto)
    uid, seed = store.spec.archs[0], store.spec.seeds[0]
    store.write_cell(uid, seed, {"params": 100, "flops": 1.0, "flops_plain": 1.0}, stage="info", seconds=1.0)
    # recorded as run on another CPU class than this one (the export must carry what the unit recorded)
    store.write_cell(uid, seed, {"proxy_value": np.array([1.5, 2.5])}, stage="proxies", seconds=1.0, threads=1,
                     device="cpu AVX512_BF16_TEST")


def test_reuse_copies_only_results_of_the_same_images(tmp_path, two_files) -> None:
    from robustbench_nas.pipelines.runner import prepare_store, reuse_results
    from robustbench_nas.storage import RobustnessStore, StoreError

    a, b = two_files
    src = tmp_path / "src.zarr"
    _with_proxies_done(src, _proto(a))
    same, _ = prepare_store(tmp_path / "same.zarr", _proto(a))
    assert reuse_results(same, _proto(a), src) == {"info": 1, "proxies": 1}
    other, _ = prepare_store(tmp_path / "other.zarr", _proto(b))
    with pytest.raises(StoreError, match=r"^--reuse .*src\.zarr: proxies images differ: store .*src\.zarr used 16 "
                                         r"images \(sha [0-9a-f]{12}\), this run 16 images .*another data file"):
        reuse_results(other, _proto(b), src)
    assert RobustnessStore.open(tmp_path / "other.zarr").status().max() == 0  # refused before copying anything
    asked, _ = prepare_store(tmp_path / "seed5.zarr", _proto(a, subset_seed=5))
    # other images on purpose: the proxies are computed afresh
    assert reuse_results(asked, _proto(a, subset_seed=5), src) == {"info": 1}
    assert RobustnessStore.open(tmp_path / "seed5.zarr").status()[:, :, 1].max() == 0


def test_store_from_before_image_records_is_compared_by_its_old_rule(tmp_path, two_files) -> None:
    """A store written before subset seeds has no record: its images are those the old rule (seeded by the
    protocol's name) drew, so resuming with a new protocol is refused, and reusing it on the new rule's images too."""
    import json

    from robustbench_nas.pipelines.runner import prepare_store, reuse_results
    from robustbench_nas.storage import StoreError

    a, _ = two_files
    old = tmp_path / "old.zarr"
    _with_proxies_done(old, _proto(a))
    meta = json.loads((old / "zarr.json").read_text())
    attrs = meta["attributes"]
    del attrs["images"], attrs["protocol"]["subset_seed"], attrs["protocol"]["image_indices"]
    import hashlib

    from robustbench_nas.pipelines.protocol import RUNTIME_FIELDS

    kept = {k: v for k, v in attrs["protocol"].items() if k not in RUNTIME_FIELDS}  # the fingerprint it had then
    attrs["protocol_fingerprint"] = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]
    (old / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="made before evaluation images were recorded"):
        prepare_store(old, _proto(a))
    with pytest.raises(StoreError, match=r"proxies images differ: .*predates image records"):
        prepare_store(old, None)
    new, _ = prepare_store(tmp_path / "new.zarr", _proto(a))
    with pytest.raises(StoreError, match=r"^--reuse .*proxies images differ: .*predates image records"):
        reuse_results(new, _proto(a), old)
    # the old rule's own images, pinned explicitly: the same content, so the old results are reused
    from robustbench_nas.utils.seeding import derive_seed
    from robustbench_nas.data import sample_indices

    y = get_dataset("npz", str(a)).split("train").y.numpy()
    pinned = tuple(int(i) for i in sample_indices(y, 16, derive_seed("img", "train", 16)))
    keep, _ = prepare_store(tmp_path / "keep.zarr", _proto(a, image_indices={"proxies": pinned}))
    assert reuse_results(keep, _proto(a, image_indices={"proxies": pinned}), old) == {"info": 1, "proxies": 1}


# ---- the CLI chooses the pipeline's images ----------------------------------------------------------------------
ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory) -> Path:
    from robustbench_nas.proxies import init_model
    from robustbench_nas.training.checkpoint import save_checkpoint

    info = get_dataset("digits").info
    net = init_model(ARCH, 0, C=4, N=1, mean=info.mean, std=info.std)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "m", net, {"dataset": "digits"})


def _cli_indices(args: list[str]) -> list[int]:
    import json

    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    r = CliRunner().invoke(cli, [*args, "--show-images"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["indices"]


@pytest.mark.parametrize("subset_seed", [0, 3])
def test_each_command_chooses_the_pipelines_images(digits_ckpt, subset_seed) -> None:
    """For the tiny protocol's settings (digits; proxies 32 and measures 32 training images, attacks 64 and
    corruptions 100 test images), each command with the same size and subset seed and its default --split picks
    exactly the images the pipeline's stage evaluates."""
    p = get_protocol("tiny", subset_seed=subset_seed)
    seed = ["--subset-seed", str(subset_seed)]
    ck = str(digits_ckpt)
    commands = {
        "proxies": ["proxies", "--dataset", "digits", "--batch-size", str(p.proxy_images), *seed],
        "attacks": ["attack", ck, "--eps", "1/255", "--n", str(p.attack_images), *seed],
        "corruptions": ["corrupt", "eval", ck, "--n", str(p.corruption_images), *seed],
        "measures": ["measures", ck, "--dataset", "digits", "--n", str(p.measure_images), *seed],
    }
    for purpose, args in commands.items():
        want = protocol_images(p, purpose).indices.tolist()
        assert _cli_indices(args) == want, purpose
        assert len(want) == getattr(p, {"proxies": "proxy_images", "attacks": "attack_images",
                                        "corruptions": "corruption_images", "measures": "measure_images"}[purpose])
    # the whole split (pipeline: None; CLI: --n 0) is the split in its order
    whole = protocol_images(p, "clean").indices.tolist()
    assert _cli_indices(["attack", ck, "--eps", "1/255", "--n", "0"]) == whole == list(range(300))


def test_commands_take_explicit_indices(digits_ckpt, tmp_path) -> None:
    f = tmp_path / "idx.txt"
    f.write_text("# three images\n17\n4\n250\n")
    ck = str(digits_ckpt)
    for args in (["proxies", "--dataset", "digits"], ["attack", ck, "--eps", "1/255"], ["corrupt", "eval", ck],
                 ["measures", ck, "--dataset", "digits"]):
        assert _cli_indices([*args, "--indices", f"@{f}"]) == [17, 4, 250], args
        assert _cli_indices([*args, "--indices", "9,3"]) == [9, 3], args
    p = get_protocol("tiny", attack_images=None, image_indices={"attacks": (17, 4, 250)})
    assert protocol_images(p, "attacks").indices.tolist() == [17, 4, 250]


def test_command_image_errors_are_one_line(digits_ckpt) -> None:
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    ck = str(digits_ckpt)
    cases = [
        (["attack", ck, "--eps", "1/255", "--indices", "1,2", "--n", "3"], "--n 3 but --indices gives 2 images"),
        (["attack", ck, "--eps", "1/255", "--indices", "1,300"], "outside 0..299"),
        (["measures", ck, "--dataset", "digits", "--indices", "1,x"], "'x' is not an integer"),
        (["corrupt", "eval", ck, "--indices", "1,2", "--subset-seed", "2"], "with --indices the images are given"),
        (["proxies", "6", "--dataset", "digits", "--indices", "5"], "at least 2 images"),
    ]
    for args, msg in cases:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)


@pytest.mark.skipif(not NPZ.is_file(), reason="../shared/data/cifar10_test.npz not present")
def test_reproduce_command_gives_the_tables_first_row() -> None:
    """The table JSON's reproduce_cell command on the first row (full-size NB201) gives its values: 1e-3 relative
    (float32 sums of gradients and activations; the table was made on another CPU), bit for bit on the same one."""
    import csv
    import io

    import pandas as pd
    from click.testing import CliRunner

    from robustbench_nas.analysis.proxy_table import table_meta
    from robustbench_nas.cli.main import cli

    row = pd.read_csv(REPO / "robustbench_nas" / "analysis" / "data" / "nb201_cifar10_proxies.csv").iloc[0]
    template = table_meta()["reproduce_cell"]
    cmd = template.format(arch=row["arch_str"])
    assert cmd.startswith("rbnas proxies ") and "--threads 1" in cmd and "--indices @" in cmd
    import shlex

    args = shlex.split(cmd)[1:] + ["--proxies", "nwot,snip,jacob_cov"]
    args = [a.replace("../shared/data/cifar10_test.npz", str(NPZ)) for a in args]
    args = [a.replace("@robustbench_nas/", f"@{REPO}/robustbench_nas/") for a in args]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    got = next(csv.DictReader(io.StringIO(r.stdout)))
    assert got["arch_str"] == row["arch_str"]
    for name in ("nwot", "snip", "jacob_cov"):
        assert float(got[name]) == pytest.approx(row[name], rel=1e-3), name


# ---- the exported proxy table carries its images ----------------------------------------------------------------
def test_exported_table_carries_images_threads_and_a_reproduce_command(tmp_path, two_files) -> None:
    import json

    from robustbench_nas.analysis.proxy_table import export_table
    from robustbench_nas.data.subsets import file_sha256

    a, _ = two_files
    _with_proxies_done(tmp_path / "main.zarr", _proto(a))
    meta = export_table(tmp_path / "main.zarr", tmp_path / "t.csv")
    want = protocol_images(_proto(a), "proxies")
    assert meta["images"]["indices"] == want.indices.tolist() and meta["images"]["sha256"] == want.sha256
    assert meta["data_sha256"] == file_sha256(a) and meta["torch_threads"] == 1
    import pandas as pd

    assert meta["devices"] == {"cpu AVX512_BF16_TEST": 1}  # what the unit recorded, not the exporting machine
    assert pd.read_csv(tmp_path / "t.csv")["device"].tolist() == ["cpu AVX512_BF16_TEST"]
    cmd = meta["reproduce_cell"]
    assert cmd.startswith("rbnas proxies '{arch}' --dataset npz") and f"--data-root {a} " in cmd
    assert f"--indices {','.join(map(str, want.indices.tolist()))} --batch-size 16 --seed 0 --threads 1" in cmd
    assert json.loads((tmp_path / "t.json").read_text())["reproduce_cell"] == cmd
    # seed noise only from a store that evaluated the same images
    _with_proxies_done(tmp_path / "seeds.zarr", _proto(a, subset_seed=4, seeds=(1,)))
    with pytest.raises(ValueError, match="evaluated other proxy images .* same batch"):
        export_table(tmp_path / "main.zarr", tmp_path / "t2.csv", seeds_store=tmp_path / "seeds.zarr")


@pytest.mark.skipif(not NPZ.is_file(), reason="../shared/data/cifar10_test.npz not present")
def test_shipped_table_json_names_its_images_and_data() -> None:
    from robustbench_nas.analysis.proxy_table import table_meta
    from robustbench_nas.data.subsets import file_sha256

    meta = table_meta()
    assert meta["images"]["indices"] == list(shipped_proxy_images()) and meta["images"]["n"] == meta["batch_size"]
    assert meta["data_sha256"] == file_sha256(NPZ) and meta["torch_threads"] == 1
    train = get_dataset("npz", str(NPZ)).split("train")
    assert meta["images"]["sha256"] == images_sha256(train, np.array(shipped_proxy_images()))
    assert "{arch}" in meta["reproduce_cell"]
    assert "--indices @" + str(IMAGES_FILE.relative_to(REPO)) in meta["reproduce_cell"]

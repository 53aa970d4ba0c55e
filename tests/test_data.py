"""Datasets: embedded digits, npz files, clear errors on missing/corrupt roots, on-device augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_nas.data import DataError, DeviceLoader, get_dataset, list_datasets, random_crop_flip


def test_registry():
    assert {"digits", "cifar10", "cifar100", "imagenet16-120", "npz"} <= set(list_datasets())
    with pytest.raises(KeyError, match="unknown dataset"):
        get_dataset("mnist-xyz")


def test_digits_embedded_splits():
    ds = get_dataset("digits")
    sizes = {n: len(ds.split(n)) for n in ("train", "val", "test")}
    assert sizes == {"train": 1197, "val": 300, "test": 300}
    tr, te = ds.split("train"), ds.split("test")
    assert tr.x.dtype == torch.uint8 and tr.x.shape[1:] == (3, 16, 16)
    # disjoint splits: no identical image+label pair shared between train and test beyond chance duplicates
    assert set(map(bytes, te.x.numpy().reshape(300, -1))) - set(map(bytes, tr.x.numpy().reshape(1197, -1)))
    # the normalisation constants are the train split's statistics
    xf = tr.x.double() / 255
    assert ds.info.mean[0] == pytest.approx(float(xf.mean()), abs=1e-9)
    assert ds.info.std[0] == pytest.approx(float(xf.std(unbiased=False)), abs=1e-9)
    assert ds.info.flip is False


def test_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    y = np.repeat(np.arange(5), 10)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y)
    ds = get_dataset("npz", str(p))
    allsplit = ds.split("all")
    assert torch.equal(allsplit.x, torch.from_numpy(x.transpose(0, 3, 1, 2)))
    tr, te = ds.split("train"), ds.split("test")
    assert len(tr) + len(te) == 50 and len(te) == 10
    assert sorted(torch.bincount(te.y).tolist()) == [2] * 5  # class-balanced


def test_npz_shared_cifar(cifar10_npz):
    ds = get_dataset("npz", str(cifar10_npz))
    assert ds.info.num_classes == 10 and ds.info.image_size == 32 and ds.info.class_names[0] == "airplane"
    assert len(ds.split("all")) == 10000


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet16-120"])
def test_missing_roots_name_what_is_expected(name, tmp_path):
    with pytest.raises(DataError, match="data-root"):
        get_dataset(name, None)
    with pytest.raises(DataError, match=str(tmp_path)):
        get_dataset(name, str(tmp_path))


def test_corrupt_npz(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="cannot read"):
        get_dataset("npz", str(p))
    q = tmp_path / "wrong.npz"
    np.savez(q, images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="'x' and 'y'"):
        get_dataset("npz", str(q))
    r = tmp_path / "float.npz"
    np.savez(r, x=np.zeros((2, 4, 4, 3), np.float32), y=np.zeros(2))
    with pytest.raises(DataError, match="uint8"):
        get_dataset("npz", str(r))
    with pytest.raises(DataError, match="not found"):
        get_dataset("npz", str(tmp_path / "absent.npz"))


def test_random_crop_flip_is_a_shifted_window():
    """Every output equals a window of the zero-padded input (possibly mirrored): checked exhaustively."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 6, 6)
    g = torch.Generator().manual_seed(1)
    out = random_crop_flip(x, padding=2, flip=True, generator=g)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(16):
        windows = [xp[b, :, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        windows += [w.flip(2) for w in windows]
        assert any(torch.equal(out[b], w) for w in windows)
    same = random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, same)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)


def test_device_loader_covers_split_once_per_epoch():
    split = get_dataset("digits").split("test")
    loader = DeviceLoader(split, 64, "cpu", shuffle=True, generator=torch.Generator().manual_seed(0))
    ys = torch.cat([y for _, y in loader])
    assert len(loader) == 5 and ys.shape == (300,)
    assert torch.equal(torch.bincount(ys, minlength=10), torch.bincount(split.y, minlength=10))
    xb, _ = next(iter(loader))
    assert xb.dtype == torch.float32 and 0 <= float(xb.min()) and float(xb.max()) <= 1

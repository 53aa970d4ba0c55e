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
    assert torch.equal(train.x[torch.from_numpy(pinned)], old.x) and torch.equal(train.y[torch.from_numpy(pinned)], old.y)
    for name in ("nb201-proxies", "nb201-proxies-seeds"):
        p = get_protocol(name, data_root=str(NPZ))
        assert p.image_indices == {"proxies": tuple(pinned.tolist())}
        assert protocol_images(p, "proxies").indices.tolist() == pinned.tolist()

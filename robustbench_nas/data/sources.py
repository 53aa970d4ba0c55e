"""The registered datasets: ``digits`` (embedded), ``cifar10``, ``cifar100``, ``imagenet16-120``, ``npz``."""

from __future__ import annotations

import io
import pickle
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import DataError, DataSplit, Dataset, DatasetInfo, register_dataset, sample_indices

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# NAS-Bench-201's normalisation constants (pixel units / 255).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
CIFAR100_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR100_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)
IMAGENET16_MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
IMAGENET16_STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)

#: Seed of the fixed split permutations (part of the data definition, not a run seed).
SPLIT_SEED = 0


def _nhwc_to_split(name: str, x: np.ndarray, y: np.ndarray, info: DatasetInfo) -> DataSplit:
    x_t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.uint8).transpose(0, 3, 1, 2)))
    return DataSplit(name, x_t, torch.as_tensor(np.asarray(y), dtype=torch.int64), info)


# --------------------------------------------------------------------------------------------------------- digits
@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as 16x16 RGB uint8 (bilinear upsampling, grey replicated)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    up = torch.nn.functional.interpolate(img, size=(16, 16), mode="bilinear", align_corners=False)
    x = (up.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).numpy()
    return x, d.target.astype(np.int64)


@register_dataset("digits")
def digits(root: str | None = None, download: bool = False) -> Dataset:
    """Handwritten digits bundled with scikit-learn (1797 images, 10 classes), as 3x16x16 images.

    Embedded: no download, no root. Fixed seeded split: 1197 train / 300 val / 300 test, class-balanced.
    Normalisation constants are the train split's per-channel mean/std.
    """
    x, y = _digits_arrays()
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    test_idx = np.sort(perm[:300])
    val_idx = np.sort(perm[300:600])
    train_idx = np.sort(perm[600:])
    xf = x[train_idx].astype(np.float64) / 255
    mean = float(xf.mean())
    std = float(xf.std())
    info = DatasetInfo(
        name="digits",
        num_classes=10,
        channels=3,
        image_size=16,
        mean=(mean,) * 3,
        std=(std,) * 3,
        class_names=tuple(str(i) for i in range(10)),
        crop_padding=2,
        flip=False,  # a mirrored digit is not the same digit
    )

    def make(idx: np.ndarray, name: str):
        return lambda: DataSplit(name, torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), info)

    return Dataset(info, {"train": make(train_idx, "train"), "val": make(val_idx, "val"), "test": make(test_idx, "test")})


# --------------------------------------------------------------------------------------------------------- CIFAR
def _cifar(name: str, root: str | None, download: bool) -> Dataset:
    import torchvision

    if root is None:
        raise DataError(
            f"{name} needs --data-root: a folder holding torchvision's layout "
            f"({'cifar-10-batches-py' if name == 'cifar10' else 'cifar-100-python'}/), or pass --download to fetch it"
        )
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    sub = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    if not download and not (Path(root) / sub).is_dir():
        raise DataError(f"{name}: expected torchvision's folder {Path(root) / sub} (from the python version archive); not found")

    def load(train: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        try:
            ds = cls(root=str(root), train=train, download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise DataError(f"{name} under {root}: {e}") from e
        return ds.data, np.asarray(ds.targets), list(ds.classes)

    is10 = name == "cifar10"
    classes = CIFAR10_CLASSES if is10 else tuple(f"class_{i}" for i in range(100))
    info = DatasetInfo(
        name=name,
        num_classes=10 if is10 else 100,
        channels=3,
        image_size=32,
        mean=CIFAR10_MEAN if is10 else CIFAR100_MEAN,
        std=CIFAR10_STD if is10 else CIFAR100_STD,
        class_names=classes,
        crop_padding=4,
        flip=True,
    )

    def train() -> DataSplit:
        x, y, _ = load(True)
        return _nhwc_to_split("train", x, y, info)

    def test() -> DataSplit:
        x, y, _ = load(False)
        return _nhwc_to_split("test", x, y, info)

    def val() -> DataSplit:
        # NB201's convention for CIFAR-100/ImageNet16: a validation half drawn from the test set.
        full = test()
        idx = torch.from_numpy(np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(full))[: len(full) // 2]))
        return DataSplit("val", full.x[idx], full.y[idx], info)

    return Dataset(info, {"train": train, "val": val, "test": test})


@register_dataset("cifar10")
def cifar10(root: str | None = None, download: bool = False) -> Dataset:
    """CIFAR-10 in torchvision's layout under ``root`` (``--download`` opt-in). Splits: train 50k, test 10k, val."""
    return _cifar("cifar10", root, download)


@register_dataset("cifar100")
def cifar100(root: str | None = None, download: bool = False) -> Dataset:
    """CIFAR-100 in torchvision's layout under ``root`` (``--download`` opt-in). Splits: train 50k, test 10k, val."""
    return _cifar("cifar100", root, download)


# ------------------------------------------------------------------------------------------------- ImageNet16-120
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for NB201's ImageNet16 batches: only numpy array reconstruction is allowed (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("builtins", "list"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an ImageNet16 batch file")


def _load_imagenet16_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = _ArrayOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16)
        y = np.asarray(entry["labels"], dtype=np.int64) - 1  # the files are 1-based
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"imagenet16-120: cannot read {path}: {e}") from e
    return x, y


@register_dataset("imagenet16-120")
def imagenet16_120(root: str | None = None, download: bool = False) -> Dataset:
    """NB201's downsampled ImageNet (16x16, the first 120 classes) from its pickles under ``root``.

    Expected files: ``train_data_batch_1`` ... ``train_data_batch_10`` and ``val_data`` (NB201's release).
    No download exists; ``val`` is a seeded half of ``val_data``, ``test`` is all of it.
    """
    if download:
        raise DataError("imagenet16-120 cannot be downloaded automatically; place NB201's ImageNet16 pickles under --data-root")
    if root is None:
        raise DataError("imagenet16-120 needs --data-root: the folder with train_data_batch_1..10 and val_data")
    r = Path(root)
    train_files = [r / f"train_data_batch_{i}" for i in range(1, 11)]
    missing = [p.name for p in train_files + [r / "val_data"] if not p.is_file()]
    if missing:
        raise DataError(f"imagenet16-120 under {r}: missing {missing}")
    info = DatasetInfo(
        name="imagenet16-120",
        num_classes=120,
        channels=3,
        image_size=16,
        mean=IMAGENET16_MEAN,
        std=IMAGENET16_STD,
        class_names=tuple(f"class_{i}" for i in range(120)),
        crop_padding=2,
        flip=True,
    )

    def keep120(x: np.ndarray, y: np.ndarray, name: str) -> DataSplit:
        m = y < 120
        return DataSplit(name, torch.from_numpy(np.ascontiguousarray(x[m])), torch.from_numpy(y[m]), info)

    def train() -> DataSplit:
        parts = [_load_imagenet16_file(p) for p in train_files]
        return keep120(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), "train")

    def test() -> DataSplit:
        return keep120(*_load_imagenet16_file(r / "val_data"), "test")

    def val() -> DataSplit:
        full = test()
        idx = torch.from_numpy(np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(full))[: len(full) // 2]))
        return DataSplit("val", full.x[idx], full.y[idx], info)

    return Dataset(info, {"train": train, "val": val, "test": test})


# ------------------------------------------------------------------------------------------------------------ npz
@register_dataset("npz")
def npz(root: str | None = None, download: bool = False) -> Dataset:
    """Images from one ``.npz`` file (``root`` is the file): ``x`` uint8 ``(N, H, W, C)``, ``y`` int ``(N,)``.

    Optional arrays: ``class_names``, ``mean``, ``std`` (else NB201's CIFAR-10 constants for 3 channels).
    Splits: ``all``; ``train`` / ``test`` a seeded, class-balanced 80/20 partition; ``val`` = ``test``.
    """
    if root is None:
        raise DataError("npz needs --data-root: the .npz file with x (uint8 N,H,W,C) and y")
    p = Path(root)
    if not p.is_file():
        raise DataError(f"npz: file {p} not found (expected a .npz with x uint8 (N, H, W, C) and y)")
    try:
        with np.load(p, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise DataError(f"npz: {p} must hold arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
            extra = {k: f[k] for k in ("class_names", "mean", "std") if k in f}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated / not a zip: name the file
        raise DataError(f"npz: cannot read {p}: {type(e).__name__}: {e}") from e
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise DataError(f"npz: {p}: x must be uint8 (N, H, W, C) with H == W, got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"npz: {p}: y must be (N,) with N = {len(x)}, got {y.shape}")
    y = y.astype(np.int64)
    k = int(y.max()) + 1
    c = x.shape[3]
    if "class_names" in extra:
        names = tuple(str(s) for s in extra["class_names"])
    elif k == 10:
        names = CIFAR10_CLASSES
    else:
        names = tuple(str(i) for i in range(k))
    mean = tuple(float(v) for v in extra["mean"]) if "mean" in extra else (CIFAR10_MEAN if c == 3 else (0.5,) * c)
    std = tuple(float(v) for v in extra["std"]) if "std" in extra else (CIFAR10_STD if c == 3 else (0.25,) * c)
    info = DatasetInfo(
        name="npz",
        num_classes=max(k, len(names)),
        channels=c,
        image_size=x.shape[1],
        mean=mean,
        std=std,
        class_names=names,
        crop_padding=4 if x.shape[1] >= 32 else 2,
        flip=True,
    )
    test_idx = sample_indices(y, len(y) // 5, SPLIT_SEED, stratified=True)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    train_idx = np.flatnonzero(train_mask)
    return Dataset(
        info,
        {
            "all": lambda: _nhwc_to_split("all", x, y, info),
            "train": lambda: _nhwc_to_split("train", x[train_idx], y[train_idx], info),
            "test": lambda: _nhwc_to_split("test", x[test_idx], y[test_idx], info),
            "val": lambda: _nhwc_to_split("val", x[test_idx], y[test_idx], info),
        },
    )

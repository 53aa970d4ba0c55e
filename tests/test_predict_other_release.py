"""The predictor runs unchanged on another dataset's release of the same layout (issue 26's done-when).

The Jung et al. release has one folder per dataset (``cifar10/``, ``cifar100/``, ``ImageNet16-120``'s files in the
same layout). Only CIFAR-10 is in the shared data, so an "ImageNet16-120" release is made from it: the same cells,
the dataset key renamed and the accuracies transformed (so that nothing can silently read the CIFAR-10 values).
``rbnas import jung2023 --dataset`` and ``rbnas predict --compare graf`` must run on it with no code change; the
store must hold the transformed values (not the CIFAR-10 ones) and both predictors must rank the held-out cells.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

OTHER = "ImageNet16-120"  # the release's folder name
FILES = ("clean_accuracy.json", "pgd@Linf_accuracy.json")


def _squash(v):  # a monotone map of an accuracy in [0, 1]: ranks kept, values changed
    return [_squash(x) for x in v] if isinstance(v, list) else round(0.5 * float(v) ** 2, 6)


@pytest.fixture(scope="module")
def other_release(jung2023_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rel")
    shutil.copy(jung2023_root / "meta.json", root / "meta.json")
    (root / OTHER).mkdir()
    for name in FILES:
        (key_values,) = json.loads((jung2023_root / "cifar10" / name).read_text()).values()
        moved = {k: {m: {u: _squash(v) for u, v in vals.items()} for m, vals in ms.items()}
                 for k, ms in key_values.items()}  # fmt: skip
        (root / OTHER / name).write_text(json.dumps({OTHER: moved}))
    return root


@pytest.mark.slow
def test_import_and_predict_compare_graf_on_another_release(other_release: Path, jung2023_root: Path, tmp_path):
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli
    from robustbench_nas.storage import open_dataset

    store = tmp_path / "other.zarr"
    r = CliRunner().invoke(cli, ["import", "jung2023", str(other_release), "--store", str(store),
                                 "--dataset", OTHER, "--measures", "accuracy", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    ds = open_dataset(store)
    assert ds.attrs["dataset"] == OTHER
    (c10,) = json.loads((jung2023_root / "cifar10" / "clean_accuracy.json").read_text()).values()
    u, acc = next(iter(c10["clean"]["accuracy"].items()))
    assert float(ds["clean_accuracy"].sel(arch=int(u), seed=0)) == pytest.approx(0.5 * acc**2, abs=1e-6)

    for target in ("clean", "pgd@Linf@1/255"):
        r = CliRunner().invoke(cli, ["predict", str(store), "--target", target, "--train-size", "30", "--repeats",
                                     "2", "--seed", "5", "--compare", "graf", "--json"])  # fmt: skip
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert out["graf"]["models"] == ["graf", "graf"]
        assert np.isfinite(out["diff"]["spearman_mean"]), out["diff"]
        assert 0.2 < out["ours"]["spearman_mean"] <= 1 and 0.2 < out["graf"]["spearman_mean"] <= 1

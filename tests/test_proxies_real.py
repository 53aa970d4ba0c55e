"""Real data: rank correlation of cheap proxies with the published clean CIFAR-10 accuracy (Jung et al. 2023).

Full-size NB201 networks (C=16, N=5) at initialisation, one seeded batch of real CIFAR-10 test images, a seeded
sample of 30 unique cells. The literature (NASLib, 725 cells) reports Spearman 0.71-0.79 for these proxies on
NB201 CIFAR-10; with 30 cells the sampling error of Spearman is about 0.1, so we require > 0.45. The larger
200-cell table is produced by ``python -m robustbench_nas.proxies.study`` (robustbench_nas/proxies/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustbench_nas.proxies.study import load_batch, load_jung_accuracy, rank_correlations
from robustbench_nas.proxies import compute_proxies
from robustbench_nas.search_spaces import get_search_space

PROXIES = ["params", "flops", "synflow", "nwot", "jacob_cov"]


@pytest.mark.slow
def test_cheap_proxies_rank_cells_like_the_literature(cifar10_npz: Path, jung2023_root: Path) -> None:
    torch.set_num_threads(1)
    clean = load_jung_accuracy(jung2023_root, "clean")
    uids = get_search_space("nb201").sample(30, seed=1, unique=True)
    x, y = load_batch(cifar10_npz, 32, seed=0)
    values: dict[str, dict[int, float]] = {p: {} for p in PROXIES}
    for uid in uids:
        for name, v in compute_proxies(uid, x, y, PROXIES, seed=0).items():
            values[name][uid] = v
    rows = {r.proxy: r for r in rank_correlations(values, clean)}
    for name in PROXIES:
        assert rows[name].n_cells >= 28, rows[name]
        assert rows[name].spearman > 0.45, rows[name]


def test_targets_from_the_jung_release(jung2023_root: Path) -> None:
    import json

    import numpy as np

    from robustbench_nas.proxies.study import load_target

    clean = load_target(jung2023_root, "clean")
    assert len(clean) == 6466 and np.mean(list(clean.values())) == pytest.approx(0.898, abs=5e-4)  # protocols.md
    raw = json.loads((jung2023_root / "cifar10" / "fgsm@Linf_accuracy.json").read_text())["cifar10"]["fgsm@Linf"]
    uid = next(iter(clean))
    r = raw["accuracy"][str(uid)][9]  # eps grid [0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255]: index 9 is 8/255
    assert load_target(jung2023_root, "fgsm@Linf:8")[uid] == r
    assert load_target(jung2023_root, "hrs:fgsm@Linf:8")[uid] == pytest.approx(2 * clean[uid] * r / (clean[uid] + r))
    with pytest.raises(ValueError, match="not in the"):
        load_target(jung2023_root, "fgsm@Linf:9")
